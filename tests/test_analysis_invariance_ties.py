"""Invariance over every unit tied at the top of the choice: units equally good by the rule that chooses (here the
same responses on every untransformed image, so the same AUC and the same Cohen's d: the index breaks the tie) can
hold up very differently under a warp, and one chosen unit's range then depends on the units' order. The tied set's
mean does not, and its size is reported beside the chosen unit."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from downpour.analysis.choice import choice, order, top_tie
from downpour.analysis.invariance import invariance_curves, invariance_summary, sweep
from downpour.analysis.invariance_widths import range_width, tied_summary
from downpour.analysis.labelled import LabelledSet
from downpour.analysis.report_notes import chosen_among
from downpour.analysis.selectivity import best_unit, face_neuron_table
from downpour.models.base import FeatureModel
from test_analysis_invariance_sweep import OLD_SWEEP
from downpour.studies import measure

BLOB = (slice(6, 10), slice(6, 10))     # every image is zero outside this 4x4 square at the centre


class _ThreeWays(FeatureModel):
    """Units 0-2 read the blob three ways that agree on every image zero outside the centre square (its mean):
    0 there only (narrow), 1 plus whatever a warp moved outside it (wider), 2 the brightest 4x4 window anywhere
    (translation-invariant); unit 3 a difference of two blob pixels (no concept). ``order`` permutes them."""

    def __init__(self, order=(0, 1, 2, 3)):
        super().__init__()
        self.input_shape = (1, 16, 16)
        self.order = list(order)

    def forward(self, x):
        pooled = F.avg_pool2d(x, 4, stride=1)                        # (B, 1, 13, 13): every 4x4 window's mean
        inside = pooled[:, 0, 6, 6]                                   # the centre square's (bit for bit the max's)
        outside = F.relu(_outside(x)).sum(dim=(1, 2))                 # exactly 0 on an unwarped image
        window = pooled.amax(dim=(1, 2, 3))
        units = [inside, inside + outside / 16, window, x[:, 0, 6, 6] - x[:, 0, 9, 9]]
        return torch.stack([units[k] for k in self.order], 1)


def _outside(x):
    """(B, 16, 16): the images with the centre square zeroed."""
    out = x[:, 0].clone()
    out[:, BLOB[0], BLOB[1]] = 0.0
    return out


def _blobs(n=40, seed=0) -> LabelledSet:
    """n blobs of brightness 1 (the concept, label 1) and n of 0.3, each with positive noise inside the square."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(2 * n, 1, 16, 16)
    level = torch.cat([torch.ones(n), torch.full((n,), 0.3)])
    x[:, 0, BLOB[0], BLOB[1]] = level[:, None, None] + 0.05 * torch.rand(2 * n, 4, 4, generator=g)
    return LabelledSet("blobs", x, np.r_[np.ones(n), np.zeros(n)].astype(int), ["dim", "bright"])


def _widths(model, faces, units, baseline):
    """Each unit's range widths from its own invariance_curves (one unit at a time: the reference)."""
    return [{name: range_width(name, r) for name, r in
             invariance_summary(invariance_curves(model, faces, u, baseline=baseline[u]))["ranges"].items()}
            for u in units]


def test_units_that_agree_on_every_selection_image_are_one_tie_and_the_index_breaks_it():
    data = _blobs()
    for order_ in ((0, 1, 2, 3), (2, 1, 0, 3)):
        scores = _ThreeWays(order_)(data.x).numpy()
        ranked, criterion, _ = order(scores, data.y)
        got = choice(scores, data.y)
        assert sorted(top_tie(ranked, criterion).tolist()) == sorted(order_.index(k) for k in (0, 1, 2))
        assert got.unit == 0 and got.tied[0] == 0 and len(got.tied) == 3     # the lowest index: order decides it


@pytest.mark.parametrize("order_", [(0, 1, 2, 3), (2, 0, 1, 3), (1, 2, 0, 3)])
def test_the_tied_sets_range_is_the_mean_of_its_units_ranges_whatever_their_order(order_):
    data = _blobs()
    model = _ThreeWays(order_)
    faces = data.x[torch.from_numpy(data.y == 1)]
    scores = model(data.x).detach().numpy()
    row = best_unit(scores, data.y, np.arange(len(data.y)), np.arange(len(data.y)))
    assert row["tied"] == 3 and row["unit"] == 0 and sorted(row["tied_units"]) == [0, 1, 2] and row["tied_units"][0] == 0
    baseline = scores[data.y == 0].mean(axis=0)
    summary = tied_summary(sweep(model, faces, row["tied_units"], row["tied_signs"], baseline[row["tied_units"]].tolist()))
    reference = _widths(model, faces, row["tied_units"], baseline)
    for name in reference[0]:        # (the widths have the scale range's upper end too, since 2026-12-05)
        w = summary["widths"][name]
        assert w["mean"] == pytest.approx(np.mean([r[name] for r in reference]), abs=1e-9), name
        assert w["measured"] == 3
    # the three units really differ (else any one of them would do): the chosen one's width moves with the order
    spread = [r["translation_x"] for r in reference]
    assert max(spread) - min(spread) >= 4
    # the mean over the tied set is the same whichever order the units came in
    assert summary["widths"]["translation_x"]["mean"] == pytest.approx(np.mean(spread))
    assert summary["widths"]["translation_x"]["mean"] == pytest.approx(_tied_shift_of_the_identity_order(), abs=1e-9)


