"""Holm's count over a study's comparisons in one sentence, with the one of smallest Holm p and its difference and
interval: the verdict's second sentence, after the study's claim (:meth:`~downpour.studies.base.Study.claim`, which
answers its question; :func:`~downpour.studies.run.verdict_text` puts both first, after the quick setting's warning).

It is a count, not the study's answer: it reads every comparison alike, and the one of smallest Holm p can be one the
design makes certain and the question does not ask about (the quick costs study's: L1 on the codes raises the held-out
reconstruction error; the quick first-layer study's: a fixed Gabor bank's stage-1 cost is higher than the layer
trained on that cost), so it follows the claim rather than opening the verdict, and says so. "" for a study that
records no comparison."""
from __future__ import annotations

import math
from typing import Any, Sequence

from downpour._names import plural
from downpour.studies.holm import said_reading, under_holm
from downpour.studies.words import difference

__all__ = ["headline"]

COUNT = "Holm's count over every comparison"     # (what the sentence is, said first)


def headline(rows: Sequence[dict[str, Any]]) -> str:
    """One sentence: how many of the study's comparisons hold under Holm's correction (family-wise 5%), and the one
    reading higher or lower of smallest Holm p."""
    tests = [(r, name, t) for r in rows for name, t in r.get("tests", {}).items()
             if math.isfinite(t.get("p_holm", math.nan))]      # (one not measured is in no family)
    if not tests:
        return ""
    read = sorted((x for x in tests if x[2]["reading"] in ("higher", "lower")), key=lambda x: x[2]["p_holm"])
    held = [x for x in read if under_holm(x[2]) == "holds"]
    if len(tests) == 1:
        if not read:
            return f"{COUNT}: its one comparison reads neither higher nor lower."
        return (f"{COUNT}: its one comparison, {_said(*read[0])}, "
                f"{'holds' if held else 'does not hold'} (Holm p {read[0][2]['p_holm']:.2g}).")
    counted = plural(len(tests), "comparison")
    if not read:
        return f"{COUNT}: none of the {counted} reads higher or lower."
    if not held:
        return (f"{COUNT}: none of the {counted} holds (family-wise 5%); "
                f"smallest Holm p, {read[0][2]['p_holm']:.2g}: {_said(*read[0])}.")
    hold = f"{len(held)} of the {counted} {'holds' if len(held) == 1 else 'hold'} (family-wise 5%)"
    return f"{COUNT}: {hold}; smallest Holm p: {_said(*held[0])}."


def _said(row: dict[str, Any], name: str, test: dict[str, Any]) -> str:
    """"gabor against learned: final stage-1 cost higher (Δ +5316 [+5159, +5473])" (the reading as the verdict's last
    paragraph names it, :func:`~downpour.studies.holm.said_reading`, with its difference); a correlation by its sign,
    with its ρ."""
    said = said_reading(row["condition"], name, test)
    triple = row.get("figures", {}).get(name)
    if not (isinstance(triple, list) and len(triple) == 3):
        return said
    # (whole numbers from 100: a stage-1 cost's "+5.32e+03" read as code)
    symbol = "ρ" if test.get("correlation") else "Δ"
    shown = difference(triple, '{:+.0f}' if abs(triple[0]) >= 100 else '{:+.3g}', aside=", {}")   # (no nesting)
    return f"{said} ({symbol} {shown})"
