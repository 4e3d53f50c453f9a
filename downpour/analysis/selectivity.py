"""The best single neuron for a concept (faces vs non-faces), with the baselines that keep it honest.

Le et al. 2012 report their face neuron's accuracy with the neuron and its threshold picked on the
same images they score it on. Here a unit and its threshold are picked on a *selection* split and
scored on a disjoint *test* split, and every baseline goes through the same two splits. A unit is picked
by its selection AUC, as the face test picks (:func:`choose`; by accuracy until 2026-12-04, which a rare
concept turns into a search for one concept image on top of a unit's range: :func:`best_unit`):

- chance: always answer the selection split's majority class;
- the same architecture with random weights (its best unit);
- the best single pixel;
- the best of many random linear filters (Gaussian directions in pixel space);
- a linear probe (logistic regression) on the raw pixels.

The last three see the images in one fixed representation (``LabelledSet.raw``: for lfw the native
25 x 25 grey values in [0, 1]), not the run's prepared input, so they are the same for every run
(see :mod:`downpour.analysis.baselines`). The learned unit and its random twin see the prepared input.

The paper's own style (unit and threshold picked on all images, scored on the same images) is
reported too, labelled as such, so the two can be compared.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.model_selection import train_test_split

from downpour.analysis import baselines
from downpour.analysis.labelled import LabelledSet
from downpour.analysis.units import check_layer, randomized_copy, unit_responses
from downpour.errors import ConfigError, DataError
from downpour.models.base import FeatureModel


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
    ``bench/face_test.py``); larger ones rank (lfw's 140 training images over 512 units compared pairs
    1.3x slower than ranking until 2026-12-03, when the limit was 4 million). Both count the same
    half-integers, so they agree bit for bit.
    """
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos * n_neg * scores.shape[1] <= PAIRWISE_LIMIT:
        diff = scores[y][:, None, :] - scores[~y][None, :, :]            # (P, N-P, U)
        return ((diff > 0).sum(axis=(0, 1)) + 0.5 * (diff == 0).sum(axis=(0, 1))) / max(n_pos * n_neg, 1)
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


def order(scores: np.ndarray, y: np.ndarray,
          against: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K,) candidates, best first, and :func:`ranking`'s (K,) criterion and signs: by that criterion; candidates tied on it by
    :func:`separation`, then by index. Ties are equal to 12 decimals: an AUC is a multiple of 1 / (2 x positives
    x negatives), so the rounding merges only floating point's (|0.9 - 0.5| and |0.1 - 0.5| differ in the last bit)."""
    criterion, signs = ranking(scores, y, against)
    d = separation(scores, y, signs, against)
    return np.lexsort((np.arange(len(criterion)), -d, -np.round(criterion, 12))), criterion, signs


def choose(scores: np.ndarray, y: np.ndarray, against: tuple[np.ndarray, ...] = ()) -> tuple[int, int, float, float]:
    """(candidate, sign, threshold, selection AUC in the sign's direction) for (n, K) scores, (n,) labels.

    The first of :func:`order`: the candidate that maximises :func:`ranking` (without ``against``: the AUC furthest
    from 0.5; with it, the best worst AUC over the negative sets), ties to the largest :func:`separation` (since
    2026-12-04; to the lowest index before); the threshold is the most accurate one for its sign on ``scores`` and
    ``y``; the selection AUC is on ``y``.
    """
    ranked, criterion, signs = order(scores, y, against)
    k = int(ranked[0])
    if not np.isfinite(criterion[k]):
        raise NoCandidate(f"no candidate of {scores.shape[1]} can be chosen: every one has a non-finite response or "
                         "the same response to every selection image")
    sign = int(signs[k])
    _, threshold, _ = threshold_scan(scores[:, k:k + 1], y, sign=sign)
    auc = float(auc_scores(scores[:, k:k + 1], y)[0])
    return k, sign, float(threshold[0]), max(auc, 1.0 - auc)


BY = ("auc", "accuracy")     # how best_unit picks: the table's rule since 2026-12-04 | the paper's (paper_style)
CHOICE = ("each unit-like row's unit: its selection AUC furthest from 0.5 (the face test's rule; ties to the larger Cohen's "
          "d), its sign the side that AUC falls on, its threshold the most accurate for that sign on the selection images")   # (the table's "choice")


