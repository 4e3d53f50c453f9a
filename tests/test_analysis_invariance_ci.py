"""The invariance ranges' bootstrap intervals: they cover a planted range, narrow with more images, are recomputed from
the sweep's own per-image responses, and the report shows them."""
from __future__ import annotations

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
