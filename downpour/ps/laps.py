"""Where a Ray run's time goes: per-phase wall seconds and the CPU time of each process (issue 16).

Each process of a Ray run (the driver, every worker actor, every shard actor) keeps one
:class:`Laps`; the driver collects the reports at the end of a run into ``cluster.json``'s
``profile``, which ``bench/training_throughput.py`` prints as its ``breakdown`` row.

    laps = Laps()
    t = perf_counter()
    ...                          # fetch
    t = laps.add("fetch", t)     # seconds since t added to "fetch"; returns now, the next phase's start
    laps.report()                # {"since", "wall_s", "cpu_s", "seconds": {...}, "counts": {...}}

Cheap on purpose: a phase costs one ``perf_counter`` call and a dict update (well under a
microsecond), against a 20-40 ms training step.
"""
from __future__ import annotations

import time
from typing import Any


class Laps:
    """Wall seconds summed per named phase, counts of named events, and this process's CPU time
    (all its threads: torch's, Ray's) since construction or the last :meth:`mark`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.mark()

    def mark(self) -> None:
        """Count wall and CPU time from now (e.g. from the first training step: start-up left out)."""
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def add(self, phase: str, t0: float) -> float:
        """Add the seconds since ``t0`` (a ``perf_counter`` reading) to ``phase``; returns now."""
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - t0
        return now

    def count(self, event: str, n: int = 1) -> None:
        self.counts[event] = self.counts.get(event, 0) + n

    def report(self) -> dict[str, Any]:
        """``since``: the ``perf_counter`` reading of the mark (CLOCK_MONOTONIC on Linux: the same clock in
        every process of the machine, so windows of different processes compare)."""
        return {"since": self._wall0, "wall_s": round(time.perf_counter() - self._wall0, 4),
                "cpu_s": round(time.process_time() - self._cpu0, 4),
                "seconds": {k: round(v, 4) for k, v in self.seconds.items()}, "counts": dict(self.counts)}
