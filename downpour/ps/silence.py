"""How long a busy worker may stay silent before the Ray driver takes it for lost (``cluster.silent_seconds``).

A worker is *busy* while it holds a cycle the driver granted and has not reported; its silence runs from its last
report (or from the grant that made it busy: an idle worker, one a sync round or the warm start holds back, is
never silent). Both driving loops, and Sandblaster's pool on Ray (a unit for a cycle), ask :meth:`Silence.overdue`
after each turn and lose the workers it names as they lose a dead one: a cycle that never returns (a node gone
silent, a hung data read, a deadlock in a worker) would otherwise hang the whole run (the task loop's ``ray.wait``
would have no timeout unless a restart was under way; the piped loop would poll a worker's channel for as long as it
held a credit).

The limit, ``cluster.silent_seconds`` > 0, is that many seconds for every cycle. Left at 0 (the default) it follows
the run: :data:`FACTOR` times the longest silence any worker has ended so far, never under :data:`FLOOR`, and an
actor's first cycle (a fresh actor's warm-up: the first fetch, CUDA, a stream's first files) gets
:data:`FIRST_FLOOR` and is left out of that longest silence, though any cycle may take :data:`FIRST_FACTOR` times
the longest first cycle (else, where every cycle takes 350 s, each worker's second is lost).
Measured (362 worker profiles of Ray runs in cluster.json on this machine, 2026-12-05): a cycle's mean wall time
0.015 s at the median, 0.26 s at the slowest (video frames decoded in the cycle), so FLOOR is over 1000 such cycles,
and only a model whose cycles take 15 s or more moves the limit off it.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

FLOOR = 300.0         # seconds: the least any worker's silence may last before it is lost (auto)
FIRST_FLOOR = 600.0   # seconds: an actor's first cycle (its warm-up), auto
FACTOR = 20.0         # times the longest silence a worker ended, past its first cycle (auto)
# times the longest first cycle (warm-up and a cycle together) any later cycle may take, auto: were the first
# cycles to teach the limit nothing, where every cycle takes 350 s (a big batch, many steps a push) each worker's
# second would be lost at FLOOR (scripted, 2 workers: both lost at step 2 of 24). 2x, not FACTOR: a 100 s warm-up
# (CUDA, a stream's first files) leaves the limit at FLOOR; only a first cycle over 150 s moves it
FIRST_FACTOR = 2.0
# seconds: a driver turn (from its wait's return to its next wait) longer than this is a stall, and its time past this
# is no worker's silence. A report that came during it is read only when the driver waits again: were the stall counted,
# the silence it ended would hold it, and FACTOR times it become the limit (scripted: one 1000 s stall in a push's
# record, a checkpoint on a slow disk: the next worker to hang was lost after 20000 s, not 300 s). A turn that records a
# push takes milliseconds; shorter turns count in full, so a driver always busy with other pushes still loses a hung
# worker
STALL = 1.0


def start_limit(seconds: float) -> float:
    """Seconds the run's start waits for its actors' first answers (:func:`downpour.ps.connect_on_ray.gathered`):
    ``cluster.silent_seconds`` where it is over :data:`FIRST_FLOOR`, else FIRST_FLOOR. An actor Ray has no room for
    says nothing, as a silent worker does, and unbounded the start would wait for it for good. Not less than
    FIRST_FLOOR, what an actor's first cycle gets: the answer waits for the actor's start (a fresh process's imports,
    the model, its data shard), and a limit set for cycles is too short for it (a 0-CPU shard actor took over 3 s to
    answer on the 2-core machine under load; a 3 s limit failed that run)."""
    return max(seconds, FIRST_FLOOR)


class Silent(Exception):
    """A busy worker said nothing for longer than the limit: lost as a dead one is, ``reason`` its loss's reason."""

    def __init__(self, w: int, seconds: float, limit: float):
        self.reason = f"silent for {seconds:.0f} s, limit {limit:.0f} s"   # (no brackets: the report brackets reasons)
        super().__init__(f"worker {w} {self.reason}")


class Silence:
    """Each busy worker's silence, the longest any ended, and the limit. The clock is ``time.monotonic``, read at
    each call (tests put a stand-in's there), less the driver's stalls: the driving loop waits for reports inside
    :meth:`listening`, and a turn between two waits past :data:`STALL` is time nobody listened (each report of it is
    read when the wait starts again), counted in no worker's silence."""

    def __init__(self, seconds: float = 0.0, workers: int = 0):
        self.seconds = seconds                  # cluster.silent_seconds: 0 = the auto limit
        self.since: dict[int, float] = {}       # busy worker -> when its silence began
        self.first = set(range(workers))        # workers whose current actor has not reported yet (all, at the start)
        self.longest = 0.0                      # the longest silence a worker ended past its first cycle
        self.longest_first = 0.0                # the longest first cycle a worker ended
        self.stalled = 0.0                      # seconds of the driver's stalls past STALL (the turn under way: _now)
        self._woke: float | None = None         # when the driver's last wait returned (None: it waits, or never did)

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Around the driving loop's wait for reports: the turn since its last wait is weighed (:meth:`waiting`), and
        the next turn starts when the wait returns (:meth:`woke`)."""
        self.waiting()
        yield
        self.woke()

    def woke(self) -> None:
        """The driver's wait returned: it is not listening until :meth:`waiting`."""
        self._woke = time.monotonic()

    def waiting(self) -> None:
        """The driver waits for reports again: its turn's time past :data:`STALL` is a stall."""
        if self._woke is not None:
            self.stalled += max(0.0, time.monotonic() - self._woke - STALL)
            self._woke = None

    def _now(self) -> float:
        """The clock silences are measured on: ``time.monotonic`` less every stall so far, the current turn's too."""
        now = time.monotonic()
        turn = 0.0 if self._woke is None else max(0.0, now - self._woke - STALL)
        return now - self.stalled - turn

    def fresh(self, w: int) -> None:
        """Worker ``w`` has a new actor (the run's start, a restart): its first cycle is its warm-up."""
        self.first.add(w)
        self.since.pop(w, None)

    def busy(self, w: int) -> None:
        """A cycle was granted to ``w``: silent from now, unless it already was."""
        self.since.setdefault(w, self._now())

    def spoke(self, w: int, busy: bool) -> None:
        """``w`` reported a cycle; ``busy``: it still holds another (its silence starts again now)."""
        now = self._now()
        began = self.since.pop(w, now)
        if w in self.first:
            self.first.discard(w)
            self.longest_first = max(self.longest_first, now - began)
        else:
            self.longest = max(self.longest, now - began)
        if busy:
            self.since[w] = now

    def forget(self, w: int) -> None:
        """``w`` was lost: nothing of it is waited for."""
        self.since.pop(w, None)
        self.first.discard(w)

    def limit(self, w: int) -> float:
        """Seconds worker ``w`` may stay silent now: ``seconds`` if set, else the auto limit (module docstring)."""
        if self.seconds > 0:
            return self.seconds
        return max(FIRST_FLOOR if w in self.first else FLOOR, FACTOR * self.longest, FIRST_FACTOR * self.longest_first)

    def overdue(self) -> list[tuple[int, float, float]]:
        """``(worker, seconds silent, limit)`` of each busy worker past its limit, lowest worker first."""
        now = self._now()
        return [(w, now - began, self.limit(w)) for w, began in sorted(self.since.items())
                if now - began >= self.limit(w)]

    def timeout(self) -> float | None:
        """Seconds until the next busy worker's limit runs out (None: no worker is busy)."""
        if not self.since:
            return None
        now = self._now()
        return max(0.0, min(began + self.limit(w) - now for w, began in self.since.items()))
