"""col2im for the untied layer's adjoint: per-position input gradients summed back into the image.

For output position p = (i, j) the adjoint's GEMM gives cols[p] = W_p^T g_p, a (C*k*k, B) block
that belongs at input rows i*s..i*s+k-1 and columns j*s..j*s+k-1. F.fold does the summation with a
scalar loop and wants a (B, Q, L) layout we would have to copy into; the folder here takes the
GEMM output as it comes and sum with a handful of large vectorised torch ops per chunk of rows,
which matters twice: for speed, and because under CPU contention every small op that opens an
OpenMP region can cost a scheduler tick.

It works in (.., B) batch-innermost layouts and returns (B, C, H, W).
"""
from __future__ import annotations

import torch
from torch import Tensor


class RowsFirstFold:
    """Sum over kernel rows (dy) per chunk, over kernel columns (dx) once at the end.

    For a fixed dy the GEMM output of R output rows, cols[:, :, :, dy] (R, Wo, C, dx, B), has
    (dx, B) contiguous, so the k adds into the row-summed buffer ``rows`` (H, Wo, C, dx, B) run
    over long contiguous stretches. The dx sum then touches only ``rows``, which is k times smaller
    than all the cols together, with k adds in total. Works for any stride.
    """

    def __init__(self, like: Tensor, c: int, k: int, out_size: tuple[int, int], in_size: tuple[int, int],
                 batch: int, stride: int):
        self.c, self.k, self.wo, self.b, self.s = c, k, out_size[1], batch, stride
        self.in_size = in_size
        self.rows = like.new_zeros(in_size[0], self.wo, c, k, batch)       # (H, Wo, C, dx, B)

    def add_rows(self, i0: int, i1: int, wf: Tensor, g: Tensor) -> None:
        """Output rows i0..i1-1; wf (P, M, Q) weights (any strides) and g (P, M, B) output gradient."""
        k, wo, s, r = self.k, self.wo, self.s, i1 - i0
        cols = torch.bmm(wf[i0 * wo:i1 * wo].transpose(1, 2), g[i0 * wo:i1 * wo])   # (L, Q, B)
        cols = cols.view(r, wo, self.c, k, k, self.b)                                # (R, Wo, C, dy, dx, B)
        top, span = i0 * s, s * (r - 1) + 1
        for dy in range(k):
            self.rows[top + dy:top + dy + span:s].add_(cols[:, :, :, dy])   # add_ on the view: no write-back

    def result(self) -> Tensor:
        """(B, C, H, W)."""
        k, s = self.k, self.s
        image = self.rows.new_zeros(self.in_size[0], self.in_size[1], self.c, self.b)    # (H, W, C, B)
        span = s * (self.wo - 1) + 1
        for dx in range(k):
            image[:, dx:dx + span:s].add_(self.rows[:, :, :, dx])
        return image.permute(3, 2, 0, 1).contiguous()
