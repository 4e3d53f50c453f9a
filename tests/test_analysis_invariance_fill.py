"""What the invariance warps put where they uncover area outside the image (analysis.invariance_fill), and the scale
range's upper end on its own (``scale_up``)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from downpour.analysis.invariance import invariance_curves, invariance_summary, selectivity_summary
from downpour.analysis.options import analysis_options
from downpour.analysis.warp import transform
from downpour.config import ConfigError, RunConfig
from downpour.studies.measure import censored_widths, range_widths
from test_analysis_planted import PlantedModel

SIDE = 32


class LinearModel(PlantedModel):
    """PlantedModel's dense layer on the pixels as they are (no per-image centring and scaling): a unit's response is
    its weights' dot product with the image, so a flat area adds its level times their sum there."""

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x.reshape(x.shape[0], -1))


def _band() -> Tensor:
    """(1, 32, 32): a bright horizontal band through the middle (rows 12-19), reaching both side edges."""
    x = torch.zeros(1, SIDE, SIDE)
    x[0, 12:20] = 1.0
    return x


def test_a_shift_uncovers_each_images_own_mean_or_its_repeated_edge():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    moved = transform(x, shift=(3.0, 0.0))                                       # the default: each image's mean
    assert torch.allclose(moved[..., :3], x.mean(dim=(2, 3))[..., None, None].expand(2, 3, 8, 3), atol=1e-6)
    assert torch.allclose(moved[..., 3:], x[..., :5], atol=1e-6)                 # the content moved right, unchanged
    border = transform(x, shift=(3.0, 0.0), fill="border")                       # the old fill: column 0 repeated
    assert torch.allclose(border[..., :3], x[..., :1].expand(2, 3, 8, 3), atol=1e-6)
    shrunk = transform(x, scale=0.5)                                              # a shrink uncovers a frame
    assert torch.allclose(shrunk[..., 0, :], x.mean(dim=(2, 3))[..., None].expand(2, 3, 8), atol=1e-6)
    with pytest.raises(ValueError, match="fill must be one of mean, border, got 'zeros'"):
        transform(x, shift=(1.0, 0.0), fill="zeros")


@pytest.mark.parametrize("warp", [dict(scale=0.25), dict(scale=0.3536), dict(scale=0.5), dict(scale=2.0),
                                  dict(shift=(3.0, -2.0)), dict(angle=30.0)])
def test_a_warp_of_an_image_is_the_warp_of_it_on_a_larger_plain_canvas(warp):
    """With the mean fill, an image is a picture on an endless canvas of its own mean, per channel: warping it is
    warping it on a larger such canvas and keeping the middle. (A shrink's blur repeated the edges under either fill
    until 2026-12-05, so the shrunk face kept an unblurred step at its border: 0.23 off at 0.354x on 30 lfw faces.)"""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    mean = x.mean(dim=(2, 3), keepdim=True)
    big = mean.expand(2, 3, 48, 48).clone()
    big[..., 16:32, 16:32] = x                              # the same mean: the canvas is at it
    assert torch.allclose(transform(big, **warp)[..., 16:32, 16:32], transform(x, **warp), atol=1e-5)


def test_a_band_unit_keeps_its_response_to_the_sweeps_end_under_the_repeated_edge_and_not_under_the_mean():
    """The band reaches both side edges, so a horizontal shift with the edge repeated gives back the same image: the
    unit's translation range ran to the sweep's end (as 47 of the mechanisms study's 48 cells' did). With each image's
    mean the uncovered columns are flat, and the unit (its weights summing to 0 down every column) loses them.
    (A unit reading the centre alone could not tell the fills apart: a shift of at most 0.375 of the side, the sweep
    until 2026-12-05, never uncovers the centre.)"""
    torch.manual_seed(0)
    model = LinearModel((1, SIDE, SIDE), n_units=2)
    weight = torch.full((1, SIDE, SIDE), -1 / 3)
    weight[0, 12:20] = 1.0                                                        # each column sums to 0
    model.plant(0, weight)
    faces = _band().expand(6, 1, SIDE, SIDE) + 0.01 * torch.randn(6, 1, SIDE, SIDE)
    level = float(model(faces)[:, 0].detach().mean())
    # the unit's level on the other class, as the analysis passes it: 0.4 of its response to the band
    kwargs = dict(baseline=0.4 * level, scales=(1.0,), angles=(0.0,))
    border = invariance_summary(invariance_curves(model, faces, 0, fill="border", **kwargs))
    assert border["ranges"]["translation_x"] == [-32.0, 32.0] and border["censored"]["translation_x"]   # (the whole side)
    mean = invariance_curves(model, faces, 0, **kwargs)                           # the default fill
    assert mean["fill"] == "mean"
    curve = next(c for c in mean["curves"] if c["transform"] == "translation_x")
    # a shift by f of the side keeps 1 - f of the response: (1 - f - 0.4) / 0.6 above the baseline
    assert curve["response"] == pytest.approx([(0.6 - abs(v) / SIDE) / 0.6 for v in curve["values"]], abs=0.01)
    summary = invariance_summary(mean)
    assert summary["ranges"]["translation_x"] == [-8.0, 8.0] and summary["censored"]["translation_x"] is False


