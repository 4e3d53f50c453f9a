"""What Sandblaster L-BFGS needs of a run config, beyond each value's own range.

L-BFGS's line search compares the cost at two points on the same batch, so the cost must be a
fixed function of the parameters: no cost term that draws random numbers, no dropout, no data
augmentation.
The model is not split (``cluster.partitions`` is Downpour's). Called by preflight, before the
run directory exists, and by the runner itself (a config built in Python skips preflight).
"""
from __future__ import annotations

import logging

from downpour.config import ConfigError, RunConfig
from downpour.objectives import Contractive, make_term, split_part

# cost term -> why L-BFGS cannot minimise it (a resolved config lists every term with its weight)
RANDOM_TERMS = {
    "contrastive_divergence": "its gradient comes from Gibbs samples, not from a cost a line search can compare",
    "denoising": "it corrupts the input with fresh noise at every evaluation",
}
log = logging.getLogger(__name__)


def check_sandblaster(cfg: RunConfig, resume: bool = False) -> None:
    """ConfigError naming the first thing in ``cfg`` (resolved) that Sandblaster L-BFGS cannot run (``resume``: a
    resumed run's, whose sandblaster.batch above its patches is said by :func:`check_examples`, not refused: a resume
    keeps it, and the run was started with it before 2026-12-06)."""
    for name, spec in cfg.objective.items():
        term = make_term(name, spec)               # (checked when the config was resolved)
        if term.weight == 0:
            continue
        if (shared := split_part(name)[1]) in RANDOM_TERMS:   # (a part's own too: stage2/denoising)
            raise ConfigError(f"cluster.algorithm = 'sandblaster' cannot minimise cost term {name!r}: "
                              f"{RANDOM_TERMS[shared]}; use cluster.algorithm = 'downpour'")
        if isinstance(term, Contractive) and term.probes != 0:   # (a bare weight too: its default probes = 1)
            raise ConfigError(f"cluster.algorithm = 'sandblaster' needs {name}.probes = 0 (the exact penalty): "
                              "Hutchinson's estimate draws new probes at every evaluation")
    if cfg.model.options.get("dropout", 0):
        raise ConfigError(f"cluster.algorithm = 'sandblaster' needs model.dropout = 0 (got {cfg.model.options['dropout']}): "
                          "dropout draws a new mask at every evaluation")
    d = cfg.data
    if d.shift or d.scale or d.flip:
        raise ConfigError("cluster.algorithm = 'sandblaster' needs data.shift = 0, data.scale = 0 and data.flip = false: "
                          "augmentation changes the batch between the line search's evaluations")
    if d.pipeline == "stream":
        raise ConfigError("cluster.algorithm = 'sandblaster' evaluates work units over one in-memory set: it needs "
                          "data.pipeline = 'memory' or 'auto' (which then keeps the data in memory), not 'stream'")
    if cfg.train.device == "cuda":   # the replicas compute on CPU: a GPU asked for would sit idle, unsaid
        raise ConfigError("cluster.algorithm = 'sandblaster' computes on CPU: train.device = 'cuda' is not used by it; "
                          "set train.device = 'cpu' (or 'auto'), or train with cluster.algorithm = 'downpour'")
    if cfg.cluster.partitions != 1:
        raise ConfigError(f"cluster.partitions = {cfg.cluster.partitions} splits Downpour's replicas across "
                          "processes; cluster.algorithm = 'sandblaster' runs whole replicas (model parallelism with "
                          "Sandblaster is not built): set cluster.partitions = 1, or train with "
                          "cluster.algorithm = 'downpour'")
    s = cfg.sandblaster
    if s.batch and s.units > s.batch:
        raise ConfigError(f"sandblaster.units = {s.units} is more than the {s.batch} examples of a batch "
                          "(sandblaster.batch): every unit needs at least one")
    if d.mode == "patches" and s.units > d.samples:   # patches: at most data.samples examples, known now
        raise ConfigError(f"sandblaster.units = {s.units} is more than the {d.samples} examples data.samples draws: "
                          "every unit needs at least one")
    if d.mode == "patches" and s.batch > d.samples and not resume:   # (else run whole, unsaid)
        raise ConfigError(f"sandblaster.batch = {s.batch} is more than the {d.samples} examples data.samples draws: "
                          + _whole_or_sample(d.samples))


def check_examples(cfg: RunConfig, n: int, resume: bool = False) -> None:
    """Once the data is built (``n`` examples): the batch and its units fit in it."""
    s = cfg.sandblaster
    batch = min(s.batch, n) if s.batch else n
    if s.units > batch:
        raise ConfigError(f"sandblaster.units = {s.units} is more than the {batch} examples of a batch "
                          f"(the data has {n}): every unit needs at least one")
    if s.batch > n:     # a set known only once built (a folder's crops, a cross-fit's fold): said, and run whole
        log.warning("sandblaster.batch = %d is more than the %d examples of the data: every iteration uses all of "
                    "them, as sandblaster.batch = 0 does; %s", s.batch, n,
                    "a resume keeps it, as the run started" if resume else _whole_or_sample(n))


def _whole_or_sample(n: int) -> str:
    return (f"set sandblaster.batch = 0 for all {n} in every iteration, or below {n} for a fresh sample of that many "
            "in each")


def ray_straggler_problem(cfg: RunConfig) -> str | None:
    """What of ``cfg``'s ``straggler:T:FACTOR`` Sandblaster's workers on Ray would not read: they sleep (FACTOR - 1)
    times their compute after each unit, the last worker alone, and nothing else (None: nothing, or not that form).
    Refused on the command line (cli_flags), said where a config file or a resumed run holds it
    (:func:`ray_straggler_warning`)."""
    latency, factor = _straggler(cfg)
    if latency == 0 and factor >= 1:
        return None
    return (f"cluster.delay = 'straggler:{latency:g}:{factor:g}': on Ray, Sandblaster's last worker only sleeps "
            "FACTOR - 1 times its compute after each unit (FACTOR >= 1); T, the simulator's latency, is not read "
            f"there: write straggler:0:{max(factor, 1):g}, or use --runner simulated")


def ray_straggler_warning(cfg: RunConfig) -> str | None:
    """What a Sandblaster run on Ray says at its start (a WARNING) of a ``straggler:T:FACTOR`` it does not read
    whole, and what its ``--dry-run`` says too; None for any other run."""
    if cfg.cluster.runner != "ray" or cfg.cluster.algorithm != "sandblaster":
        return None
    problem = ray_straggler_problem(cfg)
    return problem and f"{problem}; it runs as straggler:0:{max(_straggler(cfg)[1], 1):g}"


def _straggler(cfg: RunConfig) -> tuple[float, float]:
    """``cfg``'s ``straggler:T:FACTOR`` as (T, FACTOR); (0, 1) for any other cluster.delay."""
    kind, args = cfg.cluster.spec("delay")
    return (float(args[0]), float(args[1])) if kind == "straggler" else (0.0, 1.0)
