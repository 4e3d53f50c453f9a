"""A lost partition actor (model parallelism): restarted alone, its replica and the replica's other partitions kept.

A mixin of :class:`~downpour.ps.cluster_on_ray.RayCluster`, which owns the state it reads (``coord``,
``worker_actors``, ``partition_actors``, ``pins``, ``placement``, ``restarts``, ``_pending``) and the calls it makes
(``_partition_actor``, ``_partition_place``, ``_dispatch``). The task loop asks
:meth:`PartitionRestarts._partition_lost` when a replica's cycle failed, before it takes the replica for lost.

Partition p of replica w died (its actor killed, its node gone) and the replica's own actor answers: a new partition
actor is started in its place (placed as the lost one was, off its node where that is gone, free of its siblings'
nodes: ``Placing._partition_place``), its RNG seeded by :func:`~downpour.ps.seeds.partition_seed` from the step it
starts at. The replica's cycles in flight are dropped, unpushed (a push half made by the partitions that lived would
train a model none of its steps computed; what of it the partitions that lived staged already, the shards drop:
``ShardServer.drop_inbox``): their steps are handed out again (``Coordinator.drop_cycles``), their batches read
again by the replica's next steps (``Worker.reread``), and the replica's next step fetches, which fills the new
partition's filters from its shards. The lost partition's shards give the replica a fresh inbox first, which the new
actor maps: the killed one, perhaps still running a moment, writes late, if at all, where the shard refuses it
(``ShardServer.new_inbox``, ``rejected["fenced"]``). A ``partition-restarted`` event
(staleness.json, and cluster.json's ``partition_restarts``) says "partition p of replica w restarted at step N" with
the steps dropped. It spends one of ``cluster.restarts``, as a replica's restart does. Where the new partition cannot
be had (not up within :data:`PARTITION_SECONDS`: no node with room; dead coming up twice) a ``partition-restart-failed``
event says why, and the replica is lost and restarted as any lost replica is (``restarts_on_ray``); with the
replica's own actor dead too, or ``cluster.restarts`` spent, it is lost so, with no such event. Restarting the whole
replica for every lost partition would start every actor of it anew, its other partitions' filters fetched again.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from downpour.ps.asking_on_ray import answering
from downpour.ps.restarts_on_ray import kill
from downpour.train.signals import signals_let_through

log = logging.getLogger("downpour.ps.cluster_on_ray")   # the driver's logger: its records go where the driver's do
PARTITION_SECONDS = 60.0    # the longest a new partition actor may take to answer (every survivor waits meanwhile)
ASK_SECONDS = 10.0          # whether an actor lives: its answer awaited this long


class PartitionRestarts:
    """``RayCluster``'s half that restarts a replica's lost partition alone."""

    partition_actors: dict[int, list[Any]]
    lanes: list[dict[str, Any] | None]
    _partition_lives: dict[tuple[int, int], int]   # (worker, partition) -> its restarts alone so far
    _pending: dict[Any, tuple[str, int]]
    _grads: dict[Any, list[Any]]
    _owner: dict[Any, Any]
    _unread: list[Any]

    def _partition_lost(self, w: int, err: BaseException) -> bool:
        """Worker ``w``'s cycle failed with ``err``: if one of its partition actors died and its own actor lives,
        restart that partition alone, drop ``w``'s cycles in flight and dispatch it again (True); else False (no
        partition died, its replica's actor dead too, ``cluster.restarts`` spent: the replica lost whole; the new
        partition not had: the replica restarted whole, a ``partition-restart-failed`` event saying why)."""
        parts = self.partition_actors.get(w)
        if not parts or self.restarts < 1:   # none may be restarted: lost at once, nothing asked (the ask: ASK_SECONDS)
            return False
        # the replica's actor and its partitions asked at once, ASK_SECONDS for them all (not one after another,
        # up to ASK_SECONDS each: the worker, then every partition)
        with signals_let_through():
            lives, *alive = answering([self.worker_actors[w], *parts], timeout=ASK_SECONDS)
        if not lives:   # the replica's actor dead too: lost whole
            return False
        dead = [p for p, ok in enumerate(alive) if not ok]
        if not dead or self.restarts < len(dead):   # none died; not all may be restarted: lost whole
            return False
        step, why = self.coord.done, None
        dropped = self._drop_cycles(w)
        new: dict[int, Any] = {}
        reports: list[dict[str, Any]] = []      # the new actors' start reports: their node and install
        for p in dead:
            kill(parts[p])      # (one that only did not answer in time would hold its filters' memory)
            if why is None:
                why = self._fresh_inboxes(w, p)
            if why is None:
                got = self._restart_partition(w, p, step)
                if isinstance(got, str):
                    why = got
                else:
                    new[p] = got[0]
                    reports.append(got[1])
        if why is None:
            why = self._hand_over(w, new)
        if why is not None:
            for a in new.values():
                kill(a)
            for p in dead:
                self.coord.events.append({"event": "partition-restart-failed", "worker": w, "partition": p,
                                          "step": step, "reason": why})
            log.warning("partition %s of replica %d could not be restarted alone (%s): the replica is restarted",
                        ", ".join(map(str, dead)), w, why)
            return False
        self._came_up(reports)
        cause = type(getattr(err, "cause", None) or err).__name__   # (the replica's cycle fails with the partition's)
        for p, a in new.items():
            self.partition_actors[w][p] = a
            self.restarts -= 1
            self.coord.events.append({"event": "partition-restarted", "worker": w, "partition": p, "step": step,
                                      "dropped_steps": dropped, "seed_step": step, "reason": cause})
            log.warning("partition %d of replica %d restarted at step %d (%s); its cycle in flight dropped (%d steps, "
                        "handed out again)", p, w, step, cause, dropped)
        for _ in range(self.coord.depth):
            self._dispatch(w)
        return True

    def _hand_over(self, w: int, new: dict[int, Any]) -> str | None:
        """Worker ``w`` takes its ``new`` partitions and drops its failed push, and the shards drop what of that push
        was staged in their inboxes already (the partitions that lived may have staged their slices before the dead
        one failed the cycle: no ring ever takes them, and the next push, with the same seq, would wait on them
        for INBOX_WAIT_SECONDS); None, or why not. A stop may cut the wait (the new actors killed)."""
        try:
            with signals_let_through():
                seqs = ray.get([self.worker_actors[w].replace_partition.remote(p, a) for p, a in new.items()],
                               timeout=PARTITION_SECONDS)
                # (after the worker's answer: every partition that lived has finished staging, its drop queued behind)
                ray.get([a.drop_inbox.remote(w, seqs[-1]) for a in self.shard_actors], timeout=PARTITION_SECONDS)
        except (RayError, GetTimeoutError) as e:
            return f"its worker did not take the new partition, or a shard did not drop its push ({type(e).__name__})"
        except BaseException:
            for a in new.values():
                kill(a)     # (not the run's yet: close would not find them)
            raise
        return None

    def _drop_cycles(self, w: int) -> int:
        """Worker ``w``'s cycles in flight, dropped: their futures read once they fail (behind the failed one on the
        same actor, through the same dead partition), their steps handed out again; returns those steps."""
        for ref in [ref for ref, (kind, v) in self._pending.items() if kind == "cycle" and v == w]:
            del self._pending[ref]
            self._owner.pop(ref, None)
            self._unread += [ref, *self._grads.pop(ref, [])]
        return self.coord.drop_cycles(w)

    def _fresh_inboxes(self, w: int, p: int) -> str | None:
        """Partition ``p``'s shards give worker ``w`` a fresh inbox (``ShardServer.new_inbox``), which its new actor
        maps: the one killed (judged dead after ASK_SECONDS, it may still run a moment: a ``put`` waiting on a full
        inbox, for one) writes, if at all, into the retired one, where the shard refuses it (``rejected["fenced"]``),
        never into the inbox its successor stages the same seq in. The fence is the inbox's path, one per
        incarnation, as a restarted worker's: two writers never share a segment (an incarnation number in the
        header, checked by the shard, would not do: a late writer's ``put`` can race its successor's on one
        segment). Were the inbox kept, such a late write after ``drop_inbox`` would make the retried push wait
        INBOX_WAIT_SECONDS, fail, and cost the replica's restart. None, or why not."""
        shards = self.setup.shards_of[p]
        n = self._partition_lives[w, p] = self._partition_lives.get((w, p), 0) + 1
        try:
            with signals_let_through():
                lanes = ray.get([self.shard_actors[j].new_inbox.remote(w, n) for j in shards],
                                timeout=PARTITION_SECONDS)
        except (RayError, GetTimeoutError) as e:
            return f"a shard of it gave it no new inbox ({type(e).__name__})"
        for j, got in zip(shards, lanes):
            self.lanes[j] = got     # (the pusher's list too: its ring follows the new reply pipe)
        return None

    def _restart_partition(self, w: int, p: int, step: int) -> tuple[Any, dict[str, Any]] | str:
        """A new actor for worker ``w``'s partition ``p``, seeded from ``step``, up and placed, with its start report
        (its node and install); or why not (a str).
        One pinned to a node that died before Ray said so is placed again, once, off it."""
        k, why = len(self.partition_actors[w]), ""
        for _ in range(2):
            options = self._partition_place(w, p, k, ray.nodes())
            name = f"downpour-{self.run_id}-worker{w}-part{p}-restart-{uuid.uuid4().hex[:6]}"
            actor = self._partition_actor(w, p, name, options, step)
            try:
                with signals_let_through():
                    report = ray.get(actor.start_report.remote(), timeout=PARTITION_SECONDS)
            except GetTimeoutError:
                kill(actor)
                return f"its new actor not up within {PARTITION_SECONDS:.0f} s (no node with room)"
            except RayError as e:
                kill(actor)
                why = f"its new actor died coming up ({type(e).__name__})"
                continue
            except BaseException:
                kill(actor)     # a stop cut the wait: not the run's yet, close would not find it
                raise
            self.placement["partitions"][w * k + p] = report["node"]
            return actor, report
        return why

    def partition_restarts(self) -> list[dict[str, Any]]:
        """The run's partitions restarted alone (cluster.json's ``partition_restarts``)."""
        return [e for e in self.coord.events if e["event"] == "partition-restarted"]
