"""The checks that need more than one config value, run before a run's directory is made: a typo
costs nothing. (Each value's own type, choices and range are checked when the config is loaded:
see :mod:`downpour.settings`.)

Sits beside the CLI, above every layer it checks (data, models, objectives, train, ps, analysis).
It resolves the config (every model field and cost term written out), builds the model for the
input shape the data config implies and runs its cost once on a zero batch, so a shape that does
not fit, a cost term the model cannot feed, or a model option out of range fails here, not after
the data is built. The cluster's own checks (runner, algorithm, Ray's processes) are
:mod:`~downpour.cluster_checks`'s.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch

from downpour.analysis.options import absolute_paths, analysis_options, has_analysis, next_step
from downpour._names import nearest, pasted, plural
from downpour.batch import Batch
from downpour.config import FILE_SOURCES, ConfigError, Override, RunConfig, as_typed, is_cluster_runner, load_config
from downpour.cluster_checks import check_cluster
from downpour.config_diff import RESUMABLE, config_differences
from downpour.data.build import check_config as check_data
from downpour.data.build import check_files
from downpour.models.data_fit import warn_data_fit
from downpour.data.build import gives_labels, label_count, off_unit_interval, sample_shape, why_unlabelled
from downpour.data.opened import Opened
from downpour.data.pipeline import resolve_data
from downpour.data.stream import list_items
from downpour.layers.gabor import FROZEN_KINDS
from downpour.models.base import FeatureModel
from downpour.models.cost_fit import check_cost_fits
from downpour.models.registry import resolve
from downpour.parallel.partition import partition_bounds, partition_ranges
from downpour.ps.setup import build_replica, check_cluster_data, check_param_stages, check_stage_count
from downpour.ps.shard import shard_bounds
from downpour.train.flat import ParamLayout
from downpour.train.lock import check_not_training
from downpour.train.config_record import recorded_differences, splits_steps
from downpour.train.json_digest import digest_problem
from downpour.train.refit import check_classes, saved_fit
from downpour.train.run_begin import last_step, saving_words
from downpour.train.rundir import CONFIG_KEY, NotARunError, RunDir
from downpour.train.setup import resolve_device, set_up_torch

log = logging.getLogger(__name__)


def check_run_config(cfg: RunConfig, resume: bool = False, chosen: dict[str, Any] | None = None) -> RunConfig:
    """``cfg`` resolved (see :func:`~downpour.models.registry.resolve`), or ConfigError naming the
    first thing in it that does not fit together: the data files, the model on the data's shape,
    the device for the runner, the cluster's delay model, the analysis sets (``resume``: a resumed run's, which keeps
    its workers: a refusal for too few files says so). ``chosen``: filled with why data.pipeline = 'auto' chose as it
    did (:func:`~downpour.data.pipeline.resolve_data`), for :func:`read_checked`."""
    cfg = resolve(cfg)
    check_data(cfg.data)
    check_files(cfg.data)
    workers = cfg.cluster.workers if is_cluster_runner(cfg.cluster.runner) else 1
    cfg = dataclasses.replace(cfg, data=resolve_data(cfg.data, stream_ok=cfg.cluster.algorithm == "downpour",
                                                     workers=workers, resume=resume, chosen=chosen))
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


def check_data_read(cfg: RunConfig, resume: bool = False) -> str:
    """For ``downpour train --dry-run`` of resolved ``cfg``: read a file source's data as the run reads them before
    its first step (in memory every file; streamed the fitting sample, data.fit_sample items), refusing with the run's
    own error (no file gives an image; more workers than samples; a streamed share of only files that give none),
    each skipped file logged as the run logs it; -> what it read and would skip, for the dry run to say. Until
    2026-12-06 a dry run read no image: a folder of only corrupt files passed it ("config checked"), and the run
    then refused, its folder made. ("" for a built-in source: nothing on disk to go wrong.)"""
    opened = read_checked(cfg, resume)
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


def read_checked(cfg: RunConfig, resume: bool = False, chosen: dict[str, Any] | None = None) -> Opened | None:
    """A file source's data read as the run reads them before its first step, or the run's own refusal of them (no
    file gives an image; more workers than samples; a streamed share of only files that give none), each skipped file
    logged as the run logs it: ``downpour train`` reads a new run's here, before its folder is made, and hands them to
    its runner (:mod:`~downpour.data.opened`); its --dry-run says what was read (:func:`check_data_read`). None for a
    built-in source (nothing on disk to refuse: the runner reads it). ``resume``: a resumed run's refusal. ``chosen``:
    why data.pipeline = 'auto' chose as it did, from :func:`check_run_config` (its estimate, not made again: a folder is
    listed once), recorded in the data's info; until 2026-12-06 a CLI run's data.json said {"pipeline": "memory"}
    alone."""
    d = cfg.data
    if d.source not in FILE_SOURCES:
        return None
    # said first: in memory this is the run's whole load (up to 1 GiB decoded where 'auto' chose it), a wait to explain
    # (a new run's too: since 2026-12-06 it reads them before its "downpour: training ..." line)
    log.info("reading data.path %r as the run does before its first step (%s)", d.path,
             "every file, into memory" if d.pipeline == "memory" else f"at most data.fit_sample = {d.fit_sample} items")
    set_up_torch(cfg)     # the runner's seed and train.threads (its whitening's sums), as it reads them (set again)
    opened = Opened.read(cfg.data, cfg.seed, stream_ok=cfg.cluster.algorithm == "downpour")
    if chosen:
        opened.data.info["chosen"] = chosen
    if is_cluster_runner(cfg.cluster.runner):
        check_cluster_data(cfg, opened.data, resume)    # (a resume's: it keeps its workers and data.size)
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
            objective.check_parts(list(outputs))     # (every part: a fresh model trains every stage at once)
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


def start_again(path: str | Path) -> str:
    """The command that trains the run in ``path``, one that never started (``--resume`` refuses it), in its folder."""
    return f"downpour train --config {pasted(Path(path) / 'config.toml')} --out {pasted(path)}"


def resume_config(path: str, overrides: list[Override],
                  flags: Callable[[RunConfig], None] | None = None) -> tuple[RunDir, RunConfig]:
    """The run in ``path`` and its config with ``overrides``, as ``--resume`` takes them: NotARunError
    for a run that never started, ConfigError for an override that would make it another run. ``flags``: the
    command line's check of what the run never reads, first (a Sandblaster run's --set train.lr was told "the run
    was trained with 0.03; start a new run (--config RUN/config.toml --set ...)", which refuses it too)."""
    run = RunDir.open(path)
    check_not_training(run.path)   # (a live run without a checkpoint yet was taken for one stopped before it)
    if run.never_started():   # e.g. its data failed, or its output's reader left before the first step
        raise NotARunError(f"{path!r} holds no checkpoint, model or metrics row: it never started training, or was "
                           "stopped before its first row and checkpoint (nothing of it was kept); nothing to resume. "
                           f"Start it again with `{start_again(path)}`, which takes the folder over")
    check_unedited(run)
    cfg = same_data_path(run.config, run.config_with(overrides))
    if flags is not None:
        flags(cfg)
    check_resume(run.config, cfg, run_path=run.path, overrides=overrides)
    check_checkpoints_kept(run, cfg)
    return run, cfg


