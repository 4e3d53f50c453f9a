"""The untied kernel's forward keeping x's receptive fields for the weight gradient (``_lc_kernels.keeps_fields``)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from downpour.layers import LocallyConnected2d, locally_connected_reference
from downpour.layers import _lc_kernels as kernels

pytestmark = pytest.mark.usefixtures("one_thread")


def _kept(out: torch.Tensor) -> torch.Tensor | None:
    """The fields the untied forward that made ``out`` saved for its backward (its third saved tensor)."""
    return out.grad_fn.saved_tensors[2]


def _step(layer: LocallyConnected2d, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    layer.weight.grad = None
    out = layer(x)
    out.backward(g)
    return out.detach(), layer.weight.grad


@pytest.mark.parametrize("stride, chunk_bytes, threads", [(1, 1 << 20, 1), (2, 1, 1), (3, 1, 3), (1, 300, 2)])
def test_the_kept_fields_are_x_unfolded_and_give_the_copied_fields_results_bit_for_bit(stride, chunk_bytes, threads):
    """The kept (P, Q, B) fields are F.unfold's columns (an independent copy: a chunk written at the wrong rows, or a
    span's thread writing another's, fails here); the layer and its weight gradient read from them are the ones with
    nothing kept (``KEEP_BYTES = 0``, each chunk's fields copied twice), torch.equal, one chunk or many, on the
    caller or split over worker threads, and the plain einsum's autograd's."""
    layer = LocallyConnected2d(2, 4, (10, 9), 3, stride=stride).double()
    layer.chunk_bytes = chunk_bytes
    x = torch.randn(3, 2, 10, 9, dtype=torch.float64)
    g = torch.randn(3, 4, *layer.out_size, dtype=torch.float64)
    torch.set_num_threads(threads)
    try:
        fields = _kept(layer(x))
        unfolded = F.unfold(x, 3, stride=stride)                                 # (B, Q, P)
        assert fields is not None and torch.equal(fields, unfolded.permute(2, 1, 0))
        out, dw = _step(layer, x, g)
        budget, kernels.KEEP_BYTES = kernels.KEEP_BYTES, 0
        try:
            assert _kept(layer(x)) is None
            out_copied, dw_copied = _step(layer, x, g)
        finally:
            kernels.KEEP_BYTES = budget
    finally:
        torch.set_num_threads(1)
    assert torch.equal(out, out_copied) and torch.equal(dw, dw_copied) and dw.stride() == dw_copied.stride()
    leaf = layer.weight.detach().clone().requires_grad_(True)
    (locally_connected_reference(x, leaf, stride) * g).sum().backward()
    torch.testing.assert_close(dw, leaf.grad)


@pytest.mark.parametrize("stride", [1, 2])
def test_gradcheck_of_the_layer_with_its_fields_kept(stride):
    """Both gradients (x's and the weight's) of the layer whose forward keeps its fields, several chunks."""
    layer = LocallyConnected2d(2, 2, (7, 6), 3, stride=stride).double()
    layer.chunk_bytes = 1
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_(True)
    assert _kept(layer(x, w)) is not None
    assert gradcheck(lambda x_, w_: layer(x_, w_), (x, w))


def test_the_fields_are_kept_within_the_budget_where_the_weight_gradient_is_wanted(monkeypatch):
    """Not kept: over ``KEEP_BYTES`` (the paper's stage 1 keeps 130 MB an example), without a weight gradient (a frozen
    layer, inference) or off the CPU; the layer's results are the same either way."""
    layer = LocallyConnected2d(1, 2, (6, 6), 3)
    x = torch.randn(4, 1, 6, 6)
    size = 16 * 9 * 4 * 4                         # P·Q·B floats of 4 bytes
    monkeypatch.setattr(kernels, "KEEP_BYTES", size)
    assert _kept(layer(x)).shape == (16, 9, 4)
    monkeypatch.setattr(kernels, "KEEP_BYTES", size - 1)
    assert _kept(layer(x)) is None
    monkeypatch.setattr(kernels, "KEEP_BYTES", size)
    assert _kept(layer(x.requires_grad_(True), layer.weight.detach())) is None
    into = []       # per chunk copy: whether into kept fields
    real = kernels._windows
    monkeypatch.setattr(kernels, "_windows", lambda *a: into.append(len(a) > 6 and a[6] is not None) or real(*a))
    with torch.no_grad():       # (a Function sees needs_input_grad here too)
        layer(x)
    assert into == [False]
    layer(x)
    assert into == [False, True]
    assert not kernels.keeps_fields(16, 9, 4, 4, torch.device("meta"))
    assert kernels.keeps_fields(16, 9, 4, 4, torch.device("cpu"))

