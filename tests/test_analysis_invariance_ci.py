"""The invariance ranges' bootstrap intervals: they cover a planted range, narrow with more images, are recomputed from
the sweep's own per-image responses, and the report shows them."""
from __future__ import annotations

import html

import numpy as np
import pytest
import torch

from downpour.analysis import invariance_ci
from downpour.analysis.invariance import invariance_curves, invariance_summary
from downpour.analysis.invariance_ci import curve_interval, range_intervals, range_weights
from downpour.analysis.passes import Passes
from test_analysis_invariance import _BlobUnits

VALUES = [float(v) for v in np.arange(-10.0, 10.25, 0.25)]        # a translation sweep, in pixels


def _planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(V, n) per-image responses and their (n,) untransformed ones: image i answers a_i while the shift is within its
    own reach h_i ~ U(2, 6) pixels, 0 beyond; a_i ~ U(0.5, 1.5), independent of h_i. The mean curve, relative to the
    untransformed mean, is P(h >= |v|) = (6 - |v|) / 4 between 2 and 6: it is >= 0.5 exactly on -4 … 4."""
    rng = np.random.default_rng(seed)
    reach, amplitude = rng.uniform(2.0, 6.0, n), rng.uniform(0.5, 1.5, n)
    per_image = amplitude[None, :] * (np.abs(np.array(VALUES))[:, None] <= reach[None, :])
    return per_image, amplitude


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_interval_covers_a_planted_range(seed):
    per_image, reference = _planted(200, seed)
    ci = curve_interval("translation_x", VALUES, per_image, reference, 0.0, range_weights(200, 500, seed))
    assert ci["low"][0] <= -4.0 <= ci["low"][1] and ci["high"][0] <= 4.0 <= ci["high"][1]
    assert ci["width"][0] <= 8.0 <= ci["width"][1]
    assert ci["replicates"] == 500 and ci["without_range"] == 0 and ci["censored"] == 0
    assert ci["width"][1] - ci["width"][0] > 0          # not a single number: 200 images leave the ends uncertain


def test_the_percentiles_are_taken_outward_to_values_seen():
    """A range's end is a swept value, so its interval's ends are too: never a point interpolated between two."""
    assert invariance_ci._interval(np.array([0.0, 0.25, 0.25, 1.0])) == [0.0, 1.0]


def test_the_interval_narrows_with_more_images():
    spans = []
    for n in (25, 100, 800):
        per_image, reference = _planted(n, 7)
        ci = curve_interval("translation_x", VALUES, per_image, reference, 0.0, range_weights(n, 500, 7))
        spans.append(ci["width"][1] - ci["width"][0])
    assert spans[0] > spans[1] > spans[2]


def test_the_normalisation_is_resampled_with_the_images():
    """A replicate's curve is its own images' mean over their own untransformed mean: images that answer strongly
    at the identity and not at all when shifted must not read as holding up when resampled."""
    per_image = np.zeros((len(VALUES), 4))
    at = VALUES.index(0.0)
    per_image[at] = [1.0, 1.0, 9.0, 9.0]                 # two images 9x as strong, untransformed only
    per_image[at + 1] = [1.0, 1.0, 0.0, 0.0]             # shifted 0.25: only the weak two answer
    ci = curve_interval("translation_x", VALUES, per_image, per_image[at], 0.0, range_weights(4, 200, 0))
    # 2 / 20 of the identity's at the full sample; any replicate with a strong image is below 0.5 there; one of the
    # weak pair alone holds (1/16 of replicates draw neither strong image): 0.25 is inside only at the upper end
    assert ci["high"] == [0.0, 0.25] and ci["low"] == [0.0, 0.0]


def _blobs(n: int = 8) -> torch.Tensor:
    torch.manual_seed(0)
    blob = torch.zeros(n, 1, 16, 16)
    for i in range(n):                                  # each a little off the centre: the images differ
        r, c = 6 + i % 2, 6 + (i // 2) % 2
        blob[i, 0, r:r + 4, c:c + 4] = 1.0
    return blob + 0.05 * torch.rand_like(blob)


@pytest.mark.parametrize("unit,sign", [(1, 1), (2, -1)])
def test_one_resample_of_every_image_once_gives_the_ranges_of_the_sweep_itself(monkeypatch, unit, sign):
    """The bootstrap recomputes each curve from the sweep's kept per-image responses (no forward pass): with every image
    drawn once it must read the sweep's own ranges, the rotation's relative to the unturned images in the disc."""
    model, images, passes = _BlobUnits(), _blobs(), Passes([unit])
    inv = invariance_curves(model, images, unit, sign=sign, baseline=0.0, passes=passes)
    made = passes.made
    monkeypatch.setattr(invariance_ci, "range_weights", lambda n, b, seed: np.ones((1, n)))
    ci = range_intervals(inv, passes, seed=0)
    assert passes.made == made                 # read back, not made again
    summary = invariance_summary(inv)
    assert inv["rotation_aperture"] == "disc"
    for name, r in summary["ranges"].items():
        assert r is not None and ci[name]["low"] == [r[0], r[0]] and ci[name]["high"] == [r[1], r[1]], name


def test_the_intervals_are_seeded_and_the_report_shows_them():
    from downpour.analysis.report import _invariance

    model, images, passes = _BlobUnits(), _blobs(), Passes([1])
    inv = invariance_curves(model, images, 1, baseline=0.0, passes=passes)
    ci = range_intervals(inv, passes, seed=3)
    assert ci == range_intervals(inv, passes, seed=3) and set(ci) == {c["transform"] for c in inv["curves"]}
    inv["summary"] = {**invariance_summary(inv), "range_ci": ci}
    said = _invariance({"invariance": inv})
    assert "95% bootstrap interval over the 8 images" in said
    w = ci["translation_x"]["width"]
    assert f"pixels [{w[0]:.3g}, {w[1]:.3g}]" in said
    without = _invariance({"invariance": {**inv, "summary": invariance_summary(inv)}})   # a file from before: no column
    assert "bootstrap interval" not in without


def _with_others(n: int = 8):
    """_BlobUnits, the blobs and 8 other images (faint noise, a dimmer blob in half), swept with them as negatives."""
    torch.manual_seed(1)
    others = 0.3 * torch.rand(8, 1, 16, 16)
    others[:4, 0, 7:10, 7:10] += 0.5
    return _BlobUnits(), _blobs(n), others


@pytest.mark.parametrize("unit,sign", [(1, 1), (2, -1)])
def test_one_resample_of_every_image_once_gives_the_auc_ranges_of_the_sweep_itself(monkeypatch, unit, sign):
    """The AUC ranges had no interval (until 2026-12-06); with every image of both classes drawn once the bootstrap
    must read the sweep's own AUC ranges and untransformed AUCs, from its kept passes."""
    from downpour.analysis.invariance import selectivity_summary

    model, images, others = _with_others()
    passes = Passes([unit])
    inv = invariance_curves(model, images, unit, sign=sign, baseline=0.0, negatives=others, passes=passes)
    made = passes.made
    monkeypatch.setattr(invariance_ci, "range_weights", lambda n, b, seed: np.ones((1, n)))
    monkeypatch.setattr(invariance_ci, "negative_weights", lambda m, b, seed: np.ones((1, m)))
    ci = invariance_ci.selectivity_intervals(inv, passes, seed=0)
    assert passes.made == made
    sel = selectivity_summary(inv)
    assert set(ci) == set(sel["ranges"]) == {"scale", "translation_x", "translation_y", "rotation"}
    for name, r in sel["ranges"].items():
        assert ci[name]["auc"] == [pytest.approx(sel["auc"][name])] * 2, name
        assert (ci[name]["low"], ci[name]["high"]) == ((None, None) if r is None else ([r[0]] * 2, [r[1]] * 2)), name


