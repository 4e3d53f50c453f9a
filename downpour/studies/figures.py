"""Figures the studies share: a phase diagram, values with interval bars, and distributions."""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from downpour.studies import captions
from downpour.studies.words import no_spread
from downpour.train.model_file import replace_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure(width: float, height: float) -> Figure:
    """A new figure of ``width`` x ``height`` inches: matplotlib is imported here, on a study's first figure (not
    by ``downpour study NAME --help``, which imports the study's module and this one)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def save(fig: Figure, path: Path, caption: str = "") -> Path:
    """``fig`` as a PNG at ``path``, written whole or not at all (:func:`replace_bytes`); ``caption``, what it draws
    in words (:mod:`~downpour.studies.captions`), kept in the PNG for the study's pages to print under it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, bbox_inches="tight", metadata={captions.KEY: caption} if caption else None)
    replace_bytes(path, png.getvalue())
    return path


def phase_diagram(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: Path, title: str,
                  label: str) -> Path:
    """A heat map of ``values`` (len(rows), len(cols)) in [0, 1], each cell printed; a NaN cell (a condition the
    design does not run) blank, marked "not run"."""
    fig = figure(1.2 + 1.1 * len(cols), 1.0 + 0.6 * len(rows))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(values), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center",
                        color="white" if values[i, j] < 0.6 else "black", fontsize=9)
            else:       # (a bare white cell would read as lost: staleness' lr 0.5 row, delay4 to random4)
                ax.text(j, i, "not run", ha="center", va="center", color="grey", fontsize=8)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=label)
    return save(fig, path, captions.phase(rows, cols, label))


def finite_limits(*arrays: np.ndarray) -> tuple[float, float]:
    """Axis limits around every finite value of ``arrays`` (a little margin; (0, 1) when none is finite)."""
    vals = np.concatenate([np.empty(0)] + [np.asarray(a, dtype=float).ravel() for a in arrays])   # (none: no values)
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return 0.0, 1.0
    a, b = float(vals.min()), float(vals.max())
    pad = 0.08 * (b - a) or 0.05 * max(1.0, abs(a))
    return a - pad, b + pad


def bar_lengths(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, limits: tuple[float, float]) -> list[np.ndarray]:
    """[below, above]: matplotlib's error bar lengths for values ``v`` with intervals [lo, hi]. An unbounded
    end (an interval of too few seeds) reaches past ``limits``, so with the axes set to them its bar runs
    off the plot (matplotlib cannot draw an infinite one); a NaN end draws none; an end a rounding error
    inside its value (Wilson's at 0 or 1) is clipped to 0."""
    span = limits[1] - limits[0]
    lo = np.where(np.isneginf(lo), limits[0] - span, lo)
    hi = np.where(np.isposinf(hi), limits[1] + span, hi)
    return [np.clip(np.nan_to_num(v - lo, nan=0.0), 0, None), np.clip(np.nan_to_num(hi - v, nan=0.0), 0, None)]


# A mean the same in every seed (Student's t of no spread: an interval of no width, as certain as a thousand seeds) is
# drawn as an open diamond, and the figure's title says so: a filled point reads as one measured exactly (the quick
# first-layer study's probes.png), where the measure itself was degenerate (every seed read the same).
SAME_MARK = "D"
SAME_SAID = "◇: the same in every seed (no spread: a degenerate measure, not an exact one)"


def mark_the_same(ax: Any, x: Sequence[float], y: Sequence[float], flat: Sequence[bool], color: Any) -> bool:
    """Redraw as an open diamond each point (``x``, ``y``) that is ``flat`` (a figure of it with no spread,
    :func:`~downpour.studies.words.no_spread`); whether any was."""
    same = [(xi, yi) for xi, yi, f in zip(x, y, flat) if f]
    for xi, vi in same:
        ax.plot([xi], [vi], SAME_MARK, mfc="white", mec=color, mew=1.5, ms=7, zorder=4)
    return bool(same)


def condition_colours(names: Sequence[str]) -> dict[str, str]:
    """A study's colour for each of its conditions, in its order: every figure of the study draws a condition in it
    (its tradeoff figures' points and its interval bars alike)."""
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def interval_bars(labels: Sequence[str], triples: Sequence[Sequence[float]], path: Path, title: str,
                  ylabel: str, reference: float | None = None,
                  beside: tuple[str, str, Sequence[Sequence[float]]] | None = None,
                  bounds: Sequence[Sequence[str]] | None = None, colours: dict[str, str] | None = None,
                  whole: tuple[float, float] | None = None) -> Path:
    """One point per label with its [low, high] interval; an optional horizontal reference line. ``beside``
    (name of ``triples``, name of the second, its triples): a second figure of the same units beside each label's
    first, told apart by a legend (the mechanisms study's AUC ranges beside its response ranges).
    ``bounds``: per series, per label, "" or the mark of a mean that is only a lower bound ("≥ 8/16",
    :func:`~downpour.studies.bounds.lower_bound_marks`), drawn open with its mark above it.
    ``colours``: label -> colour, each point in its own (one series only; the study's :func:`condition_colours`,
    as its other figures draw the condition). ``whole``: the y axis' full range, shown whole (a probability's
    (0, 1), where staleness' controls.png would otherwise be cut at 0.15-0.95 with no mark of it)."""
    marked = bounds is not None and any(m for b in bounds for m in b)
    said = captions.bars(labels, ylabel, reference, beside[:2] if beside else None, marked)
    return save(interval_figure(labels, triples, title, ylabel, reference, beside, bounds, colours, whole), path, said)


