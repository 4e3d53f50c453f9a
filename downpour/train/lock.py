"""A run being trained holds a lock on its folder, so that ``downpour train --resume`` from another terminal is
refused while it trains. Unlocked, that resume finds no checkpoint yet (``train.checkpoint_every = 0``),
says the run "stopped before its first checkpoint", removes its metrics and TensorBoard events and trains it
again from step 0 in the same folder, beside the live run (what ``downpour analyze`` of such a run suggests).

The lock is ``flock`` on the run's folder itself (no file is added to the run; the kernel lets it go when the
process ends, a kill -9 included). ``flock`` locks belong to the open folder, which a forked process shares: a
process forked while a run trains (a DataLoader worker) lets go of its copy at once, or it held the lock after
the run had ended. Where ``fcntl`` is missing (not POSIX), or the filesystem locks nothing (``ENOLCK`` or
``EOPNOTSUPP`` on some NFS mounts), nothing is locked: the run trains unlocked, and the log says
so once for each such filesystem in a command (not once for each look: a ``--resume`` looks twice). A
folder that cannot be opened (this user cannot read it, it was removed meanwhile), or ``flock`` failing otherwise, is
refused, naming it and why, not taken for a filesystem that locks nothing (the run would train unlocked).

``downpour train`` holds the lock through its twin's training and its run's analysis and report too (a command
that took the folder over while ``analysis.json`` was being written would have removed a finished run's files),
and ``downpour analyze`` or ``report`` of a run being trained is refused: its files are still being written.

``downpour analyze`` and ``report`` hold the folder while they write into it (:func:`analysing`): a shared lock on it
(a training takes it whole: refused, and told the run is being analysed) and the whole lock of its ``config.toml``
(a second analysis is refused: both stage their figures in ``figures.partial/``, and the second would remove the first's
as one a killed analysis leaves; a training of the run would take it over mid-analysis). They hold
its no-faces twin and ``analysis.no_faces_run`` shared (:func:`reading`), as ``downpour train``'s own analysis holds
them (``cli_analyze._no_faces_held``; a report of a run analysed already reads neither, and holds neither), and a
cross-fit its folds while its pooled test reads them (their config.toml shared: it writes nothing there, and an
analysis of a fold refused is told which of the two holds it). ``downpour train --dry-run`` looks at what the lock
would refuse without holding it (:func:`check_free`): the whole lock, taken and let go at once (a command starting
in that instant beside it tries again a moment later: :func:`_flock`)."""
from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

from downpour.errors import NotARunError
from downpour.train.folders import make_folder

try:
    import fcntl
except ImportError:      # pragma: no cover  (Windows)
    fcntl = None   # type: ignore[assignment]

__all__ = ["FolderBusy", "analysing", "check_free", "check_not_training", "is_analysed", "is_training", "reading",
           "training", "training_in"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_HELD: set[int] = set()     # the descriptors of the locks this process holds now (a forked child closes its copies)
_UNLOCKABLE: set[int] = set()   # the filesystems (st_dev) found to lock nothing, said once each
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}   # flock's words: a filesystem locks nothing
_AGAIN = (0.01, 0.05)      # seconds waited before each try again of a lock held (:func:`_flock`)


class FolderBusy(NotARunError):
    """A folder another process holds the lock of (``path``): it is being ``doing`` now ("trained", "analysed")."""

    def __init__(self, message: str, path: Path, doing: str = "trained") -> None:
        super().__init__(message)
        self.path = path
        self.doing = doing


def _let_go_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)      # the child's copy only: the parent's lock stays
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_let_go_in_child)


@contextmanager
def training(path: str | Path, what: str = "the run folder") -> Iterator[None]:
    """Hold the folder ``path``'s lock while the block trains it; a folder not there yet is made first, empty (so a
    new run is locked as it starts; RunExistsError naming ``what`` where it cannot be made)."""
    path = make_folder(Path(path), what)
    try:
        fd = _locked(path, fcntl.LOCK_EX) if fcntl is not None else None
    except FolderBusy:
        if not _analysed(path):
            raise
        raise _being_analysed(path) from None
    with _holding(fd):
        yield


