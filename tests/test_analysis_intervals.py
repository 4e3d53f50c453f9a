"""The analysis's intervals beside its point figures (since 2026-12-06): the probes' accuracy over images, the
best-single-neuron table's test figures over its test images, and the edge-like share over what the layer ties."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from downpour.analysis.probe import cv_probe


def _wilson(k: int, n: int) -> list[float]:
    """scipy's Wilson interval (not the helper under test)."""
    ci = stats.binomtest(k, n).proportion_ci(method="wilson")
    return [ci.low, ci.high]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_probes_pooled_accuracy_is_every_image_held_out_once_with_wilsons_interval_over_the_images(seed):
    """The probes gave mean ± std over 5 folds, which share their training images (no interval of anything); the pooled
    accuracy counts each image once, its interval is Wilson's over the images, and the fold figures stay as they were
    (cross_val_score's, the same fits)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], 40)
    x = rng.standard_normal((120, 6)) + 0.8 * y[:, None]
    got = cv_probe(x, y, folds=5, seed=seed)
    splitter = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    folds = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), x, y, cv=splitter)
    assert got["folds"] == pytest.approx(list(folds)) and got["mean"] == pytest.approx(folds.mean())
    right = round(sum(f * len(test) for f, (_, test) in zip(folds, splitter.split(x, y))))
    assert got["accuracy"] == pytest.approx(right / 120)
    assert got["ci"] == pytest.approx(_wilson(right, 120))


def test_the_report_gives_the_probes_interval_over_images_and_says_what_the_folds_spread_is():
    from downpour.analysis.report import _probes

    row = {"features": "input pixels", "dims": 64, "mean": 0.8, "std": 0.05, "folds": [0.8] * 5, "accuracy": 0.8,
           "ci": [0.72, 0.86]}
    table = {"dataset": "lfw", "samples": 100, "classes": 2, "folds": 5, "majority_class_rate": 0.5, "rows": [row]}
    said = _probes({"probes": [table]})
    assert "80.0% [72.0%, 86.0%]" in said and "each of the 100 images predicted once" in said
    assert "not an interval of it" in said and "accuracy over folds (mean ± std)" in said
    old = {**table, "rows": [{k: v for k, v in row.items() if k not in ("accuracy", "ci")}]}   # a file from before
    assert "interval over images" not in _probes({"probes": [old]})
