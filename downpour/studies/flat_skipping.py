"""Q3, flat-skipping: how much work does the essay's variance gate save, and what does it cost?

**Network.** The cat network trained by the local runner (``cat-demo``: two stages, 32x32 crops, 4
banks of 8 filters in stage 1), in two forms, the conditions: ``whitened`` (cat-demo's own input:
each crop normalised, then spectrally whitened) and ``unwhitened`` (normalised only), because
whitening spreads every edge over its neighbourhood, so what was flat in the picture is not flat
where the gate looks. (The untied layer, where the gate saves time on large images, is in
docs/benchmarks.md's ``variance_gate``.) After training, its stage-1 filter is wrapped in :class:`~downpour.layers.gating.VarianceGate` (4x4 output tiles: a tile
runs if any of its receptive fields has variance >= the threshold, else outputs 0 without arithmetic)
and the gated network is measured against the same trained network ungated (``off``), at every
threshold of the sweep; so every threshold is paired with ``off`` on the same seed and the same weights.

**Images with different amounts of flat area** (each prepared with the run's own normalisation and
whitening, as the network sees them): ``lfw`` (held-out faces and non-faces filling the frame),
``padded`` (the same images shrunk to a third of the side in the middle of a flat canvas: about half
of the 8x8 fields are flat before preparation) and ``digits`` (scikit-learn's digits: strokes on a flat background). ``raw_flat`` says
how flat each set is before preparation (the share of 8x8 fields with variance under 1e-4 in [0, 1]
pixel units); the gate sees the prepared images, whose whitening spreads every edge over its
neighbourhood.

**Figures per (threshold, image set)**: the share of stage-1 positions skipped; the layer's FLOPs ratio
(gated arithmetic + the variance test over ungated, from the gate's own count) and the whole network's
(the same saving over the network's forward FLOPs from models/footprint.py); wall-time ratios of the
layer and of the whole forward (best of 5 interleaved calls, one thread; 2 in the quick setting); the linear-probe accuracy of
the top stage on that set's labels (analysis/probe.py) and its change from ``off``; on ``lfw`` also the
face test's AUC on lfw non-faces and on the matched controls (analysis/face_controls.py).
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from downpour.analysis.labelled import LabelledSet, load_labelled, prepare_images, resize_to
from downpour.analysis.probe import probe_table
from downpour.analysis.options import run_preprocess
from downpour.data import lfw_split
from downpour.layers.gating import VarianceGate, local_variance
from downpour.models.base import FeatureModel
from downpour.models.footprint import footprint_table
from downpour.studies import words
from downpour.studies.base import Cells, Condition, Study
from downpour.studies.claims import change
from downpour.studies.designs.flat_skipping import BLOCK, FlatSkippingDesign
from downpour.studies.plots import curves, scatter_intervals
from downpour.studies.holm import LEAD_IN_ASIDE, LEAD_IN_LIST, lead_mark, reading_in_aside
from downpour.studies.stats import diverged_paragraph, mean_ci, note_left_out, paired_ratio, paired_test, ratio_words
from downpour.studies.trained import FACE_TEST, face_aucs, face_draws, face_pair, trained_run

SETS = ("lfw", "padded", "digits")
RAW_FLAT = 1e-4                             # raw [0, 1] pixels: an 8x8 field under this variance is flat
TOP = "stage2"
READ_AS = {"probe": "probe", "face_auc_lfw": "face AUC vs non-faces",   # a paired figure, in the verdict's words
           "face_auc_controls": "face AUC on the controls"}
RESOLUTION = {"probe": 0.02, "face_auc": 0.05, "time": 0.1}     # time: a ratio within x0.9-x1.1 of ungated
TIMES = ("layer_time_ratio", "net_time_ratio")   # paired ratios over seeds (geometric mean, interval on logs)
MEASURED = ("skipped", "flops_ratio", "net_flops_ratio", "layer_time_ratio", "net_time_ratio", "probe")


class _GatedFilter(nn.Module):
    """Stage 1's filter behind the variance gate, called as the stage calls its filter."""

    def __init__(self, layer: nn.Module, threshold: float):
        super().__init__()
        # the question is what skipping itself saves and costs: always the gated path, never the gate's
        # own choice of the dense layer (mode 'auto'), which would measure the decision instead
        self.gate = VarianceGate(layer, threshold, block=BLOCK, mode="gated")

    def forward(self, x: Tensor, weight: Tensor | None = None) -> Tensor:
        return self.gate(x)


