"""The Ray runner: server shards and workers as Ray actors. The only module that imports Ray.

The driver follows Ray's parameter-server example: a ``{future: (kind, worker)}`` dict and
``ray.wait``. A worker actor runs one push cycle (fetch when due, ``n_push`` training steps),
stages its gradient and returns; only then does the driver tell the shards to apply it. So a
worker killed mid-cycle never half-pushes: its push reaches every shard once (the cycle returned)
or none (it did not), and the shards' sequence numbers reject a repeat, so none is applied twice.

How the bytes move:

- same node (the common case, and all of a local Ray): the shard's parameters and one inbox per
  worker live in shared memory (:mod:`downpour.ps.shm`). A pull is one memcpy out of the shard's
  segment; a push is one memcpy into the inbox, then the driver tells the shard to apply it: by
  its doorbell (:mod:`downpour.ps.doorbell`, a named pipe: no actor call) when the driver is on
  the shard's node, by a tiny ``push_inbox`` call otherwise (:class:`ShardPush`).
- different nodes: a pull returns the NumPy slice through Ray's object store, and the gradient
  slice the cycle returned is an object ref the driver passes to ``push``: Ray's object manager
  moves it between machines, and on the receiving node it is read zero-copy from the store.

``cluster.address`` joins an existing cluster; empty starts a local Ray. Shards and workers are
placed round-robin over the cluster's nodes (where a node has no room left, Ray chooses).
"""
from __future__ import annotations

import logging
import os
import uuid
import warnings
from typing import Any, Callable

import numpy as np
import ray
import torch
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from downpour.config import RunConfig
from downpour.ps import shm
from downpour.ps.checkpoint import ShardState
from downpour.ps.coordinator import Coordinator
from downpour.ps.doorbell import Bell
from downpour.ps.job import Job, make_worker
from downpour.ps.shard import Shard
from downpour.ps.shard_server import ShardServer
from downpour.ps.worker import Push

log = logging.getLogger(__name__)


def _quiet_readonly() -> None:
    # object-store buffers are read-only; we only ever read them (or copy), so torch's warning is noise
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


@ray.remote
class ShardActor(ShardServer):
    """A :class:`~downpour.ps.shard_server.ShardServer` (a shard with shared-memory lanes and a
    doorbell where it can have them) in its own process. Workers on this node use the lanes,
    workers elsewhere the object store."""

    def __init__(self, shard: Shard, lane_prefix: str = "", workers: int = 0):
        _quiet_readonly()
        torch.set_num_threads(1)
        super().__init__(shard, lane_prefix, workers)

    def lanes(self) -> dict[str, Any] | None:
        lanes = super().lanes()
        return None if lanes is None else {**lanes, "node": _node()}

    def node(self) -> str:
        return _node()


class ShardLink:
    """One shard as a worker (or a benchmark client) on some node sees it: shared memory when the
    shard lives on the same node, the object store otherwise."""

    def __init__(self, actor: Any, lanes: dict[str, Any] | None, wid: int, n: int):
        self.actor, self.n, self.wid = actor, n, wid
        local = lanes is not None and lanes["node"] == _node()
        self.params = shm.Segment(lanes["params"], n) if local else None
        self.inbox = shm.Segment(lanes["inbox"][wid], n) if local else None

    def pull_into(self, out: np.ndarray) -> Any:
        """Copy the parameters into ``out`` (n,) and return the version, or return an object ref to
        ``(params, version)`` to be fetched (the caller batches those)."""
        if self.params is not None:
            return self.params.read_into(out)
        return self.actor.pull.remote(self.wid)   # the shard notes the pull (DC-ASGD keeps a copy)

    def stage(self, grad: np.ndarray, seq: int, base: int) -> np.ndarray | None:
        """Leave ``grad`` in the inbox (returns None) or hand it back to travel by the object store."""
        if self.inbox is None:
            return grad
        self.inbox.put(grad, seq, base)
        return None


