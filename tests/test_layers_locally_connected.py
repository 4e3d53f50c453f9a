"""LocallyConnected2d against explicit loops over positions, its adjoint, the conv limit, gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from downpour.layers import LocallyConnected2d, input_gradients_only, locally_connected_reference
from downpour.layers import _lc_kernels as kernels


# Tiny shapes gain nothing from threads, and on a busy machine every OpenMP join waits for the cores.
pytestmark = pytest.mark.usefixtures("one_thread")


def loop_reference(x, weight, stride, bias=None):
    """Explicit loops: position (i, j) applies bank (i mod tH, j mod tW) to its receptive field."""
    b, c, h, w = x.shape
    th, tw, m, _, k, _ = weight.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = torch.zeros(b, m, ho, wo, dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k]     # (B, C, k, k)
            bank = weight[i % th, j % tw]                                             # (M, C, k, k)
            out[:, :, i, j] = torch.einsum("bcuv,mcuv->bm", patch, bank)
            if bias is not None:
                out[:, :, i, j] += bias[i % th, j % tw]
    return out


CASES = [  # (in_size, k, stride, tile)
    ((9, 8), 3, 1, None), ((9, 8), 3, 2, None), ((10, 7), 4, 3, None), ((9, 8), 3, 1, 1),
    ((9, 8), 3, 2, 1), ((9, 8), 3, 1, 2), ((10, 9), 3, 2, 3), ((9, 8), 2, 1, 5),
]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=["rule", "banked"])
def route(request, monkeypatch):
    """Tiled layers as lc.runs_banked routes them (expanded, on these small CPU shapes), and forced
    onto one convolution per bank, so both paths are checked against the loops."""
    from downpour.layers import locally_connected as lc

    if request.param == "banked":
        monkeypatch.setattr(lc, "runs_banked", lambda *_, **__: True)
    return request.param


@pytest.mark.parametrize("in_size,k,stride,tile", CASES)
def test_matches_loops_and_reference(in_size, k, stride, tile, route):
    layer = LocallyConnected2d(2, 3, in_size, k, stride=stride, tile=tile, bias=True).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 2, *in_size, dtype=torch.float64)
    want = loop_reference(x, layer.weight, stride, layer.bias)
    assert layer(x).shape == (3, 3, *layer.out_size)
    torch.testing.assert_close(layer(x), want)
    torch.testing.assert_close(locally_connected_reference(x, layer.weight, stride, layer.bias), want)


@pytest.mark.parametrize("in_size,k,stride,tile", CASES)
def test_adjoint_is_transpose(in_size, k, stride, tile, route):
    layer = LocallyConnected2d(2, 3, in_size, k, stride=stride, tile=tile).double()
    x = torch.randn(2, 2, *in_size, dtype=torch.float64)
    y = torch.randn(2, 3, *layer.out_size, dtype=torch.float64)
    lhs = (layer(x) * y).sum()
    rhs = (x * layer.adjoint(y)).sum()
    torch.testing.assert_close(lhs, rhs)
    other = torch.randn_like(layer.weight)
    ref = (locally_connected_reference(x, other, stride) * y).sum()
    torch.testing.assert_close((x * layer.adjoint(y, other)).sum(), ref)


def test_tile_one_is_conv2d():
    layer = LocallyConnected2d(3, 4, 11, 3, stride=2, tile=1, bias=True)
    x = torch.randn(2, 3, 11, 11)
    want = F.conv2d(x, layer.weight[0, 0], layer.bias[0, 0], stride=2)
    torch.testing.assert_close(layer(x), want)
    assert layer.tile == (1, 1) and layer.filters().shape == (4, 3, 3, 3)


def test_untied_shapes_and_filters():
    layer = LocallyConnected2d(3, 8, (12, 10), 5, stride=1)
    assert layer.tile is None and layer.untied and layer.out_size == (8, 6)
    assert layer.weight.shape == (8, 6, 8, 3, 5, 5)
    assert layer.filters().shape == (8 * 6 * 8, 3, 5, 5)
    tiled = LocallyConnected2d(3, 8, (12, 10), 5, tile=4)
    assert tiled.tile == (4, 4) and tiled.weight.shape == (4, 4, 8, 3, 5, 5)
    wide = LocallyConnected2d(3, 8, (12, 10), 5, tile=7)      # untied along columns only
    assert wide.tile == (7, 6) and not wide.untied


@pytest.mark.parametrize("chunk_bytes", [1, 1000, 1 << 30])
def test_chunking_does_not_change_results(chunk_bytes):
    layer = LocallyConnected2d(2, 3, (9, 10), 3, stride=2).double()
    layer.chunk_bytes = chunk_bytes
    x = torch.randn(2, 2, 9, 10, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, *layer.out_size, dtype=torch.float64)
    out = layer(x)
    torch.testing.assert_close(out, loop_reference(x.detach(), layer.weight.detach(), 2))
    (out * y).sum().backward()
    want_w = kernels.lc_weight_grad(x.detach(), y, 2, 3, chunk_bytes=1 << 30)
    torch.testing.assert_close(layer.weight.grad, want_w)
    torch.testing.assert_close(x.grad, layer.adjoint(y).detach())


@pytest.mark.parametrize("tile", [None, 1, 2])
def test_gradcheck_forward_and_adjoint(tile, route):
    layer = LocallyConnected2d(2, 2, (6, 5), 3, stride=1, tile=tile, bias=True).double()
    layer.chunk_bytes = 1  # one output row per chunk, so the chunk seams are checked too
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 2, *layer.out_size, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = torch.randn_like(layer.bias).requires_grad_(True)
    # functional_call swaps the parameters for gradcheck's inputs
    fast = tile is not None  # the conv paths use torch's own gradients; a random projection suffices
    assert gradcheck(lambda x_, w_, b_: torch.func.functional_call(layer, {"weight": w_, "bias": b_}, (x_,)),
                     (x, w, b), fast_mode=fast)
    assert gradcheck(lambda y_, w_: layer.adjoint(y_, w_), (y, w), fast_mode=fast)


def test_double_backward_untied():
    """The contractive penalty differentiates through d(layer)/dx; the kernels support it."""
    layer = LocallyConnected2d(2, 2, (5, 5), 3, stride=1).double()
    layer.chunk_bytes = 1
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_(True)
    f = lambda x_, w_: torch.tanh(torch.func.functional_call(layer, {"weight": w_}, (x_,)))  # noqa: E731
    assert gradgradcheck(f, (x, w))
    y = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda y_, w_: layer.adjoint(y_, w_) ** 2, (y, w))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="tile must be None or a positive int, got True"):   # a TypeError in torch.empty
        LocallyConnected2d(1, 2, 8, 3, tile=True)
    with pytest.raises(ValueError, match="stride must be a positive int, got True"):
        LocallyConnected2d(1, 2, 8, 3, stride=True)
    with pytest.raises(ValueError, match="kernel_size"):
        LocallyConnected2d(3, 8, 4, 5)
    with pytest.raises(ValueError, match="tile"):
        LocallyConnected2d(3, 8, 10, 3, tile=0)
    layer = LocallyConnected2d(3, 8, 10, 3)
    with pytest.raises(ValueError, match=r"expected \(B, 3, 10, 10\)"):
        layer(torch.randn(1, 3, 9, 10))
    with pytest.raises(ValueError, match="weight must have shape"):
        layer.adjoint(torch.randn(1, 8, 8, 8), torch.randn(1, 1, 8, 3, 3, 3))


@pytest.mark.parametrize("stride", [1, 2])
def test_tiled_expanded_path_matches_conv_path(monkeypatch, stride):
    """A tiled layer runs as one convolution per bank or with its banks expanded to one per position
    (lc.runs_banked picks); both routes give the same map, adjoint and gradients."""
    from downpour.layers import locally_connected as lc

    layer = LocallyConnected2d(2, 3, (10, 9), 3, stride=stride, tile=3).double()
    x = torch.randn(2, 2, 10, 9, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, *layer.out_size, dtype=torch.float64)

    def routed(banked: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(lc, "runs_banked", lambda *_, **__: banked)
        assert layer._expanded(layer.weight, 2) is not banked
        out, back = layer(x), layer.adjoint(y)
        return [out, back, *torch.autograd.grad(out.square().sum() + back.square().sum(), (layer.weight, x))]

    by_conv, expanded = routed(True), routed(False)
    for a, b in zip(by_conv, expanded):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(expanded[0], loop_reference(x, layer.weight, stride))


def test_the_tiled_path_rule_on_the_shapes_it_was_measured_on():
    """bench/tiled.py: on the CPU, training at batch 32, the expanded path won at the main job's stages,
    with one input channel and with many banks; banked convolutions won with 3x9x9 filters over 400+
    positions per bank, and at batch 1 on a large image (the expansion's bytes are paid per call).
    Without a weight gradient the forward convolutions won unless a bank had few positions. Off the
    CPU the earlier rule (convolutions up to 64 banks) stands."""
    from downpour.layers.locally_connected import runs_banked

    cpu, gpu = torch.device("cpu"), torch.device("cuda")

    def rule(banks, positions, reduction, device=cpu, batch=32, weight_grad=True):
        return runs_banked(banks, positions, reduction, device, batch=batch, maps=8, weight_grad=weight_grad)

    assert not rule(4, 25 * 25, 1 * 8 * 8)        # main job, stage 1
    assert not rule(4, 8 * 8, 8 * 5 * 5)          # main job, stage 2
    assert not rule(64, 25 * 25, 64)
    assert rule(4, 56 * 56, 3 * 9 * 9) and rule(9, 92 * 92, 3 * 9 * 9)
    assert rule(4, 185 * 185, 64, batch=1) and not rule(4, 185 * 185, 64, batch=64)   # 192x192, 1 channel
    assert rule(4, 25 * 25, 64, weight_grad=False) and not rule(4, 8 * 8, 200, weight_grad=False)
    assert rule(4, 25 * 25, 64, gpu) and not rule(65, 25 * 25, 243, gpu)
    small, large = LocallyConnected2d(1, 8, 32, 8, tile=2), LocallyConnected2d(3, 8, 64, 9, tile=2)
    assert small._expanded(small.weight, 32) and not large._expanded(large.weight, 32)
    with torch.no_grad():                          # inference: the same layer runs its convolutions
        assert not small._expanded(small.weight, 32)


def test_weight_layouts_agree_and_grad_keeps_layout():
    """Untied banks are stored maps-innermost; a contiguous weight of the same values gives the same results."""
    layer = LocallyConnected2d(2, 3, (8, 9), 3, stride=1).double()
    assert kernels.maps_last(layer.weight) and not layer.weight.is_contiguous()
    x = torch.randn(2, 2, 8, 9, dtype=torch.float64)
    y = torch.randn(2, 3, *layer.out_size, dtype=torch.float64)
    grads = []
    for w in (layer.weight.detach().clone(), layer.weight.detach().contiguous()):
        w.requires_grad_(True)
        out = torch.func.functional_call(layer, {"weight": w}, (x,))
        torch.testing.assert_close(out, loop_reference(x, w.detach(), 1))
        (out * y).sum().backward()
        assert w.grad.stride() == w.stride()  # autograd keeps it without a copy
        grads.append(w.grad)
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(layer.adjoint(y, layer.weight.detach().contiguous()), layer.adjoint(y))


def test_untied_decoder_weight_grad_in_either_layout():
    layer = LocallyConnected2d(2, 3, (7, 6), 3).double()
    y = torch.randn(2, 3, *layer.out_size, dtype=torch.float64)
    t = torch.randn(2, 2, 7, 6, dtype=torch.float64)
    for w in (torch.randn_like(layer.weight), torch.randn(layer.weight.shape, dtype=torch.float64)):
        w = w.detach().requires_grad_(True)
        (layer.adjoint(y, w) * t).sum().backward()
        assert w.grad.stride() == w.stride()
        # d<A_w^T y, t>/dw = weight gradient of the forward map at input t with output gradient y
        want = kernels.lc_weight_grad(t, y, 1, 3)
        torch.testing.assert_close(w.grad, want)


@pytest.mark.parametrize("stride, chunk_bytes, threads", [(1, 1 << 20, 1), (2, 1, 1), (3, 1, 3), (1, 300, 2)])
def test_the_layer_and_its_weight_gradient_from_one_pass_are_the_two_passes_bit_for_bit(stride, chunk_bytes, threads):
    """``lc_apply_and_weight_grad`` (the tied decoder's backward) against ``lc_apply`` and ``lc_backward``'s weight
    gradient, torch.equal, in both weight-gradient layouts, one chunk or many, on the caller or split over worker
    threads; and against the loops (the layer) and autograd of the plain einsum (the weight gradient), independent of
    the kernel."""
    torch.set_num_threads(threads)
    try:
        x = torch.randn(3, 2, 10, 9, dtype=torch.float64)
        w = torch.randn(*[(n - 3) // stride + 1 for n in (10, 9)], 4, 2, 3, 3, dtype=torch.float64)
        y = torch.randn(3, 4, *w.shape[:2], dtype=torch.float64)
        for maps_last in (True, False):
            out, dw = kernels.lc_apply_and_weight_grad(x, w, y, stride, chunk_bytes, grad_maps_last=maps_last)
            assert torch.equal(out, kernels.lc_apply(x, w, stride, chunk_bytes))
            want = kernels.lc_backward(y, stride, 3, (10, 9), x=x, chunk_bytes=chunk_bytes, grad_maps_last=maps_last)[1]
            assert torch.equal(dw, want) and dw.stride() == want.stride()
    finally:
        torch.set_num_threads(1)
    torch.testing.assert_close(out, loop_reference(x, w, stride))
    leaf = w.clone().requires_grad_(True)
    (locally_connected_reference(x, leaf, stride) * y).sum().backward()
    torch.testing.assert_close(dw, leaf.grad)


def test_a_tied_reconstruction_copies_its_receptive_fields_twice_a_step(monkeypatch):
    """adjoint(apply(x, w), w)'s step: the forward's copy of x's fields, kept for the weight gradient
    (``keeps_fields``), and one of the reconstruction's gradient g for both halves of the adjoint's backward (it was
    two); with nothing kept (``KEEP_BYTES = 0``) one more of x for the weight gradient; gradients as before."""
    layer = LocallyConnected2d(2, 3, (9, 8), 3).double()
    x = torch.randn(2, 2, 9, 8, dtype=torch.float64)
    copies = []     # (rows, into the kept fields?) a copy: the layer's 7 output rows, one chunk at the default budget
    real = kernels._windows
    monkeypatch.setattr(kernels, "_windows", lambda *a: copies.append((a[3:5], len(a) > 6 and a[6] is not None))
                        or real(*a))
    w = layer.weight
    (layer.adjoint(layer(x, w), w) - x).square().sum().backward()
    assert copies == [((0, 7), True), ((0, 7), False)]      # x's fields (forward, kept), g's (the adjoint's backward)
    got = layer.weight.grad.clone()
    layer.weight.grad = None
    monkeypatch.setattr(kernels, "KEEP_BYTES", 0)
    copies.clear()
    (layer.adjoint(layer(x, w), w) - x).square().sum().backward()
    assert copies == [((0, 7), False)] * 3                   # and x's again, for the weight gradient
    assert torch.equal(layer.weight.grad, got)
    layer.weight.grad = None
    leaf = w.detach().clone().requires_grad_(True)
    codes, probe = locally_connected_reference(x, leaf, 1), torch.zeros_like(x, requires_grad=True)
    # the einsum's transpose applied to the codes, A_w^T A_w x: d<A_w p, codes>/dp (linear in p)
    recon = torch.autograd.grad((locally_connected_reference(probe, leaf, 1) * codes).sum(), probe,
                                create_graph=True)[0]
    (recon - x).square().sum().backward()
    torch.testing.assert_close(got, leaf.grad)


def test_input_gradients_only_leaves_the_dropped_weight_gradient_out_and_the_input_gradient_the_same(monkeypatch):
    """``autograd.grad(out, x)`` of an untied layer whose weight requires grad (the optimal stimulus's 302 calls):
    inside ``input_gradients_only`` the kernel computes no weight gradient (autograd drops it) and x's gradient is the same,
    bit for bit; outside it, and after it, a backward computes the weight gradient as before."""
    layer = LocallyConnected2d(2, 3, (8, 9), 3, stride=1)
    x = torch.randn(2, 2, 8, 9, requires_grad=True)
    asked = []       # per backward through the kernel: whether it was given x, to compute the weight gradient
    real = kernels.lc_backward
    monkeypatch.setattr(kernels, "lc_backward", lambda *a, **k: asked.append(a[5] is not None) or real(*a, **k))
    (full,) = torch.autograd.grad(layer(x).square().sum(), x)
    with input_gradients_only():
        (only,) = torch.autograd.grad(layer(x).square().sum(), x)
    assert asked == [True, False]
    assert torch.equal(only, full)
    layer(x).square().sum().backward()
    assert asked[-1] and layer.weight.grad is not None


@pytest.mark.parametrize("stride", [1, 2])
def test_worker_threads_split_rows_without_changing_results(stride):
    """With >1 torch thread the untied kernel splits output rows over worker threads; same numbers."""
    layer = LocallyConnected2d(2, 3, (13, 9), 3, stride=stride).double()
    layer.chunk_bytes = 1
    x = torch.randn(2, 2, 13, 9, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, *layer.out_size, dtype=torch.float64)
    torch.set_num_threads(3)
    try:
        out = layer(x)
        (out * y).sum().backward()
        assert torch.get_num_threads() == 3  # the workers' own setting does not leak into the caller
        with torch.inference_mode():
            torch.testing.assert_close(layer(x.detach()), out.detach())
    finally:
        torch.set_num_threads(1)
    torch.testing.assert_close(out, loop_reference(x.detach(), layer.weight.detach(), stride))
    torch.testing.assert_close(x.grad, layer.adjoint(y).detach())
    torch.testing.assert_close(layer.weight.grad, kernels.lc_weight_grad(x.detach(), y, stride, 3))


def test_a_stop_while_the_workers_start_leaves_no_worker_waiting(monkeypatch):
    """A Ctrl-C (or SIGTERM) that reaches the caller while it waits for the pool's workers to start: they end, and the
    next call starts a pool that works (else they wait on their barrier for it forever, and the process, its
    runner's checkpoint saved, never exits: Python joins a pool's threads at exit)."""
    import threading

    from downpour.layers import _lc_threads

    class StoppedCaller(threading.Barrier):
        def wait(self, timeout=None):
            if threading.current_thread() is threading.main_thread():
                raise KeyboardInterrupt
            return super().wait(timeout)

    monkeypatch.setattr(_lc_threads, "_pool", None)    # this test's pools, not the module's
    torch.set_num_threads(2)
    try:
        old = _lc_threads.run_parts(lambda p: p, [0]) and _lc_threads._pool   # one worker: two parts start another
        before = set(threading.enumerate())
        with monkeypatch.context() as patch:
            patch.setattr(threading, "Barrier", StoppedCaller)
            with pytest.raises(KeyboardInterrupt):
                _lc_threads.run_parts(lambda p: p, [0, 1])
        started = [t for t in threading.enumerate() if t not in before and t.name.startswith("downpour-lc")]
        for t in started:
            t.join(timeout=30)
        assert started and not [t for t in started if t.is_alive()]
        assert torch.get_num_threads() == 2
        for parts in ([0], [0, 1]):     # not the one-worker pool, shut down for the stopped start
            names = _lc_threads.run_parts(lambda p: threading.current_thread().name[:11], parts)
            assert names == ["downpour-lc"] * len(parts)
    finally:
        torch.set_num_threads(1)
        for pool in {old, _lc_threads._pool} - {None}:
            pool.shutdown(wait=True)


def test_dispatch_modes_see_the_kernel_ops():
    """FlopCounterMode is per thread: with a mode active the kernel must stay on the caller's thread."""
    from torch.utils.flop_counter import FlopCounterMode

    layer = LocallyConnected2d(2, 3, (10, 9), 3)
    x = torch.randn(4, 2, 10, 9)
    torch.set_num_threads(2)
    try:
        with FlopCounterMode(display=False) as counter:
            layer(x)
    finally:
        torch.set_num_threads(1)
    assert counter.get_total_flops() == 2 * 4 * 3 * 2 * 9 * layer.out_size[0] * layer.out_size[1]
