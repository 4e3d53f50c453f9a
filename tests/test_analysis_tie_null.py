"""A tie's chance spread is its own units' range over bootstrap replicates of the test images, not as many independent
units': tied units are mostly near copies scoring the same images, which move together, so a small
real difference between them is beyond their chance spread though well within independent units'."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import norm

from downpour.analysis.choice import auc_scores, chance_spread
from downpour.analysis.controls import bootstrap_weights, comparisons, ranked_aucs, score_controls, weighted_auc
from downpour.analysis.report_notes import chosen_among
from downpour.analysis import selectivity
from downpour.analysis.selectivity import best_unit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _tie_rules import auc_width, own_range_spread, tie_spread_limit  # noqa: E402


def test_ranked_aucs_are_the_pairwise_kernels_with_ties_and_own_pairs():
    rng = np.random.default_rng(1)
    pos, neg = np.round(rng.normal(size=(7, 13)), 1), np.round(rng.normal(size=(7, 17)), 1)    # many exact ties
    neg[:, 0] = pos[:, 0] * (1 + 1e-8)                                   # tied within the kernel's tolerance
    w = bootstrap_weights(np.r_[np.ones(13), np.zeros(17)], 50, rng)
    w_pos, w_neg = w[:, :13], w[:, 13:]
    own = np.zeros((13, 17), dtype=bool)
    own[0, 0] = own[3, 5] = own[3, 6] = True                             # a face and the controls built from it ...
    w_neg[:, 0], w_neg[:, 5], w_neg[:, 6] = w_pos[:, 0], w_pos[:, 3], w_pos[:, 3]    # ... share its weight
    np.testing.assert_allclose(ranked_aucs(pos, neg, w_pos, w_neg, own), weighted_auc(comparisons(pos, neg), w_pos,
                                                                                       w_neg, own), atol=1e-12)


def test_ranked_aucs_stay_exact_for_heavy_whole_counts():
    """Whole counts of 7 and 8 on 700 + 700 images: p x q x the largest count is under float32's exact range, their
    weighted sums are not; the float32 path came out 1.8e-8 off the pairs' AUC."""
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(size=(1, 700)) + 1.5, rng.normal(size=(1, 700))
    w_pos, w_neg = (rng.integers(7, 9, size=(2, 700)).astype(float) for _ in range(2))
    np.testing.assert_allclose(ranked_aucs(pos, neg, w_pos, w_neg), weighted_auc(comparisons(pos, neg), w_pos, w_neg),
                               rtol=0, atol=1e-12)


def _copies(shifts: list[float], seed: int = 0):
    """y (120,), one split (the first 30 of each class select), (120, len(shifts) + 30) responses: the first units tie
    on selection; on test they are one unit plus 0.05 of noise each, every face's score lowered by its shift."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], 60)
    select, test = np.r_[0:30, 60:90], np.r_[30:60, 90:120]
    tied = len(shifts)
    scores = rng.normal(size=(120, tied + 30))
    scores[select, :tied] = np.where(y[select] == 1, 3.0, -3.0)[:, None] + rng.uniform(-1, 1, (60, tied))
    base = rng.normal(size=60) + 1.2 * (y[test] == 1)
    scores[test, :tied] = (base[:, None] + 0.05 * rng.normal(size=(60, tied))
                           - np.asarray(shifts)[None] * (y[test] == 1)[:, None])
    return y, select, test, scores


def test_near_copies_with_a_small_real_difference_are_undecided_where_independent_units_range_called_them_decided():
    """Three near copies, two of them lowered a little on the faces: their test AUCs (0.764-0.812) differ by 0.048 for
    real. As many independent units would spread up to 0.197 (by that rule: decided); the
    copies' own replicates, pooled, spread 0.026 in the table and 0.027 in the face test: undecided in both."""
    y, select, test, scores = _copies([0.0, 0.12, 0.24])
    row = best_unit(scores, y, select, test)
    t = row["tied_auc"]
    spread = t["max"] - t["min"]
    independent = tie_spread_limit(3, auc_width(t["mean"], 30, 30))          # the earlier rule's limit
    assert row["tied"] == 3 and row["undecided"] is True and row["tie_rule"] == "pooled bootstrap range"
    assert row["tie_spread_limit"] < spread < independent
    assert "chance would in 95% of resamplings of the test images" in chosen_among(row)
    face, = score_controls({"learned unit": scores}, y, {"others": np.flatnonzero(y == 0)}, np.arange(120),
                           [(select, test)], replicates=500)
    assert face["tied"] == 3 and face["undecided"] is True and face["undecided_splits"] == 1
    assert face["tie_spread_limit"] < spread < tie_spread_limit(3, face["auc_ci"][1] - face["auc_ci"][0])
    y, select, test, scores = _copies([0.0, 0.0, 0.0])                          # copies alike: decided
    same = best_unit(scores, y, select, test)
    assert same["tied"] == 3 and same["undecided"] is False


