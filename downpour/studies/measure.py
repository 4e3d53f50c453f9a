"""What a study cell measures: train a real run, then score it with the analysis's own functions.

    summary, figures = train_and_measure(cfg, Measures(invariance=True), seed)

Training is :func:`~downpour.studies.trained.trained_run`: :func:`downpour.runners.train` into a
temporary run directory (the same runner, step, data and checkpoint code as ``downpour train``),
deleted once its figures are measured (a study caches its cells as numbers in ``cells.jsonl``; the
framework hands a cell no folder). Every number comes from the analysis and footprint modules, most
through :mod:`downpour.studies.trained`'s study-sized calls of them:

=====================  ====================================================================================
figure                 from
=====================  ====================================================================================
edge_fraction          :func:`~downpour.analysis.edges.edge_summary` of ``model.first_layer_filters()``
                       (NaN for a model whose first-layer weights have no 2-D shape, e.g. an RNN's rows)
probe_<set>            :func:`~downpour.analysis.probe.probe_table` on the analysis layer (``model.analysis_layer()``): cross-validated
                       logistic regression accuracy (``probe_<set>_pixels``: the network's prepared input pixels, same folds);
                       ``code_dims``: that layer's size
face_auc_lfw           :func:`~downpour.analysis.face_controls.face_controls`: the learned unit's AUC, faces
                       vs held-out lfw non-faces (the unit chosen on lfw's training part, as the analysis does)
face_auc_controls      the same unit's mean AUC over the four low-level-matched negative sets
face_auc_*_no_faces,   the same two AUCs of the cell's no-faces twin (its config again with
face_owed_*            ``data.train_faces = 0``, :func:`~downpour.studies.trained.no_faces_twin`), its unit
                       chosen the same way and scored on the same images, and the learned unit's minus them
                       (what the faces gave); NaN where the data hold no lfw face
inv_scale_octaves,     :func:`~downpour.analysis.invariance.sweep` and ``invariance_summary`` of the face
inv_shift,             test's learned unit, the one ``face_auc_*`` score (chosen on lfw's training part): the width
inv_rotation,          of the range where its response stays >= half, in octaves of scale, fractions of the image
inv_tied               side (translation, x and y averaged) and degrees, averaged over the ``inv_tied`` units
                       tied with it at the top of the choice (not the chosen unit's alone),
                       on lfw's 60 held-out images, which the choice never saw: its faces warped, its non-faces
                       the baseline, as ``downpour analyze`` measures it (the face test's unit, not the best-neuron
                       table's, chosen on 30 of those images)
inv_ranged             how many of the ``inv_tied`` units have a range, the ones the widths average: a tied unit
                       no stronger on the faces than on the non-faces has none
inv_scale_up_octaves   the scale range's upper end alone, in octaves above 1x (``scale_up``), with its
                       own ``_censored`` share: the two-sided width's flag cannot say which end ran out
inv_*_censored         the share of those units whose range ran to an end of the sweep: above 0,
                       the width is a lower bound, and a paired difference leaves out the seeds where both sides
                       are (:func:`~downpour.studies.compare.compare_rows`)
inv_*_auc,             the same widths of the selectivity ranges (``selectivity_summary``): where
inv_auc_ranged         the unit's AUC, faces vs non-faces both warped, stays >= halfway from 0.5 to its untransformed
                       AUC, over the ``inv_auc_ranged`` tied units above chance untransformed (a unit that answers
                       any blob keeps its response to an 8-pixel face, not its AUC), each with its ``_censored``
inv_rotation_disc_auc  the chosen unit's AUC, faces vs non-faces, on the unturned images in the inscribed disc (the
                       rotation curve's own 0-degree pass, ``disc_auc``; NaN under the border fill): at or below
                       0.5 the unit has no AUC rotation range, and a cell none of whose tied
                       units is above it has no ``inv_rotation_auc``, so it leaves the paired rotation comparisons
params, act_bytes,     :func:`~downpour.models.footprint.footprint_table`'s total row (one sample, float32):
flops_fwd, flops_bwd   the design's figures (:func:`design_figures`), recorded for a run that diverged too
opt_bytes              the optimiser state the run's final checkpoint holds (``opt.*`` tensors), in bytes
seconds_per_step       the runner's own training time over its steps
final_loss             the runner's summary
=====================  ====================================================================================
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from downpour.analysis.invariance import disc_auc, invariance_summary, selectivity_summary, sweep, whole_turn
from downpour.analysis.invariance_widths import range_width, responsive
from downpour.analysis.labelled import load_labelled, prepare_images
from downpour.analysis.probe import INPUT
from downpour.analysis.options import run_preprocess
from downpour.analysis.units import check_layer, unit_responses
from downpour.batch import Batch
from downpour.config import ModelSpec, RunConfig, load_config, merge_term
from downpour.data.build import sample_shape
from downpour.errors import Diverged
from downpour.models.base import FeatureModel
from downpour.models.footprint import footprint_table
from downpour.models.registry import build, resolve
from downpour.studies.diverged import counted_out
from downpour.studies.stats import CENSORED
from downpour.studies.trained import (edge_fraction, face_aucs, face_draws, face_pair, no_faces_twin, owed_figures,
                                      probe_accuracies, trained_run)
from downpour.train.checkpoint import read_tensors
from downpour.train.rundir import RunDir
from downpour.train.step import train_step


@dataclass(frozen=True)
class Measures:
    """Which analyses a cell runs, and how large (the analysis's own defaults are for one careful run;
    a study repeats them over seeds, so it affords fewer random filters and replicates per run)."""

    probes: tuple[str, ...] = ("digits", "lfw")
    probe_samples: int = 1000
    probe_folds: int = 5
    control_draws: int = face_draws(quick=False)   # images per face in each random control of the face test
    bootstrap: int = 200          # bootstrap replicates of the face test's AUC intervals (not used by the study)
    random_filters: int = 500     # the random-linear-filter baseline's bank
    invariance: bool = False
    no_faces: bool = True         # also train each cell's no-faces twin and score it beside the learned unit

    @classmethod
    def sized(cls, quick: bool, invariance: bool = False) -> "Measures":
        """The full setting's measures, or the quick setting's smaller ones (a smoke test's)."""
        if quick:
            return cls(probe_samples=400, probe_folds=3, control_draws=face_draws(quick=True), bootstrap=50,
                       invariance=invariance)
        return cls(invariance=invariance)


def config_with_model(base: str, sets: Sequence[tuple[str, Any]], seed: int) -> RunConfig:
    """``load_config(base, sets)`` resolved, except that a ``model.name`` in ``sets`` replaces the base's
    whole model (its options and its ``[objective]``) instead of merging into them: a preset's
    ``model.tile = 2`` or ``pooled_l2`` weight belong to its own model, not to the one a condition swaps in.
    The other ``model.*`` and ``objective.*`` keys in ``sets`` then set the new model's options and terms."""
    if not any(key == "model.name" for key, _ in sets):
        return resolve(load_config(base, [*sets, ("seed", seed)]))
    rest = [(k, v) for k, v in sets if not k.startswith(("model.", "objective."))]
    cfg = load_config(base, [*rest, ("seed", seed)])
    name = [v for k, v in sets if k == "model.name"][-1]
    options = {k[len("model."):]: v for k, v in sets if k.startswith("model.") and k != "model.name"}
    objective: dict[str, Any] = {}
    for key, value in sets:                       # objective.TERM = w, objective.TERM.KEY = v, as load_config reads them
        if key.startswith("objective."):
            term, *inner = key.split(".")[1:]
            objective[term] = merge_term(objective.get(term), {inner[0]: value} if inner else value)
    return resolve(dataclasses.replace(cfg, model=ModelSpec(name, options), objective=objective))


def with_steps(cfg: RunConfig, steps: int) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=int(steps)))