def _scale_result(response: list[float], auc: list[float]) -> dict:
    values = [0.25, 0.5, 1.0, 2.0, 4.0]
    return {"curves": [{"transform": "scale", "values": values, "response": response, "auc": auc}]}


def test_the_scale_ranges_upper_end_is_reported_on_its_own_with_its_own_end_flag():
    """A range from the sweep's bottom (0.25x) to 2x is censored as a whole, though its upper end was measured: 1 octave
    above 1x, not at the sweep's end; another running to 4x is censored there."""
    result = _scale_result([0.9, 0.8, 1.0, 0.7, 0.2], [0.8, 0.85, 0.9, 0.9, 0.88])
    summary = invariance_summary(result)
    assert summary["ranges"]["scale"] == [0.25, 2.0] and summary["censored"]["scale"] is True
    assert summary["scale_up"] == {"octaves": pytest.approx(1.0), "censored": False}
    selective = selectivity_summary(result)               # the AUC stays above 0.7 (halfway from 0.5 to 0.9) up to 4x
    assert selective["ranges"]["scale"] == [0.25, 4.0]
    assert selective["scale_up"] == {"octaves": pytest.approx(2.0), "censored": True}
    none = invariance_summary(_scale_result([0.9, 0.8, 0.3, 0.7, 0.2], [0.5] * 5))   # below the floor untransformed
    assert none["scale_up"] == {"octaves": None, "censored": None}
    # the study's cells: the upper end beside the width, with its own flag
    assert range_widths(summary["ranges"], (SIDE, SIDE))["inv_scale_up_octaves"] == pytest.approx(1.0)
    assert censored_widths(summary["censored"], summary["scale_up"])["inv_scale_up_octaves"] == 0.0
    assert censored_widths(selective["censored"], selective["scale_up"])["inv_scale_up_octaves"] == 1.0
    assert math.isnan(range_widths({"scale": None}, (SIDE, SIDE))["inv_scale_up_octaves"])


def test_the_fill_is_an_analysis_option_checked_by_name():
    assert analysis_options(RunConfig(), {}).invariance_fill == "mean"
    assert analysis_options(RunConfig(), {"invariance_fill": "border"}).invariance_fill == "border"
    with pytest.raises(ConfigError, match="invariance_fill"):
        analysis_options(RunConfig(), {"invariance_fill": "zeros"})


def test_the_report_says_which_fill_and_gives_the_tied_units_upper_scale_end():
    """analysis.json recorded the fill (invariance.fill) and the tied units' upper scale ends (widths.scale_up) and
    the report showed neither (until 2026-12-05): a reader could not tell a range measured on a plain canvas from one
    in the repeated edges, nor which end of the tied widths ran out. A file before the fill existed was measured with
    the edges repeated."""
    from html import escape as html_escape

    from downpour.analysis.invariance import sweep
    from downpour.analysis.invariance_widths import tied_summary
    from downpour.analysis.report import _invariance
    torch.manual_seed(0)
    model = LinearModel((1, SIDE, SIDE), n_units=2)
    weight = torch.full((1, SIDE, SIDE), -1 / 3)
    weight[0, 12:20] = 1.0
    model.plant(0, weight)
    model.plant(1, torch.roll(weight, 1, dims=1))            # the band a row lower: another range
    faces = _band().expand(6, 1, SIDE, SIDE) + 0.01 * torch.randn(6, 1, SIDE, SIDE)
    level = float(model(faces)[:, 0].detach().mean())
    inv = invariance_curves(model, faces, 0, baseline=0.4 * level)
    inv.update(summary=invariance_summary(inv),
               tied=tied_summary(sweep(model, faces, [0, 1], [1, 1], [0.4 * level] * 2)))
    html = _invariance({"invariance": inv})
    assert 'is each image\'s own mean, a plain canvas (analysis.invariance_fill = "mean")' in html
    u = inv["tied"]["widths"]["scale_up"]
    assert u["measured"] == 2 and u["mean"] is not None
    ended = f"{u['censored']} of them at the sweep's largest scale" if u["censored"] else "none at the sweep's largest"
    assert html_escape(f"; its upper end {u['mean']:.3g} ± {u['std']:.2g} octaves above 1x, median {u['median']:.3g} "
                       f"({u['min']:.3g}–{u['max']:.3g}), {ended}") in html
    del inv["fill"]                                        # an analysis.json from before the fill: the edges repeated
    assert ('the image\'s edge pixels repeated (analysis.invariance_fill = "border", the only fill when this '
            'analysis.json was made)' in _invariance({"invariance": inv}))
