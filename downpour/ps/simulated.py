"""The simulated cluster: N workers and M shards in one process, in virtual time.

Each worker step takes a duration drawn from the worker's delay model (``cluster.delay``). Events
are processed in (virtual time, order of scheduling) order, so the run is a pure function of the
config and seed: same seed, same config, identical parameters, metrics and staleness log.

A worker fetches at the start of a step (when due) and pushes when the step ends, so every push
that lands in between makes its gradient staler: a larger delay spread gives larger staleness.
"""
from __future__ import annotations

import heapq
from typing import Callable

from downpour.ps.coordinator import Coordinator
from downpour.ps.delays import delay_rngs, make_delays
from downpour.ps.job import Job, make_worker
from downpour.ps.shard import Shard
from downpour.ps.worker import Push, Worker

OnPush = Callable[[Push, dict], None]   # (the push, its record) -> None


def push_to_shards(shards: list[Shard], push: Push) -> dict:
    """Send one push to every shard; returns staleness (mean over shards) and acceptance."""
    stale = [s.version - b for s, b in zip(shards, push.base)]
    results = [s.push(push.worker, g, b, push.seq) for s, g, b in zip(shards, push.grads, push.base)]
    return {"staleness": sum(stale) / len(stale), "staleness_max": max(stale),
            "accepted": sum(r.accepted for r in results), "version": max(s.version for s in shards)}


class SimulatedCluster:
    """Runs ``coord``'s budget of steps with ``shards`` (already restored on resume)."""

    def __init__(self, job: Job, shards: list[Shard], coord: Coordinator, stage_of: Callable[[int], int | None],
                 start_step: int = 0, seqs: dict[int, int] | None = None):
        cfg = job.cfg
        self.job, self.shards, self.coord, self.stage_of = job, shards, coord, stage_of
        n = cfg.cluster.workers
        seqs = seqs or {}
        self.workers: list[Worker] = [make_worker(cfg, w, job.data.shard(w, n), job.bounds, start_step, seqs.get(w, 0))
                                      for w in range(n)]
        self.delays = make_delays(cfg.cluster.delay, n)
        self.rngs = delay_rngs(cfg.seed + start_step, n)
        self.now = 0.0
        self._heap: list[tuple[float, int, int]] = []
        self._order = 0
        self._left = [0] * n        # steps left in each worker's current cycle
        self._blocked: set[int] = set()

    def _fetch(self, w: int) -> None:
        pulled = [s.pull(w) for s in self.shards]
        self.workers[w].load([p for p, _ in pulled], [v for _, v in pulled])

    def _start_step(self, w: int, t: float) -> None:
        if self.workers[w].fetch_due():
            self._fetch(w)
        heapq.heappush(self._heap, (t + self.delays[w].sample(self.rngs[w]), self._order, w))
        self._order += 1

    def _try_cycle(self, w: int, t: float) -> None:
        k = self.coord.begin_cycle(w)
        if k == 0:
            self._blocked.add(w)
            return
        self._blocked.discard(w)
        self._left[w] = k
        self._start_step(w, t)

    def run(self, on_push: OnPush) -> None:
        for w in sorted(self.coord.live):
            self._try_cycle(w, 0.0)
        while self._heap:
            t, _, w = heapq.heappop(self._heap)
            self.now = t
            worker = self.workers[w]
            worker.step(self.stage_of(self.coord.done))
            self._left[w] -= 1
            if self._left[w] > 0:
                self._start_step(w, t)
                continue
            push = worker.take_push()
            record = push_to_shards(self.shards, push)
            record["clock_gap"] = self.coord.gaps[w]
            joined = self.coord.end_cycle(w)
            if joined:
                for s in self.shards:
                    s.set_workers(self.coord.live)
            record["vtime"] = round(t, 6)
            on_push(push, record)
            # the push may have opened the gate for others (bounded, sync) or ended a warm start
            for v in sorted(self._blocked | set(joined) | {w}):
                self._try_cycle(v, t)
        for s in self.shards:
            s.flush()
