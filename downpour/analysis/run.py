"""``downpour analyze RUN``: every analysis of a finished run, from its directory alone.

    result = analyze_run("runs/main", splits=3)     # writes analysis.json and figures/*.png

Reads config.toml, model.safetensors/json, metrics.jsonl and (cluster runs) staleness.json; needs
no live runner. Options default to the run's ``[analysis]`` section; keyword arguments override it.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from downpour._names import pasted
from downpour.analysis import figures
from downpour.analysis.blas import one_blas_thread
from downpour.analysis.concept_controls import concept_part, concept_subject
from downpour.analysis.controls import tied_set
from downpour.analysis.face_controls import LEARNED, face_controls
from downpour.analysis.heldout import classifier_part
from downpour.analysis.face_verdict import said_faceless
from downpour.analysis.filter_stats import filter_stats, start_part
from downpour.analysis.invariance import disc_auc, invariance_curves, invariance_summary, selectivity_summary, sweep
from downpour.analysis.invariance_widths import tied_summary
from downpour.analysis.invariance_ci import range_intervals, selectivity_intervals, tied_intervals
from downpour.analysis.partial import Kept, inputs_key, resolved_options
from downpour.analysis.poses import load_poses
from downpour.analysis.passes import Passes
from downpour.analysis.labelled import BUILT_IN, LabelledSet, load_labelled, load_labels, prepare_images
from downpour.analysis.probe import default_probe_layers, probe_subset, probe_table
from downpour.analysis.selectivity import over_splits, unchosen
from downpour.analysis.report_notes import pictured_names
from downpour.analysis.report_training import figures_folder, training_figures
from downpour.analysis.stimulus import Stimulus, in_pixels, optimal_stimulus, stimulus_rank, top_images
from downpour.analysis.training import frozen_stages, training_summary, where_training_is, with_its_training
from downpour.analysis.options import (MIN_SIDE, analysis_options, is_image_input, no_faces_of, no_faces_path, open_run,
                                      run_preprocess)
from downpour.analysis.units import check_layer, describe_unit, other_layers, unit_responses
from downpour.config import AnalysisConfig, ConfigError, RunConfig
from downpour.data.images import unsaid
from downpour.data.preprocess import Preprocess
from downpour.errors import DataError, DeadLayer
from downpour.layers.gabor import FROZEN_KINDS
from downpour.models.base import FeatureModel
from downpour.train.divergence import recorded
from downpour.train.environment import warn_if_other
from downpour.train.folders import check_writable
from downpour.train.rundir import RunDir


def random_twin(run: RunDir, seed: int) -> FeatureModel:
    """The run's architecture, freshly initialised from the registry with ``seed`` (untrained)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return run.new_model().eval()


