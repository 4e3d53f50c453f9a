"""The face test's verdict as a picture: per negative set, the learned unit's AUC with its 95%
interval beside the baselines' that the verdict weighs it against, chance (0.5) marked, and a caption written from
the same numbers.

Both read analysis.json's ``face_neuron.controls`` rows as they are (one per negative set and method, each with
``auc`` and ``auc_ci``): nothing is measured again. In the table alone, up to 45 rows, telling which interval clears
which takes reading five rows per set.
"""
from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any, BinaryIO

from downpour.analysis.auc_words import auc_ci
from downpour.analysis.face_verdict import GRADIENT, LEARNED, NO_FACES, PIXEL, TWIN
from downpour.analysis import canvas

SHOWN = (LEARNED, TWIN, NO_FACES, PIXEL, GRADIENT)     # top to bottom in each panel; a method without rows is left out
COLOURS = {LEARNED: "C3", TWIN: "C0", NO_FACES: "C2", PIXEL: "C7", GRADIENT: "C1"}
SHORT = {LEARNED: "learned unit", TWIN: "random twin", NO_FACES: "no-faces twin", PIXEL: "best pixel",
         GRADIENT: "gradient energy"}


def verdict_sets(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The rows by negative set (in the rows' order), then by method, keeping only the methods drawn (:data:`SHOWN`)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["method"] in SHOWN:
            out.setdefault(r["negatives"], {})[r["method"]] = r
    return out


def verdict_png(rows: list[dict[str, Any]], labels: dict[str, str] | None = None) -> bytes:
    """:func:`verdict_figure` as PNG bytes, drawn as the report is written (no file in the run)."""
    out = io.BytesIO()
    verdict_figure(rows, out, labels)
    return out.getvalue()


def verdict_figure(rows: list[dict[str, Any]], path: Path | BinaryIO,
                   labels: dict[str, str] | None = None) -> Path | BinaryIO:
    """One panel per negative set (``labels``: its name as the table says it, else its key): each method's AUC as a
    dot with its 95% interval as a bar, the learned unit's in red and bold, chance (0.5) a dotted line."""
    sets = verdict_sets(rows)
    if not sets:
        raise ValueError("no face test rows to draw (analysis.json's face_neuron.controls is empty)")
    labels = labels or {}
    methods = [m for m in SHOWN if any(m in group for group in sets.values())]
    # no wider than the report's column (canvas.SHOWN_WIDTH): 5 sets at 11.2 inches would be 1232 px shrunk to 1068
    # (its 7-point labels with it); a narrower panel wraps its title
    width = min(1.7 + 1.9 * len(sets), canvas.SHOWN_WIDTH)
    fig = canvas.figure(width, 1.1 + 0.32 * len(methods))
    axes = fig.subplots(1, len(sets), sharey=True, squeeze=False)[0]
    chars = round((width - 1.7) / len(sets) * 13)     # a panel title's line: about 13 characters an inch, as figures'
    for ax, (name, group) in zip(axes, sets.items()):
        marks(ax, [(y, m, group[m]) for y, m in enumerate(methods) if m in group])
        ax.axvline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlim(-0.03, 1.03)       # (a dot at 0 or 1 drawn whole, not cut by the frame)
        ax.set_xticks([0.0, 0.5, 1.0])
        ax.set_title(textwrap.fill(labels.get(name, name), chars, break_long_words=False), fontsize=8)
        ax.set_xlabel("AUC (0.5: chance)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(methods)), [SHORT[m] for m in methods])
    axes[0].set_ylim(len(methods) - 0.5, -0.5)          # the learned unit on top
    for tick, m in zip(axes[0].get_yticklabels(), methods):
        tick.set_color(COLOURS[m])
        tick.set_fontweight("bold" if m == LEARNED else "normal")
    return canvas.save(fig, path)


def marks(ax: Any, drawn: list[tuple[int, str, dict[str, Any]]]) -> None:
    """Each (y, method, row) of ``drawn`` on ``ax``: its AUC a dot, its interval a bar with a cap at either end, in the
    method's colour, the learned unit's larger. Three artists a panel (bars, caps, dots), not an
    ``errorbar`` a method, 25 for 5 sets, whose lines, caps and collections would be most of the figure's drawing and
    of its layout's measuring (bench/verdict_figure.py)."""
    ys = [y for y, _, _ in drawn]
    colours = [COLOURS[m] for _, m, _ in drawn]
    learned = [m == LEARNED for _, m, _ in drawn]
    ends = [r["auc_ci"] for _, _, r in drawn]
    ax.hlines(ys, [lo for lo, _ in ends], [hi for _, hi in ends], colors=colours,
              linewidths=[2.2 if big else 1.2 for big in learned])
    ax.scatter([e for pair in ends for e in pair], [y for y in ys for _ in (0, 1)], marker="|", s=16,
               c=[c for c in colours for _ in (0, 1)], linewidths=1.0)         # (errorbar's caps: 4 points, 1 wide)
    ax.scatter([r["auc"] for _, _, r in drawn], ys, c=colours, s=[25 if big else 16 for big in learned], zorder=3)


def verdict_caption(rows: list[dict[str, Any]], labels: dict[str, str] | None = None) -> str:
    """The figure's caption from the same rows: per negative set, the learned unit's AUC [95% CI], whether that
    interval clears 0.5, and the highest other method drawn beside it with its own (plain text: the report escapes
    it)."""
    labels = labels or {}
    parts = []
    for name, group in verdict_sets(rows).items():
        learned = group.get(LEARNED)
        if learned is None:
            continue
        low, high = learned["auc_ci"]
        side = "above chance" if low > 0.5 else "below chance" if high < 0.5 else "its interval holds 0.5"
        others = [group[m] for m in SHOWN[1:] if m in group]
        best = max(others, key=lambda r: r["auc"], default=None)
        clear = ("" if best is None else
                 f"; the highest of the others drawn, {SHORT[best['method']]}, {auc_ci(best)}: the intervals "
                 + ("do not overlap" if low > best["auc_ci"][1] or high < best["auc_ci"][0] else "overlap"))
        parts.append(f"{labels.get(name, name)}: learned unit {auc_ci(learned)}, {side}{clear}")
    return ("Each method's AUC (dot) and its 95% bootstrap interval (bar), per negative set, the table's numbers. "
            + ". ".join(parts) + ". Whether two intervals overlap is not the verdict: the verdict reads the paired "
            "differences (both methods scored on the same images), as its sentences say.")
