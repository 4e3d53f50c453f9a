"""The essay's variance gate: skip the filter where the input is flat, output 0 there (if skipping pays).

Where the receptive field of an output position has local variance below ``threshold``, the
position is *closed*: no filter arithmetic runs for it and its output is 0 (not the bias). The
gate really skips work, the way SBNet does (Ren et al. 2018, "SBNet: Sparse Blocks Network"):

1. the variance of every receptive field (per channel, averaged) comes from separable box sums
   over x and x² (:mod:`~downpour.layers._gate_mask`; after a busy batch, a cheap proof of open
   tiles first);
2. the output grid is cut into ``block`` x ``block`` tiles; a tile is open if any of its
   positions is (``block=1`` decides position by position);
3. one of three paths computes the output, all equal to float rounding (the layer's values in
   open tiles, 0 in closed ones):

   - ``gated`` (:mod:`~downpour.layers._gate_gather`): the input tiles under the open output tiles
     are gathered, the filter runs on them only, and the results are scattered into a zero output;
   - ``bands`` (shared weights; :mod:`~downpour.layers._gate_bands`): the dense layer on the box of
     each run of tile-rows that holds an open tile (the input rows and columns it reads), zeros
     elsewhere, the mask multiply on the partly open rows;
   - ``dense``: the layer everywhere, then a memset of the closed tile-rows and the mask multiply
     on the partly open ones.

The gated path follows the layer's weight sharing: one bank (a convolution) is one GEMM over the
open tiles' receptive fields, gathered straight from the input a chunk of tiles at a time (a
convolution over the stack of tiles ran at a third of the dense speed: MKL-DNN is slow on many
tiny images); t x t banks (tiled) is one strided convolution per bank (the tile is rounded up to a
multiple of t so banks line up); untied weights (a bank per position, the cat network's layer) are
read in a block-major copy, cached while the weights do not change, so a run of consecutive open
tiles is one batched mat-vec over a contiguous slice of it: closed tiles' filters are never read.

Each path has fixed costs (the test, zeros to write, a gather and a scatter, a call per band) that
can outweigh the work it saves, most on a convolution that MKL-DNN runs near the CPU's peak. A cost
model of the layer shape, measured once on the first batch (:mod:`~downpour.layers._gate_cost`),
predicts each path's time for a batch's mask: its open tiles, and its rows of tiles by kind.

``mode`` says what a caller needs:

- ``"auto"`` (the default): never slower than the layer by more than the test, and by less as a
  layer keeps its verdict. Where gating cannot pay for its test (the test plus the fastest gated
  path not 10% below the plain layer, by the model's predictions scaled by what earlier calls of
  the shape really took: :mod:`~downpour.layers._gate_auto`), the plain layer runs (path
  ``'ungated'``: the layer's own values in flat fields too, as if there were no gate), and the next
  calls of that input shape run it untested: 1, then 2, 4, ... 32 calls between two tests while they
  agree. Otherwise the fastest path, the plain layer in place of 'dense'. So the output depends on
  the verdict, and in a streak on earlier calls' inputs.
- ``"exact"``: 0 in every closed tile whichever path runs (the fastest the model predicts); the
  choice changes the time, never the result. What a study of the essay's idea (what do the zeros
  cost a model?) needs.
- ``"gated"``, ``"bands"``, ``"dense"``: that path, every call.

    gate = VarianceGate(LocallyConnected2d(1, 8, 128, 8), threshold=1e-3)
    y = gate(x)                       # (B, 8, 121, 121); 0 wherever the 8x8 fields are flat (path not 'ungated')
    gate.last.skipped_fraction, gate.last.flops_ratio, gate.last.path   # 'gated', 'bands' or 'ungated'
"""
from __future__ import annotations

import math
import time
from typing import NamedTuple

import torch
from torch import Tensor, nn

from downpour.layers._gate_auto import AutoPolicy
from downpour.layers._gate_bands import RowPlan, RowStats, band_output, plan_rows, row_stats, zero_closed
from downpour.layers._gate_cost import CostModel, cost_model, forced_masks
from downpour.layers._gate_gather import BlockMajor, gated_output
from downpour.layers._gate_layer import as_bank, check_input
from downpour.layers._gate_mask import local_variance, open_tiles, proof_pays
from downpour.layers._gate_stats import GateStats, gate_stats, ungated_stats
from downpour.layers._lc_threads import _mode_active
# position (i, j) uses bank (i mod tH, j mod tW); a tiling with more banks than _MAX_CONV_BANKS runs as untied
from downpour.layers.locally_connected import _MAX_CONV_BANKS
from downpour.settings import is_count

