"""The pictures of a run, as PNG files: filters, loss curves, staleness, stimuli, top images, invariance.

Drawn with matplotlib's object API (``Figure`` + Agg canvas, never ``pyplot``), so nothing depends on
a display or on global backend state. Every function takes plain arrays and an output path and
returns the path it wrote.

Each figure is drawn once (since 2026-12-06, :func:`_figure`): a figure of panels lays itself out (matplotlib's tight
layout engine) as it is drawn at the PNG's resolution on its own Agg canvas, and is saved at its size; until then
``tight_layout`` drew its labels once to place the panels, and ``savefig(bbox_inches="tight")`` twice more (once to
crop), each time with a fresh renderer measuring every label anew. Only a figure of pictures, which an aspect ratio
keeps from filling its size, is still cropped to what it drew.
"""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.layout_engine import TightLayoutEngine
from matplotlib.ticker import FuncFormatter, MaxNLocator

from downpour.analysis.invariance import kept_auc
from downpour.analysis.log_ticks import PlainLogFormatter, few_ticks
from downpour.analysis.training import stage_losses
from downpour.objectives import TERMS, is_metric
from downpour.train.model_file import replace_bytes


DPI = 110       # the PNGs' resolution
# The report's column (report_parts.STYLE: body max-width 1100 px less 2 x 1em = 32 px of padding) is 1068 CSS
# pixels, 9.7 inches at DPI. A PNG up to it is shown a PNG pixel to a CSS pixel, so a 7-point label reads
# 7 x 110/72 = 10.7 px, 8 points; a wider one is shrunk to fit, and so is its text: the invariance (1408 px) and loss
# (1320 px) figures read 5-6 points on a laptop until 2026-12-06. Every figure of panels is drawn at most this wide,
# its text at least 7 points.
SHOWN_WIDTH = 9.6


