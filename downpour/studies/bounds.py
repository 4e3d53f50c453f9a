"""Means that are only lower bounds, as the figures and their captions say them: a condition's invariance range whose
mean counts seeds where the range ran to the sweep's end (``row["censored"][key]``, :func:`~downpour.studies.compare.
compare_rows`) is at least that, not measured, as the verdict and the table say too; drawn like a measured one it would
mislead (Q4's 16-seed run: glimpse's scale and translation means each counted 8 of 16 seeds at the end)."""
from __future__ import annotations

from typing import Any, Sequence

BESIDE = ("", "_auc")       # the keys a study figure named after ``key`` draws: ``key``, and its AUC's beside it


def lower_bound_marks(rows: Sequence[dict[str, Any]], key: str) -> list[str]:
    """Per row, "" for a measured ``key``, or "≥ k/n" where k of its n seeds ran to the sweep's end."""
    return [f"≥ {k}/{r['n']}" if (k := r.get("censored", {}).get(key)) else "" for r in rows]


def bound_caption(rows: Sequence[dict[str, Any]], stem: str) -> str:
    """The caption of figure ``stem`` (named after the key it draws, :data:`BESIDE`): for each key drawn that a row
    flags, the conditions whose mean is a lower bound and in how many seeds; "" where none is."""
    said = []
    for key in (stem + s for s in BESIDE):
        ends = [f"{r['condition']} in {r['censored'][key]} of {r['n']} seeds" for r in rows
                if r.get("censored", {}).get(key) and key in r.get("figures", {})]
        if ends:
            said.append(f"{key} ran to the sweep's end for {', '.join(ends)}: at least that")
    if not said:
        return ""
    return ("Open markers (≥ k/n: k of n seeds at the sweep's end) are lower bounds, not measured means: "
            + "; ".join(said) + ".")
