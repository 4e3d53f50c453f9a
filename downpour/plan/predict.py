"""A network on a cluster: memory per partition, bytes per push, step time, samples/s, staleness.

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
from dataclasses import asdict, dataclass
from typing import Any, Callable

from downpour._names import listed, plural
from downpour.errors import ConfigError
from downpour.parallel.partition import least_shards as runner_least_shards
from downpour.plan.calibrate import Rates
from downpour.plan.calls import call_s
from downpour.plan.hub import hub_runs, lends_banks, machines_of, replica_machines
from downpour.plan.idle import REPLICAS_TOLERANCE, Timed, fewest_shards, idle_why
from downpour.plan.network import Network
from downpour.plan.one_machine import COPY_BYTES_PER_S, PROCESS_BYTES, cores_each, on_one_machine, processes
from downpour.plan.partition import RULE_STATE, grid, partition, uncuttable
from downpour.plan.staleness import steady_staleness

__all__ = ["Cluster", "predict"]

GB = 1e9


CHOSEN = ("--replicas", "--partitions", "--shards")   # left out: the plan chooses them
MOST_SEARCHED = 100_000    # machines whose replica counts the plan tries one by one (5 s on a 2-core VM; 10^6: 26 s;
# a greedy --config counts each R's frozen forwards: cat-demo on 100,000 took 6.9 s, 4.1 s without, 2026-12-06)


@dataclass(frozen=True)
class Cluster:
    machines: int = 1000
    cores: int = 16
    memory_gb: float = 64.0
    bandwidth_gbit: float = 1.0
    replicas: int | None = None      # None: chosen (see :func:`predict`)
    partitions: int | None = None    # None: chosen among the counts that fit in memory
    shards: int | None = None        # None: the fewest of the machines left after R·K (and the replicas' own,
    # hub.replica_machines) that give their samples/s (idle.py)

    def __post_init__(self) -> None:
        for flag, value, low in (("--machines", self.machines, 1), ("--cores", self.cores, 1),
                                 ("--replicas", self.replicas, 1), ("--partitions", self.partitions, 1),
                                 ("--shards", self.shards, 1)):
            if value is not None and value < low:
                raise ConfigError(f"{flag} must be >= {low}" + (" (or left out: the plan chooses it; a check takes its default)" if flag in CHOSEN else "")
                                  + f", got {value}")
        for flag, value in (("--memory", self.memory_gb), ("--bandwidth", self.bandwidth_gbit)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag} must be a positive number, got {value}")
        if self.replicas is None and self.machines > MOST_SEARCHED:   # (--machines 10**20 ran for ever, silent)
            raise ConfigError(f"--machines {self.machines}: the plan tries every replica count from 1 up, too many "
                              f"above {MOST_SEARCHED:,} machines; give --replicas too, or --machines {MOST_SEARCHED} "
                              "or fewer")

    @property
    def bandwidth(self) -> float:    # bytes/s
        return self.bandwidth_gbit * 1e9 / 8



def _timing(net: Network, part: dict[str, float], cl: Cluster, r: int, k: int, s: int, batch: int,
            n_push: int, n_fetch: int, rates: Rates, rule: str) -> dict[str, Any]:
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


_PARTITIONS = (1, 2, 4, 8, 9, 16, 25, 32, 36, 49, 64, 100, 128, 144, 256, 512, 1024)


def _splits(net: Network, cl: Cluster, k: int) -> list[tuple[int, int]]:
    """(replicas, shards) pairs for ``k`` partitions: a count given is kept; unset replicas run from 1 to as many
    as the machines allow, unset shards are the machines left (more shards never slow a plan: a shard's link and
    its apply's bytes take 1/S of a push, its apply's own cost a push whatever S; the chosen layout's are then cut to
    the fewest that give as much, :mod:`downpour.plan.idle`). With only --shards given, replicas
    were once the machines left too: --shards 10 planned 110 replicas (staleness 110) where 2 gave the same samples/s
    (staleness 2)."""
    per = k + replica_machines(net, 1, k)    # a replica's machines: its partitions, and its own process (hub.py)
    if on_one_machine(cl.machines):          # all on it: up to a worker a core (more take turns), the fewest shards
        shards = cl.shards or least_shards(net, k)
        return [(r, shards) for r in ([cl.replicas] if cl.replicas else range(1, cl.cores + 1))]
    if cl.replicas:
        return [(cl.replicas, cl.shards or max(1, cl.machines - cl.replicas * per))]
    most = max(1, (cl.machines - (cl.shards or 1)) // per)
    return [(r, cl.shards or max(1, cl.machines - r * per)) for r in range(1, most + 1)]


def least_shards(net: Network, k: int) -> int:
    """The fewest shards ``k`` partitions of ``net`` run on, counted as the model-parallel runner counts them
    (:func:`~downpour.parallel.partition.least_shards`): one per partition where they own untied filters, one more for
    the tiled stages' shared banks, 1 where every trained stage is tiled (the replica pushes the banks; its
    partitions own none). K for every network would refuse ``--shards 1`` for the main job split in 2 (tile 2), which
    the runner trains, and lay out 2 shards for cat-demo at ``model.tile=16`` split in 2 (stage 1 shared, stage 2
    untied), which the runner refuses (it needs 3)."""
    trained = [s for s in net.stages if s.in_shape and s.params]
    shared = net.banks_shared and any(s.tied_banks is not None for s in trained)
    owned = any(s.tied_banks is None or not net.banks_shared for s in trained)
    return runner_least_shards(k, owned=owned, shared=shared)


def _too_few_machines(net: Network, cl: Cluster, k: int | None = None, fits: bool = True,
                      least: int | None = None) -> str:
    """Why no layout fits, as arithmetic: the smallest layout of ``k`` partitions (default the count given) and
    the counts given, and the machines it needs. A --partitions given with shards unset gets here where no layout
    has a shard per partition (given shards below partitions are refused before): unset shards are the machines the
    workers leave. So --replicas 7 --partitions 3 --machines 10 is told of its 7 x 3 = 21 workers on 10 machines, not
    "add machines or shards" (--shards cannot help there); and --machines 1 that 1 replica and 1 shard need 2, not
    "no layout fits". ``fits``: ``k`` partitions fit a machine's memory (else none
    does and ``k`` is the count of the smallest layout, 1 unless given: said so, not "the fewest that fit"). Fewer
    shards are offered only where more than one per partition were given (below that the runner refuses them), unless
    no count fits the memory: fewer shards lay out fewer partitions. ``least``: the fewest shards ``k`` partitions run
    on (:func:`least_shards`; default ``k``)."""
    k = k or cl.partitions
    if not k:
        return (f"no layout of {cl.machines} machines gives each of its partitions a shard of its own (shards >= "
                f"partitions, as the model-parallel runner requires): add machines, or use fewer partitions")
    # (given shards are never below k here: below --partitions they are refused before, and a k of no --partitions
    # is one laid out, which given shards allow only at k or fewer)
    least = least or k
    r, shards = cl.replicas or 1, cl.shards or least
    need = machines_of(net, r, k, shards)
    workers = f"--replicas {r}" if cl.replicas else "1 replica (the fewest)"
    parts = (f"--partitions {k}" if cl.partitions else "1 partition (the fewest)" if k == 1
             else f"{k} partitions (the fewest that fit a machine's memory)" if fits
             else f"{k} partitions (the smallest layout; none fits a machine's memory)")
    machines = plural(r * k, "worker machine") + (
        f", plus {plural(r, 'replica machine')} (each replica's own process beside its partitions)"
        if replica_machines(net, r, k) else "")
    per = "partition" if least == k else "partition and one for the tiled stages' shared banks"
    shards_said = (f"--shards {shards}" if cl.shards else "1 shard" if least == 1 else
                   f"{least} shards (one per {per} at least, as the model-parallel runner requires, each a machine of "
                   "its own)")
    fewer = [name for name, given, low in (("replicas", cl.replicas, 1), ("partitions", cl.partitions, 1),
                                           ("shards", cl.shards, least if fits or cl.partitions else 1))
             if given and given > low]
    return (f"--machines {cl.machines} is too few: {workers} x {parts} = {machines}, plus {shards_said} = {need} "
            f"machines; give --machines {need} or more" + (f", or fewer {listed(fewer, 'or')}" if fewer else ""))


def _placeable(net: Network, cl: Cluster, r: int, k: int, s: int) -> bool:
    """Whether the layout's processes have the machines they need: a machine each, or all on one (one_machine.py)."""
    return on_one_machine(cl.machines) or machines_of(net, r, k, s) <= cl.machines


