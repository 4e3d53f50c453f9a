"""The variance gate's ``gated`` path: the filter at the open output tiles only, 0 elsewhere.

The input tiles under the open output tiles are gathered, the filter runs on them only, and the
results are scattered into a zero output, following the layer's weight sharing
(:class:`~downpour.layers.gating.VarianceGate` says why each way is the fast one):

- one bank (a convolution): one GEMM over the open tiles' receptive fields, gathered straight from
  the input a chunk of tiles at a time (:func:`shared_output`);
- t x t banks (tiled): one strided convolution per bank (``banked_conv``);
- untied weights (a bank per position): the filters in a block-major copy (:class:`BlockMajor`,
  cached while the weights do not change), a run of consecutive open tiles one batched mat-vec over
  a contiguous slice of it (:func:`untied_output`).

Notation: output (Ho, Wo) cut into tiles of (bh, bw), nbh x nbw of them; ``tb, ti, tj`` the
(sample, tile row, tile column) of each open tile, in order; ``geom`` = (Ho, Wo, bh, bw, nbh, nbw).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# position (i, j) uses bank (i mod tH, j mod tW); a tiling with more banks than _MAX_CONV_BANKS runs as untied
from downpour.layers.locally_connected import _MAX_CONV_BANKS, _expand_tiles, banked_conv

# Work buffer of one chunk of gathered receptive fields (a convolution's gated path): in cache.
_CHUNK_BYTES = 2 << 20


def _fields(stack: Tensor, bh: int, bw: int, k: int, s: int) -> Tensor:
    """Receptive fields of every position of every tile: (n, C, Th, Tw) -> (n*bh*bw, C*k*k), one copy."""
    n, c = stack.shape[:2]
    sn, sc, sh, sw = stack.stride()
    return stack.as_strided((n, bh, bw, c, k, k), (sn, s * sh, s * sw, sc, sh, sw)).reshape(n * bh * bw, c * k * k)


def gated_output(x: Tensor, tiles_open: Tensor, weight: Tensor, bias: Tensor | None, k: int, s: int,
                 geom: tuple[int, int, int, int, int, int], filters: Callable[[], Tensor]) -> Tensor:
    """The layer of banks ``weight`` (tH, tW, M, C, k, k) at the open tiles only, 0 elsewhere: (B, C, H, W) ->
    (B, M, Ho, Wo), channels-last strides. ``filters``: the block-major untied filters (:class:`BlockMajor`),
    asked for only where the weights are untied and a tile is open."""
    ho, wo, bh, bw, nbh, nbw = geom
    th, tw, m, c = weight.shape[:4]
    b, _, h, w = x.shape
    act = tiles_open.view(b, -1).nonzero()                           # (nA, 2): (sample, tile), sorted
    tb, tflat = act[:, 0], act[:, 1]
    ti, tj = tflat // nbw, tflat % nbw
    # Zero padding where a tile overhangs the edge.
    hh, ww = (nbh * bh - 1) * s + k, (nbw * bw - 1) * s + k
    xp = F.pad(x, (0, max(0, ww - w), 0, max(0, hh - h))).contiguous()
    sb, sc, sh, sw = xp.stride()
    if (th, tw) == (1, 1):
        out = shared_output(xp, weight[0, 0], s, geom, tb, ti, tj, None if bias is None else bias.view(-1))
        return out[:, :ho, :wo].permute(0, 3, 1, 2)                 # (B, M, Ho, Wo), channels-last strides
    big_h, big_w = (bh - 1) * s + k, (bw - 1) * s + k   # the input under every open tile, (nA, C, Th, Tw)
    stack = xp.as_strided((b, nbh, nbw, c, big_h, big_w), (sb, bh * s * sh, bw * s * sw, sc, sh, sw))[tb, ti, tj]
    if th * tw <= _MAX_CONV_BANKS and (th, tw) != (ho, wo):
        y = banked_conv(stack, weight, s, (bh, bw)).permute(0, 2, 3, 1)   # tiles are multiples of the banks
    else:
        y = untied_output(stack, weight, s, geom, tb, tflat, filters)
    if bias is not None:
        y = y + blocked(_expand_tiles(bias, (ho, wo)), (bh, bw, nbh, nbw))[ti, tj]
    out = x.new_zeros(b, nbh * bh, nbw * bw, m)
    scatter(out, y, tb, ti, tj)
    return out[:, :ho, :wo].permute(0, 3, 1, 2)                     # (B, M, Ho, Wo), channels-last strides


def scatter(out: Tensor, y: Tensor, tb: Tensor, ti: Tensor, tj: Tensor) -> None:
    """Write tiles y (n, bh, bw, M) into out (B, nbh*bh, nbw*bw, M) at tiles (tb, ti, tj), through a
    tile-major view: each tile row is one run of bw*M values (channels-first moves runs of bw, 3x slower)."""
    b, hh, ww, m = out.shape
    bh, bw = y.shape[1:3]
    out.view(b, hh // bh, bh, ww // bw, bw, m).permute(0, 1, 3, 2, 4, 5).index_put_((tb, ti, tj), y)


def shared_output(xp: Tensor, w: Tensor, s: int, geom: tuple, tb: Tensor, ti: Tensor, tj: Tensor,
                  bias: Tensor | None) -> Tensor:
    """One shared bank w (M, C, k, k) at the open tiles of the padded input xp (B, C, H', W'):
    (B, nbh*bh, nbw*bw, M), zero where closed. A chunk of tiles at a time (sized to stay in cache):
    their input windows, then their receptive fields as (L, Q) rows, times the (Q, M) filters. On
    this CPU a first touch of fresh memory runs at ~1 GB/s, so in inference the chunk buffers are
    reused and only the output is new."""
    ho, wo, bh, bw, nbh, nbw = geom
    b, c = xp.shape[:2]
    m, k = w.shape[0], w.shape[-1]
    q = c * k * k
    wt = w.reshape(m, q).t()                                                  # (Q, M)
    sb, sc, sh, sw = xp.stride()
    big_h, big_w = (bh - 1) * s + k, (bw - 1) * s + k
    windows = xp.as_strided((b, nbh, nbw, c, big_h, big_w), (sb, bh * s * sh, bw * s * sw, sc, sh, sw))
    n = tb.shape[0]
    per = max(1, _CHUNK_BYTES // (bh * bw * q * xp.element_size()))           # tiles per chunk
    spans = [(i, min(n, i + per)) for i in range(0, n, per)]
    grad = torch.is_grad_enabled() and (w.requires_grad or xp.requires_grad)
    out = xp.new_zeros(b, nbh * bh, nbw * bw, m)
    bias_tiles = None if bias is None else bias.view(1, 1, 1, m)
    if grad:
        parts = [_fields(windows[tb[a:e], ti[a:e], tj[a:e]], bh, bw, k, s) @ wt for a, e in spans]
        y = (torch.cat(parts) if parts else xp.new_zeros(0, m)).view(n, bh, bw, m)
        scatter(out, y if bias_tiles is None else y + bias_tiles, tb, ti, tj)
        return out
    cols, ybuf = xp.new_empty(per * bh * bw, q), xp.new_empty(per * bh * bw, m)
    for a, e in spans:
        rows = (e - a) * bh * bw
        stack = windows[tb[a:e], ti[a:e], tj[a:e]]                            # (L, C, big_h, big_w)
        sn, sc2, sh2, sw2 = stack.stride()
        cols[:rows].view(e - a, bh, bw, c, k, k).copy_(
            stack.as_strided((e - a, bh, bw, c, k, k), (sn, s * sh2, s * sw2, sc2, sh2, sw2)))
        torch.mm(cols[:rows], wt, out=ybuf[:rows])
        if bias_tiles is not None:
            ybuf[:rows] += bias_tiles.view(1, m)
        scatter(out, ybuf[:rows].view(e - a, bh, bw, m), tb[a:e], ti[a:e], tj[a:e])
    return out


def blocked(t: Tensor, geom: tuple[int, int, int, int]) -> Tensor:
    """(Ho, Wo, ...) per-position tensor -> (nbh, nbw, bh, bw, ...), zero-padded to whole tiles."""
    bh, bw, nbh, nbw = geom
    ho, wo, rest = t.shape[0], t.shape[1], t.shape[2:]
    flat = t.reshape(ho, wo, -1)
    flat = F.pad(flat, (0, 0, 0, nbw * bw - wo, 0, nbh * bh - ho))
    return flat.view(nbh, bh, nbw, bw, -1).permute(0, 2, 1, 3, 4).reshape(nbh, nbw, bh, bw, *rest)


def untied_output(stack: Tensor, weight: Tensor, s: int, geom: tuple, tb: Tensor, tflat: Tensor,
                  filters: Callable[[], Tensor]) -> Tensor:
    """One bank per position: (nA, C, Th, Tw) -> (nA, bh, bw, M), a run of consecutive tiles at a time."""
    _, _, bh, bw, nbh, nbw = geom
    m, q, k = weight.shape[2], weight[0, 0, 0].numel(), weight.shape[-1]
    n = stack.shape[0]
    if n == 0:
        return stack.new_zeros(0, bh, bw, m)
    wb = filters().view(nbh * nbw * bh * bw, m, q)                     # tile-major filters
    cols = _fields(stack, bh, bw, k, s).unsqueeze(2)                     # (n*bh*bw, Q, 1)
    brk = ((tflat[1:] != tflat[:-1] + 1) | (tb[1:] != tb[:-1])).nonzero().squeeze(1) + 1
    starts = [0, *brk.tolist()]
    ends = [*starts[1:], n]
    per = bh * bw
    training = torch.is_grad_enabled() and (weight.requires_grad or stack.requires_grad)
    y = None if training else stack.new_empty(n * per, m, 1)
    parts = []
    for s0, e, t0 in zip(starts, ends, tflat[starts].tolist()):
        wr = wb[t0 * per:(t0 + e - s0) * per]                            # contiguous slice: read in place
        if y is None:
            parts.append(torch.bmm(wr, cols[s0 * per:e * per]))
        else:                                                            # inference: write in place
            torch.bmm(wr, cols[s0 * per:e * per], out=y[s0 * per:e * per])
    return (torch.cat(parts) if y is None else y).view(n, bh, bw, m)


class BlockMajor:
    """A layer's filters as (nbh, nbw, bh, bw, M, C*k*k), the untied gated path's copy; cached while the
    layer's weights are unchanged and not being trained."""

    def __init__(self) -> None:
        self._cache: tuple[tuple, Tensor] | None = None

    def __call__(self, layer: nn.Module, weight: Tensor, geom: tuple) -> Tensor:
        """``weight``: the layer's banks (tH, tW, M, C, k, k) as this call uses them. The key is the layer's own
        parameter (its storage and version: an optimiser's step changes the version; a write through ``.data``
        does not, as for every autograd check) and its ``norm``, not ``weight``: with ``norm``, that is a fresh
        tensor every call."""
        ho, wo, bh, bw, nbh, nbw = geom
        source = layer.weight
        key = (source.data_ptr(), source._version, getattr(layer, "norm", None), tuple(weight.shape), geom)
        training = torch.is_grad_enabled() and weight.requires_grad
        if not training and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        full = _expand_tiles(weight, (ho, wo)).flatten(3)                     # (Ho, Wo, M, Q)
        wb = blocked(full, (bh, bw, nbh, nbw)).contiguous()
        if not training:
            self._cache = (key, wb)
        return wb