def _figure(width: float, height: float, laid_out: bool = True) -> Figure:
    """A ``width`` x ``height`` inch figure at the PNG's resolution, on an Agg canvas of its own, so that laying it
    out and saving it share one renderer and its cache of label sizes. ``laid_out``: its panels placed by the tight
    layout engine when it is drawn (a figure of panels); else :func:`_save` crops it to what it drew (pictures)."""
    # rect=None, as tight_layout() passes: the engine layout="tight" makes has rect=(0, 0, 1, 1), which measures every
    # panel twice (the second pass keeps the first's margins and finds the same gaps: the same PNGs, byte for byte)
    fig = Figure(figsize=(width, height), dpi=DPI, layout=TightLayoutEngine(rect=None) if laid_out else None)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path | BinaryIO) -> Path | BinaryIO:
    """``fig`` as a PNG at ``path``, or into a binary file object (the report's figures drawn as it writes the page)."""
    if isinstance(path, (str, Path)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = fig.get_layout_engine()
    if engine is not None:          # laid out once, here; then no engine, so savefig draws the figure once, as laid out
        # The spines left out of the layout: each spine's extent works out its axis's ticks again (4 per panel), to add
        # the axes' edge and the ticks (3.5 points out), which the tick labels beyond them already cover: the same
        # layout (the report's PNGs byte for byte; at most a frame line a pixel over, where a spine's extent passed the
        # axes' edge by 1e-13 pixels), in 0.61 of layout="tight"'s CPU with rect=None (docs/benchmarks.md).
        spines = [s for ax in fig.axes for s in ax.spines.values() if s.get_in_layout()]
        for s in spines:
            s.set_in_layout(False)
        engine.execute(fig)
        for s in spines:
            s.set_in_layout(True)
        fig.set_layout_engine(None)
    png = io.BytesIO() if isinstance(path, Path) else path
    fig.savefig(png, format="png", dpi=DPI, bbox_inches=None if engine is not None else "tight")
    if isinstance(path, Path):      # whole or not at all: a kill mid-save left a torn PNG in the report
        replace_bytes(path, png.getvalue())
    return path


def _show(ax: Any, image: np.ndarray, title: str | None = None, symmetric: bool = True) -> None:
    """One image (C, H, W) on an axis: grey for one channel, RGB (rescaled) for three."""
    image = np.asarray(image, dtype=np.float64)
    if image.shape[0] == 1:
        lim = float(np.abs(image).max()) or 1.0
        ax.imshow(image[0], cmap="gray", vmin=-lim if symmetric else image.min(), vmax=lim if symmetric else image.max())
    else:
        rgb = np.moveaxis(image[:3], 0, -1)
        rgb = (rgb - rgb.min()) / ((rgb.max() - rgb.min()) or 1.0)
        ax.imshow(rgb)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def colour_filters(filters_shape: tuple[int, ...], input_shape: tuple[int, ...] | None) -> bool:
    """Whether first-layer filters (n, C, kh, kw) are red, green and blue: three channels, and three in the
    model's input (C, H, W) or frames (T, C, H, W). pyramid-rica's three channels are the Laplacian levels of
    a grey image, which RGB drew as colours no image has."""
    return filters_shape[1] == 3 and (input_shape is None or len(input_shape) < 3 or input_shape[-3] == 3)


def filter_grid(filters: np.ndarray, path: Path, title: str = "first-layer filters", max_filters: int = 100,
                colour: bool | None = None, edgy: np.ndarray | None = None) -> Path:
    """A mosaic of filters (n, C, kh, kw), each scaled to its own largest |weight| (grey: 0 is mid-grey).

    Untied layers have thousands of filters (maps × positions); an evenly spaced sample of
    ``max_filters`` is shown and the title says so. One image, not one axis per filter: fast.
    ``colour``: whether three channels are RGB (default: yes; :func:`colour_filters` decides for a model).
    ``edgy``: (n,) bool, the filters to frame in orange, with the count in the title (since 2026-12-06: the run's
    :func:`~downpour.analysis.edges.edge_like`, the per-filter decision behind analysis.json filters.edge_fraction).
    """
    filters = np.asarray(filters, dtype=np.float64)
    marks = np.zeros(len(filters), dtype=bool) if edgy is None else np.asarray(edgy, dtype=bool)
    if edgy is not None:
        title = f"{title}\nframed: edge-like by the metric ({int(marks.sum())} of {len(marks)})"
    if filters.shape[1] not in (1, 3) or (filters.shape[1] == 3 and colour is False):
        # Neither grey nor RGB (2 channels: a glimpse's two resolutions; 3: a grey pyramid's levels): a grey tile each.
        marks = np.repeat(marks, filters.shape[1])
        filters = filters.reshape(-1, 1, *filters.shape[2:])
        title = f"{title} (one tile per input channel)"
    total = len(filters)
    if total > max_filters:
        shown = np.linspace(0, total - 1, max_filters).round().astype(int)
        filters, marks = filters[shown], marks[shown]
        title = f"{title} ({max_filters} of {total}, evenly spaced" + (f"; {int(marks.sum())} framed)" if
                                                                       edgy is not None else ")")
    n, c, kh, kw = filters.shape
    scale = np.abs(filters).reshape(n, -1).max(axis=1).clip(min=1e-12)[:, None, None, None]
    tiles = 0.5 + 0.5 * filters / scale                           # each filter into [0, 1], 0 -> 0.5
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    mosaic = np.ones((rows * (kh + 1) + 1, cols * (kw + 1) + 1, c))   # 1-pixel white borders
    for i in range(n):
        r, q = divmod(i, cols)
        mosaic[1 + r * (kh + 1):1 + r * (kh + 1) + kh, 1 + q * (kw + 1):1 + q * (kw + 1) + kw] = np.moveaxis(tiles[i], 0, -1)
    fig = _figure(min(0.45 * cols, 9) + 0.5, min(0.45 * rows, 9) + 0.6, laid_out=False)
    ax = fig.subplots()
    if c == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(mosaic[..., :3], interpolation="nearest")
    for i in np.flatnonzero(marks):     # on the tile's 1-pixel border, so no weight is hidden
        r, q = divmod(int(i), cols)
        ax.add_patch(Rectangle((q * (kw + 1), r * (kh + 1)), kw + 1, kh + 1, fill=False, edgecolor="tab:orange",
                               linewidth=1.2))
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def is_cost_part(key: str) -> bool:
    """``loss``, a cost term (``reconstruction``, ``stage1/pooled_l2``) or a logged diagnostic (``metric/...``).

    metrics.jsonl rows also carry bookkeeping (step, time, worker, staleness, version, ...); those
    are not curves of the objective.
    """
    return key == "loss" or key.rsplit("/", 1)[-1] in TERMS or is_metric(key)


def cost_parts(metrics: list[dict[str, Any]]) -> list[str]:
    """The numeric cost fields of metrics.jsonl rows (``loss`` first)."""
    names: dict[str, None] = {}
    for row in metrics:
        for k, v in row.items():
            if is_cost_part(k) and isinstance(v, (int, float)) and not isinstance(v, bool):
                names[k] = None
    return sorted(names, key=lambda k: (k != "loss", k))


def loss_curves(metrics: list[dict[str, Any]], path: Path) -> Path:
    """Total loss and every cost part against step, one panel each (log scale when all positive).

    Cluster runs log one row per worker push; rows sharing a step are averaged.
    """
    parts = cost_parts(metrics)
    if not parts:
        raise ValueError("metrics.jsonl has no numeric cost fields to plot")
    cols = min(3, len(parts))
    rows = math.ceil(len(parts) / cols)
    fig = _figure(min(4 * cols, SHOWN_WIDTH), 2.6 * rows)    # (3 panels were 12 inches until 2026-12-06: 1320 px)
    axes = _panels(fig, rows, cols, [divmod(i, cols) for i in range(len(parts))])
    for ax, name in zip(axes, parts):
        by_step: dict[float, list[float]] = {}
        for row in metrics:
            if isinstance(row.get(name), (int, float)) and "step" in row:
                by_step.setdefault(row["step"], []).append(float(row[name]))
        steps = sorted(by_step)
        values = [float(np.mean(by_step[s])) for s in steps]
        # a line needs two points: with one logged row (a run shorter than train.log_every) it drew nothing
        ax.plot(steps, values, lw=1.2, marker="o" if len(steps) < 10 else None, ms=3)
        finite = [v for v in values if math.isfinite(v)]   # (a NaN row first made a 2-decade loss linear, one later
        if finite and min(finite) > 0:                   # not; an inf one ticked a loss within a decade as a log axis)
            ax.set_yscale("log")
            # plain tick labels (300, 1.5): the default's "3 x 10^2" is mathtext, whose parsing took half the figure's
            # 1.3-1.5 s, paid by every analysis
            if max(finite) < 10 * min(finite):
                few_ticks(ax, min(finite), max(finite))
            else:
                ax.yaxis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
                ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.xaxis.set_major_formatter(_step_labels(max(steps, default=0)))
        ax.set_title(name + (" (log axis)" if ax.get_yscale() == "log" else ""), fontsize=9)  # (said since 2026-12-06)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(_loss_label(name, ax.get_yscale() == "log"), fontsize=7)
        ax.grid(alpha=0.3)
    stages = stage_losses(metrics)              # a greedy run's loss jumps to another sum: said where (until 2026-12-06
    for before, stage in zip(stages, stages[1:]):     # the jump from stage 1's cost to stage 2's read as a divergence)
        ax = axes[0]                                  # (after the last row of the stage before: where the rows change)
        ax.axvline(before["last_step"], color="grey", lw=0.8, ls="--")
        ax.text(before["last_step"], 0.97, f"{stage['stage']} \u2192 ", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top", ha="right", color="grey")
    return _save(fig, path)


def _panels(fig: Figure, rows: int, cols: int, places: list[tuple[int, int]]) -> list[Any]:
    """A panel at each (row, column) of ``places`` in a ``rows`` x ``cols`` grid, in that order. The places left over
    are not made: until 2026-12-06 they were panels turned off (``axis("off")``), each an axes built, measured by the
    layout and drawn for nothing (the loss figure's 5 cost parts: 6 panels); the tight layout finds the same margins
    without them (an axes turned off adds none): the same PNGs, byte for byte (bench/report_figures.py)."""
    grid = fig.add_gridspec(rows, cols)
    return [fig.add_subplot(grid[r, c]) for r, c in places]


def _loss_label(name: str, log: bool) -> str:
    """A loss panel's y label: what metrics.jsonl logged as ``name`` (objectives.py: each cost is a per-sample sum,
    averaged over the batch, and a part is weighted as the total adds it) and its axis's scale. The panels had none
    until 2026-12-06: a student could not tell a per-sample cost from a batch's sum, or log from linear."""
    what = ("logged value, not a cost" if is_metric(name) else "total cost per sample" if name == "loss"
            else "weighted cost per sample")
    return f"{what}\n(batch mean, {'log' if log else 'linear'} scale)"


def _step_labels(last: float) -> FuncFormatter:
    """A step axis's labels, in thousands (20k) from 10,000 steps up and in millions (0.2M, 1.5M) from a million, one unit on
    the axis: a run of a million steps read 0.0 to 1.0 under an offset of 1e6, a step count a reader took for 1 (until
    2026-12-06)."""
    size, unit = (1e6, "M") if last >= 1e6 else (1e3, "k") if last >= 1e4 else (1.0, "")
    return FuncFormatter(lambda x, pos=None: f"{x / size:g}{unit}" if x else "0")


def staleness_histogram(histograms: dict[str, dict[int, int]], path: Path) -> Path:
    """Bars of push counts per staleness value, one series per label (``overall``, ``worker 0``, ...), each labelled
    with its mean and max (staleness.json's, from its histogram), on whole-number ticks. Until 2026-12-06 the legend
    named the series alone (the figure said no mean: staleness.json had to be opened for one) and the ticks fell
    between the bars (-0.5, 0.5, ...: a staleness is a whole number of updates). The legend stands right of the bars
    and past ten series their colours come from a colour map: with 16 workers it covered the bars, and the default
    cycle of ten colours gave worker 9 the colour of ``overall`` (since 2026-12-06)."""
    fig = _figure(7.5, 3.2)     # (the legend beside the bars)
    ax = fig.subplots()
    n = len(histograms)
    width = 0.8 / max(n, 1)
    colours = [f"C{i}" for i in range(n)] if n <= 10 else list(colormaps["viridis"](np.linspace(0, 0.95, n)))
    for i, (label, hist) in enumerate(histograms.items()):
        keys = sorted(hist)
        counts = [hist[k] for k in keys]
        mean = float(np.dot(keys, counts)) / max(sum(counts), 1)
        ax.bar(np.asarray(keys) + (i - (n - 1) / 2) * width, counts, width=width, color=colours[i],
               label=f"{label}: mean {mean:.2f}, max {keys[-1]}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("staleness (server updates the gradient did not see)")
    ax.set_ylabel("shard updates (a push: one per shard)")   # staleness.json counts each shard's application
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + (n - 1) // 20)
    return _save(fig, path)


CONCEPT_FRAME, OTHER_FRAME = "C1", "0.75"     # the top images' frames: the concept's (orange), any other (light grey)


def stimulus_and_top_images(stimulus: np.ndarray, top: np.ndarray, path: Path, title: str,
                            top_responses: list[float] | None = None, stimulus_label: str = "optimal stimulus",
                            in_concept: list[bool] | None = None, concept: str = "concept") -> Path:
    """The optimal stimulus (C, H, W) beside the top-k images (k, C, H, W), like the paper's figure 3; ``stimulus_label``
    its panel's (:func:`~downpour.analysis.report_notes.pictured_names`). ``in_concept``: per top image, whether it is
    one of ``concept``'s: framed in orange (the others in grey) with a legend of both counts (since 2026-12-06; the
    title's count alone did not say which)."""
    k = len(top)
    rows = max(1, math.isqrt(k))            # about a square: the default 9 were 8 in a row and 1 alone (until 2026-12-06)
    cols = math.ceil(k / rows)
    # inches a column: 1.2 to 6 (36, top_k's most: 9.6 in); 31-35 images are 7, narrower to fit (10.8 in until 12-07)
    cell = min(1.2, SHOWN_WIDTH / (cols + 2))
    width = cell * (cols + 2)
    fig = _figure(width, 1.3 / 1.2 * cell * rows + 0.5, laid_out=False)
    grid = fig.add_gridspec(rows, cols + 2)
    _show(fig.add_subplot(grid[:, :2]), stimulus, stimulus_label)
    labels = same_decimals(top_responses) if top_responses is not None else [None] * k
    for i in range(k):
        ax = fig.add_subplot(grid[i // cols, 2 + i % cols])
        _show(ax, top[i], labels[i], symmetric=False)
        if in_concept is not None:
            for spine in ax.spines.values():
                spine.set(color=CONCEPT_FRAME if in_concept[i] else OTHER_FRAME, linewidth=3 if in_concept[i] else 1.5)
    if in_concept is not None:
        n = sum(map(bool, in_concept))
        frames = [Patch(facecolor="none", edgecolor=CONCEPT_FRAME, lw=3, label=f"{concept} ({n})"),
                  Patch(facecolor="none", edgecolor=OTHER_FRAME, lw=1.5, label=f"other ({len(in_concept) - n})")]
        fig.legend(handles=frames,
                   loc="upper center", bbox_to_anchor=(0.5, fig.subplotpars.bottom), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(textwrap.fill(title, round(width * 13)), fontsize=9)   # (about 13 characters an inch)
    return _save(fig, path)


def same_decimals(values: list[float], digits: int = 3) -> list[str]:
    """``values`` to one number of decimals, ``digits`` significant in the largest (2.70 ... 1.35, -3.13 ... -0.83):
    ``.3g`` printed 1.1 beside 1.19 and 2.7 beside 2.11 over the top images (until 2026-12-06)."""
    largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    decimals = max(0, digits - 1 - math.floor(math.log10(largest))) if largest > 0 else digits - 1
    return [f"{v:.{decimals}f}" for v in values]


def invariance_plot(result: dict[str, Any], path: Path, against: tuple[str, str] = ("faces", "non-faces")) -> Path:
    """The invariance curves (mean over images ± its standard error), normalised to the untransformed response, and
    below them (since 2026-12-05, where the sweep had the non-faces) the unit's AUC at each transform, the faces and
    non-faces warped alike, in its 95% band (``selectivity_ci``'s ``points``): its selectivity, which a unit that
    answers any blob loses as the faces shrink.
    ``against``: the concept and what its AUC is against, as the panels name them (a folder's class and the other
    classes; since 2026-12-05, they said faces and non-faces of every concept)."""
    curves = result["curves"]
    labels = {"scale": "scale factor", "translation_x": "horizontal shift (pixels)",
              "translation_y": "vertical shift (pixels)", "rotation": "in-plane rotation (degrees)",
              "out_of_plane_rotation": "out-of-plane rotation (degrees)"}
    rows = 2 if any("auc" in c for c in curves) else 1
    # the AUC curves' bands: the run's own (selectivity_ci) or analysis.json's (selectivity.range_ci)
    bands = result.get("selectivity_ci") or result.get("selectivity", {}).get("range_ci") or {}
    floor, selective = (result.get("summary") or {}).get("floor"), result.get("selectivity") or {}   # table levels
    # at most 4 transforms side by side, more in even blocks one under another (5: 3 and 2; text as shown, SHOWN_WIDTH);
    # until 2026-12-06 one row of 3.2 inches a transform, 1408 px for 4, shrunk by 3/4 on the page
    per = math.ceil(len(curves) / math.ceil(len(curves) / 4))
    blocks = math.ceil(len(curves) / per)
    fig = _figure(min(3.2 * per, SHOWN_WIDTH), 2.5 * rows * blocks)
    places = [(rows * (k // per) + r, k % per) for r in range(rows) for k in range(len(curves))]
    # (response row, AUC row) x transform; the last block's empty places not made
    grid = np.array(_panels(fig, rows * blocks, per, places), dtype=object).reshape(rows, len(curves))
    for k, c in enumerate(curves):
        ax = grid[0][k]
        v, r, s = (np.asarray(c[key]) for key in ("values", "response", "sem"))
        _scale_axes(c, grid[:, k])
        ax.plot(v, r, marker="o", ms=3)
        ax.fill_between(v, r - s, r + s, alpha=0.2)
        ax.axhline(1.0, color="grey", lw=0.6, ls="--")
        ax.axhline(0.0, color="grey", lw=0.6, ls=":")
        if floor is not None:     # (not drawn until 2026-12-06: where did the table's "-90 ... 157.5 degrees" end?)
            ax.axhline(floor, color="C3", lw=0.8, ls="-.")
        ax.set_xlabel(labels.get(c["transform"], c["transform"]), fontsize=8)
        ax.grid(alpha=0.3)
        if rows == 2:
            ax = grid[1][k]
            if "auc" in c:
                ax.plot(v, c["auc"], marker="o", ms=3, color="C2", label=f"{against[1]} warped too")
                band = [p or [np.nan] * 2 for p in (bands.get(c["transform"]) or {}).get("points", [])]
                if len(band) == len(v):     # its 95% bootstrap band, both classes' images resampled (2026-12-06)
                    ax.fill_between(v, *np.asarray(band, dtype=float).T, color="C2", alpha=0.2, lw=0)
                ax.plot(v, c["auc_faces_only"], marker=".", ms=2, lw=0.8, color="C1", label=f"{against[0]} alone")
            if (level := kept_auc((selective.get("auc") or {}).get(c["transform"]), selective.get("keep", 0.5))):
                ax.axhline(level, color="C3", lw=0.8, ls="-.")
            ax.axhline(0.5, color="grey", lw=0.6, ls=":")
            ax.set_ylim(0.0, 1.0)
            ax.set_xlabel(labels.get(c["transform"], c["transform"]), fontsize=8)
            ax.grid(alpha=0.3)
    ylabel = ("response (1 = untransformed, 0 = baseline)" if result["normalised_to"] == "untransformed response"
              else f"response / {result['normalised_to']}")
    for ax in grid.flat:
        ax.tick_params(which="both", labelsize=8)
    for k in range(0, len(curves), per):        # each block's first column
        grid[0][k].set_ylabel(ylabel, fontsize=7)
        if rows == 2:
            grid[1][k].set_ylabel(f"AUC, {against[0]} vs {against[1]}", fontsize=7)
    if rows == 2:
        # above the panel, not over it: "best" put it on the curves' ends (tica-8x8's scale panel, until 2026-12-06)
        grid[1][0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False,
                          borderaxespad=0.2)
    fig.suptitle(f"unit {result['unit']} of {result['layer']} over {result['images']} images", fontsize=9)
    return _save(fig, path)


def _scale_axes(curve: dict[str, Any], column: Any) -> None:
    """The scale panels' x-axis in octaves (log 2): the sweep runs 1/32x to 8x since 2026-12-05, and on a linear axis
    its 13 shrinks, where most units lose the face, shared the first eighth of the panel with 1x."""
    if curve["transform"] == "scale" and min(curve["values"]) > 0:
        for ax in column:
            ax.set_xscale("log", base=2)


def response_histogram(positive: list[float], negative: list[float], threshold: float, path: Path,
                       labels: tuple[str, str] = ("face", "non-face")) -> Path:
    """The chosen unit's responses to the two classes, with its threshold."""
    fig = _figure(5, 2.8)
    ax = fig.subplots()
    both = np.concatenate([positive, negative]) if len(positive) + len(negative) else np.zeros(1)
    bins = np.linspace(both.min(), both.max() + 1e-9, 25)
    # (each class's n in its label, and whole counts on the axis: until 2026-12-06 neither, and ticks read 2.5 images)
    ax.hist(positive, bins=bins, alpha=0.6, label=f"{labels[0]} (n = {len(positive)})")
    ax.hist(negative, bins=bins, alpha=0.6, label=f"{labels[1]} (n = {len(negative)})")
    ax.axvline(threshold, color="k", lw=1, ls="--", label="threshold")
    ax.set_xlabel("unit response")
    ax.set_ylabel("images")      # (a count: the axis had no label until 2026-12-06)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    return _save(fig, path)
