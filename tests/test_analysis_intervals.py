"""The analysis's intervals beside its point figures: the probes' accuracy over images, the
best-single-neuron table's test figures over its test images, and the edge-like share over what the layer ties."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from downpour.analysis.probe import cv_probe
from downpour.config import load_config


def _wilson(k: int, n: int) -> list[float]:
    """scipy's Wilson interval (not the helper under test)."""
    ci = stats.binomtest(k, n).proportion_ci(method="wilson")
    return [ci.low, ci.high]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_probes_pooled_accuracy_is_every_image_held_out_once_with_wilsons_interval_over_the_images(seed):
    """Not mean ± std over 5 folds, which share their training images (no interval of anything): the pooled
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
    data = load_config("cat-demo").data
    said = _probes({"probes": [table]}, data)
    assert "80.0% [72.0%, 86.0%]" in said and "each of the 100 images predicted once" in said
    assert "not an interval of it" in said and "accuracy over folds (mean ± std)" in said
    old = {**table, "rows": [{k: v for k, v in row.items() if k not in ("accuracy", "ci")}]}   # a file from before
    assert "interval over images" not in _probes({"probes": [old]}, data)


def test_the_report_says_the_probes_images_go_through_the_run_s_own_preparation():
    from downpour.analysis.report import _probes

    row = {"features": "input pixels", "dims": 64, "mean": 0.8, "std": 0.05, "folds": [0.8] * 5}
    table = {"dataset": "lfw", "samples": 100, "classes": 2, "folds": 5, "majority_class_rate": 0.5, "rows": [row]}
    cat = _probes({"probes": [table]}, load_config("cat-demo").data)           # patch, then spectral
    assert "unit standard deviation (data.normalize = 'patch'), then divided by the training set's mean power " \
        "spectrum (data.whiten = 'spectral')" in cat
    assert "brightness or contrast, which a logistic regression on the raw pixels can use, is gone" in cat
    sae = _probes({"probes": [table]}, load_config("ufldl-sae").data)          # ufldl, then zca
    assert "(data.normalize = 'ufldl'), then ZCA-whitened (data.whiten = 'zca')" in sae
    assert "A cue of overall brightness, which" in sae and "contrast, which" not in sae
    digits = _probes({"probes": [table]}, load_config("cnn-digits").data)      # none
    assert "this run prepares none" in digits and "is gone" not in digits
    assert "as the network does" not in _probes({"probes": []}, load_config("cat-demo").data)    # no probes, no words


def _squares(n: int = 120):
    """A LabelledSet of (n, 1, 4, 4) noise images, the concept those whose corner is bright (a noisy one)."""
    import torch

    from downpour.analysis.labelled import LabelledSet

    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = (x[:, 0, 0, 0] + 0.3 * torch.rand(n, generator=g) > 0.65).numpy().astype(np.int64)
    return LabelledSet("squares", x, y, ["other", "bright corner"])


def test_the_first_splits_rows_get_intervals_over_its_test_images_that_hold_their_figures():
    """The table's single-split accuracy and AUC do not stand bare: each row has Wilson's interval of
    its test accuracy (scipy's, from its own hits) and a bootstrap one of its test AUC, as wide as Hanley & McNeil's
    within a third; the other splits' tables have none (only the first is shown)."""
    from downpour.analysis import selectivity
    from test_analysis_probe_figures import _Pixels

    data = _squares()
    out = selectivity.over_splits(_Pixels(), data, [0, 1], random_model=_Pixels(), n_random_filters=10)
    table = out["first"]
    n, positives = table["split"]["test"], table["split"]["positives_in_test"]
    for row in table["rows"]:
        assert row["test_accuracy_ci"] == pytest.approx(_wilson(round(row["test_accuracy"] * n), n)), row["method"]
        low, high = row["test_auc_ci"]
        assert low <= row["test_auc"] <= high, row["method"]
        a, m = row["test_auc"], n - positives
        if a < 0.99 and row["method"] != "chance (majority class)":
            q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
            se = np.sqrt((a * (1 - a) + (positives - 1) * (q1 - a * a) + (m - 1) * (q2 - a * a)) / (positives * m))
            assert abs((high - low) / (2 * 1.96 * se) - 1) < 1 / 3, row["method"]
    assert table["rows"][1]["test_auc_ci"] == [0.5, 0.5]                   # chance: one answer for every image
    again = selectivity.face_neuron_tables(_Pixels(), data, [0, 1], random_model=_Pixels(), n_random_filters=10,
                                           intervals=True)
    assert "test_auc_ci" in again[0]["rows"][0] and "test_auc_ci" not in again[1]["rows"][0]


def test_the_report_brackets_the_test_figures_and_says_the_splits_spread_is_no_interval():
    from downpour.analysis import selectivity
    from downpour.analysis.report import _face_neuron
    from test_analysis_probe_figures import _Pixels

    out = selectivity.over_splits(_Pixels(), _squares(), [0, 1], random_model=_Pixels(), n_random_filters=10)
    fn = {**out["first"], "over_splits": out["summary"], "split_seeds": out["seeds"]}
    said = _face_neuron({"face_neuron": fn, "layer": "codes"})
    row = fn["rows"][0]
    low, high = row["test_auc_ci"]
    assert f"{row['test_auc']:.3f} [{low:.3f}, {high:.3f}]" in said
    assert "95% interval over this split's test images" in said and "not an interval" in said
    assert "They leave out the choice itself: another selection split can pick another unit" in said
    bare = {**fn, "rows": [{k: v for k, v in r.items() if not k.endswith("_ci")} for r in fn["rows"]]}
    assert "95% interval over" not in _face_neuron({"face_neuron": bare, "layer": "codes"})   # a file from before


def _tied_bank(edge_maps: int, banks: int = 4, maps: int = 8) -> np.ndarray:
    """(banks * maps, 8, 8) filters laid out as a tiled layer flattens them (bank-major): map m is an edge in every bank
    for m < ``edge_maps`` (a step edge, a different one per bank), Gaussian noise in every bank otherwise."""
    from edge_filters import step_edges

    rng = np.random.default_rng(0)
    f = rng.standard_normal((banks, maps, 8, 8))
    f[:, :edge_maps] = step_edges(rng, banks * edge_maps).reshape(banks, edge_maps, 8, 8)
    return f.reshape(banks * maps, 8, 8)


def test_the_edge_like_shares_interval_counts_a_tied_layers_maps_not_its_filters():
    """The edge-like share has an interval; a tied layer's 32 filters are 8 maps pooled across its 4
    banks, so the interval is Wilson's over the 8 maps (scipy's), wider than the 32 filters' would claim."""
    from downpour.analysis.edges import edge_summary

    f = _tied_bank(edge_maps=4)
    maps = np.arange(32) % 8
    got = edge_summary(f, 0, groups=maps)
    assert got["edge_fraction"] == 0.5 and got["edge_fraction_units"] == 8
    assert got["edge_fraction_ci"] == pytest.approx(_wilson(4, 8))
    alone = edge_summary(f, 0)
    assert alone["edge_fraction_units"] == 32 and alone["edge_fraction_ci"] == pytest.approx(_wilson(16, 32))
    assert np.diff(got["edge_fraction_ci"]) > np.diff(alone["edge_fraction_ci"])
    with pytest.raises(ValueError, match="groups must be the same size, got sizes"):   # (their shares' mean: no share)
        edge_summary(f, 0, groups=np.r_[np.zeros(31, int), 1])


@pytest.mark.parametrize("config, over, units", [("main", "maps", 8), ("cat-demo", "maps", 8),
                                                  ("ufldl-sae", "filters", None)])
def test_the_analysis_groups_a_tiled_layers_filters_by_map_and_the_report_says_over_what(config, over, units):
    from downpour.analysis.report import _filter_sentences
    from downpour.analysis.filter_stats import filter_stats
    from downpour.config import load_config
    from downpour.models.registry import create_model

    cfg = load_config(config)
    model = create_model(cfg.model.name, None, **cfg.model.options)
    filters = model.first_layer_filters().numpy()
    stats, _ = filter_stats(model, filters, 0)
    assert stats["edge_fraction_over"] == over and stats["edge_fraction_units"] == (units or len(filters))
    low, high = stats["edge_fraction_ci"]
    said = _filter_sentences(stats, "1×8×8", None)
    assert f"95% interval {100 * low:.1f}%–{100 * high:.1f}% over its {units or len(filters)} {over}" in said
    assert ("the L2 pools sum each map's neighbouring positions" in said) == (over == "maps")


def test_each_rows_interval_is_from_its_own_scores_whatever_order_the_rows_come_in():
    """row_intervals pairs the rows with their score sources by unit, not by position (a row added or moved in the
    table would take its neighbour's scores): given in reverse, each row still gets the interval of its own unit."""
    from downpour.analysis.split_ci import one_row_intervals, row_intervals

    rng = np.random.default_rng(0)
    y, test = (rng.random(60) > 0.5).astype(int), np.arange(20, 60)
    scores = {k: rng.standard_normal((60, 3)) + s * y[:, None] for k, s in (("learned", 2.0), ("pixel", 0.3))}
    rows = {"probe": {"test_accuracy": 0.6}, "pixel": {"sign": -1, "unit": 2, "test_accuracy": 0.55},
            "chance": {"test_accuracy": 0.5}, "learned": {"sign": 1, "unit": 0, "test_accuracy": 0.8}}
    decision = rng.standard_normal(40)
    row_intervals(rows, scores, decision, y, test, seed=3)
    yt = y[test]
    want = {"learned": scores["learned"][test, 0], "pixel": -scores["pixel"][test, 2], "probe": decision,
            "chance": np.zeros(40)}
    for key, row in rows.items():
        right = round(row["test_accuracy"] * 40)
        assert row["test_auc_ci"] == one_row_intervals(want[key], right, yt, 3)["test_auc_ci"]
