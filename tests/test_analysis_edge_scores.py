"""Edge scores, each alone: a planted grating's peak frequency and orientation, the symmetries (transposed, flipped,
sign, scale, offset), colour channels adding in power, and what spread, concentration and mean share are at their
ends (the families: edge_filters.py)."""
from __future__ import annotations

import numpy as np
import pytest

from downpour.analysis import edge_like, edge_scores
from edge_filters import blobs, checkerboards, gabors, gauss, plaids, single_pixels, step_edges, yx


@pytest.mark.parametrize("degrees", [0, 30, 75, 120, 160])
def test_peak_frequency_and_orientation_are_those_of_a_planted_grating(degrees):
    # Wave vector at `degrees` from the +x (column) axis towards +y (rows); 0.25 cycles/pixel under a wide window.
    y, x = yx(8)
    t = np.radians(degrees)
    grating = np.cos(2 * np.pi * 0.25 * ((x - 3.5) * np.cos(t) + (y - 3.5) * np.sin(t))) * gauss(y, x, 3.5, 3.5, 2.5)
    colour = np.concatenate([np.zeros_like(grating), grating, np.zeros_like(grating)])[None]  # only in channel 1
    for filters in (grating, colour):
        s = edge_scores(filters)
        assert s["peak_frequency"][0] == pytest.approx(0.25, abs=0.02)
        assert abs((s["orientation"][0] - degrees + 90) % 180 - 90) < 3  # within 3° on the circle of 180°
        assert s["concentration"][0] > 0.9


def test_transposing_or_flipping_a_filter_mirrors_its_orientation_and_keeps_its_other_scores():
    # Rows and columns must be treated alike (the FFT keeps only half of one axis) and frequencies wrap at Nyquist.
    rng = np.random.default_rng(13)
    f = np.concatenate([gabors(rng, 200, freq=(.08, .42)), step_edges(rng, 50)])
    base = edge_scores(f)
    for moved, angle in ((f.transpose(0, 2, 1), 90 - base["orientation"]), (f[:, :, ::-1], 180 - base["orientation"])):
        s = edge_scores(moved)
        for key in ("spread", "concentration", "peak_frequency", "coherence"):
            np.testing.assert_allclose(s[key], base[key], atol=1e-9, err_msg=key)
        gap = (s["orientation"] - angle) % 180
        assert np.all(np.minimum(gap, 180 - gap) < 1e-6)


def test_colour_channels_add_in_power():
    # Channel 0 a grating at 0°, channels 1 and 2 the same grating at 90°: two thirds of the power sits at 90°.
    y, x = yx(8)
    window = gauss(y, x, 3.5, 3.5, 2.5)
    across, down = np.cos(2 * np.pi * 0.25 * x) * window, np.cos(2 * np.pi * 0.25 * y) * window
    s = edge_scores(np.concatenate([across, down, down])[None])
    assert s["orientation"][0] == pytest.approx(90) and s["concentration"][0] == pytest.approx(2 / 3, abs=0.05)


def test_flat_filters_score_no_spread_and_no_peak():
    s = edge_scores(np.stack([np.zeros((8, 8)), np.full((8, 8), 3.0)]))
    assert np.all(s["spread"] == 0) and np.all(s["concentration"] == 0)
    assert np.isnan(s["peak_frequency"]).all() and np.isnan(s["orientation"]).all()


def test_concentration_is_a_fraction_even_where_the_two_disks_overlap():
    # Low-frequency peaks (edges, blobs) have disks round p* and -p* that overlap; counting that power twice would
    # push the fraction past 1.
    rng = np.random.default_rng(15)
    f = np.concatenate([step_edges(rng, 100), blobs(rng, 100)])
    c = edge_scores(f)["concentration"]
    assert np.all((c >= 0) & (c <= 1 + 1e-12))


def test_a_plaid_puts_about_half_its_power_near_one_peak_pair():
    # Two equal gratings: the disks round ±p* hold one of them. Ignoring the mirror -p* would give ~a quarter.
    c = edge_scores(plaids(np.random.default_rng(5), 100))["concentration"]
    assert 0.35 < c.min() and c.max() < 0.6


def test_spread_is_one_pixel_for_a_spike_and_everything_for_a_checkerboard():
    s = edge_scores(np.concatenate([single_pixels(np.random.default_rng(6)), checkerboards(None)]))["spread"]
    assert np.all(s[:64] < 1.1 / 64) and np.allclose(s[64:], 1.0)


def test_scores_do_not_change_with_sign_scale_or_a_constant_offset_per_channel():
    rng = np.random.default_rng(7)
    grey = np.concatenate([gabors(rng, 50), step_edges(rng, 50)])
    f = grey[:, None] * rng.uniform(.2, 1, (100, 3, 1, 1))            # (100, 3, 8, 8): one pattern, three gains
    moved = -3.7 * f + rng.uniform(-5, 5, (100, 3, 1, 1))             # a different offset in every channel
    base, after = edge_scores(f), edge_scores(moved)
    for key in ("spread", "concentration", "peak_frequency", "coherence"):
        np.testing.assert_allclose(after[key], base[key], atol=1e-9, err_msg=key)
    gap = (after["orientation"] - base["orientation"]) % 180
    assert np.all(np.minimum(gap, 180 - gap) < 1e-6)
    np.testing.assert_array_equal(edge_like(-3.7 * f), edge_like(f))   # (not the offset: edge_like reads the mean)


def test_mean_share_is_one_for_a_constant_and_zero_for_a_zero_mean_filter():
    s = edge_scores(np.stack([np.full((8, 8), 3.0), checkerboards(None)[0], np.zeros((8, 8))]))
    np.testing.assert_allclose(s["mean_share"], [1.0, 0.0, 0.0], atol=1e-12)
