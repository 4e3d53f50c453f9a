"""Shared-memory lanes between a shard and the workers on its own machine.

A shard's parameters live in a file under /dev/shm that co-located workers map: a pull is one
memcpy out of it, guarded by a seqlock so a reader never sees a half-applied update. Each worker
has an inbox per shard: the worker copies its gradient in, and the shard applies it straight from
there when the driver says so. Nothing is pickled, no object is created per call; across machines
the Ray runner uses the object store instead (see :mod:`downpour.ps.shards_on_ray`).

Layout of a segment: 8 int64 header words, then (n,) float32 data.
- parameters: header[0] seqlock counter (odd while the shard writes), header[1] version.
- inbox:      header[0] state (0 free, 1 full), header[1] seq, header[2] base version, header[3] the greedy
              stages the push trained, bit k for stage k (-1: every stage; :func:`stage_bits`).
- both:       header[4] the pid of the process that created it (the shard's), header[5] that process's start time
              (:func:`start_time`), so a worker waiting on it can tell a shard gone, even once its pid is reused
              (0: unknown, taken as alive; a start time of 0: unknown, the pid alone answers).
- inbox:      header[6] the pid of its writer (a process that attached with ``writer=True``: 0, none has), header[7]
              that process's start time: the shard frees a retired inbox once its writer is gone
              (``ShardServer.new_inbox``).

:func:`sweep_stale_segments` removes what a driver killed by SIGKILL left behind.

Plain Python + NumPy + mmap (the header words are read and written as aligned int64, which x86
and ARMv8 do atomically; the seqlock relies on stores becoming visible in order, as on x86).
"""
from __future__ import annotations

import mmap
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

HEADER = 8          # int64 words
_OWNER = 4          # header words: the creator's pid, then its start time
_WRITER = 6         # header words: the writer's pid, then its start time
OWNER_LOOK_SECONDS = 0.5    # how often a waiting put asks whether the inbox's shard still runs
MAX_STAGE = 62      # the last greedy stage an inbox's stages word carries (bit k for stage k; bit 63 is the sign)
SHM_DIR = Path("/dev/shm")
PROC = Path("/proc")     # (missing on macOS)


def available() -> bool:
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)


class Segment:
    """``n`` float32 values plus a header, in a shared file ``path`` (created or attached). An inbox's writer
    attaches with ``writer=True``: its identity goes into the header (:meth:`writer_gone`)."""

    def __init__(self, path: str | Path, n: int, create: bool = False, writer: bool = False):
        self.path, self.n = Path(path), n
        size = 8 * HEADER + 4 * n
        if create:   # readable by this user only: the parameters and gradients of a run are its own
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.truncate(size)
        with open(self.path, "r+b") as f:
            self._map = mmap.mmap(f.fileno(), size)
            self.header = np.frombuffer(self._map, dtype=np.int64, count=HEADER)
            self.data = np.frombuffer(self._map, dtype=np.float32, count=n, offset=8 * HEADER)
            self.owner = create
            if create:
                _stamp(self.header, _OWNER)
            if writer:
                _stamp(self.header, _WRITER)
                # unlinked before the claim could be seen (a retired inbox; the shard may have judged it writerless
                # and let it go): this writer was superseded, and never writes there
                if os.fstat(f.fileno()).st_nlink == 0:
                    self.close()
                    raise FileNotFoundError(f"inbox {self.path} was retired while its writer attached")

    def close(self) -> None:
        del self.header, self.data
        try:
            self._map.close()
        except BufferError:   # a caller still holds a view: the mapping goes with the process
            pass
        if self.owner:
            self.path.unlink(missing_ok=True)

    # --- parameters: seqlock ------------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Wrap every change of ``data``; readers retry while the counter is odd or has moved."""
        self.header[0] += 1
        try:
            yield
        finally:
            self.header[0] += 1

    def set_version(self, version: int) -> None:
        self.header[1] = version

    def read_into(self, out: np.ndarray, timeout: float = 60.0) -> int:
        """Copy a consistent snapshot of ``data`` into ``out`` (n,); returns its version. Raises
        TimeoutError when a write stays open for ``timeout`` seconds (a shard killed mid-write: its
        reader spun on forever, and the worker with it)."""
        deadline = None
        while True:
            before = int(self.header[0])
            if before % 2:
                deadline = deadline or time.monotonic() + timeout
                if time.monotonic() > deadline:
                    raise TimeoutError(f"shard segment {self.path} stayed mid-write for {timeout:g} s: its shard died writing?")
                time.sleep(0)
                continue
            version = int(self.header[1])
            np.copyto(out, self.data)
            if int(self.header[0]) == before:
                return version

    # --- inbox: one gradient at a time ----------------------------------------------------------
    def put(self, grad: np.ndarray, seq: int, base: int, timeout: float = 60.0,
            stages: tuple[int, ...] | None = None) -> None:
        """Worker side: wait until the shard took the previous gradient, then leave this one (which trained
        greedy ``stages``; None: every stage). Raises :class:`ShardGone` once the shard that created the inbox no
        longer runs: nothing will take what waits there. Waiting its ``timeout`` (the Ray runner's: RESTART_SECONDS +
        60 s) on a dead shard's inbox would hold the worker that long: on a stop its data report, asked for 5 s,
        would be lost."""
        now = time.monotonic()
        deadline, look = now + timeout, now + OWNER_LOOK_SECONDS
        while self.header[0] != 0:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"shard never took push {int(self.header[1])} from inbox {self.path}")
            if now > look:
                look = now + OWNER_LOOK_SECONDS
                if not runs(int(self.header[_OWNER]), int(self.header[_OWNER + 1])):
                    raise ShardGone(f"the shard of inbox {self.path} (pid {int(self.header[_OWNER])}) no longer runs: "
                                    f"push {int(self.header[1])} waiting there will never be taken")
            time.sleep(0.0002)
        np.copyto(self.data, grad)
        self.header[1], self.header[2], self.header[3] = seq, base, stage_bits(stages)
        self.header[0] = 1

    def take(self) -> tuple[np.ndarray, int, int, tuple[int, ...] | None] | None:
        """Shard side: the waiting gradient (a view: use it before :meth:`release`), seq, base and the stages
        it trained (None: every stage)."""
        if self.header[0] != 1:
            return None
        return self.data, int(self.header[1]), int(self.header[2]), bits_stages(int(self.header[3]))

    def release(self) -> None:
        self.header[0] = 0

    def writer_gone(self) -> bool:
        """Whether the process that attached as this inbox's writer no longer runs (True where none has). Once the
        file is unlinked no other can attach (one that opened it just before and claims after sees the unlink and
        refuses it, ``__init__``): the answer True is then final, nothing more will land here."""
        pid = int(self.header[_WRITER])
        return pid == 0 or not runs(pid, int(self.header[_WRITER + 1]))


