"""Rows for studies whose cells are runs measured by :mod:`downpour.studies.measure`: every figure's mean
with its 95% interval over the paired seeds, and for each condition that names a reference (``vs`` in
its params) the paired difference of the chosen figures with the words it reads as.

    rows = compare_rows(conditions, cells, seeds, resolution={"probe_digits": 0.02, ...})
    rows[k]["figures"]["probe_digits"]     # [mean, low, high]
    rows[k]["figures"]["d_probe_digits"]   # [mean of (this − vs) per seed, low, high]: stats.paired_difference
    rows[k]["extra"]["d_probe_digits"]     # "higher" | "lower" | "no detectable effect" | "inconclusive"

A difference reads "no detectable effect" when its interval holds 0 and lies within ±resolution (the
smallest difference the study cares about, in the figure's units), "inconclusive" when it holds 0 but
is wider (:func:`~downpour.studies.stats.effect_words`).

:func:`owed_paragraph` and :func:`owed_figure` read each condition against itself trained without a face
(``face_owed_controls``, :func:`~downpour.studies.trained.owed_figures`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from downpour.analysis.invariance import whole_turn
from downpour.studies import captions, words
from downpour.studies.base import Cells, Condition
from downpour.studies.figures import bar_lengths, condition_colours, figure, finite_limits, interval_bars, save
from downpour.studies.plots import place_labels
from downpour.studies.holm import LEAD_IN_ASIDE, LEAD_IN_LIST, lead_mark
from downpour.studies.stats import (CENSORED, DIVERGED, effect_words, mean_ci, note_left_out, paired_difference,
                                    paired_p, paired_test, record_test)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OWED_FIGURE = "face_owed_controls"   # what owed_paragraph and owed_figure read
# why a condition whose own unit was chosen has no such figure: its cells train no twin (nothing to take away),
# or every seed's twin was counted out (trained.py: a twin that diverged, no_faces_twin, or one with no unit to choose)
NO_TWIN = "no no-faces twin was measured: its data show it no lfw face, or every seed's twin diverged or had no unit"
_TIE_STEP = 1.08           # a tradeoff figure's points at the same x, drawn this factor apart on its log axis
OWED_RESOLUTION = 0.05     # AUC: a smaller gain from the faces is not worth reporting
OWED_AGAINST = "its no-faces twin"    # what OWED_FIGURE's test compares each condition with (the comparisons table)


def figure_ci(key: str, values: Sequence[float]) -> tuple[float, float, float]:
    """A figure's mean over seeds with its interval: the ``face_owed_*`` figures are per-seed paired
    differences (:func:`~downpour.studies.trained.owed_figures`), so they take
    :func:`~downpour.studies.stats.paired_difference`'s rules (a gain the same in every seed has no t
    interval: the sign test's, unbounded under its seeds); every other figure Student's t of its mean."""
    if key.startswith("face_owed_"):
        return paired_difference([0.0] * len(values), values)
    return mean_ci(values)


def owed_test(row: dict[str, Any], got: Sequence[dict[str, float]]) -> None:
    """Record the row's :data:`OWED_FIGURE` (what :func:`owed_paragraph` reads) as one of the verdict's tests."""
    if OWED_FIGURE in row["figures"]:
        values = [g.get(OWED_FIGURE, math.nan) for g in got]
        record_test(row, OWED_FIGURE, effect_words(*row["figures"][OWED_FIGURE], resolution=OWED_RESOLUTION),
                    paired_p([0.0] * len(values), values), against=OWED_AGAINST)


def compare_rows(conditions: list[Condition], cells: Cells, seeds: list[int],
                 resolution: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for c in conditions:
        got = [cells[(c.name, s)] for s in seeds]
        # a condition's figures are its trained cells' (a diverged cell holds its design's figures alone); where every
        # seed diverged, those :func:`~downpour.studies.diverged.with_counted_out` gave its cells, NaN, so that the
        # verdict and the figures read it as such (they indexed a figure it lacked: KeyError). Its seeds counted out
        # are counted there too (:func:`~downpour.studies.diverged.summarised`).
        trained = [g for g in got if not g.get(DIVERGED)] or got
        keys = [k for k in dict.fromkeys(k for g in trained for k in g) if k != DIVERGED]
        _refuse_lacking(c.name, seeds, got, keys)
        row: dict[str, Any] = {"condition": c.name, "group": c.group, "params": c.params, "n": len(seeds),
                               "figures": {k: list(figure_ci(k, [g.get(k, math.nan) for g in got])) for k in keys},
                               "extra": {}}
        owed_test(row, got)
        for key in row["figures"]:          # a width at the sweep's end in k seeds: its mean is a lower bound
            ended = sum(1 for g in got if _ended(g, key))
            if ended:
                row.setdefault("censored", {})[key] = ended
        vs = c.params.get("vs", "")
        if vs:
            base = [cells[(vs, s)] for s in seeds]
            for key, res in resolution.items():
                pair = uncensored_pairs(row, key, base, got)
                row["figures"]["d_" + key], reading = paired_test(row, "d_" + key, *pair, res, against=vs)
                row["extra"]["d_" + key] = bounded_reading(row, "d_" + key, reading)
                note_left_out(row, "d_" + key, *pair)
        rows.append(row)
    return rows


class FigureMissing(KeyError):
    """A cell that ran lacks a figure its condition's other seeds hold: read as NaN, its seed would be left out of the
    figure's interval and of every paired difference of it without a word. ``args[0]``: the figure,
    as a summary's KeyError gives it (run.py names the cells.jsonl lines to delete); ``cells``: (condition, seed);
    ``instead``: figures those cells hold that the seeds holding ``args[0]`` lack (:func:`versions_apart`)."""

    def __init__(self, key: str, cells: list[tuple[str, int]], instead: Sequence[str] = ()):
        super().__init__(key)
        self.cells, self.instead = cells, list(instead)

    def __str__(self) -> str:
        named = ", ".join(f"{c!r} seed {s}" for c, s in self.cells)
        if self.instead:
            return (f"the cell(s) {named} ran but lack figure {self.args[0]!r} and hold "
                    f"{', '.join(map(repr, self.instead))}, which the condition's seeds holding {self.args[0]!r} lack: "
                    f"{VERSIONS_APART}")
        return (f"the cell(s) {named} ran but lack figure {self.args[0]!r}, which the condition's other seeds hold "
                "(measured before the figure was recorded, or an edited line): delete their lines from the study's "
                "cells.jsonl and run the study again, and those cells run again")


# what a refusal says where the cells lacking a figure hold another that those holding it lack (run.py's too): an edit,
# or two versions, where running the lacking ones again records the same figures, refused again, so it does not say to
# run them again whichever version they were)
VERSIONS_APART = ("if those lines were edited or damaged, delete those lines and run again (their cells run again); "
                  "if the two were measured by two versions of the study (a figure renamed or retired between them), "
                  "running those cells again records the same figures: delete the older version's lines from the "
                  "study's cells.jsonl instead")


def versions_apart(lacking: Sequence[dict[str, float]], holding: Sequence[dict[str, float]]) -> list[str]:
    """The figures cells ``lacking`` a figure hold that the cells ``holding`` it (of the same condition) all lack: a
    figure renamed or retired between the versions that measured them, where not empty."""
    held = {k for g in holding for k in g}
    return [k for k in dict.fromkeys(k for g in lacking for k in g) if k not in held and k != DIVERGED]


def _refuse_lacking(name: str, seeds: Sequence[int], got: Sequence[dict[str, float]], keys: Sequence[str]) -> None:
    """Raise :class:`FigureMissing` for a cell of condition ``name`` that ran (not diverged: such a cell holds its
    design's figures alone, its trained ones NaN by design) and lacks one of ``keys``, its condition's figures. A
    figure no seed of the condition holds is not refused: the condition does not measure it (or every seed diverged)."""
    for key in keys:
        lacking = [(s, g) for s, g in zip(seeds, got) if not g.get(DIVERGED) and key not in g]
        if lacking:
            raise FigureMissing(key, [(name, s) for s, _ in lacking],
                                versions_apart([g for _, g in lacking], [g for g in got if key in g]))


# the rotation widths (:func:`~downpour.studies.measure.range_widths`' degrees, the response's and the AUC's)
TURN_WIDTHS = ("inv_rotation", "inv_rotation_auc")


def _ended(cell: dict[str, float], key: str) -> bool:
    """Whether the cell's ``key`` (a width) ran to the sweep's end: its ``key`` + CENSORED, the share of the tied units
    whose range did, is above 0 (missing: not a width, or a cell from before the share; NaN: no unit had a range). A
    rotation width of the whole turn did not (:func:`~downpour.analysis.invariance.whole_turn`: every unit held at every
    angle, 360 measured; read as bounds, two of them would be left out). A cell measured from 2026-12-05 on, when the
    sweep reached 180 degrees, flags no such unit (:func:`~downpour.studies.measure.censored_widths`); this reads one
    measured before, whose mean is 360 only where every tied unit held."""
    if key in TURN_WIDTHS and whole_turn("rotation", [0.0, cell.get(key, math.nan)]):
        return False
    return cell.get(key + CENSORED, 0) > 0


def uncensored_pairs(row: dict[str, Any], key: str, base: Sequence[dict[str, float]],
                     got: Sequence[dict[str, float]]) -> tuple[list[float], list[float]]:
    """(baseline's, this condition's) ``key`` per seed, NaN (left out of the paired interval) where both ran to the
    sweep's end (their ``key`` + :data:`~downpour.studies.stats.CENSORED` > 0): two lower bounds have no measured
    difference (2.00 and 2.00 octaves is not 0). Their count goes in ``row["censored"]["d_" + key]``. A seed where one
    side alone ran to the end stays: its difference is a bound in a known direction. Read as measured, every seed's
    difference would mislead (Q4: 21 of 48 scale ranges were the whole sweep, 0.5x to 2x)."""
    a, b = [x.get(key, math.nan) for x in base], [x.get(key, math.nan) for x in got]
    ended = [(_ended(x, key), _ended(y, key)) for x, y in zip(base, got)]
    both = [e == (True, True) for e in ended]
    if any(both):
        row.setdefault("censored", {})["d_" + key] = sum(both)
        a = [math.nan if e else v for v, e in zip(a, both)]
        b = [math.nan if e else v for v, e in zip(b, both)]
    kept = [math.isfinite(u) and math.isfinite(v) for u, v in zip(a, b)]
    at_least = sum(k and e == (False, True) for k, e in zip(kept, ended))   # this side's width a lower bound: d too
    at_most = sum(k and e == (True, False) for k, e in zip(kept, ended))    # the reference's: d an upper bound
    if at_least or at_most:
        row.setdefault("bounded", {})["d_" + key] = {"kept": sum(kept), "at_least": at_least, "at_most": at_most}
    return a, b


def bounded_reading(row: dict[str, Any], name: str, reading: str) -> str:
    """``reading`` of the paired difference ``name``, or "inconclusive" where the seeds :func:`uncensored_pairs` kept
    with one range at the sweep's end (``row["bounded"][name]``) leave it unsupported: "higher" with some difference
    only an upper bound (the reference's range ran to the end: the truth may be lower), "lower" with some only a lower
    bound, "no detectable effect" with any bound (the interval is not of measured differences). The test recorded for
    the verdict (:func:`~downpour.studies.stats.record_test`) reads the same. (Read as measured, such seeds' differences
    mislead: 8 seeds whose condition's range ran to the end, 1.5 octaves against 2.0, would read "lower".)"""
    b = row.get("bounded", {}).get(name)
    if not b or reading == "inconclusive":
        return reading
    if (reading == "higher" and b["at_most"]) or (reading == "lower" and b["at_least"]) or reading == "no detectable effect":
        test = row.get("tests", {}).get(name)
        if test and test["reading"] == reading:
            test["reading"] = "inconclusive"
        return "inconclusive"
    return reading


def difference_sentence(row: dict[str, Any], key: str, label: str, fmt: str = "{:+.3f}") -> str:
    """'probe accuracy −0.012 [−0.03, +0.004], no detectable effect' for one compared figure of a row."""
    triple = row["figures"]["d_" + key]
    reading = f", {row['extra']['d_' + key]}" if math.isfinite(triple[0]) else ""    # (else: "not measured")
    if reading:
        reading += lead_mark(row, "d_" + key)
    ended = row.get("censored", {}).get("d_" + key)
    if ended:      # (and the seeds measured: others may be left out too, with no unit)
        left = row.get("missing", {}).get("d_" + key, ended)
        others = f", {left - ended} more not measured" if left > ended else ""
        reading += (f" ({ended} of {row['n']} seeds left out: both ranges ran to the sweep's end{others}; "
                    f"{row['n'] - left} measured)")
    b = row.get("bounded", {}).get("d_" + key)
    if b:      # (a seed with one range at the sweep's end gives a bound, not a difference)
        reading += (f" ({b['at_least'] + b['at_most']} of the {b['kept']} seeds kept give only a bound, one range at the "
                    f"sweep's end: {b['at_least']} at least, {b['at_most']} at most their difference)")
    return f"{label} {words.difference(triple, fmt)}{reading}"


def value(row: dict[str, Any], key: str, fmt: str = "{:.3f}") -> str:
    """'0.912 [0.90, 0.93]' for one figure of a row (a figure constant over seeds shows only its value)."""
    v, lo, hi = row["figures"][key]
    if not math.isfinite(v):
        return "n/a"
    if lo == hi == v or not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt.format(v)
    return f"{fmt.format(v)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def tally(rows: list[dict[str, Any]], key: str) -> dict[str, list[str]]:
    """Conditions by how their difference in ``key`` reads (a higher or lower one Holm's correction does not
    keep marked as a lead, as the verdict's last paragraph calls it)."""
    out: dict[str, list[str]] = {w: [] for w in ("higher", "lower", "no detectable effect", "inconclusive")}
    for r in rows:
        word = r["extra"].get("d_" + key)
        if word:
            out[word].append(r["condition"] + lead_mark(r, "d_" + key, LEAD_IN_LIST))
    return out


def tradeoff(rows: Sequence[dict[str, Any]], x: str, y: str, path: Path, title: str, xlabel: str,
             ylabel: str, log_x: bool = True) -> Path:
    """One point per condition: figure ``x`` (e.g. parameters) against figure ``y`` with its interval."""
    shown = sum(math.isfinite(r["figures"][x][0]) and math.isfinite(r["figures"][y][0]) for r in rows)
    said = captions.tradeoff(shown, len(rows), xlabel, ylabel, bar_reference(rows, y)[1])
    return save(tradeoff_figure(rows, x, y, title, xlabel, ylabel, log_x), path, said)


def tradeoff_figure(rows: Sequence[dict[str, Any]], x: str, y: str, title: str, xlabel: str, ylabel: str,
                    log_x: bool = True) -> Figure:
    """:func:`tradeoff`'s figure, unsaved: each point and its label in the condition's own colour, the label placed
    clear of the others (:func:`~downpour.studies.plots.place_labels`); an unbounded interval end runs off the axes."""
    fig = figure(6.0, 4.0)
    ax = fig.subplots()
    shown = [(r["condition"], r["figures"][x][0], np.asarray(r["figures"][y], dtype=float)) for r in rows]
    shown = [(name, xv, t) for name, xv, t in shown if math.isfinite(xv) and math.isfinite(t[0])]
    limits = finite_limits(*(t for _, _, t in shown))
    labels = []
    tied = {xv: [n for n, x2, _ in shown if x2 == xv] for _, xv, _ in shown}
    colours = condition_colours([r["condition"] for r in rows])    # (by every row, not the shown ones' order)
    for name, xv, (v, lo, hi) in shown:
        colour = colours[name]
        # points at one x (templates' tile2 and conv32, 8,448 parameters each) drawn apart: one's bar hid the other's
        k, n = tied[xv].index(name), len(tied[xv])
        xv = xv * _TIE_STEP ** (k - (n - 1) / 2) if log_x else xv
        ax.errorbar([xv], [v], yerr=bar_lengths(np.array([v]), np.array([lo]), np.array([hi]), limits), fmt="o",
                    capsize=4, color=colour)
        labels.append((name, (xv, v), colour))
    if any(np.isinf(t[1:]).any() for _, _, t in shown):
        ax.set_ylim(*limits)
    reference, said = bar_reference(rows, y)         # a probe's: the same probe on the input pixels, as the bars'
    lines = [] if reference is None else [ax.axhline(reference, color="grey", lw=0.8, ls="--")]
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} (95% intervals){said}")     # (the bars were unexplained, as the studies' other figures say)
    # (placed, not 5 points up and right of its point: there architectures' rbm and conv-ae print as "rbmconv-ae",
    # sae-288's label lies on cat's point, templates' tile2 on its own bar under conv32's)
    place_labels(ax, labels, fontsize=8, avoid=lines)     # (and off the dashed line: it struck through them)
    return fig


def bar_reference(rows: Sequence[dict[str, Any]], key: str) -> tuple[float | None, str]:
    """The dashed line a figure ``key`` of the rows is drawn against, and the words its title says it in: a face AUC
    against chance (0.5), a probe's accuracy against the same probe on the input pixels (``KEY_pixels``, the first
    row's: the reference the verdict quotes); (None, "") for any other figure."""
    if key.startswith("face_auc"):
        return 0.5, "\n(dashed: chance)"
    pixels = rows[0]["figures"].get(f"{key}_pixels", [math.nan]) if rows and key.startswith("probe_") else [math.nan]
    if not math.isfinite(pixels[0]):
        return None, ""
    return pixels[0], f"\n(dashed: the same probe on the input pixels, {pixels[0]:.3f})"


def owed_paragraph(rows: Sequence[dict[str, Any]], unit: str = "face unit") -> str:
    """What the faces gave each condition's ``unit``: its AUC on the matched controls minus that of the same
    condition trained on the same seed without a face (``face_owed_controls``), with its interval over seeds
    and how it reads; a closing sentence names the conditions whose unit is shown to owe something to them."""
    said, readings, marks = [], {}, {}
    for r in rows:
        owed = r["figures"].get(OWED_FIGURE)
        if owed is None or not math.isfinite(owed[0]):
            chosen = r["figures"].get("face_auc_controls", [math.nan])[0]
            why = NO_TWIN if math.isfinite(chosen) else "no face unit could be chosen"
            said.append(f"{r['condition']} not measured ({why})")
            continue
        readings[r["condition"]] = effect_words(*owed, resolution=OWED_RESOLUTION)
        marks[r["condition"]] = lead_mark(r, OWED_FIGURE, LEAD_IN_LIST)     # (said: the quick architectures
        # study's "owes something to the faces in: rbm, sae" where Holm's correction keeps neither)
        # (LEAD_IN_ASIDE, not holm.LEAD's parenthesis: "higher (a lead: ...) (without a face: ...)" read as one
        # inside the other)
        said.append(f"{r['condition']} {words.signed(owed)}, {readings[r['condition']]}"
                    f"{lead_mark(r, OWED_FIGURE, LEAD_IN_ASIDE)} "
                    f"(without a face: {value(r, 'face_auc_controls_no_faces')})")
    if not readings:
        return "What the faces gave the " + unit + " was not measured: " + "; ".join(said) + "."
    higher = [name + marks[name] for name, word in readings.items() if word == "higher"]
    unsure = [name for name, word in readings.items() if word == "inconclusive"]
    if higher:
        close = f"The {unit} owes something to the faces in: {', '.join(higher)}."
    elif unsure:
        close = f"No condition is shown to owe its {unit} to the faces (too wide to tell: {', '.join(unsure)})."
    else:
        close = (f"No condition's {unit} owes the faces anything detectable: trained without a face, each scores "
                 f"as well (within ±{OWED_RESOLUTION:g}) or better.")
    return (f"What the faces gave (the {unit}'s AUC on the matched controls minus that of the same condition "
            f"trained on the same seed without a face, data.train_faces = 0, its unit chosen the same way and "
            f"scored on the same images): " + "; ".join(said) + ". " + close)


def owed_figure(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Each condition's ``face_owed_controls`` with its interval over seeds, against 0."""
    names = [r["condition"] for r in rows]
    return interval_bars(names, [r["figures"].get(OWED_FIGURE, [math.nan] * 3) for r in rows],
                         path, "face AUC on the controls (95% intervals):\ntrained with faces minus its no-faces twin",
                         "AUC owed to the faces", reference=0.0, colours=condition_colours(names))
