"""How a candidate (a unit, a pixel, a filter) is chosen for a concept: by its selection AUC, ties by Cohen's d.

    unit, sign, threshold, selection_auc, tied, tied_signs = choice(scores, y)   # scores (n, K), y (n,) in {0, 1}
    ranked, criterion, signs = order(scores, y)                      # every candidate, best first
    tied = top_tie(ranked, criterion)                                # those tied with the first on the criterion

The best single neuron's table (:mod:`downpour.analysis.selectivity`), the face test
(:mod:`downpour.analysis.controls`) and the headroom (:mod:`downpour.analysis.headroom`) all choose here, so
they choose alike. A tie is one definition (:func:`level`), used by the choice and by the tied set that the
invariance ranges are averaged over (:mod:`downpour.analysis.invariance`).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


def threshold_scan(scores: np.ndarray, y: np.ndarray,
                   sign: np.ndarray | int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best threshold rule for every column of ``scores``.

    scores: (N, U); y: (N,) in {0, 1}. A rule says "positive" when ``sign * (score - threshold) > 0``,
    sign = +1 (fires for the concept) or -1 (fires against it); ``sign`` (scalar or (U,)) fixes it,
    else the better one is taken. Returns (accuracy, threshold, sign), each (U,). Thresholds fall
    midway between distinct sorted scores, so tied scores are never split.
    """
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    n, u = scores.shape
    order = np.argsort(scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, axis=0)                 # (N, U) ascending
    pos = y[order].astype(np.int64)                               # (N, U) labels in that order
    # Threshold i (0..N) sits just below sorted score i: items [i:] are called positive.
    cum_pos = np.vstack([np.zeros((1, u), np.int64), np.cumsum(pos, axis=0)])       # (N+1, U)
    cum_neg = np.arange(n + 1)[:, None] - cum_pos
    n_pos = int(y.sum())
    correct_up = cum_neg + (n_pos - cum_pos)                      # sign +1
    correct_down = cum_pos + ((n - n_pos) - cum_neg)              # sign -1
    # Only cut between distinct values (or at the ends).
    valid = np.ones((n + 1, u), dtype=bool)
    valid[1:n] = s[1:] > s[:-1]
    correct_up = np.where(valid, correct_up, -1)
    correct_down = np.where(valid, correct_down, -1)
    best_up, best_down = correct_up.argmax(axis=0), correct_down.argmax(axis=0)
    up = correct_up[best_up, np.arange(u)]
    down = correct_down[best_down, np.arange(u)]
    if sign is None:
        sign = np.where(up >= down, 1, -1)
    else:
        sign = np.broadcast_to(np.where(np.asarray(sign) < 0, -1, 1), (u,))
    cut = np.where(sign > 0, best_up, best_down)
    padded = np.vstack([s[:1] - 1.0, s, s[-1:] + 1.0])            # (N+2, U): sentinels beyond both ends
    threshold = 0.5 * (padded[cut, np.arange(u)] + padded[cut + 1, np.arange(u)])
    return np.where(sign > 0, up, down) / n, threshold, sign


PAIRWISE_LIMIT = 1_000_000     # pairs x columns below which comparing pairs beats ranking (measured: 0.97 at 1.28 M)


