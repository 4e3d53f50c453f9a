"""Pyramid and glimpse front ends: shapes, exact Laplacian reconstruction, glimpses on the contrast."""
import pytest
import torch

from downpour.layers.pyramid import GlimpseFront, PyramidFront, gaussian_pyramid, laplacian_pyramid, reconstruct


def test_gaussian_pyramid_shapes_and_smoothing():
    x = torch.rand(2, 3, 33, 20)
    g = gaussian_pyramid(x, 4)
    assert [tuple(t.shape[2:]) for t in g] == [(33, 20), (17, 10), (9, 5), (5, 3)]
    # Blurring keeps the mean and removes the pixel noise's variance.
    assert abs(g[1].mean() - x.mean()) < 0.02 and g[1].var() < 0.5 * x.var()


def test_laplacian_reconstructs_exactly():
    x = torch.rand(2, 1, 32, 24)
    lap = laplacian_pyramid(x, 3)
    assert torch.allclose(reconstruct(lap), x, atol=1e-5)
    # The band-pass levels of a constant image are zero: all of it is in the coarsest level.
    flat = laplacian_pyramid(torch.full((1, 1, 16, 16), 0.7), 3)
    assert all(t.abs().max() < 1e-5 for t in flat[:-1]) and torch.allclose(flat[-1], torch.full_like(flat[-1], 0.7))


@pytest.mark.parametrize("kind", ["gaussian", "laplacian"])
def test_pyramid_front_stacks_levels_on_the_input_grid(kind):
    front = PyramidFront(levels=3, kind=kind)
    x = torch.rand(2, 2, 16, 16)
    y = front(x)
    assert y.shape == (2, 6, 16, 16) == (2, *front.out_shape((2, 16, 16)))
    assert torch.equal(y[:, :2], x if kind == "gaussian" else laplacian_pyramid(x, 3)[0])


def test_glimpses_land_on_the_high_contrast_spots():
    x = torch.full((2, 1, 40, 40), 0.5)
    spots = [[(6, 30), (30, 8)], [(20, 20), (34, 34)]]
    g = torch.Generator().manual_seed(0)
    for b, places in enumerate(spots):
        for r, c in places:
            x[b, 0, r - 3:r + 3, c - 3:c + 3] = torch.rand(6, 6, generator=g)  # a textured 6x6 patch
    front = GlimpseFront(glimpses=2, size=8, scales=2)
    y = front(x)
    assert y.shape == (2, 2, 2, 8, 8) == (2, *front.out_shape((1, 40, 40)))
    for b, places in enumerate(spots):
        got = sorted(tuple(t) for t in front.last_centres[b].tolist())
        for (r, c), (gr, gc) in zip(sorted(places), got):
            assert abs(r - gr) <= 2 and abs(c - gc) <= 2
    # Scale 0 is the sharp centre crop itself; scale 1 is the 16x16 surround pooled to 8x8.
    r, c = front.last_centres[0, 0].tolist()
    assert torch.equal(y[0, 0, 0], x[0, 0, r - 4:r + 4, c - 4:c + 4])
    padded = torch.nn.functional.pad(x, (8, 8, 8, 8))  # zero beyond the image
    assert torch.allclose(y[0, 0, 1].mean(), padded[0, 0, r:r + 16, c:c + 16].mean(), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind must be"):
        PyramidFront(kind="wavelet")
    with pytest.raises(ValueError, match="smaller than the glimpse size"):
        GlimpseFront(size=16)(torch.rand(1, 1, 10, 10))
    with pytest.raises(ValueError, match="levels need an input"):
        gaussian_pyramid(torch.rand(1, 1, 1, 1), 2)


def test_more_glimpses_than_fit_apart_start_again_from_the_most_salient_place():
    """Once every corner was suppressed, argmax of all -1 picked the top-left corner for every glimpse left."""
    torch.manual_seed(0)
    centres = GlimpseFront(12, 12, 1).centres(torch.rand(2, 1, 32, 32))
    for image in centres.tolist():
        first = image[:image.index(image[0], 1)]          # the first round, up to the first repeat
        assert len(first) >= 2 and image == (first * 12)[:12]


def test_the_pyramids_size_error_names_the_side_it_needs():
    """Sides round up, so 5 levels need 9 pixels (9, 5, 3, 2, 1), not the 16 the message said."""
    from downpour.layers.pyramid import gaussian_pyramid

    assert len(gaussian_pyramid(torch.zeros(1, 1, 9, 9), 5)) == 5
    with pytest.raises(ValueError, match="5 levels need an input of at least 9 pixels a side"):
        gaussian_pyramid(torch.zeros(1, 1, 8, 8), 5)


@pytest.mark.parametrize("levels", [0, -1, 2.5, "3", True])
def test_a_level_count_that_is_no_positive_int_is_refused_naming_levels(levels):
    """PyramidFront(2.5) was built and failed at its first batch with "'float' object cannot be interpreted as an
    integer"; "3" with "'<' not supported"; True made a one-level pyramid."""
    with pytest.raises(ValueError, match=rf"PyramidFront: levels must be a positive int, got {levels!r}"):
        PyramidFront(levels)
    with pytest.raises(ValueError, match=rf"gaussian_pyramid: levels must be a positive int, got {levels!r}"):
        gaussian_pyramid(torch.rand(1, 1, 8, 8), levels)
