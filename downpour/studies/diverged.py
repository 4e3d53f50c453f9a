"""A cell whose run diverged, counted out the same way in every study whose cells train a run.

    figures = counted_out("study costs: cell 'less/l1=0.01', seed 3", err)   # {"diverged": 1.0}, and a warning
    readable = with_counted_out(cells)        # each such cell NaN for the figures its condition's trained cells hold
    rows, readable = summarised(study, conditions, cells, seeds)   # the two above, the summary, each row's ``diverged``

A run diverges when every step was non-finite (:class:`~downpour.errors.Diverged` from ``runners.train``) or its
loss ran away with finite numbers (its summary's ``diverged``: :func:`~downpour.studies.trained.trained_run` raises
``Diverged`` for it too). The framework catches it around every cell (:mod:`downpour.studies.cells`), so no study
copies a try/except: its cell is ``{"diverged": 1.0}`` (:data:`~downpour.studies.stats.DIVERGED`), with the design's
figures where a study can give them without training (the measured studies, :mod:`downpour.studies.measure`), left out
of every interval and named in the verdict (:func:`~downpour.studies.stats.diverged_paragraph`), in every study:
otherwise a costs, first-layer or flat-skipping cell whose every step is non-finite would end the study (the cells done
kept in cells.jsonl, the same cell ending every rerun), and one whose loss ran away would be measured as trained. The
staleness study's ``diverged`` is an outcome it measures (its own line on the simulator), recorded beside every figure:
its cells are not counted out (``Study.counts_out_diverged`` False).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from downpour.studies.base import Cells
from downpour.studies.designs import Condition
from downpour.studies.stats import DIVERGED, mean_ci

log = logging.getLogger(__name__)


def counted_out(where: str, err: BaseException, design: dict[str, float] | None = None) -> dict[str, float]:
    """The cell of a run that diverged (``err``, said as a warning after ``where``): ``{"diverged": 1.0}`` with the
    ``design`` figures, those that need no training."""
    log.warning("%s diverged: %s", where, err)
    return {DIVERGED: 1.0, **(design or {})}


def _counted_out(cells: Cells) -> list[tuple[str, int]]:
    return [key for key, g in cells.items() if g.get(DIVERGED)]


def with_counted_out(cells: Cells) -> Cells:
    """``cells`` with each counted-out cell given NaN (not measured: the intervals leave its seed out) for every figure
    its condition's trained cells hold, or where none trained, the study's; its own figures kept. A study's
    ``summarise`` and ``figures`` read them as they read any other cell."""
    out = dict(cells)
    for name, seed in _counted_out(cells):
        trained = [g for (c, _), g in cells.items() if not g.get(DIVERGED) and c == name] or \
                  [g for g in cells.values() if not g.get(DIVERGED)]
        out[(name, seed)] = {**{k: math.nan for g in trained for k in g}, **cells[(name, seed)]}
    return out


def all_counted_out(cells: Cells) -> bool:
    """Whether every cell was counted out: no figure but the design's to read (some studies' summaries read a trained
    figure of every cell: they get :func:`untrained_rows` instead)."""
    return bool(cells) and len(_counted_out(cells)) == len(cells)


def summarised(study: Any, conditions: Sequence[Condition], cells: Cells,
               seeds: Sequence[int]) -> tuple[list[dict[str, Any]], Cells]:
    """``study``'s rows of ``cells`` and the cells its figures read: where it counts a diverged cell out
    (``Study.counts_out_diverged``), each read as not measured (:func:`with_counted_out`), the rows
    :func:`untrained_rows` where every cell was, and each row's ``diverged`` counted (:func:`count_diverged`): here
    alone, for every study (the measured studies' ``compare_rows`` does not count them again)."""
    if not study.counts_out_diverged:
        return study.summarise(conditions, cells, seeds), cells
    cells = with_counted_out(cells)
    rows = untrained_rows(conditions, cells, seeds) if all_counted_out(cells) else study.summarise(conditions, cells, seeds)
    count_diverged(rows, cells, seeds)
    return rows, cells


def untrained_rows(conditions: Sequence[Condition], cells: Cells, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One row per condition of a study whose every cell was counted out: its design's figures (none where the study
    gives none); :func:`count_diverged` gives it ``diverged``, every seed."""
    rows = []
    for c in conditions:
        got = [cells[(c.name, s)] for s in seeds]
        keys = [k for k in dict.fromkeys(k for g in got for k in g) if k != DIVERGED]
        rows.append({"condition": c.name, "group": c.group, "params": c.params, "n": len(seeds),
                     "figures": {k: list(mean_ci([g.get(k, math.nan) for g in got])) for k in keys}, "extra": {}})
    return rows


def count_diverged(rows: list[dict[str, Any]], cells: Cells, seeds: Sequence[int]) -> None:
    """Each row's ``diverged``, its seeds counted out (no study's summary counts them itself). A row
    that is not a condition's, one of several a condition's cells give (flat-skipping's threshold and image set),
    counts its ``group``'s, so its counted-out seeds are named in the verdict."""
    out = set(_counted_out(cells))
    for row in rows:
        name = row["condition"] if any((row["condition"], s) in cells for s in seeds) else row.get("group")
        n = sum((name, s) in out for s in seeds)
        if n:
            row[DIVERGED] = n
