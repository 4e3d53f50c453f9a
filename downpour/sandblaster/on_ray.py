"""Sandblaster on Ray: the coordinator in the driver, each shard and each worker an actor.

The shard actors hold the parameters and the L-BFGS history for their slice
(:class:`~downpour.sandblaster.history.HistoryShard`) and run the vector operations there; the
driver sends them operation lists with scalars and gets partial dot products back. For an
evaluation each shard computes its slice of ``w + t d`` once (an object ref); a worker's unit task
takes those refs, and returns the unit's cost (read by the driver) and its gradient slices (object
refs the driver hands to the shards unread). The driving loop is Ray's parameter-server example:
``pending`` maps each future to (worker, evaluation, unit, gradient refs) and ``ray.wait`` takes
the next one; a free worker gets the next unit or, near the end, a backup copy. The first result
of a unit is added to the shards, a later copy is dropped (and the shards would refuse it too).

Running copies are not cancelled: a worker still busy with a copy when its evaluation ends joins
the next evaluation once done, its late result dropped. Under ``cluster.delay = straggler:T:FACTOR``
the last worker sleeps (FACTOR - 1) times its compute time after each unit, to show the backups
working on real processes (other delay forms are the simulator's only, as for Downpour on Ray).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Sequence

import ray
import torch
from ray.exceptions import RayActorError, RayError, RayTaskError
from torch import Tensor

from downpour.config import RunConfig
from downpour._names import node_named
from downpour.errors import RunError
from downpour.ps.asking_on_ray import node_addresses, node_key
from downpour.ps.connect_on_ray import connect, gathered, joined, live_cpus, pinned, placer, spot
from downpour.ps.node_environments import node_environments
from downpour.ps.node_answers_on_ray import NodeAnswers
from downpour.ps.placing_on_ray import worker_threads
from downpour.ps.restarts_on_ray import first_ready, kill, silent_workers
from downpour.ps.setup import ClusterSetup, worker_cpus
from downpour.ps.shutdown_on_ray import shut_down
from downpour.ps.silence import Silence, start_limit
from downpour.sandblaster.checks import ray_straggler_warning
from downpour.sandblaster.history import HistoryShard, Op
from downpour.sandblaster.lbfgs import Evaluation
from downpour.sandblaster.simulated import speed_factors
from downpour.sandblaster.units import Unit, UnitScheduler, split_units
from downpour.sandblaster.worker import UnitWorker
from downpour.train.flat import frozen_params

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class ShardActor(NodeAnswers):
    """A :class:`HistoryShard` in its own process: every method the coordinator calls, by name."""

    def __init__(self, shard: HistoryShard):
        self.shard = shard

    def run(self, ops: Sequence[Op]) -> list[float]:
        return self.shard.run(ops)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.shard, method)(*args)

    def point(self, t: float) -> Tensor:
        return self.shard.point(t)

    def accumulate(self, evaluation: int, unit: int, grad: Tensor) -> bool:
        return self.shard.accumulate(evaluation, unit, grad)


@ray.remote
class WorkerActor(NodeAnswers):
    """A :class:`UnitWorker` (a model replica over the whole dataset: any unit may come to any worker)."""

    def __init__(self, cfg: RunConfig, wid: int, x: Tensor, y: Tensor | None, bounds: list[tuple[int, int]],
                 threads: int, slowdown: float, frozen: dict[str, Tensor]):
        torch.set_num_threads(threads)
        self.worker = UnitWorker(cfg, wid, x, y, bounds, frozen)
        self.slowdown, self.shards = slowdown, len(bounds)

    def compute(self, evaluation: int, unit: int, rows: Tensor, total: int, stage: int | None, *point: Tensor) -> tuple:
        """(the unit's metadata, gradient slice 0, ..., slice M-1); empty slices for a non-finite cost."""
        t0 = time.perf_counter()
        r = self.worker.compute(evaluation, unit, rows, total, list(point), stage)
        if self.slowdown > 1:      # a straggler: the same work, FACTOR times the time
            time.sleep((self.slowdown - 1) * (time.perf_counter() - t0))
        grads = r.grads or [torch.empty(0)] * self.shards
        return (r.meta(), *grads)


class RayShards:
    """:class:`~downpour.sandblaster.lbfgs.ShardGroup` over shard actors: one actor call each per request. A shard
    lost (its process or node gone) ends the run in :func:`shard_lost`'s words: w, the gradient and the L-BFGS history
    live on the shards, and none is restarted."""

    def __init__(self, actors: list[Any], nodes: list[str] | None = None, addresses: dict[str, str] | None = None,
                 ids: list[str] | None = None):
        self.actors = actors
        self.nodes, self.addresses = nodes or [], addresses or {}    # each shard's node id; node id -> IP address
        self.ids = ids or []      # each shard's actor id (hex), as its start report read it

    def run(self, ops: Sequence[Op]) -> list[float]:
        return [sum(parts) for parts in zip(*self.get([a.run.remote(ops) for a in self.actors]))]

    def call(self, method: str, *args: Any) -> list[Any]:
        return self.get([a.call.remote(method, *args) for a in self.actors])

    def get(self, refs: list[Any]) -> list[Any]:
        """``ray.get`` of the shards' answers; a shard gone: :func:`shard_lost`'s RunError, not Ray's ActorDiedError
        and a traceback (a node of a shard removed mid-run on a 3-node Ray)."""
        try:
            return ray.get(refs)
        except RayActorError as err:
            raise shard_lost(err, self.ids, self.nodes, self.addresses) from None


class RayPool:
    """The shard and worker actors of ``setup``'s run (Ray started, or ``cluster.address`` joined);
    :meth:`close` kills every actor and stops a Ray it started, whatever happened."""

    nodes: dict[str, dict[str, Any]] | None = None   # environment.json's nodes (node_environments), set on start
    addresses: dict[str, str] = {}                   # node id -> IP address, read once every actor is up
    start_seconds: float | None = None               # joining Ray, every actor up: set once started

    def __init__(self, setup: ClusterSetup, shards: list[HistoryShard]):
        self.cfg = cfg = setup.cfg
        self.shard_actors: list[Any] = []
        self.worker_actors: list[Any] = []
        self.started = connect(cfg.cluster.address)
        self.ray_info = joined(cfg.cluster.address)   # cluster.json's record of which Ray
        self._pending: dict[Any, tuple[int, int, Unit, list[Any]]] = {}   # meta ref -> (worker, evaluation, unit, grad refs)
        self.busy: set[int] = set()
        self.lost: dict[int, str] = {}
        # a busy worker silent this long is lost: Downpour's auto limit (ps/silence.py); cluster.silent_seconds is
        # Downpour's, not read here (cli_flags.SANDBLASTER_READS: a --set of it is refused on a Sandblaster run)
        self.silence = Silence(workers=cfg.cluster.workers)
        self.t0 = asked = time.perf_counter()
        try:
            self._start(setup, shards)
        except BaseException:
            self.close()
            raise
        self.start_seconds = round(self.t0 - asked, 2)

    def _start(self, setup: ClusterSetup, shards: list[HistoryShard]) -> None:
        cfg, n = self.cfg, self.cfg.cluster.workers
        nodes = ray.nodes()
        place = placer(nodes)
        per_worker = worker_cpus(n, list(live_cpus(nodes).values()))   # (the live nodes' cores, not total / n)
        # one running index over both kinds, Downpour's unsplit layout (spot): the workers, then the shards. Each kind
        # counted from the first node would put shard j beside worker j, and leave a third node of 2 workers and 2
        # shards empty (measured on a 3-node Ray, docs/sandblaster.md)
        shard_options = [place(spot("shard", j, n, 1), 0.0) for j in range(len(shards))]
        self.shard_actors = [ShardActor.options(**o).remote(s) for o, s in zip(shard_options, shards)]
        x, y = ray.put(setup.data.x), ray.put(setup.data.y)
        speeds = speed_factors(cfg.cluster.spec("delay"), n)
        if said := ray_straggler_warning(cfg):     # (from a config file or a resumed run: the flag is refused)
            log.warning("%s", said)
        frozen = frozen_params(setup.model)
        options = [place(spot("worker", w, n, 1), per_worker) for w in range(n)]
        pins, cpus = [pinned(o) for o in options], live_cpus(nodes)   # each worker's threads: its node's share
        self.worker_actors = [WorkerActor.options(num_cpus=per_worker, **options[w])
                              .remote(cfg, w, x, y, setup.bounds, worker_threads(cfg.train.threads, w, pins, cpus),
                                      speeds[w], frozen) for w in range(n)]
        limit = start_limit(0.0)   # (cluster.silent_seconds is Downpour's: the automatic limit, as self.silence)
        # the room on the node each actor was pinned to (not the cluster's, summed over its nodes)
        # each actor's node and the install there, in the answer placement waits for (no round trip of its own)
        reports = {"shards": gathered([a.start_report.remote() for a in self.shard_actors],
                                      "shard actors", limit, longer=None,
                                      pins=[pinned(o) for o in shard_options]),
                   "workers": gathered([a.start_report.remote() for a in self.worker_actors],
                                       "worker actors", limit, {"CPU": per_worker}, longer=None,
                                       pins=[pinned(o) for o in options])}
        self.placement = {kind: [r["node"] for r in answers] for kind, answers in reports.items()}
        self.addresses = node_addresses()   # read now: what info's node_ids stand at, a node gone since named too
        self.nodes = node_environments(reports["shards"] + reports["workers"], self.addresses)
        self.group = RayShards(self.shard_actors, self.placement["shards"], self.addresses,
                               [r["actor"] for r in reports["shards"]])
        self.t0 = time.perf_counter()

    def clock(self) -> float:
        return time.perf_counter() - self.t0

    def state(self) -> dict[str, Any]:
        """Nothing for a checkpoint: real processes keep real time (the simulator's pool keeps its clock)."""
        return {}

    def _dispatch(self, w: int, sched: UnitScheduler, evaluation: int, rows: int, stage: int | None,
                  point: list[Any]) -> None:
        job = sched.next_for(w, time.perf_counter())
        if job is None:
            return
        unit, _ = job
        refs = self.worker_actors[w].compute.options(num_returns=len(self.shard_actors) + 1).remote(
            evaluation, unit.index, unit.rows, rows, stage, *point)
        self._pending[refs[0]] = (w, evaluation, unit, refs[1:])
        self.busy.add(w)
        self.silence.busy(w)

    def evaluate(self, evaluation: int, rows: Tensor, t: float, stage: int | None) -> Evaluation:
        """Cost and gradient at ``w + t d`` on ``rows`` (B,): units to free workers until all are done."""
        wall0 = time.perf_counter()
        point = [a.point.remote(t) for a in self.shard_actors]
        sched = UnitScheduler(split_units(rows, self.cfg.sandblaster.units), self.cfg.sandblaster.backup_after)
        loss, parts, added = 0.0, {}, []

        def dispatch_free() -> None:
            for v in range(self.cfg.cluster.workers):
                if v not in self.busy and v not in self.lost:
                    self._dispatch(v, sched, evaluation, len(rows), stage, point)

        dispatch_free()
        while not sched.complete:
            if not self._pending:
                raise RunError(f"every worker was lost ({', '.join(f'worker {w}: {r}' for w, r in self.lost.items())})")
            free = len(self.busy) + len(self.lost) < self.cfg.cluster.workers
            due = sched.backup_due() if free else None
            # until the next backup or busy worker's silence limit: with no free worker no backup is due, and
            # without the silence limit a unit that never returns (every worker's, or the only one's) would hang the
            # run for good (stand-in: 1 worker, its third unit: lost at 300 s, the run ends)
            limits = [s for s in (None if due is None else max(0.0, due - time.perf_counter()),
                                  self.silence.timeout()) if s is not None]
            with self.silence.listening():   # (a long turn since the last wait was a stall: no worker's silence)
                # the oldest unit ready (first_ready: a plain ray.wait can leave a dead worker's failed unit unread
                # while the others' keep coming)
                ready = first_ready(list(self._pending), min(limits) if limits else None)
            if not ready:            # a unit turned late before anything finished: back it up
                self._lose_silent(sched)
                dispatch_free()
                continue
            ref = ready[0]
            w, ev, unit, grads = self._pending.pop(ref)
            self.busy.discard(w)
            try:
                meta = ray.get(ref)
            except RayError as err:   # the worker died: its units go back to the queue, the others go on
                # an argument lost, not the worker: a shard gone with its point? Then the run ends in its words
                # (RayShards.get), not as "every worker was lost", each blamed in turn for the point it could not read
                if not isinstance(err, RayActorError):
                    self.group.call("stats")
                self.lost[w] = lost_worker(w, unit, err)
                self.silence.forget(w)
                sched.abandon(w)
                log.warning("sandblaster worker %d lost (%s); its units go to the others", w, type(err).__name__)
                dispatch_free()
                continue
            # a unit read is a report, as in Downpour's loops, and a dead worker's time does not count (else its
            # first unit failing at 500 s would hold the next silent unit to 1000 s, not 300 s; stand-in clock)
            self.silence.spoke(w, busy=False)
            if ev != evaluation:
                sched.late(w, len(unit))
            elif sched.finish(unit.index, w, time.perf_counter()):
                loss += meta["loss"]
                for k, v in meta["parts"].items():
                    parts[k] = parts.get(k, 0.0) + v
                if math.isfinite(meta["loss"]):   # the slices go from the worker's store to the shards, unread here
                    added += [a.accumulate.remote(evaluation, unit.index, g) for a, g in zip(self.shard_actors, grads)]
            dispatch_free()
        if not all(self.group.get(added)):
            raise RunError(f"evaluation {evaluation}: a shard refused a unit the driver counted once")
        wall = time.perf_counter() - wall0
        return Evaluation(loss, parts, wall, wall, sched.counts)

    def _lose_silent(self, sched: UnitScheduler) -> None:
        """Each busy worker silent past its limit (:mod:`downpour.ps.silence`), none of whose units is ready, is lost
        as a dead one is: its actor killed, its units back to the queue for the others (its futures dropped unread)."""
        for w, silent, _ in silent_workers(self.silence, self._pending, lambda what: what[0]):
            self.busy.discard(w)
            self.silence.forget(w)
            self.lost[w] = silent.reason
            sched.abandon(w)
            kill(self.worker_actors[w])
            log.warning("sandblaster worker %d lost (%s); its units go to the others", w, self.lost[w])

    def info(self) -> dict[str, Any]:
        nodes = sorted(set(self.placement["shards"]) | set(self.placement["workers"]))
        return {"nodes": len(nodes), "ray": self.ray_info,
                "placement": {k: [nodes.index(x) for x in v] for k, v in self.placement.items()},
                **node_key(nodes, self.addresses), "lost_workers": {str(w): r for w, r in self.lost.items()},
                "start_seconds": self.start_seconds}

    def close(self) -> None:
        """Best effort (Ray itself may be going down); safe to call twice."""
        for a in (*self.worker_actors, *self.shard_actors):
            kill(a)
        self.shard_actors, self.worker_actors, self._pending = [], [], {}
        if self.started:
            shut_down()
            self.started = False


def shard_lost(err: RayActorError, ids: list[str], nodes: list[str], addresses: dict[str, str]) -> RunError:
    """The error that ends a run whose shard actor is gone: which shard (the one whose actor id, among ``ids``, is
    ``err.actor_id``: Ray's public hex id, each shard's read by the actor itself at its start), on which of ``nodes``
    (named with ``addresses`` as the log names nodes), its error's type, and why the run cannot go on. (Not the
    handles' private ``_actor_id``.)"""
    j = ids.index(err.actor_id) if err.actor_id in ids else None
    which = "a sandblaster shard" if j is None else f"sandblaster shard {j}"
    where = f" on {node_named(nodes[j], addresses)}" if j is not None and j < len(nodes) else ""
    return RunError(f"{which} was lost{where} ({type(err).__name__}): the shards hold the parameters, the gradient and "
                    "the L-BFGS history, and a lost one is not restarted, so the run ends here")


def lost_worker(w: int, unit: Unit, err: RayError) -> str:
    """What a failed call on worker ``w`` records (its error's type) when the worker is gone; a RunError
    when the unit's computation raised in a live worker (a bug, bad data): every other worker would
    raise on it in turn, and the run ended as "every worker was lost", the cause only in Ray's log."""
    if isinstance(err, RayTaskError) and not isinstance(err.cause, RayError):
        raise RunError(f"sandblaster worker {w} failed on unit {unit.index}: {type(err.cause).__name__}: "
                       f"{err.cause}") from None
    return type(err).__name__