def best_unit(scores: np.ndarray, y: np.ndarray, select: np.ndarray, test: np.ndarray,
              by: str = "auc") -> dict[str, Any]:
    """Pick the unit and threshold on rows ``select``; score that rule on rows ``test``.

    ``by="auc"``: the face test's rule (:func:`choose`): the unit whose selection AUC is furthest from 0.5, its sign
    the side that AUC falls on, its threshold the most accurate one for that sign; ties to the largest separation.
    ``by="accuracy"``: the unit with the most accurate threshold rule, ties to the AUC furthest from 0.5 (the
    paper's choice, kept for ``paper_style``; the table's until 2026-12-04). A rare concept leaves nearly every unit
    at its majority rate, so accuracy picks the unit with one concept image on top of its range, whatever it does
    with the rest: over digits' ten classes (10% each, cat-demo's main job, 10 splits) the chosen units' test AUC
    read 0.794 (learned), 0.670 (best pixel; class 3's 0.126, its sign backwards) by accuracy and 0.848, 0.886 by AUC.
    """
    if by not in BY:
        raise ValueError(f"best_unit: by must be one of {BY}, got {by!r}")
    chosen, ys = scores[select], np.asarray(y)[select]
    if by == "auc":
        unit, sign, threshold, selection_auc = choose(chosen, ys)
    else:
        acc, thresholds, signs = threshold_scan(chosen, ys)
        separation = np.abs(auc_scores(chosen, ys) - 0.5)
        candidates = np.flatnonzero(acc == acc.max())
        unit = int(candidates[np.argmax(separation[candidates])])
        sign, threshold = int(signs[unit]), float(thresholds[unit])
        selection_auc = float(auc_scores(sign * chosen[:, unit:unit + 1], ys)[0])
    hits = (sign * (scores[:, unit] - threshold) > 0) == np.asarray(y).astype(bool)     # (N,) the rule's answers
    return {"unit": unit, "threshold": threshold, "sign": sign, "selection_auc": selection_auc,
            "selection_accuracy": float(hits[select].mean()), "test_accuracy": float(hits[test].mean()),
            "test_auc": test_auc(sign * scores[test, unit], y[test]), "candidates": int(scores.shape[1])}


def test_auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of one rule's (N,) scores on the test images, oriented as chosen (1: every concept image above
    every other, 0.5: chance, whatever the classes' sizes): beside the accuracy, which a rare concept leaves at the
    majority's rate (8 stripes among 148 images: chance 94.6%, a unit that ranks them well 86.5%)."""
    return float(auc_scores(np.asarray(score, dtype=np.float64)[:, None], y)[0])


def split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (selection indices, test indices)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    idx = np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    n_test = int(np.ceil(test_fraction * len(y)))
    small = classes[np.argmin(counts)]
    if counts.min() < 2:        # no test_fraction splits it: the set is too small (an lfw fold of K > 50 holds out one face)
        raise DataError(f"the labelled set holds {counts.min()} image of class {small}: a stratified selection/test split "
                        "needs at least 2 of every class (a run with data.lfw_heldout = fold:I:K holds out 100/K faces: "
                        "K at most 50 for this test)")
    if min(n_test, len(y) - n_test) < len(classes):
        raise ConfigError(f"analysis.test_fraction = {test_fraction}: a stratified split of {len(y)} images in "
                          f"{len(classes)} classes (the smallest, class {small}, has {counts.min()}) needs at least one "
                          f"image of every class on each side; use a test_fraction nearer 0.5, or more images per class",
                          key="analysis.test_fraction")
    select, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    return np.sort(select), np.sort(test)


def unchosen(is_positive: np.ndarray, test_fraction: float, seed: int, face_select: str | None) -> tuple[np.ndarray, str]:
    """The images a pictured unit may show as its top images: those it was not chosen on, and how to say so.

    is_positive: (N,) bool, the concept's images. ``face_select``: the face test's ``select`` when its learned
    unit is pictured (``"train"``: chosen on lfw's training part, so every image here is held out;
    ``"heldout"``: its splits chose it on parts of these very images, none free of them), or None for the
    first split's best unit (seed ``seed``), whose test part is returned. Returns ((M,) indices, words).
    """
    n = len(is_positive)
    if face_select == "train":
        return np.arange(n), f"all {n} held-out images (the unit was chosen on lfw's training part)"
    if face_select is not None:
        return np.arange(n), f"all {n} images, among them those its splits chose it on (analysis.face_select = {face_select!r})"
    select, test = split(np.asarray(is_positive).astype(np.int64), test_fraction, seed)
    return test, f"the first split's {len(test)} test images (the unit was chosen on the other {len(select)})"


