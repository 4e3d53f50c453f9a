"""Edge-like filters, the verdict: planted Gabors and edges pass; spikes, checkerboards, blobs, plaids and noise
don't, each impostor failing the test aimed at it (the families: edge_filters.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from downpour.analysis import edge_like, edge_scores, edges
from edge_filters import EDGE_LIKE, NOT_EDGE_LIKE, corner_spikes, gabors, ladders, long_blobs, step_edges


@pytest.mark.parametrize("family", EDGE_LIKE)
def test_planted_gabors_and_edges_are_edge_like(family):
    filters = EDGE_LIKE[family](np.random.default_rng(1), 400)
    assert edge_like(filters).mean() >= 0.95


@pytest.mark.parametrize("family", NOT_EDGE_LIKE)
def test_spikes_checkerboards_blobs_plaids_and_flat_filters_are_not_edge_like(family):
    filters = NOT_EDGE_LIKE[family](np.random.default_rng(2), 200)
    assert not edge_like(filters).any()


@pytest.mark.parametrize("shape", [(5, 5), (8, 8), (10, 10), (3, 8, 8)], ids=lambda s: "x".join(map(str, s)))
def test_gaussian_noise_filters_rarely_pass(shape):
    noise = np.random.default_rng(3).standard_normal((2000, *shape))
    assert edge_like(noise).mean() <= 0.05


def test_a_gabor_in_one_colour_channel_passes_and_colour_noise_does_not():
    rng = np.random.default_rng(4)
    colour = np.zeros((200, 3, 8, 8))
    colour[:, 1] = gabors(rng, 200, sigma=(1.5, 3), freq=(.12, .3))
    assert edge_like(torch.tensor(colour, requires_grad=True)).mean() >= 0.95
    assert edge_like(rng.standard_normal((200, 3, 8, 8))).mean() <= 0.05


def test_a_filter_whose_mean_holds_most_of_its_energy_is_not_an_edge():
    # The same Gabors and edges, raised by a constant that holds half the energy: a brightness detector.
    rng = np.random.default_rng(19)
    f = np.concatenate([gabors(rng, 100), step_edges(rng, 100)])
    centred = f - f.mean(axis=(1, 2), keepdims=True)
    raised = centred + np.sqrt((centred ** 2).mean(axis=(1, 2), keepdims=True))     # mean² · 64 = Σ centred²
    np.testing.assert_allclose(edge_scores(raised)["mean_share"], 0.5)
    assert edge_like(centred).mean() >= 0.95 and not edge_like(raised).any()


def test_long_smooth_blobs_pass_the_four_tests_but_not_the_mean():
    blobs = long_blobs(np.random.default_rng(21), 1000)
    s = edge_scores(blobs)
    assert edges._decide(s, 64).mean() > 0.9                       # once centred, a bar: 0.96-1.0 at aspect 1.6-3
    assert edge_like(blobs).mean() <= 0.01 and (s["mean_share"] > edges.MEAN_SHARE_MAX).mean() >= 0.99


def test_a_bar_at_the_pixel_scale_passes_only_with_its_stripes_along_it(monkeypatch):
    # Without the alignment a row of alternating pixels passes: its (-1)^x copy is a bar across the stripes.
    monkeypatch.setattr(edges, "NYQUIST_ALIGN_DEGREES", 90.0)
    assert edge_like(ladders(np.random.default_rng(20), 200)).mean() > 0.3


FAILS = {
    "spread": lambda s: s["spread"] * 64 < edges.SPREAD_MIN_PIXELS,
    "frequency": lambda s: s["peak_frequency"] > edges.FREQ_MAX,
    "concentration": lambda s: s["concentration"] < edges.CONCENTRATION_MIN,
    "coherence": lambda s: s["coherence"] < edges.COHERENCE_MIN,
    # A plaid near 0.15 cycles/px has its two peaks ~0.2 apart, both partly inside one disk; coherence then catches it.
    "concentration or coherence": lambda s: (s["concentration"] < edges.CONCENTRATION_MIN)
    | (s["coherence"] < edges.COHERENCE_MIN),
}


IMPOSTORS = {**NOT_EDGE_LIKE, "8x8 noise": lambda rng, n: rng.standard_normal((n, 8, 8))}


@pytest.mark.parametrize("family, test", [
    ("corner spikes", "spread"), ("single pixels", "spread"), ("windowed checkerboards", "frequency"),
    ("windowed one-pixel stripes", "frequency"), ("8x8 noise", "concentration"),
    ("plaids", "concentration or coherence"), ("gaussian blobs", "coherence"), ("centre-surround", "coherence"),
])
def test_each_impostor_fails_the_test_aimed_at_it(family, test):
    assert FAILS[test](edge_scores(IMPOSTORS[family](np.random.default_rng(17), 500))).all()


def test_corner_spikes_are_rejected_on_spread_even_without_the_concentration_test(monkeypatch):
    # Concentration alone also rejects them (a few pixels cannot have a narrow spectrum); spread is the second lock.
    spikes = corner_spikes(np.random.default_rng(18))
    monkeypatch.setattr(edges, "CONCENTRATION_MIN", 0.0)
    assert not edge_like(spikes).any()


def test_shuffling_a_gabors_pixels_makes_it_fail():
    rng = np.random.default_rng(9)
    g = gabors(rng, 200, sigma=(2, 3), freq=(.15, .3))
    shuffled = np.stack([rng.permutation(one.ravel()).reshape(8, 8) for one in g])
    assert edge_like(g).all() and not edge_like(shuffled).any()


def test_five_thousand_filters_are_scored_in_one_call_in_order():
    # More filters than one FFT block: noise first, Gabors second, so a block written to the wrong place shows.
    rng = np.random.default_rng(12)
    filters = np.concatenate([rng.standard_normal((2500, 8, 8)), gabors(rng, 2500, sigma=(1.5, 3), freq=(.12, .3))])
    ok = edge_like(filters)
    assert ok.shape == (5000,) and ok.dtype == bool
    assert ok[:2500].mean() <= 0.05 and ok[2500:].mean() >= 0.95
