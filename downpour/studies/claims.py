"""The words of a study's claim (:meth:`~downpour.studies.base.Study.claim`): its question answered in one sentence
from its rows, the verdict's first (the index's line). A comparison is said by its reading, turned into a verb that
follows the numbers ("raises the digits probe accuracy (Δ +0.066 [+0.050, +0.083], a lead)", "does not change ...",
"has an inconclusive effect on ..."), so that the sentence changes with them; never a fixed conclusion.

"a lead": the comparison reads higher or lower on its own interval but Holm's correction over the study does not keep
it (:func:`~downpour.studies.holm.lead`), as the verdict's paragraphs mark it."""
from __future__ import annotations

import math
from typing import Any

from downpour.studies import words
from downpour.studies.holm import LEAD_IN_ASIDE, lead_mark

__all__ = ["VERBS", "change", "delta"]

# a reading -> how the claim says it of ``what`` ("{}": the figure's words)
VERBS = {"higher": "raises {}", "lower": "lowers {}", "no detectable effect": "does not change {}",
         "inconclusive": "has an inconclusive effect on {}", "not measured": "leaves {} unmeasured"}


def _reading(row: dict[str, Any], test: str) -> str:
    """The reading recorded for ``test`` in ``row`` ("not measured" where none is)."""
    return row.get("tests", {}).get(test, {}).get("reading", "not measured")


def change(row: dict[str, Any], test: str, what: str, fmt: str = "{:+.3f}", points: int | None = None) -> str:
    """'lowers the digits probe accuracy (Δ -0.440 [-0.567, -0.313], a lead)': the comparison ``test`` of ``row`` (its
    paired difference the row's figure of the same name; ``points``: a fraction said in percentage points with that
    many decimals, "-20.8 points [-31.4, -10.2]") as a verb phrase of :data:`VERBS`, every study's. One parenthesis,
    none inside it: a difference with no interval reads "(Δ -0.017, no interval: too few seeds to tell)"."""
    said = VERBS.get(_reading(row, test), VERBS["inconclusive"]).format(what)
    shown = delta(row, test, fmt, points)
    return f"{said} ({shown})" if shown else said


def delta(row: dict[str, Any], test: str, fmt: str = "{:+.3f}", points: int | None = None) -> str:
    """"Δ -0.440 [-0.567, -0.313], a lead": what :func:`change` puts in its parenthesis (``fmt`` and ``points`` as
    there), for a verdict that says the reading in its own words; "" where the difference was not measured."""
    figure = row["figures"].get(test, [math.nan] * 3)
    if not math.isfinite(figure[0]):
        return ""
    shown = (words.points(figure, points, " points", aside=", {}") if points is not None
             else words.difference(figure, fmt, aside=", {}"))
    return f"Δ {shown}{lead_mark(row, test, LEAD_IN_ASIDE)}"
