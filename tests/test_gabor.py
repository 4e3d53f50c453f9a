"""Gabor bank, random filters and the first-layer switch (filled, unit norm, frozen)."""
import math

import pytest
import torch

from downpour.layers.gabor import GaborBank, gabor_kernel, init_first_layer, random_filters

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gabor_kernel_is_zero_mean_unit_norm_and_oriented():
    g = gabor_kernel(9, theta=0.0, wavelength=4.0, phase=0.0)
    assert g.shape == (9, 9)
    assert abs(g.sum().item()) < 1e-5 and abs(g.norm().item() - 1) < 1e-5
    # theta = 0: stripes vary along x, are constant along y near the centre row/column.
    assert (g[4, :] - g[4, :].mean()).abs().max() > 10 * (g[:, 4] - g[4, 4]).abs()[3:6].max()
    rot = gabor_kernel(9, theta=math.pi / 2, wavelength=4.0, phase=0.0)
    assert torch.allclose(rot, g.t(), atol=1e-5)


def test_bank_shape_order_and_responses():
    bank = GaborBank(11, orientations=4, scales=2, phases=2, channels=3)
    f = bank.filters()
    assert f.shape == (16, 3, 11, 11) and len(bank) == 16
    assert torch.allclose(f.flatten(1).norm(dim=1), torch.ones(16), atol=1e-5)
    # A vertical-stripe grating at the first scale's wavelength excites orientation 0 most.
    x = torch.arange(11.0)
    grating = torch.cos(2 * math.pi * x / bank.wavelength(0)).expand(3, 11, 11)
    resp = (f[:4] * grating).flatten(1).sum(1).abs()
    assert resp.argmax().item() == 0


@pytest.mark.parametrize("n", [1, 3, 8, 20, 40])
def test_sized_bank_covers_n(n):
    bank = GaborBank.sized(n, 8)
    assert len(bank) >= n and bank.orientations == min(8, max(1, n // bank.phases))


def test_random_filters_unit_norm_and_seeded():
    a, b = random_filters(10, 2, 5, seed=3), random_filters(10, 2, 5, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, random_filters(10, 2, 5, seed=4))
    assert torch.allclose(a.flatten(1).norm(dim=1), torch.ones(10), atol=1e-5)


def test_init_first_layer_locally_connected_layout():
    w = torch.nn.Parameter(torch.zeros(3, 3, 6, 2, 5, 5))  # (tH, tW, maps, C, k, k)
    assert init_first_layer(w, "gabor", seed=0) is False and not w.requires_grad
    expected = GaborBank.sized(6, 5, 2).filters()[:6]
    assert torch.allclose(w[1, 2], expected) and torch.allclose(w[0, 0], expected)
    r = torch.nn.Parameter(torch.zeros(3, 3, 6, 2, 5, 5))
    assert init_first_layer(r, "random", seed=1) is False
    norms = r.detach().flatten(3).norm(dim=3)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert not torch.equal(r[0, 0], r[0, 1])  # random filters differ from position to position


def test_init_first_layer_dense_and_learned():
    w = torch.nn.Parameter(torch.randn(10, 3 * 8 * 8))
    before = w.detach().clone()
    assert init_first_layer(w, "learned") is True and w.requires_grad and torch.equal(w, before)
    assert init_first_layer(w, "gabor", channels=3) is False
    assert torch.allclose(w[0].view(3, 8, 8), GaborBank.sized(10, 8, 3).filters()[0])


def test_init_first_layer_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="first_layer must be one of"):
        init_first_layer(torch.zeros(4, 64), "designed")
    with pytest.raises(ValueError, match=r"\(hidden, C\*k\*k\)"):
        init_first_layer(torch.zeros(4, 60), "gabor")
    with pytest.raises(ValueError, match="weight shape"):
        init_first_layer(torch.zeros(4, 5, 6), "random")


def test_no_filter_of_a_small_bank_is_dead():
    """At a 2-pixel wavelength the even phase on an even-sized field samples the grating at its zeros:
    rica-local with 2x2 filters had 2 of its 4 frozen maps all zero at every position."""
    for k in range(2, 10):
        for n in (4, 16, 25, 64) if k > 2 else (4, 16):    # a 2x2 field holds 19 distinct filters
            norms = GaborBank.sized(n, k).filters().flatten(1).norm(dim=1)
            assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5), (k, n)


@pytest.mark.parametrize("n, k", [(64, 8), (16, 2), (19, 2), (40, 8), (25, 5), (64, 6), (100, 3), (128, 16)])
def test_a_bank_holds_no_filter_twice(n, k):
    """rica-8x8 with first_layer = "gabor" (64 maps): wavelengths 8, 4, 2, 2 and, at 2 pixels, even = -odd at 0 and
    90 degrees: 18 of its 64 frozen filters repeat (or negate) another. Near repeats are left out too, not only exact
    ones: two of its 2-pixel gratings have |cos| 0.994, and a 2x2 bank has 16 pairs at 0.99998."""
    f = GaborBank.sized(n, k).filters()[:n].flatten(1).double()
    cos = (f @ f.T).abs()
    cos.fill_diagonal_(0)
    assert f.shape[0] == n and float(cos.max()) <= 0.99


@pytest.mark.parametrize("maps, k, most", [(20, 2, 19), (64, 2, 19), (400, 8, 339)])
def test_more_maps_than_distinct_filters_fit_is_one_line_naming_the_key(maps, k, most):
    """A 2x2 field's zero-mean filters span 3 dimensions: a 64-map bank was 64 near-copies of a few filters
    (|cos| 0.999999), and 2000 maps on 8x8 fields ran for over 9 minutes (every extra orientation rebuilt
    the bank, each filter compared in Python with all before it). 400 maps take the same path as 2000."""
    w = torch.nn.Parameter(torch.zeros(2, 2, maps, 1, k, k))
    with pytest.raises(ValueError, match=rf"model.first_layer = 'gabor' needs {maps} distinct filters.*"
                                         rf"{k}x{k} fields hold no {maps}.*use fewer maps") as err:
        init_first_layer(w, "gabor")
    assert "\n" not in str(err.value) and f"at most {most}," in str(err.value)
    assert w.requires_grad and not w.detach().any()     # refused before anything was filled or frozen


def test_the_default_small_banks_are_as_before():
    bank = GaborBank.sized(8, 8)      # cat-demo's: 4 orientations x 2 phases at the field's wavelength
    assert (bank.orientations, bank.phases, bank.scales, len(bank)) == (4, 2, 1, 8)
