"""Row bands: the variance gate's work laid out by rows of output tiles.

Pages, lines of text and a face in a flat canvas leave whole rows of output tiles closed (margins,
the canvas above and below the face). Per tile-row of a batch's tile mask (B, nbh, nbw):

    closed   no tile open in any image             a slice ``zero_()`` of the output (a memset)
    open     every tile open in every image        nothing to zero
    mixed    some open, some closed                the mask multiply, on these rows only

A *band* is a maximal run of tile-rows that are not closed (union over the batch: one call covers
every image, and each image's own closed tiles are zeroed by the multiply), with the span of
columns that holds its open tiles. For a layer with shared weights (a convolution; a tied or tiled
locally connected layer) the dense layer runs on each band's box only: output rows [r0, r1) and
columns [c0, c1) read input rows [r0 s, (r1 - 1) s + k) and columns [c0 s, (c1 - 1) s + k), a
contiguous slice with its halo of k - s rows and columns. Two bands closer than ``merge_rows``
output rows run as one (the gap is computed, then zeroed): a separate call costs more than that.

Writing a band into the output is a copy (a convolution cannot write into a slice), fused with
the mask multiply on mixed rows, so every output value is written once: zeros, the band's values,
or its values times the mask. With grad enabled the pieces are concatenated instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from downpour.layers.locally_connected import _expand_tiles, banked_conv

__all__ = ["RowPlan", "RowStats", "row_stats", "plan_rows", "keep_mask", "row_masks", "zero_closed", "band_output"]


@dataclass(frozen=True)
class RowPlan:
    """The tile-rows of a batch's mask, as runs of output rows. ``runs``: maximal (o0, o1, kind) runs
    in tile-rows of one kind ('closed', 'mixed', 'open'); ``bands``: (o0, o1, c0, c1) boxes the layer
    runs on (rows not closed, gaps of at most ``merge_rows`` merged; the columns of their open tiles);
    ``size``: (Ho, Wo)."""

    runs: tuple[tuple[int, int, str], ...]
    bands: tuple[tuple[int, int, int, int], ...]
    size: tuple[int, int]

    def fraction(self, kind: str) -> float:
        """Fraction of output rows in tile-rows of ``kind``."""
        return sum(o1 - o0 for o0, o1, k in self.runs if k == kind) / max(1, self.size[0])

    @property
    def band_fraction(self) -> float:
        """Fraction of output positions the band path computes."""
        area = sum((o1 - o0) * (c1 - c0) for o0, o1, c0, c1 in self.bands)
        return area / max(1, self.size[0] * self.size[1])


class RowStats(NamedTuple):
    """Per tile-row of a (B, nbh, nbw) tile mask, over the batch."""

    counts: list[int]      # open tiles
    first: list[int]       # first tile column holding one (nbw where none)
    last: list[int]        # last tile column holding one (-1 where none)
    last_col: list[int]    # open tiles in the last tile column


def row_stats(tiles: Tensor) -> RowStats:
    """The :class:`RowStats` of (B, nbh, nbw) bool ``tiles``: a few reductions, the rest in Python."""
    nbw = tiles.shape[2]
    counts, last_col = torch.stack([tiles.sum((0, 2)), tiles[:, :, -1].sum(0)]).tolist()
    first, last = [], []
    for row in tiles.any(0).tolist():
        hit = True in row
        first.append(row.index(True) if hit else nbw)
        last.append(nbw - 1 - row[::-1].index(True) if hit else -1)
    return RowStats(counts, first, last, last_col)


def plan_rows(stats: RowStats, per_row: int, size: tuple[int, int],
              tile: tuple[int, int], merge_rows: int = 0) -> RowPlan:
    """The :class:`RowPlan` of a mask with :func:`row_stats` ``stats`` and ``per_row`` (B * nbw) tiles
    per tile-row, for an output of ``size`` (Ho, Wo) in tiles of ``tile`` (bh, bw)."""
    (ho, wo), (bh, bw) = size, tile
    counts, first, last = stats.counts, stats.first, stats.last
    runs: list[list] = []
    for i, n in enumerate(counts):
        kind = "closed" if n == 0 else "open" if n == per_row else "mixed"
        o0, o1 = i * bh, min(ho, (i + 1) * bh)
        if runs and runs[-1][2] == kind:
            runs[-1][1] = o1
        else:
            runs.append([o0, o1, kind])
    bands: list[list[int]] = []                     # [o0, o1, first tile column, last + 1]
    for i, n in enumerate(counts):
        if n == 0:
            continue
        o0, o1 = i * bh, min(ho, (i + 1) * bh)
        if bands and o0 - bands[-1][1] <= merge_rows:
            band = bands[-1]
            band[1], band[2], band[3] = o1, min(band[2], first[i]), max(band[3], last[i] + 1)
        else:
            bands.append([o0, o1, first[i], last[i] + 1])
    boxes = tuple((o0, o1, j0 * bw, min(wo, j1 * bw)) for o0, o1, j0, j1 in bands)
    return RowPlan(tuple(map(tuple, runs)), boxes, (ho, wo))


def keep_mask(tiles: Tensor, geom: tuple[int, int, int, int], dtype: torch.dtype) -> Tensor:
    """(B, nbh, nbw) bool -> (B, 1, Ho, Wo) 0/1 of ``dtype``: the multiply that zeroes closed tiles."""
    ho, wo, bh, bw = geom
    b, nbh, nbw = tiles.shape
    spread = tiles.to(dtype)[:, :, None, :, None].expand(b, nbh, bh, nbw, bw).reshape(b, nbh * bh, nbw * bw)
    return spread[:, None, :ho, :wo]


def row_masks(tiles: Tensor, wo: int, bw: int, dtype: torch.dtype) -> Tensor:
    """(B, nbh, nbw) bool -> (B, nbh, Wo) 0/1 of ``dtype``: one row of the mask per tile-row, which the
    multiply broadcasts over the tile-row's bh rows and the maps (a full (B, 1, Ho, Wo) mask cost
    ~0.3 ms more to build and read on a 165 x 441 output)."""
    b, nbh, nbw = tiles.shape
    return tiles.to(dtype)[:, :, :, None].expand(b, nbh, nbw, bw).reshape(b, nbh, nbw * bw)[:, :, :wo]


def _mul_rows(dst: Tensor, src: Tensor, rows: Tensor, o0: int, bh: int) -> None:
    """dst = src * mask on output rows [o0, o0 + n): dst, src (B, M, n, Wo) (src may be dst), o0 a
    multiple of bh, ``rows`` (B, nbh, Wo) from :func:`row_masks`. Whole tile-rows as one broadcast
    over a (B, M, tile-rows, bh, Wo) view; a last partial tile-row as another."""
    n = src.shape[2]
    i0, full = o0 // bh, n // bh
    for a, e, split in ((0, full * bh, (full, bh)), (full * bh, n, (1, n - full * bh))):
        if e == a:
            continue
        mask = rows[:, None, i0 + a // bh:i0 + a // bh + split[0], None, :]       # (B, 1, tile-rows, 1, Wo)
        part = src[:, :, a:e].unflatten(2, split)
        if dst is src:
            part.mul_(mask)
        else:
            torch.mul(part, mask, out=dst[:, :, a:e].unflatten(2, split))


def zero_closed(y: Tensor, tiles: Tensor, plan: RowPlan, geom: tuple[int, int, int, int]) -> Tensor:
    """0 in the closed tiles of y (B, M, Ho, Wo), the dense layer's output: closed rows by a memset,
    the multiply by the mask on mixed rows only; in place in inference (y * mask with grad)."""
    if all(kind == "open" for _, _, kind in plan.runs):
        return y
    if torch.is_grad_enabled() and y.requires_grad:
        return y * keep_mask(tiles, geom, y.dtype)
    # A float mask: a bool one is 2x slower; zeros through a tile-major view with index_put_ 10x slower
    rows = row_masks(tiles, geom[1], geom[3], y.dtype)
    for o0, o1, kind in plan.runs:
        if kind == "closed":
            y[:, :, o0:o1].zero_()
        elif kind == "mixed":
            _mul_rows(y[:, :, o0:o1], y[:, :, o0:o1], rows, o0, geom[2])
    return y


def band_rows(x: Tensor, weight: Tensor, bias: Tensor | None, k: int, s: int, box: tuple[int, int, int, int],
              out_size: tuple[int, int]) -> Tensor:
    """The box (o0, o1, c0, c1) of a shared-weight layer's output: (B, C, H, W) -> (B, M, o1 - o0, c1 - c0),
    from the input it reads only. ``weight`` (tH, tW, M, C, k, k) banks: position (i, j) uses bank
    (i mod tH, j mod tW), so o0 and c0 must be multiples of tH and tW; ``bias`` (tH, tW, M) or None."""
    o0, o1, c0, c1 = box
    th, tw, m = weight.shape[:3]
    xs = x[:, :, o0 * s:(o1 - 1) * s + k, c0 * s:(c1 - 1) * s + k]
    if (th, tw) == (1, 1):
        return F.conv2d(xs, weight[0, 0], None if bias is None else bias.reshape(m), stride=s)
    y = banked_conv(xs, weight, s, (o1 - o0, c1 - c0))
    if bias is not None:
        y = y + _expand_tiles(bias, out_size)[o0:o1, c0:c1].permute(2, 0, 1)
    return y


def band_output(x: Tensor, weight: Tensor, bias: Tensor | None, k: int, s: int, tiles: Tensor, plan: RowPlan,
                geom: tuple[int, int, int, int]) -> Tensor:
    """The layer on the plan's bands only, 0 in every closed tile: (B, C, H, W) -> (B, M, Ho, Wo)."""
    ho, wo, bh, bw = geom
    b, m = x.shape[0], weight.shape[2]
    grad = torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad
                                        or (bias is not None and bias.requires_grad))
    # the runs of each band, with their rows relative to the band: (run, its rows in the band's output)
    inside = {band: [(run, run[0] - band[0], run[1] - band[0]) for run in plan.runs
                     if run[2] != "closed" and band[0] <= run[0] and run[1] <= band[1]] for band in plan.bands}
    if grad:                                       # pieces, concatenated: differentiable
        keep = keep_mask(tiles, geom, x.dtype)
        pieces = {run: x.new_zeros(b, m, run[1] - run[0], wo) for run in plan.runs if run[2] == "closed"}
        for band, runs in inside.items():
            y, (c0, c1) = band_rows(x, weight, bias, k, s, band, (ho, wo)), band[2:]
            for (o0, o1, kind), r0, r1 in runs:
                part = y[:, :, r0:r1] * keep[:, :, o0:o1, c0:c1] if kind == "mixed" else y[:, :, r0:r1]
                pieces[(o0, o1, kind)] = F.pad(part, (c0, wo - c1))
        return torch.cat([pieces[run] for run in plan.runs], 2)
    # inference: every output value written once, with zeros, the band's values or its values times the mask
    out = x.new_empty(b, m, ho, wo)
    rows = row_masks(tiles, wo, bw, x.dtype)
    for o0, o1, kind in plan.runs:
        if kind == "closed":
            out[:, :, o0:o1].zero_()
    for band, runs in inside.items():
        y, (c0, c1) = band_rows(x, weight, bias, k, s, band, (ho, wo)), band[2:]
        for (o0, o1, kind), r0, r1 in runs:
            out[:, :, o0:o1, :c0].zero_()
            out[:, :, o0:o1, c1:].zero_()
            if kind == "mixed":
                _mul_rows(out[:, :, o0:o1, c0:c1], y[:, :, r0:r1], rows[:, :, c0:c1], o0, bh)
            else:
                out[:, :, o0:o1, c0:c1].copy_(y[:, :, r0:r1])
    return out