def _controls(model: FeatureModel, twin: FeatureModel, opts: AnalysisConfig, layer: str, shape: tuple[int, ...],
              prepare: Preprocess, seeds: list[int], seed: int, fold: tuple[int, int] | None, data: LabelledSet,
              no_faces: tuple[FeatureModel, Preprocess] | None = None) -> dict[str, Any]:
    """The honest face test (held-out lfw faces against lfw non-faces and low-level-matched controls).

    It is about faces, so it runs when the analysed concept is lfw's faces; a folder's concept gets the
    same test against controls of its own images (:mod:`~downpour.analysis.concept_controls`); for
    digits, lfw's non-faces or ``analysis.concept_controls = []`` ``controls`` is empty
    and ``controls_verdict`` says why.
    """
    if opts.runs_concept_controls():
        return concept_part(model, twin, opts, data, layer, shape, prepare, seeds, seed)
    if not opts.runs_face_test():
        reason = (f"analysis.concept_controls = [] asks for no controls of {data.classes[opts.positive]!r}"
                  if opts.dataset not in BUILT_IN else   # (a folder's: not sent to the key just emptied)
                  f"the face test needs analysis.dataset = lfw and positive = 1 (got {opts.dataset!r}, {opts.positive}); "
                  "a folder's concept gets its controls from analysis.concept_controls")
        return {"controls": [], "controls_verdict": {"sentences": [f"Not run: {reason}."], "per_negatives": [],
                                                     "passes_low_level": None}}
    # Where in the network the face information is: the same test for every other feature layer
    # (fewer replicates: a map, not the verdict). cat-demo's top layer, after L2 pooling and LCN,
    # loses what its stage-2 codes carry (docs/analysis.md).
    others = tuple(name for name in model.feature_layers() if name != layer)
    try:
        test = face_controls(model, twin, layer=layer, input_shape=shape, prepare=prepare, seeds=seeds,
                             test_fraction=opts.test_fraction, n_random_filters=opts.random_filters, seed=seed,
                             replicates=opts.bootstrap, other_layers=others, other_replicates=min(opts.bootstrap, 500),
                             select=opts.face_select, control_draws=opts.control_draws, fold=fold,
                             choice=opts.face_choice, no_faces=no_faces)
    except ConfigError:
        raise
    except ValueError as err:        # no unit of the layer can be chosen (a dead layer): the user's to change
        raise DeadLayer(f"{err} ({other_layers(model, layer)})") from None
    return {"controls": test["rows"], "controls_ties": test["ties"], "controls_verdict": test["verdict"],
            "controls_by_layer": test["by_layer"],
            "controls_setup": {k: test[k] for k in ("negatives", "faces", "representation", "bootstrap", "select", "selection", "choice",
                                                       "test_fraction")}}


def _trained_on(cfg: RunConfig, model: FeatureModel, labelled: str) -> dict[str, str]:
    """``{"trained_on": ...}`` when the network trained on the labelled set's own images: digits (loaded
    whole) on a run of ``data.source = "digits"``; with their labels (a supervised model), a probe or a
    best unit there is not a held-out measure. lfw's images never are (it is loaded as the part the run held
    out), but a supervised network of ``data.source = "faces"`` trained on its labels (``"labels"``): its face
    unit is the target it was trained to answer, not one found without labels."""
    if labelled == "lfw" and cfg.data.source == "faces" and model.supervised:
        return {"trained_on": "labels"}
    if labelled != "digits" or cfg.data.source != "digits":
        return {}
    return {"trained_on": "images and labels" if model.supervised else "images"}


def analyze_run(run_path: str | Path, **options: Any) -> dict[str, Any]:
    """Analyse a finished run; writes ``analysis.json`` and ``figures/*.png`` into it and returns the dict.

    options: any :class:`~downpour.config.AnalysisConfig` field (``layer``, ``dataset``, ``splits``,
    ``probes``, ...), overriding the run's ``[analysis]`` section. Raises :class:`NotARunError` for a
    directory that is not a finished run.
    """
    # scikit-learn's small BLAS calls and torch's OpenMP pool fight over the cores (each pool's
    # threads spin while the other works): on 2 cores one BLAS thread made the whole analysis of
    # the main job 10x faster (6 s instead of 70 s), and torch keeps its own threads.
    # torch's own threads as the run trained with (train.threads): the optimal stimulus's sums then come out
    # the same whether `downpour train --report` analyses in its process or `downpour analyze` does later
    threads, before = RunDir.open(run_path).config.train.threads, torch.get_num_threads()
    warn_if_other(run_path, "the analysis runs")
    try:
        if threads:
            torch.set_num_threads(threads)
        with one_blas_thread():     # scipy's own OpenBLAS too (analysis/blas.py)
            return _analyze(run_path, options)
    finally:
        torch.set_num_threads(before)


STAGING = RunDir.STAGING   # an analysis draws here; its figures join figures/ only with its analysis.json


def _publish(run: RunDir, staging: Path, result: dict[str, Any], kept: Kept) -> None:
    """The new figures over the old ones, then analysis.json: an analysis that fails or is stopped before
    this leaves the run's figures and analysis.json as they were (they agree with each other). The old
    report.html goes last (``downpour analyze`` writes the new one): a failed move leaves it, whole."""
    for path in staging.iterdir():
        os.replace(path, run.figures / path.name)
    staging.rmdir()
    run.write_json("analysis.json", result)
    kept.discard()
    (run.path / "report.html").unlink(missing_ok=True)


