"""Every way to train a run config, behind one call: the runner protocol.

    summary = train(cfg, RunDir.create(out, cfg))               # cfg.cluster.runner: local | simulated | ray
    summary = train(cfg, RunDir.open(out), resume=True)         # go on to cfg.train.steps

A runner is a function ``(cfg, run, resume, opened=None) -> summary``. It builds what it needs from the resolved,
frozen ``cfg`` (its data taken from ``opened`` where they were read already: :mod:`downpour.data.opened`), restores
its state on a resume, calls :meth:`RunDir.begin` (the shared start: step
check, config and preprocessing saved, metrics truncated), trains, saves the model with
:meth:`RunDir.save_model`, and returns a summary dict with at least ``steps``, ``resumed_from``,
``final_loss``, ``seconds`` and ``run``. Downpour's two cluster runners share
:func:`~downpour.ps.cluster.run_cluster` and differ only in their driver
(:class:`~downpour.ps.recorder.Driver`). A new runner is one entry in :data:`RUNNERS` and one choice
in ``cluster.runner``; a new cluster runner one name in :data:`~downpour.config.CLUSTER_RUNNERS` (which every check
asks, through :func:`~downpour.config.is_cluster_runner`) and a driver; a new cluster algorithm (Sandblaster L-BFGS)
one entry in :data:`ALGORITHMS` and one choice in ``cluster.algorithm`` (the field table test checks that each pair
agrees).
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Callable

from downpour.config import RunConfig, is_cluster_runner
from downpour.data.opened import Opened
from downpour.models.registry import resolve
from downpour.train.divergence import diverged_words, recorded, runaway
from downpour.train.rundir import RunDir, check_is_config

log = logging.getLogger(__name__)

Runner = Callable[..., dict[str, Any]]     # (cfg, run, resume, opened=None)

# cluster.runner -> "module:function", imported on use, for the runners that train in this process; a cluster runner
# (downpour.config.CLUSTER_RUNNERS) has no entry: it runs cluster.algorithm's entry of ALGORITHMS (run_cluster picks
# the runner's driver)
RUNNERS: dict[str, str] = {"local": "downpour.train.loop:run_local"}
# cluster.algorithm on the cluster runners (simulated, ray): each runs on either (Ray only when it is asked for)
ALGORITHMS = {"downpour": "downpour.ps.cluster:run_cluster",
              "sandblaster": "downpour.sandblaster.run:run_sandblaster"}


def _load(target: str) -> Runner:
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def runner(cfg: RunConfig) -> Runner:
    """The runner of ``cfg``: its entry in :data:`RUNNERS` (the local loop), or for a cluster runner (simulated, Ray)
    the cluster algorithm's, decided by :func:`~downpour.config.is_cluster_runner`, so that a new runner's
    entry is called, not taken for a cluster's."""
    name = cfg.cluster.runner
    return _load(ALGORITHMS[cfg.cluster.algorithm] if is_cluster_runner(name) else RUNNERS[name])


def train(cfg: RunConfig, run: RunDir, resume: bool = False, opened: Opened | None = None) -> dict[str, Any]:
    """Train ``cfg`` (resolved here, so the run directory's config.toml reproduces the run) with the
    runner ``cfg.cluster.runner`` and ``cfg.cluster.algorithm`` name; returns its summary, with ``diverged`` where
    the loss ran away (:func:`_say_diverged`). ``opened``: its data read already (``downpour train`` reads a new
    run's before its folder is made), taken instead of read again."""
    # from Python a name or a path is the likely slip: say how to make what is wanted, before any work
    check_is_config(cfg, "train")
    if not isinstance(run, RunDir):
        raise TypeError(f"train: run must be a RunDir (RunDir.create(path, cfg) for a new run, RunDir.open(path) "
                        f"to resume one), got {str(run)!r} ({type(run).__name__})")
    cfg = resolve(cfg)
    summary = runner(cfg)(cfg, run, resume, opened=opened)
    _say_diverged(cfg, run, summary)
    return summary


def _say_diverged(cfg: RunConfig, run: RunDir, summary: dict[str, Any]) -> None:
    """One warning for a finished run that diverged, and ``summary["diverged"]``: its loss ran away with every number
    finite (no runner's non-finite check sees it), its rows stop before its end (it went past finite numbers and
    skipped the rest), most of its steps were skipped, or most of a cluster run's pushes were refused
    (train/divergence.py), read from its files (its first trained step too: a run shorter than train.log_every logs
    one row) as the analysis reads them."""
    if (diverged := runaway(run.metrics(), *recorded(run.path))):
        summary["diverged"] = diverged
        log.warning("%s; its model is not a trained one. %s", diverged_words(diverged), _calmer(cfg, summary))


def _calmer(cfg: RunConfig, summary: dict[str, Any]) -> str:
    """What to lower after a run diverged: the rate that trained it and, on a cluster, the staleness."""
    if is_cluster_runner(cfg.cluster.runner) and cfg.cluster.algorithm != "downpour":
        return "See its metrics.jsonl."      # (Sandblaster's L-BFGS steps have no rate to lower)
    if not is_cluster_runner(cfg.cluster.runner):
        return f"Lower train.lr ({cfg.train.lr:g} here)."
    key, lr = ("cluster.lr", cfg.cluster.lr) if cfg.cluster.lr else ("train.lr", cfg.train.lr)
    stale = summary.get("mean_staleness")
    return (f"Lower {key} (the server's rate, {lr:g} here)"
            + (f" or the staleness (a mean of {stale:.2f} here: fewer workers, or cluster.compensation): stale "
               f"gradients lower the stable rate (docs/studies.md, Q1)" if stale else "") + ".")