def face_neuron_table(model: FeatureModel, data: LabelledSet, *, layer: str | None = None, positive: int = 1,
                      test_fraction: float = 0.5, seed: int = 0, n_random_filters: int = 2000,
                      random_model: FeatureModel | None = None) -> dict[str, Any]:
    """The best single unit of ``layer`` for class ``positive`` against every baseline, on one split.

    data.x: (N, C, H, W) at the model's input shape; the pixel, random-filter and probe baselines use
    ``data.raw``. ``random_model``: the same architecture with untrained weights (default:
    :func:`~downpour.analysis.units.randomized_copy` of ``model``). Returns a JSON-ready dict: ``rows``
    (one per method, ``test_accuracy`` on the same test split), ``paper_style`` and ``split``;
    everything is reproducible from ``seed``.
    """
    return face_neuron_tables(model, data, seeds=[seed], layer=layer, positive=positive, test_fraction=test_fraction,
                              n_random_filters=n_random_filters, random_model=random_model)[0]


def face_neuron_tables(model: FeatureModel, data: LabelledSet, seeds: list[int], *, layer: str | None = None,
                       positive: int = 1, test_fraction: float = 0.5, n_random_filters: int = 2000,
                       random_model: FeatureModel | None = None) -> list[dict[str, Any]]:
    """:func:`face_neuron_table` for every split seed in ``seeds``, computing every response once.

    The random linear filters are drawn once, from ``seeds[0]``, and shared by all splits.
    """
    layer = check_layer(model, layer)
    y = (data.y == positive).astype(np.int64)
    _check_sizes(data, positive, y)
    pixels = baselines.pixels(data.raw)                                              # (N, D) fixed representation
    if random_model is None:
        random_model, how = randomized_copy(model, seeds[0])
    else:
        how = "given"
    scores = {"learned": unit_responses(model, data.x, layer), "random": unit_responses(random_model, data.x, layer),
              "pixel": pixels, "filters": pixels @ baselines.random_directions(pixels.shape[1], n_random_filters, seeds[0])}
    everything = np.arange(len(y))
    paper = {"method": "learned unit, paper style (unit and threshold chosen by accuracy on the same images it is scored on)",
             "layer": layer, **best_unit(scores["learned"], y, everything, everything, by="accuracy")}
    return [_table(scores, pixels, y, data, positive, test_fraction, seed, layer, how, paper) for seed in seeds]


def over_splits(model: FeatureModel, data: LabelledSet, seeds: list[int], **table: Any) -> dict[str, Any]:
    """:func:`face_neuron_tables` over ``seeds`` (``table``: its keyword arguments): the first split's table
    (``first``) and every method's mean ± std test accuracy and test AUC over the splits (``summary``)."""
    tables = face_neuron_tables(model, data, seeds, **table)
    per_method: dict[str, list[tuple[float, float]]] = {}
    for t in tables:
        for row in t["rows"]:
            per_method.setdefault(row["method"], []).append((row["test_accuracy"], row["test_auc"]))
    summary = [{"method": m, "mean": float(np.mean(v, axis=0)[0]), "std": float(np.std(v, axis=0)[0]), "splits": len(v),
                "auc_mean": float(np.mean(v, axis=0)[1]), "auc_std": float(np.std(v, axis=0)[1])}
               for m, v in per_method.items()]
    return {"first": tables[0], "summary": summary, "seeds": list(seeds)}


