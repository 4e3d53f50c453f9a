"""The Ray driver's loop over Ray tasks: one actor call per cycle, its metadata and gradients as futures, and the
shards' answers to a push as more (Ray's parameter-server example: a ``{future: what}`` dict and ``ray.wait``).
The loop a run takes where the piped one (:mod:`downpour.ps.piped_on_ray`) cannot: a shard or a worker off the
driver's node, model parallelism, a shard that answers by object ref (DC-ASGD). A mixin of
:class:`~downpour.ps.cluster_on_ray.RayCluster`, which owns the state it reads (``_pending``, ``_pushes``, ``_grads``,
``_owner``, the coordinator) and the calls it makes (``_pushed``, ``_applied``, ``_lost``, ``_shard_lost``, and the
restarts' futures and deadlines)."""
from __future__ import annotations

import time
from typing import Any

import ray
from ray.exceptions import RayError

from downpour.ps.recorder import ShardLost
from downpour.ps.restarts_on_ray import drain, first_ready, silent_workers
from downpour.ps.shards_on_ray import ShardPush
from downpour.ps.worker import OnPush
from downpour.train.signals import signals_held


class TaskRun:
    """``RayCluster``'s task half: wait on the next future, take a finished cycle or a push's answers."""

    _pending: dict[Any, tuple[str, int]]
    _pushes: dict[Any, tuple[list[Any], dict[str, Any]]]
    _grads: dict[Any, list[Any]]
    _owner: dict[Any, Any]

    def _run_tasks(self, on_push: OnPush) -> None:
        """Until no cycle, push or restart is pending: take each future as it is ready, restarts first. The wait lasts
        until the next restart's deadline or busy worker's silence limit (:mod:`downpour.ps.silence`), whichever comes
        first: with no timeout unless a restart is under way, a cycle that never returns would hang the run
        (scripted: 3 workers, worker 1's cycle at step 21 never returning; the others trained on, then the driver
        waited on its 2 futures for good)."""
        while self._pending or self._starting:
            t = time.perf_counter()
            limits = [s for s in (self.restart_timeout(), self.silence.timeout()) if s is not None]
            # restarts first, then the oldest future ready (first_ready: a plain ray.wait could leave a dead worker's
            # failed cycle unread while the others' answers keep coming)
            with self.silence.listening():   # (a long turn since the last wait was a stall: no worker's silence)
                ready = first_ready([*self.restart_refs(), *self._pending], min(limits) if limits else None)
            self.laps.add("wait", t)
            if not ready or ready[0] not in self._pending:    # a restarted worker answered, or ran out of time
                self.poll_restarts()
                self._lose_silent()
                continue
            with signals_held():   # popped and counted together: a Ctrl-C between them lost a push the shards applied
                kind, w = self._pending.pop(ready[0])
                try:
                    if kind == "cycle":
                        self._cycle_done(ready[0], w, on_push)
                    else:
                        answers, meta = self._pushes[ready[0]]
                        results = ShardPush.results(answers)   # (one that fails stays: _count_snapshotted may count it)
                        del self._pushes[ready[0]]
                        self._applied(w, results, meta, on_push)
                except ShardLost:
                    raise
                except (RayError, ConnectionError, OSError) as err:   # a closed doorbell, a shard call that failed
                    self._shard_lost(err)
                    raise
            if self.coord.waiting or self._watching or self._unread:
                self.watch_waiting()   # (no cycle of a worker waiting for the warm start shows its death)
            if self.restart_timeout() == 0:
                # a replacement's deadline passed while pushes kept the driver busy: given up now, at this step, as the
                # piped loop does (it looks every 50 ms). Were only a wait with nothing ready, or a loss, to look, one
                # never placed would be given up at step 400 of 400, not near step 45 (scripted, each wait 5 s)
                self.poll_restarts()
            self._lose_silent()     # (after every push too, as the restarts' deadlines: a busy driver's waits return at once)

    def _lose_silent(self) -> None:
        """Each busy worker silent past its limit, none of whose cycles is ready, is lost as a dead one is: its actor
        killed, and restarted as ``cluster.restarts`` says. Its cycles' futures leave the wait (read by
        :meth:`_drop_watches` once they fail, with the killed actor's ActorDiedError)."""
        overdue = silent_workers(self.silence, self._pending, lambda what: what[1] if what[0] == "cycle" else None)
        for w, silent, refs in overdue:
            for ref in refs:
                self._owner.pop(ref, None)
                self._unread += [ref, *self._grads.pop(ref, [])]
            self._lost(w, silent)

    def _cycle_done(self, ref: Any, w: int, on_push: OnPush) -> None:
        actor = self._owner.pop(ref)
        grads = self._grads.pop(ref, None)
        current = w in self.coord.live and actor is self.worker_actors[w]
        t = time.perf_counter()
        try:
            meta = ray.get(ref)
        except RayError as err:
            drain(grads or [])   # the failed cycle's gradient refs hold the same error: read, not printed
            if current:          # (else another queued cycle of the same dead actor: already handled)
                self._shard_lost(err)   # a dead shard fails every worker's fetch: not the worker's loss
                if not self._partition_lost(w, err):   # a dead partition alone: restarted, the replica kept
                    self._lost(w, err)
            return
        if not current:
            # a cycle that finished just as its actor died, reported after the loss: the loss
            # already gave its steps back, so it is dropped (not applied at all)
            return
        self.laps.add("get_meta", t)
        self.silence.spoke(w, busy=any(kind == "cycle" and v == w for kind, v in self._pending.values()))
        self._pushed(w, meta, grads, on_push)