@contextmanager
def training_in(path: str | Path, make: Callable[[], T]) -> Iterator[T]:
    """``make()`` (what makes the run in the folder ``path``, or takes over what is there), then the block, the
    folder's lock held over both (what ``make`` takes over may be another process's live run); a folder not there
    yet is made first, empty (a run is written into an empty folder, so a failed start leaves one a rerun takes).
    A folder locked only once ``make`` had made its run would let the same command started beside it in that moment
    take the run over as one that never started, its config.toml written over with its own."""
    with training(path):
        yield make()


@contextmanager
def analysing(path: str | Path, then: str, then_analysed: str, writes: bool = True) -> Iterator[None]:
    """Hold the run folder ``path`` while the block analyses it (``downpour analyze``, ``report``): FolderBusy
    naming the run, then ``then``, where another process trains it now (``then_analysed``: analyses it).
    ``writes``: the block writes into it (its config.toml held whole); False: it only reads it (a cross-fit's pooled
    test of its folds: config.toml held shared, so that :func:`is_analysed` tells the two apart). ``downpour
    train``'s own analysis runs under its training's lock, not this. A path that is no folder, or no run: nothing
    held (the analysis says what it is)."""
    path = Path(path)
    with ExitStack() as held:
        if fcntl is not None and path.is_dir():
            held.enter_context(_holding(_locked(path, fcntl.LOCK_SH, then)))
            if (path / "config.toml").is_file():
                try:
                    how = fcntl.LOCK_EX if writes else fcntl.LOCK_SH
                    held.enter_context(_holding(_locked(path / "config.toml", how)))
                except FolderBusy:
                    raise _busy(path, then_analysed, "analysed") from None
        yield


@contextmanager
def reading(path: str | Path, then: str) -> Iterator[None]:
    """Hold the folder ``path`` shared while the block reads a run there it does not write (a run's no-faces twin, read
    by its analysis): FolderBusy naming it, then ``then``, where another process trains it now; a training of it
    meanwhile is refused as it being analysed. A folder not there: nothing held."""
    path = Path(path)
    with _holding(_locked(path, fcntl.LOCK_SH, then) if fcntl is not None and path.is_dir() else None):
        yield


def check_free(path: str | Path) -> None:
    """FolderBusy where :func:`training` of the folder ``path`` would be refused now (being trained, or analysed or
    read), in its words, found without holding it (``downpour train --dry-run``): a shared look, then a look for the
    whole lock, each let go at once. The shared look and one at its config.toml alone would find a folder
    :func:`reading` alone holds (a twin its run's analysis scores) free, the dry run going ahead where the command is
    refused."""
    check_not_training(path)
    if fcntl is not None and Path(path).is_dir():
        try:
            _look(path, fcntl.LOCK_EX)
        except FolderBusy:    # (held shared: an analysis of it, or a reader of it)
            raise _being_analysed(path) from None


def check_not_training(path: str | Path) -> None:
    """FolderBusy (a NotARunError) when another process is training the run in ``path`` now, saying to let it finish,
    or stop it, then ``downpour train --resume PATH`` (what goes on after a stop)."""
    if fcntl is None or not Path(path).is_dir():
        return
    _look(path, fcntl.LOCK_SH)


def is_analysed(path: str | Path) -> bool:
    """Whether another process writes an analysis into the run folder ``path`` now (:func:`analysing` holds its
    config.toml whole); False where one only reads it (a cross-fit's pooled test), and where nothing can be locked."""
    config = Path(path) / "config.toml"
    if fcntl is None or not config.is_file():
        return False
    try:
        _look(config, fcntl.LOCK_SH)
    except FolderBusy:
        return True
    return False


