"""A layout of a network on a cluster timed: step time, the cycle's bounds, samples/s, staleness.

The layout is DistBelief's: R model replicas of K partitions each, one machine per partition, plus S parameter-server
shard machines; and, split the Ray runner's way (every network but the paper's pipeline), one machine per replica for
its own process (:mod:`downpour.plan.hub`). What the largest of a replica's K partitions holds, computes and exchanges
is :mod:`downpour.plan.partition`'s. Every number is for the largest block.

Per step of B examples (train.batch_size), on the largest partition:

    compute  = B · (FLOPs_train(partition) less pooling and LCN / FLOP/s per core + its pooling and LCN FLOPs /
               their FLOP/s per core) / cores
               (cores scale linearly; the runner's way its block's filter work alone; the filters' FLOPs less pooling
               and LCN at the locally connected layer's rate, pooling and LCN at theirs: Rates; element-wise work runs
               at half the layer's rate or less)
    replica  = B · the replica's process's FLOPs (every stage's pooling, LCN, a tiled stage's banks normalised), at
               the same two rates, / cores: the runner's way, between its partitions' calls
               (:func:`~downpour.plan.hub.replica_flops`)
    halo     = B · halo bytes / bandwidth                                 (exchanged, not overlapped; the paper's
               pipeline: the runner's partitions exchange none)
    windows  = B · every call's windows and codes through the replica's process, all K / bandwidth (the runner's way)
    lend     = the tiled stages' banks lent to the K blocks and their gradients back / bandwidth
               (:func:`~downpour.plan.hub.lends_banks`)
    fetch    = the larger of the partition's own weights and the shared banks its replica fetches / bandwidth + a
               remote call's own cost (:mod:`downpour.plan.calls`), every n_fetch steps (blocks the next step; the two
               travel at once, on their own links)
    push     = the same bytes' gradient / bandwidth + a call's cost, every n_push steps   (travels while it computes)
    step     = compute + replica + halo + windows + lend + fetch / n_fetch

A cycle of p = n_push steps takes the longest of p·step, the partition's link (its push or p/f fetches, whichever is more,
and its halos or windows and the banks lent to it), the replica's process's link (the runner's way: all K's windows, the lent
banks, the shared banks' fetch and push), a shard's link (R pushes and R·p/f fetches of its 1/S of the parameters) and
a shard's apply (R pushes, each the update rule's fixed cost per apply, :data:`~downpour.plan.calls.APPLY_S` or
``--calibrate``'s, and its 1/S of the bytes at the apply rate times its cores). Examples/s = R·p·B /
cycle. The push's delay in steps, d = (push + one shard's apply) / (cycle / p), and R replicas
give the steady-state staleness N·(p + d + ā)/p − 1 of :mod:`downpour.plan.staleness` (N = R:
each partition pushes only to its own shards, and every shard sees the R replicas' pushes).
"""
from __future__ import annotations

import math
from typing import Any

from downpour.plan.calibrate import Rates
from downpour.plan.calls import call_s
from downpour.plan.cluster import Cluster
from downpour.plan.hub import hub_runs, replica_machines
from downpour.plan.network import Network
from downpour.plan.one_machine import COPY_BYTES_PER_S, cores_each, on_one_machine
from downpour.plan.staleness import steady_staleness

__all__ = ["layout_timing"]


