"""Work units and the scheduler that hands them out: Sandblaster's load balancing and backup tasks.

Dean et al. (2012): "the coordinator assigns each of the N model replicas a small portion of work,
much smaller than 1/Nth of the total size of a batch, and assigns replicas new portions whenever
they are free ... to manage slow model replicas near the end of a batch, the coordinator schedules
multiple copies of the outstanding portions and uses the result from whichever model replica
finishes first." Here a batch is cut into ``sandblaster.units`` contiguous units; a free worker
gets the next unit in the queue; once the queue is empty and ``backup_after`` of the batch's units
are done, a free worker gets a backup copy of an outstanding unit that is late (see
:class:`UnitScheduler`; at most one backup per unit). The first result of a unit wins; any later
copy is dropped.

Plain Python: the simulator and the Ray driver both ask this object what to run next.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter, deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

from downpour._names import plural


@dataclass(frozen=True)
class Unit:
    """Unit ``index`` of an evaluation: the batch's examples ``rows`` (k,) int64 (indices into the dataset)."""

    index: int
    rows: Tensor

    def __len__(self) -> int:
        return self.rows.numel()


def split_units(rows: Tensor, units: int) -> list[Unit]:
    """``rows`` (B,) cut into ``units`` contiguous, near-equal units (``units`` <= B, checked with the config)."""
    edges = [round(i * rows.numel() / units) for i in range(units + 1)]
    return [Unit(i, rows[a:b]) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]