def same_data_path(saved: RunConfig, cfg: RunConfig) -> RunConfig:
    """``cfg`` with the run's own ``data.path`` where a resume's ``--set data.path`` names that folder in other words
    (relative, a trailing slash): config.toml records it absolute. Until 2026-12-06 the command that began the run,
    given again with ``--resume``, was refused: "cannot resume with data.path = 'imgs': the run was trained with
    '/home/me/imgs'"."""
    was, now = saved.data.path, cfg.data.path
    if now == was or not now or not was or os.path.abspath(now) != os.path.abspath(was):
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=was))


def check_checkpoints_kept(run: RunDir, cfg: RunConfig) -> None:
    """NotARunError when the run's checkpoints/ folder, what a resume goes on from, is gone (moved or deleted):
    what happened, what of the run is left and how to train it again. Until 2026-12-05 the resume said only
    "checkpoint file 'RUN/checkpoints/local.safetensors' is missing". Not for a run that stopped before its first
    checkpoint (trained again from step 0), nor for a finished run whose no-faces twin is all that is left (one it
    trains: :meth:`RunConfig.trains_twin`; until 2026-12-05 any ``no_faces_twin = true``, so a run with no lfw face,
    whose twin is turned off, failed with the old message). A finished run it refuses as finished, with what the user
    may have meant (analyse or report it; more --steps, which needs the checkpoints): until 2026-12-05 it was told to
    put the folder back "to resume" a run with nothing left to train."""
    if run.has_checkpoint() or run.stopped_unsaved() or (cfg.trains_twin() and run.finished(cfg.train.steps)):
        return
    step, why = run.saved_model()
    where = "holds no whole checkpoint" if run.checkpoints.is_dir() else "is missing (moved or deleted)"
    gone = run.checkpoints_lost() or f"its folder {str(run.checkpoints)!r} {where}, and a resume goes on from the checkpoint there"
    again = (f"To train the run again from step 0: `downpour train --config {pasted(run.path / 'config.toml')} --out NEW` (its own "
             "config, into a new folder)")
    if step is not None and run.finished(cfg.train.steps):    # nothing to resume
        stop = run.stopped_for_good(cfg.train.steps)
        how = (f"its L-BFGS stopped for good at iteration {step} ({stop['reason']})" if stop is not None else
               f"its model.safetensors is at step {step} of train.steps = {cfg.train.steps}")
        more = ("more steps would not train it on" if stop is not None else
                "more steps under its greedy schedule are a new run (the command below, with --steps M)"
                if cfg.train.schedule == "greedy" else
                f"`downpour train --resume {pasted(run.path)} --steps M` (M above {cfg.train.steps}) would train it on, from "
                f"its checkpoint: {gone}; put it back first")
        shows = (f"`downpour analyze {pasted(run.path)}` analyses it and `downpour report {pasted(run.path)}` shows "
                 f"its report" if has_analysis(cfg) else next_step(run))   # (teacher-student: its training's report)
        raise NotARunError(f"{str(run.path)!r} is finished ({how}): there is nothing to resume. {shows}; {more}. "
                           f"{again}")
    left = (f"its model.safetensors (step {step}) is there: {next_step(run)}, but training "
            "cannot go on from the weights alone (the optimiser's state and the data's position are in the checkpoint)"
            if step is not None else
            "its model.safetensors is missing too: nothing of its training is left to go on from"
            if not (run.path / "model.safetensors").is_file() else   # (there, failing its check: it said "missing")
            f"its model is not whole either ({why}): copy a whole one back to "
            f"{'analyse' if has_analysis(cfg) else 'report'} it; training cannot go on from it")
    raise NotARunError(f"cannot resume {str(run.path)!r}: {gone}; put it back to resume. {left[0].upper()}{left[1:]}. "
                       f"{again}")