def layout_timing(net: Network, part: dict[str, float], cl: Cluster, r: int, k: int, s: int, batch: int,
                  n_push: int, n_fetch: int, rates: Rates, rule: str) -> dict[str, Any]:
    """The timing of ``r`` replicas of ``k`` partitions (the largest is ``part``, :mod:`downpour.plan.partition`'s)
    and ``s`` shards on ``cl`` (module docstring): ``times_s`` per step, ``cycle_bounds_s`` and the ``bottleneck``
    among them, ``cycle_s``, ``samples_per_s``, ``delay_steps`` and the steady ``staleness``."""
    p, f, one = n_push, n_fetch, on_one_machine(cl.machines)
    # one machine: copies through shared memory, and its cores split among the workers (one_machine.py)
    bw = COPY_BYTES_PER_S if one else cl.bandwidth
    cores = cores_each(cl.cores, r * k + replica_machines(net, r, k)) if one else cl.cores
    full = 4 * net.params                                     # bytes of one replica's push (and fetch)
    # the partitions' fetches (pushes) and the replica's of the shared banks travel at once, on their own links; each
    # is a remote call too, whose own cost the bytes do not shrink (calls.py: cat-demo's 270.3 µs of bytes at 1 Gbit/s
    # against a round trip of ~5 ms through the object store)
    moved = max(part["server_bytes"], part["shared_bytes"]) / bw + call_s(one)

    def secs(flops: float, pool_lcn: float) -> float:     # per step: pooling and LCN at their rate, the rest the layer's
        return batch * ((flops - pool_lcn) / rates.flops_per_core + pool_lcn / rates.pool_lcn_flops_per_core) / cores

    t = {"compute": secs(part["flops_train"], part["pool_lcn_flops_train"]),
         "replica_compute": secs(part["replica_flops"], part["pool_lcn_replica_flops"]),
         "halo": batch * part["halo_bytes"] / bw, "windows": batch * part["window_bytes_replica"] / bw,
         "lend": part["lend_bytes_replica"] / bw, "fetch": moved, "push": moved, "call": call_s(one),
         # a shard's apply of a push: the rule's fixed cost (torch's per-op cost, the shard's checks: calls.py) and
         # its 1/S of the bytes at the apply rate (one machine: a thread a shard)
         "apply_fixed": (fixed := rates.apply_fixed(rule)),
         "apply_one": fixed + full / s / ((1 if one else cl.cores) * rates.apply_bytes_per_core)}
    t["step"] = t["compute"] + t["replica_compute"] + t["halo"] + t["windows"] + t["lend"] + t["fetch"] / f
    if "flops_by_stage" in part:     # greedy: stage i's steps run the stages below it forward only (their mean is t)
        t["step_by_stage"] = [secs(fl, pfl) + secs(hub, phub) + batch * (h + w) / bw + t["lend"] + t["fetch"] / f
                              for fl, pfl, hub, phub, h, w in zip(
                                  part["flops_by_stage"], part["pool_lcn_flops_by_stage"], part["replica_flops_by_stage"],
                                  part["pool_lcn_replica_flops_by_stage"], part["halo_by_stage"], part["window_by_stage"])]
    bounds = {"worker step": p * t["step"],
              "partition link": (max(part["server_bytes"], p / f * part["server_bytes"])
                                 + p * (batch * (part["halo_bytes"] + part["window_bytes"]) + part["lend_bytes"])) / bw,
              "shard link": r * full / s * max(1.0, p / f) / bw,
              "shard apply": r * t["apply_one"]}
    if one:     # no links: every process's core-seconds of a cycle on the machine's cores (one_machine.py)
        # (a cycle is p steps: p/f fetches and one push a partition; the steps' windows, halos and lent banks)
        del bounds["partition link"], bounds["shard link"]
        copies = r * k * (p / f * t["fetch"] + t["push"]) + r * p * (t["windows"] + k * t["halo"] + t["lend"])
        worked = r * p * (k * t["compute"] + t["replica_compute"]) * cores + r * s * t["apply_one"] + copies
        bounds["machine's cores"] = worked / cl.cores
    elif hub_runs(net, k):    # the replica's own process: every partition's calls, the lent banks, the shared banks
        bounds["replica link"] = (max(part["shared_bytes"], p / f * part["shared_bytes"])
                                  + p * (batch * part["window_bytes_replica"] + part["lend_bytes_replica"])) / bw
    bottleneck = max(bounds, key=bounds.get)
    cycle = bounds[bottleneck]
    delay = (t["push"] + t["apply_one"]) / (cycle / p) if cycle > 0 else 0.0
    return {"times_s": t, "cycle_bounds_s": bounds, "bottleneck": bottleneck, "cycle_s": cycle,
            "samples_per_s": r * p * batch / cycle if cycle > 0 else math.inf, "delay_steps": delay,
            "staleness": steady_staleness(r, p, f, delay)}