__all__ = ["GateStats", "VarianceGate", "local_variance"]

MODES = ("auto", "exact", "gated", "dense", "bands")
_NOT_BANDED = (f"VarianceGate: mode 'bands' needs shared weights (a convolution, a tied layer, or a tiled one of "
               f"at most {_MAX_CONV_BANKS} banks)")


class _Call(NamedTuple):
    """What one forward needs of the layer and the input's shape, worked out once."""

    weight: Tensor                               # (tH, tW, M, C, k, k) banks
    bias: Tensor | None                          # (tH, tW, M) or None
    k: int
    s: int
    geom: tuple[int, int, int, int, int, int]    # (Ho, Wo, bh, bw, nbh, nbw): output, tile, tiles per column / row

    @property
    def banded(self) -> bool:
        """Shared weights (one bank, or a few tiled ones): the layer can run on a slice of rows."""
        th, tw = self.weight.shape[:2]
        return th * tw <= _MAX_CONV_BANKS and (th, tw) != self.geom[:2]


class VarianceGate(nn.Module):
    """Wrap a filter layer so flat receptive fields are skipped and output 0.

    ``layer``: a :class:`~downpour.layers.locally_connected.LocallyConnected2d` (untied, tiled or
    tied) or an ``nn.Conv2d`` (no padding/dilation/groups). ``threshold``: variance below which a
    field is flat (input units squared). ``block``: side of the output tiles decided together
    (rounded up to a multiple of a tiled layer's tile). ``mode``: see the module docstring.
    ``forward``: (B, C, H, W) -> (B, M, Ho, Wo), ``layer(x)`` inside open tiles and 0 elsewhere (path
    'ungated': ``layer(x)`` everywhere); differentiable in the layer's weights. ``last`` holds the
    :class:`GateStats` of the last call.
    """

    def __init__(self, layer: nn.Module, threshold: float, block: int = 8, mode: str = "auto"):
        super().__init__()
        th, tw = as_bank(layer)[0].shape[:2]  # validate now, not at the first batch
        number = isinstance(threshold, (int, float, Tensor)) and not isinstance(threshold, bool)  # "1e-3": a TypeError
        if not (number and math.isfinite(threshold) and threshold >= 0) or not is_count(block, 1):   # NaN closed every tile
            raise ValueError(f"VarianceGate: threshold must be >= 0 and finite, and block a positive int, got {threshold!r} and {block!r}")
        if mode not in MODES:
            raise ValueError(f"VarianceGate: mode must be one of {MODES}, got {mode!r}")
        if mode == "bands" and (getattr(layer, "untied", False) or th * tw > _MAX_CONV_BANKS):
            raise ValueError(_NOT_BANDED)
        self.layer, self.threshold, self.block, self.mode = layer, float(threshold), block, mode
        self.last: GateStats | None = None
        self._filters = BlockMajor()   # the untied gated path's filters, block-major (cached)
        self._prove = True   # try the cheap proof of open tiles first (see _gate_mask.open_tiles)
        self._auto = AutoPolicy()   # mode 'auto': the streak of untested calls, what calls really took

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, block={self.block}, mode={self.mode!r}"

    def _call(self, x: Tensor) -> _Call:
        check_input(self.layer, x)
        weight, bias, k, s = as_bank(self.layer)
        th, tw = weight.shape[:2]
        h, w = x.shape[2:]
        ho, wo = (h - k) // s + 1, (w - k) // s + 1
        shared = th * tw <= _MAX_CONV_BANKS and (th, tw) != (ho, wo)
        bh = -(-self.block // th) * th if shared else self.block   # banks must line up with tile origins
        bw = -(-self.block // tw) * tw if shared else self.block
        return _Call(weight, bias, k, s, (ho, wo, bh, bw, -(-ho // bh), -(-wo // bw)))

    def _geometry(self, x: Tensor) -> tuple[int, int, int, int, int, int]:
        """(Ho, Wo, bh, bw, nbh, nbw): output size, tile size, tiles per column / row."""
        return self._call(x).geom

    def _tile_mask(self, x: Tensor) -> Tensor:
        """(B, nbh, nbw) bool: which output tiles run."""
        call = self._call(x)
        return open_tiles(x, call.k, call.s, self.threshold, call.geom)

    def open_mask(self, x: Tensor) -> Tensor:
        """(B, Ho, Wo) bool: True where the filter runs and the output equals the layer's."""
        ho, wo, bh, bw = self._geometry(x)[:4]       # repeat_interleave, not keep_mask: tests check the paths with it
        return self._tile_mask(x).repeat_interleave(bh, 1).repeat_interleave(bw, 2)[:, :ho, :wo]

    def forward(self, x: Tensor) -> Tensor:
        call, shape = self._call(x), tuple(x.shape)
        if not shape[0]:            # an empty batch: nothing to test (the open fraction divided by 0 tiles)
            self.last = ungated_stats(shape, self._layer_shape(call), call.geom[:4], 1.0)
            return self._plain(x)
        if self.mode == "auto" and self._auto.untested(shape):                      # a call of a streak
            self.last = ungated_stats(shape, self._layer_shape(call), call.geom[:4], self._auto.open)
            return self._plain(x)
        t0 = time.perf_counter()
        tiles_open = open_tiles(x, call.k, call.s, self.threshold, call.geom, prove=self._prove)  # (B, nbh, nbw)
        t_test = time.perf_counter() - t0
        stats = row_stats(tiles_open)                  # per tile-row: open tiles, first and last column with one
        closed = tiles_open.numel() - sum(stats.counts)
        self._prove = proof_pays(x, call.k, call.s, call.geom, closed)               # for the next call
        path, model = self._choose(x, tiles_open, 1.0 - closed / tiles_open.numel(), stats, call)
        plan = self._plan(x, stats, call, model)                                     # rows by kind, bands
        if path == "ungated":
            y = self._plain(x)
        else:
            t0 = time.perf_counter()
            y = self._run(path, x, tiles_open, plan, call)
            self._auto.observe("gate", t_test + time.perf_counter() - t0)   # not the model's measurement
        self._record(x, tiles_open, stats, call, path, None if model is None else 1.0 - model.break_even, plan)
        if self.mode == "auto":
            self._auto.tested(shape, path == "ungated", self.last.estimated_open)
        return y

    def _plain(self, x: Tensor) -> Tensor:
        """The wrapped layer, timed for mode 'auto's policy."""
        t0 = time.perf_counter()
        y = self.layer(x)
        self._auto.observe("plain", time.perf_counter() - t0)
        return y

    def _run(self, path: str, x: Tensor, tiles_open: Tensor, plan: RowPlan, call: _Call) -> Tensor:
        if path == "gated":
            return self._gated(x, tiles_open, call)
        return self._bands(x, tiles_open, plan, call) if path == "bands" else self._dense(x, tiles_open, plan, call)

    def _plan(self, x: Tensor, stats: RowStats, call: _Call, model: CostModel | None) -> RowPlan:
        """Tile-rows by kind, and the bands; a gap between bands is merged when narrower than the halo
        (their input slices overlap) or, by the model, cheaper to compute than a second call."""
        ho, wo, bh, bw, _, nbw = call.geom
        merge = max(0, -(-call.k // call.s) - 2)
        if model is not None:
            merge = max(merge, model.merge_rows(ho))
        return plan_rows(stats, x.shape[0] * nbw, (ho, wo), (bh, bw), merge)

    def _choose(self, x: Tensor, tiles_open: Tensor, open_fraction: float, stats: RowStats,
                call: _Call) -> tuple[str, CostModel | None]:
        """(path, the cost model that decided or None): ``mode`` when forced; else the fastest path the
        layer shape's cost model predicts for this batch's mask (auto: its policy's verdict). Under a
        dispatch mode (a FLOP counter, a memory tracker) times mean nothing: the path with less
        arithmetic (gated, unless every tile is open) runs. No tile open (nothing to compute) and every
        tile open (the same arithmetic, plus a gather and a scatter) need no measurement either."""
        if self.mode == "bands" and not call.banded:
            raise ValueError(_NOT_BANDED)
        if self.mode not in ("auto", "exact"):
            return self.mode, None
        dense = "ungated" if self.mode == "auto" else "dense"   # auto: the plain layer, not the layer then zeros
        if open_fraction in (0.0, 1.0) or _mode_active():
            return ("gated" if open_fraction < 1.0 else dense), None
        model = cost_model(self._key(x, call), lambda: self._probes(x, tiles_open, call), x.device)
        plan = self._plan(x, stats, call, model)
        path = model.choose(open_fraction, plan)
        if self.mode == "auto":
            cost = model.gated(open_fraction) if path == "gated" else model.bands(plan) if path == "bands" else 0.0
            return self._auto.verdict(tuple(x.shape), model, path, cost, x.device.type == "cpu"), model
        return path, model

    def _key(self, x: Tensor, call: _Call) -> tuple:
        """What a cost model is measured for: the layer shape, the input's, the tiles, where it runs."""
        return (type(self.layer).__name__, tuple(call.weight.shape), call.bias is not None, call.k, call.s,
                tuple(x.shape), call.geom, x.device.type, x.dtype, torch.get_num_threads())

    def _probes(self, x: Tensor, tiles_open: Tensor, call: _Call) -> tuple[dict, tuple[float, int] | None]:
        """What the cost model times: each path under forced masks; and the (band fraction, bands) of
        the mask with every other tile-row closed, which gives the cost of a band's call."""
        masks = forced_masks(tiles_open)
        plans = {name: self._plan(x, row_stats(t), call, None) for name, t in masks.items()}
        fns = {"t_dense": lambda: self._dense(x, masks["all"], plans["all"], call),
               "t_mixed": lambda: self._dense(x, masks["mixed"], plans["mixed"], call),
               "t_none": lambda: self._gated(x, masks["none"], call), "t_all": lambda: self._gated(x, masks["all"], call),
               "t_test": lambda: open_tiles(x, call.k, call.s, self.threshold, call.geom, prove=False)}
        if not call.banded:
            return fns, None
        ho, wo, bh, bw, _, nbw = call.geom
        alt = plan_rows(row_stats(masks["alt"]), x.shape[0] * nbw, (ho, wo), (bh, bw))   # no gap merged
        fns.update(t_zero=lambda: self._bands(x, masks["none"], plans["none"], call),
                   t_band=lambda: self._bands(x, masks["mixed"], plans["mixed"], call),
                   t_alt=lambda: self._bands(x, masks["alt"], alt, call))
        return fns, (alt.band_fraction, len(alt.bands))

    def _dense(self, x: Tensor, tiles_open: Tensor, plan: RowPlan, call: _Call | None = None) -> Tensor:
        """The layer at every position, then 0 in the closed tiles: (B, C, H, W) -> (B, M, Ho, Wo)."""
        call = call or self._call(x)
        return zero_closed(self.layer(x), tiles_open, plan, call.geom[:4])

    def _bands(self, x: Tensor, tiles_open: Tensor, plan: RowPlan, call: _Call | None = None) -> Tensor:
        """The layer on the plan's bands of rows only, 0 in the closed tiles: (B, C, H, W) -> (B, M, Ho, Wo)."""
        call = call or self._call(x)
        return band_output(x, call.weight, call.bias, call.k, call.s, tiles_open, plan, call.geom[:4])

    def _gated(self, x: Tensor, tiles_open: Tensor, call: _Call | None = None) -> Tensor:
        """The layer at the open tiles only, 0 elsewhere: (B, C, H, W) -> (B, M, Ho, Wo), channels-last strides
        (:mod:`~downpour.layers._gate_gather`)."""
        call = call or self._call(x)
        return gated_output(x, tiles_open, call.weight, call.bias, call.k, call.s, call.geom,
                            lambda: self._filters(self.layer, call.weight, call.geom))

    def _record(self, x: Tensor, tiles: Tensor, stats: RowStats, call: _Call, path: str,
                break_even: float | None, plan: RowPlan) -> None:
        self.last = gate_stats(tuple(x.shape), self._layer_shape(call), call.geom[:4], tuple(tiles.shape[1:]), stats,
                               path, break_even, plan)

    @staticmethod
    def _layer_shape(call: _Call) -> tuple[int, int, bool]:
        return call.weight.shape[2], call.k, call.bias is not None
