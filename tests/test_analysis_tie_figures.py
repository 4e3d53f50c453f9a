"""What a tie at the top of the choice implies, said with numbers: how large a share of the candidates tied (and,
when the tied units' test AUCs spread wider than as many alike units' would, that the selection split could not tell
them apart), the tied
set's test AUC beside the chosen unit's, the tied set stored once per method, and the invariance widths over the tied
units that have a range, with the count of those that have none."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from downpour.analysis.choice import undecided
from downpour.analysis.controls import score_controls, tied_set, ties_once
from downpour.analysis.invariance import invariance_curves, invariance_summary, sweep
from downpour.analysis.invariance_widths import tied_summary
from downpour.analysis.report_notes import chosen_among
from downpour.studies import measure
from test_analysis_invariance_ties import _blobs, _ThreeWays, _widths
from nesting import nested

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _tie_rules import auc_width, tie_spread_limit  # noqa: E402


def _saturated(perfect: int = 40, noise: int = 60, seed: int = 0):
    """y (80,) faces first; one split, selection = the first 20 of each class; (80, perfect + noise) responses whose
    first ``perfect`` units rank every selection face above every selection non-face (the odd ones below: sign -1)
    and are noise elsewhere, so they tie at selection AUC 1.000, and carry a trace of faces from against them to
    strong, so they test far apart. (With the same faint trace they would be alike units, whose 40 test AUCs spread
    0.345: undecided against one unit's interval, though as many alike units' 95% range is 0.479.)"""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], 40)
    select = np.r_[0:20, 40:60]
    test = np.r_[20:40, 60:80]
    scores = rng.normal(size=(80, perfect + noise))
    flip = np.where(np.arange(perfect) % 2, -1.0, 1.0)
    scores[select, :perfect] = (np.where(y[select] == 1, 3.0, -3.0)[:, None] + rng.uniform(-1, 1, (40, perfect))) * flip
    trace = np.linspace(-0.5, 1.5, perfect)[:, None].T                                 # (1, perfect)
    scores[test, :perfect] += trace * np.where(y[test] == 1, 1.0, -1.0)[:, None] * flip     # a trace of faces
    return y, select, test, scores, flip


def test_a_saturated_tie_is_said_undecided_and_its_test_auc_is_the_tied_units_own():
    y, select, test, scores, flip = _saturated()
    others = np.flatnonzero(y == 0)
    rows = score_controls({"learned unit": scores}, y, {"others": others, "same": others}, np.arange(80),
                          [(select, test)], replicates=20)
    row = rows[0]
    assert row["tied"] == 40 and row["tie_share"] == 0.4 and row["undecided"] is True
    # the reference: sklearn's AUC of every perfect unit on the test split, each in its own direction
    reference = np.array([roc_auc_score(y[test], flip[k] * scores[test, k]) for k in range(40)])
    t = row["tied_auc"]
    assert math.isclose(t["mean"], reference.mean()) and math.isclose(t["std"], reference.std())
    assert math.isclose(t["min"], reference.min()) and math.isclose(t["max"], reference.max())
    assert math.isclose(t["median"], float(np.median(reference)))
    assert math.isclose(row["auc"], reference[row["unit"]])            # the chosen one is one of them
    words = chosen_among(row)
    assert ("chosen among 40 of 100 units with selection AUC 1.000: their test AUCs spread wider than chance would in "
            f"95% of resamplings of the test images, {row['tie_spread_limit']:.3f}, so") in words
    assert "cannot tell them apart" in words and t["max"] - t["min"] > row["tie_spread_limit"]
    assert f"test AUC {reference.mean():.3f} ± {reference.std():.3f}" in words and f"this one's {row['auc']:.3f}" in words
    # the tie stored once per method (the same in both negative sets' rows), read back from either form
    kept, ties = ties_once(rows)
    assert all("tied_units" not in r for r in kept) and list(ties) == ["learned unit"]
    assert ties["learned unit"]["units"][0] == row["unit"] and sorted(ties["learned unit"]["units"]) == list(range(40))
    assert ties["learned unit"]["signs"] == [int(flip[k]) for k in ties["learned unit"]["units"]]
    assert tied_set(ties, kept[1]) == (ties["learned unit"]["units"], ties["learned unit"]["signs"])
    assert tied_set(None, row) == (row["tied_units"], row["tied_signs"])          # analysis.json before 2026-12-05


def test_a_unit_chosen_alone_is_decided_and_its_tied_figures_are_its_own():
    y, select, test, scores, _ = _saturated(perfect=1, noise=199)
    row, = score_controls({"learned unit": scores}, y, {"others": np.flatnonzero(y == 0)}, np.arange(80),
                          [(select, test)], replicates=20)
    assert row["tied"] == 1 and row["undecided"] is False and chosen_among(row) == ""
    assert row["tied_auc"]["mean"] == row["auc"] and row["tied_auc"]["std"] == 0.0
    assert not undecided([0.9], 0.0) and not undecided([0.7, 0.9], float("nan"))      # alone, or no precision known


def test_undecided_reads_the_tied_units_test_aucs_against_the_measurements_precision_not_the_layers_size():
    """A tie's share of the candidates does not decide it: undecided when more than 1% of the candidates tie, an
    8-unit layer's 2 twins that test alike would be (25%), 50 of 5,000 units that test from chance to perfect not
    (1%)."""
    from downpour.analysis.selectivity import best_unit
    rng = np.random.default_rng(3)
    y = np.repeat([1, 0], 40)
    select, test = np.r_[0:20, 40:60], np.r_[20:40, 60:80]
    signal = np.where(y == 1, 2.0, -2.0)
    small = rng.normal(size=(80, 8))
    small[:, 0] = signal + rng.uniform(-1, 1, 80)          # two twins: perfect on selection, alike on test
    small[:, 1] = small[:, 0] + 1e-3 * rng.normal(size=80)
    row = best_unit(small, y, select, test)
    assert row["tied"] == 2 and row["tie_share"] == 0.25 and row["undecided"] is False
    big = rng.normal(size=(80, 5000))
    big[select, :50] = signal[select, None] + rng.uniform(-1, 1, (40, 50))    # 50 perfect on selection ...
    big[test, :50] += np.linspace(0, 3, 50) * np.where(y[test] == 1, 1.0, -1.0)[:, None]     # ... chance to perfect
    row = best_unit(big, y, select, test)
    t = row["tied_auc"]
    assert row["tied"] == 50 and row["tie_share"] == 0.01 and row["undecided"] is True
    assert t["max"] - t["min"] > auc_width(row["test_auc"], 20, 20)
    # Hanley & McNeil's width: 2 x 1.96 x sqrt((A(1-A) + (P-1)(Q1-A^2) + (N-1)(Q2-A^2)) / PN)
    a = 0.8
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    assert math.isclose(auc_width(a, 20, 30), 2 * 1.959963984540054 * math.sqrt(
        (a * (1 - a) + 19 * (q1 - a * a) + 29 * (q2 - a * a)) / 600))
    assert auc_width(1.0, 20, 20) == 0.0 and math.isnan(auc_width(0.8, 0, 20))


def test_tied_units_without_a_range_are_counted_not_averaged_and_the_report_says_so():
    from downpour.analysis.report import _invariance
    data = _blobs()
    model = _ThreeWays()
    faces = data.x[torch.from_numpy(data.y == 1)]
    baseline = model(data.x)[torch.from_numpy(data.y == 0)].mean(dim=0).tolist()
    baseline[2] = 10.0              # unit 2 answers the blobs below this level: nothing for a warp to keep
    tied = tied_summary(sweep(model, faces, [0, 1, 2], [1, 1, 1], baseline[:3]))
    assert tied["unresponsive"] == [2]
    reference = _widths(model, faces, [0, 1], baseline)                # each unit's own curves, one at a time
    for name in reference[0]:        # (the widths have the scale range's upper end too)
        w = tied["widths"][name]
        assert w["measured"] == 2 and w["without_range"] == 1
        got = [r[name] for r in reference]
        assert math.isclose(w["mean"], np.mean(got)) and math.isclose(w["median"], np.median(got))
    inv = invariance_curves(model, faces, 0, baseline=baseline[0])
    inv["summary"], inv["tied"] = invariance_summary(inv), tied
    html = _invariance({"invariance": inv})
    shift = tied["widths"]["translation_x"]
    assert (f"{shift['mean']:.3g} ± {shift['std']:.2g} pixels, median {shift['median']:.3g} "
            f"({shift['min']:.3g}–{shift['max']:.3g}), over the 2 of 3 with a range") in html
    assert "1 of the 3 tied units answer these images no more than the other class" in html


def test_a_study_cell_records_how_many_tied_units_its_widths_average(monkeypatch):
    monkeypatch.setattr(measure, "load_labelled", lambda name, shape, prepare=None, lfw_fold=None: _blobs(30))
    # unit 2 read against the faces (sign -1): weaker on them than on the non-faces, so no range
    got = measure._invariance(_ThreeWays(), "codes", (1, 16, 16), None,
                              {"tied_units": [0, 1, 2], "tied_signs": [1, 1, -1], "fold": None})
    alone = measure._invariance(_ThreeWays(), "codes", (1, 16, 16), None,
                                {"tied_units": [0, 1], "tied_signs": [1, 1], "fold": None})
    assert got["inv_tied"] == 3 and got["inv_ranged"] == 2 and alone["inv_ranged"] == 2
    assert all(got[k] == alone[k] for k in ("inv_scale_octaves", "inv_shift", "inv_rotation"))


def test_the_face_test_section_says_what_an_undecided_tie_implies_with_the_tied_sets_figures():
    from downpour.analysis.report_controls import controls
    y, select, test, scores, _ = _saturated()
    rows = score_controls({"learned unit": scores}, y, {"others": np.flatnonzero(y == 0)}, np.arange(80),
                          [(select, test)], replicates=20)
    rows, _ = ties_once(rows)
    verdict = {"rule": "", "criterion": "", "sentences": []}
    setup = {"select": "train", "faces": 20, "negatives": {"others": {"label": "the others"}}}
    html = controls({"face_neuron": {"controls": rows, "controls_verdict": verdict, "controls_setup": setup}})
    t = rows[0]["tied_auc"]
    r = rows[0]
    assert r["tied_auc"]["max"] - r["tied_auc"]["min"] > r["tie_spread_limit"]
    assert ("The learned unit was chosen among 40 of 100 units tied at the top of the choice (40.0% of the layer), "
            f"whose test AUCs spread {t['min']:.3f}–{t['max']:.3f}, wider than chance would in 95% of resamplings of "
            f"the test images, {r['tie_spread_limit']:.3f}: the selection images cannot tell them apart") in html
    assert f"the others {t['mean']:.3f} (median {t['median']:.3f}; this unit {rows[0]['auc']:.3f})" in html
    rows[0]["undecided"], rows[0]["undecided_splits"] = False, 0      # a tie the selection could tell apart: no note
    assert "cannot tell them apart" not in controls({"face_neuron": {"controls": rows, "controls_verdict": verdict,
                                                                      "controls_setup": setup}})


def test_each_fold_s_own_tie_is_judged_not_only_the_first_that_chose_the_rows_unit():
    """A cross-fit's folds are different networks, each with its own tie. Fold 0's network has one unit that separates
    the selection faces, fold 1's 40 of 100 tied at 1.000: the row's unit is fold 0's, and the page says fold 1's tie
    too (fold 0's ``undecided``, False, alone would say nothing of it)."""
    from downpour.analysis.report_controls import controls
    y, select, test, one, _ = _saturated(perfect=1, noise=99)
    _, _, _, many, flip = _saturated(perfect=40, noise=60, seed=1)
    # fold 1's tied units test from against the faces to perfect (alike units would not differ, and this makes
    # them differ)
    many[test, :40] += np.linspace(0, 3, 40) * np.where(y[test] == 1, 1.0, -1.0)[:, None] * flip
    rows = score_controls({"learned unit": [one, many]}, y, {"others": np.flatnonzero(y == 0)}, np.arange(80),
                          [(select, test), (select, test)], replicates=20)
    assert rows[0]["tied"] == 1 and rows[0]["undecided"] is False       # the first fold's, as the row's unit is
    assert rows[0]["undecided_splits"] == 1
    rows, _ = ties_once(rows)
    setup = {"select": "crossfit", "faces": 20, "negatives": {"others": {"label": "the others"}}}
    verdict = {"rule": "", "criterion": "", "sentences": []}
    html = controls({"face_neuron": {"controls": rows, "controls_verdict": verdict, "controls_setup": setup}})
    assert ("On 1 of the 2 folds the learned unit was chosen among several of the layer's 100 units tied at the top of "
            "the choice whose "
            "test AUCs spread wider than chance would in 95% of resamplings of the test images on that fold: the "
            "selection images cannot tell them apart") in html
    assert f"each fold's tie averaged over the 2 folds: the others {rows[0]['tied_auc']['mean']:.3f}" in html
    rows = score_controls({"learned unit": [one, one]}, y, {"others": np.flatnonzero(y == 0)}, np.arange(80),
                          [(select, test), (select, test)], replicates=20)
    assert rows[0]["undecided_splits"] == 0 and "cannot tell" not in controls(
        {"face_neuron": {"controls": ties_once(rows)[0], "controls_verdict": verdict, "controls_setup": setup}})


def test_the_undecided_note_counts_each_negative_sets_splits_and_does_not_call_the_layer_tied():
    """Else a 200-step cat-demo on rings (docs/analysis.md) says "On 2 of the 10 splits the learned unit was chosen
    among units of the 288 tied": 288 is stage2's every unit, none of them tied on most splits, and 2 is
    phase-scrambled's count alone, block-shuffled's being 1, under one sentence naming both."""
    from downpour.analysis.report_controls import undecided_note
    rows = [{"method": "learned unit", "negatives": n, "undecided_splits": k, "splits": 10, "candidates": 288, "tied": 1,
             "auc": 0.53, "tied_auc": {"mean": 0.54, "median": 0.54}, "tie_rule": "pooled bootstrap range"}
            for n, k in (("phase_scrambled", 2), ("block_shuffled", 1))]
    note = undecided_note(rows, {"select": "train", "negatives": {}})
    assert "On 1–2 of the 10 splits" in note and "among several of the layer's 288 units tied" in note
    assert "of the 288 tied" not in note
    assert "phase_scrambled 0.540 (median 0.540; this unit 0.530; undecided on 2 splits)" in note
    assert "block_shuffled 0.540 (median 0.540; this unit 0.530; undecided on 1 split)" in note


def test_the_best_neuron_tables_tie_is_judged_at_the_tied_sets_mean_auc_not_a_perfect_units_zero_width():
    """Hanley-McNeil's error is 0 at AUC 1.000: asked at the chosen unit's perfect test AUC, a tied unit one test pair
    short of it (1 - 1/225 on 15 x 15) would read as disagreeing beyond the measurement. Asked at the tied set's mean
    AUC the interval is ~0.035 wide, and the two agree."""
    from downpour.analysis.selectivity import best_unit
    y = np.array(([1] * 15 + [0] * 15) * 2)
    select, test = np.arange(30), np.arange(30, 60)
    ramp = np.linspace(0.0, 1.0, 15)
    unit0 = np.concatenate([2 + ramp, ramp] * 2)            # separates both halves widely: the tie-break's choice
    unit1 = unit0 * 0.5                                       # as perfect on selection, closer together
    unit1[30] = unit1[45 + 14] - 0.01                         # one test face below one test non-face: 1 - 1/225
    row = best_unit(np.stack([unit0, unit1], axis=1), y, select, test)
    assert row["unit"] == 0 and row["tied"] == 2
    assert abs(row["tied_auc"]["min"] - (1 - 1 / 225)) < 1e-12 and row["tied_auc"]["max"] == 1.0
    assert not row["undecided"]
    # the face test on the same split: its bootstrap interval of a perfect unit is [1, 1], width 0, and the same
    # two units must not read undecided there, alike in the table
    face, = score_controls({"learned unit": np.stack([unit0, unit1], axis=1)}, y, {"others": np.flatnonzero(y == 0)},
                           np.arange(60), [(select, test)], replicates=200)
    assert face["unit"] == 0 and face["tied"] == 2 and face["auc_ci"] == [1.0, 1.0]
    assert face["undecided"] is False and face["undecided_splits"] == 0


def test_a_tie_averaged_over_splits_says_so_before_its_figure():
    """The count of splits is set off, not run into the figure ("the tied units' test AUC, each split's tie averaged
    over the 10 0.966 ± 0.033", as the main job's stage1/pooled, 10 splits, read), and by commas: the words sit in
    chosen_among's parenthesis ("(each split's ...)" and "(0.854–1.000)" nested in it)."""
    t = {"mean": 0.966, "std": 0.033, "min": 0.854, "max": 1.0, "median": 0.973}
    words = chosen_among({"unit": 3, "tied": 61, "selection_auc": 1.0, "splits": 10, "tied_auc": t, "auc": 0.983})
    assert ("the tied units' test AUC, each split's tie averaged over the 10 splits, 0.966 ± 0.033, range 0.854–1.000, "
            "this one's 0.983)") in words and nested(words) == []


def _ten_folds(low: float, high: float, seed: int = 0):
    """400 sources (200 faces first), 10 disjoint test folds of 20 + 20, each split selecting on the rest; per split
    (its own network, as a cross-fit's) 5 units perfect on its selection images, so tied at 1.000, whose test
    responses are one evenly spaced ramp per class, the faces' shifted up by 2 x ``low`` to 2 x ``high`` (the same
    test AUCs in every fold), and 45 noise units."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], 200)
    label = np.where(y == 1, 1.0, -1.0)
    splits, responses = [], []
    for s in range(10):
        test = np.r_[20 * s:20 * s + 20, 200 + 20 * s:200 + 20 * s + 20]
        select = np.setdiff1d(np.arange(400), test)
        r = rng.normal(size=(400, 50))
        r[select, :5] = 3 * label[select, None] + rng.uniform(-1, 1, (len(select), 5))
        grid = np.tile(np.linspace(-1.6, 1.6, 20), 2)                  # the same spacing in every fold: fixed AUCs
        r[test, :5] = grid[:, None] + label[test, None] * np.linspace(low, high, 5)
        splits.append((select, test))
        responses.append(r)
    return y, splits, responses


def test_each_splits_tie_is_told_against_that_splits_own_interval_not_the_narrower_one_of_the_mean():
    """Over 10 splits the row's ``auc_ci`` is the interval of the mean AUC, ~1/sqrt(10) as wide as one split's. Each
    split's tie is not told against it: a tie whose 5 units test within one split's own precision (spread 0.125 on 20 +
    20 test images, where one split's interval is 0.22-0.29 wide and the mean's 0.086) would be undecided on all 10
    splits by construction. The reference width: each split scored alone, its own ``auc_ci``. By the bootstrap range
    that tie is undecided all the same, for another reason: its 5 units are one ramp shifted, perfectly correlated, so
    their differences are real (chance spreads them 0.048, as many independent units' range given one split's interval
    is wider than their 0.125); 5 identical units are decided."""
    y, splits, responses = _ten_folds(0.5, 0.8)
    others = {"others": np.flatnonzero(y == 0)}
    row, = score_controls({"learned unit": responses}, y, others, np.arange(400), splits, replicates=400)
    alone = [score_controls({"learned unit": [r]}, y, others, np.arange(400), [s], replicates=400)[0]
             for r, s in zip(responses, splits)]
    spreads = [a["tied_auc"]["max"] - a["tied_auc"]["min"] for a in alone]
    own = [a["auc_ci"][1] - a["auc_ci"][0] for a in alone]
    mean_width = row["auc_ci"][1] - row["auc_ci"][0]
    assert all(a["tied"] == 5 for a in alone)
    # the planted tie: inside every split's own interval (with room), wider than the mean's on every split
    assert all(sp < 0.75 * w for sp, w in zip(spreads, own)) and all(sp > 1.25 * mean_width for sp in spreads)
    assert all(a["tie_spread_limit"] < sp < tie_spread_limit(5, w) for a, sp, w in zip(alone, spreads, own))
    assert row["undecided_splits"] == 10 and all(a["undecided"] is True for a in alone)
    y, splits, responses = _ten_folds(0.65, 0.65)
    row, = score_controls({"learned unit": responses}, y, others, np.arange(400), splits, replicates=400)
    assert row["undecided_splits"] == 0 and row["undecided"] is False
    # the same tie stretched past one split's own interval is undecided on every split
    y, splits, responses = _ten_folds(0.0, 1.2)
    row, = score_controls({"learned unit": responses}, y, others, np.arange(400), splits, replicates=400)
    alone = [score_controls({"learned unit": [r]}, y, others, np.arange(400), [s], replicates=400)[0]
             for r, s in zip(responses, splits)]
    assert all(a["tied_auc"]["max"] - a["tied_auc"]["min"] > a["auc_ci"][1] - a["auc_ci"][0] for a in alone)
    assert row["undecided_splits"] == 10 and row["undecided"] is True
