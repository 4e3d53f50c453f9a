"""The variance gate: equal to the layer where open, 0 where closed, and no arithmetic where closed."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from downpour.layers.gating import VarianceGate, local_variance
from downpour.layers.locally_connected import LocallyConnected2d


def _half_flat(b=2, c=2, h=20, w=20, seed=0):
    """Images whose left half is constant (per channel) and right half is noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g)
    x[:, :, :, : w // 2] = torch.rand(b, c, 1, 1, generator=g)
    x[1, :, :5] = 0.3  # a second flat patch in one sample only, so the masks differ per sample
    return x


def _mm_flops(fn, x):
    with FlopCounterMode(display=False) as counter:
        y = fn(x)
    return y, counter.get_total_flops()


def test_local_variance_matches_unfold():
    x = torch.randn(2, 3, 11, 13)
    cols = torch.nn.functional.unfold(x, 4, stride=2)           # (B, C*k*k, L)
    want = cols.view(2, 3, 16, 20).var(dim=2, unbiased=False).mean(1).view(2, 4, 5)
    assert torch.allclose(local_variance(x, 4, 2), want, atol=1e-5)


@pytest.mark.parametrize("tile,stride,bias", [(None, 1, False), (None, 2, True), (1, 1, True), (3, 1, False),
                                              (2, 2, False)])
def test_gate_equals_layer_where_open_and_zero_where_closed(tile, stride, bias):
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 5, 20, 4, stride=stride, tile=tile, bias=bias)
    if bias:
        torch.nn.init.normal_(layer.bias)
    gate = VarianceGate(layer, threshold=1e-6, block=1, mode="exact")
    x = _half_flat()
    with torch.no_grad():
        full, ungated_flops = _mm_flops(layer, x)
        y, gated_flops = _mm_flops(gate, x)
    mask = gate.open_mask(x)[:, None].expand_as(y)
    assert 0.2 < gate.last.skipped_fraction < 0.8
    assert torch.allclose(y[mask], full[mask], atol=1e-5)
    assert torch.all(y[~mask] == 0)
    # The FLOPs torch actually dispatched: the variance test's box filter, plus the filter's
    # GEMMs at exactly the open positions; nothing for closed ones.
    _, test_flops = _mm_flops(lambda t: local_variance(t, 4, stride), x)
    q, m = 2 * 4 * 4, 5
    assert gated_flops == test_flops + 2 * q * m * gate.last.computed
    assert gate.last.flops == gate.last.computed * (2 * q * m + (m if bias else 0))
    if tile in (None, 1):  # block=1: exactly the open positions; tiled layers compute whole t x t tiles
        assert gate.last.computed == gate.last.open
    else:
        assert gate.last.open <= gate.last.computed < gate.last.positions
    assert gate.last.flops_ungated == gate.last.positions * (2 * q * m + (m if bias else 0))
    assert ungated_flops == 2 * q * m * gate.last.positions  # the counter sees the layer's own kernels too


def test_gate_wraps_conv2d_and_blocks():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(2, 3, 5)
    x = _half_flat(h=24, w=24)
    gate = VarianceGate(conv, threshold=1e-6, block=4, mode="exact")
    with torch.no_grad():
        y, full = gate(x), conv(x)
    mask = gate.open_mask(x)
    # Blocks open or close as a whole: every 4x4 tile of the mask is constant.
    tiles = mask[:, :20, :20].reshape(2, 5, 4, 5, 4)
    assert torch.all(tiles.amax(dim=(2, 4)) == tiles.amin(dim=(2, 4)))
    assert mask.sum() >= (local_variance(x, 5) >= 1e-6).sum()
    mask = mask[:, None].expand_as(y)
    assert torch.allclose(y[mask], full[mask], atol=1e-5) and torch.all(y[~mask] == 0)


