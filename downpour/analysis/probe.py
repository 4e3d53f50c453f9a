"""Linear probes: how linearly decodable a labelled concept is from a frozen model's codes.

For each feature layer (and the input pixels, the network's own prepared input: the baseline every
layer must beat to claim it added linear separability to what it was given), fit standardisation + logistic regression under stratified k-fold cross-validation
and report the mean ± std of the fold accuracies. The folds are seeded and shared by every row.

The fold accuracies are not independent draws (every two folds' probes share most of their training images), so their
mean ± std is how much a fold moves the figure, not an interval of it: Student's t over 5 folds would claim more than
it knows (Bengio & Grandvalet 2004: no unbiased estimate of that variance exists). Each row also gives ``accuracy``,
every image predicted once by the probe fit on the other folds, with ``ci``: Wilson's 95% interval over the images
(:func:`~downpour.analysis.intervals.wilson`). It covers which images were tested, given the fitted probes, not how
another fit would have come out.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from downpour._names import plural
from downpour.analysis.intervals import wilson
from downpour.analysis.labelled import LabelledSet
from downpour.analysis.units import layer_responses
from downpour.errors import DataError
from downpour.models.base import FeatureModel


INPUT = "input pixels"   # the probe's baseline row: the run's prepared input (what the network sees: normalised,
                         # whitened), not the raw images the face test's pixel baselines use (LabelledSet.raw)


def cv_probe(features: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0, C: float = 1.0) -> dict[str, Any]:
    """Cross-validated logistic-regression accuracy on ``features`` (N, D) for labels ``y`` (N,).

    Returns ``{"mean", "std", "folds": [...], "dims", "accuracy", "ci"}``: ``accuracy`` over every image held out
    once, ``ci`` its Wilson 95% interval over the images (module docstring). ``folds`` is capped by the rarest class.
    """
    features = np.asarray(features, dtype=np.float64).reshape(len(y), -1)
    smallest = int(np.bincount(np.unique(y, return_inverse=True)[1]).min())
    if smallest < 2:
        raise DataError(f"a linear probe needs at least 2 examples of every class; the rarest has {smallest}")
    k = min(folds, smallest)
    # (scikit-learn, and scipy.stats with it, on the first probe: `downpour study NAME --help` imports this module)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    # the same fits as cross_val_score's, each image's prediction kept: the folds' accuracies from them, and the pooled
    hits = cross_val_predict(classifier, features, y, cv=splitter) == y                 # (N,)
    scores = np.array([hits[test].mean() for _, test in splitter.split(features, y)])
    accuracy, low, high = wilson(int(hits.sum()), len(hits))
    return {"mean": float(scores.mean()), "std": float(scores.std()), "folds": [float(s) for s in scores],
            "dims": int(features.shape[1]), "accuracy": accuracy, "ci": [low, high]}


def probe_sample(data: LabelledSet, max_samples: int, seed: int = 0) -> tuple[Tensor, np.ndarray]:
    """The images (N, C, H, W) and labels (N,) a probe of ``data`` reads: at most ``max_samples`` of them, a seeded
    random subset (not stratified: the recorded figures were made with it; :func:`probe_subset`)."""
    keep = probe_subset(data.name, data.y, max_samples, seed)
    return (data.x, data.y) if keep is None else (data.x[keep], data.y[keep])


def probe_subset(name: str, y: np.ndarray, max_samples: int, seed: int = 0) -> np.ndarray | None:
    """The indices (sorted) of the seeded random subset of at most ``max_samples`` images that a probe of the set
    ``name`` with labels ``y`` (N,) reads; None: all of them. One that leaves a class fewer than 2 images is a
    DataError naming ``analysis.probe_samples``: ``analyze_run`` asks from the labels alone, before it measures
    anything."""
    if len(y) <= max_samples:
        return None
    keep = np.sort(np.random.default_rng(seed).permutation(len(y))[:max_samples])
    classes = np.unique(y)
    rarest = min(int((y[keep] == c).sum()) for c in classes)
    if rarest < 2:
        raise DataError(f"linear probe on {name!r}: analysis.probe_samples = {max_samples} keeps "
                        f"{plural(rarest, 'image')} of its rarest class (of {len(classes)}); a probe needs at least 2 "
                        "of each: raise it")
    return keep


def probe_table(model: FeatureModel, data: LabelledSet, *, layers: list[str] | None = None, folds: int = 5,
                seed: int = 0, max_samples: int = 2000, C: float = 1.0) -> dict[str, Any]:
    """Probe every layer in ``layers`` (default: all the model's feature layers) and the input pixels (:data:`INPUT`).

    data.x: (N, C, H, W) at the model's input shape; at most ``max_samples`` images (a seeded random
    subset, not stratified: the recorded figures were made with it) keep it fast on large sets; one that
    leaves a class fewer than 2 images is a DataError naming ``analysis.probe_samples``. Returns ``{"dataset", "folds", "rows"}``,
    one row per feature set with ``mean``/``std`` accuracy and the majority-class rate for reference;
    ``folds`` is the number used (``folds`` capped by the rarest class), ``folds_asked`` the one asked for.
    """
    x, y = probe_sample(data, max_samples, seed)
    layers = list(layers) if layers else model.feature_layers()
    rows = [{"features": INPUT, **cv_probe(x.reshape(len(y), -1).numpy(), y, folds=folds, seed=seed, C=C)}]
    # every probed layer from one pass of the network (the same numbers as a pass per layer, bit for bit): a pass a
    # layer would run the main job's stage 1 three times and stage 2 twice for its three probed layers, per labelled set
    codes = layer_responses(model, x, layers)
    for layer in layers:
        rows.append({"features": layer, **cv_probe(codes[layer], y, folds=folds, seed=seed, C=C)})
    majority = float(np.bincount(y).max() / len(y))
    used = len(rows[0]["folds"])
    return {"dataset": data.name, "samples": int(len(y)), "classes": len(np.unique(y)), "folds": used,
            "folds_asked": folds, "seed": seed, "majority_class_rate": majority, "rows": rows}


def default_probe_layers(model: FeatureModel, layer: str) -> list[str]:
    """Each stage's output (layer names without a ``/`` part) plus the analysed layer, bottom to top.

    Stacked models also expose every stage's codes and pooled maps (``stage1/codes``); probing all of
    them multiplies the cost for little news, so they are probed only when asked for.
    """
    names = [n for n in model.feature_layers() if "/" not in n or n == layer]
    return names or [layer]