def _tied_shift_of_the_identity_order() -> float:
    data = _blobs()
    model = _ThreeWays()
    faces = data.x[torch.from_numpy(data.y == 1)]
    baseline = model(data.x)[torch.from_numpy(data.y == 0)].mean(dim=0).tolist()
    return tied_summary(sweep(model, faces, [0, 1, 2], [1, 1, 1], baseline[:3]))["widths"]["translation_x"]["mean"]


def test_the_study_figure_is_the_tied_sets_mean_and_does_not_move_with_the_units_order(monkeypatch):
    """measure._invariance read the chosen unit's ranges: with the narrow unit first the study's translation range
    was one width, with the invariant one first another, for the same network. (Its tied set is the face test's, which
    chose it on lfw's training part; here every blob is held out, as lfw's held-out part is.)"""
    data = _blobs(30)
    monkeypatch.setattr(measure, "load_labelled", lambda name, shape, prepare=None, lfw_fold=None: data)
    got = {}
    for order_ in ((0, 1, 2, 3), (2, 1, 0, 3)):
        model = _ThreeWays(order_)
        scores = model(data.x).detach().numpy()
        row = best_unit(scores, data.y, np.arange(len(data.y)), np.arange(len(data.y)))
        got[order_] = measure._invariance(model, "codes", (1, 16, 16), None, _unit(row))
        assert got[order_]["inv_tied"] == 3
    assert got[(0, 1, 2, 3)] == pytest.approx(got[(2, 1, 0, 3)], abs=1e-9)
    model = _ThreeWays()
    # the units' own widths, one at a time, on every held-out face, against each unit's mean on the non-faces
    faces = data.x[torch.from_numpy(data.y == 1)]
    baseline = model(data.x)[torch.from_numpy(data.y == 0)].mean(dim=0).tolist()
    each = [measure.range_widths(invariance_summary(invariance_curves(model, faces, u, baseline=baseline[u]))["ranges"],
                                 (16, 16)) for u in range(3)]
    for key in ("inv_scale_octaves", "inv_shift", "inv_rotation"):
        values = [e[key] for e in each if math.isfinite(e[key])]
        assert got[(0, 1, 2, 3)][key] == pytest.approx(np.mean(values), abs=1e-9), key
    assert max(e["inv_shift"] for e in each) - min(e["inv_shift"] for e in each) > 0.2     # one unit's would move it


def _unit(row):
    """face_aucs' ``unit`` of a chosen row (its tied set; lfw's default held-out part)."""
    return {"tied_units": row["tied_units"], "tied_signs": row["tied_signs"], "fold": None}


def test_the_tie_size_is_in_the_table_row_and_said_beside_the_unit():
    data = _blobs(30)
    table = face_neuron_table(_ThreeWays(), data, layer="codes", n_random_filters=20)
    learned = table["rows"][0]
    assert learned["tied"] == 3 and len(learned["tied_units"]) == 3 and learned["selection_auc"] == 1.0
    assert chosen_among(learned).startswith(" (chosen among 3 of 4 units with selection AUC 1.000")
    # all three test at 1.000: alike, so not undecided (until 2026-12-05 3 of 4 was, being more than 1% of the layer)
    assert learned["undecided"] is False and "cannot tell" not in chosen_among(learned)
    assert chosen_among({**learned, "tied": 1}) == "" and chosen_among({"unit": 4}) == ""     # untied, or an old file
    assert "tied at the top of the choice" in chosen_among(learned, localizer=True)


