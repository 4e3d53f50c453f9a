"""One partition of a network: the largest of K blocks' weights, FLOPs, activations, halos and bytes, per example.

A cat stage's output grid is cut into a gr x gc grid of K spatial blocks (gr·gc = K, the pair with the shortest cuts,
as ``downpour.parallel`` cuts them); a partition owns its block's untied weights (encoder, and decoder if untied) and
needs its input window, its block plus the receptive-field halo, and the pooling and LCN halos of its neighbours
(DistBelief's pipeline; split the Ray runner's way a partition keeps its block's filter work alone, and the replica's
process the rest: :mod:`~downpour.plan.hub`). :mod:`downpour.plan.predict` puts the partition on a cluster.
"""
from __future__ import annotations

import math
from typing import Any

from downpour.models.frozen import CACHE_BYTES
from downpour.parallel.blocks import grid_shape
from downpour.plan.hub import (block_copies, block_held, codes_size, filter_flops, hub_runs, lends_banks, lent,
                               replica_flops, replica_memory, windows)
from downpour.plan.network import Network, Stage, over_schedule

__all__ = ["RULE_STATE", "grid", "partition", "partition_stage", "uncuttable"]

RULE_STATE = {"sgd": 0, "momentum": 1, "adagrad": 1, "adam": 2}   # (n,) state tensors a shard keeps per parameter


def grid(k: int, stage: Stage | None = None) -> tuple[int, int]:
    """K blocks as rows x columns, as the model-parallel runner cuts ``stage``'s filter output (a square
    one: 8 -> 4x2, 9 -> 3x3; 8 on 3x40 -> 1x8)."""
    return grid_shape(k, codes_size(stage) if stage is not None and stage.in_shape else None)


def _area(need: tuple[int, int], own: tuple[int, int], channels: int) -> int:
    return max(0, channels * (need[0] * need[1] - own[0] * own[1]))


def partition_stage(stage: Stage, k: int, runner: bool = False) -> dict[str, float]:
    """The largest of ``k`` blocks of one stage: its share of the weights, FLOPs and activations (per
    example), and the halo values it receives per example (forward inputs, pooling halo both ways, LCN). ``runner``:
    split the Ray runner's way (:func:`~downpour.plan.hub.hub_runs`), its activations are what the partition actor
    keeps (:func:`~downpour.plan.hub.block_held`), not DistBelief's share with the halos."""
    if not stage.in_shape or k == 1:
        share = 1 / k
        return {"share": share, "params": stage.params * share, "frozen": stage.frozen * share,
                "flops_fwd_bwd": stage.flops_fwd_bwd * share, "flops_fwd": stage.flops_fwd * share,
                "act_floats": stage.act_floats * share, "copy_floats": stage.copy_floats * share,
                "state_floats": stage.state_floats * share, "halo_floats": 0.0, "halo_fwd_floats": 0.0}
    (gr, gc), (c, h, w) = grid(k, stage), stage.in_shape
    train, fwd = filter_flops(stage) if runner else (stage.flops_fwd_bwd, stage.flops_fwd)   # (the rest: the replica's)
    m, ph, pw = stage.out_shape
    oh, ow = codes_size(stage)
    bh, bw = math.ceil(oh / gr), math.ceil(ow / gc)           # codes block
    qh, qw = math.ceil(ph / gr), math.ceil(pw / gc)           # pooled block
    share = bh * bw / (oh * ow)
    if stage.tied_banks is None:
        weight_share = share
    else:                                                     # a partition holds every bank its block uses
        th, tw = stage.tied_banks
        weight_share = min(th, bh) * min(tw, bw) / (th * tw)

    def need(n_block: int, step: int, size: int, full: int, g: int) -> int:
        return min(full, (n_block - 1) * step + size) if g > 1 else full

    halo_in = _area((need(bh, stage.stride, stage.kernel, h, gr), need(bw, stage.stride, stage.kernel, w, gc)),
                    (math.ceil(h / gr), math.ceil(w / gc)), c)
    halo_pool = _area((need(qh, stage.pool_stride, stage.pool, oh, gr), need(qw, stage.pool_stride, stage.pool, ow, gc)),
                      (bh, bw), m)
    halo_lcn = _area((need(qh, 1, stage.lcn, ph, gr), need(qw, 1, stage.lcn, pw, gc)), (qh, qw), m)
    lcn_trained = halo_lcn * stage.lcn_trained      # a step training the stage skips its LCN where nothing reads it
    return {"share": share, "params": stage.params * weight_share, "frozen": stage.frozen * weight_share,
            "flops_fwd_bwd": train * share, "flops_fwd": fwd * share,
            "act_floats": (block_held(stage, k) if runner
                           else stage.act_floats * share + halo_in + halo_pool + lcn_trained),
            "copy_floats": block_copies(stage, k) if runner and stage.tied_banks is not None
            else stage.copy_floats * share,       # normalised filters of its block (the runner needs them untied)
            # its block's share of the stage's mask (DistBelief's); the runner's actor holds no buffer: the replica's
            # process runs the cost and LCN (hub.py replica_memory; the share: 2.44 kB, the main job split in 2)
            "state_floats": 0.0 if runner else stage.state_floats * share,
            "halo_floats": float(halo_in + 2 * halo_pool + lcn_trained),     # trained: the pooling halo both ways
            "halo_fwd_floats": float(halo_in + halo_pool + halo_lcn)}        # forward only (below a greedy stage)


