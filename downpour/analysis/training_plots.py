"""The training's pictures in a run's report: the loss and its parts against step, and the staleness of the pushes.

Drawn on :mod:`downpour.analysis.canvas`; each function takes plain values and an output path and returns the path it
wrote. The network's pictures (filters, the chosen unit's) are :mod:`downpour.analysis.figures`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.ticker import FuncFormatter, MaxNLocator

from downpour.analysis import canvas
from downpour.analysis.log_ticks import PlainLogFormatter, few_ticks
from downpour.analysis.training import stage_losses
from downpour.objectives import TERMS, is_metric


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
    # (at most the report's column: 3 panels of 4 inches would be 12 inches, 1320 px)
    fig = canvas.figure(min(4 * cols, canvas.SHOWN_WIDTH), 2.6 * rows)
    axes = canvas.panels(fig, rows, cols, [divmod(i, cols) for i in range(len(parts))])
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
        ax.set_title(name + (" (log axis)" if ax.get_yscale() == "log" else ""), fontsize=9)  # (which scale, said)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(_loss_label(name, ax.get_yscale() == "log"), fontsize=7)
        ax.grid(alpha=0.3)
    stages = stage_losses(metrics)              # a greedy run's loss jumps to another sum: said where (else
    for before, stage in zip(stages, stages[1:]):     # the jump from stage 1's cost to stage 2's reads as a divergence)
        ax = axes[0]                                  # (after the last row of the stage before: where the rows change)
        ax.axvline(before["last_step"], color="grey", lw=0.8, ls="--")
        ax.text(before["last_step"], 0.97, f"{stage['stage']} \u2192 ", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top", ha="right", color="grey")
    return canvas.save(fig, path)


def _loss_label(name: str, log: bool) -> str:
    """A loss panel's y label: what metrics.jsonl logged as ``name`` (objectives.py: each cost is a per-sample sum,
    averaged over the batch, and a part is weighted as the total adds it) and its axis's scale. Without it a student
    cannot tell a per-sample cost from a batch's sum, or log from linear."""
    what = ("logged value, not a cost" if is_metric(name) else "total cost per sample" if name == "loss"
            else "weighted cost per sample")
    return f"{what}\n(batch mean, {'log' if log else 'linear'} scale)"


def _step_labels(last: float) -> FuncFormatter:
    """A step axis's labels, in thousands (20k) from 10,000 steps up and in millions (0.2M, 1.5M) from a million, one unit on
    the axis: matplotlib's offset would show a run of a million steps as 0.0 to 1.0 under 1e6, a step count a reader
    takes for 1."""
    size, unit = (1e6, "M") if last >= 1e6 else (1e3, "k") if last >= 1e4 else (1.0, "")
    return FuncFormatter(lambda x, pos=None: f"{x / size:g}{unit}" if x else "0")


def staleness_histogram(histograms: dict[str, dict[int, int]], path: Path) -> Path:
    """Bars of push counts per staleness value, one series per label (``overall``, ``worker 0``, ...), each labelled
    with its mean and max (staleness.json's, from its histogram), on whole-number ticks (a staleness is a whole number
    of updates; matplotlib's ticks would fall between the bars, -0.5, 0.5, ...), so the figure says each mean without
    staleness.json opened. The legend stands right of the bars (inside them, with 16 workers it covers them) and past
    ten series their colours come from a colour map (the default cycle of ten colours gives worker 9 the colour of
    ``overall``)."""
    fig = canvas.figure(7.5, 3.2)     # (the legend beside the bars)
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
    return canvas.save(fig, path)