def gated(model: FeatureModel, threshold: float) -> tuple[FeatureModel, VarianceGate]:
    """A copy of the cat network whose stage-1 filter runs behind a variance gate at ``threshold``."""
    out = copy.deepcopy(model).eval()
    wrapper = _GatedFilter(out.stages[0].filter, threshold)
    out.stages[0].filter = wrapper
    return out, wrapper.gate


def padded_lfw(shape: tuple[int, ...], prepare: Callable[[Tensor], Tensor]) -> LabelledSet:
    """lfw's held-out images shrunk to a third of the side, centred on a canvas of their own mean grey."""
    held = lfw_split(size=25, grey=True)["heldout"]
    c, h, w = shape
    sh, sw = h // 3, w // 3
    small = resize_to(held.x, (c, sh, sw))
    canvas = small.mean(dim=(2, 3), keepdim=True).expand(-1, c, h, w).clone()
    top, left = (h - sh) // 2, (w - sw) // 2
    canvas[:, :, top:top + sh, left:left + sw] = small
    return LabelledSet("padded", prepare_images(canvas, shape, prepare), held.y.numpy(), ["non-face", "face"],
                       raw=canvas)


def _best_ratio(slow: Callable[[], Any], fast: Callable[[], Any], repeats: int) -> float:
    """min time of ``fast`` / min time of ``slow``, over ``repeats`` interleaved calls each (after one warm-up)."""
    best = [math.inf, math.inf]
    with torch.no_grad():
        slow(), fast()
        for _ in range(repeats):
            for i, fn in enumerate((slow, fast)):
                t = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - t)
    return best[1] / best[0]


