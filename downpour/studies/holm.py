"""Holm's correction over a study's comparisons, and what a verdict says of a reading it does not keep.

Every comparison a verdict reads is recorded with its p-value (:func:`~downpour.studies.stats.paired_test`,
:func:`~downpour.studies.stats.record_test`); :func:`holm` adjusts a study's comparisons together: with 35
comparisons at 95% and no effect anywhere, about 1.75 would read "higher" or "lower"; Holm's step-down keeps the
chance of any such false reading in the whole study under 5%. A reading that holds on its own interval but not after
the correction is a lead (:func:`lead`): each verdict marks it (:func:`lead_mark`), and :func:`family_paragraph`
says which readings hold.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from downpour._names import plural
from downpour.studies.figure_words import figure_words

LEAD = " (a lead: not after Holm's correction)"   # beside a reading :func:`lead` holds
LEAD_IN_LIST = " (a lead)"      # beside each name in a list of them, where the whole mark would repeat
LEAD_IN_ASIDE = ", a lead"      # inside a parenthesis already open ("lower, a lead"): no second one (tests/nesting.py)
ALPHA = 0.05      # Holm's family-wise level: a reading holds below it, else it is a lead


def under_holm(test: dict[str, Any], alpha: float = ALPHA) -> str:
    """What Holm's correction (:func:`holm`) makes of one recorded comparison, ``row["tests"][name]``: "holds" where it
    reads higher or lower and its Holm p is under ``alpha``, "a lead" where it reads so and its Holm p is not (NaN
    included), "" for any other reading. The one rule: :func:`lead`, :func:`family_paragraph`, the headline and the
    comparisons table's "under Holm" column all ask it. (No Holm p recorded, :func:`holm` not run: "holds", as
    :func:`lead` has always read it, so a verdict tested without Holm's step marks no lead.)"""
    if test.get("reading") not in ("higher", "lower"):
        return ""
    return "holds" if test.get("p_holm", 0.0) < alpha else "a lead"


def lead(row: dict[str, Any], test: str, alpha: float = ALPHA) -> bool:
    """Whether the comparison recorded as ``row["tests"][test]`` reads higher or lower on its own interval but not
    after Holm's correction over the study (:func:`holm`, run before the verdict; :func:`under_holm`): what
    :func:`family_paragraph` names a lead, and what every verdict marks beside the reading (:data:`LEAD`) or a
    conclusion drawn from it."""
    return under_holm(row.get("tests", {}).get(test, {}), alpha) == "a lead"


def lead_mark(row: dict[str, Any], test: str, mark: str = LEAD) -> str:
    """``mark`` where the comparison ``test`` of ``row`` is a lead (:func:`lead`), else "": what a verdict puts
    beside its reading (:data:`LEAD_IN_LIST` in a list of them, :data:`LEAD_IN_ASIDE` inside a
    parenthesis)."""
    return mark if lead(row, test) else ""


def reading_in_aside(row: dict[str, Any], key: str) -> str:
    """"lower, a lead": how ``row``'s paired difference ``delta_KEY`` reads (``row["extra"]["readings"][key]``) where
    a verdict says it inside a parenthesis, so its lead mark opens none of its own."""
    return row["extra"]["readings"][key] + lead_mark(row, f"delta_{key}", LEAD_IN_ASIDE)


def leads_of(n: int, of: int) -> str:
    """What to say beside a count of ``of`` readings, ``n`` of them leads (:func:`lead`): a conclusion that
    counts them says so rather than passing them off as findings ("" when ``n`` is 0)."""
    if not n:
        return ""
    return LEAD if of == 1 else (f" ({'all' if n == of else n} of them {'a lead' if n == 1 else 'leads'}: "
                                 "not after Holm's correction)")


def holm(rows: Sequence[dict[str, Any]]) -> int:
    """Holm's step-down adjustment over every comparison recorded in ``rows`` (one family: a study's
    verdict), written beside each as ``p_holm``; returns the family's size. A comparison that was not
    measured (a non-finite p) is not in the family."""
    tests = [t for r in rows for t in r.get("tests", {}).values()]
    family = sorted((t for t in tests if math.isfinite(t["p"])), key=lambda t: t["p"])
    m, running = len(family), 0.0
    for i, t in enumerate(family):
        running = max(running, min(1.0, (m - i) * t["p"]))
        t["p_holm"] = running
    for t in tests:
        t.setdefault("p_holm", float("nan"))
    return m


def said_reading(condition: str, name: str, test: dict[str, Any]) -> str:
    """"gabor against learned: final stage-1 cost higher": a comparison's reading as the verdict names it (a
    correlation by its sign, "positive" or "negative")."""
    said = {"higher": "positive", "lower": "negative"}[test["reading"]] if test.get("correlation") else test["reading"]
    against = f" against {test['against']}" if test.get("against") else ""     # (recorded by stats.record_test)
    return f"{condition}{against}: {figure_words(name)} {said}"


def family_paragraph(rows: Sequence[dict[str, Any]], alpha: float = ALPHA) -> str:
    """Which "higher" / "lower" readings hold under :func:`holm` (run first) over the whole study ("" when
    it recorded no comparison)."""
    tests = [(r["condition"], name, t) for r in rows for name, t in r.get("tests", {}).items()]
    if not tests:
        return ""
    m = sum(math.isfinite(t["p_holm"]) for _, _, t in tests)
    read = [(c, name, t) for c, name, t in tests if t["reading"] in ("higher", "lower")]
    # (what it counts, said: a count in an earlier paragraph, over one kind of comparison, would read as
    # contradicting it: "Over 2 comparisons ..." then "Holm's correction over the 9 paired comparisons")
    # ("all" of two or more: "over all 1 paired comparison" or "all 0" read wrong)
    corr = sum(math.isfinite(t["p_holm"]) and bool(t.get("correlation")) for _, _, t in tests)
    what = ("every figure it compares between a condition and its reference" if not corr else
            f"{plural(m - corr, 'figure')} compared between a condition and its reference and "
            f"{plural(corr, 'rank correlation')}, each read for its sign" if m > corr else
            f"{'every' if corr > 1 else 'the'} rank correlation it reads for its sign")
    counted = plural(m, "reading" if corr else "paired comparison")
    said = (f"Holm's correction over {'all' if m > 1 else 'the'} {counted} this "
            f"verdict reads ({what}, in all its paragraphs)")
    if not read:
        return f"{said}: none reads higher or lower, so there is nothing for it to take back."

    held = [said_reading(c, name, t) for c, name, t in read if under_holm(t, alpha) == "holds"]
    leads = [said_reading(c, name, t) for c, name, t in read if under_holm(t, alpha) == "a lead"]
    kept = (f"{len(held)} of the {len(read)} readings higher or lower {'holds' if len(held) == 1 else 'hold'}"
            if len(read) > 1 else f"the one reading higher or lower {'holds' if held else 'does not hold'}")
    # (not "1 of the 1 readings hold"; nor "1 of the 4 readings higher or lower hold", the quick costs study's)
    text = f"{said}: {kept} (family-wise 5%)" + (f": {'; '.join(held)}." if held else ".")
    if leads:
        text += (f" {'These are leads' if len(leads) > 1 else 'This is a lead'} to recheck with more seeds, "
                 f"not {'findings' if len(leads) > 1 else 'a finding'}: {'; '.join(leads)}.")
    return text