def flops_per_step(cfg: RunConfig, x: torch.Tensor) -> float:
    """FLOPs of one training step of ``cfg``'s model on batch ``x`` (B, *input_shape), counted by torch's
    FLOP counter (matmuls and convolutions) over forward, cost and backward; for a greedy schedule, the
    mean over the stages (each gets an equal share of the steps)."""
    torch.manual_seed(cfg.seed)
    model, objective = build(cfg, tuple(x.shape[1:]))
    stages: list[int | None] = (list(range(1, model.n_stages + 1)) if cfg.train.schedule == "greedy"
                                and model.n_stages > 1 else [None])
    counts = []
    for stage in stages:
        model.set_stage(stage)
        with FlopCounterMode(display=False) as counter:
            train_step(model, objective, Batch(x))
        counts.append(counter.get_total_flops())
    return float(np.mean(counts))


def train_and_measure(cfg: RunConfig, measures: Measures, seed: int) -> dict[str, float]:
    """Train ``cfg`` (resolved) with its runner into a temporary run directory and measure it (and, with
    ``measures.no_faces``, its no-faces twin's face unit beside it). A run that diverged, every step non-finite or
    its loss run away with finite numbers (``runners.train``'s ``summary["diverged"]``: measured, a run
    such as teacher-student's 2.047 -> 3.3e+31 would count as trained), is ``{"diverged": 1.0}`` with its
    design's figures alone (:func:`design_figures`: they need no training), every trained figure missing (the study
    counts the seed out and says so: :mod:`~downpour.studies.diverged`, as every study's cell); a twin that diverged
    either way leaves only what the faces gave unmeasured (:func:`~downpour.studies.trained.no_faces_twin`)."""
    try:
        with (trained_run(cfg) as (run, model, summary),
              no_faces_twin(cfg) if measures.no_faces else contextlib.nullcontext() as twin):
            figures = measure_run(run, model, measures, seed, twin)
    except Diverged as err:     # (here, not in the framework: the design's figures need the cell's config)
        return counted_out(f"seed {seed}", err, design_figures(cfg, sample_shape(cfg.data)))
    figures["seconds_per_step"] = summary["seconds"] / max(1, summary["steps"])
    figures["final_loss"] = float(summary["final_loss"])
    figures["steps"] = float(summary["steps"])
    return figures


