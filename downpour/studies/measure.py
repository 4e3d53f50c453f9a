"""What a study cell measures: train a real run, then score it with the analysis's own functions.

    summary, figures = train_and_measure(cfg, Measures(invariance=True), seed)

Training is :func:`downpour.runners.train` into a run directory (the same runner, step, data and
checkpoint code as ``downpour train``); the run directory is a temporary folder, deleted once its
figures are measured (a study's cells are cached as numbers in ``cells.jsonl``; the study framework
does not hand a cell its study folder). Every number comes from the analysis and footprint modules:

=====================  ====================================================================================
figure                 from
=====================  ====================================================================================
edge_fraction          :func:`~downpour.analysis.edges.edge_summary` of ``model.first_layer_filters()``
                       (NaN for a model whose first-layer weights have no 2-D shape, e.g. an RNN's rows)
probe_<set>            :func:`~downpour.analysis.probe.probe_table` on the top layer: cross-validated
                       logistic regression accuracy (``probe_<set>_pixels``: the raw pixels, same folds);
                       ``code_dims``: that layer's size
face_auc_lfw           :func:`~downpour.analysis.face_controls.face_controls`: the learned unit's AUC, faces
                       vs held-out lfw non-faces (the unit chosen per split on that pair, as the analysis does)
face_auc_controls      the same unit's mean AUC over the four low-level-matched negative sets
face_passes            1 if the analysis's criterion holds on every matched set (its ``passes_low_level``)
inv_scale_octaves,     :func:`~downpour.analysis.invariance.invariance_curves` and ``invariance_summary`` of the
inv_shift, inv_rot     face unit (:func:`~downpour.analysis.selectivity.face_neuron_table`): the width of the
                       range where its response stays >= half, in octaves of scale, fractions of the image
                       side (translation, x and y averaged) and degrees
params, act_bytes,     :func:`~downpour.models.footprint.footprint_table`'s total row (one sample, float32)
flops_fwd, flops_bwd
opt_bytes              the optimiser state the run's final checkpoint holds (``opt.*`` tensors), in bytes
seconds_per_step       the runner's own training time over its steps
final_loss             the runner's summary
=====================  ====================================================================================
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.utils.flop_counter import FlopCounterMode

from downpour.analysis.edges import edge_summary
from downpour.analysis.face_controls import LEARNED, LFW, face_controls
from downpour.analysis.invariance import invariance_curves, invariance_summary
from downpour.analysis.labelled import load_labelled
from downpour.analysis.probe import probe_table
from downpour.analysis.run import open_run, run_preprocess
from downpour.analysis.selectivity import face_neuron_table
from downpour.analysis.units import check_layer, randomized_copy
from downpour.batch import Batch
from downpour.config import ModelSpec, RunConfig, load_config
from downpour.models.footprint import footprint_table
from downpour.models.registry import build, resolve
from downpour.runners import train
from downpour.train.checkpoint import read_tensors
from downpour.train.rundir import RunDir
from downpour.train.step import train_step


@dataclass(frozen=True)
class Measures:
    """Which analyses a cell runs, and how large (the analysis's own defaults are for one careful run;
    a study repeats them over seeds, so it affords fewer splits and replicates per run)."""

    probes: tuple[str, ...] = ("digits", "lfw")
    probe_samples: int = 1000
    probe_folds: int = 5
    face_splits: int = 5          # selection/test splits of the face test, averaged
    bootstrap: int = 200          # bootstrap replicates of the face test's AUC intervals (not used by the study)
    random_filters: int = 500     # the random-linear-filter baseline's bank
    invariance: bool = False


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
    objective = {k[len("objective."):]: v for k, v in sets if k.startswith("objective.")}
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
    """Train ``cfg`` (resolved) with its runner into a temporary run directory and measure it."""
    with tempfile.TemporaryDirectory(prefix="downpour-cell-") as tmp:
        path = Path(tmp) / "run"
        summary = train(cfg, RunDir.create(path, cfg))
        figures = measure_run(path, measures, seed)
    figures["seconds_per_step"] = summary["seconds"] / max(1, summary["steps"])
    figures["final_loss"] = float(summary["final_loss"])
    figures["steps"] = float(summary["steps"])
    return figures


def measure_run(path: str | Path, measures: Measures, seed: int) -> dict[str, float]:
    """Every figure of the module docstring for the finished run at ``path`` (NaN where one does not apply)."""
    with threadpool_limits(limits=1, user_api="blas"):   # as analyze_run: BLAS and torch threads fight on 2 cores
        return _measure(path, measures, seed)


def _measure(path: str | Path, m: Measures, seed: int) -> dict[str, float]:
    run, model = open_run(path)
    model.eval()
    cfg = run.config
    shape = tuple(run.read_json("model.json")["input_shape"])
    prepare = run_preprocess(run)
    layer = check_layer(model, None)
    out: dict[str, float] = {}

    filters = model.first_layer_filters()
    edges = edge_summary(filters, seed) if filters is not None else {}
    out["edge_fraction"] = _num(edges.get("edge_fraction"))

    for name in m.probes:
        data = load_labelled(name, shape, prepare=prepare)
        table = probe_table(model, data, layers=[layer], folds=m.probe_folds, seed=seed, max_samples=m.probe_samples)
        by = {row["features"]: row for row in table["rows"]}
        out[f"probe_{name}"], out[f"probe_{name}_pixels"] = by[layer]["mean"], by["raw pixels"]["mean"]
        out["code_dims"] = float(by[layer]["dims"])

    twin, _ = randomized_copy(model, seed + 1)      # not seed: that could be the run's own initial weights
    test = face_controls(model, twin, layer=layer, input_shape=shape, prepare=prepare,
                         seeds=[seed + k for k in range(m.face_splits)], n_random_filters=m.random_filters,
                         seed=seed, replicates=m.bootstrap)
    learned = {r["negatives"]: r["auc"] for r in test["rows"] if r["method"] == LEARNED}
    out["face_auc_lfw"] = float(learned[LFW])
    out["face_auc_controls"] = float(np.mean([v for k, v in learned.items() if k != LFW]))
    out["face_passes"] = float(bool(test["verdict"]["passes_low_level"]))

    if m.invariance:
        out.update(_invariance(model, layer, shape, prepare, seed, twin, m.random_filters))

    total = footprint_table(cfg.model.name, shape, **cfg.model.options)[-1]
    for key in ("params", "act_bytes", "flops_fwd", "flops_bwd"):
        out[key] = float(total[key])
    state = read_tensors(run.checkpoints / "local.safetensors")
    out["opt_bytes"] = float(sum(t.numel() * t.element_size() for k, t in state.items() if k.startswith("opt.")))
    return out


def _invariance(model, layer: str, shape: tuple[int, ...], prepare, seed: int, twin, random_filters: int) -> dict[str, float]:
    """Invariance ranges of the face unit (picked on one split of lfw, as ``analyze_run`` picks it)."""
    lfw = load_labelled("lfw", shape, prepare=prepare)
    table = face_neuron_table(model, lfw, layer=layer, seed=seed, n_random_filters=random_filters, random_model=twin)
    best = table["rows"][0]
    faces = lfw.x[torch.from_numpy(lfw.y == 1)]
    curves = invariance_curves(model, faces, best["unit"], layer=layer, sign=best["sign"],
                               baseline=float(np.mean(table["responses"]["negative"])))
    return range_widths(invariance_summary(curves)["ranges"], side=shape[-1])


def range_widths(ranges: dict[str, list[float] | None], side: int) -> dict[str, float]:
    """``invariance_summary``'s ranges as widths: scale in octaves (log2 hi/lo), translation as a fraction
    of the image side (x and y averaged), rotation in degrees; NaN where the unit is below the floor
    even untransformed."""
    def width(key: str) -> float:
        r = ranges.get(key)
        return float("nan") if r is None else float(r[1] - r[0])

    scale = ranges.get("scale")
    return {"inv_scale_octaves": float("nan") if scale is None else math.log2(scale[1] / scale[0]),
            "inv_shift": (width("translation_x") + width("translation_y")) / 2 / side,
            "inv_rotation": width("rotation")}


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)
