"""The temporary folder a study's cells train their runs in (``downpour-study-NAME-HOST-PID-*`` in the machine's
temporary folder), the folder of each cell's run (``downpour-cell-HOST-PID-*``, in the study's), and the sweep of
those a killed process left.

A study removes its folder when its cells end however they end (Ctrl-C, SIGTERM, a cell's failure), but a SIGKILL
(the OOM killer, ``kill -9``, a machine's scheduler out of patience) removes nothing: each worker's run, up to 6.6 MB,
stayed for ever (until 2026-12-06: on the project's VM that day, seven folders of studies of other sessions). The
folder's name holds the process id of the study that made it, so the next study finds those whose process is gone and
removes them; a folder named before the id was (``downpour-study-NAME-*``) cannot be told from a running study's, and
is left.

A process id means something only on its machine and in its pid namespace: a container sharing the temporary folder
with another, each with its own pid namespace, read the other's running study as gone and removed its folder (until
2026-12-07). ``HOST`` (:func:`host_mark`) names both, and only folders of this one are swept. A folder named before
it (``downpour-study-NAME-PID-*``) is kept: it may be a running study's of another container, and a folder left is
disk space, where a folder removed under a running study fails its cells. A machine's own pid namespace is the
same after a reboot (its folders are swept as before); a container's is new at each start, and the folders a
restarted container left before are kept too.

A cell's run trains in a folder of its own (:func:`cell_folder`), inside the study's in a study's worker (its
temporary folder) and in the machine's where a cell runs alone (``bench/architectures_why_cat.py``'s cells, a test's
``run_cell``). Those folders were named ``downpour-cell-*`` alone (until 2026-12-07): a cell run alone and stopped by
SIGTERM (Python runs no clean-up for it) or SIGKILL left its run in the machine's temporary folder for ever (18 of
them on the project's VM that day, a bench script's cells stopped at helpers' time limits). They name their host and
process as a study's folder does, and the same sweep removes them.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
from functools import cache
from pathlib import Path

from downpour._names import plural
from downpour.ps.shm import runs


@cache
def host_mark() -> str:
    """This machine and its pid namespace, as 8 hex digits (no '-': the field is told apart from NAME's end): a
    digest of the host name and ``/proc/self/ns/pid`` (two containers of one host name can have a pid namespace
    each; where there is no /proc, the host name alone)."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return hashlib.sha256(f"{socket.gethostname()}\n{pid_ns}".encode()).hexdigest()[:8]


def _left(path: Path) -> bool:
    """Whether ``path`` is a folder of this user's and this host's (:func:`host_mark`) that a study whose process is
    gone left (:func:`runs`: a zombie is gone; a live process that took the id again keeps it, as does one of another
    user's). ``downpour-study-NAME-HOST-PID-RANDOM``: NAME may hold a '-', HOST and RANDOM do not; or a cell's,
    ``downpour-cell-HOST-PID-RANDOM``."""
    m = re.fullmatch(rf"downpour-(?:study-.+|cell)-{host_mark()}-(\d{{1,9}})-[^-]+", path.name)
    if not m:
        return False
    pid = int(m.group(1))
    try:
        mine = path.stat().st_uid == os.getuid()
    except OSError:              # removed since (by a study beside this one)
        return False
    return mine and path.is_dir() and pid != os.getpid() and not runs(pid)


def sweep_left(name: str) -> list[Path]:
    """Remove this user's temporary folders of studies and cells whose process is gone, said on stderr for study
    ``name``; returns those removed."""
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
    """"a study", "a cell", "studies", "cells" or "studies and cells": what made the folders ``left``."""
    studies = sum(p.name.startswith("downpour-study-") for p in left)
    if len(left) == 1:
        return "a study" if studies else "a cell"
    return " and ".join(kind for n, kind in ((studies, "studies"), (len(left) - studies, "cells")) if n)


def scratch_folder(name: str) -> str:
    """A new temporary folder for study ``name``'s cells, named with this host's mark and this process's id, after
    :func:`sweep_left`."""
    sweep_left(name)
    return tempfile.mkdtemp(prefix=f"downpour-study-{name}-{host_mark()}-{os.getpid()}-")


def cell_folder() -> tempfile.TemporaryDirectory:
    """A new temporary folder for a cell's run, named with this host's mark and this process's id (swept by
    :func:`sweep_left` once the process is gone), removed when it is closed."""
    return tempfile.TemporaryDirectory(prefix=f"downpour-cell-{host_mark()}-{os.getpid()}-")