def uncuttable(net: Network, k: int) -> str:
    """Why ``k`` partitions cannot be cut as the runner cuts them (a network it splits, ``net.uncut``; every
    stage's filter output into a grid of ``grid(k, stage)`` blocks, each at least one position), or "" when they can."""
    if k > 1 and net.uncut:               # (the runner's own predicate: parallel/partition.py cut_refusal)
        return f"{net.uncut}; plan it with one partition"
    for i, stage in enumerate(net.stages, start=1):
        if stage.in_shape:
            try:
                grid(k, stage)
            except ValueError:
                oh, ow = codes_size(stage)
                return f"stage {i}'s {oh}x{ow} filter output cannot be cut into {k} blocks: use fewer partitions"
    return ""


FLOP_KEYS = ("flops_train", "replica_flops", "flops_by_stage", "replica_flops_by_stage")   # (the last two: greedy)


def partition(net: Network, k: int, batch: int, rule: str) -> dict[str, Any]:
    """The largest of ``k`` partitions of ``net`` on a step of ``batch`` examples, shards applying ``rule``: what it
    holds, computes and moves (per example, or per step where said), and, of each of its FLOP figures (``FLOP_KEYS``),
    the L2 pooling and LCN part (``pool_lcn_`` + the key), which the plan times at their own rate, not the filters'."""
    out = _counted(net, k, batch, rule)
    bare = _counted(net.without_pool_lcn(), k, batch, rule)
    for key in FLOP_KEYS:
        if key in out:
            out["pool_lcn_" + key] = (out[key] - bare[key] if key in FLOP_KEYS[:2]
                                      else [a - b for a, b in zip(out[key], bare[key])])
    return out


