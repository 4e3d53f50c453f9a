"""The rotation sweep's aperture (since 2026-12-05): under the mean fill every image of the rotation sweep, the unturned
one too, is shown inside the disc inscribed in its frame, the image's mean outside it, so the canvas is the same at
every angle and only the content inside turns."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from downpour.analysis.invariance import invariance_curves, invariance_summary
from downpour.analysis.warp import in_disc, transform
from downpour.models.base import FeatureModel

SIDE = 32


def _distance(side: int = SIDE) -> Tensor:
    """(side, side): each pixel's distance from the frame's centre."""
    centre = torch.arange(side, dtype=torch.float64) - (side - 1) / 2
    return (centre[:, None] ** 2 + centre[None, :] ** 2).sqrt()


def _outside(side: int = SIDE) -> Tensor:
    """(side, side) bool: the pixels the disc leaves out (none of their weight is the image)."""
    return _distance(side) >= side / 2 - 0.5


def test_a_turn_inside_the_aperture_leaves_the_outside_the_same_at_every_angle():
    """Without the aperture a turn's corners are a canvas whose edge with the image moves with the angle; inside it the
    outside of the disc is each image's own mean at 0 degrees as at any other, and what is inside turns."""
    torch.manual_seed(0)
    x = torch.rand(3, 2, SIDE, SIDE)
    mean = x.mean(dim=(2, 3), keepdim=True)
    out = _outside()
    shown = {a: transform(x, angle=a, aperture="disc") for a in (0.0, 7.5, 15.0, 30.0, 45.0, 90.0, -67.5)}
    for a, y in shown.items():
        assert torch.equal(y[..., out], mean.expand_as(x)[..., out]), a
    # the 0-degree reference is the image in the disc, the image itself inside it
    inner = _distance() <= SIDE / 2 - 1.5                                     # a pixel in from the rim: weight 1
    assert torch.allclose(shown[0.0][..., inner], x[..., inner], atol=1e-6)
    assert torch.allclose(shown[90.0], in_disc(torch.rot90(x, -1, dims=(2, 3)), mean), atol=1e-5)   # clockwise
    # the turn without it: the corners differ from one angle to the next
    assert not torch.allclose(transform(x, angle=15.0)[..., out], transform(x, angle=30.0)[..., out], atol=1e-3)
    with pytest.raises(ValueError, match="aperture must be one of none, disc, got 'square'"):
        transform(x, angle=15.0, aperture="square")


