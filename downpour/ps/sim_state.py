"""What the simulated cluster keeps in a server checkpoint besides the shards, so a resumed run is the
uninterrupted run's continuation bit for bit: each worker (its replica, its torch RNG, the push it is
building, its counters, how many batches it drew), the coordinator's cycles in flight, and the pushes travelling.

Each ``*_state`` function returns ``(meta, tensors)``: JSON, and tensors named under ``prefix``; the
``restore_*`` functions take them back. The simulator (:mod:`downpour.ps.simulated`) assembles them.
"""
from __future__ import annotations

import heapq
import re
from typing import Any

import torch
from torch import Tensor

from downpour.ps.coordinator import Coordinator
from downpour.ps.shard import Shard, stages_with_gradient
from downpour.ps.worker import Push, Worker
from downpour.train.flat import FLAT_WORDS, ParamLayout
from downpour.train.telemetry import PartsMean

State = tuple[dict[str, Any], dict[str, Tensor]]


def worker_state(worker: Worker, prefix: str) -> State:
    """The replica's parameters and buffers, the push being built and the counters of ``worker``."""
    params = worker.params
    tensors = {f"{prefix}params": params.layout.params_to_vector_list(params._params).detach().clone()}
    tensors |= {f"{prefix}buffer.{name}": b.detach().clone() for name, b in worker.model.named_buffers()}
    if params._acc is not None:
        tensors[f"{prefix}acc"] = params._acc.detach().clone()
    meta = {"seq": worker.seq, "steps": worker.steps, "since_fetch": worker._since_fetch, "versions": worker._versions,
            "acc_steps": worker._acc_steps, "base": worker._base, "mean": worker._mean.state(), "skipped": worker._skipped,
            "stage": worker._stage, "trained": None if None in worker._trained else sorted(worker._trained)}
    return meta, tensors


def restore_worker(worker: Worker, meta: dict[str, Any], tensors: dict[str, Tensor], prefix: str,
                   stage_ranges: dict[int, list[tuple[int, int]]] | None = None) -> None:
    """``stage_ranges`` (ClusterSetup's): read the stages of the push being built off its gradient, for a
    checkpoint written before 2026-12-04, which kept none (the shards that wrote it took a stage pushed all zeros as
    held)."""
    params = worker.params
    with torch.no_grad():
        params.layout.vector_to_params_list(tensors[f"{prefix}params"], params._params)
        for name, b in worker.model.named_buffers():
            b.copy_(tensors[f"{prefix}buffer.{name}"])
    params._acc = tensors[f"{prefix}acc"].clone() if f"{prefix}acc" in tensors else None
    worker.seq, worker.steps, worker._since_fetch = meta["seq"], meta["steps"], meta["since_fetch"]
    worker._versions, worker._acc_steps, worker._base = list(meta["versions"]), meta["acc_steps"], list(meta["base"])
    worker._mean, worker._skipped = PartsMean.from_state(meta["mean"]), meta["skipped"]
    worker._stage = meta.get("stage")      # (a checkpoint written before 2026-12-04: none)
    if "trained" in meta:
        worker._trained = {None} if meta["trained"] is None else set(meta["trained"])
    elif params._acc is None:
        worker._trained = set()
    else:
        stages = stages_with_gradient(params._acc, stage_ranges or {})
        worker._trained = {None} if stages is None else set(stages)


def saved_buffers(meta: dict[str, Any]) -> dict[str, Tensor]:
    """The first live worker's replica's buffers in a whole-state checkpoint (``load_server``'s meta), as the run's
    end gives them (:meth:`~downpour.ps.worker.Worker.buffers`): what the model file keeps of a run saved from its
    checkpoint (stopped after its last push); none from another checkpoint (the driver's copy's are kept)."""
    live = meta.get("sim", {}).get("coordinator", {}).get("live", [])
    if not live:
        return {}
    prefix = f"sim.w{min(live)}.buffer."
    return {k[len(prefix):]: v for k, v in meta.get("tensors", {}).items() if k.startswith(prefix)}


def push_state(push: Push, prefix: str) -> State:
    meta = {"worker": push.worker, "seq": push.seq, "base": push.base, "steps": push.steps, "samples": push.samples,
            "loss": push.loss, "parts": push.parts, "skipped": push.skipped, "clock_gap": push.clock_gap,
            "shards": len(push.grads), "stages": None if push.stages is None else list(push.stages)}
    return meta, {f"{prefix}grad{j}": g.detach().clone() for j, g in enumerate(push.grads)}


