"""A doorbell: have a shard on this machine apply a staged push without a Ray actor call.

The gradient is already in the worker's shared-memory inbox (:mod:`downpour.ps.shm`); what is
left is to tell the shard's process "apply push ``seq`` of ``worker``, computed from ``base``" and
hear back whether it was accepted. A Ray actor call does that in 0.4-2 ms on a busy machine; a
named pipe does it in tens of microseconds:

- the shard's process has a daemon thread blocked in ``read()`` on its request pipe (no polling:
  it costs no CPU while nobody rings), ``<prefix>-s<j>-bell`` next to its segments;
- a ringer (:class:`Bell`: the driver, or a benchmark client) writes ``REQUEST`` (24 bytes:
  worker, seq, base) there; writes of at most PIPE_BUF bytes are atomic, so any number of ringers
  may share the pipe;
- the thread applies the push and writes ``REPLY`` (seq, accepted, reason, version, staleness) to
  the worker's reply pipe (one per worker: an inbox holds one push at a time, so one answer is
  outstanding per worker), which the ringer reads.

Plain Python (``os.mkfifo``, ``select.poll``): POSIX only, like /dev/shm.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable

REQUEST = struct.Struct("<qqq")       # worker, seq, base
REPLY = struct.Struct("<qqqqq")       # seq, accepted, reason (index into REASONS), version, staleness
REASONS = ("", "inbox", "unknown-worker", "shape", "non-finite", "version", "duplicate", "error", "round")
STOP = -1                             # a request from this worker id ends the thread

log = logging.getLogger(__name__)
Apply = Callable[[int, int, int], dict[str, Any]]   # (worker, base, seq) -> push_inbox's result dict


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o600)


class Doorbell:
    """The shard's side: a thread that calls ``apply(worker, base, seq)`` for every ring on ``path``.

    ``apply`` must do its own locking (it runs on this thread, next to the owner's other methods).
    """

    def __init__(self, path: str | Path, apply: Apply):
        self.path = Path(path)
        self._apply = apply
        self._replies: dict[int, Path] = {}
        self._out: dict[int, int] = {}    # worker -> open write end of its reply pipe
        self._lock = threading.Lock()     # guards the two dicts above (reply_to runs on the owner's thread)
        _fifo(self.path)
        # read *and* write: open() does not wait for a ringer, read() never sees EOF when ringers
        # come and go, and close() can ring STOP itself
        self._fd = os.open(self.path, os.O_RDWR)
        self._thread = threading.Thread(target=self._serve, name=f"doorbell-{self.path.name}", daemon=True)
        self._thread.start()

    def reply_to(self, worker: int, path: str | Path) -> None:
        """(Re)create ``worker``'s reply pipe at ``path`` (a restarted worker gets a new one)."""
        with self._lock:
            self._forget(worker)
            old = self._replies.pop(worker, None)
            if old is not None:
                old.unlink(missing_ok=True)
            self._replies[worker] = Path(path)
            _fifo(self._replies[worker])

    def replies(self) -> dict[int, str]:
        with self._lock:
            return {w: str(p) for w, p in self._replies.items()}

    def _forget(self, worker: int) -> None:
        fd = self._out.pop(worker, None)
        if fd is not None:
            os.close(fd)

    def _serve(self) -> None:
        pending = b""
        while True:
            pending += os.read(self._fd, 64 * REQUEST.size)   # blocks: no CPU while idle
            while len(pending) >= REQUEST.size:
                worker, seq, base = REQUEST.unpack_from(pending)
                pending = pending[REQUEST.size:]
                if worker == STOP:
                    return
                try:
                    result = self._apply(worker, base, seq)
                except Exception:  # noqa: BLE001 - a bug in apply must not leave the ringer waiting
                    log.exception("doorbell %s: push %d of worker %d failed", self.path.name, seq, worker)
                    result = {"accepted": False, "reason": "error", "version": -1, "staleness": 0}
                self._answer(worker, seq, result)

    def _answer(self, worker: int, seq: int, result: dict[str, Any]) -> None:
        reason = REASONS.index(result["reason"]) if result["reason"] in REASONS else len(REASONS)
        msg = REPLY.pack(seq, int(result["accepted"]), reason, result["version"], result["staleness"])
        with self._lock:
            try:
                if worker not in self._out:
                    # non-blocking: ENXIO if nobody listens (then nobody needs the answer)
                    self._out[worker] = os.open(self._replies[worker], os.O_WRONLY | os.O_NONBLOCK)
                os.write(self._out[worker], msg)
            except KeyError:
                pass                       # a worker this shard has no lane for: the push was refused anyway
            except OSError as err:         # the ringer went away (EPIPE), never came (ENXIO), stopped reading (EAGAIN)
                if err.errno not in (errno.ENXIO, errno.EPIPE, errno.EAGAIN):
                    raise
                self._forget(worker)

    def close(self) -> None:
        """Answer what was rung before, stop the thread, remove the pipes. Idempotent."""
        if self._fd < 0:
            return
        os.write(self._fd, REQUEST.pack(STOP, 0, 0))
        self._thread.join(timeout=30)
        os.close(self._fd)
        self._fd = -1
        self.path.unlink(missing_ok=True)
        with self._lock:
            for w in list(self._out):
                self._forget(w)
            for p in self._replies.values():
                p.unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


class Bell:
    """A ringer's side, for one worker's pushes to one shard: :meth:`ring`, then :meth:`answer`."""

    def __init__(self, path: str | Path, reply: str | Path):
        # the reply pipe first, so the shard finds a reader when it answers; non-blocking open
        # of a reader never waits, and poll() below does the waiting
        self._in = os.open(reply, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self._out = os.open(path, os.O_WRONLY | os.O_NONBLOCK)   # ENXIO: the shard is gone
        except OSError:
            os.close(self._in)
            raise
        os.set_blocking(self._out, True)
        self._poll = select.poll()
        self._poll.register(self._in, select.POLLIN)
        self._buf = b""

    def ring(self, worker: int, seq: int, base: int) -> None:
        try:
            os.write(self._out, REQUEST.pack(worker, seq, base))
        except BrokenPipeError as err:
            raise ConnectionError("the shard's doorbell is closed") from err

    def answer(self, seq: int, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the shard answers push ``seq``: the same dict as ``push_inbox`` returns."""
        deadline = time.monotonic() + timeout
        while True:
            while len(self._buf) >= REPLY.size:
                got, accepted, reason, version, staleness = REPLY.unpack_from(self._buf)
                self._buf = self._buf[REPLY.size:]
                if got == seq:   # an older answer (its ringer gave up waiting) is skipped
                    return {"accepted": bool(accepted), "reason": (*REASONS, "rejected")[reason],
                            "version": version, "staleness": staleness}
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from the shard for push {seq}")
            if not self._poll.poll(1e3 * left):
                continue
            chunk = os.read(self._in, 16 * REPLY.size)
            if not chunk:        # every write end closed: the shard stopped or died
                raise ConnectionError(f"the shard closed its doorbell before answering push {seq}")
            self._buf += chunk

    def close(self) -> None:
        for fd in (self._in, self._out):
            os.close(fd)