def _tied_invariance() -> tuple[dict, torch.nn.Module, torch.Tensor, list[float]]:
    """Unit 0's invariance curves and the tied summary of units 0-2 on the blobs (with the model, faces, baselines)."""
    data = _blobs()
    model = _ThreeWays()
    faces = data.x[torch.from_numpy(data.y == 1)]
    baseline = model(data.x)[torch.from_numpy(data.y == 0)].mean(dim=0).tolist()
    inv = invariance_curves(model, faces, 0, baseline=baseline[0], **OLD_SWEEP)    # (a sweep units 1 and 2 outlast)
    inv["summary"] = invariance_summary(inv)
    inv["tied"] = tied_summary(sweep(model, faces, [0, 1, 2], [1, 1, 1], baseline[:3], **OLD_SWEEP))
    return inv, model, faces, baseline


def test_the_reports_invariance_table_gives_the_tied_sets_widths_beside_the_chosen_units_range():
    from html import escape as html_escape
    from downpour.analysis.report import _invariance
    inv, model, faces, baseline = _tied_invariance()
    html = _invariance({"invariance": inv})
    assert "its width over the 3 units tied at the top of the choice" in html
    assert "Unit 0 was chosen among 3 units equally good" in html
    shift = inv["tied"]["widths"]["translation_x"]
    # (units 1 and 2 span the whole ±6 pixels, unit 0 -1 … 1: their mean is a lower bound, said since 2026-12-05)
    assert shift["censored"] == 2
    assert html_escape(f"{shift['mean']:.3g} ± {shift['std']:.2g} pixels, median {shift['median']:.3g} "
                       f"({shift['min']:.3g}–{shift['max']:.3g}), over all 3, 2 of them to the sweep's end: the mean "
                       "is at least this") in html
    inv["tied"] = tied_summary(sweep(model, faces, [0], [1], baseline[:1]))          # untied: the table as it was
    assert "tied" not in _invariance({"invariance": inv})


def test_an_analysis_json_from_before_the_censored_count_still_says_which_tied_widths_ran_to_the_sweeps_end():
    """A 2026-12-04 analysis.json's invariance.tied has no censored, median or without_range: its column said
    "8 ± 0 pixels (4–10; 3 of 3 have a range)" and, read by the new report, gave such a mean as measured (and a header
    promising a median). The tied units' ranges and the sweep are in the file: the count is taken from them."""
    from html import escape as html_escape
    from downpour.analysis.report import _invariance
    inv, *_ = _tied_invariance()
    new = {name: w["censored"] for name, w in inv["tied"]["widths"].items()}
    assert new["translation_x"] == 2
    del inv["summary"]["censored"], inv["tied"]["unresponsive"]                 # as a file of 2026-12-04 holds it
    for w in inv["tied"]["widths"].values():
        for key in ("censored", "median", "without_range"):
            del w[key]
    html = _invariance({"invariance": inv})
    assert "(mean ± std, min–max)" in html and "median" not in html
    shift = inv["tied"]["widths"]["translation_x"]
    assert html_escape(f"{shift['mean']:.3g} ± {shift['std']:.2g} pixels ({shift['min']:.3g}–{shift['max']:.3g}), "
                       "over all 3, 2 of them to the sweep's end: the mean is at least this") in html
    for name, n in new.items():                     # every transform's count as the new file's (0: nothing said)
        said = html_escape(f"{n} of them to the sweep's end") in html if n else True
        assert said, name


def test_the_face_tests_rows_give_the_tie_of_the_split_that_chose_their_unit():
    from downpour.analysis.controls import score_controls
    data = _blobs(20)
    scores = _ThreeWays((3, 2, 1, 0))(data.x).numpy()               # the tied units at 1, 2, 3
    n = len(data.y)
    row, = score_controls({"learned unit": scores}, data.y, {"others": np.flatnonzero(data.y == 0)}, np.arange(n),
                          [(np.arange(n), np.arange(n))], replicates=20)
    assert row["tied"] == 3 and row["tied_units"][0] == row["unit"] == 1 and sorted(row["tied_units"]) == [1, 2, 3]
    assert chosen_among(row).startswith(" (chosen among 3 of 4 units with selection AUC 1.000")


def test_a_cross_fits_pixel_row_counts_its_tie_on_the_first_fold_not_split():
    """``downpour crossfit`` chooses each method once per fold: its report said "(60% of folds) (chosen among 4 pixels
    tied at the top of the choice on the first split that chose it)"; a held-out face test's splits stay splits."""
    from downpour.analysis.report_controls import controls
    row = {"negatives": "lfw_nonfaces", "method": "best single pixel", "candidates": 625, "unit": 59, "unit_share": 0.6,
           "auc": 0.8, "auc_ci": [0.7, 0.9], "accuracy_mean": 0.7, "accuracy_std": 0.1, "accuracy_ci": [0.6, 0.8],
           "splits": 5, "tied": 4, "tied_units": [59, 1, 2, 3], "tied_signs": [1, 1, 1, 1], "selection_auc": 1.0,
           "test_positives": 20, "test_negatives": 20}
    verdict = {"rule": "", "criterion": "", "sentences": []}

    def page(select):
        return controls({"face_neuron": {"controls": [row], "controls_verdict": verdict,
                                         "controls_setup": {"select": select, "faces": 100}}})

    assert "(60% of folds) (chosen among 4 of 625 pixels tied at the top of the choice on the first fold that chose it)" \
        in page("crossfit")
    assert "(60% of splits) (chosen among 4 of 625 pixels tied at the top of the choice on the first split that chose it)" \
        in page("heldout")


