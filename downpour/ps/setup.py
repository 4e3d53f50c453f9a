"""What every cluster runner sets up from a (resolved) run config: the data, the initial model, the
shard layout, the consistency gate and delay models, then the shards and workers. Shared by the
simulator and the Ray runner, so both train exactly the same thing; ``cluster.*`` strings are
parsed here, once per run.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from downpour._names import plural
from downpour.config import ConfigError, RunConfig, is_cluster_runner
from downpour.config.sections import FILE_SOURCES
from downpour.data.opened import Opened, open_data_once
from downpour.data.pipeline import KEEPS_WORKERS, most_workers
from downpour.data.dataset import Dataset, shard_range
from downpour.data.images import by_kind, say_unlogged
from downpour.data.resumed import shrunk_from
from downpour.models.base import FeatureModel
from downpour.models.registry import build
from downpour.objectives import Objective
from downpour.parallel.partition import partition_bounds, partition_model, partition_ranges
from downpour.ps.compensation import make_compensation
from downpour.ps.consistency import Consistency, make_consistency
from downpour.ps.delays import DelayModel, make_delays
from downpour.ps.rules import RULES, make_rule
from downpour.ps.seeds import batch_seed
from downpour.ps.shm import MAX_STAGE
from downpour.ps.shard import Shard, shard_bounds, tensor_pieces
from downpour.ps.worker import LocalParams, Worker
from downpour.train.flat import ParamLayout, load_frozen
from downpour.train.setup import resolve_device, set_up_torch

log = logging.getLogger(__name__)


@dataclass
class ClusterSetup:
    cfg: RunConfig
    data: Dataset
    model: FeatureModel            # the driver's copy: initial parameters, and the final model
    layout: ParamLayout
    bounds: list[tuple[int, int]]  # [start, stop) of each shard in the flat vector
    gate: Consistency              # cluster.consistency: the coordinator's gate (``gate.sync``: shards hold rounds)
    delays: list[DelayModel]       # cluster.delay, one per worker (the simulator's)
    shards_of: list[list[int]]     # per partition, the shards holding its parameters (one partition: all)
    stage_ranges: dict[int, list[tuple[int, int]]]   # per greedy stage, its tensors' [a, b) in the flat vector
    rng: torch.Tensor              # torch's RNG state once the initial model is drawn: the local loop's at its step 0


def set_up_cluster(cfg: RunConfig, resume: bool = False, opened: Opened | None = None,
                   listed_at_start: int | None = None) -> ClusterSetup:
    """Seeded data and initial model, the shard layout and the cluster's policies, for resolved ``cfg`` (``resume``: a
    resumed run's, whose refusal of its data offers what a resume can do; ``opened``: its data read already, taken;
    ``listed_at_start``: a resume's item count at the run's last start, its data.json's,
    :func:`~downpour.data.resumed.files_listed_at_start`)."""
    c = cfg.cluster
    set_up_torch(cfg)   # the seed, and train.threads for the simulator (Ray workers set their own)
    data = open_data_once(cfg.data, cfg.seed, c.algorithm == "downpour", opened)   # Sandblaster indexes one tensor
    check_cluster_data(cfg, data, resume, listed_at_start)
    model = build_replica(cfg, data.input_shape)[0]
    rng = torch.get_rng_state()     # what worker 0 draws on from, on Ray and on the simulator (worker_rng)
    layout = ParamLayout(model)
    try:
        ranges = [(0, layout.numel)] if c.partitions == 1 else partition_ranges(model)
        bounds = shard_bounds(layout.numel, c.shards) if c.partitions == 1 else partition_bounds(ranges, c.shards)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    # (partitions_on_ray: its actors fetch these; the shared banks' shards, the last range's, the replica's own)
    shards_of = [[j for j, (a, _) in enumerate(bounds) if lo <= a < hi] for lo, hi in ranges[:c.partitions]]
    check_param_stages(cfg, model)
    check_stage_count(cfg, model)
    return ClusterSetup(cfg, data, model, layout, bounds, make_consistency(c.spec("consistency")),
                        make_delays(c.spec("delay"), c.workers), shards_of, stage_ranges(model, layout), rng)


def check_cluster_data(cfg: RunConfig, data: Dataset, resume: bool = False, listed_at_start: int | None = None) -> None:
    """ConfigError where the workers cannot each train on a share of ``data`` of their own: fewer samples (or a
    stream's items) than workers, or a streamed share of only files that give no sample. Said by the run before
    it starts, and by its --dry-run (:func:`~downpour.preflight.check_data_read`); ``resume``: a resumed run's, which
    keeps its workers and data.size, so that what only a new run can do is said as that; ``listed_at_start``: its
    item count at the run's last start (data.json's), said where the list shrank."""
    if len(data) < cfg.cluster.workers:
        say_unlogged(data.info.get("skipped", []))
        raise ConfigError(too_few_for_workers(cfg, data, resume), key="cluster.workers")
    if (barren := unreadable_share(cfg, data, resume, listed_at_start)) is not None:
        say_unlogged(data.info["fit_sample"]["skipped"])
        raise ConfigError(barren, key="cluster.workers")


def too_few_for_workers(cfg: RunConfig, data: Dataset, resume: bool = False) -> str:
    """Why a cluster of more workers than the data's samples (or a stream's items) cannot start, naming the data and
    the most workers it takes (not a bare "cluster.workers=30 but the data has only 23 samples", naming neither the
    folder, its skipped files, nor what to do). A ``resume`` keeps its workers: fewer is a new run's, not offered
    first ("use at most 23 (--workers 23)" is what the resume would refuse)."""
    n, d = len(data), cfg.data
    item = data.info.get("item", "sample")   # a stream's are files or rows, each worker's its own
    where = f"data.path {d.path!r}" if d.source in FILE_SOURCES else f"data.source = {d.source!r}"
    skipped = data.info.get("n_skipped", 0) if item == "sample" else 0   # (a stream's items count its bad files)
    return (f"cluster.workers = {cfg.cluster.workers}, but {where} gives only {plural(n, item)}"
            + (f" ({skipped} of its files could not be read: the log names them)" if skipped else "")
            + ", and each worker trains on a share of its own; "
            + (most_workers(n, resume, f"; {KEEPS_WORKERS}") if d.source in FILE_SOURCES
               else f"use at most {n} (--workers {n})"))


def unreadable_share(cfg: RunConfig, data: Any, resume: bool = False, listed_at_start: int | None = None) -> str | None:
    """Why a stream's worker would stop at its first pass, said before the run starts: the driver's fitting sample read
    every file (data.fit_sample >= their count), and one worker's share holds only files it could not read. Else the
    run fails at step 0 ("none of the 1 items of worker 0's shard (12 workers) can be read"), leaving a checkpoint
    its resume fails on alike, with no word of what to do (12 files, one corrupt, 12 workers). A ``resume`` keeps
    its workers and data.size: what changes them is said as a new run's, not offered first as to a new run. Removing
    the files that give nothing is offered alone only where as many files as workers stay: a resume whose folder lost
    14 of its 17 files, one of the three left too small for the patch and one corrupt, was told to remove both, which
    leaves one file for two workers (refused again), and not that its list shrank: the counts are said (the list,
    ``listed_at_start``: the run's at its last start, the readable files, the workers') and what would do."""
    fit, n = data.info.get("fit_sample") or {}, cfg.cluster.workers
    if data.info.get("pipeline") != "stream" or cfg.data.source == "array" or fit.get("items") != len(data):
        return None
    reasons = {e["file"]: e["reason"] for e in fit.get("skipped", [])}

    def barren(m: int) -> int | None:         # the first worker of m whose share is all unreadable files
        shares = (shard_range(w, m, len(data)) for w in range(m))
        return next((w for w, (a, b) in enumerate(shares) if all(f in reasons for f in data.items[a:b])), None)

    if not reasons or (w := barren(n)) is None:
        return None
    a, b = shard_range(w, n, len(data))
    most = next((m for m in range(n - 1, 0, -1) if barren(m) is None), 0)
    size = data.cut.size
    small, links, remove = by_kind(reasons, size)    # what to remove, by kind (as a worker's first pass says it)
    share = data.items[a:b]
    holds = (f"images smaller than the {size}x{size} patch (data.size = {size})" if all(f in small for f in share)
             else "symbolic links to files that are not there" if all(f in links for f in share)
             else f"files too small for the patch (data.size = {size}) or that cannot be read"
             if set(share) & set(small)
             else "files that cannot be read")
    # (an image too small for the patch is not called "unreadable": data.size is said; and a link to nothing is
    # one whose target could be put back, not a file to remove)
    # one remedy a clause, so that three or four stay apart in the one line an error is; data.size and the workers are
    # a new run's to change (a resume is refused both)
    smaller = ["lower data.size or use data.mode = 'crops'"] if small else []
    keeps = "" if resume else f"; {KEEPS_WORKERS}"     # (said after the fewer workers, below, to a resume)
    fewer = [f"use at most {plural(most, 'worker')} (--workers {most}{keeps})"] if most else []
    readable = len(data) - len(reasons)
    drop = f"remove {remove} from data.path (the log names {'it' if len(reasons) == 1 else 'them'})"
    if readable < n:      # removing them alone leaves fewer files than workers: the resume (or run) is refused again
        drop += f" and add readable files until at least {n} are there"
    ways = (["put back what the links point to"] if links else []) + (
        ["restore the files it began with"] if resume and readable < n else []) + [drop]
    ways = ways if resume else smaller + ways + fewer
    todo = "do one of these: " + "; ".join(ways[:-1]) + f"; or {ways[-1]}" if len(ways) > 1 else ways[0]
    if resume and (smaller or fewer):
        todo += (f" (a resumed run keeps its workers{' and data.size' if small else ''}; a new run can also "
                 f"{', or '.join(smaller + fewer)})")
    counts = ""
    if readable < n:      # what the folder holds against what the workers need, and, where it shrank, what it held
        shrunk = shrunk_from(listed_at_start, len(data))
        counts = (f"; data.path lists {plural(len(data), 'file')}{shrunk}, {readable} of them "
                  f"readable, where the workers need {n} (one each)")
    return (f"cluster.workers = {n}, but worker {w}'s share of data.path {cfg.data.path!r} ({plural(b - a, 'file')}) "
            f"holds only {holds} (first: {data.items[a]}: {reasons[data.items[a]]}), and each worker streams a share "
            f"of its own{counts}; {todo}")


def check_param_stages(cfg: RunConfig, model: FeatureModel) -> None:
    """ConfigError where a greedy Downpour run's rule holds a stage's tensors still (Momentum, Adam) and the model
    does not say which stage trains each parameter (:meth:`~downpour.models.base.FeatureModel.param_stages`):
    none named (the base class's default), a name that is no parameter, a stage outside 1..n_stages, or a
    trainable parameter left out. The shards would hold the wrong tensors without a word: a stacked model naming
    none coasted its held stage 1 on its velocity through stage 2 (tiny cat-demo, one worker, Momentum: 0.73 off
    the local loop); one leaving out stage 2's filters (they "train at every stage") had Adam count them through
    stage 1, their bias correction spent before they trained (40 steps, greedy: step count 40 after 20 pushes
    that trained them)."""
    c, n = cfg.cluster, model.n_stages
    if (cfg.train.schedule != "greedy" or n <= 1 or not is_cluster_runner(c.runner) or c.algorithm != "downpour"
            or not RULES[c.rule].holds):
        return
    of, names = model.param_stages(), dict(model.named_parameters())
    left = [k for k in ParamLayout(model).names if k not in of]    # trainable ones only: a frozen one never moves
    why = ("names no parameter's stage" if not of else
           next((f"names {k!r}, which is not one of its parameters" for k in of if k not in names), None) or
           next((f"puts {k!r} in stage {s!r}, not one of 1..{n}" for k, s in of.items() if not 1 <= s <= n), None) or
           (left and f"leaves out {plural(len(left), 'trainable parameter')} "
                     f"({', '.join(map(repr, left[:3]))}{', ...' if len(left) > 3 else ''})"))
    if why:
        raise ConfigError(f"model {cfg.model.name!r} has {n} greedy stages but its param_stages() {why}: "
                          f"cluster.rule = {c.rule!r} holds the tensors of the stages a push did not train by that "
                          "map; fix the model's param_stages, or use train.schedule = 'joint' or cluster.rule = 'adagrad'",
                          key="cluster.rule")


def check_stage_count(cfg: RunConfig, model: FeatureModel) -> None:
    """ConfigError where a greedy Downpour run on Ray has more stages than a shared-memory inbox's stages word
    carries (:data:`~downpour.ps.shm.MAX_STAGE`): unchecked, the first push of the last stage fails to stage, after
    every other stage has trained (63 one-map stages, 63 steps, one worker: "worker 0 lost at step 62", the run
    stopped at 62 of 63 steps). The simulator keeps a push's stages as a tuple: no limit."""
    c, n = cfg.cluster, model.n_stages
    if cfg.train.schedule != "greedy" or n <= MAX_STAGE or c.runner != "ray" or c.algorithm != "downpour":
        return
    key = "model.maps" if "maps" in cfg.model.options else "train.schedule"   # the cat network's stage count
    raise ConfigError(f"model {cfg.model.name!r} has {n} greedy stages, but a push on the Ray runner names the "
                      f"stages it trained in one word of its shared-memory inbox, which holds stages 1..{MAX_STAGE}; "
                      f"use at most {MAX_STAGE} stages, train.schedule = 'joint', or cluster.runner = 'simulated'",
                      key=key)


def stage_ranges(model: FeatureModel, layout: ParamLayout) -> dict[int, list[tuple[int, int]]]:
    """Per greedy stage (:meth:`~downpour.models.base.FeatureModel.param_stages`), the [a, b) of its trainable
    tensors in the flat vector: what a shard holds still when a push did not train that stage."""
    of, out = model.param_stages(), {}
    for name, offset, shape in zip(layout.names, layout.offsets, layout.shapes):
        if name in of:
            out.setdefault(of[name], []).append((offset, offset + shape.numel()))
    return out


def build_replica(cfg: RunConfig, input_shape: tuple[int, ...]) -> tuple[FeatureModel, Objective]:
    """One model replica and its objective: split into ``cluster.partitions`` partitions when > 1
    (the parameters then run partition-major: see :mod:`downpour.parallel.partition`)."""
    model, objective = build(cfg, input_shape)
    if cfg.cluster.partitions > 1:
        try:
            partition_model(model, cfg.cluster.partitions)
        except ValueError as err:     # (keyed: the command names what set it, --partitions 1000 or its --set)
            raise ConfigError(str(err), key="cluster.partitions") from None
    return model, objective


def make_shards(setup: ClusterSetup, init: torch.Tensor, live: set[int]) -> list[Shard]:
    """One :class:`Shard` per shard of ``setup.bounds``, holding its slice of ``init`` (numel,)."""
    c, lr = setup.cfg.cluster, setup.cfg.server_lr()
    # a push names the stages it trained (Push.stages); the shards hold the others' tensors still. (Were
    # they to take any tensor piece pushed all exact zeros as held, a trained stage's piece that was all zeros for
    # a batch, e.g. rows of units dead for it cut off by a shard boundary, would keep its momentum)
    return [Shard(j, init[a:b], make_rule(c.rule, lr, c.momentum), make_compensation(c.compensation, c.dc_lambda),
                  live, sync=setup.gate.sync, start=a, noise=c.grad_noise, seed=setup.cfg.seed,
                  noise_relative=c.grad_noise_relative,
                  stage_pieces={k: tensor_pieces(r, a, b) for k, r in setup.stage_ranges.items()})
            for j, (a, b) in enumerate(setup.bounds)]


def make_worker(cfg: RunConfig, wid: int, data: Dataset, bounds: list[tuple[int, int]], gated: bool,
                start_step: int = 0, seq: int = 0, params: Any = None, stream: dict[str, Any] | None = None,
                frozen: dict[str, torch.Tensor] | None = None, local_first: bool = True) -> Worker:
    """Worker ``wid`` on ``data`` (its own shard of the dataset); its replica is filled by its first
    fetch. ``gated``: the gate's :attr:`~downpour.ps.consistency.Consistency.gated` (the worker then fetches
    at the start of every push). ``params``: where the
    replica's parameters live, when not in this process (model-parallel partitions on Ray).
    ``stream``: streamed data's ``{"seed_step", "position"}`` saved by a checkpoint: the stream goes on
    from there (its report too) instead of being re-seeded from ``start_step``. ``frozen``: the driver's
    :func:`~downpour.train.flat.frozen_params`, which no fetch brings. ``local_first``:
    :func:`~downpour.ps.seeds.batch_seed`'s."""
    with torch.random.fork_rng(devices=[]):   # its initial weights are overwritten by its first fetch: draw nothing
        model, objective = build_replica(cfg, data.input_shape)   # from the run's RNG, which its training draws from
    load_frozen(model, frozen or {})
    generator = torch.Generator().manual_seed(batch_seed(cfg.seed, wid, stream["seed_step"] if stream else start_step,
                                                             local_first))
    c = cfg.cluster
    batches = (data.batches(cfg.train.batch_size, generator, position=stream["position"]) if stream
               else data.batches(cfg.train.batch_size, generator))
    # a model-parallel replica on Ray, whose push a partition restart drops: its batches are read again. Decided before
    # the GPU branch sets ``params`` (decided after, a whole GPU replica would keep its push's batches)
    reread = params is not None
    device = resolve_device(replica_device(cfg))    # 'cuda' where this process sees no GPU: ConfigError naming the key
    if device.type != "cpu":
        if params is not None:
            raise ConfigError(f"train.device={cfg.train.device!r}: a model-parallel replica's partitions compute on "
                              "CPU; set cluster.partitions = 1 or train.device = 'cpu'")
        model.to(device)
        batches, params = OnDevice(batches, device), DeviceParams(model, cfg.train.lr, c.n_fetch)
    return Worker(wid, model, objective, batches, bounds, c.n_fetch, c.n_push, cfg.train.lr, gated=gated, seq=seq,
                  params=params, reread=reread)


def replica_device(cfg: RunConfig) -> str:
    """``train.device`` as a worker's replica takes it: ``auto`` with model-parallel partitions is the CPU they
    compute on (on every runner); ``cuda`` with them is refused by preflight."""
    return "cpu" if cfg.train.device == "auto" and cfg.cluster.partitions > 1 else cfg.train.device


def worker_cpus(workers: int, nodes: list[float]) -> float:
    """CPUs each Ray worker actor asks for, given each live node's CPUs (``nodes``): one, or where the cluster has
    fewer CPUs than workers the largest share whose actors still fit node by node (an actor needs what it asks on
    one node), which is said. The cluster's total over the workers would not do: 4 workers on nodes of 1 and 2 CPUs
    would ask 0.75 each, 3 fit (1 + 2), and the start would wait 600 s for the 4th and fail."""
    if sum(nodes) >= workers:
        return 1.0
    fits = [share for share in sorted({math.floor(c / k * 1e4) / 1e4 for c in nodes for k in range(1, workers + 1)},
                                      reverse=True)   # (Ray counts CPUs in 1/10000ths: rounded down, a share fits)
            if share > 0 and sum(math.floor(c / share + 1e-9) for c in nodes) >= workers]
    if not fits:      # (nodes of no CPU alone: 1 each, and the start names the room it waits for)
        return 1.0
    log.info("the Ray cluster has %s on %s for the run's %s: each worker actor asks %.4g CPU, and they share the "
             "cores (1 CPU each would need %s)", _cpus(sum(nodes)), plural(len(nodes), "node"),
             plural(workers, "worker"), fits[0], plural(workers, "CPU"))
    return fits[0]


def _cpus(n: float) -> str:
    return plural(int(n), "CPU") if n == int(n) else f"{n:g} CPUs"


def worker_gpus(cfg: RunConfig, available: float) -> float:
    """GPUs each Ray worker actor asks for, given the cluster's ``available`` GPUs (Ray shows an actor
    that asks for none no GPU at all: it sets CUDA_VISIBLE_DEVICES to empty).

    ``train.device = cuda``: ``cluster.worker_gpus``, or ConfigError when the cluster has too few for
    every worker. ``auto``: the same where the cluster has enough (and the replica is not split into
    model-parallel partitions, which compute on CPU), else 0 (the workers run on CPU). ``cpu``: 0.
    """
    device, n, each = replica_device(cfg), cfg.cluster.workers, cfg.cluster.worker_gpus
    if device == "cpu":
        return 0.0
    if available >= n * each:
        return each
    if device == "auto":
        return 0.0
    raise ConfigError(f"train.device='cuda': the Ray cluster has {available:g} GPUs and the run's {n} workers ask "
                      f"for {n * each:g} (cluster.worker_gpus = {each:g} each); add GPU nodes, lower "
                      "cluster.worker_gpus (0.5: two workers share a GPU) or set train.device = 'cpu'")


class DeviceParams(LocalParams):
    """A replica on a GPU: fetched slices are copied onto it, the push's summed gradient is built
    there and handed to the shards (plain CPU tensors, whichever runner holds them) as CPU slices."""

    def take(self, bounds, seq, base, stages=None):
        return [part.cpu() for part in super().take(bounds, seq, base, stages)]


class OnDevice:
    """``batches`` moved to ``device``; a stream's ``position``, ``report`` and ``close`` pass through."""

    def __init__(self, batches: Iterator[Any], device: torch.device):
        self.batches, self.device = batches, device

    def __iter__(self) -> "OnDevice":
        return self

    def __next__(self) -> Any:
        return next(self.batches).to(self.device)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batches, name)
