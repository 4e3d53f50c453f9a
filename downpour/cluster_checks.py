"""The preflight checks of a run's cluster (:func:`check_cluster`, which :func:`downpour.preflight.check_run_config`
calls): what its runner and algorithm cannot run, refused before its folder is made. Apart from preflight.py, which
is at its 400 lines."""
from __future__ import annotations

from downpour._names import listed, plural
from downpour.config import CLUSTER_RUNNERS, ConfigError, RunConfig, is_cluster_runner
from downpour.errors import ValuesError
from downpour.objectives import Objective, split_part
from downpour.ps.address import address_problem
from downpour.ps.delays import make_delays
from downpour.ps.faults import check_faults
from downpour.sandblaster.checks import check_sandblaster


def check_cluster(cfg: RunConfig, resume: bool = False) -> None:
    """ConfigError for what ``cfg``'s runner and algorithm cannot run: a cluster key on a one-process runner (local), a
    malformed address, cluster.faults off the simulator or out of range, a delay model, a warm start past the run's
    end, Sandblaster's own checks, partitions on a GPU or on Ray, more Ray processes than this machine's memory
    holds (``resume``: a resumed run's)."""
    runner = cfg.cluster.runner
    check_faults(cfg)      # the simulator's alone, and each item in range
    if runner != "ray" and cfg.cluster.queue_depth > 1:
        raise ConfigError(f"cluster.queue_depth = {cfg.cluster.queue_depth} needs the ray runner: the simulator's "
                          "workers wait for their parameters, and a push's travel is cluster.delay")
    if not is_cluster_runner(runner):
        for key, default in (("algorithm", "downpour"), ("partitions", 1)):
            if getattr(cfg.cluster, key) != default:
                raise ConfigError(f"cluster.{key} = {getattr(cfg.cluster, key)!r} needs a cluster runner: "
                                  f"set cluster.runner to {listed(CLUSTER_RUNNERS, 'or')}")
        return
    # (here, not at Ray's start, once the run's folder is made: a dry run would pass it)
    if runner == "ray" and cfg.cluster.address and (problem := address_problem(cfg.cluster.address)):
        raise ConfigError(problem, key="cluster.address")
    make_delays(cfg.cluster.spec("delay"), cfg.cluster.workers)   # uniform:A:B needs A <= B
    c = cfg.cluster
    if c.algorithm == "downpour" and c.workers > 1 and c.warm_start >= cfg.train.steps:
        raise ConfigError(f"cluster.warm_start = {c.warm_start}: worker 0 trains alone for that many steps, and the run "
                          f"has {cfg.train.steps} (train.steps): the other {plural(c.workers - 1, 'worker')} would never start and "
                          "worker 0 reads only its own shard of the data; set it below train.steps", key="cluster.warm_start")
    if cfg.cluster.algorithm == "sandblaster":
        check_sandblaster(cfg, resume)    # a cost L-BFGS can compare between evaluations; no partitions
    if cfg.train.device == "cuda" and cfg.cluster.partitions > 1:   # (auto: the CPU, ps.setup.replica_device)
        raise ConfigError(f"train.device={cfg.train.device!r}: a model-parallel replica's partitions compute on CPU; "
                          "set cluster.partitions = 1 or train.device = 'cpu'")
    if cfg.train.checkpoint_every:
        raise ConfigError("train.checkpoint_every is the local runner's (in steps); a cluster run checkpoints its "
                          "server every cluster.checkpoint_every pushes")
    if runner == "ray" and cfg.cluster.partitions > 1:
        _check_ray_partition_terms(cfg)
    if runner == "ray" and not cfg.cluster.address:
        _check_room(cfg)


def _check_ray_partition_terms(cfg: RunConfig) -> None:
    """The cost terms a model-parallel replica on Ray cannot compute: its partition actors keep one graph per
    stage and return no input gradient, so a term that encodes again (denoising, contractive) broke at the
    first step (KeyError / "not used in the graph"); the weight penalty sees no filter (they live in the actors)."""
    terms = Objective.from_config(cfg.objective).terms
    again = sorted(name for name, t in terms.items() if t.weight and "encode" in t.needs)
    if again:
        raise ConfigError(f"objective.{again[0]} with cluster.partitions = {cfg.cluster.partitions} on Ray: the term "
                          f"encodes its own input again, which the partition actors cannot (each keeps one graph per "
                          f"stage, and the input's gradient stays in them); drop it, or use cluster.partitions = 1 or "
                          f"--runner simulated (which computes it)", key=f"objective.{again[0]}")
    l2 = next((name for name in terms if split_part(name)[1] == "weight_l2"), None)   # (shared or a part's)
    if l2 is not None:   # the partition actors hold the filters: the term sees none, 0 and no gradient
        raise ConfigError(f"objective.{l2} = {terms[l2].weight:g} with cluster.partitions = "
                          f"{cfg.cluster.partitions} on Ray: the filters live in the partition actors, where the cost "
                          "cannot see them (it would be 0, with no gradient; the simulator applies it); drop the term, "
                          "or use cluster.partitions = 1 or --runner simulated", key=f"objective.{l2}")


# Resident memory of one Ray actor process of ours (Ray's worker runtime + torch), measured for
# issue 14: 24 shard processes peaked at 5.7 GB, ~240 MB each.
PROCESS_MB = 250


def _available_mb() -> float | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _check_room(cfg: RunConfig) -> None:
    """A local Ray run starts one process per shard, worker and partition: refuse one this machine's
    memory cannot hold, before any of them starts (the test would otherwise be the OOM killer)."""
    c = cfg.cluster
    processes = c.shards + c.workers * (1 + (c.partitions if c.partitions > 1 else 0))
    available = _available_mb()
    if available is not None and processes * PROCESS_MB > 0.9 * available:
        keys = ("shards", "workers", *(("partitions",) if c.partitions > 1 else ()))
        raise ValuesError({f"cluster.{key}": getattr(c, key) for key in keys},
                          f"start {processes} Ray processes of ~{PROCESS_MB} MB each ({processes * PROCESS_MB / 1024:.1f} "
                          f"GB), more than the {available / 1024:.1f} GB this machine has available; use fewer (on one "
                          "machine, a shard or two per core is plenty)")
