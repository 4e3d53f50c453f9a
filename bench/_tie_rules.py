"""The rules a tie at the top of the choice was told against before the pooled bootstrap range (2026-12-05), kept as
the reference they are checked against (tests/test_analysis_undecided.py, test_analysis_tie_figures.py,
test_analysis_tie_null.py), timed against (bench/tie_null.py) and calibrated against (bench/tie_calibration.py), and
candidates measured beside it. No downpour code calls them since ``choice.chance_spread`` replaced them: a row of
analysis.json from before carries its limit as computed then (``tie_spread_limit``; ``tie_rule`` "bootstrap range"
for :func:`own_range_spread`'s, none for the studentized range's), and the report says which rule it was
(report_notes.tie_limit_words); nothing is recomputed. Moved here from downpour/analysis/choice.py on 2026-12-05.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.stats import studentized_range

from downpour.analysis.choice import ALIKE, STILL

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


# Candidates measured beside the pooled range for its residuals (bench/tie_calibration.py, docs/analysis.md,
# 2026-12-05, h-tie5), not adopted: big alike ties at moderate AUC under-called, and a unit at AUC 1.000 stays at 0.

@functools.lru_cache(maxsize=None)
def _normal_ranges(tied: int) -> tuple[np.ndarray, np.ndarray]:
    """For 2..``tied`` independent standard normals: (T - 1,) their range's mean over the rms of their deviations
    from their mean (E[R] / sqrt((T - 1) / T); 1.596 for 2, 4.54 for 50) and the range's :data:`ALIKE` point over
    its mean (2.45 for 2, 1.26 for 50), both by quadrature on a grid of 0.0045."""
    from scipy.stats import norm
    x = np.linspace(-9.0, 9.0, 4001)
    dx, cdf, pdf = x[1] - x[0], norm.cdf(x), norm.pdf(x)
    t = np.arange(2, max(int(tied), 2) + 1)[:, None]
    mean = (1.0 - cdf ** t - (1.0 - cdf) ** t).sum(axis=1) * dx
    r = np.linspace(0.0, 12.0, 1201)
    # P(R <= r) = T int phi(x) (Phi(x + r) - Phi(x))^(T - 1) dx
    below = np.stack([(t * pdf * np.clip(norm.cdf(x + s) - cdf, 0.0, 1.0) ** (t - 1)).sum(axis=1) * dx for s in r], 1)
    q = np.array([np.interp(ALIKE, b, r) for b in below])
    return mean / np.sqrt((t[:, 0] - 1) / t[:, 0]), q / mean


def pooled_deviations(replicates: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``choice.chance_spread``'s (T, B) deviations: each unit's replicates minus its observed AUC, scaled to the
    median replicate sd of the units that move (a still one's 0); finite replicates only."""
    d = np.asarray(replicates, dtype=np.float64) - np.asarray(observed, dtype=np.float64)[:, None]
    d = d[:, np.isfinite(d).all(axis=0)]
    sd = d.std(axis=1)
    moving = sd > STILL
    return d * (np.median(sd[moving]) / np.where(moving, sd, np.inf))[:, None] if moving.any() else 0.0 * d


def mean_range_spread(replicates: np.ndarray, observed: np.ndarray) -> float:
    """The pooled deviations' (:func:`pooled_deviations`) *mean* range times a normal range's :data:`ALIKE` point over
    its mean, for as many independent units as give their range over their rms deviation (``T_eff``, 2 for two
    clusters of copies, T for T exchangeable units; :func:`_normal_ranges`). The bootstrap's range is right on
    average (1-4% over the spread's mean) but over-dispersed in big ties at moderate AUC (its 95% point over its
    mean 1.39 against the spread's 1.34 and the normal's 1.34, 20 units at 0.7 on 30 + 30), and a big tie's range
    is tight, so a limit 4% high halves the call rate; this keeps the mean and takes the dispersion from the normal."""
    d = pooled_deviations(replicates, observed)
    if len(d) < 2 or d.shape[1] == 0:
        return 0.0 if len(d) < 2 else float("nan")
    mean = float(np.ptp(d, axis=0).mean())
    rms = float(np.sqrt(((d - d.mean(axis=0)) ** 2).mean()))
    if rms == 0.0:
        return 0.0
    ratio, kappa = _normal_ranges(len(d))
    return mean * float(np.interp(mean / rms, ratio, kappa))


def margin_half_pair(pos: np.ndarray, neg: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray) -> np.ndarray:
    """(T, B) half a pair of each unit's margin (its lowest-scoring face against its highest-scoring negative) in each
    replicate's AUC: 0.5 w_face w_negative / (the replicate's faces' weight x negatives' weight). Subtracted from a
    unit's replicates it moves a unit at AUC 1.000, whose replicates are still, as a unit that lost that pair would."""
    f, g = np.argmin(pos, axis=1), np.argmax(neg, axis=1)
    den = w_pos.sum(axis=1) * w_neg.sum(axis=1)                                  # (B,)
    return 0.5 * (w_pos[:, f] * w_neg[:, g]).T / den


def half_pair_spread(replicates: np.ndarray, observed: np.ndarray, margin: np.ndarray) -> float:
    """``choice.chance_spread`` with every unit's replicates less its ``margin`` (:func:`margin_half_pair`), the
    median replicate sd still that of the units that move on their own: a unit at 1.000 is scaled to it as one
    a pair short is, where ``chance_spread`` leaves it at 0 (the limit jumps when a unit's last lost pair goes)."""
    d0 = np.asarray(replicates, dtype=np.float64) - np.asarray(observed, dtype=np.float64)[:, None]
    if len(d0) < 2:
        return 0.0
    ok = np.isfinite(d0).all(axis=0)
    if not ok.any():
        return float("nan")
    sd0 = d0[:, ok].std(axis=1)
    moving = sd0 > STILL
    if not moving.any():
        return 0.0
    d = d0[:, ok] - margin[:, ok]
    sd = d.std(axis=1)
    return float(np.quantile(np.ptp(d * (np.median(sd0[moving]) / np.where(sd > STILL, sd, np.inf))[:, None], axis=0),
                             ALIKE))
