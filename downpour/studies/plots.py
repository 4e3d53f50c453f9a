"""Two more study figures, beside :mod:`downpour.studies.figures`: curves, and one figure against another."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from downpour.studies import captions
from downpour.studies.figures import SAME_SAID, bar_lengths, figure, finite_limits, mark_the_same, save
from downpour.studies.words import no_spread

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox


def _band_limits(series: dict[str, tuple[Sequence[float], Sequence[float]]],
                 bands: dict[str, tuple[Sequence[float], Sequence[float]]], logy: bool) -> tuple[float, float]:
    """y limits around every finite value of the curves and their bands (above 0 on a log axis)."""
    vals = np.concatenate([np.asarray(v, dtype=float).ravel() for v in
                           [y for _, y in series.values()] + [e for pair in bands.values() for e in pair]])
    vals = vals[np.isfinite(vals) & (vals > 0 if logy else True)]
    if logy and len(vals):
        return float(vals.min()) / 1.2, float(vals.max()) * 1.2
    return finite_limits(vals)


_TICKED = 8        # a log x axis with at most this many x values (a study's thresholds) is ticked at each of them
BESIDE = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}   # a legend right of its axes


def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, title: str, xlabel: str,
           ylabel: str, logx: bool = False, bands: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
           logy: bool = False, reference: float | None = None) -> Path:
    """One line per name: ``series[name] = (x, y)``; ``bands[name] = (low, high)``, its 95% interval, shaded;
    ``reference``: a grey dashed line at that y (a ratio's 1, no change), named in the legend."""
    said = captions.curves(list(series), xlabel, ylabel, bool(bands), reference)
    return save(curves_figure(series, title, xlabel, ylabel, logx, bands, logy, reference), path, said)


def curves_figure(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str,
                  logx: bool = False, bands: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                  logy: bool = False, reference: float | None = None) -> Figure:
    """:func:`curves`' figure, unsaved. An unbounded band end (too few seeds; 0 on a log axis) runs off the axes."""
    fig = figure(5.5, 3.6)
    ax = fig.subplots()
    limits = _band_limits(series, bands, logy) if bands else None
    if limits:  # (fill_between leaves a gap at a non-finite end: drawn past the axes' limits instead)
        far = (limits[0] / 10, limits[1] * 10) if logy else (limits[0] - 1e6, limits[1] + 1e6)
    if logx:    # before the bands: set after them, fill_between's margins ran the x axis out to -0.01 (net_time.png)
        ax.set_xscale("symlog", linthresh=min((v for x, _ in series.values() for v in x if v > 0), default=1.0))
    for name, (x, y) in series.items():
        line, = ax.plot(x, y, marker="." if len(x) < 40 else None, label=name)
        if limits and name in bands:
            low, high = (np.clip(np.nan_to_num(np.asarray(v, dtype=float), nan=far[0], posinf=far[1], neginf=far[0]),
                                 *far) for v in bands[name])
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    if reference is not None:       # (flat-skipping's net_time.png: x1, no change)
        ax.axhline(reference, color="grey", lw=0.8, ls="--", label=f"{reference:g} (no change)")
    if limits and reference is not None:       # the line in view
        margin = (reference / 1.2, reference * 1.2) if logy else (reference, reference)
        limits = (min(limits[0], margin[0]), max(limits[1], margin[1]))
    if limits:
        ax.set_ylim(*limits)
    if logy:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):     # 0.5, 2: not "5 x 10^-1"
            axis(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "1235" else ""))   # (0.8, 0.9, 1 crowd)
    given = sorted({float(v) for x, _ in series.values() for v in x if np.isfinite(v)})
    if logx and len(given) <= _TICKED:   # each x ticked and said (else the flat-skipping study's 0.03 and 0.3 sit
        ax.set_xticks(given, [f"{v:g}" for v in given])     # either side of a lone "10^-1")
        ax.set_xticks([], minor=True)
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
    said = captions.scatter({group: len(items) for group, items in points.items()}, xlabel, ylabel)
    return save(scatter_figure(points, title, xlabel, ylabel), path, said)