def restore_push(meta: dict[str, Any], tensors: dict[str, Tensor], prefix: str,
                 stage_ranges: dict[int, list[tuple[int, int]]] | None = None) -> Push:
    """``stage_ranges``: as for :func:`restore_worker`, for a travelling push saved before 2026-12-04."""
    grads = [tensors[f"{prefix}grad{j}"] for j in range(meta["shards"])]
    if "stages" in meta:
        stages = None if meta["stages"] is None else tuple(meta["stages"])
    else:
        stages = stages_with_gradient(torch.cat(grads), stage_ranges or {})
    return Push(meta["worker"], meta["seq"], grads, list(meta["base"]), meta["steps"], meta["samples"], meta["loss"],
                dict(meta["parts"]), meta["skipped"], meta["clock_gap"], stages)


def coordinator_state(coord: Coordinator) -> dict[str, Any]:
    """The cycles handed out and not yet applied (the rest, done, clocks, events, is in the checkpoint already),
    the ranges lost workers gave back and who was lost."""
    return {"dispatched": coord.dispatched, "live": sorted(coord.live),
            "inflight": {str(w): [list(c) for c in cycles] for w, cycles in coord._inflight.items()},
            "unapplied": {str(w): n for w, n in coord._unapplied.items()},
            "gaps": {str(w): g for w, g in coord.gaps.items()},
            "returned": [list(r) for r in coord.returned], "lost": list(coord.lost),
            "lost_clock": {str(w): c for w, c in coord._lost_clock.items()}}


def restore_coordinator(coord: Coordinator, meta: dict[str, Any], step_index: list[int], left: list[int]) -> None:
    """``step_index`` and ``left``: the simulator's per worker (a checkpoint written before 2026-12-04 kept no cycle's
    first step: the one in flight is its worker's current cycle, ``step_index - (steps - left)``)."""
    for w in set(meta["live"]) - coord.live:     # joined since: a warm start ended while pushes were in flight
        coord._join(w)
    coord._unapplied = {int(w): n for w, n in meta["unapplied"].items()}
    for w in meta.get("lost", []):               # (a checkpoint written before 2026-12-04: none)
        coord.live.discard(w)
        if not coord.holds_round(w):
            coord.gate.leave(w)
        coord.lost.append(w)
    coord._lost_clock = {int(w): c for w, c in meta.get("lost_clock", {}).items()}
    coord.dispatched, coord.returned = meta["dispatched"], [(f, k) for f, k in meta.get("returned", [])]
    coord._inflight = {int(w): [(c[0], c[1], c[2] if len(c) > 2 else step_index[int(w)] - (c[0] - left[int(w)]))
                                for c in cycles] for w, cycles in meta["inflight"].items()}
    coord.gaps = {int(w): g for w, g in meta["gaps"].items()}


def copies_state(shard: Shard, prefix: str) -> State:
    """DC-ASGD: the parameter copies the shard keeps for pushes in flight, and which pushes arrived."""
    tensors = {f"{prefix}{w}.{v}": c.clone() for w, kept in shard._backup.items() for v, c in kept.items()}
    meta = {"kept": {str(w): sorted(kept) for w, kept in shard._backup.items()},
            "arrived": {str(w): {str(s): b for s, b in a.items()} for w, a in shard._arrived.items()},
            "next": {str(w): n for w, n in shard._next.items()}}
    return meta, tensors


def restore_copies(shard: Shard, meta: dict[str, Any], tensors: dict[str, Tensor], prefix: str) -> None:
    shard._backup = {int(w): {v: tensors[f"{prefix}{w}.{v}"].clone() for v in versions}
                     for w, versions in meta["kept"].items()}
    shard._arrived = {int(w): {int(s): b for s, b in a.items()} for w, a in meta["arrived"].items()}
    shard._next = {int(w): n for w, n in meta["next"].items()}


# :func:`whole_state`'s tensor names and their words ({flat}: the flat vector's, its parameter list in the first
# worker's words alone, the others' naming it)
_SIM_WORDS = [(re.compile(r"sim\.w(\d+)\.params"), "worker {0}'s replica's parameters, {flat}"),
              (re.compile(r"sim\.w(\d+)\.acc"), "the push worker {0} is building: its gradients summed, one per "
               "element of sim.w{0}.params"),
              (re.compile(r"sim\.w(\d+)\.buffer\.(.+)"), "worker {0}'s replica's buffer {1} (its state-dict name)"),
              (re.compile(r"sim\.w(\d+)\.(torch|cuda)_rng"), "worker {0}'s torch random generator state ({1}, bytes)"),
              (re.compile(r"sim\.h(\d+)\.grad(\d+)"), "the push of event {0} in flight (the heap's order): its "
               "gradient for shard {1}, one per element of shard{1}.params"),
              (re.compile(r"sim\.dc(\d+)\.(\d+)\.(\d+)"), "DC-ASGD's copy of shard{0}.params as worker {1} fetched "
               "it at version {2}")]


