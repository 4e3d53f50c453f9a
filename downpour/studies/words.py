"""Numbers as a verdict says them: a figure with its 95% interval, ``[value, low, high]``.

    percent(0.62)                        -> "62%"
    percent_ci([0.62, 0.55, 0.69])       -> "62% [55, 69]"
    against(0.0, "sync", 0.75)            -> "0% against sync's 75%"    (a rate beside the one it is compared with)
    points([0.031, -0.01, 0.07])         -> "+3.1 [-1.0, +7.0]"           (a difference of proportions)
    signed([0.031, -0.01, 0.07])         -> "+0.031 [-0.010, +0.070]"
    value_ci([0.4529, 0.45, 0.46])       -> "0.4529 [0.45, 0.46]"
    ratio([2.21, 1.95, 2.5])             -> "x2.21 [1.95, 2.5]"              (a paired ratio, gated / ungated)
    percent_ci([0.0, 0.0, 0.0])          -> "0% (the same in every seed)"   (a mean with no spread, as study.html)

An interval that is not finite (one seed, or a difference with no spread from fewer seeds than the
sign test needs) is said as "(no interval)" rather than printed as nan or inf, a difference's as "(no interval: too
few seeds to tell)", or, for a difference that was 0 in every seed, as "0.000 (no seed differed:
too few seeds to tell)"; a difference that is itself not finite (no seed
had both figures) reads "not measured". An interval's end near zero takes up to 2 more decimals, as the run report's
("[-2.1, -0.04]"; :func:`difference`), and so does the difference where its interval is on one side
of 0 ("+0.0002 [+0.0001, +0.001]"); a difference that rounds to zero is said unsigned ("0.0 points [-0.8, +0.8]", not
"-0.0", a direction the rounding has taken away), and an end keeps its sign unless it is 0, even where 2 more
decimals still round it to 0 ("[-2.1, -0.0], lower" for an end of -0.0003: it ends below 0, which the reading says).
"""
from __future__ import annotations

import math
import re
from typing import Sequence

from downpour.analysis.auc_words import off_zero, point_off_zero


def percent(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.0f}%"


SAME = "(the same in every seed)"


def no_spread(triple: Sequence[float]) -> bool:
    """Whether a mean's finite interval has no width, up to rounding: Student's t over seeds that all read the same
    (a Gabor bank's edge fraction, or 2 quick seeds' skipped share), as certain as a thousand seeds would be; study.html
    and the verdicts say it "the same in every seed"."""
    v, lo, hi = triple
    return math.isfinite(lo) and math.isfinite(hi) and lo <= v <= hi and hi - lo <= 1e-9 * abs(v)


def percent_ci(triple: Sequence[float]) -> str:
    """As study.html's table says it: a mean with no spread is "the same in every seed", not
    "0% [0, 0]" (the quick first-layer study's learned edge fraction, on 2 seeds)."""
    if no_spread(triple):
        return f"{percent(triple[0])} {SAME}"
    v, lo, hi = triple
    v, lo, hi = (round(100 * x) if math.isfinite(x) else x for x in (v, lo, hi))   # (an int: never "-0")
    return f"{v:.0f}% [{lo:.0f}, {hi:.0f}]" if math.isfinite(lo) else f"{v:.0f}%"


def against(rate: float, reference: str, reference_rate: float) -> str:
    """A rate said beside the rate of the condition it is compared with: "reached 0% vs sync (Δ -75 points)"
    would leave the reader to work out sync's own 75% from the difference."""
    return f"{percent(rate)} against {reference}'s {percent(reference_rate)}"


# a difference of exactly 0 unbounded both ways: every seed's was 0, on fewer seeds than the sign test needs
# (:func:`~downpour.studies.stats.paired_difference`; not "0.000 [0.000, 0.000], no detectable effect" on the quick
# setting's 2 seeds)
NO_SEED_DIFFERED = "no seed differed: too few seeds to tell"
# any other difference unbounded both ways: one seed, or seeds that moved in lock-step, fewer than the sign test needs
# (the quick flat-skipping study's padded probe, -1.7 points in both seeds: "(no interval)" alone would read as if
# one seed had been measured)
TOO_FEW = "no interval: too few seeds to tell"