def test_for_independent_alike_units_the_bootstrap_range_agrees_with_the_studentized_range():
    """200 seeded ties of 5 independent alike units (60 + 60 test images): the bootstrap limit's mean is within 10% of
    the studentized range's given the chosen unit's bootstrap interval (near copies' is ~0.15 of it, above), and it
    calls 5% of them undecided (binomial sd 1.5%)."""
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(60), np.zeros(60)].astype(bool)
    limits, old, calls = [], [], []
    for _ in range(200):
        v = rng.normal(size=(5, 120)) + 1.0 * y
        a = auc_scores(v.T, y)
        w = bootstrap_weights(y, 500, rng)
        reps = ranked_aucs(v[:, y], v[:, ~y], w[:, y], w[:, ~y], tie=0.0)
        lo, hi = np.percentile(reps[0], [2.5, 97.5])
        limits.append(chance_spread(reps, a))
        old.append(tie_spread_limit(5, hi - lo))
        calls.append(np.ptp(a) > limits[-1])
    assert 0.9 < np.mean(limits) / np.mean(old) < 1.1, (np.mean(limits), np.mean(old))
    assert 0.01 < np.mean(calls) < 0.10, np.mean(calls)
    assert chance_spread(np.zeros((1, 9)), np.array([0.8])) == 0.0
    assert np.isnan(chance_spread(np.full((2, 9), np.nan), np.array([0.8, 0.9])))


def test_alike_saturated_ties_read_undecided_near_the_nominal_rate():
    """200 seeded ties of 5 alike units at true AUC 0.97 on 30 + 30 test images, their scores correlated 0.5 (the
    calibration bench's cell): at the tied set's median error 7.5% are undecided (binomial sd 1.5% at 5%, the share
    meant). Each unit at its own bootstrap error would call 0.5% of them undecided: a unit that lost pairs by chance
    spreads the tie and widens its own replicates alike."""
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(30), np.zeros(30)].astype(bool)
    d = np.sqrt(2) * norm.ppf(0.97)
    pooled, own = [], []
    for _ in range(200):
        v = np.sqrt(0.5) * rng.normal(size=60) + np.sqrt(0.5) * rng.normal(size=(5, 60)) + d * y
        a = auc_scores(v.T, y)
        w = bootstrap_weights(y, 200, rng)
        reps = ranked_aucs(v[:, y], v[:, ~y], w[:, y], w[:, ~y])
        pooled.append(np.ptp(a) > chance_spread(reps, a))
        own.append(np.ptp(a) > own_range_spread(reps, a))
    assert np.mean(own) < 0.02, np.mean(own)
    assert 0.03 < np.mean(pooled) < 0.12, np.mean(pooled)


def test_a_unit_whose_replicates_do_not_move_stays_at_0_whatever_its_rounding():
    """A still unit (every replicate alike, AUC 1.0) adds nothing to the range, and its replicates' rounding is not
    chance: else one sitting a constant off its observed AUC (1/3 against 0.3: sd 5.6e-17 by rounding, not 0) is
    scaled ~1e14-fold to the median sd, a limit of 3.6e12, and one an ulp from 1.0 in half the replicates counts in
    the median (sd 5.6e-17), which halves the moving unit's error (0.031 against 0.037)."""
    rng = np.random.default_rng(0)
    moving = 0.95 + 0.02 * rng.standard_normal(200)
    frozen = chance_spread(np.stack([np.ones(200), moving]), np.array([1.0, 0.95]))
    assert frozen == np.quantile(np.abs(moving - 0.95), 0.95)                # the moving unit's own range alone
    off = chance_spread(np.stack([np.full(200, 1 / 3), moving]), np.array([0.3, 0.95]))
    ulp = chance_spread(np.stack([1 - 2.0 ** -53 * rng.integers(0, 2, 200), moving]), np.array([1.0, 0.95]))
    assert off == frozen and ulp == frozen, (off, ulp, frozen)
    assert chance_spread(np.stack([np.full(200, 1 / 3)] * 2), np.array([0.3, 0.3])) == 0.0


def test_a_unit_tied_with_none_draws_no_replicates(monkeypatch):
    """Most best-neuron rows tie nothing: their limit is 0 without drawing or scoring a replicate (drawing 200 for each
    is ~1% of a main-job analyze, 200 rows, none tied)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a single unit's tie was bootstrapped")

    monkeypatch.setattr(selectivity, "bootstrap_weights", refuse)
    monkeypatch.setattr(selectivity, "ranked_aucs", refuse)
    y, select, test, scores = _copies([0.0])
    row = best_unit(scores, y, select, test)
    assert row["tied"] == 1 and row["undecided"] is False and row["tie_spread_limit"] == 0.0