def test_all_closed_and_all_open():
    layer = LocallyConnected2d(1, 3, 10, 3)
    flat = torch.full((2, 1, 10, 10), 0.5)
    with torch.no_grad():
        y, flops = _mm_flops(VarianceGate(layer, 1e-6, block=1, mode="exact"), flat)
    assert flops == _mm_flops(lambda t: local_variance(t, 3), flat)[1] and torch.all(y == 0)
    noisy = torch.randn(2, 1, 10, 10)
    gate = VarianceGate(layer, 0.0, mode="exact")
    with torch.no_grad():
        assert torch.allclose(gate(noisy), layer(noisy), atol=1e-5)
    assert gate.last.skipped_fraction == 0.0


def test_gradient_flows_to_weights_of_open_positions_only():
    layer = LocallyConnected2d(1, 2, 12, 3)
    x = torch.rand(1, 1, 12, 12)
    x[:, :, :, :6] = 0.2
    gate = VarianceGate(layer, 1e-6, block=2, mode="exact")
    gate(x).sum().backward()
    closed = ~gate.open_mask(x)[0]
    assert torch.all(layer.weight.grad[closed] == 0) and layer.weight.grad[~closed].abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(TypeError, match="wraps a LocallyConnected2d"):
        VarianceGate(torch.nn.Linear(3, 3), 0.1, mode="exact")
    with pytest.raises(ValueError, match="padding=0"):
        VarianceGate(torch.nn.Conv2d(1, 1, 3, padding=1), 0.1, mode="exact")
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="threshold must be >= 0 and finite"):
            VarianceGate(torch.nn.Conv2d(1, 1, 3), bad, mode="exact")


@pytest.mark.parametrize("bad", ["1e-3", True, None])
def test_a_threshold_that_is_no_number_is_refused_naming_it(bad):
    """"1e-3" was a TypeError naming nothing ("must be real number, not str"); True was taken as 1.0."""
    with pytest.raises(ValueError, match=rf"threshold must be >= 0 and finite.*got {bad!r} and 8"):
        VarianceGate(torch.nn.Conv2d(1, 1, 3), bad)
    assert VarianceGate(torch.nn.Conv2d(1, 1, 3), torch.tensor(1e-3)).threshold == pytest.approx(1e-3)   # still taken



@pytest.mark.parametrize("mode", ["exact", "gated", "dense", "auto"])
def test_an_input_the_layer_was_not_built_for_is_refused_on_every_path(mode):
    # the gated path computes from the weights' shape: a larger image wrapped the filters round, a
    # 3-channel one read channel 0 only, where the layer itself raises
    gate = VarianceGate(LocallyConnected2d(1, 2, 16, 3, tile=2), 1e-3, block=2, mode=mode)
    for shape in [(1, 1, 20, 20), (1, 3, 16, 16)]:
        with pytest.raises(ValueError, match=r"takes \(B, 1, 16, 16\)"):
            gate(torch.rand(shape))
    conv = VarianceGate(torch.nn.Conv2d(2, 3, 3), 1e-3, block=2, mode=mode)
    assert conv(torch.rand(1, 2, 9, 11)).shape == (1, 3, 7, 9)   # a convolution takes any size
    with pytest.raises(ValueError, match=r"takes \(B, 2, H, W\)"):
        conv(torch.rand(1, 1, 9, 9))


@pytest.mark.parametrize("norm", [None, 1.0])
def test_cached_filters_follow_every_optimiser_step(norm):
    # with norm, effective_weight() is a new tensor every call, often at the same address with the
    # same version: a cache keyed on it served the filters of an earlier step (23 stale calls of 50)
    torch.manual_seed(0)
    layer = LocallyConnected2d(1, 2, 12, 3, norm=norm)
    gate = VarianceGate(layer, 1e-3, block=2, mode="gated")
    x = torch.zeros(1, 1, 12, 12)
    x[0, 0, :6, :6] = torch.randn(6, 6)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(20):
        with torch.no_grad():
            torch.testing.assert_close(gate(x), layer(x) * gate.open_mask(x)[:, None])
        opt.zero_grad()
        layer(x).pow(2).sum().backward()
        opt.step()


# --- the decision: gated or dense, same output either way -------------------------------------------