def sim_layouts(tensors: dict[str, Tensor], params: ParamLayout | None = None,
                words: dict[str, str] | None = None) -> dict[str, str]:
    """:func:`whole_state`'s tensors' meanings in words, for the server checkpoint's metadata (a reader without
    downpour); ``params``: the flat layout of a replica's trainable parameters, listed in the first worker's
    ``sim.w<w>.params`` and named by the others' (``words``: :meth:`~downpour.train.flat.ParamLayout.describe`'s).
    Listed in every worker's, the list was 590 kB of a 658 kB header at 16 partitions, 16 shards and 32 workers
    (docs/training.md, "Reading a run without downpour")."""
    if not tensors:     # (a Ray run's checkpoints: no sim.*, and no layout to put in words)
        return {}
    first = min((int(m.group(1)) for name in tensors if (m := _SIM_WORDS[0][0].fullmatch(name))), default=None)
    listed = FLAT_WORDS + (f": {params.describe(words=words)}" if params is not None else "")
    named = FLAT_WORDS + (f", as sim.w{first}.params's words list them" if params is not None else "")
    out = {}
    for name, t in tensors.items():
        for pattern, text in _SIM_WORDS:
            if m := pattern.fullmatch(name):
                shape = f"(elements {t.numel()})" if t.dim() == 1 else f"(shape {list(t.shape)})"
                flat = listed if m.group(1) == str(first) else named
                out[name] = f"{shape}: {text.format(*m.groups(), flat=flat)}"
                break
    return out


def whole_state(sim: Any) -> State:
    """The simulator's state as a push is recorded (:class:`~downpour.ps.simulated.SimulatedCluster`):
    what :func:`restore_whole_state` needs to go on exactly from there."""
    n = len(sim.workers)
    tensors = sim.torch_rngs.state("sim.")      # each worker's (an RBM's samples, dropout, a cost's noise)
    workers = []
    for w, worker in enumerate(sim.workers):
        meta, t = worker_state(worker, f"sim.w{w}.")
        workers.append(meta)
        tensors |= t
    heap = []
    for i, (t_, order, kind, w, push) in enumerate(sorted(sim._heap)):
        pm = None
        if push is not None:
            pm, t = push_state(push, f"sim.h{i}.")
            tensors |= t
        heap.append([t_, order, kind, w, pm])
    copies = []
    for j, shard in enumerate(sim.shards):
        meta, t = copies_state(shard, f"sim.dc{j}.")
        copies.append(meta)
        tensors |= t
    state = {"seed_steps": list(sim._seed_steps), "order": sim._order, "left": list(sim._left),
             "step_index": list(sim._step_index),
             "drawn": [sim.workers[w].steps + sim._drawn_offset[w] for w in range(n)],
             "blocked": sorted(sim._blocked), "wake": sorted(sim._wake_after or ()), "heap": heap,
             "rngs": [g.bit_generator.state for g in sim.rngs], "coordinator": coordinator_state(sim.coord),
             "workers": workers, "copies": copies}
    if sim._starting:       # lost workers whose replacements rejoin once their pushes land: {worker: seed step}
        state["starting"] = {str(w): k for w, k in sim._starting.items()}
    return state, tensors


def restore_whole_state(sim: Any, state: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Put ``sim`` (just built for the resumed run, its shards restored) where :func:`whole_state` saw it;
    the caller then skips each in-memory worker's drawn batches."""
    ranges = sim.setup.stage_ranges
    for w, worker in enumerate(sim.workers):
        restore_worker(worker, state["workers"][w], tensors, f"sim.w{w}.", ranges)
    sim._heap = [(t, order, kind, w, None if pm is None else restore_push(pm, tensors, f"sim.h{i}.", ranges))
                 for i, (t, order, kind, w, pm) in enumerate(state["heap"])]
    heapq.heapify(sim._heap)
    sim._order, sim._left, sim._blocked = state["order"], list(state["left"]), set(state["blocked"])
    sim._resume_wake = set(state["wake"])
    sim._starting = {int(w): k for w, k in state.get("starting", {}).items()}
    sim.restarts -= len(sim._starting)          # (spent, not yet in the events as a worker-restarted)
    for g, saved in zip(sim.rngs, state["rngs"]):
        g.bit_generator.state = saved
    # (a checkpoint written before 2026-12-02 has no step_index: the index it would have gone on with)
    sim._step_index = list(state.get("step_index", [state["coordinator"]["dispatched"] - left for left in sim._left]))
    restore_coordinator(sim.coord, state["coordinator"], sim._step_index, sim._left)
    if sim.coord.lost:                           # the shards were built knowing every worker
        for s in sim.shards:
            s.set_workers(sim.coord.members())
    for j, shard in enumerate(sim.shards):
        restore_copies(shard, state["copies"][j], tensors, f"sim.dc{j}.")
    sim.torch_rngs.restore(tensors, "sim.")    # (one shared state before 2026-12-05: WorkerRngs.restore says how)