def auc_scores(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of every column (Mann-Whitney, ties averaged): (N, U), (N,) -> (U,).

    Small sets (a 30-image selection split, 50 splits, thousands of columns) compare every pair
    directly, up to a million pairs x columns (a 30-image split of 512 units: 3.8x faster than ranking,
    ``bench/face_test.py``); larger ones rank (with a limit of 4 million, lfw's 140 training images over 512 units
    compared pairs 1.3x slower than ranking). Both count the same
    half-integers, so they agree bit for bit. NaN for every column where ``y`` lacks a class: no pair to rank (a 0
    there would read to the choice as a perfect unit, "selection AUC 1.0", on images of one label).
    """
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not (n_pos and n_neg):
        return np.full(scores.shape[1], np.nan)
    if n_pos * n_neg * scores.shape[1] <= PAIRWISE_LIMIT:
        diff = scores[y][:, None, :] - scores[~y][None, :, :]            # (P, N-P, U)
        return ((diff > 0).sum(axis=(0, 1)) + 0.5 * (diff == 0).sum(axis=(0, 1))) / max(n_pos * n_neg, 1)
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=0)
    return (ranks[y].sum(axis=0) - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1)


def eligible(scores: np.ndarray, against: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """(K,) bool: candidates whose responses are finite everywhere the choice looks and not constant on
    the selection images. A NaN compares as neither higher nor tied, so an all-NaN unit scored AUC 0
    (chosen "against", reported as 1.0); a dead unit's 0.5 beat real units on a localizer's worst AUC."""
    ok = np.isfinite(scores).all(axis=0) & (np.ptp(np.where(np.isfinite(scores), scores, 0.0), axis=0) > 0)
    for negatives in against:
        ok &= np.isfinite(negatives).all(axis=0)
    return ok


def ranking(scores: np.ndarray, y: np.ndarray, against: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """What the choice maximises, per candidate, and the side each one falls on: (K,), (K,) for (n, K)
    scores and (n,) labels.

    The side (+1 fires for label 1, -1 against) is that of the AUC on ``y``. Without ``against`` the
    criterion is that AUC in its own direction, ``|AUC - 0.5|``; with it (a localizer: ``(q_i, K)``
    scores of further negative sets, e.g. controls built from the choosing faces) it is the candidate's
    *worst* AUC, in that direction, over ``y``'s negatives and each of those sets. A candidate that is
    not :func:`eligible` gets -inf.
    """
    auc = auc_scores(scores, y)                                             # (K,)
    sign = np.where(auc >= 0.5, 1, -1)
    ok = eligible(scores, against)
    if not against:
        return np.where(ok, np.abs(auc - 0.5), -np.inf), sign
    faces = scores[np.asarray(y) == 1]
    worst = np.where(sign > 0, auc, 1.0 - auc)
    for negatives in against:
        labels = np.r_[np.ones(len(faces)), np.zeros(len(negatives))]
        other = auc_scores(np.concatenate([faces, negatives]), labels)
        worst = np.minimum(worst, np.where(sign > 0, other, 1.0 - other))
    return np.where(ok, worst, -np.inf), sign


class NoCandidate(ValueError):
    """No unit (candidate) of a layer can be chosen: every one has non-finite responses or none varies."""


def separation(scores: np.ndarray, y: np.ndarray, sign: np.ndarray,
               against: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """What breaks a tie of :func:`ranking`: (K,) Cohen's d of every candidate in its sign's direction, (mean of
    label 1 - mean of label 0) / pooled within-class std, for (n, K) scores and (n,) labels; with ``against``, its
    worst d over ``y``'s negatives and each of those sets (as :func:`ranking` takes the worst AUC).

    An AUC says whether the concept's images rank above the others, not how far: with 4 concept images to choose on,
    tens of pixels rank all 4 on top (AUC 1.0 for a median 11-17 of 1,024 per folder of 8 stripes among 148 images), and the lowest
    index took one whatever it did with the rest. Under equal-variance normal responses the AUC is Phi(d / sqrt 2), so
    d is the AUC's own estimate that sees the distance. Measured on 10 rare folder concepts (8 of 148: stripes, or
    sklearn's 3s; a 200-step cat-demo each; 230 splits), mean test AUC lowest index -> d: best pixel 0.665 -> 0.718
    (+0.053 ± 0.013), twin +0.005, learned +0.001, random filters -0.020 ± 0.013 (the gap between minima, or an AUC
    smoothed by a normal kernel, did no better: pixel +0.011, +0.035; filters -0.019, -0.022).
    """
    y = np.asarray(y) == 1
    faces = scores[y]

    def d(negatives: np.ndarray) -> np.ndarray:
        p, q = len(faces), len(negatives)
        pooled = ((p - 1) * faces.var(axis=0, ddof=min(1, p - 1)) + (q - 1) * negatives.var(axis=0, ddof=min(1, q - 1)))
        with np.errstate(invalid="ignore", divide="ignore"):     # within-class constant: a step, d infinite
            return sign * (faces.mean(axis=0) - negatives.mean(axis=0)) / np.sqrt(pooled / max(p + q - 2, 1))

    worst = d(scores[~y])
    for negatives in against:
        worst = np.minimum(worst, d(negatives))
    return np.where(np.isnan(worst), -np.inf, worst)


TIE_DECIMALS = 12     # criteria equal to this many decimals are one tie (:func:`level`)


def level(criterion: np.ndarray) -> np.ndarray:
    """(K,) the choice's criterion as ties are told: equal to :data:`TIE_DECIMALS` decimals. An AUC is a multiple of
    1 / (2 x positives x negatives), so the rounding merges only floating point's (|0.9 - 0.5| and |0.1 - 0.5| differ
    in the last bit). The one definition of a tie: :func:`order` ranks by it, :func:`top_tie` gathers by it."""
    return np.round(criterion, TIE_DECIMALS)


def order(scores: np.ndarray, y: np.ndarray,
          against: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K,) candidates, best first, and :func:`ranking`'s (K,) criterion and signs: by that criterion (its
    :func:`level`); candidates tied on it by :func:`separation`, then by index."""
    criterion, signs = ranking(scores, y, against)
    d = separation(scores, y, signs, against)
    return np.lexsort((np.arange(len(criterion)), -d, -level(criterion))), criterion, signs


