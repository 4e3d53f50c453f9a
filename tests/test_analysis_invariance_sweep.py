"""The default sweeps run to where the transform has taken the face away (since 2026-12-05): a shift of the whole
side, a shrink to 1/32, a turn of 180 degrees. They stopped at 0.375 of the side, 0.25x and 90 degrees, and most of the
glimpse fronts' ranges ran to those ends: bounds, where a wider sweep measures them."""
from __future__ import annotations

import pytest
import torch

from downpour.analysis.invariance import DEFAULT_SHIFTS, invariance_curves, invariance_summary
from downpour.studies.measure import range_widths
from downpour.studies.stats import figure_range, within_range
from test_analysis_invariance_fill import SIDE, LinearModel, _band

# the sweep until 2026-12-05: tests of what a range at the sweep's end reads use it for a unit that holds up past it
OLD_SWEEP = dict(scales=(0.25, 0.3536, 0.5, 0.625, 0.75, 0.875, 1.0, 1.125, 1.25, 1.5, 1.75, 2.0, 2.828, 4.0),
                 angles=(-90.0, -67.5, -45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0, 67.5, 90.0),
                 shifts=(-0.375, -0.25, -0.1875, -0.125, -0.0625, 0.0, 0.0625, 0.125, 0.1875, 0.25, 0.375))


def _band_unit() -> tuple[LinearModel, torch.Tensor, float]:
    """The band unit of test_analysis_invariance_fill: a horizontal shift by f of the side keeps 1 - f of its response
    (the uncovered columns are flat, and its weights sum to 0 down every column); its baseline 0.4 of that response
    below 0 (it answers the other class against its sign), so it keeps half its response above it out to 0.7 of the
    side: (1 - f + 0.4) / 1.4 >= 0.5, between the old sweep's end (0.375) and the new one's (1.0)."""
    torch.manual_seed(0)
    model = LinearModel((1, SIDE, SIDE), n_units=2)
    weight = torch.full((1, SIDE, SIDE), -1 / 3)
    weight[0, 12:20] = 1.0
    model.plant(0, weight)
    faces = _band().expand(6, 1, SIDE, SIDE) + 0.01 * torch.randn(6, 1, SIDE, SIDE)
    return model, faces, -0.4 * float(model(faces)[:, 0].detach().mean())


def test_a_unit_holding_up_past_the_old_sweeps_end_is_measured_not_bounded():
    model, faces, baseline = _band_unit()
    kwargs = dict(baseline=baseline, scales=(1.0,), angles=(0.0,))
    new = invariance_summary(invariance_curves(model, faces, 0, **kwargs))               # the default sweep
    # 0.625 of the side (20 pixels) keeps 0.55 of the response, 0.75 (24) 0.46: measured, inside the sweep
    assert new["ranges"]["translation_x"] == [-20.0, 20.0] and new["censored"]["translation_x"] is False
    old = invariance_summary(invariance_curves(model, faces, 0, shifts=OLD_SWEEP["shifts"], **kwargs))
    assert old["ranges"]["translation_x"] == [-12.0, 12.0] and old["censored"]["translation_x"] is True   # a bound
    # the study's width of it (x alone here: y's range is the whole band) is not cut at the old sweep's width, 0.75
    width = range_widths({"translation_x": new["ranges"]["translation_x"], "translation_y": [-20.0, 20.0]},
                         (SIDE, SIDE))["inv_shift"]
    assert width == pytest.approx(1.25)
    row = {"figures": {"inv_shift": [width, 1.1, 1.4], "d_inv_shift": [1.25, 1.0, 1.5]}}
    within_range([row])
    assert row["figures"] == {"inv_shift": [width, 1.1, 1.4], "d_inv_shift": [1.25, 1.0, 1.5]}


def test_a_shift_of_the_whole_side_leaves_only_the_fill_and_its_width_bounds_the_figure():
    """At the sweep's end nothing of the face is left: the response there is the fill's, so a range reaching it is a
    unit answering the blank canvas, flagged, and no width can pass the sweep's."""
    model, faces, _ = _band_unit()
    curve = next(c for c in invariance_curves(model, faces, 0, scales=(1.0,), angles=(0.0,))["curves"]
                 if c["transform"] == "translation_x")
    assert max(abs(v) for v in curve["values"]) == SIDE                                  # the whole side
    assert abs(curve["response"][0]) < 1e-4 and abs(curve["response"][-1]) < 1e-4       # the flat fill: no response
    assert figure_range("inv_shift") == (0.0, max(DEFAULT_SHIFTS) - min(DEFAULT_SHIFTS)) == (0.0, 2.0)
    assert figure_range("d_inv_rotation") == (-360.0, 360.0)
    assert figure_range("inv_scale_octaves") == (0.0, 8.0) and figure_range("inv_scale_up_octaves") == (0.0, 3.0)


def test_the_scale_panels_read_in_octaves(monkeypatch, tmp_path):
    """1/32x to 8x on a linear axis put the 13 shrinks, where most units lose the face, in the panel's first eighth."""
    from downpour.analysis import canvas, figures
    from downpour.analysis.invariance import DEFAULT_SCALES
    drawn = []
    monkeypatch.setattr(canvas, "save", lambda fig, path: drawn.append(fig) or path)
    ones = [1.0] * len(DEFAULT_SCALES)
    curves = [{"transform": "scale", "values": list(DEFAULT_SCALES), "response": ones, "sem": ones, "auc": ones,
               "auc_faces_only": ones},
              {"transform": "rotation", "values": [0.0, 90.0], "response": [1.0, 1.0], "sem": [0.0, 0.0],
               "auc": [1.0, 1.0], "auc_faces_only": [1.0, 1.0]}]
    figures.invariance_plot({"curves": curves, "normalised_to": "untransformed response", "unit": 0, "layer": "l",
                             "images": 2}, tmp_path / "x.png")
    axes = drawn[0].axes
    assert [ax.get_xscale() for ax in axes] == ["log", "linear", "log", "linear"]