def check_unedited(run: RunDir) -> None:
    """ConfigError when the run's config.toml says another value than the one its checkpoint's weights were
    trained with (the JSON's ``config``), for a key a resume may not change: the file was edited by hand, and the
    resume would go on under a config that describes neither what it trained nor what it trains."""
    for meta_path in sorted(run.checkpoints.glob("*.json")) if run.checkpoints.is_dir() else []:
        try:
            meta = json.loads(meta_path.read_text())
            record = meta.get(CONFIG_KEY) if digest_problem(meta, meta_path.with_suffix(".safetensors")) is None else None
        except (OSError, ValueError, AttributeError):
            continue                            # (a damaged checkpoint: the resume's load names it)
        # (one edited by hand, not its digest, too: its config was told as config.toml's edit, to be copied back)
        if not isinstance(record, dict):
            continue                            # (a run from before 2026-12-04 records none)
        for key, was, now in recorded_differences(record, run.config):
            raise ConfigError(f"{str(run.path / 'config.toml')!r} has {key} = {now!r}, but the run's checkpoint "
                              f"({str(meta_path)!r}) was trained with {was!r}: the file was edited since. Put {was!r} "
                              f"back to resume the run, or train a new one from the edited file (downpour train "
                              f"--config {pasted(run.path / 'config.toml')} --out NEW)", key=key)