class ShardPush:
    """How the driver (or a benchmark client) has the shards apply a staged push: a doorbell ring
    where the gradient is in the inbox of a shard on this node, a ``push_inbox`` actor call where
    that shard is elsewhere, ``push`` with the gradient's object ref where it has no inbox.

    ``lanes`` (one per shard, as ``ShardActor.lanes`` returns them) is read on every push, so a
    caller that replaces an entry (a restarted worker's new inbox) is followed.
    """

    def __init__(self, actors: list[Any], lanes: list[dict[str, Any] | None]):
        self.actors, self.lanes, self.here = actors, lanes, _node()
        self._bells: dict[tuple[int, int], tuple[str, Bell]] = {}   # (shard, worker) -> (reply pipe, bell)

    def _bell(self, j: int, w: int) -> Bell | None:
        lanes = self.lanes[j]
        if lanes is None or lanes["node"] != self.here:
            return None
        path, bell = self._bells.get((j, w), ("", None))
        if path != lanes["reply"][w]:
            if bell is not None:
                bell.close()
            path, bell = lanes["reply"][w], Bell(lanes["bell"], lanes["reply"][w])
            self._bells[(j, w)] = path, bell
        return bell

    def apply(self, w: int, seq: int, bases: list[int], grads: list[Any], inbox: list[bool]) -> list[Any]:
        """Per shard the result dict (rung shards: every bell rung first, then every answer read,
        so the shards apply in parallel) or an object ref to it (the caller waits on those)."""
        out: list[Any] = []
        rung: dict[int, Bell] = {}
        for j, (actor, g, base, staged) in enumerate(zip(self.actors, grads, bases, inbox)):
            bell = self._bell(j, w) if staged else None
            if bell is not None:
                bell.ring(w, seq, base)
                rung[j] = bell
                out.append(None)
            elif staged:
                out.append(actor.push_inbox.remote(w, base, seq))
            else:
                out.append(actor.push.remote(w, g, base, seq))
        for j, bell in rung.items():
            out[j] = bell.answer(seq)
        return out

    @staticmethod
    def results(answers: list[Any]) -> list[dict[str, Any]]:
        """:meth:`apply`'s answers with the object refs fetched."""
        refs = [x for x in answers if not isinstance(x, dict)]
        fetched = iter(ray.get(refs)) if refs else iter(())
        return [x if isinstance(x, dict) else next(fetched) for x in answers]

    def close(self) -> None:
        for _, bell in self._bells.values():
            bell.close()
        self._bells.clear()


@ray.remote
class WorkerActor:
    """A :class:`~downpour.ps.worker.Worker` that fetches from the shard actors itself."""

    def __init__(self, cfg: RunConfig, wid: int, data: Any, bounds: list[tuple[int, int]], start_step: int, seq: int,
                 shards: list[Any], lanes: list[dict[str, Any] | None], threads: int):
        _quiet_readonly()
        torch.set_num_threads(threads)
        self.worker = make_worker(cfg, wid, data, bounds, start_step, seq)
        self.links = [ShardLink(actor, ln, wid, b - a) for actor, ln, (a, b) in zip(shards, lanes, bounds)]
        self.fetched = torch.zeros(bounds[-1][1])   # (numel,) the parameters, gathered shard by shard

    def _fetch(self) -> None:
        w = self.worker
        out = self.fetched.numpy()
        answers = [link.pull_into(out[a:b]) for link, (a, b) in zip(self.links, w.bounds)]
        remote = [i for i, x in enumerate(answers) if not isinstance(x, int)]
        for i, (params, version) in zip(remote, ray.get([answers[i] for i in remote])):
            a, b = w.bounds[i]
            out[a:b] = params
            answers[i] = version
        w.load([self.fetched], answers)

    def cycle(self, steps: int, stage: int | None) -> tuple:
        """Run ``steps`` training steps; returns per shard the gradient slice (None where it went
        into the shard's shared-memory inbox), then the push's metadata."""
        w = self.worker
        for _ in range(steps):
            if w.fetch_due():
                self._fetch()
            w.step(stage)
        push = w.take_push()
        staged = [link.stage(g.numpy(), push.seq, b) for link, g, b in zip(self.links, push.grads, push.base)]
        meta = {"seq": push.seq, "base": push.base, "steps": push.steps, "samples": push.samples,
                "loss": push.loss, "parts": push.parts, "skipped": push.skipped, "inbox": [g is None for g in staged]}
        return (*staged, meta)

    def node(self) -> str:
        return _node()


