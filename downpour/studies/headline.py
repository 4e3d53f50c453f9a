"""A verdict's first sentence: the study's answer as one short claim with its number, before the paragraphs that
give every figure (:func:`~downpour.studies.run.verdict_text` puts it first, after the quick setting's warning; the
index of a folder of studies shows it, :func:`~downpour.studies.index.first_sentence`). The verdicts opened with
their setup or a paragraph of every figure ("Each arm trained on 1.2 GFLOP ...", mechanisms' 700 characters), and the
index showed that.

The claim is what Holm's correction over the study's comparisons keeps (:func:`~downpour.studies.stats.holm`, run
first): how many of its comparisons hold, and the surest with its difference and interval; where none holds, the
nearest with its Holm p; "" for a study that records no comparison (its own first sentence then leads)."""
from __future__ import annotations

import math
from typing import Any, Sequence

from downpour._names import plural
from downpour.studies.figure_words import figure_words
from downpour.studies.words import difference

__all__ = ["headline"]

ALPHA = 0.05        # Holm's family-wise level, as the verdict's last paragraph reads it


def headline(rows: Sequence[dict[str, Any]]) -> str:
    """One sentence: how many of the study's comparisons hold under Holm's correction, and its surest reading."""
    tests = [(r, name, t) for r in rows for name, t in r.get("tests", {}).items()
             if math.isfinite(t.get("p_holm", math.nan))]      # (one not measured is in no family)
    if not tests:
        return ""
    read = sorted((x for x in tests if x[2]["reading"] in ("higher", "lower")), key=lambda x: x[2]["p_holm"])
    counted = plural(len(tests), "comparison")
    none = f"None of the {counted}" if len(tests) > 1 else "The one comparison"     # ("None of the 1 comparison")
    if not read:
        reads = "reads higher or lower" if len(tests) > 1 else "reads neither higher nor lower"
        return f"{none} {reads}: no effect is found at these seeds."
    held = [x for x in read if x[2]["p_holm"] < ALPHA]
    if not held:
        said = "holds" if len(tests) > 1 else "does not hold"
        return (f"{none} {said} under Holm's correction; {'the nearest' if len(tests) > 1 else 'it'}, "
                f"{_said(*read[0])}, has Holm p {read[0][2]['p_holm']:.2g}.")
    hold = f"{len(held)} of the {counted} {'holds' if len(held) == 1 else 'hold'} under Holm's correction"
    return f"{hold}{'' if len(held) == 1 else ', the surest'}: {_said(*held[0])}."


def _said(row: dict[str, Any], name: str, test: dict[str, Any]) -> str:
    """"gabor against learned: first stage's cost higher (Δ +5316 [+5159, +5473])"; a correlation by its sign."""
    if test.get("correlation"):
        reading = {"higher": "positive", "lower": "negative"}[test["reading"]]
    else:
        reading = test["reading"]
    against = f" against {test['against']}" if test.get("against") else ""
    triple = row.get("figures", {}).get(name)
    if not (isinstance(triple, list) and len(triple) == 3):
        return f"{row['condition']}{against}: {figure_words(name)} {reading}"
    # (whole numbers from 100: a stage-1 cost's "+5.32e+03" read as code)
    value = f" (Δ {difference(triple, '{:+.0f}' if abs(triple[0]) >= 100 else '{:+.3g}')})"
    return f"{row['condition']}{against}: {figure_words(name)} {reading}{value}"