def unresumable(saved: RunConfig, new: RunConfig) -> list[tuple[str, Any, Any]]:
    """(key, was, now) of every difference a resume may not make (not in RESUMABLE). Both are compared
    resolved, so a value written in an older form (``model.filter_norm = 1.0`` for ``[1.0]``) is the same run."""
    return [(key, was, now) for key, was, now in config_differences(resolve(saved), resolve(new)) if key not in RESUMABLE
            and not (key == "data.jpeg_decode" and was == 0)]   # naming the rule a run's records do not (0: unknown)


def check_resume(saved: RunConfig, new: RunConfig, changed: list[tuple[str, Any, Any]] | None = None,
                 run_path: str | Path = "RUN", overrides: list[Override] | tuple[Override, ...] = ()) -> None:
    """Refuse overrides on ``--resume`` that would change what the run is, naming the key (``changed``:
    :func:`unresumable`'s answer, when the caller has it); the new run they suggest reads ``run_path``'s config.toml
    (until 2026-12-05 it was written ``RUN/config.toml`` whatever the run's folder) with the command line's
    ``overrides`` as typed, shell-quoted (until 2026-12-05 a literal ``--set ...``)."""
    config, typed = pasted(Path(run_path) / "config.toml"), as_typed(overrides)
    for key, was, now in unresumable(saved, new) if changed is None else changed:
        raise ConfigError(f"cannot resume with {key} = {now!r}: the run was trained with {was!r}; start a new run "
                          f"(downpour train --config {config} {typed or '--set ...'} --out NEW) instead")
    if saved.train.steps != new.train.steps and splits_steps(new):
        # (it said "for more steps" to a --steps below the run's too)
        raise ConfigError(f"cannot change train.steps ({saved.train.steps} -> {new.train.steps}) when resuming a greedy "
                          f"run: its split of the steps between stages depends on train.steps; to train it for "
                          f"{new.train.steps} steps start a new run (downpour train --config {config} "
                          f"{typed or f'--steps {new.train.steps}'} --out NEW)")


def check_folder(out: str | None, resume: RunDir | None, cfg: RunConfig, twin: bool) -> None:
    """What the run would refuse at its folder, found without writing anything (``--dry-run``): ``--out``
    a file or a folder holding a run (:meth:`RunDir.check_new`); what a resume refuses (:func:`check_resumable`), and
    its warning where it would write the model from its last checkpoint (until 2026-12-05 the dry run said nothing)."""
    if out:
        RunDir.check_new(out)
    if resume is not None and (unsaved := check_resumable(resume, cfg, twin)) is not None:
        log.warning("%s", saving_words(unsaved, dry_run=True))


def check_resumable(resume: RunDir, cfg: RunConfig, twin: bool) -> str | None:
    """What a resume of ``resume`` refuses at its folder, found without writing anything: nothing left to train
    (:meth:`RunDir.begin`), unless only its no-faces ``twin`` is left or its model is written from its last checkpoint
    (:meth:`RunDir.unsaved_at_end`: the words of the runner's warning then, else None); a labelled folder whose
    classes changed (``check_classes``). ``downpour train --resume`` asks it before it says it resumes (until
    2026-12-05 a finished run's printed "resuming RUN" and logged "resuming RUN at step N", then was refused)."""
    saved_fit(resume.path)          # (a preprocess.json that does not verify refuses the resume: named now)
    if cfg.data.source == "folder" and cfg.data.labels:   # listed, nothing decoded
        check_classes((list_items(cfg.data).info or {}).get("classes"), resume.path)
    if not twin and (stop := resume.stopped_for_good(cfg.train.steps)) is not None:   # (as the runner)
        from downpour.sandblaster.run import stopped_words
        raise ConfigError(stopped_words(resume, stop["iteration"], stop["message"], resume.samples_batches()))
    if cfg.cluster.algorithm == "sandblaster":     # (as the runner: it writes the model)
        from downpour.sandblaster.run import stopped_at, unsaved_stop
        if (at := unsaved_stop(resume, cfg.train.steps)) is not None:
            return resume.unsaved_words(stopped_at(at))
    start = resume.reached()
    if start is None or start < cfg.train.steps or (twin and resume.finished(cfg.train.steps)):
        return None
    if not resume.ends_unsaved(cfg, start):
        resume.refuse_reached(cfg, start)
    return resume.unsaved_words(last_step(start))
