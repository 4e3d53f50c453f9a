"""The plan as one JSON-ready dict (what ``downpour plan --json`` prints; :mod:`downpour.plan.report` prints it as
text): the network (:mod:`~downpour.plan.network`) from the run config a plan reads (:mod:`~downpour.plan.run_config`),
its stages' shares of a partition, the cluster's prediction (:mod:`~downpour.plan.predict`) on this machine's rates or
the defaults (:mod:`~downpour.plan.calibrate`), and the ``downpour train`` that runs the layout.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from downpour._names import pasted
from downpour.plan.cache_hits import with_frozen_runs, without_cache
from downpour.plan.calibrate import DEFAULT_RATES, Rates, measure_rates
from downpour.plan.cluster import Cluster
from downpour.plan.hub import hub_runs, lends_banks, stage_calls
from downpour.plan.network import Network, network_of
from downpour.plan.partition import partition_stage
from downpour.plan.predict import predict
from downpour.plan.run_config import plan_config

__all__ = ["PAPER_CONNECTIONS", "PAPER_PARAMS", "PAPER_IMAGES", "PAPER_DAYS", "BOUND_PAST", "make_plan", "plan_for",
           "split_bound"]

# Le et al. 2012's figures: its abstract's "1 billion connections" and the 1.15 billion parameters the count is checked
# against (the abstracts of Le's 2012-13 talks on the network, "This network has 1.15 billion parameters": docs/plan.md;
# they are parameters, not "connections", and the plan says its own 2.43 G parameters beside them); its data,
# 10 million images, and its 3 days on 1,000 machines (16,000 cores)
PAPER_CONNECTIONS, PAPER_PARAMS, PAPER_IMAGES, PAPER_DAYS = 1e9, 1.15e9, 10_000_000, 3

# past this many partitions a replica's speed-up is a bound: Dean et al. measured 12x at 81 machines, 14x at 128
BOUND_PAST = 16


def split_bound(k: int) -> str:
    """Why a replica split past :data:`BOUND_PAST` partitions runs slower than planned: the plan's 73x at K = 81 set
    against the paper's 12x, beside the figure, not only in docs/plan.md."""
    return (f"{k} partitions per replica: the plan's speed-up over one partition is an upper bound, far above "
            "DistBelief's measured one (about 12x on 81 machines, 14x on 128: Dean et al. 2012 as Denil et al. 2013 "
            "quote it), because it splits the fetch evenly over the partitions' links and counts no per-partition "
            "latency or synchronisation (docs/plan.md, 'One replica split K ways')")


def _timing_assumption(net: Network, k: int) -> str:
    """What the step time assumes, in the words of what this layout moves ("halo exchange" only where partitions
    exchange one); one of the plan's network.assumptions, so that --json carries it too."""
    moved = ("the windows and banks sent through the replica's process and fetches" if hub_runs(net, k)
             else "halo exchange and fetches" if k > 1 else "fetches (one partition a replica)")
    return (f"cores scale the FLOP rates linearly; {moved} do not overlap compute; "
            "a push travels while the next steps compute (as in the simulator)")


