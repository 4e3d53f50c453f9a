"""col2im for the untied layer's adjoint: per-position input gradients summed back into the image.

For output position p = (i, j) the adjoint's GEMM gives cols[p] = W_p^T g_p, a (C*k*k, B) block
that belongs at input rows i*s..i*s+k-1 and columns j*s..j*s+k-1. F.fold does the summation with a
scalar loop and wants a (B, Q, L) layout we would have to copy into; the folder here takes the
GEMM output as it comes and sum with a handful of large vectorised torch ops per chunk of rows,
which matters twice: for speed, and because under CPU contention every small op that opens an
OpenMP region can cost a scheduler tick.

It works in (.., B) batch-innermost layouts; each fold covers a range of output rows, so the
kernel's worker threads (``_lc_threads``) fold their own rows and the pieces are summed at the end.
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

    def __init__(self, like: Tensor, c: int, k: int, out_rows: tuple[int, int], wo: int, width: int,
                 batch: int, stride: int):
        self.c, self.k, self.wo, self.width, self.b, self.s = c, k, wo, width, batch, stride
        # output rows [a, z) touch input rows [a*s, (z-1)*s + k)
        self.top = out_rows[0] * stride
        n_in = (out_rows[1] - 1) * stride + k - self.top
        self.rows = like.new_zeros(n_in, wo, c, k, batch)                  # (input rows, Wo, C, dx, B)

    def add_rows(self, i0: int, i1: int, wf: Tensor, g: Tensor) -> None:
        """Output rows i0..i1-1; wf (P, M, Q) weights (any strides) and g (P, M, B) output gradient."""
        k, wo, s, r = self.k, self.wo, self.s, i1 - i0
        cols = torch.bmm(wf[i0 * wo:i1 * wo].transpose(1, 2), g[i0 * wo:i1 * wo])   # (L, Q, B)
        cols = cols.view(r, wo, self.c, k, k, self.b)                                # (R, Wo, C, dy, dx, B)
        top, span = i0 * s - self.top, s * (r - 1) + 1
        for dy in range(k):
            self.rows[top + dy:top + dy + span:s].add_(cols[:, :, :, dy])   # add_ on the view: no write-back

    def result(self) -> tuple[int, Tensor]:
        """(first input row, (input rows, W, C, B) sums) of the output rows this fold covers."""
        k, s = self.k, self.s
        image = self.rows.new_zeros(self.rows.shape[0], self.width, self.c, self.b)
        span = s * (self.wo - 1) + 1
        for dx in range(k):
            image[:, dx:dx + span:s].add_(self.rows[:, :, :, dx])
        return self.top, image