def interval_figure(labels: Sequence[str], triples: Sequence[Sequence[float]], title: str, ylabel: str,
                    reference: float | None = None, beside: tuple[str, str, Sequence[Sequence[float]]] | None = None,
                    bounds: Sequence[Sequence[str]] | None = None, colours: dict[str, str] | None = None,
                    whole: tuple[float, float] | None = None) -> Figure:
    """:func:`interval_bars`' figure, unsaved."""
    if colours is not None and beside is not None:
        raise ValueError("interval_figure: colours per label, or two series told apart by colour, not both")
    fig = figure(1.5 + (1.0 if beside else 0.7) * len(labels), 3.6)
    ax = fig.subplots()
    series = [(None, triples)] if beside is None else [(beside[0], triples), (beside[1], beside[2])]
    arrays = [np.array(t, dtype=float).reshape(-1, 3).T for _, t in series]        # each (3, labels): v, lo, hi
    limits = finite_limits(*(a for v_lo_hi in arrays for a in v_lo_hi), [reference if reference is not None else np.nan])
    x = np.arange(len(labels))
    same = False
    for k, ((name, _), (v, lo, hi)) in enumerate(zip(series, arrays)):
        shift = 0.0 if len(series) == 1 else (k - 0.5) * 0.3
        # (named: the open markers below would take the next series' colour from the cycle; each condition in its own
        # colour, as the study's tradeoff figures draw it, not every one blue)
        color = [colours.get(label, "C0") for label in labels] if colours is not None else [f"C{k}"] * len(labels)
        lengths = bar_lengths(v, lo, hi, limits)
        marks = bounds[k] if bounds is not None else [""] * len(labels)
        top = np.where(np.isfinite(hi), hi, limits[1])
        for j in range(len(labels)):
            ax.errorbar(x[j:j + 1] + shift, v[j:j + 1], yerr=[e[j:j + 1] for e in lengths], fmt="o", capsize=4,
                        label=name if j == 0 else None, color=color[j])
            _mark_lower_bounds(ax, x[j:j + 1] + shift, v[j:j + 1], top[j:j + 1], marks[j:j + 1], color[j])
            same |= mark_the_same(ax, x[j:j + 1] + shift, v[j:j + 1], [no_spread((v[j], lo[j], hi[j]))], color[j])
    if any(np.isinf(lo).any() or np.isinf(hi).any() for _, lo, hi in arrays):
        ax.set_ylim(*limits)
    if whole is not None:           # (a little past its ends: a point at 0 or 1 drawn whole)
        pad = 0.03 * (whole[1] - whole[0])
        ax.set_ylim(whole[0] - pad, whole[1] + pad)
    marked = bounds is not None and any(m for b in bounds for m in b)
    if marked:                      # room above the top bar for its mark
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.08 * (high - low))
    if beside is not None:
        ax.legend(fontsize="small")
    if reference is not None:
        ax.axhline(reference, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title + ("\nopen, ≥ k/n: a lower bound, k of n seeds at the sweep's end" if marked else "")
                 + (f"\n{SAME_SAID}" if same else ""))
    return fig


def _mark_lower_bounds(ax: Any, x: np.ndarray, v: np.ndarray, top: np.ndarray, marks: Sequence[str], color: Any) -> None:
    """Redraw each marked point open (white inside) and write its mark above its bar."""
    for xi, vi, ti, mark in zip(x, v, top, marks):
        if mark and np.isfinite(vi):
            ax.plot([xi], [vi], "o", mfc="white", mec=color, mew=1.5, zorder=3)
            ax.annotate(mark, (xi, ti), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7, color=color)


def distributions(groups: dict[str, Sequence[float]], path: Path, title: str, ylabel: str) -> Path:
    """Each group's values as jittered points over a box plot (finite values only)."""
    fig = figure(1.5 + 1.2 * len(groups), 3.6)
    ax = fig.subplots()
    data = [np.asarray([v for v in vals if np.isfinite(v)], dtype=float) for vals in groups.values()]
    # medians black: matplotlib's orange (C1) lies on the second group's orange points (staleness' sae_cost.png,
    # async4)
    ax.boxplot(data, showfliers=False, medianprops={"color": "black"})
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.plot(i + rng.uniform(-0.12, 0.12, len(d)), d, ".", alpha=0.5)
    ax.set_xticks(range(1, len(groups) + 1), list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return save(fig, path, captions.distributions({name: len(d) for name, d in zip(groups, data)}, ylabel))
