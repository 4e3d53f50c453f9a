"""The rules a tie at the top of the choice was told against before the bootstrap range (2026-12-05), kept as the
reference they are checked against (tests/test_analysis_undecided.py, test_analysis_tie_figures.py,
test_analysis_tie_null.py) and timed against (bench/tie_null.py). No downpour code calls them since
``choice.chance_spread`` replaced them: a row of analysis.json from before carries its limit as computed then
(``tie_spread_limit``, without ``tie_rule``), and the report says which rule it was (report_notes.chosen_among,
report_controls.undecided_note); nothing is recomputed. Moved here from downpour/analysis/choice.py on 2026-12-05.
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