def test_the_untransformed_aucs_interval_covers_a_planted_auc():
    """Concept images answer N(1, 1) untransformed, the others N(0, 1): the AUC is Phi(1 / sqrt 2) = 0.760. A shift
    takes the concept's lead away linearly: 0.5 + (lead) x (1 - |v| / 8), both classes warped alike."""
    rng = np.random.default_rng(0)
    n, m = 150, 150
    lead = 1.0 - np.abs(np.array(VALUES)) / 8.0                            # (V,)
    pos = np.clip(lead, 0, None)[:, None] + rng.standard_normal((1, n))    # (V, n): each image's noise kept
    neg = rng.standard_normal((1, m)).repeat(len(VALUES), axis=0)
    ci = invariance_ci.auc_interval("translation_x", VALUES, pos, neg, range_weights(n, 500, 0),
                                    invariance_ci.negative_weights(m, 500, 0))
    assert ci["auc"][0] <= 0.760 <= ci["auc"][1] and ci["auc"][1] - ci["auc"][0] < 0.2
    # halfway to chance: the lead falls to about 0.5 where |v| is near 4.5 (the AUC is not linear in the lead)
    assert ci["width"][0] <= 9.0 <= ci["width"][1] and ci["width"][0] < ci["width"][1]


def test_the_tied_units_mean_widths_get_an_interval_that_one_resample_of_every_image_pins_to_the_mean(monkeypatch):
    """The tied units' widths were given as mean ± std over the units (until 2026-12-06), with nothing to say how far
    another set of test images moves the mean; one resample of every image once must give that mean itself."""
    from downpour.analysis.invariance import sweep
    from downpour.analysis.invariance_widths import tied_summary

    model, images, others = _with_others()
    passes = Passes([1, 2])
    results = sweep(model, images, [1, 2], [1, -1], [0.0, 0.0], negatives=others, passes=passes)
    summary = tied_summary(results)
    monkeypatch.setattr(invariance_ci, "range_weights", lambda n, b, seed: np.ones((1, n)))
    monkeypatch.setattr(invariance_ci, "negative_weights", lambda m, b, seed: np.ones((1, m)))
    ci = invariance_ci.tied_intervals(results, passes, seed=0)
    for key, got in (("widths", summary["widths"]), ("selectivity", summary["selectivity"]["widths"])):
        for name in ("scale", "translation_x", "translation_y", "rotation"):
            mean = got[name]["mean"]
            assert ci[key][name] == (None if mean is None else [pytest.approx(mean)] * 2), (key, name)


