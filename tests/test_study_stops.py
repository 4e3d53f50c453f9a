"""A study stopped or killed at any moment leaves nothing read as finished that is not: its pages are whole or the
previous ones, and a killed study's temporary runs are removed by the next."""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from downpour import studies
from downpour.studies.run import run_study
from downpour.scratch_names import host_mark
from downpour.studies.scratch import scratch_folder, sweep_left

from planted_study import Planted  # noqa: F401 (the planted study, by name below)


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setitem(studies.STUDIES, "planted", "planted_study:Planted")


@pytest.mark.parametrize("page", ["study.json", "study.html", "study.md"])
def test_a_stop_while_a_page_is_written_leaves_the_previous_page_whole(planted, tmp_path, monkeypatch, page):
    """A Ctrl-C (or a kill) while study.json or a page was written left it torn (until 2026-12-06): a study.json that
    was no JSON, or a study.html cut short that `downpour report` of the folder called its report."""
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    before = (tmp_path / page).read_text()
    write = pathlib.Path.write_text

    def torn(self, text, *args, **kwargs):
        if self.name in (page, page + ".tmp"):        # half of it written, then the stop
            write(self, text[: len(text) // 2], *args, **kwargs)
            raise KeyboardInterrupt
        return write(self, text, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", torn)
    with pytest.raises(KeyboardInterrupt):
        run_study("planted", tmp_path, quick=True, seeds=3, jobs=1)
    assert (tmp_path / page).read_text() == before
    monkeypatch.setattr(pathlib.Path, "write_text", write)
    run_study("planted", tmp_path, quick=True, seeds=3, jobs=1)     # the same command writes it anew
    assert json.loads((tmp_path / "study.json").read_text())["seeds"] == [0, 1, 2]


def _dead_pid():
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_temporary_runs_of_a_killed_study_are_removed_by_the_next(planted, tmp_path, monkeypatch, capsys):
    """A SIGKILLed study's workers left their unfinished runs in the machine's temporary folder for ever (until
    2026-12-06); the next study removes the folders of studies whose process is gone, and says so. A running study's
    folder, and one named before the folders held their process id, are kept."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tempfile.tempdir)
    killed = pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-study-flat-skipping-{host_mark()}-{_dead_pid()}-"))
    (killed / "downpour-cell-x" / "run").mkdir(parents=True)
    running = pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-study-costs-{host_mark()}-{os.getppid()}-"))
    older = pathlib.Path(tempfile.mkdtemp(prefix="downpour-study-costs-"))
    run_study("planted", tmp_path / "study", quick=True, seeds=2, jobs=1)
    assert not killed.exists() and running.is_dir() and older.is_dir()
    err = capsys.readouterr().err
    assert (f"downpour study planted: removed 1 temporary folder of a study killed before it could remove it "
            f"({killed})") in err
    assert sweep_left("planted") == []
    mine = scratch_folder("planted")
    assert pathlib.Path(mine).name.startswith(f"downpour-study-planted-{host_mark()}-{os.getpid()}-")
    assert sweep_left("planted") == [] and os.path.isdir(mine)         # this process's own: running


ALONE = '''
import sys, time
from downpour.config import load_config
from downpour.studies import trained

def slow(cfg, run):                 # (a cell's training, long enough to be killed in)
    print("training", flush=True)
    time.sleep(600)

trained.train = slow
with trained.trained_run(load_config("teacher-student")):
    pass
'''


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_cell_run_alone_and_killed_leaves_a_folder_the_next_study_removes(planted, tmp_path, monkeypatch, capsys,
                                                                            how):
    """A cell run outside a study (bench/architectures_why_cat.py's, a test's ``run_cell``) trains in the machine's
    temporary folder; stopped by SIGTERM (no clean-up in Python) or SIGKILL it left its run there for ever (until
    2026-12-07: 18 on the project's VM). Its folder names its process as a study's does: kept while the process
    runs, removed by the next study once it is gone."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tempfile.tempdir)
    cell = subprocess.Popen([sys.executable, "-c", ALONE], env={**os.environ, "TMPDIR": tempfile.tempdir},
                            stdout=subprocess.PIPE, text=True)
    try:
        assert cell.stdout.readline() == "training\n"
        [left] = pathlib.Path(tempfile.tempdir).iterdir()
        assert left.name.startswith(f"downpour-cell-{host_mark()}-{cell.pid}-")
        assert sweep_left("planted") == [] and left.is_dir()           # its process runs: kept
    finally:
        cell.send_signal(how)
        cell.wait()
        cell.stdout.close()
    assert left.is_dir()
    run_study("planted", tmp_path / "study", quick=True, seeds=2, jobs=1)
    assert not left.exists() and os.listdir(tempfile.tempdir) == []
    assert f"removed 1 temporary folder of a cell killed before it could remove it ({left})" in capsys.readouterr().err


def test_a_folder_resumed_with_another_set_names_the_sets_it_ran_with_and_those_given(planted, tmp_path):
    """Resumed the next morning with a --set changed (or left off), the study said only "sets differ" (until
    2026-12-06): the user was not told which --set their cells ran with."""
    from downpour.config import ConfigError

    run_study("planted", tmp_path, quick=True, seeds=2, sets=["train.steps=3"], jobs=1)
    with pytest.raises(ConfigError, match=r"sets differ; --set train\.steps=3 in its cells, train\.steps=4 in this "
                                          r"command; this command gives --set model\.width=5, which its cells ran "
                                          r"without\)"):
        run_study("planted", tmp_path, quick=True, seeds=2, sets=["train.steps=4", "model.width=5"], jobs=1)
    with pytest.raises(ConfigError, match=r"sets differ; its cells ran with --set train\.steps=3, which this command "
                                          r"leaves out\)"):
        run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)


def test_a_zombie_studys_folder_is_removed_and_one_not_removed_is_not_said(tmp_path, monkeypatch, capsys):
    """A study killed but not yet reaped by its parent (a zombie) answered ``kill(pid, 0)`` and kept its folder; the
    project's :func:`downpour.ps.shm.runs` reads it as ended. A folder rmtree could not remove (files another user's)
    was said removed, and said again by every study after."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while pathlib.Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
            pass                                             # ended, not reaped: a zombie
        zombie = pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-study-costs-{host_mark()}-{child.pid}-"))
        stuck = pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-study-costs-{host_mark()}-{_dead_pid()}-"))
        rmtree = shutil.rmtree
        monkeypatch.setattr(shutil, "rmtree", lambda p, **kw: None if p == stuck else rmtree(p, **kw))
        assert sweep_left("costs") == [zombie] and stuck.is_dir()
    finally:
        child.wait()
    assert "removed 1 temporary folder of a study killed before it could remove it" in capsys.readouterr().err


def test_a_plan_checks_temporary_run_names_its_host_and_process_and_a_killed_ones_is_swept(tmp_path, monkeypatch,
                                                                                          capsys):
    """`downpour plan --check-simulated` without --out trains in a temporary folder named ``downpour-plan-*`` alone
    (until 2026-12-07): one killed by SIGKILL stayed for ever, the sweep knowing no process of it. It names its host
    and process as a study's folder does, and the sweep removes it with the studies' and cells' it finds."""
    from downpour.plan import check

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    named = []

    def stop(cfg, run):                              # (stopped where it would train: the folder is made)
        named.append(pathlib.Path(run.path).parent.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "run_cluster", stop)
    with pytest.raises(KeyboardInterrupt):
        check.check_simulated(workers=4, shards=2, steps=20)
    assert named[0].startswith(f"downpour-plan-{host_mark()}-{os.getpid()}-") and os.listdir(tmp_path) == []
    pid = _dead_pid()
    left = [pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-{kind}-{host_mark()}-{pid}-"))
            for kind in ("plan", "study-costs", "cell", "plan")]
    assert sweep_left("costs") == sorted(left) and os.listdir(tmp_path) == []
    assert "removed 4 temporary folders of studies, cells and plan checks killed" in capsys.readouterr().err
    plan = pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-plan-{host_mark()}-{pid}-"))
    assert sweep_left("costs") == [plan]
    assert f"removed 1 temporary folder of a plan check killed before it could remove it ({plan})" in \
        capsys.readouterr().err


@pytest.mark.skipif(os.getuid() != 0, reason="gives a folder to another user: needs root")
def test_another_users_folder_is_kept(tmp_path, monkeypatch):
    """Another user's study folder, its process gone, is theirs to remove (until 2026-12-06 root's study took it)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    theirs = pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-study-costs-{host_mark()}-{_dead_pid()}-"))
    os.chown(theirs, 54321, 54321)
    assert sweep_left("costs") == [] and theirs.is_dir()


def test_a_folder_of_another_host_or_pid_namespace_is_kept_though_its_id_runs_nothing_here(tmp_path, monkeypatch):
    """Containers sharing the temporary folder, each with a pid namespace of its own: a running study of one read as
    gone in the other (its id runs nothing there), whose next study removed its folder under it (until 2026-12-07).
    Folders name their host and pid namespace, and only this one's are swept; one named without them is kept."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pid = _dead_pid()
    other = "0" * 8 if host_mark() != "0" * 8 else "1" * 8
    theirs = pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-study-costs-{other}-{pid}-"))
    named_before = pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-study-costs-{pid}-"))
    ours = pathlib.Path(tempfile.mkdtemp(prefix=f"downpour-study-costs-{host_mark()}-{pid}-"))
    assert sweep_left("costs") == [ours] and theirs.is_dir() and named_before.is_dir()
    monkeypatch.setattr(socket, "gethostname", lambda: "another-container")
    host_mark.cache_clear()
    try:
        assert host_mark() != ours.name.split("-")[-3]     # another host name: another mark
    finally:
        host_mark.cache_clear()


SLEEPY = '''
import os, pathlib, time
from downpour.studies.base import Condition, Study

class Sleepy(Study):
    name, question, base, quick_what = "sleepy", "Do its workers end with it?", "teacher-student", "sleeping cells"

    def conditions(self):
        return [Condition("a", {}, ())]

    def run_cell(self, condition, seed, context):
        noted = pathlib.Path(os.environ["SLEEPY_PIDS"]) / f"{os.getpid()}.part"
        noted.write_text(str(os.getppid()))
        noted.replace(noted.with_suffix(""))      # (whole: the test reads it as soon as its name is there)
        time.sleep(600)
'''
STUDY = '''
from downpour import studies
from downpour.studies import cells
from downpour.studies.run import run_study
cells.PRELOAD[:] = ["torch"]        # (all a sleeping cell needs: the fork server imports less)
studies.STUDIES["sleepy"] = "sleepy:Sleepy"
run_study("sleepy", {out!r}, quick=True, seeds=2, jobs=2)
'''


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the watch needs pidfd_open (Linux)")
def test_a_sigkilled_studys_cell_workers_and_fork_server_end_with_it(tmp_path):
    """A SIGKILLed study (the OOM killer) left its pool's cell workers running their cells, then waiting on the
    pool's queue for ever, and the fork server with them (until 2026-12-07; a parent-death signal would have come
    from the server, which outlives the study as long as its children do). Each worker now watches the study's
    process and ends with it, and the server, its last child gone, ends too."""
    from downpour.ps.shm import runs

    (tmp_path / "sleepy.py").write_text(SLEEPY)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "SLEEPY_PIDS": str(pids), "TMPDIR": str(tmp_path),    # (the killed study's folder)
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    study = subprocess.Popen([sys.executable, "-c", STUDY.format(out=str(tmp_path / "out"))], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    server: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        while len(workers) < 2 and study.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = [int(p.name) for p in pids.iterdir() if p.name.isdigit()]
        assert len(workers) == 2, f"the study's two cells did not start (exit status {study.poll()})"
        server = {int((pids / str(w)).read_text()) for w in workers}
        assert len(server) == 1 and study.pid not in server        # the fork server's children, not the study's
        study.kill()
        study.wait()
        left = workers + list(server)
        deadline = time.monotonic() + 60
        while any(map(runs, left)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [p for p in left if runs(p)] == []
    finally:
        study.kill()
        study.wait()
        for pid in workers + list(server):  # (a failed check leaves none of its processes behind)
            if runs(pid):
                os.kill(pid, signal.SIGKILL)
