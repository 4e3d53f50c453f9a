"""L2Pool2d against explicit loops, maps pooling, learnable weights, gradients, frozen outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from downpour.layers import L2Pool2d


# Tiny shapes gain nothing from threads, and on a busy machine every OpenMP join waits for the cores.
pytestmark = pytest.mark.usefixtures("one_thread")

REF = Path(__file__).parent / "data" / "layers_l2pool_ref.npz"


def loop_l2pool(x, k, stride, padding, g, h=None, eps=1e-8):
    """sqrt(eps + sum over a k x k window of g adjacent maps of h * x^2), by explicit loops."""
    b, c, height, width = x.shape
    xp = torch.nn.functional.pad(x, (padding,) * 4)
    ho, wo = (height + 2 * padding - k) // stride + 1, (width + 2 * padding - k) // stride + 1
    h = torch.ones(c // g, g, k, k, dtype=x.dtype) if h is None else h
    out = torch.zeros(b, c // g, ho, wo, dtype=x.dtype)
    for o in range(c // g):
        for i in range(ho):
            for j in range(wo):
                win = xp[:, o * g:(o + 1) * g, i * stride:i * stride + k, j * stride:j * stride + k]
                out[:, o, i, j] = (h[o] * win ** 2).sum(dim=(1, 2, 3))
    return torch.sqrt(out + eps)


@pytest.mark.parametrize("k,stride,padding,g", [(3, 1, 0, 1), (3, 2, 1, 1), (2, 2, 0, 2), (5, 1, 2, 4)])
def test_matches_loops(k, stride, padding, g):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    pool = L2Pool2d(k, stride, padding, maps_pool=g)
    torch.testing.assert_close(pool(x), loop_l2pool(x, k, stride, padding, g))
    torch.testing.assert_close(pool.energy(x), loop_l2pool(x, k, stride, padding, g, eps=0.0) ** 2)


def test_learnable_weights_are_nonnegative_and_trainable():
    torch.manual_seed(1)
    pool = L2Pool2d(3, 1, 1, maps_pool=2, learnable=True, channels=4).double()
    with torch.no_grad():
        pool.weight.uniform_(-1, 1)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(pool(x), loop_l2pool(x.detach(), 3, 1, 1, 2, h=pool.weight.detach().abs()))
    assert (pool.pool_weights() >= 0).all()
    assert gradcheck(lambda x_, w_: torch.func.functional_call(pool, {"weight": w_}, (x_,)),
                     (x, pool.weight.detach().clone().requires_grad_(True)), fast_mode=True)


def test_gradcheck_fixed():
    torch.manual_seed(2)
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(L2Pool2d(3, 2, 1, maps_pool=2), (x,))


def test_bad_inputs():
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):    # NaN took the eps = 0 branch
        L2Pool2d(2, eps=float("nan"))
    with pytest.raises(ValueError, match="stride must be an int"):
        L2Pool2d(2, stride=True)
    with pytest.raises(ValueError, match="needs channels"):
        L2Pool2d(3, learnable=True)
    with pytest.raises(ValueError, match="multiple of maps_pool"):
        L2Pool2d(3, maps_pool=3, channels=4)
    with pytest.raises(ValueError, match="input has 5 channels"):
        L2Pool2d(3, maps_pool=2)(torch.randn(1, 5, 6, 6))
    with pytest.raises(ValueError, match="kernel_size"):
        L2Pool2d(0)


def _reference_case():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(2, 8, 10, 10, generator=g)
    return x, L2Pool2d(3, stride=2, padding=1, maps_pool=2)


def test_frozen_reference_output():
    x, pool = _reference_case()
    ref = np.load(REF)
    np.testing.assert_array_equal(x.numpy(), ref["x"])
    np.testing.assert_allclose(pool(x).numpy(), ref["y"], rtol=1e-5, atol=1e-6)
    # the frozen output was once the layer's own: both are held to the explicit loops in float64
    expected = loop_l2pool(x.double(), 3, 2, 1, 2).numpy()
    np.testing.assert_allclose(ref["y"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pool(x).numpy(), expected, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":  # python tests/test_layers_pooling.py  -> rewrites the frozen reference, from the loops
    x, pool = _reference_case()
    REF.parent.mkdir(exist_ok=True)
    np.savez(REF, x=x.numpy(), y=loop_l2pool(x.double(), 3, 2, 1, 2).float().numpy())
    print(f"wrote {REF}")


def test_eps_zero_pools_a_window_of_zeros_to_zero_with_a_finite_gradient():
    """sqrt's gradient at 0 is infinite: one all-zero window made every input's gradient NaN."""
    x = torch.zeros(1, 2, 5, 5, dtype=torch.float64)
    x[:, :, 3:, 3:] = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    x.requires_grad_(True)
    pool = L2Pool2d(2, eps=0.0)
    out = pool(x)
    torch.testing.assert_close(out, loop_l2pool(x.detach(), 2, 1, 0, 1, eps=0.0))
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[:, :, :2, :2].abs().sum() == 0
    live = x.detach()[:, :, 1:, 1:].clone().requires_grad_(True)     # windows that all hold a value: sqrt's own gradient
    assert torch.autograd.gradcheck(L2Pool2d(2, eps=0.0), (live,))