def _together(net: Network, part: dict[str, float], r: int, k: int, s: int, rule: str) -> float:
    """Bytes every process of the layout needs together (on one machine, one memory): R·K partitions (each counted
    as the largest), the R replicas' own processes where they run, S shards of 1/S of the parameters and state, and
    each process's own (:data:`~downpour.plan.one_machine.PROCESS_BYTES`, as the Ray runner's check counts it): once
    a process, as :func:`_need` counts it once for the one process on a machine of its own."""
    return (r * k * part["memory_bytes"] + replica_machines(net, r, k) * part["replica_memory_bytes"]
            + 4 * net.params * (1 + RULE_STATE[rule])
            + processes(r * k, replica_machines(net, r, k), s) * PROCESS_BYTES)


def _largest(part: dict[str, float]) -> float:
    """Bytes of the model the layout's largest process holds: a partition, or its replica's own process."""
    return max(part["memory_bytes"], part["replica_memory_bytes"])


def _need(held: float) -> float:
    """Bytes of a machine's memory one process holding ``held`` bytes of the model needs, on a machine of its own:
    those and the process's own (Python, torch, Ray's worker: :data:`~downpour.plan.one_machine.PROCESS_BYTES`), the
    one place a machine's check adds it. Without it a machine of 0.1 GB "fit" cat-demo's 71.58 MB partition, where
    its Ray worker actor held 360 MB (RSS, 2026-12-07)."""
    return held + PROCESS_BYTES


