"""The scale warp's anti-aliasing blur (downpour/analysis/warp.py ``_blur``): one matrix product per axis, checked
against the padded conv2d it stands for, an impulse's response and what it reads beyond the edges."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from downpour.analysis import warp
from downpour.analysis.invariance import DEFAULT_SCALES
from downpour.analysis.warp import _blur, transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import warp_blur  # noqa: E402
from warp_blur import conv_blur, two_matrix_blur  # noqa: E402  (the padded conv2d per axis; a matrix per axis)

SHAPES = [(6, 1, 16, 16), (3, 3, 32, 32), (2, 1, 24, 40)]     # the digits', the main job's, and not square
EPS = 2e-6      # float32 rounding of sums of up to 95 products on images in [0, 1]: a few ulps of 1


def _planted(shape: tuple[int, ...]) -> Tensor:
    """Noise in [0, 1] with a bright off-centre square and a dark stripe along the top edge: content at the border."""
    torch.manual_seed(0)
    x = torch.rand(shape) * 0.5
    _, _, h, w = shape
    x[..., h // 4: h // 2, w // 2: 3 * w // 4] = 1.0
    x[..., 0, :] = 0.0
    return x


def _gaussian(sigma: float) -> np.ndarray:
    """The normalised 1-D kernel in float64, written here from its definition (reach ceil(3 sigma), at least 1)."""
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [DEFAULT_SCALES[0], 0.0884, 0.25, 0.875])      # 1/32x, the smallest, to the last blur
def test_the_blur_equals_the_padded_convolution_on_planted_images(shape, scale):
    x = _planted(shape)
    sigma = (1 / scale - 1) / 2
    reach = max(1, math.ceil(3 * sigma))
    for pad, grow in (("replicate", 0), ("constant", 0), ("constant", reach)):
        got, want = _blur(x, sigma, pad, grow=grow), conv_blur(x, sigma, pad, grow)
        assert got.shape == want.shape == (*shape[:2], shape[2] + 2 * grow, shape[3] + 2 * grow)
        assert (got - want).abs().max().item() < EPS, (pad, grow)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_square_image_builds_one_matrix_and_gets_the_same_bits_as_one_per_axis(monkeypatch, shape):
    x = _planted(shape)
    built = []
    make = warp._blur_matrix
    monkeypatch.setattr(warp, "_blur_matrix", lambda n, *a: built.append(n) or make(n, *a))
    for pad, grow in (("replicate", 0), ("constant", 0), ("constant", 47)):
        assert torch.equal(_blur(x, 15.5, pad, grow=grow), two_matrix_blur(x, 15.5, pad, grow))
    h, w = shape[2:]
    by_blur = [h] if h == w else [h, w]                 # then two_matrix_blur's [h, w]
    assert built == (by_blur + [h, w]) * 3


@pytest.mark.parametrize("fill", ["mean", "border"])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_scale_of_the_sweep_warps_as_under_the_padded_convolution(monkeypatch, shape, fill):
    x = _planted(shape)
    got = [transform(x, scale=s, fill=fill) for s in DEFAULT_SCALES]
    monkeypatch.setattr(warp, "_blur", conv_blur)
    want = [transform(x, scale=s, fill=fill) for s in DEFAULT_SCALES]
    worst = max((a - b).abs().max().item() for a, b in zip(got, want))
    assert worst < EPS
    assert any((a - x).abs().max() > 0.1 for a in got)      # the warps moved the images: not equal by doing nothing


@pytest.mark.parametrize("sigma, grow", [(15.5, 47), (1.5, 0), (0.3, 1)])
def test_an_impulse_spreads_into_the_outer_product_of_the_kernel_at_its_own_place(sigma, grow):
    h, w = 120, 130
    row, col = 61, 57                   # far enough from the edges that no tap reads beyond them
    x = torch.zeros(1, 1, h, w)
    x[0, 0, row, col] = 1.0
    got = _blur(x, sigma, "constant", grow=grow)[0, 0].double().numpy()
    k = _gaussian(sigma)
    r = len(k) // 2
    want = np.zeros((h + 2 * grow, w + 2 * grow))
    want[row + grow - r: row + grow + r + 1, col + grow - r: col + grow + r + 1] = np.outer(k, k)
    np.testing.assert_allclose(got, want, atol=1e-7)


def test_beyond_the_edges_constant_reads_zero_and_replicate_repeats_the_edge():
    sigma = 2.0
    k = _gaussian(sigma)
    r = len(k) // 2
    flat = torch.full((1, 1, 20, 24), 3.0)
    # replicate: every row of the matrix sums to 1, so a flat image stays flat, to its corners
    assert (_blur(flat, sigma, "replicate") - 3.0).abs().max().item() < 1e-5
    # constant: an edge pixel keeps the kernel's mass inside the image on each axis (half and the centre tap)
    inside = k[r:].sum()
    assert _blur(flat, sigma, "constant")[0, 0, 0, 0].item() == pytest.approx(3.0 * inside ** 2, abs=1e-5)
    # on a frame grown by the reach, nothing leaks past it: the blur keeps the image's total
    x = _planted((1, 1, 20, 24))
    grown = _blur(x, sigma, "constant", grow=r)
    assert grown.sum().item() == pytest.approx(x.sum().item(), rel=1e-5)
    assert grown[0, 0, :, 0].abs().max().item() > 0    # the grown rim holds what the left column spread into it
    # replicate near a step at the left edge: the edge column's value reads only copies of itself beyond it
    step = torch.zeros(1, 1, 20, 24)
    step[..., :, :1] = 1.0
    want = k[r:].sum()                  # the taps on and beyond the edge column read 1, those inside read 0
    assert _blur(step, sigma, "replicate")[0, 0, 10, 0].item() == pytest.approx(want, abs=1e-6)


def test_a_pad_it_does_not_know_is_named():
    with pytest.raises(ValueError, match="reflect"):
        _blur(torch.zeros(1, 1, 8, 8), 1.0, "reflect")


@pytest.mark.usefixtures("one_thread")       # the bench sets torch's threads: this puts them back
def test_the_bench_prints_old_and_new_of_each_row_with_their_ratio_and_difference(capsys):
    warp_blur.main(["--reps", "1", "--shapes", "16x16"])
    assert warp._blur is _blur                    # the bench put the warp's own blur back
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["row"] for r in rows] == ["sweep", "smallest"] and [r["warps"] for r in rows] == [22, 1]
    for r in rows:
        assert set(r["wall_s"]) == {"new", "old", "before"} and r["ratio"]["of_medians"] > 0 and r["max_abs_diff"] < EPS
        assert r["vs_before"]["of_medians"] > 0