def scatter_figure(points: dict[str, list[tuple[str, Sequence[float], Sequence[float]]]], title: str, xlabel: str,
                   ylabel: str) -> Figure:
    """:func:`scatter_intervals`' figure, unsaved."""
    fig = figure(6.5, 4.5)
    ax = fig.subplots()
    every = [p for items in points.values() for p in items]
    xs, ys = (np.array([p[k] for p in every], dtype=float).reshape(-1, 3) for k in (1, 2))   # (n, 3): value, low, high
    xlim, ylim = finite_limits(xs), finite_limits(ys)
    named: dict[tuple[str, float, float], int] = {}        # one label per point: a condition in two series is one point
    same = False
    for i, (group, items) in enumerate(points.items()):
        x, y = (np.array([p[k] for p in items], dtype=float).reshape(-1, 3) for k in (1, 2))
        # (named: each open diamond below takes a colour from the cycle, and the next series would draw in the one
        # after: on flat-skipping's probe_cost.png 5 of 6 series, their legend too, not the colour of their labels)
        ax.errorbar(x[:, 0], y[:, 0], xerr=bar_lengths(*x.T, xlim), yerr=bar_lengths(*y.T, ylim), fmt="o-", capsize=3,
                    lw=1, ms=4, label=group, color=f"C{i % 10}")
        # (a point either of whose figures is the same in every seed)
        flat = [no_spread(xt) or no_spread(yt) for xt, yt in zip(x, y)]
        same |= mark_the_same(ax, x[:, 0], y[:, 0], flat, f"C{i % 10}")
        for label, xi, yi in zip((p[0] for p in items), x[:, 0], y[:, 0]):
            named[(label, float(xi), float(yi))] = i     # (in its last series' colour: the marker drawn on top)
    if np.isinf(xs).any():          # an unbounded interval's bar runs off the axes
        ax.set_xlim(*xlim)
    if np.isinf(ys).any():
        ax.set_ylim(*ylim)
    words = [w for i, items in enumerate(points.values()) for w in _mark_unbounded(ax, [(p[1], p[2]) for p in items],
                                                                                   f"C{i % 10}")]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title + (f"\n{SAME_SAID}" if same else ""))
    # beside the axes, not on them: the costs study's 8 series cover the plot, and matplotlib's "best" place
    # (upper right) hides less/pooled_l2=0.003, at Hoyer 0.63 and gap 0.043, and its label
    ax.legend(fontsize=8, **BESIDE)
    # (placed apart, each beside its point: at its point, the quick costs study's none and l1=0.01, near the same
    # sparsity and gap, print one over the other in sparsity_vs_overfitting.png; moved up in a column they read
    # "weight_l2=0.001, none, none, weight_l2=0.001, none, none", no label beside its point)
    place_labels(ax, [(label, (x, y), f"C{i % 10}") for (label, x, y), i in named.items()], avoid=words)
    return fig


def _mark_unbounded(ax: Axes, triples: list[tuple[Sequence[float], Sequence[float]]], colour: str) -> list[Annotation]:
    """An arrow where each unbounded interval end (too few seeds) leaves the axes, in its point's colour, and the
    word "unbounded" beside it: its bar alone runs the axes' full height, like a measured one (flat-skipping's
    probe_cost.png). Returns the words, for the labels to keep clear of."""
    said = []
    for (x, xlo, xhi), (y, ylo, yhi) in triples:
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        for end, marker, side in ((yhi, "^", 1), (ylo, "v", 0)):       # at the edge it leaves by, the word inside
            if np.isinf(end):
                ax.plot([x], [side], marker, color=colour, ms=6, clip_on=False, transform=ax.get_xaxis_transform())
                said.append(ax.annotate("unbounded", (x, side), xycoords=ax.get_xaxis_transform(),
                                        xytext=(5, -4 if side else 4), textcoords="offset points", fontsize=7,
                                        color=colour, va="top" if side else "bottom"))
        for end, marker, side in ((xhi, ">", 1), (xlo, "<", 0)):
            if np.isinf(end):
                ax.plot([side], [y], marker, color=colour, ms=6, clip_on=False, transform=ax.get_yaxis_transform())
                said.append(ax.annotate("unbounded", (side, y), xycoords=ax.get_yaxis_transform(), xytext=(0, 5),
                            textcoords="offset points", fontsize=7, color=colour, ha="right" if side else "left"))
    return said


