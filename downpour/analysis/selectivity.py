"""The best single neuron for a concept (faces vs non-faces), with the baselines that keep it honest.

Le et al. 2012 report their face neuron's accuracy with the neuron and its threshold picked on the
same images they score it on. Here a unit and its threshold are picked on a *selection* split and
scored on a disjoint *test* split, and every baseline goes through the same two splits:

- chance: always answer the selection split's majority class;
- the same architecture with random weights (its best unit);
- the best single pixel;
- the best of many random linear filters (Gaussian directions in pixel space);
- a linear probe (logistic regression) on the raw pixels.

The paper's own style (unit and threshold picked on all images, scored on the same images) is
reported too, labelled as such, so the two can be compared.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from downpour.analysis.labelled import LabelledSet
from downpour.analysis.units import check_layer, randomized_copy, unit_responses
from downpour.models.base import FeatureModel


def threshold_scan(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best threshold rule for every column of ``scores``.

    scores: (N, U); y: (N,) in {0, 1}. A rule says "positive" when ``sign * (score - threshold) > 0``,
    sign = +1 (fires for the concept) or -1 (fires against it). Returns (accuracy, threshold, sign),
    each (U,). Thresholds fall midway between distinct sorted scores, so tied scores are never split.
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
    sign = np.where(up >= down, 1, -1)
    cut = np.where(sign > 0, best_up, best_down)
    padded = np.vstack([s[:1] - 1.0, s, s[-1:] + 1.0])            # (N+2, U): sentinels beyond both ends
    threshold = 0.5 * (padded[cut, np.arange(u)] + padded[cut + 1, np.arange(u)])
    return np.maximum(up, down) / n, threshold, sign


def auc_scores(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of every column (Mann-Whitney, ties averaged): (N, U), (N,) -> (U,)."""
    y = np.asarray(y).astype(bool)
    ranks = rankdata(scores, axis=0)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return (ranks[y].sum(axis=0) - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1)


def best_unit(scores: np.ndarray, y: np.ndarray, select: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Pick the unit and threshold on rows ``select``; score that rule on rows ``test``.

    Ties in selection accuracy go to the unit whose AUC is furthest from 0.5, then the lowest index.
    """
    acc, threshold, sign = threshold_scan(scores[select], y[select])
    separation = np.abs(auc_scores(scores[select], y[select]) - 0.5)
    candidates = np.flatnonzero(acc == acc.max())
    unit = int(candidates[np.argmax(separation[candidates])])
    predicted = sign[unit] * (scores[test, unit] - threshold[unit]) > 0
    return {"unit": unit, "threshold": float(threshold[unit]), "sign": int(sign[unit]),
            "selection_accuracy": float(acc[unit]), "test_accuracy": float((predicted == y[test].astype(bool)).mean()),
            "candidates": int(scores.shape[1])}


def split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (selection indices, test indices)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    idx = np.arange(len(y))
    select, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    return np.sort(select), np.sort(test)


def face_neuron_table(model: FeatureModel, data: LabelledSet, *, layer: str | None = None, positive: int = 1,
                      test_fraction: float = 0.5, seed: int = 0, n_random_filters: int = 2000,
                      random_model: FeatureModel | None = None) -> dict[str, Any]:
    """The best single unit of ``layer`` for class ``positive`` against every baseline, on one split.

    data.x: (N, C, H, W) at the model's input shape. ``random_model``: the same architecture with
    untrained weights (default: :func:`~downpour.analysis.units.randomized_copy` of ``model``).
    Returns a JSON-ready dict: ``rows`` (one per method, ``test_accuracy`` on the same test split),
    ``paper_style`` and ``split``; everything is reproducible from ``seed``.
    """
    layer = check_layer(model, layer)
    y = (data.y == positive).astype(np.int64)
    if y.min() == y.max():
        raise ValueError(f"labelled set {data.name!r} has no examples of both classes (positive = {positive})")
    select, test = split(y, test_fraction, seed)
    pixels = data.x.reshape(len(data), -1).double().numpy()    # (N, D)

    learned_scores = unit_responses(model, data.x, layer)
    learned = {"method": "learned unit", "layer": layer, **best_unit(learned_scores, y, select, test)}

    majority = int(np.bincount(y[select], minlength=2).argmax())
    chance = {"method": "chance (majority class)", "predicts": majority, "test_accuracy": float((y[test] == majority).mean()),
              "selection_accuracy": float((y[select] == majority).mean())}

    if random_model is None:
        random_model, how = randomized_copy(model, seed)
    else:
        how = "given"
    random_net = {"method": "random weights, same architecture", "layer": layer, "weights": how,
                  **best_unit(unit_responses(random_model, data.x, layer), y, select, test)}

    pixel = {"method": "best single pixel", **best_unit(pixels, y, select, test)}

    generator = np.random.default_rng(seed)
    directions = generator.standard_normal((pixels.shape[1], n_random_filters))   # (D, K)
    random_filters = {"method": f"best of {n_random_filters} random linear filters",
                      **best_unit(pixels @ directions, y, select, test)}

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(pixels[select], y[select])
    linear = {"method": "linear probe on raw pixels (logistic regression)",
              "selection_accuracy": float(probe.score(pixels[select], y[select])),
              "test_accuracy": float(probe.score(pixels[test], y[test]))}

    everything = np.arange(len(y))
    same = best_unit(learned_scores, y, everything, everything)
    paper = {"method": "learned unit, paper style (unit and threshold chosen on the same images it is scored on)",
             "layer": layer, **same}

    return {
        "dataset": data.name, "positive_class": data.classes[positive] if positive < len(data.classes) else str(positive),
        "split": {"seed": seed, "test_fraction": test_fraction, "selection": int(len(select)), "test": int(len(test)),
                  "positives_in_test": int(y[test].sum())},
        "rows": [learned, chance, random_net, pixel, random_filters, linear],
        "paper_style": paper,
        "responses": {"positive": learned_scores[y == 1, learned["unit"]].tolist(),
                      "negative": learned_scores[y == 0, learned["unit"]].tolist()},
    }


def unit_polarity(table: dict[str, Any]) -> tuple[int, int]:
    """(unit, sign) of the learned unit in a :func:`face_neuron_table` result."""
    row = table["rows"][0]
    return int(row["unit"]), int(row["sign"])
