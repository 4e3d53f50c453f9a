"""The Ray runner: server shards and workers as Ray actors. The only module that imports Ray.

The driver follows Ray's parameter-server example: a ``{future: (kind, worker)}`` dict and
``ray.wait``. A worker actor runs one push cycle (fetch when due, ``n_push`` training steps) and
*returns* its gradient, one NumPy slice per shard; the driver then hands those object refs to the
shard actors. So:

- parameters and gradients travel through Ray's object store: a shard's ``pull`` result and a
  worker's gradient are written into shared memory once and read zero-copy by the receiver on
  the same node (and moved node-to-node by Ray's object manager across machines);
- the returned gradient is owned by the driver, so a worker killed mid-cycle loses nothing that
  was half-pushed: its push reaches every shard once (the cycle returned) or none (it did not);
  the shards' sequence numbers reject a retried push, so none is applied twice.

``cluster.address`` joins an existing cluster; empty starts a local Ray. Actors are spread over
the cluster's nodes.
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

from downpour.config import RunConfig
from downpour.ps.checkpoint import ShardState
from downpour.ps.coordinator import Coordinator
from downpour.ps.job import Job, make_worker
from downpour.ps.shard import Shard
from downpour.ps.worker import Push

log = logging.getLogger(__name__)


def _quiet_readonly() -> None:
    # object-store buffers are read-only; we only ever read them (or copy), so torch's warning is noise
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


@ray.remote
class ShardActor:
    """A :class:`~downpour.ps.shard.Shard` in its own process."""

    def __init__(self, shard: Shard):
        _quiet_readonly()
        torch.set_num_threads(1)
        self.shard = shard

    def pull(self, worker: int | None = None) -> tuple[np.ndarray, int]:
        params, version = self.shard.pull(worker)
        return params.numpy(), version  # copied once into the object store as it is returned

    def push(self, worker: int, grad: np.ndarray, base: int, seq: int) -> dict[str, Any]:
        staleness = self.shard.version - base
        result = self.shard.push(worker, torch.from_numpy(grad), base, seq)  # zero-copy view of the store
        return {"accepted": result.accepted, "reason": result.reason, "version": result.version, "staleness": staleness}

    def set_workers(self, workers: list[int]) -> None:
        self.shard.set_workers(workers)

    def state_dict(self) -> ShardState:
        return self.shard.state_dict()

    def node(self) -> str:
        return _node()


@ray.remote
class WorkerActor:
    """A :class:`~downpour.ps.worker.Worker` that fetches from the shard actors itself."""

    def __init__(self, cfg: RunConfig, wid: int, data: Any, bounds: list[tuple[int, int]], start_step: int, seq: int,
                 shards: list[Any], threads: int):
        _quiet_readonly()
        torch.set_num_threads(threads)
        self.worker = make_worker(cfg, wid, data, bounds, start_step, seq)
        self.shards = shards

    def cycle(self, steps: int, stage: int | None) -> tuple:
        """Run ``steps`` training steps; returns one gradient slice per shard, then the push's metadata."""
        w = self.worker
        for _ in range(steps):
            if w.fetch_due():
                pulled = ray.get([s.pull.remote(w.wid) for s in self.shards])
                w.load([torch.from_numpy(p) for p, _ in pulled], [v for _, v in pulled])
            w.step(stage)
        push = w.take_push()
        meta = {"seq": push.seq, "base": push.base, "steps": push.steps, "samples": push.samples,
                "loss": push.loss, "parts": push.parts, "skipped": push.skipped}
        return (*[g.numpy() for g in push.grads], meta)

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


def run_ray(job: Job, shards: list[Shard], coord: Coordinator, recorder: Any, stage_of: Callable[[int], int | None],
            start_step: int, seqs: dict[int, int]) -> tuple[list[ShardState], dict[str, Any]]:
    """Run the coordinator's budget on Ray actors; returns the final shard states and placement info."""
    cfg = job.cfg
    n, m = cfg.cluster.workers, len(shards)
    started = connect(cfg.cluster.address)
    run_id = uuid.uuid4().hex[:8]
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    per_worker = min(1.0, cpus / n)   # fractional CPUs so 8 workers still fit on a 2-core laptop
    threads = cfg.train.threads or max(1, int(os.cpu_count() or 1) // n)
    spread = {"scheduling_strategy": "SPREAD"}
    shard_actors = [ShardActor.options(name=f"downpour-{run_id}-shard{j}", num_cpus=0, **spread).remote(s)
                    for j, s in enumerate(shards)]
    datas = [job.data.shard(w, n) for w in range(n)]
    worker_actors = [WorkerActor.options(name=f"downpour-{run_id}-worker{w}", num_cpus=per_worker, **spread)
                     .remote(cfg, w, datas[w], job.bounds, start_step, seqs.get(w, 0), shard_actors, threads)
                     for w in range(n)]
    placement = {"shards": ray.get([a.node.remote() for a in shard_actors]),
                 "workers": ray.get([a.node.remote() for a in worker_actors])}
    recorder.snapshot = lambda: ray.get([a.state_dict.remote() for a in shard_actors])

    def set_live() -> None:  # waited for, so no worker fetches before the shards know who is live
        ray.get([a.set_workers.remote(sorted(coord.live)) for a in shard_actors])

    pending: dict[Any, tuple[str, int]] = {}
    grads: dict[int, list[Any]] = {}
    pushes: dict[Any, tuple[list[Any], dict[str, Any]]] = {}   # last push ref -> (all refs, metadata)
    blocked: set[int] = set()

    def dispatch(w: int) -> None:
        k = coord.begin_cycle(w)
        if k == 0:
            blocked.add(w)
            return
        blocked.discard(w)
        refs = worker_actors[w].cycle.options(num_returns=m + 1).remote(k, stage_of(coord.dispatched - k))
        grads[w] = refs[:m]
        pending[refs[m]] = ("cycle", w)

    for w in sorted(coord.live):
        dispatch(w)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        kind, w = pending.pop(ready[0])
        if kind == "cycle":
            try:
                meta = ray.get(ready[0])
            except RayError as err:  # the worker died: its push never left, so nothing of it is applied
                grads.pop(w, None)
                coord.lose(w, type(err).__name__)
                log.warning("worker %d lost at step %d: %s", w, coord.done, type(err).__name__)
                set_live()
                for v in sorted(blocked):
                    dispatch(v)
                continue
            meta["clock_gap"] = coord.gaps[w]
            coord.end_compute(w)
            refs = [a.push.remote(w, g, b, meta["seq"]) for a, g, b in zip(shard_actors, grads.pop(w), meta["base"])]
            pushes[refs[-1]] = (refs, meta)
            pending[refs[-1]] = ("push", w)  # each shard runs the driver's calls in order; wait on all below
            dispatch(w)                      # async: compute the next cycle while this push is applied
            continue
        refs, meta = pushes.pop(ready[0])
        results = ray.get(refs)
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
    states = ray.get([a.state_dict.remote() for a in shard_actors])  # state_dict flushes a partial sync round
    for a in (*worker_actors, *shard_actors):
        ray.kill(a)
    if started:
        ray.shutdown()
    nodes = sorted(set(placement["shards"]) | set(placement["workers"]))
    return states, {"nodes": len(nodes), "placement": {k: [nodes.index(x) for x in v] for k, v in placement.items()}}