def test_a_cell_without_a_face_unit_has_every_invariance_figure_of_one_with_one(monkeypatch):
    """A cell whose face test chose no unit gave the three widths but no ``inv_tied``: a condition with no face unit in
    any seed then lacked the figure the mechanisms verdict reads (KeyError)."""
    monkeypatch.setattr(measure, "load_labelled", lambda name, shape, prepare=None, lfw_fold=None: _blobs(30))
    measured = measure._invariance(_ThreeWays(), "codes", (1, 16, 16), None,
                                   {"tied_units": [0, 1, 2], "tied_signs": [1, 1, 1], "fold": None})
    none = measure.no_invariance((1, 16, 16))
    assert set(none) == set(measured) and all(math.isnan(v) for v in none.values())


def test_the_pictured_units_words_say_what_the_invariance_section_gives_of_its_tie():
    """The section gives the tied set's widths (mean ± std, min-max), not every unit's range: the words said it gave
    "all of theirs"."""
    from downpour.analysis.report import _pictured_words
    a = {"face_neuron": {"pictured": {"unit": 7, "chosen_by": "the face test (its learned unit)", "tied": 3}},
         "optimal_stimulus": {"unit": 7, "sign": 1}}     # (its sign names the pictures since 2026-12-06)
    words = _pictured_words(a)
    assert "all of theirs" not in words
    assert "among 3 units tied at the top of its choice (the invariance section gives the spread of their ranges" in words
    a["face_neuron"]["pictured"]["tied"] = 1
    assert "tied" not in _pictured_words(a)


def test_a_rotation_range_of_the_whole_turn_reads_every_angle_not_at_least_the_sweep():
    """Since the rotation sweep reached ±180 degrees (one angle, the same image), a unit holding at every angle has the
    range -180 … 180: the report said "(the whole sweep: at least this)" of it, and counted it among the tied units
    whose mean is a lower bound. A range at one end only, flagged, is still a bound: the flags here are a file's
    written before the walk went round past ±180 (2026-12-05, later: it stopped at 180, so -45 … 180 was flagged),
    read as written; on the whole turn's sweep a range now has such a flag only if it is the whole turn."""
    from downpour.analysis.invariance import DEFAULT_ANGLES
    from downpour.analysis.report_invariance import invariance_rows, selectivity_rows, tied_invariance
    curve = {"transform": "rotation", "values": list(DEFAULT_ANGLES), "normalised_to": "untransformed response"}
    whole, half = [-180.0, 180.0], [-45.0, 180.0]
    widths = {"rotation": {"mean": 315.0, "std": 45.0, "median": 360.0, "min": 225.0, "max": 360.0, "measured": 4,
                           "without_range": 0, "censored": 4, "units": "degrees"}}
    inv = {"curves": [curve], "summary": {"ranges": {"rotation": whole}, "censored": {"rotation": True}},
           "selectivity": {"ranges": {"rotation": whole}, "censored": {"rotation": True}, "auc": {"rotation": 0.9},
                           "keep": 0.5},
           "tied": {"size": 4, "ranges": {"rotation": [whole, whole, whole, half]}, "widths": widths,
                    "selectivity": {"ranges": {"rotation": [whole, half, half, half]}, "widths": widths}}}
    assert invariance_rows(inv) == [["rotation", "-180 … 180 degrees (every angle: the whole turn)"]]
    assert selectivity_rows(inv)[0].endswith("(every angle: the whole turn)")
    said = tied_invariance(inv)[0]
    assert "1 of them to the sweep's end: the mean is at least this, 3 of them at every angle (the whole turn)" in said
    assert "3 of them to the sweep's end" in tied_invariance(inv, selectivity=True)[0]
    inv["summary"]["ranges"]["rotation"] = half      # flagged as the old walk, stopped at 180, flagged it
    assert invariance_rows(inv)[0][1] == "-45 … 180 degrees (to the sweep's end: at least this far)"
    inv["summary"]["censored"]["rotation"] = False   # the walk round the turn met -157.5 low: measured
    assert invariance_rows(inv)[0][1] == "-45 … 180 degrees"