@dataclass
class UnitCounts:
    """What a scheduler did, over one evaluation or (summed) a whole run."""

    dispatched: int = 0          # unit copies handed to workers, backups included
    backups: int = 0             # of those, backup copies
    backups_won: int = 0         # units whose first result came from the backup copy
    duplicates: int = 0          # results dropped: a unit already done (or an evaluation already over)
    examples: int = 0            # examples computed, every copy counted
    per_worker: Counter = field(default_factory=Counter)   # unit copies each worker computed
    won: Counter = field(default_factory=Counter)          # results each worker contributed

    def add(self, other: "UnitCounts") -> None:
        for key in ("dispatched", "backups", "backups_won", "duplicates", "examples"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.per_worker.update(other.per_worker)
        self.won.update(other.won)

    def per_worker_summary(self, workers: int) -> dict[str, object]:
        """The summary's ``per_worker`` {units computed, units used}, and where its units add up to less than
        ``dispatched`` (on Ray: a copy, a backup's or its primary's, still computing when the run ended, never
        collected; one running at a checkpoint a resume went on from; one lost with its worker), how many were
        not counted and why, so that 49 against units_dispatched 50 is not left unsaid."""
        out: dict[str, object] = {"per_worker": {str(w): {"units": self.per_worker[w], "used": self.won[w]}
                                                 for w in range(workers)}}
        missing = self.dispatched - sum(self.per_worker.values())
        if missing > 0:
            out["uncounted_copies"] = missing
            out["uncounted_why"] = (f"{plural(missing, 'unit copy', 'unit copies')} of units_dispatched = "
                                    f"{self.dispatched} never finished here (still computing when the run or its last "
                                    "iteration ended, or lost with its worker): per_worker does not count "
                                    f"{'it' if missing == 1 else 'them'}")
        return out

    def as_dict(self) -> dict[str, object]:
        return {"dispatched": self.dispatched, "backups": self.backups, "backups_won": self.backups_won,
                "duplicates": self.duplicates, "examples": self.examples}


class UnitScheduler:
    """The units of one evaluation: who runs what, which result counts. Times (``now``) are the
    caller's clock: virtual on the simulator, wall seconds on Ray.

    Backups are for stragglers: once no unit is left to hand out and ``backup_after`` of the units
    are done, a free worker gets a copy of the outstanding unit that has run longest, provided it is
    *late*: it has run ``LATE`` times the median time of the units done so far. (Without that test,
    workers freed a moment before the others would back up units about to finish; the copies, not
    cancelled, then hold those workers into the next batch: 17% longer batches on a cluster with no
    slow worker at all, measured with 4 workers and 12 units.) ``backup_after = 1``: never.
    """

    LATE = 1.5

    def __init__(self, units: list[Unit], backup_after: float):
        self.units = units
        self.queue: deque[int] = deque(range(len(units)))
        self.running: dict[int, dict[int, float]] = {}   # unit -> {worker: when its copy started}, primary first
        self.done: set[int] = set()
        self.backup_of: dict[int, int] = {}               # unit -> the worker running its backup copy
        self.durations: list[float] = []                  # of the units done (their first results)
        self.threshold = math.ceil(backup_after * len(units))
        self.counts = UnitCounts()

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.units)

    def _late_after(self) -> float | None:
        """How long a unit may run before it is late; None while backups are not due at all."""
        if self.queue or len(self.done) < self.threshold or not self.durations:
            return None
        return self.LATE * statistics.median(self.durations)

    def _candidates(self) -> list[tuple[float, int]]:
        """(start, unit) of the outstanding units running as a single copy."""
        return [(next(iter(ws.values())), u) for u, ws in self.running.items() if len(ws) == 1 and u not in self.done]

    def backup_due(self) -> float | None:
        """When the next outstanding unit becomes late (so a free worker should then get its backup); None: never."""
        limit = self._late_after()
        starts = [start for start, _ in self._candidates()]
        return None if limit is None or not starts else min(starts) + limit

    def next_for(self, worker: int, now: float) -> tuple[Unit, bool] | None:
        """The unit ``worker`` (free) should compute from ``now``, and whether it is a backup; None: nothing now."""
        if self.queue:
            u, backup = self.queue.popleft(), False
        else:
            limit = self._late_after()
            late = [(start, u) for start, u in self._candidates()
                    if limit is not None and now - start >= limit * (1 - 1e-9) and worker not in self.running[u]]
            if not late:
                return None
            u, backup = min(late)[1], True          # the one that has run longest
        self.running.setdefault(u, {})[worker] = now
        if backup:
            self.backup_of[u] = worker
        self.counts.dispatched += 1
        self.counts.backups += backup
        return self.units[u], backup

    def finish(self, unit: int, worker: int, now: float) -> bool:
        """``worker`` finished a copy of ``unit`` at ``now``: True if it is the unit's first result (use
        it), False if the unit is already done or the copy is not one this scheduler handed out (a late
        copy of an earlier evaluation): drop it, counted in ``duplicates``."""
        copies = self.running.get(unit, {})
        if worker not in copies:
            self.late(worker, len(self.units[unit]))
            return False
        self.counts.per_worker[worker] += 1
        self.counts.examples += len(self.units[unit])
        started = copies.pop(worker)
        if not copies:
            self.running.pop(unit, None)
        if unit in self.done:
            self.counts.duplicates += 1
            return False
        self.done.add(unit)
        self.durations.append(now - started)
        self.counts.won[worker] += 1
        self.counts.backups_won += int(self.backup_of.get(unit) == worker)
        return True

    def late(self, worker: int, examples: int) -> None:
        """``worker`` finished a copy of a unit of an evaluation already over: dropped, counted here."""
        self.counts.per_worker[worker] += 1
        self.counts.examples += examples
        self.counts.duplicates += 1

    def abandon(self, worker: int) -> None:
        """``worker`` was lost: its units with no other copy go back to the front of the queue."""
        for u, ws in list(self.running.items()):
            if worker in ws:
                del ws[worker]
                if not ws:
                    del self.running[u]
                    if u not in self.done:
                        self.queue.appendleft(u)


def batch_rows(n: int, batch: int, seed: int, iteration: int) -> Tensor:
    """The examples of L-BFGS iteration ``iteration``: all ``n`` (``batch`` 0) or ``batch`` drawn
    without replacement, seeded by (seed, iteration), so a resumed run draws the same ones."""
    if batch == 0 or batch >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + 104_729 * (iteration + 1))
    return torch.randperm(n, generator=generator)[:batch]