def measure_run(run: RunDir, model: FeatureModel, m: Measures, seed: int,
                twin: tuple[RunDir, FeatureModel] | None = None) -> dict[str, float]:
    """Every figure of the module docstring for a finished run and its model (NaN where one does not apply);
    call it inside :func:`~downpour.studies.trained.trained_run` (one BLAS thread). ``twin``: the run's
    no-faces twin (:func:`~downpour.studies.trained.no_faces_twin`), with ``m.no_faces``."""
    model.eval()
    cfg = run.config
    shape = tuple(model.input_shape)
    layer = check_layer(model, None)
    out: dict[str, float] = {"edge_fraction": edge_fraction(model, seed)}
    probes = probe_accuracies(run, model, m.probes, [layer], samples=m.probe_samples, folds=m.probe_folds, seed=seed)
    for name in m.probes:
        out[f"probe_{name}"], out[f"probe_{name}_pixels"] = probes[f"{name}/{layer}"], probes[f"{name}/{INPUT}"]
    out["code_dims"] = float(model.features(torch.zeros((1, *shape)), layer).numel())
    faces = face_aucs(run, model, layer, control_draws=m.control_draws, random_filters=m.random_filters,
                      replicates=m.bootstrap, seed=seed, no_faces=twin)
    out["face_auc_lfw"], out["face_auc_controls"] = face_pair(faces)
    if m.no_faces:
        out.update(owed_figures(faces))
    if m.invariance:      # of the face unit: none to measure where the face test could choose none
        out.update(_invariance(model, layer, shape, run_preprocess(run), faces["unit"], cfg.analysis.invariance_fill)
                   if faces
                   else no_invariance(shape))
    out.update(design_figures(cfg, shape))
    state = read_tensors(run.checkpoints / "local.safetensors")
    out["opt_bytes"] = float(sum(t.numel() * t.element_size() for k, t in state.items() if k.startswith("opt.")))
    return out