def _fits(held: float, cl: Cluster) -> bool:
    """Whether one process holding ``held`` bytes of the model fits a machine's memory beside its own."""
    return _need(held) <= cl.memory_gb * GB


def predict(net: Network, cl: Cluster, rates: Rates, batch: int, n_push: int = 1, n_fetch: int = 1,
            rule: str = "adagrad", on_replicas: Callable[[int], Network] | None = None) -> dict[str, Any]:
    """The plan of ``net`` on ``cl`` (module docstring); defaults of ``cl`` resolved and reported.

    Whatever of partitions, replicas and shards is unset is chosen: of the layouts whose partitions
    fit in a machine's memory, those within 5% of the most samples/s
    (``REPLICAS_TOLERANCE``), and of these the one with the
    fewest replicas (the least staleness); unset shards, searched as the machines left, are then the fewest that give
    as much (:func:`~downpour.plan.idle.fewest_shards`), the machines left idle said (``idle_why``). Where no
    partition count fits, the count that the machines given lay out whose largest process needs the least memory
    (``memory_fallback``). ``on_replicas``: ``net`` as R replicas of one partition each run it (a greedy cat step's
    frozen forwards depend on R: :mod:`downpour.plan.cache_hits`), so each
    unsplit layout is judged and timed with its own R; None: ``net`` on any R."""
    args = (batch, n_push, n_fetch, rates, rule)
    own: dict[tuple[float, ...], dict[str, Any]] = {}     # frozen count -> the one partition of net so run

    def judged(k: int, r: int) -> dict[str, Any]:
        if k != 1 or on_replicas is None:
            return parts[k]
        # (counted once per frozen count: many R share one, all R past the steps' fill read 1; cat-demo on 100,000
        # machines took 29 s counted per R, 4 s before R's own counts)
        runs = (on := on_replicas(r)).frozen_runs
        if runs not in own:
            own[runs] = partition(on, 1, batch, rule)
        return own[runs]
    if cl.partitions and (refused := uncuttable(net, cl.partitions)):
        raise ConfigError(f"--partitions {cl.partitions}: {refused} (the model-parallel runner refuses it)")
    if cl.partitions and cl.shards and cl.shards < (need := least_shards(net, cl.partitions)):
        raise ConfigError(f"--shards {cl.shards} is fewer than " + (
            f"--partitions {cl.partitions}: each partition needs a shard of its own" if need == cl.partitions else
            f"the {need} groups of parameters --partitions {cl.partitions} makes (each partition's own untied "
            "filters, and the tiled stages' shared banks): each group needs a shard of its own")
            + " (the model-parallel runner refuses it)")
    ks = [cl.partitions] if cl.partitions else [k for k in _PARTITIONS if k <= cl.machines and not uncuttable(net, k)]
    parts = {k: partition(net, k, batch, rule) for k in ks}
    # each partition pushes to shards of its own, and the shared banks to theirs (the model-parallel runner refuses
    # fewer shards than those groups, least_shards): a shard holding several partitions' slices takes R·K/S pushes a
    # round, not R
    least = {k: least_shards(net, k) for k in ks}
    laid_out = [k for k in ks if any(s >= least[k] for _, s in _splits(net, cl, k))]
    # where no partition count fits a machine's memory (the replica's own process too, on its machine), the plan of
    # the count that can be laid out whose largest process needs the least, marked "does not fit" (the largest count
    # may have no layout: then the shards would be blamed, not the memory). Not the most partitions, whose own memory
    # shrinks with K but the replica's process's grows: the main job on 40 machines of 3 MB would plan 36 partitions,
    # its replica's process needing 6.34 MB, where 2 need 3.61 MB.
    # The count taken is one the machines given lay out, where one is (not any count with a layout of enough shards,
    # however many machines it takes: the main job on 3 machines of 0.1 MB would be refused, "give --machines 4", for
    # 2 partitions that fit no better, where 1 partition lays out on 3)
    fitting = [k for k in laid_out if _fits(_largest(parts[k]), cl)]
    fallback = not fitting and not cl.partitions and bool(laid_out)
    placed = [k for k in laid_out if any(s >= least[k] and (cl.replicas and cl.shards or _placeable(net, cl, r, k, s))
                                         for r, s in _splits(net, cl, k))]
    # (none placed: the smallest layout's count, the refusal's sum; the one needing the least would say "give
    # --machines 8" for the paper on 4 of 0.1 MB with --shards 4, hiding that 5 plan 1 partition)
    fitting = fitting or sorted(placed, key=lambda k: _need(_largest(parts[k])))[:1] or sorted(
        laid_out, key=lambda k: machines_of(net, cl.replicas or 1, k, cl.shards or least[k]))[:1]
    layouts = [(k, r, s) for k in fitting for r, s in _splits(net, cl, k) if s >= least[k]]
    if not layouts:
        raise ConfigError(_too_few_machines(net, cl, least=least.get(cl.partitions)))
    if on_one_machine(cl.machines):    # the replicas whose processes together fit its memory (where any do)
        layouts = [(k, r, s) for k, r, s in layouts if _together(net, parts[k], r, k, s, rule) <= cl.memory_gb * GB
                   ] or layouts
    if not (cl.replicas and cl.shards):      # a chosen layout uses the machines there are (one given by hand may not)
        layouts = [(k, r, s) for k, r, s in layouts if _placeable(net, cl, r, k, s)]
        if not layouts:       # (the fewest partitions that fit make the smallest layout)
            k = min(fitting)
            raise ConfigError(_too_few_machines(net, cl, k, _fits(_largest(parts[k]), cl), least[k]))
    # (each layout timed on its own R's frozen count; choosing on one replica's, the chosen one re-timed on its own,
    # would lay main on 256 machines out as 104 replicas, 1.065 M samples/s, where 105 give 1.086 M; cat-demo on 1,000,
    # 214 for 218's more: docs/plan.md, "The frozen stages' cache"); only their rates kept
    rate = {lay: _timing(net, judged(*lay[:2]), cl, lay[1], lay[0], lay[2], *args)["samples_per_s"] for lay in layouts}
    top = max(rate.values())
    near = [lay for lay in layouts if rate[lay] >= (1 - REPLICAS_TOLERANCE) * top]
    k, r, s = min(near, key=lambda lay: (lay[1], -rate[lay]))
    part, full = judged(k, r), s
    one = on_one_machine(cl.machines)
    chosen = cl.shards is None and not one
    # this layout's timings by shard count: the bisection's (about log2 of the machines) and the full-shard one, which
    # the bisection, its end and the idle machines' note would each time again
    timings: dict[int, dict[str, Any]] = {}

    def timing_of(n: int) -> dict[str, Any]:
        if n not in timings:
            timings[n] = _timing(net, part, cl, r, k, n, *args)
        return timings[n]
    if chosen:    # the fewest shards that give as much (idle.py)
        s = fewest_shards(lambda n: timing_of(n)["samples_per_s"], lambda n: machines_of(net, r, k, n), least[k], full)
    timing, used = timing_of(s), 1 if one else machines_of(net, r, k, s)
    idle = ""
    if chosen:    # the machines left idle, against the machines left as shards and the fastest layout
        # (the fastest re-timed: keeping every layout's timing for it made cat-demo on 100,000 machines, 193,458
        # layouts, 1.5x slower to plan, the garbage collector scanning them)
        k_top, r_top, s_top = max(rate, key=rate.get)
        idle = idle_why(cl.machines, used, Timed(r, s, timing), Timed(r, full, timing_of(full)),
                        Timed(r_top, s_top, _timing(net, judged(k_top, r_top), cl, r_top, k_top, s_top, *args)), rule)
    shard_bytes = 4 * net.params / s * (1 + RULE_STATE[rule])
    together, hubs = _together(net, part, r, k, s, rule), replica_machines(net, r, k)
    cut = next((stage for stage in net.stages if stage.in_shape), None)      # (the first cut stage's layout)
    resolved = {**asdict(cl), "replicas": r, "partitions": k, "shards": s, "grid": list(grid(k, cut)),
                "replica_machines": hubs, "machines_used": used,
                # the machines the layout leaves idle and why (idle.py): "" where it uses them all
                "machines_idle": max(0, cl.machines - used), "idle_why": idle,
                # one machine: its processes, and their memory together (one_machine.py)
                "one_machine": one, "processes": processes(r * k, hubs, s),
                "memory_together_bytes": together}
    return {"cluster": resolved, "batch": batch, "n_push": n_push, "n_fetch": n_fetch, "rule": rule,
            "rates": rates.as_dict(rule), "partition": part, "shard_bytes": shard_bytes,
            "push_bytes_replica": 4 * net.params, "push_bytes_partition": part["server_bytes"],
            "push_bytes_shared": part["shared_bytes"], "lend_bytes_partition": part["lend_bytes"],
            "lend_bytes_replica": part["lend_bytes_replica"], "memory_fallback": fallback,
            "fits": {"partition": _fits(part["memory_bytes"], cl),
                     "replica": _fits(part["replica_memory_bytes"], cl), "shard": _fits(shard_bytes, cl),
                     "machines": _placeable(net, cl, r, k, s),
                     **({"together": together <= cl.memory_gb * GB} if one else {})},
            **timing}
