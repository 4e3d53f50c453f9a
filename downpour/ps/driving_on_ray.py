"""The Ray driver's driving loop, the part both of its loops share (:mod:`downpour.ps.tasks_on_ray` over Ray tasks,
:mod:`downpour.ps.piped_on_ray` over each worker's channel): dispatch a worker's cycle, hand its finished push to the
shards, record it in the coordinator and the recorder, and dispatch who may go on. A mixin of
:class:`~downpour.ps.cluster_on_ray.RayCluster`, which owns the state it reads (``coord``, ``pusher``, ``piped``,
``laps``, ``silence``, ``_pending``, ``_pushes``, ``_blocked``, ...) and the calls it makes (``_set_live``,
``_shard_lost``, ``_run_tasks``, ``_run_piped``)."""
from __future__ import annotations

import time
from typing import Any

import ray
from ray.exceptions import RayError

from downpour.ps.recorder import ShardLost
from downpour.ps.shards_on_ray import ShardPush
from downpour.ps.worker import OnPush, Push, push_record
from downpour.train.signals import signals_held


class Driving:
    """``RayCluster``'s loop: :meth:`run` dispatches every live worker's first cycles, then runs the piped or the task
    loop, which hand each finished cycle to :meth:`_pushed`; :meth:`settle` records what a stop left unread."""

    def _dispatch(self, w: int) -> None:
        # held: the count handed out and the cycle in flight change together (a restart's or a loss's dispatch runs
        # outside the loops' held blocks, and a stop between the two lost the cycle's steps as end_compute's did)
        with signals_held():
            k = self.coord.begin_cycle(w)
        if k == 0:
            self._blocked.add(w)
            return
        self._blocked.discard(w)
        self.silence.busy(w)
        m, first = len(self.shard_actors), self.coord.first_step(w)   # each step's greedy stage follows from it
        t = time.perf_counter()
        if self.piped:
            self._channels[w].grant(k, first)
            self._credits[w] += 1
            self.laps.add("dispatch", t)
            return
        refs = self.worker_actors[w].cycle.options(num_returns=m + 1).remote(k, first)
        self.laps.add("dispatch", t)
        self._grads[refs[m]] = refs[:m]
        self._owner[refs[m]] = self.worker_actors[w]
        self._pending[refs[m]] = ("cycle", w)

    def _applied(self, w: int, results: list[dict[str, Any]], meta: dict[str, Any], on_push: OnPush) -> None:
        """Every shard answered push ``meta["seq"]`` of worker ``w``: record it, dispatch who may go on."""
        joined = self._record(w, results, meta, on_push)
        for v in sorted(self._blocked | set(joined) | {w}):
            self._dispatch(v)

    def _record(self, w: int, results: list[dict[str, Any]], meta: dict[str, Any], on_push: OnPush) -> list[int]:
        """Push ``meta["seq"]`` of worker ``w`` into the coordinator and ``on_push``; the workers it let join."""
        joined = self.coord.end_cycle(w, meta["steps"])
        if joined:
            self._set_live()
        push = Push(w, meta["seq"], [], meta["base"], meta["steps"], meta["samples"], meta["loss"], meta["parts"],
                    meta["skipped"], meta["clock_gap"])
        t = time.perf_counter()
        on_push(push, push_record(results, meta["clock_gap"]))
        self.laps.add("record", t)
        return joined

    def settle(self, on_push: OnPush) -> None:
        """On a stop, before the checkpoint: record the pushes handed to the shards whose answers were not
        read yet (object refs: a shard on another node, DC-ASGD), dispatching nothing. Each shard runs the
        driver's calls in order, so they are in the snapshot: their steps, clocks and metrics row must be
        in the checkpoint's counters too, or a resume trains those steps again."""
        for ref, (kind, w) in list(self._pending.items()):
            if kind == "push":
                del self._pending[ref]
                answers, meta = self._pushes.pop(ref)
                self._record(w, ShardPush.results(answers), meta, on_push)

    def _pushed(self, w: int, meta: dict[str, Any], grads: list[Any], on_push: OnPush) -> None:
        """Worker ``w`` finished a cycle (``meta``; ``grads``: per shard None, staged in its inbox, or
        the gradient's object ref): have the shards apply its push, and dispatch its next cycle."""
        t = time.perf_counter()
        # rung shards have applied it when this returns; the others answer with object refs. The next
        # cycle is dispatched once the push is on its way, before the answers are read (async: the
        # worker computes while this push is applied; the coordinator hears of the push, end_cycle,
        # only after the answers are read)
        assert self.pusher is not None
        # a stop between the shards' apply and its record would checkpoint a push the shards hold as not
        # made (a resume trains its steps again): the two finish first, as a simulator's event does
        with signals_held():   # (and the push sent: a stop just before this block must not lose its steps)
            self.coord.end_compute(w)
            meta["clock_gap"] = self.coord.gaps[w]
            self.next_seq[w] = meta["seq"] + 1
            answers = self.pusher.apply(w, meta["seq"], meta["base"], grads, meta["inbox"],
                                        meanwhile=lambda: self._dispatch(w), stages=meta.get("stages"))
            self.laps.add("push_apply", t)
            refs = [x for x in answers if not isinstance(x, dict)]
            if not refs:
                self._applied(w, answers, meta, on_push)
                return
            self._pushes[refs[-1]] = (answers, meta)
            self._pending[refs[-1]] = ("push", w)  # each shard runs the driver's calls in order; wait on all below

    def run(self, on_push: OnPush) -> None:
        """Dispatch cycles, hand finished gradients to the shards (by doorbell where it can), record
        each push, and restart up to ``cluster.restarts`` lost workers, until the budget is done; then
        apply a partly filled sync round, as the simulator does."""
        self._drive(on_push)
        ray.get([a.flush.remote() for a in self.shard_actors], timeout=60)
        self.ran = True

    def _drive(self, on_push: OnPush) -> None:
        self.laps.mark()
        for _ in range(self.coord.depth):
            for w in sorted(self.coord.live):
                self._dispatch(w)
        if self.piped:
            try:
                self._run_piped(on_push)
            except ShardLost:
                raise
            except (RayError, ConnectionError, OSError) as err:   # a closed doorbell
                self._shard_lost(err)
                raise
            return
        self._run_tasks(on_push)