def is_training(path: str | Path) -> bool:
    """Whether another process holds the lock of the folder ``path`` whole now, training it (False where an analysis
    holds it shared, and where nothing can be locked)."""
    try:
        check_not_training(path)
    except FolderBusy:
        return True
    return False


@contextmanager
def _holding(fd: int | None) -> Iterator[None]:
    """The lock ``fd`` holds (None: none), let go after the block (a forked child closes its copy at once)."""
    if fd is None:
        yield
        return
    _HELD.add(fd)
    try:
        yield
    finally:
        _HELD.discard(fd)
        os.close(fd)       # (releases the lock)


def _analysed(path: Path) -> bool:
    """Whether the folder ``path``, found locked, is held shared (an analysis, :func:`analysing`), not whole."""
    try:
        _look(path, fcntl.LOCK_SH)
    except FolderBusy:
        return False
    return True


def _look(path: str | Path, how: int) -> None:
    """FolderBusy where the lock ``how`` of ``path`` cannot be taken now (:func:`_locked`); taken, it is let go at once."""
    fd = _locked(path, how)
    if fd is not None:
        os.close(fd)


def _locked(path: str | Path, how: int, then: str = "") -> int | None:
    """A descriptor of the folder ``path`` holding its lock ``how``; None where the filesystem locks nothing
    (:data:`_NO_LOCKS`, logged once a filesystem); FolderBusy naming the run where another process holds it;
    NotARunError naming ``path`` and why where it cannot be opened, or flock fails otherwise (such a folder, one this
    user cannot read or one removed meanwhile, is not taken for a filesystem that locks nothing: the run would train
    unlocked, with a warning)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise NotARunError(f"{str(path)!r} cannot be opened to hold its lock ({err.strerror or err}): downpour holds "
                           "it while a run there is trained or analysed, so that no other process takes it over; let "
                           "this user read it (or name another folder), then run this command again") from None
    try:
        _flock(fd, how)
        return fd
    except BlockingIOError:
        os.close(fd)
        raise _busy(path, then) from None
    except OSError as err:
        device = os.fstat(fd).st_dev
        os.close(fd)
        if err.errno not in _NO_LOCKS:
            raise NotARunError(f"{str(path)!r} cannot be locked ({err.strerror or err}): downpour holds it while a run "
                               "there is trained or analysed, so that no other process takes it over") from None
        if device not in _UNLOCKABLE:    # (NFS, some FUSE mounts): a run there trains unlocked
            _UNLOCKABLE.add(device)
            log.warning("%s: its folder cannot be locked (%s): a `downpour train --resume` of it (or of a run beside "
                        "it, on the same filesystem) from another terminal is not refused while it trains", path,
                        err.strerror or err)
        return None


def _flock(fd: int, how: int) -> None:
    """The lock ``how`` of ``fd``, tried again after each wait of :data:`_AGAIN` where another holds it (BlockingIOError
    once the last try fails): a look (:func:`_look`: a dry run's :func:`check_free`, a cross-fit's :func:`is_training`)
    holds a lock for an instant, and a command starting in that instant is not refused as if the folder were
    being trained or analysed."""
    for wait in _AGAIN:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(wait)
    fcntl.flock(fd, how | fcntl.LOCK_NB)


def _being_analysed(path: str | Path) -> FolderBusy:
    """The refusal of a training of the folder ``path`` an analysis holds (:func:`analysing`, :func:`reading`)."""
    return _busy(path, "let it finish, then run this command again", "analysed")


def _busy(path: str | Path, then: str = "", doing: str = "trained") -> FolderBusy:
    then = then or (f"let it finish, or stop it (Ctrl-C or SIGTERM save a checkpoint), then `downpour train --resume "
                    f"{path}`")
    return FolderBusy(f"{str(path)!r} is being {doing} now by another downpour process: {then}", Path(path), doing)