def test_the_report_gives_the_auc_ranges_and_the_tied_means_intervals():
    from downpour.analysis.invariance import selectivity_summary, sweep
    from downpour.analysis.invariance_widths import tied_summary
    from downpour.analysis.report import _invariance

    model, images, others = _with_others()
    passes = Passes([1, 0])
    inv = invariance_curves(model, images, 1, baseline=0.0, negatives=others, passes=passes)
    results = sweep(model, images, [1, 0], [1, 1], [0.0, 0.0], negatives=others, passes=passes)
    sel = {**selectivity_summary(inv), "range_ci": invariance_ci.selectivity_intervals(inv, passes, seed=2)}
    tied = {**tied_summary(results), "mean_ci": invariance_ci.tied_intervals(results, passes, seed=2)}
    inv = {**inv, "summary": invariance_summary(inv), "selectivity": sel, "tied": tied}
    said = html.unescape(_invariance({"invariance": inv}))
    assert "95% bootstrap interval (each class resampled within itself)" in said
    at = sel["range_ci"]["translation_x"]["auc"]
    assert f"untransformed AUC [{at[0]:.3f}, {at[1]:.3f}]" in said
    m = tied["mean_ci"]["widths"]["translation_x"]
    assert f"(the mean's 95% interval over the resampled images: [{m[0]:.3g}, {m[1]:.3g}])" in said
    old = {**inv, "selectivity": selectivity_summary(inv), "tied": tied_summary(results)}    # a file from before
    assert "each class resampled" not in _invariance({"invariance": old})
    assert "the mean's 95% interval" not in _invariance({"invariance": old})


