"""A study figure's caption in words: what it plots, what its points, bars, lines and shading are, and over how many
seeds, from the numbers it draws. Each drawing function says its own (:func:`bars`, :func:`curves`, ...) and
:func:`~downpour.studies.figures.save` keeps it in the PNG, as its "Description" text; study.html and study.md print
it under the figure with the study's seeds (:func:`~downpour.studies.table.figure_caption`), so a caption cannot drift from its figure.

    bars(["a", "b"], "held-out − training error", reference=0.0)
    # "Each point: a condition's mean held-out − training error over its seeds, for 2 conditions; its bar: the 95%
    #  interval of that mean, made as the note under the conditions table says; dashed line: 0."
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from downpour._names import listed, plural

__all__ = ["KEY", "bars", "curves", "scatter", "phase", "distributions", "tradeoff", "caption_of"]

KEY = "Description"     # the PNG text a figure's caption is kept under
INTERVAL = "the 95% interval of that mean, made as the note under the conditions table says"


def _one_line(text: str) -> str:
    """A title or label of several lines as one ("face AUC (95% intervals):\\ntrained ..." -> "...: trained ...")."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _each(counts: Sequence[int], noun: str) -> str:
    """"2 conditions" where every count is 2, "2 to 3 conditions" where they differ."""
    low, high = min(counts, default=0), max(counts, default=0)
    return plural(low, noun) if low == high else f"{low} to {high} {noun}s"


# (no parenthesis of their own around what they quote: a label may hold one, and study.md's words nest none)
def bars(labels: Sequence[str], ylabel: str, reference: float | None = None,
         beside: tuple[str, str] | None = None, marked: bool = False) -> str:
    """An interval figure's: one point per label (``beside``: the names of two series drawn side by side)."""
    said = [f"Each point: a condition's mean {_one_line(ylabel)} over its seeds, for {plural(len(labels), 'condition')}"
            if beside is None else f"Two points per condition, for {plural(len(labels), 'condition')}: the mean over "
                                   f"its seeds of {beside[0]} and of {beside[1]}",
            f"its bar: {INTERVAL}"]
    if reference is not None:
        said.append(f"dashed line: {reference:g}")
    if marked:
        said.append("an open point marked ≥ k/n: a lower bound, k of its n seeds at the sweep's end")
    return "; ".join(said) + "."


def curves(names: Sequence[str], xlabel: str, ylabel: str, banded: bool, reference: float | None = None) -> str:
    """A curves figure's: one line per name, its shading where ``banded``."""
    said = [f"{_one_line(ylabel)} against {_one_line(xlabel)}, one line per series: {listed(names)}"]
    if banded:
        said.append("shaded: each line's 95% interval over the seeds")
    if reference is not None:
        said.append(f"dashed line: {reference:g}, no change")
    return "; ".join(said) + "."


def scatter(groups: dict[str, int], xlabel: str, ylabel: str) -> str:
    """A scatter figure's: ``groups`` maps each series to its number of points."""
    return (f"Each point: a condition's means over its seeds of {_one_line(xlabel)}, across, and {_one_line(ylabel)}, "
            f"up; its bars: the two 95% intervals of those means; {plural(len(groups), 'series', 'series')}, each "
            f"joining its {_each(list(groups.values()), 'condition')} in order.")


def phase(rows: Sequence[str], cols: Sequence[str], label: str) -> str:
    """A phase diagram's: one cell per row and column."""
    return (f"Each cell: the {_one_line(label)} of one condition, its value printed; rows: {listed(rows)}; columns: "
            f"{listed(cols)}; \"not run\" where the design runs no condition.")


def distributions(groups: dict[str, int], ylabel: str) -> str:
    """A distributions figure's: ``groups`` maps each group to its number of finite values (one a seed)."""
    return (f"Each dot: one seed's {_one_line(ylabel)}, {_each(list(groups.values()), 'seed')} in each of "
            f"{plural(len(groups), 'group')}, over a box from its group's lower to upper quartile, the black line its "
            "median, the whiskers to the furthest value within 1.5 box lengths.")


def tradeoff(shown: int, rows: int, xlabel: str, ylabel: str, reference: str = "") -> str:
    """A trade-off figure's: ``shown`` of the ``rows`` conditions drawn (the rest not finite); ``reference``: its
    dashed line as its title says it ("(dashed: chance)", :func:`~downpour.studies.compare.bar_reference`)."""
    left = rows - shown
    return (f"Each point: a condition's mean {_one_line(ylabel)} over its seeds against its {_one_line(xlabel)}, for "
            f"{plural(shown, 'condition')}; its bar: {INTERVAL}"
            + (f"; {_one_line(reference).strip('()')}" if reference else "")
            + (f"; {plural(left, 'condition')} not drawn, {'its' if left == 1 else 'their'} figure not finite"
               if left else "") + ".")


def caption_of(path: Path) -> str:
    """The caption :func:`~downpour.studies.figures.save` kept in the PNG at ``path``; "" where it has none (a figure
    drawn before 2026-12-07) or cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as png:
            return str(getattr(png, "text", {}).get(KEY, ""))
    except (OSError, ValueError):
        return ""
