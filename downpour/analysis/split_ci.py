"""The best-single-neuron table's 95% intervals: each row's test accuracy and test AUC over its split's test images.

A row's rule (its unit, sign and threshold, or the fitted probe) is chosen on the selection images and held fixed; the
intervals cover which images it was tested on, not which unit another selection split would pick. The accuracy's is
Wilson's over the test images (:func:`~downpour.analysis.intervals.wilson`: each image right or wrong on its own, given
the rule); the AUC's a percentile bootstrap with each class resampled within itself
(:func:`~downpour.analysis.controls.bootstrap_weights`, :func:`~downpour.analysis.controls.ranked_aucs`), as the face
test's. The table's "over N splits" columns are no interval: the splits are drawn from the same images, so their
spread is how far a split moves a figure, and Student's t over them would shrink with N without bound.

    n   test images;  B   bootstrap replicates
"""
from __future__ import annotations

from typing import Any

import numpy as np

from downpour.analysis.controls import bootstrap_weights, ranked_aucs
from downpour.analysis.intervals import wilson

SPLIT_REPLICATES = 1000     # 6 rows x 1,000 replicates of ~100 test images, by ranks: milliseconds
SPLIT_STREAM = 5            # the split seed's spawn key for the draws (the invariance's are 3 and 4 of the run's seed)


def one_row_intervals(score: np.ndarray, right: int, y: np.ndarray, seed: int,
                   replicates: int = SPLIT_REPLICATES) -> dict[str, list[float]]:
    """``test_accuracy_ci`` and ``test_auc_ci`` of one row: score (n,) its answers to the test images oriented as chosen
    (higher: the concept), ``right`` how many of them its rule got right, y (n,) 1 for the concept; ``seed`` the
    split's."""
    y = np.asarray(y) == 1
    _, low, high = wilson(right, len(y))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLIT_STREAM,)))
    w = bootstrap_weights(y, replicates, rng)                                # (B, n)
    aucs = ranked_aucs(score[y][None], score[~y][None], w[:, y], w[:, ~y], tie=0.0)[0]   # (B,)
    return {"test_accuracy_ci": [low, high], "test_auc_ci": [float(q) for q in np.percentile(aucs, [2.5, 97.5])]}


def row_intervals(rows: dict[str, dict[str, Any]], scores: dict[str, np.ndarray], probe_decision: np.ndarray,
                  y: np.ndarray, test: np.ndarray, seed: int) -> None:
    """Add :func:`one_row_intervals` to each of the table's ``rows``, keyed by where its scores come from: "learned",
    "random", "pixel", "filters" (its unit of ``scores[key]`` (N, K)), "probe" (its (n,) ``probe_decision`` on the test
    images) and "chance" (one answer for every image); how many each got right from its own ``test_accuracy`` (the
    rule is not applied a second time here). Rows come keyed, not as a list paired with the keys by position, where
    a row added or moved in :func:`~downpour.analysis.selectivity._table` would take its neighbour's scores,
    silently."""
    yt = np.asarray(y)[test]
    for key, row in rows.items():
        if key == "probe":
            score = probe_decision
        elif key == "chance":
            score = np.zeros(len(yt))
        else:
            score = row["sign"] * scores[key][test, row["unit"]]
        row.update(one_row_intervals(score, round(row["test_accuracy"] * len(yt)), yt, seed))