@pytest.mark.parametrize("transform,values", [("rotation", list(np.linspace(-180, 180, 17))),
                                              ("rotation", [-90.0, -45.0, 0.0, 45.0, 90.0]),
                                              ("scale", [0.25, 0.5, 1.0, 2.0]), ("translation_x", VALUES)])
def test_the_resamples_walked_at_once_read_the_ranges_the_summary_reads_one_by_one(transform, values):
    """The replicates' ranges were read one by one through invariance_summary (0.6 s of CPU per tied unit, 20 s for a
    tie of 34, until 2026-12-06); walked at once (circle.walks) they must be the same ranges and censored flags, round
    the turn and at the sweep's ends alike."""
    from downpour.analysis.invariance import invariance_summary

    rng = np.random.default_rng(3)
    ys = 0.5 + 0.3 * np.cumsum(rng.standard_normal((400, len(values))), axis=1) * rng.uniform(0, 1, (400, 1))
    ys[:7] = 1.0                                                       # every value held (the whole turn)
    levels = np.where(rng.uniform(size=400) < 0.1, np.nan, 0.5)
    got, censored = invariance_ci._spans(transform, values, ys, levels)
    want = [invariance_summary({"curves": [{"transform": transform, "values": values, "response": y.tolist()}]})
            if lv == lv else None for y, lv in zip(ys, levels)]
    assert got == [w and w["ranges"][transform] for w in want]
    assert censored == sum(bool(w and w["censored"][transform]) for w in want)


def test_rotation_interval_ends_past_180_are_written_as_the_angles_they_are():
    """A resample's rotation range can go round past +-180 (walked as -225 … 40): its ends' intervals read
    "[-225, -45]" (until 2026-12-06), an angle no sweep has, beside a range written in angles within ±180."""
    from downpour.analysis.report_invariance import range_ci_cells

    ci = {"replicates": 500, "without_range": 0, "censored": 0, "width": [120.0, 265.0],
          "low": [-225.0, -45.0], "high": [20.0, 40.0]}
    inv = {"summary": {"ranges": {"rotation": [-150.0, 30.0]}, "range_ci": {"rotation": ci}}}
    (cell,) = range_ci_cells(inv)
    assert cell == "180 degrees [120, 265]; ends [from 135 round through 180 to -45] and [20, 40]"
    ci.update(low=[-200.0, -190.0], high=[170.0, 225.0])
    assert range_ci_cells(inv)[0].endswith("ends [160, 170] and [from 170 round through 180 to -135]")
    ci.update(low=[-60.0, -45.0])
    assert range_ci_cells(inv)[0].endswith("ends [-60, -45] and [from 170 round through 180 to -135]")
    # an end at ±180 itself is one angle, not an arc round it: not "from 180 round through 180 to -135" (2026-12-06)
    ci.update(low=[-225.0, -180.0], high=[180.0, 225.0])
    assert range_ci_cells(inv)[0].endswith("ends [135, 180] and [-180, -135]")
    # an interval a whole turn wide or wider holds every angle: not "[170, -170]", a 20-degree arc (2026-12-06)
    ci.update(low=[-190.0, 190.0], high=[-180.0, 180.0])
    turn = "[-180, 180] (every angle: the whole turn)"      # as a range of the whole turn reads
    assert range_ci_cells(inv)[0].endswith(f"ends {turn} and {turn}")