def _counted(net: Network, k: int, batch: int, rule: str) -> dict[str, Any]:
    parts = [partition_stage(s, k, hub_runs(net, k)) for s in net.stages]
    params = sum(p["params"] for p in parts)

    cat = not net.counted              # (otherwise the stages are one model's layers, and torch counted its steps)
    # a greedy step's frozen stages come from the cache once each stage has seen its rows (plan/cache_hits.py), where
    # one process holds the replica: K > 1 partitions are remote actors, which drop it (ps/partitions_on_ray.py)
    runs = list(net.frozen_runs) if cat and k == 1 and net.frozen_runs else [1.0] * len(parts)

    def over(trained: str, forward: str) -> float:   # per example, averaged over the schedule's steps
        return over_schedule(net.schedule, [p[trained] for p in parts], [p[forward] for p in parts], runs)

    # what a step holds for its backward: each trained stage's activations of the batch and its copies of the filters
    # (plan/held.py); a greedy step holds its own stage's alone (the ones below run without a graph)
    held = [(4 * batch * p["act_floats"], 4 * p["copy_floats"]) for p in parts]
    if cat and net.schedule == "greedy":
        acts, copies = max(held, key=sum)
    else:
        acts, copies = (sum(h[i] for h in held) for i in (0, 1))
    out = {"params": params, "weight_bytes": 4 * params, "frozen_bytes": 4 * sum(p["frozen"] for p in parts),
           "grad_bytes": 4 * params,
           "opt_bytes": 4 * params * RULE_STATE[rule], "act_bytes": acts, "copy_bytes": copies,
           "state_bytes": 4 * sum(p["state_floats"] for p in parts),     # every stage's, greedy too: the model is whole
           "halo_bytes": 4 * over("halo_floats", "halo_fwd_floats"),
           "flops_train": over("flops_fwd_bwd", "flops_fwd") if cat else net.flops_train}
    # the bytes that travel (the runner's way, lends_banks): the partition's own filters to and from its shards, the
    # shared banks to and from the replica's once a fetch or push, and lent per step. A partition's fetch and push carry
    # none of its block's banks: counting them, the main job split in 2 would read 33.79 kB a partition for 0 (its
    # blocks own nothing), with no bytes between the replica and its partitions
    banks = lent(net, k)
    out["server_bytes"] = 4 * sum(p["params"] for s, p in zip(net.stages, parts) if not lends_banks(net, s, k))
    out["shared_bytes"] = 4 * sum(s.params for s in net.stages if lends_banks(net, s, k))
    out["lend_bytes"], out["lend_bytes_replica"] = 4 * banks["largest"], 4 * banks["replica"]
    # each call's input windows and code blocks, through the replica's process; its partitions exchange no halo
    # (hub.windows, which says why DistBelief's halo is not counted)
    calls = windows(net, k)
    out["window_bytes"], out["window_bytes_replica"] = 4 * calls["largest"], 4 * calls["replica"]
    if hub_runs(net, k):
        out["halo_bytes"] = 0.0
    # split the runner's way a partition runs its block's filter work alone; its replica's process the rest (hub.py)
    hub = replica_flops(net, k)
    out["replica_flops"] = hub["train"]
    if net.schedule == "greedy" and len(parts) > 1:   # a step of each stage (the figures above are their mean)
        fwd, halo_fwd = [p["flops_fwd"] for p in parts], [p["halo_fwd_floats"] for p in parts]
        out["flops_by_stage"] = (list(net.counted) if not cat else
                                 [runs[i] * sum(fwd[:i]) + p["flops_fwd_bwd"] for i, p in enumerate(parts)])
        halo = cat and not hub_runs(net, k)
        out["halo_by_stage"] = [4 * (runs[i] * sum(halo_fwd[:i]) + p["halo_floats"]) if halo else 0.0
                                for i, p in enumerate(parts)]
        out["window_by_stage"] = [4 * w for w in calls["replica_by_stage"]]
        out["replica_flops_by_stage"] = hub["by_stage"]
    # a greedy cat step's frozen stages' output, kept per input row in the replica's process (models/frozen.py), at
    # its bound (what it holds depends on the data's distinct rows): only where one machine holds the whole replica;
    # K > 1 partitions are remote, where the cache is dropped (ps/partitions_on_ray.py)
    out["frozen_cache_bytes"] = CACHE_BYTES if cat and net.schedule == "greedy" and k == 1 and len(parts) > 1 else 0
    out.update(replica_memory(net, k, batch))   # the replica's own process (hub.py), a machine of its own: 0 where none
    # a split partition actor's LocalParams over its own filters (ps/partitions_on_ray.py): the fetch vector, apart from
    # its filters, and the push's summed gradient, beside the step's; its own shards' bytes each. Without
    # them, cat-untied split in 2 would read 2.95 MB a partition where it holds 4.69 MB
    out["fetch_push_bytes"] = 2 * out["server_bytes"] if hub_runs(net, k) else 0.0
    out["memory_bytes"] = (out["weight_bytes"] + out["frozen_bytes"] + out["state_bytes"] + out["grad_bytes"]
                           + out["fetch_push_bytes"] + out["act_bytes"] + out["copy_bytes"] + out["frozen_cache_bytes"])
    return out
