"""The rules a tie at the top of the choice was told against before the pooled bootstrap range (2026-12-05), kept as
the reference they are checked against (tests/test_analysis_undecided.py, test_analysis_tie_figures.py,
test_analysis_tie_null.py), timed against (bench/tie_null.py) and calibrated against (bench/tie_calibration.py), and
a candidate measured beside it. No downpour code calls them since ``choice.chance_spread`` replaced them: a row of
analysis.json from before carries its limit as computed then (``tie_spread_limit``; ``tie_rule`` "bootstrap range"
for :func:`own_range_spread`'s, none for the studentized range's), and the report says which rule it was
(report_notes.tie_limit_words); nothing is recomputed. Moved here from downpour/analysis/choice.py on 2026-12-05.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.stats import studentized_range

from downpour.analysis.choice import ALIKE

Z95 = 1.959963984540054     # the normal's 97.5% point: a 95% interval is +-Z95 standard errors


def auc_width(auc: float, positives: int, negatives: int) -> float:
    """The width of a 95% interval of an AUC measured on ``positives`` x ``negatives`` test items, the cheap way
    (Hanley & McNeil 1982: 2 x 1.96 x its standard error, from the AUC and the counts alone). The best-neuron table
    (:func:`~downpour.analysis.selectivity.best_unit`) told its ties against :func:`tie_spread_limit` of it at the tied
    set's mean AUC until ``choice.chance_spread`` (2026-12-05); the reference that rule is checked against. At AUC 0 or
    1 the error is 0."""
    a, p, q = float(auc), int(positives), int(negatives)
    if p < 1 or q < 1:
        return float("nan")
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    var = (a * (1.0 - a) + (p - 1) * (q1 - a * a) + (q - 1) * (q2 - a * a)) / (p * q)
    return float(2.0 * Z95 * np.sqrt(max(var, 0.0)))


@functools.lru_cache(maxsize=None)
def range_quantile(tied: int) -> float:
    """The :data:`ALIKE` quantile of the range (max - min) of ``tied`` independent standard normal draws: the
    studentized range with infinite degrees of freedom (2.772 for 2, 3.858 for 5, 5.012 for 20, 7.332 for 929);
    0 for one draw, which has no range."""
    return float(studentized_range.ppf(ALIKE, tied, np.inf)) if tied > 1 else 0.0


def tie_spread_limit(tied: int, width: float) -> float:
    """The spread, max - min, of ``tied`` *independent* units' test AUCs above which they do not test alike (the
    limit of ``choice.undecided`` until ``choice.chance_spread``, 2026-12-05, which agrees with it for independent units):
    what the range of ``tied`` draws of one unit's AUC stays below in :data:`ALIKE` of ties, that AUC a normal whose
    95% interval is ``width`` wide (standard error ``width`` / (2 x 1.96)): :func:`range_quantile` x that error.
    0.707 ``width`` for 2 units, 0.984 for 5, 1.279 for 20, 1.870 for 929; NaN for an unknown width."""
    return range_quantile(int(tied)) * float(width) / (2.0 * Z95)


def own_range_spread(replicates: np.ndarray, observed: np.ndarray) -> float:
    """The limit of ``choice.undecided`` earlier on 2026-12-05 (a row's ``tie_rule`` "bootstrap range"): the
    :data:`ALIKE` quantile, over the (T, B) bootstrap ``replicates``, of the range across the units of each one's
    replicate AUC minus its own ``observed`` AUC, every unit at its own error. ``choice.chance_spread`` scales each to
    the tied set's median error since: near saturation a unit that lost pairs by chance widened the tie and its own
    replicates alike, and alike ties read undecided in 0-2% of ties (bench/tie_calibration.py, docs/analysis.md).
    0 for one unit; NaN where no replicate could score them."""
    d = np.asarray(replicates, dtype=np.float64) - np.asarray(observed, dtype=np.float64)[:, None]
    if len(d) < 2:
        return 0.0
    ok = np.isfinite(d).all(axis=0)
    return float(np.quantile(np.ptp(d[:, ok], axis=0), ALIKE)) if ok.any() else float("nan")


# A candidate measured beside the pooled range (bench/tie_calibration.py, docs/analysis.md, 2026-12-05), not adopted.

def asin_scale(auc: np.ndarray, pairs: int) -> np.ndarray:
    """AUCs (observed or replicate) on the arcsine-square-root scale, first moved 3/8 of a pair in from 0 and 1 of
    ``pairs`` (Anscombe's): an AUC's variance near 1 is about proportional to 1 - AUC (Hanley & McNeil's terms), which
    that scale makes constant (the logit over-stabilises: its variance grows as 1 / (1 - AUC)). Told by
    ``choice.chance_spread`` or :func:`own_range_spread` of the transformed replicates and observed AUCs."""
    return np.arcsin(np.sqrt((np.asarray(auc, dtype=np.float64) * pairs + 0.375) / (pairs + 0.75)))