class CornerEdges(FeatureModel):
    """One unit: the edge energy (squared differences between neighbouring pixels) in the four corners, outside the
    disc inscribed in the frame. It answers the step where a turn's flat corner meets the image, as the glimpse front's
    variance map does (on the mechanisms study's glimpse front a 15-degree turn put 59% of its glimpses there)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (1, SIDE, SIDE)
        self.register_buffer("corners", (_distance() >= SIDE / 2 + 0.5).float())   # their neighbours outside too

    def forward(self, x: Tensor) -> Tensor:
        dy = F.pad((x[..., 1:, :] - x[..., :-1, :]) ** 2, (0, 0, 0, 1))
        dx = F.pad((x[..., :, 1:] - x[..., :, :-1]) ** 2, (0, 1, 0, 0))
        return ((dx + dy) * self.corners).sum(dim=(1, 2, 3))[:, None]


def test_a_unit_reading_the_corners_edges_is_not_rotation_sensitive_inside_the_aperture():
    """Faces: a bright off-centre ellipse on a dark ground, no edge in the corners. The unit fires against them (sign
    -1, its level on textured non-faces the baseline): turned on the mean canvas, the flat corners meet the dark
    ground in a step and the unit loses half its lead at the first step of the sweep; inside the disc its corners
    are the same at every angle and it keeps its response over the whole sweep."""
    torch.manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(SIDE, dtype=torch.float32), torch.arange(SIDE, dtype=torch.float32),
                                indexing="ij")
    blob = ((((rows - 13) / 9) ** 2 + ((cols - 17) / 5) ** 2) < 1).float()
    faces = 0.1 + 0.8 * blob.expand(6, 1, SIDE, SIDE) + 0.0005 * torch.randn(6, 1, SIDE, SIDE)
    others = 0.1 + 0.01 * torch.rand(6, 1, SIDE, SIDE)
    model = CornerEdges()
    baseline = float(model(others).mean())
    kwargs = dict(sign=-1, baseline=baseline, scales=(1.0,), shifts=(0.0,))
    plain = invariance_curves(model, faces, 0, **kwargs)
    assert plain["rotation_aperture"] == "disc"
    curve = next(c for c in plain["curves"] if c["transform"] == "rotation")
    assert curve["aperture"] == "disc"
    assert curve["response"] == pytest.approx([1.0] * len(curve["values"]), abs=1e-3)
    assert invariance_summary(plain)["ranges"]["rotation"] == [-180.0, 180.0]    # every angle (±90 the sweep before)
    # the same sweep without the aperture (the mean fill alone, as until 2026-12-05): the corners' step
    bare = [float(model(transform(faces, angle=a)).mean()) for a in curve["values"]]
    lead = baseline - float(model(faces).mean())
    kept = [(baseline - b) / lead for b in bare]
    assert kept[curve["values"].index(15.0)] < 0.5 and kept[curve["values"].index(-15.0)] < 0.5


def test_the_report_says_the_turns_were_in_the_disc_and_an_older_file_says_they_were_not():
    from downpour.analysis.report_invariance import fill_words
    assert 'inside the disc inscribed in the frame, that mean outside it (rotation_aperture = "disc")' in fill_words(
        {"fill": "mean", "rotation_aperture": "disc"})
    # an analysis.json measured with the mean fill before the aperture (2026-12-05): its turns' corners were canvas
    assert "the turned images were not in a disc" in fill_words({"fill": "mean"})
    assert "edge pixels repeated" in fill_words({"fill": "border", "rotation_aperture": "none"})


def test_every_fill_the_config_accepts_has_a_rotation_aperture_and_the_default_comes_first():
    """warp.FILLS is read from analysis.invariance_fill's declared choices (one list, since 2026-12-05); a choice
    added there without its rotation aperture would fail in the middle of an analysis, with a KeyError."""
    from downpour.analysis.warp import FILLS, ROTATION_APERTURE
    from downpour.config import AnalysisConfig
    assert set(ROTATION_APERTURE) == set(FILLS)
    assert FILLS[0] == AnalysisConfig().invariance_fill


class _Counted(FeatureModel):
    """Two rectified filters on 24x24 images (a side where a warp by 0 degrees is not the image bit for bit: 1.4e-6
    off), counting forward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (1, 24, 24)
        self.weight = torch.nn.Parameter(torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(0)))
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return F.relu(F.conv2d(x, self.weight)).flatten(1)


def test_under_the_border_fill_the_rotation_curve_is_relative_to_the_unwarped_images_as_before_the_disc():
    """The border fill turns as it did before the aperture (rotation_aperture "none"): its curve divides by the unit's
    response to the images themselves, as the other curves do, not to the images warped by 0 degrees, and no pass is
    made for a reference in a disc it does not use."""
    from downpour.analysis.invariance import sweep
    x = torch.rand(5, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    model, unit, base = _Counted(), 40, 0.05
    angles = (-30.0, 0.0, 30.0)
    result = sweep(model, x, [unit], [1], [base], scales=(1.0,), shifts=(0.0,), angles=angles, fill="border")[0]
    assert result["rotation_aperture"] == "none"
    assert model.calls == 1 + 1 + 1 + 2 + len(angles)      # size check, the images, scale 1, two shifts, the angles

    @torch.no_grad()
    def mean(t: Tensor) -> Tensor:
        return model(t)[:, unit].double().mean() - base

    expected = [float(mean(transform(x, angle=a, fill="border")) / mean(x)) for a in angles]
    assert next(c for c in result["curves"] if c["transform"] == "rotation")["response"] == expected