def top_tie(ranked: np.ndarray, criterion: np.ndarray) -> np.ndarray:
    """(T,) the candidates of :func:`order`'s ``ranked`` tied with its first on the criterion (T >= 1), in that order:
    the chosen one first. Equally good by the rule that chooses, so a figure of the chosen one alone depends on the
    tie-break (a 30-image lfw split saturates at AUC 1.0: in the mechanisms study 2 of 48 cells changed their tied
    unit with the tie-break and a scale range read +0.56 [+0.17, +0.95], then +0.53 [-0.07, +1.14])."""
    at = level(criterion)[ranked]
    return ranked[at == at[0]]


ALIKE = 0.95     # the share of ties of alike units that :func:`undecided` calls decided, whatever their number


# a unit's replicate sd at or below this is rounding, not chance (a still unit's replicates a constant or an ulp off its
# observed AUC: 5.6e-17 for 1/3 against 0.3), which the median sd once scaled 1e14-fold (the smallest AUC step, one
# pair of 1e6 x 1e6 images, is 1e-12)
STILL = 1e-12


def chance_spread(replicates: np.ndarray, observed: np.ndarray) -> float:
    """The spread, max - min, of the tied units' test AUCs above which they do not test alike (:func:`undecided`):
    the :data:`ALIKE` quantile, over bootstrap replicates of the test images, of the range across the units of each
    one's replicate AUC minus its own ``observed`` AUC, every unit's deviations scaled to the tied set's median
    replicate sd. (T, B) ``replicates`` share their resampled images, so the range is what chance alone spreads
    *these* units by, their correlation kept: near copies of one unit scoring the same images move together and spread
    far less than independent ones (the studentized range, bench/_tie_rules.py). Alike units have one true error;
    each unit's own (the "bootstrap range" of bench/_tie_rules.py, an older row's ``tie_rule``) reads it off its own
    AUC, and near saturation a unit that lost pairs by chance both spreads the tie and widens its own replicates, so
    the limit grew with the spread: alike ties read undecided in 0-2% of ties at true AUC 0.97-0.99, 5% meant
    (docs/analysis.md, bench/tie_calibration.py). A unit whose replicates do not move (AUC 1.0; an sd within
    :data:`STILL`, their rounding) stays at 0. 0 for one unit or none that moves; NaN where no replicate could score
    them (an unknown limit: not undecided)."""
    d = np.asarray(replicates, dtype=np.float64) - np.asarray(observed, dtype=np.float64)[:, None]
    if len(d) < 2:
        return 0.0
    d = d[:, np.isfinite(d).all(axis=0)]
    if d.shape[1] == 0:
        return float("nan")
    sd = d.std(axis=1)
    moving = sd > STILL
    if not moving.any():
        return 0.0
    scale = np.median(sd[moving]) / np.where(moving, sd, np.inf)              # 0 where a unit does not move
    return float(np.quantile(np.ptp(d * scale[:, None], axis=0), ALIKE))


TIE_RULE = "pooled bootstrap range"    # a row's ``tie_rule``: the limit is :func:`chance_spread`'s (rows written
#                                        earlier on 2026-12-05 hold "bootstrap range", each unit's own error,
#                                        bench/_tie_rules.py)


def undecided(test_aucs: np.ndarray, limit: float) -> bool:
    """Whether a tie at the top of the choice is undecided: its units' (T,) test AUCs (the chosen one's among them)
    spread, max - min, wider than ``limit``, :func:`chance_spread` of their bootstrap replicates on the same test
    split (the face test's replicates of that split; the best-neuron table's own of its test images). The selection
    split could not tell them apart, and they are not alike either: which one is reported is the tie-break's, and
    the figure moves with it (a row's ``undecided``, beside ``tie_spread_limit`` and ``tie_rule``; the report then
    gives the tied set's test AUC beside the unit's). A tie whose units test alike within chance is not (nor is an
    unknown limit).

    The limit is the tied units' bootstrap range, their errors pooled (``tie_rule`` "pooled bootstrap range"), not
    each unit's own error ("bootstrap range"), which under-calls near saturation (:func:`chance_spread`). Nor is it
    the studentized range (``tie_spread_limit`` of bench/_tie_rules.py, kept there as the reference), the range of
    T *independent* alike units given the chosen unit's 95% interval: tied units are mostly near copies, which
    correlate and spread less, so that limit is too wide for them: 3 near copies of one unit on
    60 + 60 test images, two lowered a little on the faces, tested 0.764-0.812, a spread of 0.048 against its 0.197,
    decided; their own range is 0.028, undecided. For independent units the two agree
    (tests/test_analysis_tie_null.py). One unit's interval whatever the number tied would call alike units
    undecided in 0.6% of 2-unit ties and 38% of 20; more than 1% of the candidates tied would call any 2-unit tie
    of an 8-unit layer. Over several splits each split's tie is told against that split's own replicates, not the
    row's ``auc_ci`` (of the mean over the splits, ~1/sqrt(splits) as wide). Rows written before 2026-12-05 hold
    the older rules (:func:`tie_verdict`)."""
    a = np.asarray(test_aucs, dtype=np.float64)
    return bool(len(a) > 1 and np.ptp(a) > limit)