def _check_sizes(data: LabelledSet, positive: int, y: np.ndarray) -> None:
    """DataError naming the set, the class and the key unless the concept (y = 1) and the rest each have 2 images: a
    unit chosen on some is scored on others. Until 2026-12-04 a folder's class of 1 image was "class 1" (the concept,
    whatever its number) with advice about lfw folds, and a class none of whose files could be read "no examples of
    both classes"."""
    name = data.classes[positive] if 0 <= positive < len(data.classes) else str(positive)
    root = Path(data.info.get("path", data.name))     # a folder's skipped files are named under its path
    skipped = sum(1 for e in data.info.get("skipped", []) if Path(e["file"]).is_relative_to(root)
                  and Path(e["file"]).relative_to(root).parts[:1] == (name,))
    for n, which, unread in ((int(y.sum()), f"class {positive} ({name!r}, analysis.positive)", skipped),
                             (int(len(y) - y.sum()), f"every class but {name!r} together", 0)):
        if n < 2 and "path" in data.info:      # a folder (lfw's folds say their own advice in split)
            raise DataError(f"labelled set {data.name!r}: {which} holds {n} readable image{'s' * (n != 1)}"
                            f"{f' ({unread} of its files could not be read)' if unread else ''}; choosing a unit on some "
                            "images and scoring it on others needs at least 2 of each (analysis.dataset)")
    if y.min() == y.max():
        raise DataError(f"labelled set {data.name!r} has no examples of both classes (positive = {positive})")


def _unit_of(scores: np.ndarray, y: np.ndarray, select: np.ndarray, test: np.ndarray, where: str) -> dict[str, Any]:
    """:func:`best_unit` of a layer's units, a layer none of whose units can be chosen (a dead one) a DataError naming
    it (the accuracy rule, until 2026-12-04, took its unit 0 and left the refusal to the face test)."""
    try:
        return best_unit(scores, y, select, test)
    except NoCandidate as err:
        raise DataError(f"the best single neuron of {where}: {err} (set analysis.layer to another layer)") from None


def _table(scores: dict[str, np.ndarray], pixels: np.ndarray, y: np.ndarray, data: LabelledSet, positive: int,
           test_fraction: float, seed: int, layer: str, how: str, paper: dict[str, Any]) -> dict[str, Any]:
    """One split's table from precomputed responses: {"learned", "random", "pixel", "filters"} -> (N, K)."""
    select, test = split(y, test_fraction, seed)
    learned = {"method": "learned unit", "layer": layer, **_unit_of(scores["learned"], y, select, test, f"layer {layer!r}")}

    majority = int(np.bincount(y[select], minlength=2).argmax())
    chance = {"method": "chance (majority class)", "predicts": majority, "test_accuracy": float((y[test] == majority).mean()),
              "selection_accuracy": float((y[select] == majority).mean()), "selection_auc": 0.5, "test_auc": 0.5}   # (one answer for all)
    random_net = {"method": "random weights, same architecture", "layer": layer, "weights": how,
                  **_unit_of(scores["random"], y, select, test, f"layer {layer!r} with random weights")}
    pixel = {"method": "best single pixel", **best_unit(scores["pixel"], y, select, test)}
    random_filters = {"method": f"best of {scores['filters'].shape[1]} random linear filters",
                      **best_unit(scores["filters"], y, select, test)}
    probe = baselines.probe(pixels[select], y[select])
    linear = {"method": "linear probe on raw pixels (logistic regression)",
              "selection_accuracy": float(probe.score(pixels[select], y[select])),
              "selection_auc": test_auc(probe.decision_function(pixels[select]), y[select]),
              "test_accuracy": float(probe.score(pixels[test], y[test])),
              "test_auc": test_auc(probe.decision_function(pixels[test]), y[test])}
    return {
        "dataset": data.name, "positive_class": data.classes[positive] if positive < len(data.classes) else str(positive),
        "representation": {"baselines": f"raw images {list(data.raw.shape[1:])}, as loaded (no run-specific steps)",
                           "units": f"the run's prepared input {list(data.x.shape[1:])}"},
        "split": {"seed": seed, "test_fraction": test_fraction, "selection": int(len(select)), "test": int(len(test)),
                  "positives_in_test": int(y[test].sum())},
        "choice": CHOICE, "rows": [learned, chance, random_net, pixel, random_filters, linear],
        "paper_style": paper,
        "responses": {"positive": scores["learned"][y == 1, learned["unit"]].tolist(),
                      "negative": scores["learned"][y == 0, learned["unit"]].tolist()},
    }
