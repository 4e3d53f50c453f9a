"""The network's pictures in a run's report, as PNG files: its first-layer filters, and the chosen unit's optimal
stimulus beside its top images, its responses to the two classes, and its invariance.

Drawn on :mod:`downpour.analysis.canvas`; every function takes plain arrays and an output path and returns the path it
wrote. The training's pictures (loss curves, staleness) are :mod:`downpour.analysis.training_plots`.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from downpour.analysis import canvas
from downpour.analysis.invariance import kept_auc


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
    ``edgy``: (n,) bool, the filters to frame in orange, with the count in the title (the run's
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
    fig = canvas.figure(min(0.45 * cols, 9) + 0.5, min(0.45 * rows, 9) + 0.6, laid_out=False)
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
    return canvas.save(fig, path)


CONCEPT_FRAME, OTHER_FRAME = "C1", "0.75"     # the top images' frames: the concept's (orange), any other (light grey)


def stimulus_and_top_images(stimulus: np.ndarray, top: np.ndarray, path: Path, title: str,
                            top_responses: list[float] | None = None, stimulus_label: str = "optimal stimulus",
                            in_concept: list[bool] | None = None, concept: str = "concept") -> Path:
    """The optimal stimulus (C, H, W) beside the top-k images (k, C, H, W), like the paper's figure 3; ``stimulus_label``
    its panel's (:func:`~downpour.analysis.report_notes.pictured_names`). ``in_concept``: per top image, whether it is
    one of ``concept``'s: framed in orange (the others in grey) with a legend of both counts (the title's count alone
    does not say which)."""
    k = len(top)
    rows = max(1, math.isqrt(k))            # about a square: the default 9 as 3 x 3, not 8 in a row and 1 alone
    cols = math.ceil(k / rows)
    # inches a column: 1.2 to 6 (36, top_k's most: 9.6 in); 31-35 images are 7, narrower to fit (not 10.8 in)
    cell = min(1.2, canvas.SHOWN_WIDTH / (cols + 2))
    width = cell * (cols + 2)
    fig = canvas.figure(width, 1.3 / 1.2 * cell * rows + 0.5, laid_out=False)
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
    return canvas.save(fig, path)


def same_decimals(values: list[float], digits: int = 3) -> list[str]:
    """``values`` to one number of decimals, ``digits`` significant in the largest (2.70 ... 1.35, -3.13 ... -0.83):
    ``.3g`` prints 1.1 beside 1.19 and 2.7 beside 2.11 over the top images."""
    largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    decimals = max(0, digits - 1 - math.floor(math.log10(largest))) if largest > 0 else digits - 1
    return [f"{v:.{decimals}f}" for v in values]


def invariance_plot(result: dict[str, Any], path: Path, against: tuple[str, str] = ("faces", "non-faces")) -> Path:
    """The invariance curves (mean over images ± its standard error), normalised to the untransformed response, and
    below them (where the sweep has the non-faces) the unit's AUC at each transform, the faces and
    non-faces warped alike, in its 95% band (``selectivity_ci``'s ``points``): its selectivity, which a unit that
    answers any blob loses as the faces shrink.
    ``against``: the concept and what its AUC is against, as the panels name them (a folder's class and the other
    classes, not faces and non-faces of every concept)."""
    curves = result["curves"]
    labels = {"scale": "scale factor", "translation_x": "horizontal shift (pixels)",
              "translation_y": "vertical shift (pixels)", "rotation": "in-plane rotation (degrees)",
              "out_of_plane_rotation": "out-of-plane rotation (degrees)"}
    rows = 2 if any("auc" in c for c in curves) else 1
    # the AUC curves' bands: the run's own (selectivity_ci) or analysis.json's (selectivity.range_ci)
    bands = result.get("selectivity_ci") or result.get("selectivity", {}).get("range_ci") or {}
    floor, selective = (result.get("summary") or {}).get("floor"), result.get("selectivity") or {}   # table levels
    # at most 4 transforms side by side, more in even blocks one under another (5: 3 and 2; text as shown, SHOWN_WIDTH);
    # (one row of 3.2 inches a transform would be 1408 px for 4, shrunk by 3/4 on the page)
    per = math.ceil(len(curves) / math.ceil(len(curves) / 4))
    blocks = math.ceil(len(curves) / per)
    fig = canvas.figure(min(3.2 * per, canvas.SHOWN_WIDTH), 2.5 * rows * blocks)
    places = [(rows * (k // per) + r, k % per) for r in range(rows) for k in range(len(curves))]
    # (response row, AUC row) x transform; the last block's empty places not made
    grid = np.array(canvas.panels(fig, rows * blocks, per, places), dtype=object).reshape(rows, len(curves))
    for k, c in enumerate(curves):
        ax = grid[0][k]
        v, r, s = (np.asarray(c[key]) for key in ("values", "response", "sem"))
        _scale_axes(c, grid[:, k])
        ax.plot(v, r, marker="o", ms=3)
        ax.fill_between(v, r - s, r + s, alpha=0.2)
        ax.axhline(1.0, color="grey", lw=0.6, ls="--")
        ax.axhline(0.0, color="grey", lw=0.6, ls=":")
        if floor is not None:     # (where the table's "-90 ... 157.5 degrees" ends)
            ax.axhline(floor, color="C3", lw=0.8, ls="-.")
        ax.set_xlabel(labels.get(c["transform"], c["transform"]), fontsize=8)
        ax.grid(alpha=0.3)
        if rows == 2:
            ax = grid[1][k]
            if "auc" in c:
                ax.plot(v, c["auc"], marker="o", ms=3, color="C2", label=f"{against[1]} warped too")
                band = [p or [np.nan] * 2 for p in (bands.get(c["transform"]) or {}).get("points", [])]
                if len(band) == len(v):     # its 95% bootstrap band, both classes' images resampled
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
        # above the panel, not over it: "best" puts it on the curves' ends (tica-8x8's scale panel)
        grid[1][0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False,
                          borderaxespad=0.2)
    fig.suptitle(f"unit {result['unit']} of {result['layer']} over {result['images']} images", fontsize=9)
    return canvas.save(fig, path)


def _scale_axes(curve: dict[str, Any], column: Any) -> None:
    """The scale panels' x-axis in octaves (log 2): the sweep runs 1/32x to 8x, and on a linear axis
    its 13 shrinks, where most units lose the face, would share the first eighth of the panel with 1x."""
    if curve["transform"] == "scale" and min(curve["values"]) > 0:
        for ax in column:
            ax.set_xscale("log", base=2)


def response_histogram(positive: list[float], negative: list[float], threshold: float, path: Path,
                       labels: tuple[str, str] = ("face", "non-face")) -> Path:
    """The chosen unit's responses to the two classes, with its threshold."""
    fig = canvas.figure(5, 2.8)
    ax = fig.subplots()
    both = np.concatenate([positive, negative]) if len(positive) + len(negative) else np.zeros(1)
    bins = np.linspace(both.min(), both.max() + 1e-9, 25)
    # (each class's n in its label, and whole counts on the axis, not ticks of 2.5 images)
    ax.hist(positive, bins=bins, alpha=0.6, label=f"{labels[0]} (n = {len(positive)})")
    ax.hist(negative, bins=bins, alpha=0.6, label=f"{labels[1]} (n = {len(negative)})")
    ax.axvline(threshold, color="k", lw=1, ls="--", label="threshold")
    ax.set_xlabel("unit response")
    ax.set_ylabel("images")      # (a count)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    return canvas.save(fig, path)
