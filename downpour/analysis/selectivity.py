"""The best single neuron for a concept (faces vs non-faces), with the baselines that keep it honest.

Le et al. 2012 report their face neuron's accuracy with the neuron and its threshold picked on the
same images they score it on. Here a unit and its threshold are picked on a *selection* split and
scored on a disjoint *test* split, and every baseline goes through the same two splits. A unit is picked
by its selection AUC, as the face test picks (:func:`~downpour.analysis.choice.choice`; not by accuracy, which a rare
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

from downpour._names import plural
from downpour.analysis import baselines
from downpour.analysis.choice import NoCandidate, auc_scores, choice, threshold_scan, tie_verdict, tied_figures
from downpour.analysis.controls import TIE_REPLICATES, bootstrap_weights, ranked_aucs
from downpour.analysis.labelled import LabelledSet
from downpour.analysis.split_ci import row_intervals
from downpour.analysis.units import check_layer, other_layers, randomized_copy, unit_responses
from downpour.errors import ConfigError, DataError, DeadLayer
from downpour.models.base import FeatureModel


BY = ("auc", "accuracy")     # how best_unit picks: the table's rule | the paper's (paper_style)
CHOICE = ("each unit-like row's unit: its selection AUC furthest from 0.5 (the face test's rule; ties to the larger Cohen's "
          "d), its sign the side that AUC falls on, its threshold the most accurate for that sign on the selection images")   # (the table's "choice")


def best_unit(scores: np.ndarray, y: np.ndarray, select: np.ndarray, test: np.ndarray,
              by: str = "auc") -> dict[str, Any]:
    """Pick the unit and threshold on rows ``select``; score that rule on rows ``test``.

    ``by="auc"``: the face test's rule (:func:`~downpour.analysis.choice.choice`): the unit whose selection AUC is
    furthest from 0.5, its sign the side that AUC falls on, its threshold the most accurate one for that sign; ties to
    the largest separation. Its row also gives ``tied`` (how many candidates shared that AUC, the unit among them) and
    ``tied_units`` / ``tied_signs`` (them, the unit first), ``tie_share`` (of the candidates), ``undecided``
    (:func:`~downpour.analysis.choice.undecided`: the tied units' test AUCs spread wider than ``tie_spread_limit``,
    what chance spreads them by in 95% of bootstrap replicates of the test images,
    :func:`~downpour.analysis.choice.chance_spread`, with its ``tie_rule``) and
    ``tied_auc``, the tied units' test AUCs (mean, std, min, max, median), each in its own sign's direction. Rows
    written before 2026-12-04 lack the tied units, before 2026-12-05 the rest; rows of earlier that day read
    ``undecided`` against as many independent units' range given Hanley & McNeil's interval at the tied set's mean
    (``auc_width`` of bench/_tie_rules.py), older ones against the interval itself or more than 1% of the candidates
    tied.
    ``by="accuracy"``: the unit with the most accurate threshold rule, ties to the AUC furthest from 0.5 (the
    paper's choice, kept for ``paper_style``). A rare concept leaves nearly every unit
    at its majority rate, so accuracy picks the unit with one concept image on top of its range, whatever it does
    with the rest: over digits' ten classes (10% each, cat-demo's main job, 10 splits) the chosen units' test AUC
    read 0.794 (learned), 0.670 (best pixel; class 3's 0.126, its sign backwards) by accuracy and 0.848, 0.886 by AUC.
    """
    if by not in BY:
        raise ValueError(f"best_unit: by must be one of {BY}, got {by!r}")
    chosen, ys = scores[select], np.asarray(y)[select]
    ties: dict[str, Any] = {}
    if by == "auc":
        picked = choice(chosen, ys)
        unit, sign, threshold, selection_auc = picked[:4]
        y_test = np.asarray(y)[test]
        v = scores[test][:, picked.tied] * picked.tied_signs                      # (test, T), the unit first
        aucs = auc_scores(v, y_test)                                               # (T,) on test
        # the tie's chance range: its units' AUCs over seeded bootstrap replicates of the test images (not as many
        # independent units' range given Hanley-McNeil's interval at the tied set's mean AUC: choice.undecided)
        # (a unit tied with none has none: most rows, and drawing its replicates was ~1% of a main-job analyze)
        w = bootstrap_weights(y_test == 1, TIE_REPLICATES, np.random.default_rng(0)) if len(aucs) > 1 else None
        reps = (ranked_aucs(v[y_test == 1].T, v[y_test != 1].T, w[:, y_test == 1], w[:, y_test != 1], tie=0.0)
                if w is not None else np.zeros((1, 1)))
        ties = {**picked.ties(), "tie_share": len(picked.tied) / scores.shape[1],
                **tie_verdict(aucs, reps),
                "tied_auc": tied_figures([aucs])}       # (one split: its own figures)
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
            "test_auc": test_auc(sign * scores[test, unit], y[test]), "candidates": int(scores.shape[1]), **ties}


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
    from sklearn.model_selection import train_test_split

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
                       random_model: FeatureModel | None = None, intervals: bool = False) -> list[dict[str, Any]]:
    """:func:`face_neuron_table` for every split seed in ``seeds``, computing every response once.

    The random linear filters are drawn once, from ``seeds[0]``, and shared by all splits. ``intervals``: the first
    split's rows also get their test figures' 95% intervals over its test images
    (:func:`~downpour.analysis.split_ci.row_intervals`; the probe's decision asked once more, that split only).
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
    hint = other_layers(model, layer)
    return [_table(scores, pixels, y, data, positive, test_fraction, seed, layer, how, paper, hint,
                   intervals and k == 0) for k, seed in enumerate(seeds)]


def over_splits(model: FeatureModel, data: LabelledSet, seeds: list[int], **table: Any) -> dict[str, Any]:
    """:func:`face_neuron_tables` over ``seeds`` (``table``: its keyword arguments): the first split's table
    (``first``, with its rows' intervals over its test images) and every method's mean ± std test accuracy and test AUC
    over the splits (``summary``: a spread, not an interval; the splits share their images, :mod:`~downpour.analysis.
    split_ci`)."""
    tables = face_neuron_tables(model, data, seeds, intervals=True, **table)
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
    unit chosen on some is scored on others. A folder's class is named by its number and its sub-folder, its
    unreadable files counted, with no advice about lfw folds (they give their own in split)."""
    name = data.classes[positive] if 0 <= positive < len(data.classes) else str(positive)
    root = Path(data.info.get("path", data.name))     # a folder's skipped files are named under its path
    skipped = sum(1 for e in data.info.get("skipped", []) if Path(e["file"]).is_relative_to(root)
                  and Path(e["file"]).relative_to(root).parts[:1] == (name,))
    for n, which, unread in ((int(y.sum()), f"class {positive} ({name!r}, analysis.positive)", skipped),
                             (int(len(y) - y.sum()), f"every class but {name!r} together", 0)):
        if n < 2 and "path" in data.info:      # a folder (lfw's folds say their own advice in split)
            raise DataError(f"labelled set {data.name!r}: {which} holds {plural(n, 'readable image')}"
                            f"{f' ({unread} of its files could not be read)' if unread else ''}; choosing a unit on some "
                            "images and scoring it on others needs at least 2 of each (analysis.dataset)")
    if y.min() == y.max():
        raise DataError(f"labelled set {data.name!r} has no examples of both classes (positive = {positive})")


def _unit_of(scores: np.ndarray, y: np.ndarray, select: np.ndarray, test: np.ndarray, where: str,
             hint: str) -> dict[str, Any]:
    """:func:`best_unit` of a layer's units, a layer none of whose units can be chosen (a dead one) a DataError naming
    it and ending with ``hint`` (:func:`~downpour.analysis.units.other_layers`): a rule that took unit 0 there would
    leave the refusal to the face test."""
    try:
        return best_unit(scores, y, select, test)
    except NoCandidate as err:
        raise DeadLayer(f"the best single neuron of {where}: {err} ({hint})") from None


def _probe_figures(probe: Any, features: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The fitted probe's accuracy and AUC on (features, y), from one ``decision_function``: its accuracy is
    ``probe.score``'s, bit for bit (the class its sign picks, as ``LogisticRegression.predict``, then the mean of the
    hits). ``score`` would compute the decision again, with scikit-learn's checks of the labels around it:
    0.3-0.4 s of the 50 splits' 1.6 s tables in the main job's analysis (docs/benchmarks.md ``probe_figures``)."""
    decision = probe.decision_function(features)
    predicted = probe.classes_[(decision > 0).astype(np.intp)]
    return float((predicted == y).mean()), test_auc(decision, y)


def _table(scores: dict[str, np.ndarray], pixels: np.ndarray, y: np.ndarray, data: LabelledSet, positive: int,
           test_fraction: float, seed: int, layer: str, how: str, paper: dict[str, Any], hint: str,
           intervals: bool = False) -> dict[str, Any]:
    """One split's table from precomputed responses: {"learned", "random", "pixel", "filters"} -> (N, K); ``hint``: what
    a dead layer is told to try; ``intervals``: its rows' (:func:`~downpour.analysis.split_ci.row_intervals`)."""
    select, test = split(y, test_fraction, seed)
    learned = {"method": "learned unit", "layer": layer, **_unit_of(scores["learned"], y, select, test, f"layer {layer!r}", hint)}

    majority = int(np.bincount(y[select], minlength=2).argmax())
    chance = {"method": "chance (majority class)", "predicts": majority, "test_accuracy": float((y[test] == majority).mean()),
              "selection_accuracy": float((y[select] == majority).mean()), "selection_auc": 0.5, "test_auc": 0.5}   # (one answer for all)
    random_net = {"method": "random weights, same architecture", "layer": layer, "weights": how,
                  **_unit_of(scores["random"], y, select, test, f"layer {layer!r} with random weights", hint)}
    pixel = {"method": "best single pixel", **best_unit(scores["pixel"], y, select, test)}
    random_filters = {"method": f"best of {scores['filters'].shape[1]} random linear filters",
                      **best_unit(scores["filters"], y, select, test)}
    probe = baselines.probe(pixels[select], y[select])
    linear = {"method": "linear probe on raw pixels (logistic regression)"}
    for part, rows in (("selection", select), ("test", test)):
        accuracy, auc = _probe_figures(probe, pixels[rows], y[rows])
        linear.update({f"{part}_accuracy": accuracy, f"{part}_auc": auc})
    by_source = {"learned": learned, "chance": chance, "random": random_net, "pixel": pixel, "filters": random_filters,
                 "probe": linear}          # (the table's order; the intervals read each row's scores by its key)
    rows = list(by_source.values())
    if intervals:
        row_intervals(by_source, scores, probe.decision_function(pixels[test]), y, test, seed)
    return {
        "dataset": data.name, "positive_class": data.classes[positive] if positive < len(data.classes) else str(positive),
        "representation": {"baselines": f"raw images {list(data.raw.shape[1:])}, as loaded (no run-specific steps)",
                           "units": f"the run's prepared input {list(data.x.shape[1:])}"},
        "split": {"seed": seed, "test_fraction": test_fraction, "selection": int(len(select)), "test": int(len(test)),
                  "positives_in_test": int(y[test].sum())},
        "choice": CHOICE, "rows": rows,
        "paper_style": paper,
        "responses": {"positive": scores["learned"][y == 1, learned["unit"]].tolist(),
                      "negative": scores["learned"][y == 0, learned["unit"]].tolist()},
    }
