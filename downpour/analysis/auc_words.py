"""The face test's numbers in its words and tables: an AUC with its interval, a list of baselines, a paired difference."""
from __future__ import annotations

from typing import Any


def auc_ci(row: dict[str, Any]) -> str:
    """'0.749 [0.624, 0.869]': a row's AUC and its 95% interval."""
    return f"{row['auc']:.3f} [{row['auc_ci'][0]:.3f}, {row['auc_ci'][1]:.3f}]"


def listing(methods: list[str], group: dict[str, dict[str, Any]]) -> str:
    """'random weights, same architecture (0.766 [0.640, 0.874]), ...': each method with its row's AUC."""
    return ", ".join(f"{m} ({auc_ci(group[m])})" for m in methods)


def paired_words(paired: dict[str, dict[str, Any]], methods: tuple[str, ...]) -> str:
    """' Paired on the same images, its AUC minus the twin's +0.12 [+0.03, +0.21]; ...' (empty if unpaired)."""
    parts = [f"{m}'s {point_off_zero(p['delta'], *p['ci'])} [{off_zero(p['ci'][0])}, {off_zero(p['ci'][1])}]"
             for m in methods if (p := paired.get(m)) is not None]
    return f" Paired on the same images, its AUC minus {'; minus '.join(parts)}." if parts else ""


def off_zero(v: float, decimals: int = 2) -> str:
    """A paired difference or its interval's end to ``decimals`` (2), or to as many more (up to 2 more) as keep it off
    zero (the studies' differences too, at their own decimals: :func:`~downpour.studies.words.difference` prints a
    Δ of 0.0002 so, not as "0.000 [+0.000, +0.001]"):
    the verdict's *beats* reads its sign, so '+0.003', not '+0.00' (at 2 decimals an interval [+0.0028, +0.23] reads
    "[+0.00, +0.23]" beside "beats gradient energy", as if it touched 0, and a difference "+0.00 [+0.002, +0.01]",
    outside the interval beside it)."""
    return next((f"{v:+.{d}f}" for d in range(decimals, decimals + 3) if round(v, d) != 0), f"{v:+.{decimals}f}")


def point_off_zero(v: float, low: float, high: float, decimals: int = 2) -> str:
    """A paired difference beside its interval [``low``, ``high``]: kept off zero (:func:`off_zero`) where the interval
    lies on one side of 0, else to ``decimals`` (the run report's and the studies' alike): its sign is then noise, and
    "-0.03 points [-0.8, +0.8]" (the costs verdict's probe, "0.0 points" at two decimals) would give it two decimals
    its interval does not support."""
    return off_zero(v, decimals) if low > 0 or high < 0 else f"{v:+.{decimals}f}"
