"""A network's layout on a cluster chosen (:func:`predict`): the partition counts that fit a machine's memory, the
replicas and shards the machines allow, timed (:mod:`~downpour.plan.timing`, whose docstring has the formulas) and the
fastest with the fewest replicas kept, its shards cut to the fewest that give as much (:mod:`~downpour.plan.idle`);
refused, as arithmetic, where no layout fits the machines; and the plan's dict of it: memory per partition, bytes per
push, what fits, step time, samples/s, staleness.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

from downpour._names import listed, plural
from downpour.errors import ConfigError
from downpour.parallel.partition import least_shards as runner_least_shards
from downpour.plan.calibrate import Rates
from downpour.plan.cluster import Cluster
from downpour.plan.hub import machines_of, replica_machines
from downpour.plan.idle import REPLICAS_TOLERANCE, Timed, fewest_shards, idle_why
from downpour.plan.network import Network
from downpour.plan.one_machine import PROCESS_BYTES, on_one_machine, processes
from downpour.plan.partition import RULE_STATE, grid, partition, uncuttable
from downpour.plan.timing import layout_timing

__all__ = ["predict"]

GB = 1e9
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
    rate = {lay: layout_timing(net, judged(*lay[:2]), cl, lay[1], lay[0], lay[2], *args)["samples_per_s"]
            for lay in layouts}
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
            timings[n] = layout_timing(net, part, cl, r, k, n, *args)
        return timings[n]
    if chosen:    # the fewest shards that give as much (idle.py)
        s = fewest_shards(lambda n: timing_of(n)["samples_per_s"], lambda n: machines_of(net, r, k, n), least[k], full)
    timing, used = timing_of(s), 1 if one else machines_of(net, r, k, s)
    idle = ""
    if chosen:    # the machines left idle, against the machines left as shards and the fastest layout
        # (the fastest re-timed: keeping every layout's timing for it made cat-demo on 100,000 machines, 193,458
        # layouts, 1.5x slower to plan, the garbage collector scanning them)
        k_top, r_top, s_top = max(rate, key=rate.get)
        top_timing = layout_timing(net, judged(k_top, r_top), cl, r_top, k_top, s_top, *args)
        idle = idle_why(cl.machines, used, Timed(r, s, timing), Timed(r, full, timing_of(full)),
                        Timed(r_top, s_top, top_timing), rule)
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
