"""A run being trained holds a lock on its folder, so that ``downpour train --resume`` from another terminal is
refused while it trains. Until 2026-12-05 that resume found no checkpoint yet (``train.checkpoint_every = 0``),
said the run "stopped before its first checkpoint", removed its metrics and TensorBoard events and trained it
again from step 0 in the same folder, beside the live run (what ``downpour analyze`` of such a run suggests).

The lock is ``flock`` on the run's folder itself (no file is added to the run; the kernel lets it go when the
process ends, a kill -9 included). Where ``fcntl`` is missing (not POSIX) nothing is locked."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from downpour.errors import NotARunError

try:
    import fcntl
except ImportError:      # pragma: no cover  (Windows)
    fcntl = None   # type: ignore[assignment]

__all__ = ["check_not_training", "training"]


@contextmanager
def training(path: str | Path) -> Iterator[None]:
    """Hold the run folder ``path``'s lock while the block trains it."""
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(path) from None
        yield
    finally:
        os.close(fd)       # (releases the lock)


def check_not_training(path: str | Path) -> None:
    """NotARunError when another process is training the run in ``path`` now."""
    if fcntl is None or not Path(path).is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(path) from None
    finally:
        os.close(fd)


def _busy(path: str | Path) -> NotARunError:
    return NotARunError(f"{str(path)!r} is being trained now by another downpour process: let it finish, or stop it "
                        f"(Ctrl-C or SIGTERM save a checkpoint), then `downpour train --resume {path}`")
