"""Sandblaster's workers in one process, in virtual time.

Virtual time is counted as the parameter-server simulator counts it (:mod:`downpour.ps.simulated`),
in training steps: ``train.batch_size`` examples take one unit of time on a normal worker. A work
unit of k examples on worker w takes

    speed_w * k / train.batch_size  +  a delay drawn from w's ``cluster.delay`` model

where ``speed_w`` is 1, except under ``straggler:T:FACTOR``, which makes the last worker FACTOR
times slower in everything (its compute, and its delay T * FACTOR). Other delay forms (constant,
uniform, exponential) add a per-unit latency and leave every worker's speed at 1. The shards' vector
operations and moving the parameters take no virtual time.

A worker that is still computing a copy of a unit when its evaluation ends (the backup that lost,
or the straggler's original) stays busy until that copy is done, then joins the evaluation in
progress; its late result is dropped. Events are processed in (time, order of dispatch) order, so a
run is a pure function of config and seed.
"""
from __future__ import annotations

import heapq
import time
from typing import Any

import torch
from torch import Tensor

from downpour.ps.delays import delay_rngs
from downpour.ps.setup import ClusterSetup
from downpour.sandblaster.history import HistoryShard
from downpour.sandblaster.lbfgs import Evaluation, LocalShards
from downpour.sandblaster.units import Unit, UnitScheduler, split_units
from downpour.sandblaster.worker import UnitWorker
from downpour.settings import Spec
from downpour.train.flat import frozen_params


def speed_factors(delay: Spec, workers: int) -> list[float]:
    """Each worker's slowness (1 = normal): ``straggler:T:FACTOR`` makes the last one FACTOR times slower."""
    kind, args = delay
    return [float(args[1]) if kind == "straggler" and w == workers - 1 else 1.0 for w in range(workers)]


class SimulatedPool:
    """``cluster.workers`` :class:`UnitWorker` replicas computing ``setup``'s units into ``shards``,
    their time simulated; ``start_time``: the virtual clock of a resumed run."""

    nodes: dict[str, dict[str, Any]] | None = None   # one process: environment.json's own record is all there is

    def __init__(self, setup: ClusterSetup, shards: list[HistoryShard], start_time: float = 0.0):
        cfg = setup.cfg
        n = cfg.cluster.workers
        self.cfg, self.shards, self.n = cfg, shards, n
        frozen = frozen_params(setup.model)
        self.workers = [UnitWorker(cfg, w, setup.data.x, setup.data.y, setup.bounds, frozen) for w in range(n)]
        self.speed = speed_factors(cfg.cluster.spec("delay"), n)
        self.delays = setup.delays
        self.rngs = delay_rngs(cfg.seed + round(start_time), n)
        self.now = start_time
        self._heap: list[tuple[float, int, int, int, Unit]] = []   # (time done, order, worker, evaluation, unit)
        self._order = 0
        self.busy: set[int] = set()
        self.group = LocalShards(shards)

    def clock(self) -> float:
        return self.now

    def state(self) -> dict[str, Any]:
        """What a checkpoint needs for a resume to take the same steps: the clock, the delay generators,
        and the copies still running (a straggler's, or a backup's, go on into the next evaluations)."""
        return {"now": self.now, "order": self._order, "busy": sorted(self.busy),
                "rngs": [g.bit_generator.state for g in self.rngs],
                "running": [[t, order, w, ev, unit.index, unit.rows.tolist()] for t, order, w, ev, unit in self._heap]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.now, self._order, self.busy = state["now"], state["order"], set(state["busy"])
        for g, saved in zip(self.rngs, state["rngs"]):
            g.bit_generator.state = saved
        self._heap = [(t, order, w, ev, Unit(index, torch.tensor(rows, dtype=torch.int64)))
                      for t, order, w, ev, index, rows in state["running"]]
        heapq.heapify(self._heap)

    def info(self) -> dict[str, object]:
        return {"speeds": self.speed}

    def close(self) -> None:
        pass

    def _dispatch_free(self, sched: UnitScheduler, evaluation: int) -> None:
        """Every free worker gets the next unit, or a backup of a late one, if there is one for it."""
        for w in range(self.n):
            if w in self.busy:
                continue
            job = sched.next_for(w, self.now)
            if job is None:
                continue
            unit, _ = job
            duration = self.speed[w] * len(unit) / self.cfg.train.batch_size + self.delays[w].sample(self.rngs[w])
            heapq.heappush(self._heap, (self.now + duration, self._order, w, evaluation, unit))
            self._order += 1
            self.busy.add(w)

    def evaluate(self, evaluation: int, rows: Tensor, t: float, stage: int | None) -> Evaluation:
        """Cost and gradient at ``w + t d`` on ``rows`` (B,): units handed to free workers until all are done."""
        wall0, start = time.perf_counter(), self.now
        point = [s.point(t) for s in self.shards]
        units = split_units(rows, self.cfg.sandblaster.units)
        sched = UnitScheduler(units, self.cfg.sandblaster.backup_after)
        loss, parts = 0.0, {}
        self._dispatch_free(sched, evaluation)
        while not sched.complete:
            due = sched.backup_due() if len(self.busy) < self.n else None
            if due is not None and due > self.now and due < self._heap[0][0]:
                self.now = due                         # a unit turns late before anything finishes: back it up
                self._dispatch_free(sched, evaluation)
                continue
            self.now = self._heap[0][0]
            while self._heap and self._heap[0][0] == self.now:   # every copy done at this instant, then dispatch
                _, _, w, ev, unit = heapq.heappop(self._heap)
                self.busy.discard(w)
                if ev != evaluation:                       # a copy from an evaluation that is over
                    sched.late(w, len(unit))
                elif sched.finish(unit.index, w, self.now):   # the unit's first result: the only one used
                    # computed only now that it counts: the time it took is the event's, and a dropped copy
                    # would change nothing (the Ray runner computes every copy, and drops the same ones)
                    r = self.workers[w].compute(evaluation, unit.index, unit.rows, len(rows), point, stage)
                    loss += r.loss
                    for k, v in r.parts.items():
                        parts[k] = parts.get(k, 0.0) + v
                    for shard, g in zip(self.shards, r.grads):
                        shard.accumulate(evaluation, unit.index, g)
            if not sched.complete:
                self._dispatch_free(sched, evaluation)
        return Evaluation(loss, parts, self.now - start, time.perf_counter() - wall0, sched.counts)
