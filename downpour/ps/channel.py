"""A worker's line to a driver on its machine: cycles granted one way, their pushes reported back,
without a Ray task per cycle (issue 16).

With one Ray actor call per push cycle, a worker hands its thread back to Ray between cycles, and
Ray's hand-off (reply sent, next queued task started) left the worker idle 2.4-4 ms per cycle on a
busy 2-core machine: 10% of a cat-demo step. Over this channel the worker runs one long Ray task
(``WorkerActor.serve``) and never returns between cycles:

- the driver writes a *credit* (steps, first) for each cycle the coordinator grants (``first``: the
  run's index of its first step, which sets each step's greedy stage)
  (``GRANT``, 16 bytes, into ``<path>-go``); the worker blocks in ``read()`` only when it has none,
  and with the driver's usual two cycles granted ahead it never does;
- after each cycle (its gradient already staged in the shards' inboxes) the worker writes the
  push's metadata as one length-prefixed JSON frame into ``<path>-done``; the driver polls those
  pipes, rings the shards and grants the next cycle. A frame is written only once the push is in
  every inbox, so the driver applies it to every shard or (the worker died before writing) to none.

Both are named pipes created by the driver, which opens each one read-write (open never waits,
and a worker that dies never makes the driver's end see EOF: the driver learns of a death from
the serve task's Ray reference). Plain Python, POSIX only, like the doorbell.
"""
from __future__ import annotations

import json
import os
import select
import struct
from pathlib import Path
from typing import Any

GRANT = struct.Struct("<qq")     # steps (STOP: end serving), the run's index of the cycle's first step
FRAME = struct.Struct("<I")      # length of the JSON that follows
STOP = -1


def _fifo(path: Path) -> int:
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o600)
    return os.open(path, os.O_RDWR)


class DriverEnd:
    """The driver's side of one worker's channel at ``path`` (``-go`` and ``-done`` are appended)."""

    def __init__(self, path: str | Path):
        self.go, self.done = Path(f"{path}-go"), Path(f"{path}-done")
        self._out, self._in = _fifo(self.go), _fifo(self.done)
        os.set_blocking(self._in, False)
        self._buf = b""

    @property
    def fd(self) -> int:
        """What to poll for reports."""
        return self._in

    def grant(self, steps: int, first: int) -> None:
        os.write(self._out, GRANT.pack(steps, first))

    def stop(self) -> None:
        os.write(self._out, GRANT.pack(STOP, 0))

    def reports(self) -> list[dict[str, Any]]:
        """Every complete frame waiting, oldest first (none: an empty list; never blocks)."""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except BlockingIOError:
                break
            self._buf += chunk
            if len(chunk) < 1 << 16:
                break
        out = []
        while len(self._buf) >= FRAME.size:
            (n,) = FRAME.unpack_from(self._buf)
            if len(self._buf) < FRAME.size + n:
                break
            out.append(json.loads(self._buf[FRAME.size:FRAME.size + n]))
            self._buf = self._buf[FRAME.size + n:]
        return out

    def close(self) -> None:
        """Close and remove both pipes (a worker still holding them keeps its ends). Idempotent."""
        for fd in (self._out, self._in):
            if fd >= 0:
                os.close(fd)
        self._out = self._in = -1
        self.go.unlink(missing_ok=True)
        self.done.unlink(missing_ok=True)


def wait(ends: list[DriverEnd], timeout_s: float) -> list[DriverEnd]:
    """The ends with a report waiting, after at most ``timeout_s`` seconds."""
    poller = select.poll()
    by_fd = {e.fd: e for e in ends}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(1e3 * timeout_s)]


class WorkerEnd:
    """The worker's side: :meth:`next_grant` (blocks until the driver grants a cycle), :meth:`report`."""

    def __init__(self, go: str | Path, done: str | Path):
        self._in, self._out = os.open(go, os.O_RDONLY), os.open(done, os.O_WRONLY)
        self._buf = b""

    def next_grant(self) -> tuple[int, int]:
        """(steps, the cycle's first step index); steps is :data:`STOP` when the driver is done with this worker."""
        while len(self._buf) < GRANT.size:
            chunk = os.read(self._in, 64 * GRANT.size)
            if not chunk:
                return STOP, 0
            self._buf += chunk
        steps, first = GRANT.unpack_from(self._buf)
        self._buf = self._buf[GRANT.size:]
        return steps, first

    def report(self, meta: dict[str, Any]) -> bool:
        """Write the push's frame; False if the driver has closed its end (it is done with this worker: the serve
        task ends), not a BrokenPipeError: that would fail the serve task of a worker mid-cycle when the driver closes
        on a stop, and Ray would print the failure, never read, as an "Unhandled error" traceback."""
        body = json.dumps(meta).encode()
        frame = memoryview(FRAME.pack(len(body)) + body)
        try:
            while frame:            # a frame over PIPE_BUF can go in parts (a signal between them): all of it
                frame = frame[os.write(self._out, frame):]
        except BrokenPipeError:
            return False
        return True

    def close(self) -> None:
        os.close(self._in)
        os.close(self._out)