def _brute_tiles(gate, x, k, s):
    """Open tiles by the definition: any field of the tile with unfold-computed variance >= threshold."""
    ho, wo, bh, bw, nbh, nbw = gate._geometry(x)
    b, c = x.shape[:2]
    cols = torch.nn.functional.unfold(x.double(), k, stride=s).view(b, c, k * k, ho, wo)
    busy = (cols.var(dim=2, unbiased=False).mean(1) >= gate.threshold).float()[:, None]
    return torch.nn.functional.max_pool2d(busy, (bh, bw), ceil_mode=True)[:, 0] > 0


@pytest.mark.parametrize("c,size,k,stride,block,tile,threshold", [
    (1, (40, 52), 8, 1, 8, None, 1e-3), (3, (33, 29), 5, 2, 4, None, 1e-2), (2, (30, 30), 4, 1, 3, 3, 1e-6),
    (1, (24, 24), 3, 1, 1, 1, 0.0), (1, (64, 64), 8, 1, 8, 1, 0.02)])
def test_tile_mask_matches_every_field_tested_in_float64(c, size, k, stride, block, tile, threshold):
    g = torch.Generator().manual_seed(3)
    h, w = size
    x = torch.rand(2, c, h, w, generator=g) * 0.3
    x[:, :, : h // 2, : w // 3] = 0.5 + 0.01 * torch.rand(2, c, h // 2, w // 3, generator=g)   # var ~1e-5
    x[1, :, h // 2:, w // 2:] = 0.1
    gate = VarianceGate(LocallyConnected2d(c, 2, size, k, stride=stride, tile=tile), threshold, block, mode="exact")
    assert torch.equal(gate._tile_mask(x), _brute_tiles(gate, x, k, stride))


@pytest.mark.parametrize("make", [lambda: LocallyConnected2d(2, 5, 20, 4, bias=True),                  # untied
                                  lambda: LocallyConnected2d(2, 5, 20, 4, stride=2, tile=2, bias=True),  # tiled
                                  lambda: LocallyConnected2d(2, 5, 20, 4, tile=1, bias=True),            # tied
                                  lambda: torch.nn.Conv2d(2, 5, 4, stride=2)])
def test_gated_and_dense_paths_give_the_same_output_and_gradients(make):
    torch.manual_seed(0)
    layer = make()
    if getattr(layer, "bias", None) is not None:
        torch.nn.init.normal_(layer.bias)
    x = _half_flat()
    outs = {}
    for mode in ("gated", "dense"):
        layer.zero_grad()
        gate = VarianceGate(layer, 1e-6, block=2, mode=mode)
        y = gate(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs[mode] = (y.detach(), [p.grad.clone() for p in layer.parameters()])
        assert gate.last.path == mode
        with torch.no_grad():                     # the inference code paths write in place
            assert torch.allclose(gate(x), y, atol=1e-5)
    (yg, gg), (yd, gd) = outs["gated"], outs["dense"]
    assert torch.allclose(yg, yd, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(gg, gd))
    mask = gate.open_mask(x)[:, None].expand_as(yd)
    assert torch.all(yd[~mask] == 0) and 0 < mask.float().mean() < 1
    with torch.no_grad():
        assert torch.allclose(yd[mask], layer(x)[mask], atol=1e-5)


def test_exact_runs_the_path_the_cost_model_says_is_faster(monkeypatch):
    """Dense on a mostly busy batch, gated on a mostly flat one, by the break-even of the model."""
    from downpour.layers import gating
    model = gating.CostModel(t_dense=1.0, t_none=0.1, t_all=2.1)     # gated pays below 40% open (60% flat)
    assert model.break_even == pytest.approx((0.9 * 1.0 - 0.1) / 2.0)  # asking the gated path to be 10% faster
    seen = []
    monkeypatch.setattr(gating, "cost_model", lambda key, *fns, **kw: seen.append(key) or model)
    layer = torch.nn.Conv2d(1, 4, 3)
    gate = VarianceGate(layer, 1e-4, block=2, mode="exact")
    busy = torch.rand(1, 1, 34, 34)
    busy[..., :8, :8] = 0.5                                          # a few flat tiles: ~5% of them closed
    flat = torch.full((1, 1, 34, 34), 0.5)
    flat[..., 20:, 20:] = torch.rand(14, 14)                          # ~15% open
    with torch.no_grad():
        for x, want in ((busy, "dense"), (flat, "gated")):
            y = gate(x)
            assert gate.last.path == want and gate.last.break_even == pytest.approx(0.6)
            mask = gate.open_mask(x)[:, None].expand_as(y)
            assert torch.allclose(y[mask], layer(x)[mask], atol=1e-5) and torch.all(y[~mask] == 0)
    assert len(seen) == 2 and seen[0] == seen[1]                       # one key per layer and input shape


def test_exact_measures_once_per_shape_and_needs_no_model_when_all_or_nothing_is_open():
    from downpour.layers import _gate_cost
    _gate_cost.clear_cache()
    layer = LocallyConnected2d(1, 3, 16, 3)
    gate = VarianceGate(layer, 1e-4, block=2, mode="exact")
    with torch.no_grad():
        gate(torch.full((1, 1, 16, 16), 0.5))
        assert gate.last.path == "gated" and gate.last.break_even is None and not _gate_cost._CACHE
        gate(torch.rand(1, 1, 16, 16))
        assert gate.last.path == "dense" and gate.last.break_even is None and not _gate_cost._CACHE
        x = _half_flat(b=2, c=1, h=16, w=16)
        gate(x)
        (model,) = _gate_cost._CACHE.values()
        assert min(model.t_dense, model.t_none, model.t_all) > 0 and 0 <= model.break_even <= 1
        assert gate.last.break_even == pytest.approx(1 - model.break_even)
        gate(x)
        assert len(_gate_cost._CACHE) == 1


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        VarianceGate(torch.nn.Conv2d(1, 1, 3), 0.1, mode="fast")


# --- the cheap proof: tiles whose origin field is open, then the full test only where needed ---------

def _busy_with_flat_patches(h=61, w=67, seed=4):
    """Noise everywhere, a few flat patches, one of them in the bottom-right corner (tiles overhang there)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 2, h, w, generator=g)
    x[0, :, 10:30, 20:40] = 0.4
    x[1, :, h - 14:, w - 15:] = 0.7
    return x


def test_busy_image_skips_the_full_test_and_gives_the_same_mask(monkeypatch):
    from downpour.layers import _gate_mask
    x = torch.rand(1, 2, 60, 70, generator=torch.Generator().manual_seed(5))
    gate = VarianceGate(LocallyConnected2d(2, 2, (60, 70), 6), 1e-3, 6, mode="exact")
    want = _brute_tiles(gate, x, 6, 1)
    assert want.all()
    monkeypatch.setattr(_gate_mask, "_full_test", None)                 # any call fails
    monkeypatch.setattr(_gate_mask, "_window_test", None)
    assert torch.equal(gate._tile_mask(x), want)


@pytest.mark.parametrize("k,stride,block", [(8, 1, 8), (5, 2, 3)])
def test_few_undecided_tiles_are_tested_on_their_windows_only(monkeypatch, k, stride, block):
    from downpour.layers import _gate_mask
    x = _busy_with_flat_patches()
    gate = VarianceGate(LocallyConnected2d(2, 2, (61, 67), k, stride=stride), 1e-3, block, mode="exact")
    geom = gate._geometry(x)
    full = _gate_mask._full_test(x, k, stride, 1e-3, geom)
    assert torch.equal(full, _brute_tiles(gate, x, k, stride)) and not full.all()
    calls = []
    real = _gate_mask._window_test
    monkeypatch.setattr(_gate_mask, "_window_test", lambda *a: calls.append(a[5].numel()) or real(*a))
    monkeypatch.setattr(_gate_mask, "_full_test", None)
    assert torch.equal(gate._tile_mask(x), full)
    assert calls and 0 < calls[0] < full.numel() // 4                    # the undecided tiles only, a minority


def test_origin_proof_keeps_a_margin_at_the_threshold():
    """Fields whose variance is the threshold to within float rounding are left to the full test."""
    k, thr = 4, 1e-3
    x = torch.full((1, 1, 16, 16), 0.8, dtype=torch.float32)
    # 2x2 checkerboards of amplitude a in every 4x4 tile: each origin field has variance exactly a²
    checker = (torch.arange(16)[:, None] + torch.arange(16)) % 2 * 2 - 1.0
    amps = torch.tensor([1 - 1e-6, 1.0, 1 + 1e-6, 1.1]) * thr ** 0.5
    x[0, 0] += checker * amps.repeat_interleave(4)[:, None]             # tile row i: amplitude amps[i]
    from downpour.layers import _gate_mask
    geom = (13, 13, 4, 4, 4, 4)
    proven = _gate_mask.origin_open(x, k, 1, thr, geom)
    full = _gate_mask._full_test(x, k, 1, thr, geom)
    assert not (proven & ~full).any()                                  # never opens what the test closes
    assert proven[0, 3].all() and not proven[0, :3].any()             # 21% over: proven; within 1e-6: not
    assert torch.equal(_gate_mask.open_tiles(x, k, 1, thr, geom), full)


def test_open_count_covers_only_positions_inside_the_output():
    x = _busy_with_flat_patches()
    gate = VarianceGate(torch.nn.Conv2d(2, 3, 5), 1e-3, block=4, mode="exact")       # 57x63 outputs: tiles overhang both edges
    with torch.no_grad():
        gate(x)
    assert gate.last.open == int(gate.open_mask(x).sum()) < gate.last.positions


@pytest.mark.parametrize("offset", [0.0, 255.0, 1000.0])
def test_a_textured_region_far_from_the_image_mean_stays_open(offset):
    """Raw 0-255 pixels: half an image at 255 with noise of std 0.05 (field variance ~0.0025) had E[x²] -
    E[x]² rounded in float32 to 0 in 552 of 3,249 fields, closed against a threshold of 1e-3."""
    g = torch.Generator().manual_seed(0)
    x = 0.05 * torch.randn(1, 1, 64, 64, generator=g)
    x[..., 32:] += offset
    gate = VarianceGate(LocallyConnected2d(1, 4, 64, 8, tile=1), 1e-3, block=1, mode="exact")
    assert torch.equal(gate._tile_mask(x), _brute_tiles(gate, x, 8, 1))
    assert bool(gate.open_mask(x).all())


def test_images_in_the_unit_range_are_tested_in_their_own_precision():
    from downpour.layers._gate_mask import precise_enough

    x = torch.rand(2, 3, 32, 32)
    assert precise_enough(x, 1e-4) is x and precise_enough(x * 255, 1e-3).dtype == torch.float64


@pytest.mark.parametrize("mode", ["gated", "dense", "bands", "exact", "auto"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_pixel_reaches_the_output_as_the_plain_layer_gives_it(mode, bad):
    """One NaN made every field's variance NaN (the image's mean is centred out first), NaN >= threshold
    closed every tile even at threshold 0, and the paths disagreed: gated wrote zeros (the NaN hidden
    from every later check), dense and bands kept it (NaN x 0)."""
    layer = LocallyConnected2d(1, 2, 12, 3, tile=1)
    x = torch.randn(2, 1, 12, 12)
    x[0, 0, 5, 5] = bad
    with torch.no_grad():
        plain, gated = layer(x), VarianceGate(layer, 0.001, block=4, mode=mode)(x)
    assert torch.equal(plain.isfinite(), gated.isfinite())
    finite = plain.isfinite()
    assert torch.allclose(gated[finite], plain[finite], atol=1e-6)


@pytest.mark.parametrize("mode", ["gated", "exact", "auto"])
def test_an_empty_batch_gives_the_layers_empty_output(mode):
    layer = LocallyConnected2d(1, 2, 8, 3, tile=1)
    assert VarianceGate(layer, 0.1, mode=mode)(torch.randn(0, 1, 8, 8)).shape == (0, 2, 6, 6)   # was ZeroDivisionError


def test_bands_on_a_layer_of_too_many_banks_is_refused_where_it_is_built():
    with pytest.raises(ValueError, match="a tiled one of at most 64 banks"):
        VarianceGate(LocallyConnected2d(1, 2, 30, 3, tile=9), 0.1, mode="bands")     # 81 banks: untied at run time
