"""Where a partition's block of output positions is, and which input window it needs.

A locally connected layer with kernel k and stride s maps input rows [i·s, i·s + k) to output row i.
Output rows [r0, r1) therefore need input rows [r0·s, (r1 - 1)·s + k): the block plus its
receptive-field halo (k - s rows shared with the next block when k > s). Columns alike. K partitions
are laid out as a kr × kc grid over the output positions, the factor pair of K whose cuts are shortest
((kr - 1)·Wo + (kc - 1)·Ho), so the halos (the bytes the blocks exchange) are as small as they can be: on a
square grid the pair closest to square (K = 4: 2 × 2, K = 8: 4 × 2, K = 9: 3 × 3), on a 3 × 40 grid 1 × 8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """One partition's output block ``rows`` × ``cols`` and the input window it reads."""

    index: int
    rows: slice          # output rows [r0, r1)
    cols: slice          # output columns
    in_rows: slice       # input rows the block's receptive fields cover
    in_cols: slice

    @property
    def out_size(self) -> tuple[int, int]:
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start

    @property
    def in_size(self) -> tuple[int, int]:
        return self.in_rows.stop - self.in_rows.start, self.in_cols.stop - self.in_cols.start


def grid_shape(k: int, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """K partitions as (rows, cols) of blocks over an output grid of ``size`` (Ho, Wo): of the factor
    pairs that give every block at least one position, the one with the shortest cuts, then the
    smallest largest block, then rows >= cols. Without ``size``, a square grid (the pair closest to
    square). Raises ValueError when no pair fits."""
    ho, wo = size or (k, k)
    pairs = [(k // c, c) for c in range(1, k + 1) if k % c == 0]
    fits = [(r, c) for r, c in pairs if r <= ho and c <= wo]
    if not fits:
        raise ValueError(f"cannot split a {ho}x{wo} output grid into {k} blocks of at least one position "
                         f"(as rows x columns: "
                         f"{', '.join(f'{r}x{c}' for r, c in pairs)}); use fewer partitions")
    return min(fits, key=lambda rc: ((rc[0] - 1) * wo + (rc[1] - 1) * ho,
                                     math.ceil(ho / rc[0]) * math.ceil(wo / rc[1]), rc[1] > rc[0]))


def _cuts(n: int, parts: int) -> list[tuple[int, int]]:
    """``n`` positions in ``parts`` contiguous near-equal runs (sizes differing by at most one; which runs
    are the larger follows Python's rounding of halves to even)."""
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def split_blocks(out_size: tuple[int, int], kernel: int, stride: int, k: int) -> list[Block]:
    """The K blocks of an (Ho, Wo) output grid, row-major, with their input windows."""
    kr, kc = grid_shape(k, out_size)
    blocks = []
    for r0, r1 in _cuts(out_size[0], kr):
        for c0, c1 in _cuts(out_size[1], kc):
            blocks.append(Block(len(blocks), slice(r0, r1), slice(c0, c1),
                                slice(r0 * stride, (r1 - 1) * stride + kernel),
                                slice(c0 * stride, (c1 - 1) * stride + kernel)))
    return blocks