DESIGN_FIGURES = ("params", "act_bytes", "flops_fwd", "flops_bwd")   # a run's figures that need no training


def design_figures(cfg: RunConfig, shape: tuple[int, ...]) -> dict[str, float]:
    """params, act_bytes, flops_fwd, flops_bwd: :func:`~downpour.models.footprint.footprint_table`'s total row
    for ``cfg``'s model on samples of ``shape`` (one sample, float32), figures of the design that need no
    training (so a run that diverged has them too)."""
    total = footprint_table(cfg.model.name, shape, **cfg.model.options)[-1]
    return {key: float(total[key]) for key in DESIGN_FIGURES}


def _invariance(model: FeatureModel, layer: str, shape: tuple[int, ...], prepare, unit: dict[str, Any],
                fill: str = "mean") -> dict[str, float]:
    """Invariance ranges of the face test's learned unit (``unit``: :func:`~downpour.studies.trained.face_aucs`'
    ``unit``, chosen on lfw's training part), measured as ``analyze_run`` measures the unit it pictures: on the held-out
    part of lfw the face test scored it on (``unit["fold"]``'s; the choice never saw one of its images), the faces
    warped, each unit's baseline its mean on the non-faces; the mean of :func:`range_widths` over the units tied with it
    at the top of the choice (``inv_tied`` of them) that have a range (``inv_ranged``; of the AUC's,
    ``inv_auc_ranged``), with the share of those at the sweep's end (``_censored``). The tied units, not the chosen
    unit alone: a 30-image split saturates at AUC 1.0, and a change of tie-break moved 2 of the mechanisms study's 48
    cells to another tied unit and a scale range from +0.56 [+0.17, +0.95] (higher) to +0.53 [-0.07, +1.14]
    (inconclusive). The face AUCs' unit, not the best-neuron table's
    (:func:`~downpour.analysis.selectivity.face_neuron_table`), chosen on 15 faces and 15 non-faces of the held-out part
    and measured on every lfw image or on the other 15 faces only (where on the quick study glimpse seed 0's unit kept
    half its response nowhere). ``fill``: the cell's analysis.invariance_fill (the warps' uncovered area is each face's
    mean by default)."""
    lfw = load_labelled("lfw", shape, prepare=prepare, lfw_fold=unit["fold"])   # the face test's held-out images
    tied = unit["tied_units"]                                                     # the chosen unit first
    faces = lfw.pixels[torch.from_numpy(lfw.y == 1)]     # warped in pixels, then prepared (analyze_run's way)
    other = torch.from_numpy(lfw.y == 0)
    baselines = unit_responses(model, lfw.x[other], layer)[:, tied].mean(axis=0)
    results = sweep(model, faces, tied, unit["tied_signs"], baselines.tolist(), layer=layer,
                    prepare=lambda t: prepare_images(t, shape, prepare), negatives=lfw.pixels[other], fill=fill)
    out = _mean_widths([invariance_summary(r) for r in results], shape)
    selective = [selectivity_summary(r) for r in results]
    out.update(_mean_widths(selective, shape, "_auc"))     # inv_scale_octaves_auc, inv_scale_octaves_auc_censored, ...
    # the units the means are over: one no stronger on the faces than on the non-faces has no range
    ranged = sum(responsive(r) for r in results)
    # ... nor one at chance (or without an untransformed point: auc None) an AUC range
    above = sum((s["auc"].get("scale") or 0.5) > 0.5 for s in selective)
    disc = disc_auc(results[0])     # the chosen unit's in the disc: at or below 0.5, no AUC rotation range
    return {**out, "inv_tied": float(len(tied)), "inv_ranged": float(ranged), "inv_auc_ranged": float(above),
            "inv_rotation_disc_auc": math.nan if disc is None else disc}