def connect(address: str) -> bool:
    """Join ``address`` or start a local Ray; returns True when this call started Ray."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True)
    return True


def _placer(nodes_info: list[dict[str, Any]]) -> Callable[[int, float], dict[str, Any]]:
    """Round-robin over the nodes. Pinned (hard affinity: Ray's soft affinity ignores the node for
    actors that need no CPU) only where the node has room; otherwise Ray chooses."""
    node_cpus = {nd["NodeID"]: nd["Resources"].get("CPU", 0) for nd in nodes_info if nd["Alive"]}
    nodes = sorted(k for k, c in node_cpus.items() if c > 0)
    load: dict[str, float] = {}

    def place(i: int, cpus: float) -> dict[str, Any]:
        if len(nodes) < 2:
            return {}
        node = nodes[i % len(nodes)]
        if load.get(node, 0.0) + cpus > node_cpus[node]:
            return {}
        load[node] = load.get(node, 0.0) + cpus
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}

    return place


def _start_actors(job: Job, shards: list[Shard], start_step: int, seqs: dict[int, int], run_id: str,
                  shard_actors: list[Any], worker_actors: list[Any]) -> tuple[Callable[[int, int, int], Any], list]:
    """Shard actors, then worker actors (which learn the shards' shared-memory lanes), appended to
    the lists given so a failure half-way still lets the caller tear down what was started.
    Returns ``spawn(worker, seq, start_step)``, which starts (or restarts) one worker actor, and
    the shards' lanes (updated in place when a restart gives a worker new inboxes)."""
    cfg = job.cfg
    n = cfg.cluster.workers
    per_worker = min(1.0, float(ray.cluster_resources().get("CPU", 1.0)) / n)  # 8 workers still fit on 2 cores
    threads = cfg.train.threads or max(1, int(os.cpu_count() or 1) // n)
    place = _placer(ray.nodes())
    for j, s in enumerate(shards):
        shard_actors.append(ShardActor.options(name=f"downpour-{run_id}-shard{j}", num_cpus=0, **place(j, 0.0))
                            .remote(s, f"/dev/shm/downpour-{run_id}", n))
    lanes = ray.get([a.lanes.remote() for a in shard_actors])
    incarnation = [0] * n

    def spawn(w: int, seq: int, step: int) -> Any:
        name, options, routes = f"downpour-{run_id}-worker{w}", place(w, per_worker), lanes
        if incarnation[w]:   # a restart: new name, new inboxes, wherever Ray finds room
            name, options = f"{name}-restart{incarnation[w]}", {}
            routes = lanes[:] = ray.get([a.new_inbox.remote(w, incarnation[w]) for a in shard_actors])
        incarnation[w] += 1
        return (WorkerActor.options(name=name, num_cpus=per_worker, **options)
                .remote(cfg, w, job.data.shard(w, n), job.bounds, step, seq, shard_actors, routes, threads))

    for w in range(n):
        worker_actors.append(spawn(w, seqs.get(w, 0), start_step))
    return spawn, lanes


def _drive(shard_actors: list[Any], worker_actors: list[Any], coord: Coordinator, recorder: Any,
           stage_of: Callable[[int], int | None], spawn: Callable[[int, int, int], Any], restarts: int,
           seqs: dict[int, int], pusher: ShardPush) -> None:
    """The driver loop: dispatch cycles, hand finished gradients to the shards (``pusher``: by
    doorbell where it can), record each push, and restart up to ``restarts`` lost workers."""
    m = len(shard_actors)
    next_seq = dict(seqs)                # per worker, one past the last push number the driver received
    pending: dict[Any, tuple[str, int]] = {}
    grads: dict[Any, list[Any]] = {}    # a cycle's metadata ref -> its gradient refs
    owner: dict[Any, Any] = {}          # a cycle's metadata ref -> the worker actor running it
    pushes: dict[Any, tuple[list[Any], dict[str, Any]]] = {}   # last push ref -> (all answers, metadata)
    blocked: set[int] = set()

    def set_live() -> None:  # waited for, so no worker fetches before the shards know who is live
        ray.get([a.set_workers.remote(sorted(coord.live)) for a in shard_actors])

    def dispatch(w: int) -> None:
        k = coord.begin_cycle(w)
        if k == 0:
            blocked.add(w)
            return
        blocked.discard(w)
        refs = worker_actors[w].cycle.options(num_returns=m + 1).remote(k, stage_of(coord.dispatched - k))
        grads[refs[m]] = refs[:m]
        owner[refs[m]] = worker_actors[w]
        pending[refs[m]] = ("cycle", w)

    def finish(w: int, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
        stale = [r["staleness"] for r in results]
        record = {"staleness": sum(stale) / m, "staleness_max": max(stale), "clock_gap": meta["clock_gap"],
                  "accepted": sum(r["accepted"] for r in results), "version": max(r["version"] for r in results)}
        joined = coord.end_cycle(w, meta["steps"])
        if joined:
            set_live()
        push = Push(w, meta["seq"], [], meta["base"], meta["steps"], meta["samples"], meta["loss"], meta["parts"],
                    meta["skipped"], meta["clock_gap"])
        recorder.on_push(push, record)
        for v in sorted(blocked | set(joined) | {w}):
            dispatch(v)

    for _ in range(coord.depth):
        for w in sorted(coord.live):
            dispatch(w)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        kind, w = pending.pop(ready[0])
        if kind == "cycle":
            actor = owner.pop(ready[0])
            try:
                meta = ray.get(ready[0])
            except RayError as err:  # the worker died: its push never left, so nothing of it is applied
                grads.pop(ready[0], None)
                if w not in coord.live or actor is not worker_actors[w]:
                    continue         # another queued cycle of the same dead actor: already handled
                coord.lose(w, type(err).__name__)
                log.warning("worker %d lost at step %d: %s", w, coord.done, type(err).__name__)
                if restarts > 0 and coord.dispatched < coord.total:
                    restarts -= 1
                    worker_actors[w] = spawn(w, next_seq.get(w, 0), coord.done)
                    ray.get(worker_actors[w].node.remote())
                    coord.rejoin(w)
                    log.warning("worker %d restarted", w)
                set_live()
                for _ in range(coord.depth):
                    for v in sorted(blocked | {w}):
                        dispatch(v)
                continue
            if w not in coord.live or actor is not worker_actors[w]:
                # a cycle that finished just as its actor died, reported after the loss: the loss
                # already gave its steps back, so it is dropped (not applied at all)
                grads.pop(ready[0], None)
                continue
            coord.end_compute(w)
            meta["clock_gap"] = coord.gaps[w]
            next_seq[w] = meta["seq"] + 1
            # rung shards have applied it when this returns; the others answer with object refs
            answers = pusher.apply(w, meta["seq"], meta["base"], grads.pop(ready[0]), meta["inbox"])
            dispatch(w)                      # async: compute the next cycle while this push is applied
            refs = [x for x in answers if not isinstance(x, dict)]
            if not refs:
                finish(w, answers, meta)
                continue
            pushes[refs[-1]] = (answers, meta)
            pending[refs[-1]] = ("push", w)  # each shard runs the driver's calls in order; wait on all below
            continue
        answers, meta = pushes.pop(ready[0])
        finish(w, pusher.results(answers), meta)


def run_ray(job: Job, shards: list[Shard], coord: Coordinator, recorder: Any, stage_of: Callable[[int], int | None],
            start_step: int, seqs: dict[int, int]) -> tuple[list[ShardState], dict[str, Any]]:
    """Run the coordinator's budget on Ray actors; returns the final shard states and placement info.

    Whatever happens (an error, Ctrl-C), the actors are killed and the shared memory removed, so
    nothing is left running on a shared cluster.
    """
    started = connect(job.cfg.cluster.address)
    shard_actors: list[Any] = []
    worker_actors: list[Any] = []
    pusher: ShardPush | None = None
    try:
        spawn, lanes = _start_actors(job, shards, start_step, seqs, uuid.uuid4().hex[:8], shard_actors, worker_actors)
        pusher = ShardPush(shard_actors, lanes)
        placement = {"shards": ray.get([a.node.remote() for a in shard_actors]),
                     "workers": ray.get([a.node.remote() for a in worker_actors])}
        recorder.snapshot = lambda: ray.get([a.state_dict.remote() for a in shard_actors], timeout=60)
        recorder.mark_started()   # the placement answers above mean every actor has been built
        try:
            _drive(shard_actors, worker_actors, coord, recorder, stage_of, spawn, job.cfg.cluster.restarts, seqs, pusher)
        except BaseException:
            recorder.save_on_failure()   # while the shard actors are still up
            raise
        states = ray.get([a.state_dict.remote() for a in shard_actors])  # flushes a partial sync round
    finally:  # best effort: Ray itself may be going down
        if pusher is not None:
            pusher.close()
        try:
            ray.get([a.close.remote() for a in shard_actors], timeout=30)
        except Exception:  # noqa: BLE001
            log.warning("a shard could not remove its shared memory (/dev/shm/downpour-*)")
        for a in (*worker_actors, *shard_actors):
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        if started:
            ray.shutdown()
    nodes = sorted(set(placement["shards"]) | set(placement["workers"]))
    return states, {"nodes": len(nodes), "placement": {k: [nodes.index(x) for x in v] for k, v in placement.items()}}