def unbounded(triple: Sequence[float], difference: bool = True) -> str:
    """Why a figure with an end not finite has no interval: a ``difference`` 0 unbounded both ways, every seed's 0 on
    too few seeds (:data:`NO_SEED_DIFFERED`), another unbounded both ways :data:`TOO_FEW`, else "no interval" (a mean
    of one seed, or ends not a number; the verdicts' words and study.html's table
    alike, not "0 [−∞, ∞]")."""
    d, lo, hi = triple
    if difference and lo == -math.inf and hi == math.inf:
        return NO_SEED_DIFFERED if d == 0 else TOO_FEW
    return "no interval"


def difference(triple: Sequence[float], fmt: str = "{:+.3f}", unit: str = "", aside: str = " ({})") -> str:
    """A signed difference and its interval, ``fmt`` for each number (``unit`` after the value); ``aside`` says why an
    interval is missing beside the value (", {}" inside a parenthesis: "(Δ -0.50, no interval: ...)", none nested).
    A signed fixed-point ``fmt`` ("{:+.3f}") keeps an interval's end that is not 0 off zero with up to 2 more
    decimals, and the difference too where its interval is on one side of 0, as the run report's paired differences do
    (:func:`~downpour.analysis.auc_words.point_off_zero`: a Δ of 0.0002 reads so, not "0.000 [+0.000, +0.001]")."""
    d, lo, hi = triple
    if not math.isfinite(d):
        return "not measured"
    places = _decimals(fmt)
    number = fmt.format if places is None else (lambda x: off_zero(x, places))
    # (the value itself off zero only where its interval is on one side of 0: its sign is noise otherwise)
    value = _unsigned_if_zero(fmt.format(d) if places is None else point_off_zero(d, lo, hi, places))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{value}{unit}{aside.format(unbounded(triple))}"
    ends = (_unsigned_if_zero(number(e)) if e == 0 else number(e) for e in (lo, hi))
    return f"{value}{unit} [{', '.join(ends)}]"


def _decimals(fmt: str) -> int | None:
    """A signed fixed-point ``fmt``'s decimals ("{:+.3f}": 3), whose numbers :func:`difference` keeps off zero; else None."""
    fixed = re.fullmatch(r"\{:\+\.(\d+)f\}", fmt)
    return int(fixed.group(1)) if fixed else None


def _unsigned_if_zero(text: str) -> str:
    """'-0.0' and '+0.000' -> '0.0', '0.000'; any other number as it is."""
    try:
        zero = float(text) == 0
    except ValueError:           # (a format with text beside the number)
        zero = False
    return text[1:] if zero and text[:1] in "+-" else text


def points(triple: Sequence[float], decimals: int = 1, unit: str = "", aside: str = " ({})") -> str:
    """A difference of proportions in percentage points, signed: ``unit`` follows the value (" points"); ``aside`` as
    :func:`difference`'s."""
    return difference([100 * v for v in triple], f"{{:+.{decimals}f}}", unit, aside)


def signed(triple: Sequence[float], spec: str = ".3f") -> str:
    return difference(triple, f"{{:+{spec}}}")


def value_ci(triple: Sequence[float], spec: str = ".4g") -> str:
    v, lo, hi = triple
    if no_spread(triple):
        return f"{v:{spec}} {SAME}"
    return f"{v:{spec}} [{lo:{spec}}, {hi:{spec}}]" if math.isfinite(lo) else f"{v:{spec}}"


def ratio(triple: Sequence[float], spec: str = ".2f") -> str:
    """A paired ratio (:func:`~downpour.studies.stats.paired_ratio`) and its interval, its ends to 3 significant
    digits; one unbounded (too few seeds) says why, as :func:`difference` does."""
    v, lo, hi = triple
    if not math.isfinite(v):
        return "not measured"
    if not (lo > 0 and math.isfinite(hi)):
        return f"x{v:{spec}} ({unbounded([v - 1, -math.inf, math.inf])})"
    if no_spread(triple):
        return f"x{v:{spec}} {SAME}"
    return f"x{v:{spec}} [{lo:.3g}, {hi:.3g}]"
