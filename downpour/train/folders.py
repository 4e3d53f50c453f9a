"""Output folders (a run's, a study's, a cross-fit's): where one can be made, made, and named when it
cannot be (a file on the way, a read-only file system), never a traceback; and whether a folder
already there can be written into."""
from __future__ import annotations

import os
from pathlib import Path

from downpour.errors import DownpourError, NotARunError


class RunExistsError(DownpourError):
    """The directory already holds a run that trained (a new run never overwrites it), or an output
    folder cannot be made there."""


def folder_to_write(path: Path, what: str) -> Path:
    """``path`` where a folder can be made or written into; RunExistsError naming ``what`` (a run, a
    study, a cross-fit) when a file stands there or on the way to it, or the nearest folder there is
    cannot be written (a read-only file system: found by ``--dry-run`` too)."""
    blocked = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise RunExistsError(f"cannot make {what} {str(path)!r}: {str(blocked)!r} is a file; pick another --out")
    nearest = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise RunExistsError(f"cannot make {what} {str(path)!r}: {str(nearest)!r} cannot be written; pick another --out")
    return path


def make_folder(path: Path, what: str) -> Path:
    """``path`` made (with its parents; there already is fine); RunExistsError naming ``what``, the path and
    why it cannot be (a file on the way, a read-only file system, no such place), not a traceback."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunExistsError(f"cannot make {what} {str(path)!r}: {err.strerror or err} "
                             f"({err.filename or path}); pick another --out") from None
    return path


def missing(path: Path) -> list[Path]:
    """``path`` and those of its parents not there (a symbolic link, one to nothing too, counts as there), deepest
    first: the folders that making ``path`` makes."""
    return [p for p in (path, *path.parents) if not os.path.lexists(p)]


def fresh_folder(name: str) -> Path:
    """A new folder ``name`` (or ``name-2``, ``-3``, ...), made here: two runs started in the same second
    took one default folder and wrote into it together."""
    for n in range(1, 1000):
        path = Path(name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as err:            # a read-only place, a file on the way
            raise RunExistsError(f"cannot make the run folder {str(path)!r}: {err.strerror or err}; "
                                 "pick one with --out") from None
    raise RunExistsError(f"no free run folder named like {name!r}: pick one with --out")


def check_writable(folder: Path, why: str) -> None:
    """NotARunError naming ``folder`` (if it exists) when a file cannot be made in it, and ``why`` it must be;
    tried with a file, since permission bits do not bind root (a read-only mount or an immutable folder do)."""
    if folder.is_dir():
        probe = folder / ".downpour-write-check"
        try:
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise NotARunError(f"{str(folder)!r} cannot be written ({err.strerror or err}): {why}") from None