def _analyze(run_path: str | Path, options: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    run, model = open_run(run_path)
    cfg = run.config
    shape = tuple(run.read_json("model.json")["input_shape"])
    # before the analysis settings: a teacher-student run told to set analysis.layer (a typo in --set) has no analysis
    # to set it for, so this is what it is told
    if not is_image_input(shape):
        raise DataError(f"{str(run.path / 'model.json')!r}: input_shape {list(shape)} (data.source = {cfg.data.source!r}) is "
                        f"not an image of at least {MIN_SIDE}x{MIN_SIDE}; the analysis shows images (lfw, digits) to the "
                        f"network, so it has nothing to measure here. {where_training_is(run.path, run.metrics())}. `downpour report "
                        f"{pasted(run.path)}` writes its report: the training alone")
    opts = analysis_options(cfg, options)
    layer = check_layer(model, opts.layer, "analysis.layer")
    probe_layers = ([check_layer(model, name, "analysis.probe_layers") for name in opts.probe_layers]   # named now,
                    or default_probe_layers(model, layer))                                          # not after the face test
    seed = cfg.seed
    prepare = run_preprocess(run)
    fold = cfg.data.lfw_fold()              # the lfw images this run held out (data.lfw_heldout)
    draft = cfg.data.jpeg_draft             # a folder's JPEGs decoded as the run decoded its own
    data = load_labelled(opts.dataset, shape, prepare=prepare, lfw_fold=fold, jpeg_draft=draft)
    poses = load_poses(opts.poses, shape, prepare, draft) if opts.poses else None     # named now, not after the face test
    # a probe_samples too few for a probe set, and a set that cannot be read, refused now: a DataError after the face
    # test and the invariance sweeps (part 4 of _measure) cost a user the whole analysis before it. From its labels
    # alone: the set's images are loaded when its probe runs (held from here, the main preset's digits were 15.2 MB)
    for name in opts.probes:
        labels = data.y if name == opts.dataset else load_labels(name, shape, lfw_fold=fold, jpeg_draft=draft)
        probe_subset(name, labels, opts.probe_samples, seed)
    twin = random_twin(run, seed + 1)      # not seed: that would be the run's own initial weights
    no_faces = no_faces_of(run, opts, layer) if opts.runs_face_test() else None   # (only the face test scores it)
    if opts.runs_concept_controls():        # a grid block_shuffled cannot cut, refused before the measurements
        concept_subject(data, opts.positive, tuple(opts.concept_controls))
    pictures = figures_folder(run, "the analysis writes")   # a file there found now, not after the measurements
    for folder in (run.path, pictures):     # found before it measures (was: a traceback after)
        check_writable(folder, "the analysis writes analysis.json, figures/ and report.html there; analyse a copy")
    fig_dir = run.path / STAGING
    if fig_dir.is_file() or fig_dir.is_symlink():
        fig_dir.unlink()
    shutil.rmtree(fig_dir, ignore_errors=True)      # left by an analysis that was killed
    fig_dir.mkdir()
    kept = Kept.open(run, inputs_key(run, resolved_options(opts, layer, probe_layers),
                                     no_faces_path(run, opts) if no_faces else None))
    try:
        result = _measure(run, model, opts, (layer, probe_layers), shape, prepare, fold, data, poses, twin, no_faces,
                          fig_dir, kept)
        # a supervised digits or faces run's own classifier, on the digits loaded above where the analysis uses them
        # (lfw_fold and jpeg_draft do not touch the digits: the same prepared set); lfw's 200 loaded there
        result.update(classifier_part(cfg, model, shape, prepare, data if opts.dataset == "digits" else None))
        result["seconds"] = round(time.time() - started, 2)
        _publish(run, fig_dir, result, kept)     # (a move that fails leaves no figures.partial/ either)
    except BaseException as err:
        shutil.rmtree(fig_dir, ignore_errors=True)
        raise with_its_training(err, run.path, run.metrics)
    return result


def _measure(run: RunDir, model: FeatureModel, opts: AnalysisConfig, layers: tuple[str, list[str]],
             shape: tuple[int, ...], prepare: Preprocess, fold: tuple[int, int] | None, data: LabelledSet,
             poses: dict[float, torch.Tensor] | None, twin: FeatureModel,
             no_faces: tuple[FeatureModel, Preprocess] | None, fig_dir: Path, kept: Kept) -> dict[str, Any]:
    """Every measurement and figure of :func:`analyze_run` (figures into ``fig_dir``); the result dict. Each
    measurement is a part of ``kept``: one an analysis stopped before had finished is read back, not measured.
    ``layers``: the analysed layer and the probed ones, resolved (as ``kept``'s key reads them)."""
    seed, (layer, probe_layers) = run.config.seed, layers
    paths: dict[str, str] = {}

    # 1. the best single neuron, against every baseline, on the same splits
    neuron = kept.part("splits", lambda: over_splits(
        model, data, [seed + k for k in range(opts.splits)], layer=layer, positive=opts.positive,
        test_fraction=opts.test_fraction, n_random_filters=opts.random_filters, random_model=twin))
    said = ("face test" if opts.runs_face_test() else f"controls for {data.classes[opts.positive]}" if opts.runs_controls()
            else f"controls (none: analysis.dataset = {opts.dataset!r})")     # (not "face test" of every set)
    controls = kept.part("face test", lambda: said_faceless(_controls(model, twin, opts, layer, shape, prepare, neuron["seeds"],
                                                                  seed, fold, data, no_faces), opts, run.config.data), said=said)
    table = neuron["first"]
    pictured = _pictured(table, controls["controls"] if opts.runs_face_test() else [], controls.get("controls_ties"))   # (a concept's: the table's unit)
    unit, sign = pictured["unit"], pictured["sign"]
    every = unit_responses(model, data.x, layer)                     # (N, U)
    responses = every[:, unit]
    is_positive = data.y == opts.positive
    labels = (data.classes[opts.positive], "other") if opts.positive < len(data.classes) else ("positive", "other")
    paths["responses"] = figures.response_histogram(responses[is_positive].tolist(), responses[~is_positive].tolist(),
                                                    pictured["threshold"], fig_dir / "face_neuron_responses.png",
                                                    labels).name

    # 2. its optimal stimulus, on the sphere of the data's typical norm, and its top images
    norm = float(data.x.reshape(len(data), -1).norm(dim=1).median())
    stim = kept.part("optimal stimulus", lambda: optimal_stimulus(
        model, unit, layer=layer, norm=norm, sign=sign, steps=opts.stimulus_steps, restarts=opts.stimulus_restarts,
        seed=seed, input_shape=shape), encode=lambda s: {**vars(s), "image": s.image.tolist()},
        decode=lambda d: Stimulus(**{**d, "image": torch.tensor(d["image"], dtype=torch.float32)}))
    # drawn from the images the unit was not chosen on: a unit chosen on them ranks its own selection images first
    pool, drawn_from = unchosen(is_positive, opts.test_fraction, neuron["seeds"][0],
                                opts.face_select if pictured["chosen_by"].startswith("the face test") else None)
    top = pool[top_images(responses[pool], opts.top_k, sign)]
    positive_in_top = int((data.y[top] == opts.positive).sum())
    paths["stimulus"] = figures.stimulus_and_top_images(
        in_pixels(prepare, stim.image).numpy(), data.raw[top].numpy(), fig_dir / "optimal_stimulus.png",
        (f"unit {unit} of {layer}: optimal stimulus and top {len(top)} of {len(pool)} images " if sign > 0 else
         f"unit {unit} of {layer} (the concept lowers it): most suppressing stimulus and the {len(top)} of {len(pool)} "
         "images it answers least ") + f"({positive_in_top} are {labels[0]})", [float(responses[i]) for i in top],
        pictured_names(sign)[0], (data.y[top] == opts.positive).tolist(), labels[0]).name

    # 3. invariance on the concept's images the unit was not chosen on (as its top images), warped in
    # pixels, then prepared as the run's training data was
    unseen = np.isin(np.arange(len(is_positive)), pool)
    concept = data.pixels[torch.from_numpy(is_positive & unseen)]
    baseline = float(responses[~is_positive & unseen].mean())     # the unit's level on everything else
    others = data.pixels[torch.from_numpy(~is_positive & unseen)]     # their AUC against these, warped too
    # ... and of every unit tied with it at the top of the choice (it first), each against its own level on everything
    # else: the same warps of the same images, so the tied sweep reads the first one's forward passes back
    tied = pictured["tied_units"]
    passes, see = Passes([unit, *tied]), lambda t: prepare_images(t, shape, prepare)

    def invariance() -> dict[str, Any]:
        inv = invariance_curves(model, concept, unit, layer=layer, sign=sign, baseline=baseline, poses=poses,
                                prepare=see, negatives=others, fill=opts.invariance_fill, passes=passes)
        inv["range_ci"] = range_intervals(inv, passes, seed=seed)     # its ranges' intervals
        inv["selectivity_ci"] = selectivity_intervals(inv, passes, seed=seed)     # its AUC ranges'
        baselines = every[~is_positive & unseen][:, tied].mean(axis=0).tolist()
        swept = sweep(model, concept, tied, pictured["tied_signs"], baselines, layer=layer, prepare=see,
                      negatives=others, fill=opts.invariance_fill, passes=passes)
        inv["tied"] = tied_summary(swept)
        if len(tied) > 1:       # the mean widths' intervals over the images
            inv["tied"]["mean_ci"] = tied_intervals(swept, passes, seed=seed)
        return inv
    inv = kept.part("invariance sweeps", invariance)
    against = ("faces", "non-faces") if opts.runs_face_test() else (labels[0], "the other classes")
    # the levels the report's ranges are read at, in the result the figure is drawn from, so the figure draws the
    # dash-dot lines the report's caption names
    levels = {"summary": invariance_summary(inv), "selectivity": selectivity_summary(inv)}
    paths["invariance"] = figures.invariance_plot({**inv, **levels}, fig_dir / "invariance.png", against).name

    # 4. linear probes
    def probe(name: str) -> dict[str, Any]:
        if name == opts.dataset:
            probe_data = data
        else:
            with unsaid():          # its skipped files said once: by the check of its labels at the start (_analyze)
                probe_data = load_labelled(name, shape, prepare=prepare, lfw_fold=fold,
                                           jpeg_draft=run.config.data.jpeg_draft)
        # a folder's unreadable images, counted as the labelled set's are (only said in the log, they were lost)
        unread = {k: probe_data.info[k] for k in ("n_skipped", "skipped") if probe_data.info.get("n_skipped")}
        return {**probe_table(model, probe_data, layers=probe_layers, folds=opts.probe_folds, seed=seed,
                              max_samples=opts.probe_samples), **_trained_on(run.config, model, name), **unread}
    probes = [kept.part(f"probe on {name}", lambda name=name: probe(name)) for name in opts.probes]

    # 5. the training pictures
    filters = model.first_layer_filters()
    filter_summary, edgy = filter_stats(model, None if filters is None else filters.numpy(), seed)
    if filters is not None and filter_summary["first_layer"] not in FROZEN_KINDS:   # (a given one: not moved)
        # the weights training started from (random_twin with the run's own seed builds them, checked against the
        # fingerprint training recorded of its start) and another draw's
        start = random_twin(run, seed).first_layer_filters()
        filter_summary.update(start_part(run.path, filters, start, twin.first_layer_filters(), seed))
    if filters is not None:
        colour = figures.colour_filters(tuple(filters.shape), getattr(model, "input_shape", None))
        # framed: the stats' own per-filter decision, scored once (none framed where it measured none: under 3x3)
        paths["filters"] = figures.filter_grid(filters.numpy(), fig_dir / "filters.png", colour=colour, edgy=edgy).name
    metrics = run.metrics()
    drawn, staleness = training_figures(run, metrics, fig_dir)
    paths.update(drawn)

    meta = run.read_json("model.json")
    range_ci = inv.pop("range_ci", None)      # stored beside the ranges, in the summary
    selectivity_ci = inv.pop("selectivity_ci", None)       # ... and the AUC ranges' beside them
    result = {
        "run": str(run.path), "model": meta["model"], "trained_steps": meta.get("step"), "layer": layer,
        "options": dataclasses.asdict(opts), "labelled_set": {"name": data.name, "counts": data.counts(), **data.info},
        "face_neuron": {**table, "over_splits": neuron["summary"], "split_seeds": neuron["seeds"],
                        "unit_location": describe_unit(model, data.x, unit, layer), "pictured": pictured, **controls,
                        # the pictured unit's (the histogram's), not the first split's best unit the table brought
                        "responses": {"unit": unit, "positive": responses[is_positive].tolist(),
                                      "negative": responses[~is_positive].tolist()},
                        **_trained_on(run.config, model, opts.dataset)},
        "optimal_stimulus": {"unit": unit, "sign": sign, "norm": stim.norm, "activation": stim.activation,
                             "restarts": stim.restarts, "agreement": stim.agreement, "symmetric": stim.symmetric,
                             "silent_starts": stim.silent_starts,
                             "trace": stim.trace,
                             "receptive_field_pixels": stim.field_pixels,
                             "image": stim.image.tolist(),
                             # its response among those of the images the top ones are drawn from
                             "among_pool": stimulus_rank(stim.activation, responses[pool], sign)},
        "top_images": {"indices": top.tolist(), "responses": [float(responses[i]) for i in top],
                       "labels": data.y[top].tolist(), "positive_in_top": positive_in_top, "drawn_from": drawn_from,
                       "pool": int(len(pool)), "positive_in_pool": int(is_positive[pool].sum())},
        "invariance": {**inv, "summary": {**levels["summary"], "range_ci": range_ci},
                       "selectivity": {**levels["selectivity"], "range_ci": selectivity_ci},
                       "rotation_disc_auc": disc_auc(inv),
                       "selectivity_faces_only": selectivity_summary(inv, "auc_faces_only")},
        "probes": probes,
        "training": training_summary(metrics, frozen_stages(model), *recorded(run.path)),
        "filters": filter_summary,
        "staleness": {k: {str(s): c for s, c in v.items()} for k, v in staleness.items()},
        "figures": {k: f"figures/{v}" for k, v in paths.items()},
    }
    return result


def _pictured(table: dict[str, Any], rows: list[dict[str, Any]], ties: dict[str, Any] | None = None) -> dict[str, Any]:
    """The unit the figures show (response histogram, optimal stimulus, top images, invariance) and
    ``unit_location`` describes: the face test's learned unit when the test ran, since its verdict is
    about that unit and it was chosen on other images than it is tested on; otherwise (another
    labelled set) the best single neuron of the first split. ``tied``, ``tied_units``, ``tied_signs``: the units
    tied with it at the top of its choice (:func:`~downpour.analysis.choice.top_tie`), it first (the face test's
    from ``ties``, its ``controls_ties``)."""
    learned = next((r for r in rows if r["method"] == LEARNED), None)
    if learned is not None:
        row, chosen_by = learned, "the face test (its learned unit)"
    else:
        row, chosen_by = table["rows"][0], "the best single neuron of the first split"
    units, signs = tied_set(ties, row)
    return {"unit": row["unit"], "sign": row["sign"], "threshold": row["threshold"], "chosen_by": chosen_by,
            "tied": row["tied"], "tied_units": units, "tied_signs": signs}
