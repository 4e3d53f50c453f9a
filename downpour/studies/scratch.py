"""The temporary folder a study's cells train their runs in (``downpour-study-NAME-HOST-PID-*`` in the machine's
temporary folder), the folder of each cell's run (``downpour-cell-HOST-PID-*``, in the study's), and the sweep of
those a killed process left.

A study removes its folder when its cells end however they end (Ctrl-C, SIGTERM, a cell's failure), but a SIGKILL
(the OOM killer, ``kill -9``, a machine's scheduler out of patience) removes nothing: each worker's run, up to 6.6 MB,
would stay for ever (seven folders of other sessions' studies on the project's VM on 2026-12-06). The
folder's name holds the process id of the study that made it, so the next study finds those whose process is gone and
removes them; a folder named before the id was (``downpour-study-NAME-*``) cannot be told from a running study's, and
is left.

A process id means something only on its machine and in its pid namespace: a container sharing the temporary folder
with another, each with its own pid namespace, would read the other's running study as gone and remove its folder.
``HOST`` (:func:`~downpour.scratch_names.host_mark`) names both, and only folders of this one are
swept. A folder named before it (``downpour-study-NAME-PID-*``) is kept: it may be a running study's of another
container, and a folder left is disk space, where a folder removed under a running study fails its cells. A
machine's own pid namespace is the same after a reboot (its folders are swept as before); a container's is new at
each start, and the folders a restarted container left before are kept too.

A cell's run trains in a folder of its own (:func:`cell_folder`), inside the study's in a study's worker (its
temporary folder) and in the machine's where a cell runs alone (``bench/architectures_why_cat.py``'s cells, a test's
``run_cell``). Named ``downpour-cell-*`` alone, as those made before 2026-12-07 are, a cell run alone and stopped by
SIGTERM (Python runs no clean-up for it) or SIGKILL would leave its run in the machine's temporary folder for ever (18
of them on the project's VM on 2026-12-07, a bench script's cells stopped at helpers' time limits). They name their host
and process as a study's folder does, and the same sweep removes them. So do `downpour plan --check`'s runs without
``--out`` (``downpour-plan-HOST-PID-*``; those named ``downpour-plan-*`` alone, before 2026-12-07, are not swept): the
names are :mod:`downpour.scratch_names`'s, on the ground floor, which plan/ may import and studies/ is above.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from downpour._names import listed, plural
from downpour.ps.shm import runs
from downpour.scratch_names import MAKERS, owner, prefix


def _left(path: Path) -> bool:
    """Whether ``path`` is a folder of this user's and this host's (:func:`~downpour.scratch_names.owner`: a
    study's, a cell's or a plan check's) whose process is gone (:func:`runs`: a zombie is gone; a live process that
    took the id again keeps it, as does one of another user's)."""
    pid = owner(path.name)
    if pid is None:
        return False
    try:
        mine = path.stat().st_uid == os.getuid()
    except OSError:              # removed since (by a study beside this one)
        return False
    return mine and path.is_dir() and pid != os.getpid() and not runs(pid)


def sweep_left(name: str) -> list[Path]:
    """Remove this user's temporary folders of studies, cells and plan checks whose process is gone, said on stderr
    for study ``name``; returns those removed."""
    root = Path(tempfile.gettempdir())
    left = []
    for path in sorted(p for p in root.glob("downpour-*") if _left(p)):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():    # (one left whole, its files another user's, is not said removed)
            left.append(path)
    if left:
        print(f"downpour study {name}: removed {plural(len(left), 'temporary folder')} of {_whose(left)} killed "
              f"before {'it' if len(left) == 1 else 'they'} could remove {'it' if len(left) == 1 else 'them'} "
              f"({', '.join(map(str, left[:3]))}{' ...' if len(left) > 3 else ''}): cells' unfinished runs",
              file=sys.stderr, flush=True)
    return left


def _whose(left: list[Path]) -> str:
    """What made the folders ``left``: "a study", "a cell", "a plan check", "studies", "cells", "plan checks" or those
    kinds joined ("studies and cells", "studies, cells and plan checks")."""
    if len(left) == 1:
        return MAKERS[left[0].name.split("-")[1]][0]
    kinds = [many for kind, (_, many) in MAKERS.items() if any(p.name.split("-")[1] == kind for p in left)]
    return listed(kinds)


def scratch_folder(name: str) -> str:
    """A new temporary folder for study ``name``'s cells, named with this host's mark and this process's id, after
    :func:`sweep_left`."""
    sweep_left(name)
    return tempfile.mkdtemp(prefix=prefix(f"study-{name}"))


def cell_folder() -> tempfile.TemporaryDirectory:
    """A new temporary folder for a cell's run, named with this host's mark and this process's id (swept by
    :func:`sweep_left` once the process is gone), removed when it is closed."""
    return tempfile.TemporaryDirectory(prefix=prefix("cell"))