def test_the_report_says_where_an_interval_is_wider_than_its_width():
    """A cat-demo run's scale range "0.17 octaves [0, 5.17]" on 30 faces stood in the table with no word that one
    run's width says little there; a narrow interval gets no such sentence."""
    from downpour.analysis.report_invariance import wide_intervals

    def inv(width):
        ci = {"replicates": 500, "without_range": 0, "censored": 0, "width": width, "low": [0.5, 0.9], "high": [1, 1.5]}
        return {"images": 30, "summary": {"ranges": {"scale": [0.9, 1.0]}, "range_ci": {"scale": ci}}}

    assert wide_intervals(inv([0.0, 5.17])) == (
        " On 30 images the interval is wider than the width itself for scale: one run's width there says little; "
        "compare seeds (a study) before reading a difference between two runs' widths.")
    assert wide_intervals(inv([0.1, 0.2])) == ""
    assert wide_intervals({"summary": {"ranges": {"scale": [0.9, 1.0]}}}) == ""      # a file from before: no intervals
    assert wide_intervals({"summary": {"ranges": {"out_of_plane_rotation": [-45, 45]},
                                       "range_ci": {"out_of_plane_rotation": None}}}) == ""   # a pose curve: none


def test_each_swept_values_auc_interval_holds_the_samples_auc_as_wide_as_hanley_mcneil_says_and_one_draw_pins_it():
    """The figure's AUC curves had no band though the ranges had intervals (until 2026-12-06): each point's interval
    comes from the same replicates, holds the sample's own AUC, is as wide as Hanley & McNeil's normal interval (within
    a quarter) and is pinned to that AUC by one draw of every image."""
    rng = np.random.default_rng(0)
    n = m = 150
    lead = np.clip(1.0 - np.abs(np.array(VALUES)) / 8.0, 0, None)               # (V,)
    pos, neg = lead[:, None] + rng.standard_normal((1, n)), rng.standard_normal((1, m)).repeat(len(VALUES), axis=0)
    ci = invariance_ci.auc_interval("translation_x", VALUES, pos, neg, range_weights(n, 500, 0),
                                    invariance_ci.negative_weights(m, 500, 0))
    exact = np.array([np.mean(p[:, None] > neg[0][None, :]) for p in pos])   # no ties in continuous noise
    low, high = np.array(ci["points"]).T
    assert len(exact) == len(low) and np.all((low <= exact) & (exact <= high))
    q1, q2 = exact / (2 - exact), 2 * exact ** 2 / (1 + exact)               # Hanley & McNeil (1982)
    se = np.sqrt((exact * (1 - exact) + (n - 1) * (q1 - exact ** 2) + (m - 1) * (q2 - exact ** 2)) / (n * m))
    assert np.all(np.abs((high - low) / (2 * 1.96 * se) - 1) < 0.25)
    once = invariance_ci.auc_interval("translation_x", VALUES, pos, neg, np.ones((1, n)), np.ones((1, m)))
    assert once["points"] == [[pytest.approx(a), pytest.approx(a)] for a in exact]


def test_the_figure_draws_each_auc_curves_band_from_the_run_or_from_analysis_json(monkeypatch, tmp_path):
    from downpour.analysis import canvas, figures

    model, images, others = _with_others()
    passes = Passes([1])
    inv = invariance_curves(model, images, 1, sign=1, baseline=0.0, negatives=others, passes=passes)
    ci = invariance_ci.selectivity_intervals(inv, passes, seed=0)
    for result in ({**inv, "selectivity_ci": ci}, {**inv, "selectivity": {"range_ci": ci}}):
        drawn = []
        monkeypatch.setattr(canvas, "save", lambda fig, path: drawn.append(fig) or path)
        figures.invariance_plot(result, tmp_path / "inv.png")
        k = [c["transform"] for c in inv["curves"]].index("translation_x")
        ax = drawn[0].axes[len(inv["curves"]) + k]                          # its AUC panel
        bands = [p for p in ax.collections if p.get_paths()]
        assert len(bands) == 1
        ys = bands[0].get_paths()[0].vertices[:, 1]
        low, high = np.array(ci["translation_x"]["points"]).T
        assert ys.min() == pytest.approx(low.min()) and ys.max() == pytest.approx(high.max())
