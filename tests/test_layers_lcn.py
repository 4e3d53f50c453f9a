"""LocalContrastNorm2d against explicit loops, invariances, gradients, frozen outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from downpour.layers import LocalContrastNorm2d


# Tiny shapes gain nothing from threads, and on a busy machine every OpenMP join waits for the cores.
pytestmark = pytest.mark.usefixtures("one_thread")

REF = Path(__file__).parent / "data" / "layers_lcn_ref.npz"


def loop_lcn(x, k, sigma, eps):
    """Jarrett et al.'s recipe with an explicit loop over positions and a clipped window at borders."""
    b, c, h, w = x.shape
    r = k // 2
    # the window written out here, not the layer's gaussian_window: exp(-d²/2σ²) in every channel; its
    # scale cancels, as each windowed sum is divided by the part of the window it covers
    d = torch.arange(k, dtype=torch.float64) - r
    win = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma ** 2)).expand(c, k, k).to(x.dtype)   # (C, k, k)

    def local(t):  # border-corrected windowed sum over channels and space -> (B, H, W)
        out = torch.zeros(b, h, w, dtype=x.dtype)
        for i in range(h):
            for j in range(w):
                i0, i1, j0, j1 = max(0, i - r), min(h, i + r + 1), max(0, j - r), min(w, j + r + 1)
                wv = win[:, i0 - i + r:i1 - i + r, j0 - j + r:j1 - j + r]
                out[:, i, j] = (t[:, :, i0:i1, j0:j1] * wv).sum(dim=(1, 2, 3)) / wv.sum()
        return out

    v = x - local(x)[:, None]
    sigma_map = torch.sqrt(local(v * v) + eps ** 2)[:, None]
    c_mean = sigma_map.mean(dim=(1, 2, 3), keepdim=True)
    return v / torch.maximum(sigma_map, c_mean)


@pytest.mark.parametrize("sums", ["banded", "direct"])
@pytest.mark.parametrize("channels, h, w, k", [(3, 8, 7, 5), (1, 5, 9, 3), (2, 4, 3, 9)])  # the last: window > map
def test_matches_loops(channels, h, w, k, sums):
    torch.manual_seed(0)
    x = torch.randn(2, channels, h, w, dtype=torch.float64) * 3 + 1
    lcn = LocalContrastNorm2d(channels, kernel_size=k, sigma=1.5, sums=sums)
    torch.testing.assert_close(lcn(x), loop_lcn(x, k, 1.5, 1e-4))


@pytest.mark.parametrize("channels, side, banded", [(8, 40, True), (1, 600, False), (8, 600, True), (4, 513, False)])
def test_auto_takes_the_banded_products_except_on_large_maps_of_few_channels(channels, side, banded):
    """Banded products cost O(side) per position, the direct convolutions O(C k²): one map of 800x800 was 1.36x
    slower banded (docs/benchmarks.md pool_lcn)."""
    from torch.utils.flop_counter import FlopCounterMode

    lcn = LocalContrastNorm2d(channels, kernel_size=5)
    with FlopCounterMode(display=False) as counter:
        lcn(torch.randn(1, channels, side, 8))
    ops = set(counter.get_flop_counts()["Global"])
    assert (torch.ops.aten.convolution in ops) == (not banded)


def test_invariances():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    lcn = LocalContrastNorm2d(3, kernel_size=7)
    torch.testing.assert_close(lcn(x), lcn(5.0 * x + 2.0), rtol=1e-4, atol=1e-4)   # gain and offset removed
    flat = torch.full((1, 3, 10, 10), 7.0, dtype=torch.float64)
    torch.testing.assert_close(lcn(flat), torch.zeros_like(flat))                  # border-corrected mean
    # in float32 too: the rounding of a constant's local mean (~1e-6 of it), over sigma's floor eps, read up to
    # 0.92 for a constant 100
    for level in (3.0, 100.0, 0.1):
        flat32 = torch.full((1, 3, 20, 20), level)
        assert torch.equal(LocalContrastNorm2d(3)(flat32), torch.zeros_like(flat32))


@pytest.mark.parametrize("sums", ["banded", "direct"])
def test_gradcheck(sums):
    torch.manual_seed(2)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(LocalContrastNorm2d(2, kernel_size=3, sums=sums), (x,), fast_mode=True)


def test_bad_inputs():
    for sigma, eps in ((float("nan"), 1e-4), (1.0, float("nan")), (1.0, float("inf"))):   # all NaN, all zeros
        with pytest.raises(ValueError, match="sigma and eps must be finite and > 0"):
            LocalContrastNorm2d(1, 3, sigma=sigma, eps=eps)
    with pytest.raises(ValueError, match="odd"):
        LocalContrastNorm2d(3, kernel_size=4)
    with pytest.raises(ValueError, match="sums must be one of"):
        LocalContrastNorm2d(3, sums="fft")
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        LocalContrastNorm2d(3)(torch.randn(1, 2, 9, 9))


def _reference_case():
    g = torch.Generator().manual_seed(4321)
    x = torch.rand(2, 3, 16, 16, generator=g)
    return x, LocalContrastNorm2d(3, kernel_size=9)


def test_frozen_reference_output():
    x, lcn = _reference_case()
    ref = np.load(REF)
    np.testing.assert_array_equal(x.numpy(), ref["x"])
    # atol: outputs are O(1) and float32 sums of 243 terms; 1e-6 failed on another CPU by 1.2e-6 on a
    # value near 0, while a wrong window or axis moves values by O(0.1)
    np.testing.assert_allclose(lcn(x).numpy(), ref["y"], rtol=1e-5, atol=1e-5)
    # the frozen output was once the layer's own: both are held to the loop recipe in float64, at the
    # default sigma = kernel_size / 4 written out, so a wrong window frozen into the file fails here
    expected = loop_lcn(x.double(), 9, 9 / 4, 1e-4).numpy()
    np.testing.assert_allclose(ref["y"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lcn(x).numpy(), expected, rtol=1e-5, atol=1e-5)


if __name__ == "__main__":  # python tests/test_layers_lcn.py  -> rewrites the frozen reference, from the loops
    x, lcn = _reference_case()
    REF.parent.mkdir(exist_ok=True)
    np.savez(REF, x=x.numpy(), y=loop_lcn(x.double(), 9, 9 / 4, 1e-4).float().numpy())
    print(f"wrote {REF}")