class FlatSkippingStudy(FlatSkippingDesign, Study):
    base = "cat-demo"
    measured_by = FACE_TEST
    base_sets = (("train.threads", 1), ("train.tensorboard", False), ("cluster.runner", "local"),
                 ("train.schedule", "greedy"))

    # --- one cell ----------------------------------------------------------------------------------
    def run_cell(self, condition: Condition, seed: int, context: dict[str, Any]) -> dict[str, float]:
        cfg = self.cell_config(condition, seed)
        with trained_run(cfg) as (run, model, _):
            model.eval()
            shape = tuple(model.input_shape)
            prepare = run_preprocess(run)
            sets = {"lfw": load_labelled("lfw", shape, prepare=prepare), "padded": padded_lfw(shape, prepare),
                    "digits": _subset(load_labelled("digits", shape, prepare=prepare), 100 if self.quick else 400, seed)}
            rows = footprint_table(cfg.model.name, shape, **cfg.model.options)
            first = next(r["flops_fwd"] for r in rows if r["layer"] == "stages.0.filter")
            share = first / rows[-1]["flops_fwd"]                  # stage 1's filter: this share of the forward FLOPs
            out: dict[str, float] = {"layer_flops_share": share}
            faces = face_aucs(run, model, TOP, control_draws=face_draws(self.quick), seed=seed)
            out["off/face_auc_lfw"], out["off/face_auc_controls"] = face_pair(faces)
            for name, data in sets.items():
                raw = resize_to(data.raw, shape) if data.name != "padded" else data.raw
                out[f"raw_flat/{name}"] = float((local_variance(raw, model.stages[0].filter.kernel_size) < RAW_FLAT)
                                                .float().mean())
                out[f"off/{name}/probe"] = self._probe(model, data, seed)
            repeats = 2 if self.quick else 5
            for t in self.thresholds():
                net, gate = gated(model, t)
                for name, data in sets.items():
                    x = data.x
                    with torch.no_grad():
                        gate(x)
                    stats = gate.last
                    out[f"{t:g}/{name}/skipped"] = stats.skipped_fraction
                    out[f"{t:g}/{name}/flops_ratio"] = stats.flops_ratio
                    out[f"{t:g}/{name}/net_flops_ratio"] = 1 - share * (1 - stats.flops_ratio)
                    layer = model.stages[0].filter
                    out[f"{t:g}/{name}/layer_time_ratio"] = _best_ratio(lambda: layer(x), lambda: gate(x), repeats)
                    out[f"{t:g}/{name}/net_time_ratio"] = _best_ratio(lambda: model.features(x, TOP),
                                                                      lambda: net.features(x, TOP), repeats)
                    out[f"{t:g}/{name}/probe"] = self._probe(net, data, seed)
                faces = face_aucs(run, net, TOP, control_draws=face_draws(self.quick), seed=seed)
                out[f"{t:g}/face_auc_lfw"], out[f"{t:g}/face_auc_controls"] = face_pair(faces)
        return out

    def _probe(self, model: FeatureModel, data: LabelledSet, seed: int) -> float:
        table = probe_table(model, data, layers=[TOP], folds=3, seed=seed, max_samples=len(data))
        return next(r["mean"] for r in table["rows"] if r["features"] == TOP)

    # --- rows, verdict, figures --------------------------------------------------------------------
    def summarise(self, conditions: list[Condition], cells: Cells, seeds: list[int]) -> list[dict[str, Any]]:
        """One row per (condition, threshold, image set); ``off`` rows hold the ungated network's figures."""
        rows = []
        for c in conditions:
            got = [cells[(c.name, s)] for s in seeds]
            for t in ("off", *self.thresholds()):
                key = t if t == "off" else f"{t:g}"
                for name in SETS:
                    row: dict[str, Any] = {"condition": f"{c.name}/{key}/{name}", "group": c.name,
                                           "params": {**c.params, "threshold": t, "images": name}, "n": len(seeds),
                                           "figures": {}, "extra": {"readings": {},
                                                                    "raw_flat": mean_ci([g[f"raw_flat/{name}"] for g in got])[0]}}
                    figs = ("probe",) if t == "off" else MEASURED
                    for f in figs:
                        values = [g[f"{key}/{name}/{f}"] for g in got]
                        row["figures"][f] = list((paired_ratio if f in TIMES else mean_ci)(values))
                        note_left_out(row, f, values)
                    if name == "lfw":
                        for f in ("face_auc_lfw", "face_auc_controls"):
                            row["figures"][f] = list(mean_ci([g[f"{key}/{f}"] for g in got]))
                            note_left_out(row, f, [g[f"{key}/{f}"] for g in got])
                    if t != "off":
                        pairs = [("probe", f"{name}/probe")] + ([(f, f) for f in ("face_auc_lfw", "face_auc_controls")]
                                                               if name == "lfw" else [])
                        for f, k in pairs:
                            pair = [g[f"off/{k}"] for g in got], [g[f"{key}/{k}"] for g in got]
                            res = RESOLUTION["probe" if f == "probe" else "face_auc"]
                            row["figures"][f"delta_{f}"], row["extra"]["readings"][f] = paired_test(
                                row, f"delta_{f}", *pair, res, against=f"{c.name}/off/{name}")
                            note_left_out(row, f"delta_{f}", *pair)
                    rows.append(row)
        return rows

    def verdict(self, rows: list[dict[str, Any]]) -> str:
        by = {r["condition"]: r for r in rows}
        paras = []
        forms = [c.name for c in self.conditions()]
        flat = {n: by[f"{forms[0]}/off/{n}"]["extra"]["raw_flat"] for n in SETS}
        paras.append("Flat area before preparation (share of 8x8 fields under variance 1e-4): "
                     + ", ".join(f"{n} {100 * v:.0f}%" for n, v in flat.items())
                     + ". The gate tests the images as the network sees them: normalised per image and, in the whitened "
                     "network, whitened.")
        for cond in forms:
            lines = []
            for t in self.thresholds():
                rs = [by[f"{cond}/{t:g}/{n}"] for n in SETS]
                harmful = [f"{r['params']['images']} {READ_AS[k]}{lead_mark(r, f'delta_{k}', LEAD_IN_LIST)}"
                           for r in rs for k, w in r["extra"]["readings"].items() if w == "lower"]
                lines.append(
                    f"threshold {t:g}: skipped " + ", ".join(f"{r['params']['images']} {words.percent_ci(r['figures']['skipped'])}"
                                                           for r in rs)
                    + "; network FLOPs x" + "/".join(f"{r['figures']['net_flops_ratio'][0]:.2f}" for r in rs)
                    + "".join(f", {what} " + ", ".join(f"{r['params']['images']} {_time(r, f)}" for r in rs)
                              for what, f in (("layer time", "layer_time_ratio"), ("network time", "net_time_ratio")))
                    # (in points, as the paragraph below says them: the table holds the fraction, -0.0833 for -8.3)
                    + "; probe Δ " + ", ".join(f"{r['params']['images']} "
                                               f"{words.points(r['figures']['delta_probe'], unit=' points')} "
                                               f"({reading_in_aside(r, 'probe')})" for r in rs)
                    + f"; face AUC on the controls Δ {words.signed(rs[0]['figures']['delta_face_auc_controls'])} "
                      f"({reading_in_aside(rs[0], 'face_auc_controls')})"
                    # (this Δ is tested, and named below when lower: its number is given here)
                    + f", vs non-faces Δ {words.signed(rs[0]['figures']['delta_face_auc_lfw'])} "
                      f"({reading_in_aside(rs[0], 'face_auc_lfw')})"
                    + (f" — lower: {', '.join(harmful)}" if harmful else ""))
            paras.append(f"On the {cond} network (ratios are gated / ungated, listed for {', '.join(SETS)}; every Δ is "
                         f"paired with the same network ungated; a time ratio is the geometric mean over seeds "
                         f"[95% interval], read against x1 within "
                         # (Holm's paragraph counts the probe and face AUC Δs alone: it claimed every comparison)
                         f"±{100 * RESOLUTION['time']:.0f}% at its own 95%, a timing of this machine outside Holm's "
                         "correction in the last paragraph): " + "; ".join(lines) + ".")
            paras.append(f"In short, on the {cond} network: " + "; ".join(self._free(by, cond, n) for n in SETS) + ".")
        return "\n\n".join(p for p in paras if p)

    def claim(self, rows: list[dict[str, Any]]) -> str:
        """"At its largest threshold (0.3) the whitened network's gate skips 49% of stage-1 positions on lfw (22% on
        padded, 82% on digits), for network FLOPs x0.81 and network time x1.37 [0.947, 1.98] (inconclusive) on lfw,
        and lowers lfw's probe accuracy (Δ -20.8 points [-31.4, -10.2], a lead)": what the most skipping saves and
        what it costs the features, on the first network (the verdict's paragraphs give every threshold)."""
        by = {r["condition"]: r for r in rows}
        cond, t = self.conditions()[0].name, max(self.thresholds())
        rs = [by[f"{cond}/{t:g}/{n}"] for n in SETS]
        lfw = rs[0]["figures"]
        skipped = [words.percent(r["figures"]["skipped"][0]) for r in rs]      # ("–" where every seed diverged)
        others = ", ".join(f"{share} on {n}" for share, n in zip(skipped[1:], SETS[1:]))
        return (f"At its largest threshold ({t:g}) the {cond} network's gate skips {skipped[0]} of stage-1 positions "
                f"on {SETS[0]} ({others}), for network FLOPs x{lfw['net_flops_ratio'][0]:.2f} and network time "
                f"{_time(rs[0], 'net_time_ratio')} on {SETS[0]}, and "
                + change(rs[0], "delta_probe", f"{SETS[0]}'s probe accuracy", points=1) + ".")

    def diverged_paragraph(self, rows: list[dict[str, Any]]) -> str:
        """Each network named once (its rows, a threshold and an image set each, share its seeds)."""
        return diverged_paragraph([{**r, "condition": r["group"]} for r in rows
                                   if r["condition"] in (r.get("group"), f"{r.get('group')}/off/{SETS[0]}")])

    def _free(self, by: dict[str, dict[str, Any]], cond: str, images: str) -> str:
        """What the largest threshold judged free on ``images`` skips and saves: its probe change reads "no detectable
        effect" and no figure of it reads "lower" (on lfw its face AUCs). The thresholds are judged in a fixed order,
        the smallest (least skipped) up, and the first not free stops it (a fixed-sequence test): each judgement
        keeps its own 95% without a correction for the several looks, where the largest free one of all would
        pick whichever of the six happened to pass. One that reads free after the stop is named, not
        claimed."""
        def ok(t: float) -> bool:
            readings = by[f"{cond}/{t:g}/{images}"]["extra"]["readings"]
            return readings["probe"] == "no detectable effect" and "lower" not in readings.values()

        ordered = sorted(self.thresholds())
        stop = next((i for i, t in enumerate(ordered) if not ok(t)), len(ordered))
        free, after = ordered[:stop], [t for t in ordered[stop + 1:] if ok(t)]
        unclaimed = (f" (thresholds judged from the smallest up, stopping at the first not free, {ordered[stop]:g}; "
                     f"{', '.join(f'{t:g}' for t in after)} read free after it, not claimed)") if after else ""
        if not free:
            # (a drop the paragraph above reads "lower" is said here too: "no change confirmed" alone read as harmless)
            rows = {t: by[f"{cond}/{t:g}/{images}"] for t in self.thresholds()}
            fell = [f"{t:g} ({words.points(r['figures']['delta_probe'], unit=' points', aside=', {}')}"
                    f"{lead_mark(r, 'delta_probe', LEAD_IN_ASIDE)})"
                    for t, r in rows.items() if r["extra"]["readings"]["probe"] == "lower"]
            return (f"on {images} no threshold's probe change is confirmed within ±{100 * RESOLUTION['probe']:.0f} "
                    f"points" + (f", and the probe fell at threshold {', '.join(fell)}" if fell else "") + unclaimed)
        row = by[f"{cond}/{free[-1]:g}/{images}"]
        r = row["figures"]
        return (f"on {images} the gate skips up to {100 * r['skipped'][0]:.0f}% of stage-1 positions (threshold "
                f"{free[-1]:g}) with no detectable probe change (within ±{100 * RESOLUTION['probe']:.0f} points), for "
                f"network FLOPs x{r['net_flops_ratio'][0]:.2f} and network time {_time(row, 'net_time_ratio')}"
                + unclaimed)

    def figures(self, rows: list[dict[str, Any]], cells: Cells, folder: Path) -> list[Path]:
        by = {r["condition"]: r for r in rows}
        ts = self.thresholds()
        forms = [c.name for c in self.conditions()]
        out = []
        for fig, label, file in (("skipped", "share of stage-1 positions skipped", "skipped.png"),
                                 ("net_flops_ratio", "network FLOPs, gated / ungated", "net_flops.png"),
                                 ("net_time_ratio", "network time, gated / ungated", "net_time.png")):
            got = {f"{c} {n}": [by[f"{c}/{t:g}/{n}"]["figures"][fig] for t in ts] for c in forms for n in SETS}
            series = {name: (list(ts), [v[0] for v in vals]) for name, vals in got.items()}
            # a time ratio: its geometric mean and 95% interval over seeds, shaded, on a log axis (x2, x0.5 alike)
            times = fig in TIMES
            bands = ({name: ([v[1] for v in vals], [v[2] for v in vals]) for name, vals in got.items()}
                     if times else None)
            out.append(curves(series, folder / file, f"{label} ({'geometric mean, 95% interval' if times else 'mean'} "
                              "over seeds)", "variance threshold", label, logx=True, bands=bands, logy=times,
                              reference=1.0 if times else None))
        points = {f"{c} {n}": [(f"{t:g}", by[f"{c}/{t:g}/{n}"]["figures"]["skipped"],
                                by[f"{c}/{t:g}/{n}"]["figures"]["delta_probe"]) for t in ts]
                  for c in forms for n in SETS}
        out.append(scatter_intervals(points, folder / "probe_cost.png", "probe accuracy change against work skipped",
                                     "share of stage-1 positions skipped", "probe accuracy, gated − ungated"))
        return out


def _time(row: dict[str, Any], figure: str) -> str:
    """A time ratio as the verdict says it: "x2.21 [1.95, 2.5] (higher)"; one whose interval holds x1 never reads as
    a change (a bare "network time x8.93" on 2 quick seeds can stand for an interval as wide as [0, 98.3])."""
    triple = row["figures"][figure]
    return f"{words.ratio(triple)} ({ratio_words(triple, RESOLUTION['time'])})"


def _subset(data: LabelledSet, n: int, seed: int) -> LabelledSet:
    if len(data) <= n:
        return data
    keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:n])
    return LabelledSet(data.name, data.x[keep], data.y[keep], data.classes, data.info, raw=data.raw[keep])
