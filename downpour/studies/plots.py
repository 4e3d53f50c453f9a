"""Two more study figures, beside :mod:`downpour.studies.figures`: curves, and one figure against another."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from downpour.studies.figures import bar_lengths, figure, finite_limits, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

BESIDE = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}   # a legend right of its axes


def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, title: str, xlabel: str,
           ylabel: str, logx: bool = False) -> Path:
    """One line per name: ``series[name] = (x, y)``."""
    return save(curves_figure(series, title, xlabel, ylabel, logx), path)


def curves_figure(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str,
                  logx: bool = False) -> Figure:
    """:func:`curves`' figure, unsaved."""
    fig = figure(5.5, 3.6)
    ax = fig.subplots()
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="." if len(x) < 40 else None, label=name)
    if logx:
        ax.set_xscale("symlog", linthresh=min((v for x, _ in series.values() for v in x if v > 0), default=1.0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    # beside the axes: on them, the flat-skipping study's net_time.png hid unwhitened padded at 0.01 (x1.39)
    ax.legend(fontsize=8, **BESIDE)
    return fig


def scatter_intervals(points: dict[str, list[tuple[str, Sequence[float], Sequence[float]]]], path: Path, title: str,
                      xlabel: str, ylabel: str) -> Path:
    """One series per group: ``points[group] = [(label, (x, xlow, xhigh), (y, ylow, yhigh)), ...]``, each
    point with its two 95% intervals as error bars, joined in the order given (e.g. a penalty's weights)."""
    return save(scatter_figure(points, title, xlabel, ylabel), path)


def scatter_figure(points: dict[str, list[tuple[str, Sequence[float], Sequence[float]]]], title: str, xlabel: str,
                   ylabel: str) -> Figure:
    """:func:`scatter_intervals`' figure, unsaved."""
    fig = figure(6.5, 4.5)
    ax = fig.subplots()
    every = [p for items in points.values() for p in items]
    xs, ys = (np.array([p[k] for p in every], dtype=float).reshape(-1, 3) for k in (1, 2))   # (n, 3): value, low, high
    xlim, ylim = finite_limits(xs), finite_limits(ys)
    labels: list[Annotation] = []
    for group, items in points.items():
        x, y = (np.array([p[k] for p in items], dtype=float).reshape(-1, 3) for k in (1, 2))
        ax.errorbar(x[:, 0], y[:, 0], xerr=bar_lengths(*x.T, xlim), yerr=bar_lengths(*y.T, ylim), fmt="o-", capsize=3,
                    lw=1, ms=4, label=group)
        labels += [ax.annotate(label, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
                   for label, xi, yi in zip((p[0] for p in items), x[:, 0], y[:, 0])]
    if np.isinf(xs).any():          # an unbounded interval's bar runs off the axes
        ax.set_xlim(*xlim)
    if np.isinf(ys).any():
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    # beside the axes, not on them: the costs study's 8 series cover the plot, and matplotlib's "best" place
    # (upper right) hid less/pooled_l2=0.003, at Hoyer 0.63 and gap 0.043, and its label (2026-12-04)
    ax.legend(fontsize=7, **BESIDE)
    # (until 2026-12-05 each label sat at its point: the quick costs study's none and l1=0.01, near the same
    # sparsity and gap, printed one over the other in sparsity_vs_overfitting.png)
    spread_labels(labels)
    return fig


def spread_labels(labels: list[Annotation], pad: float = 1.0) -> None:
    """Move point labels (annotations offset in points) up, in the order given, until none overlaps one placed
    before it: each label stays at its point unless an earlier one holds the place, then sits ``pad`` points above
    the highest it meets. Call it once the axes' limits are set; a label of a point not drawn (NaN) is left."""
    if labels:
        labels[0].figure.draw_without_rendering()   # (autoscaled limits are computed lazily, at the draw)
    placed: list[Bbox] = []
    for label in labels:
        box = label.get_window_extent()
        if not np.isfinite(box.get_points()).all():
            continue
        while met := [b for b in placed if box.overlaps(b)]:
            up = (max(b.y1 for b in met) - box.y0) * 72 / label.figure.dpi + pad     # pixels to points
            x, y = label.xyann
            label.xyann = (x, y + up)
            box = label.get_window_extent()
        placed.append(box)
