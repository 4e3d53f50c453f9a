"""Each test session has a temporary folder of its own, and a test that leaves downpour's scratch there fails.

A study's folder, its cells' runs and a plan check's run (``downpour-study-*``, ``downpour-cell-*``,
``downpour-plan-*``: downpour/scratch_names.py) go when they end, and the next study sweeps those whose process is
gone; what a test left (a killed cell's run, an environment variable naming a removed folder that a later process made
again) would go unseen among other sessions' in the machine's /tmp (19 there on 2026-12-07). The session's first
process (pytest-xdist's controller, or the only one) makes the folder and points TMPDIR at it before any worker
starts; each worker takes a folder of its own inside it, so that one worker's running study is not read as another's
test leaving it. pytest's own folders (``tmp_path``) and Ray's stay
where they were (PYTEST_DEBUG_TEMPROOT, RAY_TMPDIR).

After each test, a ``downpour-*`` that was not there before it fails the test (in its teardown); at the end, any left
fails the session, named under the summary, and the folder stays for a look (it goes at the exit where none is left).
"""
import multiprocessing.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from downpour._names import plural

_session: dict = {}


def start(config) -> None:
    """The session's folder (the first process) or the worker's inside it; TMPDIR and ``tempfile.tempdir`` at it."""
    if hasattr(config, "workerinput"):      # an xdist worker: inside the controller's folder, from its TMPDIR
        folder = os.path.join(os.environ["TMPDIR"], config.workerinput["workerid"])
        os.makedirs(folder)
    else:
        os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
        os.environ.setdefault("RAY_TMPDIR", os.environ.get("TMPDIR", "/tmp"))    # (Ray's own choice on Linux)
        folder = tempfile.mkdtemp(prefix="downpour-tests-")
        _session["root"] = folder
    _session.update(folder=folder, was=(os.environ.get("TMPDIR"), tempfile.tempdir))
    os.environ["TMPDIR"] = tempfile.tempdir = folder


def left_in(folder: str) -> set[str]:
    """The downpour scratch in ``folder``: its ``downpour-*`` entries."""
    return {p.name for p in Path(folder).glob("downpour-*")}


@pytest.fixture(autouse=True)
def no_scratch_left():
    """A test fails that leaves a ``downpour-*`` in this process's temporary folder."""
    folder = _session.get("folder")
    before = left_in(folder) if folder else set()
    yield
    new = sorted(left_in(folder) - before) if folder else []
    if new:
        pytest.fail(f"left {plural(len(new), 'temporary folder')} of downpour's in {folder}: {', '.join(new)}",
                    pytrace=False)


def finish(session) -> None:
    """The first process, at the end: the session fails where ``downpour-*`` is left in its folder or a worker's."""
    was, tempdir = _session.get("was", (None, None))
    if "folder" in _session:
        if was is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = was
        tempfile.tempdir = tempdir
    root = _session.get("root")
    if root is None:
        return
    left = sorted(str(Path(folder, name)) for folder in [root, *map(str, Path(root).glob("gw*"))]
                  for name in left_in(folder))
    if not left:
        # at the exit, after multiprocessing's own folder in it (the fork server's socket, ``pymp-*``: its finalizer,
        # exit priority -100, raised FileNotFoundError at the exit when the folder went here)
        multiprocessing.util.Finalize(None, shutil.rmtree, args=(root,), kwargs={"ignore_errors": True},
                                      exitpriority=-200)
        return
    _session["left"] = left
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def summary(terminalreporter) -> None:
    left = _session.get("left")
    if left:
        terminalreporter.write_line(f"the tests left {plural(len(left), 'temporary folder')} of downpour's (kept): "
                                    + ", ".join(left), red=True)
