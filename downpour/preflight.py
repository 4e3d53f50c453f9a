"""The checks that need more than one config value, run before a run's directory is made: a typo
costs nothing. (Each value's own type, choices and range are checked when the config is loaded:
see :mod:`downpour.settings`.)

Sits beside the CLI, above every layer it checks (data, models, objectives, train, ps, analysis).
It resolves the config (every model field and cost term written out), builds the model for the
input shape the data config implies and runs its cost once on a zero batch, so a shape that does
not fit, a cost term the model cannot feed, or a model option out of range fails here, not after
the data is built. The cluster's own checks (runner, algorithm, Ray's processes) are
:mod:`~downpour.cluster_checks`'s; a resume's (the run in its folder, the overrides it may take) are
:mod:`~downpour.resume_checks`'s.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from downpour.analysis.options import absolute_paths, analysis_options
from downpour._names import nearest, plural
from downpour.batch import Batch
from downpour.config import FILE_SOURCES, ConfigError, Override, RunConfig, is_cluster_runner, load_config
from downpour.cluster_checks import check_cluster
from downpour.data.build import check_config as check_data
from downpour.data.build import check_files
from downpour.models.data_fit import warn_data_fit
from downpour.data.build import gives_labels, label_count, off_unit_interval, sample_shape, why_unlabelled
from downpour.data.opened import Opened
from downpour.data.pipeline import resolve_data
from downpour.layers.gabor import FROZEN_KINDS
from downpour.models.base import FeatureModel
from downpour.models.cost_fit import check_cost_fits
from downpour.models.registry import resolve
from downpour.parallel.partition import partition_bounds, partition_ranges
from downpour.ps.setup import build_replica, check_cluster_data, check_param_stages, check_stage_count
from downpour.ps.shard import shard_bounds
from downpour.train.flat import ParamLayout
from downpour.train.rundir import RunDir
from downpour.train.setup import resolve_device, set_up_torch

log = logging.getLogger(__name__)


def check_run_config(cfg: RunConfig, resume: bool = False, chosen: dict[str, Any] | None = None,
                     listed_at_start: int | None = None) -> RunConfig:
    """``cfg`` resolved (see :func:`~downpour.models.registry.resolve`), or ConfigError naming the
    first thing in it that does not fit together: the data files, the model on the data's shape,
    the device for the runner, the cluster's delay model, the analysis sets (``resume``: a resumed run's, which keeps
    its workers: a refusal for too few files says so). ``chosen``: filled with why data.pipeline = 'auto' chose as it
    did (:func:`~downpour.data.pipeline.resolve_data`), for :func:`read_checked`. ``listed_at_start``: a resume's
    item count at the run's last start (:func:`~downpour.data.resumed.files_listed_at_start`), which that refusal says
    where it shrank."""
    cfg = resolve(cfg)
    check_data(cfg.data)
    check_files(cfg.data)
    workers = cfg.cluster.workers if is_cluster_runner(cfg.cluster.runner) else 1
    cfg = dataclasses.replace(cfg, data=resolve_data(cfg.data, stream_ok=cfg.cluster.algorithm == "downpour",
                                                     workers=workers, resume=resume, chosen=chosen,
                                                     listed_at_start=listed_at_start))
    cfg = dataclasses.replace(cfg, analysis=absolute_paths(cfg.analysis))   # (as data.path: read from any folder)
    # 'cuda' where this process sees no GPU: refused, naming the key. On Ray the workers' nodes have the GPUs,
    # not necessarily this driver: the cluster's GPUs are counted when it starts (ps.setup.worker_gpus).
    if cfg.cluster.runner != "ray":
        resolve_device(cfg.train.device)
    check_cluster(cfg, resume)
    analysis_options(cfg, {})
    shape = sample_shape(cfg.data)
    _dry_run(cfg, shape)
    return cfg


def check_data_read(cfg: RunConfig, resume: bool = False, listed_at_start: int | None = None) -> str:
    """For ``downpour train --dry-run`` of resolved ``cfg``: read a file source's data as the run reads them before
    its first step (in memory every file; streamed the fitting sample, data.fit_sample items), refusing with the run's
    own error (no file gives an image; more workers than samples; a streamed share of only files that give none),
    each skipped file logged as the run logs it; -> what it read and would skip, for the dry run to say. Until
    2026-12-06 a dry run read no image: a folder of only corrupt files passed it ("config checked"), and the run
    then refused, its folder made. ("" for a built-in source: nothing on disk to go wrong.) ``listed_at_start``: a
    resume's item count at the run's last start (:func:`~downpour.data.resumed.files_listed_at_start`), which its
    refusal says where it shrank."""
    opened = read_checked(cfg, resume, listed_at_start=listed_at_start)
    if opened is None:
        return ""
    d, data = cfg.data, opened.data
    fit, info = data.info.get("fit_sample"), data.info
    if info.get("pipeline") == "stream" and fit is not None and not fit["items"]:     # (nothing to fit on)
        return (f"data.path {d.path!r}: the run reads its files only once it trains, none before (data.normalize and "
                "data.whiten are 'none': nothing is fitted), so none was read here")
    if info.get("pipeline") == "stream" and fit is not None:
        n, read, bad = info["n_items"], fit["items"], fit["n_skipped"]
        share = f"{'every one' if read == n else read} of its {plural(n, info['item'])}"
        what = f"before it trains: its fitting sample (data.fit_sample), {share}"
        later = "" if read == n else "; the others are read once it trains"
    else:
        bad, later = info.get("n_skipped", 0), ""
        what = "every file, into memory"
    skipped = (f"{plural(bad, info.get('item', 'file'))} would be skipped, named above" if bad
               else "none would be skipped")
    return f"data.path {d.path!r} read as the run reads it ({what}): {skipped}{later}"


def read_checked(cfg: RunConfig, resume: bool = False, chosen: dict[str, Any] | None = None,
                 listed_at_start: int | None = None) -> Opened | None:
    """A file source's data read as the run reads them before its first step, or the run's own refusal of them (no
    file gives an image; more workers than samples; a streamed share of only files that give none), each skipped file
    logged as the run logs it: ``downpour train`` reads a new run's here, before its folder is made, and hands them to
    its runner (:mod:`~downpour.data.opened`); its --dry-run says what was read (:func:`check_data_read`). None for a
    built-in source (nothing on disk to refuse: the runner reads it). ``resume``: a resumed run's refusal. ``chosen``:
    why data.pipeline = 'auto' chose as it did, from :func:`check_run_config` (its estimate, not made again: a folder is
    listed once), recorded in the data's info (else a CLI run's data.json says {"pipeline": "memory"} alone)."""
    d = cfg.data
    if d.source not in FILE_SOURCES:
        return None
    # said first: in memory this is the run's whole load (up to 1 GiB decoded where 'auto' chose it), a wait to explain
    # (a new run's too: it reads them before its "downpour: training ..." line)
    log.info("reading data.path %r as the run does before its first step (%s)", d.path,
             "every file, into memory" if d.pipeline == "memory" else f"at most data.fit_sample = {d.fit_sample} items")
    set_up_torch(cfg)     # the runner's seed and train.threads (its whitening's sums), as it reads them (set again)
    opened = Opened.read(cfg.data, cfg.seed, stream_ok=cfg.cluster.algorithm == "downpour")
    if chosen:
        opened.data.info["chosen"] = chosen
    if is_cluster_runner(cfg.cluster.runner):
        check_cluster_data(cfg, opened.data, resume, listed_at_start)   # (a resume's: it keeps its workers, data.size)
    return opened


def _dry_run(cfg: RunConfig, shape: tuple[int, int, int]) -> None:
    """Build one replica for ``shape`` (split into its partitions, with its shard layout, when
    ``cluster.partitions`` > 1) and evaluate its cost once on zeros (seeded RNG left untouched)."""
    where = f"model {cfg.model.name!r} on {'x'.join(map(str, shape))} samples (data.size = {cfg.data.size})"
    try:
        with torch.random.fork_rng(devices=[]):
            model, objective = build_replica(cfg, shape)
            if cfg.cluster.partitions > 1:
                partition_bounds(partition_ranges(model), cfg.cluster.shards)
            elif is_cluster_runner(cfg.cluster.runner):   # (found by the runner once the run folder existed)
                shard_bounds(ParamLayout(model).numel, cfg.cluster.shards)
            labelled = gives_labels(cfg.data)
            if model.supervised and not labelled:
                raise ConfigError(f"model {cfg.model.name!r} is supervised: it trains on class labels, and "
                                  f"{why_unlabelled(cfg.data)}", key="data.source")
            labels = torch.zeros(2, dtype=torch.int64) if labelled else None
            off = off_unit_interval(cfg.data) if getattr(model, "needs_unit_interval", False) else None
            if off:   # (found at the first batch, after the run folder was made)
                raise ConfigError(f"model {cfg.model.name!r} has Bernoulli visibles, which take data in [0, 1] only, and "
                                  f"{off[1]} takes it out; keep the data in [0, 1] (data.normalize = 'none' or 'ufldl', "
                                  "data.whiten = 'none') or set model.visible = 'gaussian'", key=off[0])
            outputs = model.forward_train(Batch(torch.zeros(2, *shape), labels))
            objective(outputs)
            # (every part: a fresh model trains every stage at once; this replica is built for the checks, so its
            # forward's outputs serve, where FeatureLearner and the plan run check_model_parts on a copy)
            objective.check_parts(list(outputs))
            if model.supervised:
                _check_classes(cfg, outputs)
            check_cost_fits(cfg.model.name, model, objective, shape)
            warn_data_fit(cfg, model, shape)      # (run, but said: grbm-patches on unstandardised digits)
            _check_stages_train(cfg, model)
            check_param_stages(cfg, model)
            check_stage_count(cfg, model)
            _check_analysis_layers(cfg, model)    # (a split replica has the merged network's layers)
    except ConfigError as err:
        if err.key and err.key.startswith("model."):   # the model refuses this shape: say which shape
            raise ConfigError(f"{where}: {err}", key=err.key) from None
        raise
    except (ValueError, TypeError, KeyError, RuntimeError, IndexError) as err:
        reason = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"{where}: {reason}") from None


def _check_classes(cfg: RunConfig, outputs: dict[str, Any]) -> None:
    """A supervised model scores as many classes as the data's labels run over: a label past its last class
    failed at the first batch that held one, with a traceback, its run folder left behind (cnn-digits with
    model.classes = 5 on the digits: "ValueError: label 9 does not fit model.classes = 5")."""
    scored = min((o.logits.shape[1] for o in outputs.values() if o.logits is not None), default=None)
    needed = label_count(cfg.data)
    if scored is None or needed is None or scored >= needed:
        return
    raise ConfigError(f"model.classes = {scored}, but the labels of data.source = {cfg.data.source!r} run over {needed} "
                      f"classes (0..{needed - 1}); set model.classes = {needed}",
                      key="model.classes" if "classes" in cfg.model.options else None)


def _check_analysis_layers(cfg: RunConfig, model: FeatureModel) -> None:
    """The analysis's layers are the model's: a typo fails here, not after the training."""
    for key, names in (("analysis.layer", [cfg.analysis.layer]), ("analysis.probe_layers", cfg.analysis.probe_layers)):
        for name in names:
            if name and name not in model.feature_layers():
                raise ConfigError(f"{key} = {name!r} is not a feature layer of model {cfg.model.name!r}; it has "
                                  f"{model.feature_layers()}{nearest(name, model.feature_layers())}", key=key)


def _check_stages_train(cfg: RunConfig, model: FeatureModel) -> None:
    """A model whose only weights are a frozen Gabor or random first layer (a one-stage tied model) has
    nothing to train; a greedy schedule gives every stage a share of the steps, and a stacked model whose
    first stage is such a bank has nothing to train in its share: either would fail its first step; say
    so before any step runs. (Read from the config: a partitioned stage holds its weights in its blocks.)"""
    kind = getattr(getattr(model, "config", None), "first_layer", None)
    if kind in FROZEN_KINDS and not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"model {cfg.model.name!r} has nothing left to train with model.first_layer = {kind!r}: its "
                          f"first layer is all it learns (a tied decoder, no bias); use model.first_layer = 'learned'",
                          key="model.first_layer")
    if cfg.train.schedule == "greedy" and model.n_stages > 1 and kind in FROZEN_KINDS:
        raise ConfigError(f"train.schedule = 'greedy' gives stage 1 its own share of the steps, but stage 1 has "
                          f"nothing to train (a frozen first layer: model.first_layer = {kind!r}); "
                          f"use train.schedule = 'joint'")
    if cfg.train.schedule == "greedy" and cfg.train.steps < model.n_stages:
        raise ConfigError(f"train.steps = {cfg.train.steps} gives some of the model's {model.n_stages} stages no step "
                          f"under train.schedule = 'greedy' (they would keep their initial weights); train at least "
                          f"{model.n_stages} steps or use train.schedule = 'joint'", key="train.steps")


def new_run_config(source: str, overrides: list[Override]) -> RunConfig:
    """``load_config(source, overrides)``; where ``source`` is a trained run's config.toml (the way to start
    another run from it), the keys it lacks because it predates them read as they meant (as its resume
    reads them), not as today's defaults: another network."""
    path = Path(source)
    if path.name == "config.toml" and path.is_file() and not RunDir(path.parent).never_started():
        cfg = load_config(source, [*RunDir(path.parent).saved_reads(), *overrides])
    else:
        cfg = load_config(source, overrides)
    # 0 is what an old run's resume reads where the rule its start decoded by is unknown; a new run has one. Until
    # 2026-12-05 it was taken: tiled, refused with the resume's words once config.toml was written; else kept there
    if cfg.data.jpeg_decode == 0:
        raise ConfigError("data.jpeg_decode = 0 (unknown: what a run whose records predate the key reads as) cannot "
                          "start a run; give 1 or 2 (the rule it decodes JPEGs by; 2, today's, is the default)",
                          key="data.jpeg_decode")
    return cfg
