"""The temporary folder a study's cells train their runs in (``downpour-study-NAME-PID-*`` in the machine's temporary
folder), and the sweep of those a killed study left.

A study removes its folder when its cells end however they end (Ctrl-C, SIGTERM, a cell's failure), but a SIGKILL
(the OOM killer, ``kill -9``, a machine's scheduler out of patience) removes nothing: each worker's run, up to 6.6 MB,
stayed for ever (until 2026-12-06: on the project's VM that day, seven folders of studies of other sessions). The
folder's name holds the process id of the study that made it, so the next study finds those whose process is gone and
removes them; a folder named before the id was (``downpour-study-NAME-*``) cannot be told from a running study's, and
is left.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from downpour._names import plural

_LEFT = re.compile(r"downpour-study-.+-(\d+)-[^-]+")      # downpour-study-NAME-PID-RANDOM (NAME may hold a '-')


def _gone(pid: int) -> bool:
    """Whether no process ``pid`` runs (one of another user's, or a reused id, counts as running: kept)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def sweep_left(name: str) -> list[Path]:
    """Remove the temporary folders of studies whose process is gone, said on stderr for study ``name``; returns them."""
    root = Path(tempfile.gettempdir())
    left = sorted(p for p in root.glob("downpour-study-*") if p.is_dir() and (m := _LEFT.fullmatch(p.name))
                  and int(m.group(1)) != os.getpid() and _gone(int(m.group(1))))
    for path in left:
        shutil.rmtree(path, ignore_errors=True)
    if left:
        print(f"downpour study {name}: removed {plural(len(left), 'temporary folder')} of a study killed before it "
              f"could remove {'it' if len(left) == 1 else 'them'} ({', '.join(map(str, left[:3]))}"
              f"{' ...' if len(left) > 3 else ''}): its cells' unfinished runs", file=sys.stderr, flush=True)
    return left


def scratch_folder(name: str) -> str:
    """A new temporary folder for study ``name``'s cells, named with this process's id, after :func:`sweep_left`."""
    sweep_left(name)
    return tempfile.mkdtemp(prefix=f"downpour-study-{name}-{os.getpid()}-")