def tie_verdict(test_aucs: np.ndarray, replicates: np.ndarray) -> dict[str, Any]:
    """A tie's row keys from its units' (T,) test AUCs and (T, B) bootstrap replicates of them: ``undecided``
    (:func:`undecided`), the ``tie_spread_limit`` it was told against (:func:`chance_spread`) and the ``tie_rule``
    that limit is (:data:`TIE_RULE`; a row written earlier on 2026-12-05 holds "bootstrap range", each unit's own
    error (bench/_tie_rules.py); a row without ``tie_rule``, written before 2026-12-05, has as its limit
    the studentized range's (bench/_tie_rules.py), or, without a limit, one unit's interval), the same for the
    best-neuron table's rows, the face test's and its by-layer ones."""
    limit = chance_spread(replicates, test_aucs)
    return {"undecided": undecided(test_aucs, limit), "tie_spread_limit": limit, "tie_rule": TIE_RULE}


def tied_figures(per_split: list[np.ndarray]) -> dict[str, float]:
    """The tied sets' test AUCs as a row gives them (its ``tied_auc``): each statistic of a split's set, averaged over
    the splits (``mean``: what a unit drawn at random from the tie scores, the figure a tie-break cannot choose)."""
    stats = np.array([[a.mean(), a.std(), a.min(), a.max(), np.median(a)] for a in per_split])    # (S, 5)
    return dict(zip(("mean", "std", "min", "max", "median"), (float(x) for x in stats.mean(axis=0))))


class Choice(NamedTuple):
    unit: int
    sign: int                  # +1: fires for label 1; -1: against it
    threshold: float           # the rule fires when sign * (response - threshold) > 0
    selection_auc: float       # on y, in the sign's direction
    tied: np.ndarray           # (T,) :func:`top_tie`: every candidate as good by the criterion, ``unit`` first
    tied_signs: np.ndarray     # (T,) their signs

    def ties(self) -> dict[str, Any]:
        """The tied set as a table row gives it: ``tied`` (how many), ``tied_units``, ``tied_signs`` (``unit`` first)."""
        return {"tied": int(len(self.tied)), "tied_units": self.tied.tolist(), "tied_signs": self.tied_signs.tolist()}


def choice(scores: np.ndarray, y: np.ndarray, against: tuple[np.ndarray, ...] = ()) -> Choice:
    """The candidate chosen for (n, K) scores and (n,) labels, with its rule and the candidates tied with it.

    The first of :func:`order`: the candidate that maximises :func:`ranking` (without ``against``: the AUC furthest
    from 0.5; with it, the best worst AUC over the negative sets), ties to the largest :func:`separation` (not
    the lowest index); the threshold is the most accurate one for its sign on ``scores`` and
    ``y``; the selection AUC is on ``y``.
    """
    labels = np.asarray(y) == 1
    if labels.all() or not labels.any():
        raise ValueError(f"a candidate is chosen on images of both labels: got {int(labels.sum())} of label 1 and "
                         f"{int((~labels).sum())} of label 0")
    ranked, criterion, signs = order(scores, y, against)
    k = int(ranked[0])
    if not np.isfinite(criterion[k]):
        raise NoCandidate(f"no candidate of {scores.shape[1]} can be chosen: every one has a non-finite response or "
                         "the same response to every selection image")
    sign = int(signs[k])
    _, threshold, _ = threshold_scan(scores[:, k:k + 1], y, sign=sign)
    auc = float(auc_scores(scores[:, k:k + 1], y)[0])
    tied = top_tie(ranked, criterion)
    return Choice(k, sign, float(threshold[0]), max(auc, 1.0 - auc), tied, signs[tied])