# where a label may sit, in points from its point, nearest first: its four corners, then above, below and the
# sides; each further ring is _LEADER points out and draws a line back to the point
_AROUND = ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0))
_NEAR, _LEADER, _RINGS = 4.0, 9.0, 8
_HA, _VA = {1: "left", -1: "right", 0: "center"}, {1: "bottom", -1: "top", 0: "center"}   # text away from its point
_MARK = 2.5                                                 # points around a marker (ms=4) a label keeps clear of


def place_labels(ax: Axes, labels: list[tuple[str, tuple[float, float], str]], fontsize: float = 8,
                 avoid: Sequence[Artist] = ()) -> list[Annotation]:
    """Label points (``labels``: (text, (x, y) in data, colour)), each where it overlaps no label placed before it,
    no point's marker and stays on the axes: at a corner of its point if one is free, else further out along one
    of eight directions with a thin line back to its point (so a moved label is never read as a nearer point's).
    Where nothing is free, the place that overlaps fewest. Call it once the axes' limits are set; a point not
    drawn (NaN) gets no label; nor over a text or line in ``avoid`` (a scatter's "unbounded", a tradeoff's dashed
    reference: a label on it would have the line strike through its text)."""
    from matplotlib.transforms import Bbox

    if not labels:
        return []
    fig = ax.figure
    fig.draw_without_rendering()                            # (autoscaled limits are computed lazily, at the draw)
    to_px = fig.dpi / 72
    at = {i: p for i, (_, xy, _) in enumerate(labels) if np.isfinite(p := ax.transData.transform(xy)).all()}
    r = _MARK * to_px
    marks = [Bbox.from_extents(px - r, py - r, px + r, py + r) for px, py in at.values()]
    frame = ax.get_window_extent()
    placed: list[Bbox] = [t.get_window_extent() for t in avoid]
    out = []
    # on a pale ground above the lines: an error bar through a label hid it (the costs study's 0.001 weights)
    look = {"fontsize": fontsize, "zorder": 5, "bbox": {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                                                         "alpha": 0.75}}
    for i, (px, py) in at.items():
        best = None                                         # (overlaps, ring, direction, the text's box)
        for ring, (dx, dy) in itertools.product(range(_RINGS), _AROUND):
            note = _annotate(ax, labels[i], ring, dx, dy, look)
            box = note.get_window_extent()
            note.remove()
            bad = (sum(box.overlaps(b) for b in placed) * 4 + sum(box.overlaps(m) for m in marks)
                   + 2 * (not frame.contains(box.x0, box.y0) or not frame.contains(box.x1, box.y1))
                   # beside its point with no line back, it must be nearer its own point than any other
                   + (not ring and any(_gap(box, q) < _gap(box, (px, py)) for j, q in at.items() if j != i)))
            if best is None or bad < best[0]:
                best = (bad, ring, dx, dy, box)
            if not bad:
                break
        _, ring, dx, dy, box = best
        out.append(_annotate(ax, labels[i], ring, dx, dy, look, leader=bool(ring)))   # away from it: a line back
        placed.append(box)
    return out


def _annotate(ax: Axes, label: tuple[str, tuple[float, float], str], ring: int, dx: int, dy: int,
              look: dict[str, Any], leader: bool = False) -> Annotation:
    """``label`` (text, point, colour) at ring ``ring`` of its point in direction (``dx``, ``dy``) (:data:`_AROUND`);
    ``leader``: with a thin line back to its point (measured without it: the text's own box)."""
    text, xy, colour = label
    d = _NEAR + ring * _LEADER
    line = {"arrowprops": {"arrowstyle": "-", "lw": 0.5, "color": colour, "shrinkA": 1, "shrinkB": 2}} if leader else {}
    return ax.annotate(text, xy, xytext=(dx * d, dy * d), textcoords="offset points", color=colour, ha=_HA[dx],
                       va=_VA[dy], **look, **line)


def _gap(box: Bbox, point: tuple[float, float]) -> float:
    """Pixels from ``box`` to ``point`` (0 inside it)."""
    x, y = point
    return float(np.hypot(max(box.x0 - x, 0.0, x - box.x1), max(box.y0 - y, 0.0, y - box.y1)))