class ShardGone(RuntimeError):
    """The process that created an inbox (its shard) ended: a gradient waiting there is never taken."""


def runs(pid: int, start: int = 0) -> bool:
    """Whether process ``pid``, started at ``start`` (:func:`start_time`; 0: unknown), still runs (pid 0: unknown,
    taken as running). A zombie (ended, not yet reaped by its parent, Ray's raylet) does not, nor a process that
    reuses the pid of one that ended (its start time differs: asked by pid alone, a dead shard whose pid went to
    another process would be taken as running for good). Where /proc is missing (macOS)
    ``kill(pid, 0)`` alone answers, and a reused pid still reads as running: a waiting put then waits its timeout."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # another user's: it exists (its start time is still read below)
        pass
    try:
        fields = _stat(pid)
    except FileNotFoundError:    # ended since, or no /proc at all
        return not (PROC / "self").exists()
    except (OSError, IndexError, ValueError):
        return True
    return fields[0] != "Z" and (start == 0 or int(fields[19]) == start)


def start_time(pid: int) -> int:
    """When process ``pid`` started, in clock ticks after boot (/proc/PID/stat field 22): with the pid, a process's
    identity, as a pid alone is not once it is reused. 0 where unknown (no /proc: macOS)."""
    try:
        return int(_stat(pid)[19])
    except (OSError, IndexError, ValueError):
        return 0


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields from the third (the state) on: the command name before them may hold spaces."""
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()


def _stamp(header: np.ndarray, word: int) -> None:
    """This process's identity into ``header[word]`` (pid) and ``header[word + 1]`` (start time), the start time
    first: a reader that sees the pid sees its start time too."""
    pid = os.getpid()
    header[word + 1] = start_time(pid)
    header[word] = pid


def stage_bits(stages: tuple[int, ...] | None) -> int:
    """``stages`` (each 0..62) as one header word: bit k for stage k; None (every stage) as -1."""
    if stages is None:
        return -1
    if any(not 0 <= k <= MAX_STAGE for k in stages):
        raise ValueError(f"greedy stages {stages!r}: an inbox carries stages 0..{MAX_STAGE}")
    return sum(1 << k for k in set(stages))


def bits_stages(word: int) -> tuple[int, ...] | None:
    """:func:`stage_bits` back."""
    return None if word == -1 else tuple(k for k in range(MAX_STAGE + 1) if word >> k & 1)


def sweep_stale_segments() -> int:
    """Remove /dev/shm/downpour-<pid>-* files whose driver process (``pid``) is gone: what a
    driver killed by SIGKILL leaves behind. Returns how many were removed."""
    removed = 0
    for path in SHM_DIR.glob("downpour-*"):
        pid = path.name.split("-")[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            removed += 1
        except PermissionError:
            pass                 # another user's live process
    return removed
