"""Shared-memory lanes between a shard and the workers on its own machine.

A shard's parameters live in a file under /dev/shm that co-located workers map: a pull is one
memcpy out of it, guarded by a seqlock so a reader never sees a half-applied update. Each worker
has an inbox per shard: the worker copies its gradient in, and the shard applies it straight from
there when the driver says so. Nothing is pickled, no object is created per call; across machines
the Ray runner uses the object store instead (see :mod:`downpour.ps.on_ray`).

Layout of a segment: 8 int64 header words, then (n,) float32 data.
- parameters: header[0] seqlock counter (odd while the shard writes), header[1] version.
- inbox:      header[0] state (0 free, 1 full), header[1] seq, header[2] base version, header[3] the greedy
              stages the push trained, bit k for stage k (-1: every stage; :func:`stage_bits`).
- both:       header[4] the pid of the process that created it (the shard's), so a worker waiting on it can tell a
              shard gone (0: unknown, taken as alive).

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
_OWNER = 4          # header word: the creator's pid
OWNER_LOOK_SECONDS = 0.5    # how often a waiting put asks whether the inbox's shard still runs
MAX_STAGE = 62      # the last greedy stage an inbox's stages word carries (bit k for stage k; bit 63 is the sign)
SHM_DIR = Path("/dev/shm")


def available() -> bool:
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)


class Segment:
    """``n`` float32 values plus a header, in a shared file ``path`` (created or attached)."""

    def __init__(self, path: str | Path, n: int, create: bool = False):
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
            self.header[_OWNER] = os.getpid()

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
        longer runs: nothing will take what waits there. Until 2026-12-06 the put waited its ``timeout`` (the Ray
        runner's: RESTART_SECONDS + 60 s) on a dead shard's inbox, the worker held that long: on a stop its data
        report, asked for 5 s, was lost."""
        now = time.monotonic()
        deadline, look = now + timeout, now + OWNER_LOOK_SECONDS
        while self.header[0] != 0:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"shard never took push {int(self.header[1])} from inbox {self.path}")
            if now > look:
                look = now + OWNER_LOOK_SECONDS
                if not runs(int(self.header[_OWNER])):
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


class ShardGone(RuntimeError):
    """The process that created an inbox (its shard) ended: a gradient waiting there is never taken."""


def runs(pid: int) -> bool:
    """Whether process ``pid`` still runs (0: unknown, taken as running). A zombie (ended, not yet reaped by its
    parent, Ray's raylet) does not; where /proc is missing (macOS) ``kill(pid, 0)`` alone answers."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # another user's: it exists
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:    # ended since, or no /proc at all
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


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