def _mean_widths(summaries: list[dict[str, Any]], shape: tuple[int, ...], suffix: str = "") -> dict[str, float]:
    """The mean of :func:`range_widths` (``key`` + ``suffix``) and of :func:`censored_widths` (``key`` + ``suffix`` +
    CENSORED) over the summaries (``invariance_summary``'s or ``selectivity_summary``'s, ``suffix`` "_auc") that have a
    range; NaN where none has."""
    per_unit = [range_widths(s["ranges"], shape[-2:]) for s in summaries]
    ended = [censored_widths(s["censored"], s.get("scale_up"), s["ranges"].get("rotation")) for s in summaries]
    out = {}
    for key in per_unit[0]:
        got = [k for k, w in enumerate(per_unit) if math.isfinite(w[key])]
        out[key + suffix] = float(np.mean([per_unit[k][key] for k in got])) if got else math.nan   # NaN: none has a range
        out[key + suffix + CENSORED] = float(np.mean([ended[k][key] for k in got])) if got else math.nan
    return out


def no_invariance(shape: tuple[int, ...]) -> dict[str, float]:
    """:func:`_invariance`'s figures, every one NaN, where the face test chose no unit. ``inv_tied`` too: without it
    a condition none of whose seeds had a face unit would lack the figure the verdict reads."""
    widths = range_widths({}, shape[-2:])
    keys = [*widths, *(key + "_auc" for key in widths)]
    return {**{key: math.nan for key in keys}, **{key + CENSORED: math.nan for key in keys}, "inv_tied": math.nan,
            "inv_ranged": math.nan, "inv_auc_ranged": math.nan, "inv_rotation_disc_auc": math.nan}


def range_widths(ranges: dict[str, list[float] | None], size: tuple[int, ...]) -> dict[str, float]:
    """``invariance_summary``'s ranges as widths: scale in octaves (log2 hi/lo), translation as a fraction
    of the image side it runs along (x of the width, y of the height, ``size`` (H, W), the two averaged),
    rotation in degrees; NaN where the unit is below the floor even untransformed. (Each of its own side, not
    both of the width: on a 16x32 image, ranges of a quarter side each way would read 0.375, not 0.5.)
    ``inv_scale_up_octaves``: the scale range's upper end alone, in octaves above 1x (the width cannot say which end
    ran out, and the shrinking end is reached far more often)."""
    height, width = size[-2:]

    def span(key: str) -> float:
        return range_width(key, ranges.get(key))

    scale = ranges.get("scale")
    return {"inv_scale_octaves": span("scale"), "inv_shift": (span("translation_x") / width + span("translation_y") / height) / 2,
            "inv_rotation": span("rotation"), "inv_scale_up_octaves": math.log2(scale[1]) if scale else math.nan}


def censored_widths(censored: dict[str, bool | None], scale_up: dict[str, Any] | None = None,
                    rotation: list[float] | None = None) -> dict[str, float]:
    """``invariance_summary``'s ``censored`` flags under :func:`range_widths`' keys, 1.0 where the range ran to an end of
    the sweep (translation: either axis's), else 0.0; ``inv_scale_up_octaves``: its ``scale_up`` flag, the upper end's
    alone, so the studies do not read such a width as measured. A ``rotation`` range of the whole turn is
    measured, not ended (:func:`~downpour.analysis.invariance.whole_turn`; flagged, a cell whose tied units held at
    every angle beside others measured short of the sweep's ends would read as a lower bound)."""
    def end(*keys: str) -> float:
        return float(any(censored.get(k) for k in keys))

    turned = 0.0 if whole_turn("rotation", rotation) else end("rotation")
    return {"inv_scale_octaves": end("scale"), "inv_shift": end("translation_x", "translation_y"),
            "inv_rotation": turned, "inv_scale_up_octaves": float(bool(scale_up and scale_up.get("censored")))}
