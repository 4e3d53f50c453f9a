"""The variance gate's row bands: the layer on the rows of tiles that hold an open tile, 0 elsewhere."""
import pytest
import torch

from downpour.layers import _gate_cost, _gate_mask
from downpour.layers._gate_bands import plan_rows, row_stats
from downpour.layers._gate_cost import CostModel
from downpour.layers.gating import VarianceGate
from downpour.layers.locally_connected import LocallyConnected2d


def _zeroed(layer, x, tiles, bh, bw):
    """The reference: the ungated layer, times the tile mask spread to positions by index arithmetic."""
    with torch.no_grad():
        y = layer(x)
    ho, wo = y.shape[2:]
    rows = torch.arange(ho) // bh
    cols = torch.arange(wo) // bw
    keep = tiles[:, rows][:, :, cols]                                 # (B, Ho, Wo)
    return y * keep[:, None].to(y.dtype)


def _masks(b, nbh, nbw, seed=0):
    """Tile masks that stress the rows: random, none open, all open, one open tile in the first / last
    tile-row, bands touching both edges, whole rows open next to mixed ones, and different per image."""
    g = torch.Generator().manual_seed(seed)
    out = {"random": torch.rand(b, nbh, nbw, generator=g) < 0.3,
           "none": torch.zeros(b, nbh, nbw, dtype=torch.bool),
           "all": torch.ones(b, nbh, nbw, dtype=torch.bool)}
    first = torch.zeros(b, nbh, nbw, dtype=torch.bool)
    first[:, 0, nbw // 2] = True
    last = torch.zeros(b, nbh, nbw, dtype=torch.bool)
    last[:, -1, -1] = True
    edges = torch.zeros(b, nbh, nbw, dtype=torch.bool)
    edges[:, 0, :] = True                                             # a whole open row at the top
    edges[:, -2:, ::2] = True                                         # mixed rows at the bottom
    per_image = torch.zeros(b, nbh, nbw, dtype=torch.bool)
    per_image[0, 1, 0] = True                                         # image 0: row 1 only
    per_image[-1, nbh - 2:, 1:] = True                                # last image: the last two rows
    inside = torch.zeros(b, nbh, nbw, dtype=torch.bool)
    inside[:, 1, 1] = True                                            # a band: mixed, open, mixed tile-rows
    inside[:, 2] = True
    inside[:, 3, -1] = True
    one_closed = torch.ones(b, nbh, nbw, dtype=torch.bool)
    one_closed[-1, nbh // 2, 0] = False                               # a single closed tile in the batch
    out.update(first=first, last=last, edges=edges, per_image=per_image, inside=inside, one_closed=one_closed)
    return out


LAYERS = {
    "conv": lambda: torch.nn.Conv2d(2, 5, 4, bias=True),
    "conv_stride2": lambda: torch.nn.Conv2d(2, 5, 5, stride=2, bias=True),
    "tied": lambda: LocallyConnected2d(2, 5, (29, 27), 4, tile=1, bias=True),
    "tiled_stride2": lambda: LocallyConnected2d(2, 5, (29, 27), 3, stride=2, tile=2, bias=True),
}


@pytest.mark.parametrize("make", LAYERS.values(), ids=LAYERS.keys())
@pytest.mark.parametrize("block", [3, 4])
def test_bands_and_dense_paths_equal_the_layer_with_closed_tiles_zeroed(make, block):
    torch.manual_seed(0)
    layer = make()
    if layer.bias is not None:
        torch.nn.init.normal_(layer.bias)
    x = torch.rand(3, 2, 29, 27)
    gate = VarianceGate(layer, 1e-3, block=block, mode="exact")
    ho, wo, bh, bw, nbh, nbw = gate._geometry(x)
    assert nbh * bh > ho                                              # the last tile-row overhangs the edge
    for name, tiles in _masks(3, nbh, nbw).items():
        want = _zeroed(layer, x, tiles, bh, bw)
        for merge in (0, 2 * bh):                                     # gaps run apart, or merged into one call
            plan = plan_rows(row_stats(tiles), 3 * nbw, (ho, wo), (bh, bw), merge)
            with torch.no_grad():
                banded = gate._bands(x, tiles, plan)
                dense = gate._dense(x, tiles, plan)
            assert torch.allclose(banded, want, atol=1e-5), (name, merge)
            assert torch.allclose(dense, want, atol=1e-5), (name, merge)
            assert torch.all(banded[want == 0] == 0) and torch.all(dense[want == 0] == 0)


def test_plan_rows_classifies_tile_rows_and_boxes_the_open_tiles():
    tiles = torch.zeros(2, 6, 4, dtype=torch.bool)
    tiles[0, 1, 1] = True                           # row 1: mixed (one image, one tile)
    tiles[:, 2] = True                              # row 2: open in every image
    tiles[1, 5, 2] = True                           # row 5 (partial: 22 = 5*4 + 2 output rows): mixed
    tiles[0, 5, 1] = True                           # ... in the other image, one column to the left
    size, tile = (22, 15), (4, 4)                   # the last tile column is 3 wide
    plan = plan_rows(row_stats(tiles), 2 * 4, size, tile)
    assert plan.runs == ((0, 4, "closed"), (4, 8, "mixed"), (8, 12, "open"), (12, 20, "closed"), (20, 22, "mixed"))
    assert plan.bands == ((4, 12, 0, 15), (20, 22, 4, 12))          # columns: the union over the batch
    assert plan.band_fraction == pytest.approx((8 * 15 + 2 * 8) / (22 * 15))
    assert plan.fraction("closed") == pytest.approx(12 / 22)
    assert plan_rows(row_stats(tiles), 8, size, tile, merge_rows=8).bands == ((4, 22, 0, 15),)
    assert plan_rows(row_stats(tiles), 8, size, tile, merge_rows=7).bands == plan.bands
    tiles[:, 2] = False                             # now every band is one tile wide or two
    assert plan_rows(row_stats(tiles), 8, size, tile).bands == ((4, 8, 4, 8), (20, 22, 4, 12))
    tiles[1, 4, 3] = True                           # the last tile column: clipped to the output's width
    assert plan_rows(row_stats(tiles), 8, size, tile).bands == ((4, 8, 4, 8), (16, 22, 4, 15))


def _face_in_canvas(h=48, w=40):
    """A flat canvas with a busy block in the middle rows: whole tile-rows closed above and below it."""
    g = torch.Generator().manual_seed(1)
    x = torch.full((2, 1, h, w), 0.5)
    x[:, :, 16:30, 8:30] = torch.rand(2, 1, 14, 22, generator=g)
    return x


def test_forced_bands_mode_reports_its_path_and_agrees_with_dense_in_output_and_gradients():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 5, stride=1)
    x = _face_in_canvas()
    outs = {}
    for mode in ("bands", "dense", "gated"):
        conv.zero_grad()
        gate = VarianceGate(conv, 1e-3, block=4, mode=mode)
        y = gate(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs[mode] = (y.detach(), conv.weight.grad.clone(), conv.bias.grad.clone())
        assert gate.last.path == mode
        with torch.no_grad():
            assert torch.allclose(gate(x), y, atol=1e-5)
    stats = gate.last
    for mode in ("dense", "gated"):
        assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(outs["bands"], outs[mode]))
    gate = VarianceGate(conv, 1e-3, block=4, mode="bands")
    with torch.no_grad():
        gate(x)
    ho, wo = outs["bands"][0].shape[2:]
    assert 0 < gate.last.band_fraction < 0.4                           # rows above and below, columns beside skipped
    assert gate.last.computed == round(2 * gate.last.band_fraction * ho * wo) < gate.last.positions
    assert gate.last.open == stats.open and gate.last.computed >= gate.last.open


def test_bands_mode_needs_shared_weights():
    with pytest.raises(ValueError, match="shared weights"):
        VarianceGate(LocallyConnected2d(1, 2, 16, 3), 0.1, mode="bands")


def test_exact_runs_bands_when_the_model_predicts_them_fastest(monkeypatch):
    from downpour.layers import gating
    # dense 10, gated 4 + 16 * open, bands 1 + 9 * band rows (+ 0.1 per extra band)
    model = CostModel(t_dense=10.0, t_none=4.0, t_all=20.0, t_mixed=10.0, t_zero=1.0, t_band=10.0, t_call=0.1)
    monkeypatch.setattr(gating, "cost_model", lambda key, probes, device: model)
    conv = torch.nn.Conv2d(1, 4, 5)
    gate = VarianceGate(conv, 1e-3, block=4, mode="exact")
    x = _face_in_canvas()
    with torch.no_grad():
        y = gate(x)
        want = _zeroed(conv, x, gate._tile_mask(x), 4, 4)
    assert gate.last.path == "bands" and torch.allclose(y, want, atol=1e-5)
    busy = torch.rand(1, 1, 48, 40)
    busy[..., :, :6] = 0.5                                             # a flat strip: every tile-row mixed
    with torch.no_grad():
        gate(busy)
    assert gate.last.path == "dense" and gate.last.band_fraction == 1.0


def test_cost_model_predicts_each_path_from_the_row_plan():
    model = CostModel(t_dense=10.0, t_none=4.0, t_all=20.0, t_mixed=12.0, t_zero=1.0, t_band=12.0, t_call=0.5)
    tiles = torch.zeros(1, 10, 5, dtype=torch.bool)
    tiles[0, 2:4, 1] = True                                            # one band of 2 mixed tile-rows
    tiles[0, 7, :] = True                                              # and one open tile-row
    plan = plan_rows(row_stats(tiles), 5, (40, 20), (4, 4))
    assert plan.bands == ((8, 16, 4, 8), (28, 32, 0, 20))
    assert model.dense(plan) == pytest.approx(10 + 0.2 * 2 + 0.7 * 1)   # multiply on mixed rows, memset on closed
    area = (8 * 4 + 4 * 20) / (40 * 20)
    assert model.bands(plan) == pytest.approx(1 + area * 11 + 0.5)
    assert model.gated(7 / 50) == pytest.approx(4 + 16 * 7 / 50)
    assert model.choose(7 / 50, plan) == "bands"
    assert model.merge_rows(40) == int(0.5 / (11 / 40))                # a gap of one row costs 11/40
    assert CostModel(t_dense=10.0, t_none=4.0, t_all=20.0).choose(7 / 50, plan) == "gated"   # no band path


def test_measured_model_has_band_times_for_a_convolution_only():
    _gate_cost.clear_cache()
    x = _face_in_canvas()
    with torch.no_grad():
        VarianceGate(torch.nn.Conv2d(1, 3, 5), 1e-3, block=4, mode="exact")(x)
        (conv_model,) = _gate_cost._CACHE.values()
        _gate_cost.clear_cache()
        VarianceGate(LocallyConnected2d(1, 3, (48, 40), 5), 1e-3, block=4, mode="exact")(x)
        (untied_model,) = _gate_cost._CACHE.values()
    assert conv_model.t_band > conv_model.t_zero > 0 and conv_model.t_mixed > 0 and conv_model.t_call >= 0
    assert untied_model.t_band is None and untied_model.bands(plan_rows(row_stats(torch.ones(1, 2, 2, dtype=torch.bool)), 2, (8, 8), (4, 4))) is None
    _gate_cost.clear_cache()


def test_after_a_mostly_closed_batch_the_full_test_runs_without_the_proof(monkeypatch):
    x = _face_in_canvas()
    gate = VarianceGate(torch.nn.Conv2d(1, 3, 5), 1e-3, block=4, mode="dense")
    with torch.no_grad():
        first = gate(x)
    assert not gate._prove                                            # most tiles closed: the proof would not pay
    monkeypatch.setattr(_gate_mask, "origin_open", None)               # any call fails
    with torch.no_grad():
        assert torch.equal(gate(x), first)
    busy = torch.rand(2, 1, 48, 40)
    with torch.no_grad():
        gate(busy)
    assert gate._prove                                                 # every tile open: try the proof next time