def make_plan(net: Network, cluster: Cluster, rates: Rates, batch: int, n_push: int = 1, n_fetch: int = 1,
              rule: str = "adagrad", paper: bool = False,
              on_replicas: Callable[[int], Network] | None = None) -> dict[str, Any]:
    """The whole plan as one JSON-ready dict: network, stages (with the largest partition's share), prediction;
    ``on_replicas``: ``net`` as R unsplit replicas run it (:func:`~downpour.plan.predict.predict`)."""
    pred = predict(net, cluster, rates, batch, n_push, n_fetch, rule, on_replicas)
    k = pred["cluster"]["partitions"]
    if k > 1:       # split, the partitions' actors drop the frozen cache: every step runs the frozen stages
        net = without_cache(net)
    elif on_replicas is not None:     # the laid-out replicas' frozen count, which predict timed the layout with
        net = on_replicas(pred["cluster"]["replicas"])
    stages = []
    for s in net.stages:
        part = partition_stage(s, k, hub_runs(net, k))
        stages.append({"stage": s.name, "out_shape": list(s.out_shape), "positions": s.positions,
                       "connections": s.connections, "params": s.params, "flops_fwd": s.flops_fwd,
                       # forward + backward of this row per example: a cat stage's training, a built model's layer on
                       # its inference path; network.flops_train is the step's (a plan JSON from before 2026-12-05
                       # names both "flops_train")
                       "flops_fwd_bwd": s.flops_fwd_bwd, "act_bytes": 4 * s.act_floats,
                       "push_bytes_replica": 4 * s.params,
                       "partition": {"params": round(part["params"]), "weight_bytes": round(4 * part["params"]),
                                     "opt_bytes": round(4 * part["params"] * (pred["partition"]["opt_bytes"]
                                                                             / max(pred["partition"]["weight_bytes"], 1))),
                                     # a measured layer's: with what it keeps per step (a cost's weights' scalars)
                                     "act_bytes_batch": round(4 * batch * part["act_floats"]
                                                              + (4 * part["copy_floats"] if net.counted else 0)),
                                     # the runner's way (hub.py), no halo: a trained call's windows, codes and
                                     # their gradients instead (not DistBelief's halo, which the runner never sends)
                                     "halo_bytes": 0 if hub_runs(net, k) else round(4 * part["halo_floats"]),
                                     "calls_bytes": round(4 * stage_calls(net, s, k)),
                                     "flops_fwd_bwd": round(part["flops_fwd_bwd"]),
                                     # a tiled stage's shared banks: pushed by the replica, lent to the partitions
                                     "push_bytes": 0 if lends_banks(net, s, k) else round(4 * part["params"])}})
    out = {"network": {"name": net.name, "input_shape": list(net.input_shape), "connections": net.connections,
                       "params": net.params, "flops_train": net.flops_train, "products_train": net.products_train,
                       "schedule": net.schedule,
                       "on_paper": not net.counted, "frozen_runs": list(net.frozen_runs),
                       "assumptions": [*net.assumptions, _timing_assumption(net, k),
                                       *([split_bound(k)] if k > BOUND_PAST else [])]},
           "stages": stages, **pred,
           # the counts the search chose (not given), which the layout line says: the default layout is no one's
           "chosen": [name for name in ("replicas", "partitions", "shards") if getattr(cluster, name) is None]}
    if paper:
        out["network"].update(paper_connections=PAPER_CONNECTIONS, paper_params=PAPER_PARAMS,
                              vs_paper=round(net.connections / PAPER_PARAMS - 1, 4),
                              params_vs_paper=round(net.params / PAPER_PARAMS - 1, 4),
                              # one pass over the paper's images at the predicted rate, and its 3 days' passes
                              paper_pass_s=PAPER_IMAGES / pred["samples_per_s"],
                              paper_passes=PAPER_DAYS * 86400 * pred["samples_per_s"] / PAPER_IMAGES)
    return out


def plan_for(model: str | None = "paper", sets: list[str] | tuple[str, ...] = (), cluster: Cluster = Cluster(),
             measure: bool = False, config: str | None = None) -> dict[str, Any]:
    """What ``downpour plan`` computes: ``model`` ("paper" or a registered name; None: the paper's, not typed) or
    ``config`` (a preset or TOML file) with ``--set`` strings (model.*, train.batch_size / schedule, cluster.n_push /
    n_fetch / rule) on ``cluster``; ``measure``: calibrate this machine's rates first instead of the defaults."""
    cfg, shape = plan_config(model, sets, config)
    paper = model in ("paper", None) and config is None
    net = bare = network_of(cfg, shape, paper=paper)
    on_replicas = None
    if config is not None:       # the data it trains on: how often a greedy step's frozen stages come from the cache
        # (cfg: the file's data and device, the steps as --set gave them)
        of_replicas = functools.partial(with_frozen_runs, bare, cfg)
        net = of_replicas(1)
        if net.frozen_runs:
            # R replicas each fill their own cache over their shard, in their share of the steps: each layout judged on
            # its own R's count (one replica's count would read, for cat-demo on 64 machines, 56 replicas, 0.093 a
            # stage-2 step for 0.273, and choosing on it, then re-timing, can pick a slower layout: predict.py)
            on_replicas = of_replicas
    c = cfg.cluster
    rates = measure_rates(c.rule) if measure else DEFAULT_RATES
    plan = make_plan(net, cluster, rates, cfg.train.batch_size, c.n_push, c.n_fetch, c.rule, paper=paper,
                     on_replicas=on_replicas)
    plan["defaults"] = DEFAULT_RATES.as_dict(c.rule)
    if config is not None:            # what the preset trains, not the registry's defaults of its model
        plan["network"]["name"] = f"{config} (model {cfg.model.name}, batch {cfg.train.batch_size})"
        plan["train_command"] = _train_command(config, sets, plan["cluster"])
    return plan


def _train_command(config: str, sets: list[str] | tuple[str, ...], lay: dict[str, Any]) -> str:
    """The ``downpour train`` that runs the planned layout on a Ray cluster (its head at HEAD:6379), with the plan's
    ``--set`` strings (each a key train reads), so that the reader need not turn the layout into flags, some named
    otherwise (--replicas is train's --workers)."""
    # (one machine: a local Ray, started by the run itself)
    where = ["--runner", "ray"] if lay["one_machine"] else ["--address", "HEAD:6379"]
    words = ["downpour", "train", "--config", pasted(config), *where, "--workers", str(lay["replicas"])]
    words += ["--partitions", str(lay["partitions"])] if lay["partitions"] > 1 else []
    words += ["--shards", str(lay["shards"]), *(w for item in sets for w in ("--set", pasted(item)))]
    return " ".join(words)

