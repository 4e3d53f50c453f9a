"""The untied locally connected map as three bilinear kernels, each a batched GEMM over positions.

Notation: x (B, C, H, W) input, w (Ho, Wo, M, C, k, k) one filter bank per output position,
y (B, M, Ho, Wo) output, Q = C*k*k, P = Ho*Wo. With X[b, p, :] the receptive field of position p:

    apply(x, w)       y[b, m, p]  = sum_q w[p, m, q] X[b, p, q]          (the layer)
    adjoint(y, w)     x           = sum_p fold_p( sum_m y[b, m, p] w[p, m, :] )   (its transpose)
    weight_grad(x, y) g[p, m, q]  = sum_b y[b, m, p] X[b, p, q]          (d<y, apply(x, w)>/dw)

Each is linear in both arguments and the derivatives of each are the other two, so the three
autograd Functions below differentiate each other to any order (the contractive penalty needs a
double backward through the layer).

Why it is fast: the obvious version unfolds the whole input to (B, Q, P) (49 MB for 16 x 3x64x64
at k=9) and contracts it with an einsum that torch turns into a permute + bmm with P batches of a
(B, Q) x (Q, M) product, touching the huge buffer several times. Here the receptive fields of a
few output rows at a time are copied straight into the GEMM layout (R*Wo, B, Q) from a strided
view of x (one copy, sized to stay in cache), and each bmm writes its result in place into the
output / weight gradient, so the only full-size temporaries are the ones autograd needs anyway.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function

# Budget for one chunk's receptive-field buffer. A few MB keeps it in the last-level cache and the
# layer's extra memory well below the weights' size; larger chunks only amortise Python overhead.
CHUNK_BYTES = 2 << 20


def _rows_per_chunk(wo: int, batch: int, q: int, itemsize: int, chunk_bytes: int) -> int:
    per_row = max(1, wo * batch * q * itemsize)
    return max(1, chunk_bytes // per_row)


def _windows(x: Tensor, k: int, stride: int, i0: int, i1: int, wo: int) -> Tensor:
    """Receptive fields of output rows i0..i1-1 of contiguous x, copied to (R*Wo, B, C*k*k)."""
    b, c = x.shape[:2]
    sb, sc, sh, sw = x.stride()
    view = x.as_strided((i1 - i0, wo, b, c, k, k), (stride * sh, stride * sw, sb, sc, sh, sw),
                        x.storage_offset() + i0 * stride * sh)
    return view.reshape((i1 - i0) * wo, b, c * k * k)


def lc_apply(x: Tensor, w: Tensor, stride: int, chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """(B, C, H, W), (Ho, Wo, M, C, k, k) -> (B, M, Ho, Wo)."""
    ho, wo, m, c, k, _ = w.shape
    b = x.shape[0]
    q = c * k * k
    x = x.contiguous()
    wf = w.contiguous().view(ho * wo, m, q)
    out = x.new_empty(ho * wo, b, m)  # position-major, so each bmm writes a contiguous slab
    rows = _rows_per_chunk(wo, b, q, x.element_size(), chunk_bytes)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        p0, p1 = i0 * wo, i1 * wo
        torch.bmm(_windows(x, k, stride, i0, i1, wo), wf[p0:p1].transpose(1, 2), out=out[p0:p1])
    return out.view(ho, wo, b, m).permute(2, 3, 0, 1).contiguous()


def lc_adjoint(y: Tensor, w: Tensor, stride: int, in_size: tuple[int, int],
               chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """(B, M, Ho, Wo), (Ho, Wo, M, C, k, k) -> (B, C, H, W): the transpose of :func:`lc_apply`."""
    ho, wo, m, c, k, _ = w.shape
    b = y.shape[0]
    h, width = in_size
    q = c * k * k
    wf = w.contiguous().view(ho * wo, m, q)
    g = y.permute(2, 3, 0, 1).reshape(ho * wo, b, m)
    x = y.new_zeros(b, c, h, width)
    rows = _rows_per_chunk(wo, b, q, y.element_size(), chunk_bytes)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        r = i1 - i0
        cols = torch.bmm(g[i0 * wo:i1 * wo], wf[i0 * wo:i1 * wo])  # (R*Wo, B, Q)
        # col2im wants (B, Q, L); F.fold sums the overlapping windows back into image rows.
        cols = cols.view(r, wo, b, q).permute(2, 3, 0, 1).reshape(b, q, r * wo)
        span = (r - 1) * stride + k
        x[:, :, i0 * stride:i0 * stride + span] += F.fold(cols, (span, width), k, stride=stride)
    return x


def lc_weight_grad(x: Tensor, y: Tensor, stride: int, k: int,
                   chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """(B, C, H, W), (B, M, Ho, Wo) -> (Ho, Wo, M, C, k, k): sum_b y[b, m, p] X[b, p, q]."""
    b, m, ho, wo = y.shape
    c = x.shape[1]
    q = c * k * k
    x = x.contiguous()
    g = y.permute(2, 3, 1, 0).reshape(ho * wo, m, b)
    out = x.new_empty(ho * wo, m, q)
    rows = _rows_per_chunk(wo, b, q, x.element_size(), chunk_bytes)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        p0, p1 = i0 * wo, i1 * wo
        torch.bmm(g[p0:p1], _windows(x, k, stride, i0, i1, wo), out=out[p0:p1])
    return out.view(ho, wo, m, c, k, k)


class _Apply(Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, stride: int, chunk_bytes: int) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, chunk_bytes)
        return lc_apply(x, w, stride, chunk_bytes)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        stride, chunk = ctx.conf
        dx = _Adjoint.apply(g, w, stride, tuple(x.shape[2:]), chunk) if ctx.needs_input_grad[0] else None
        dw = _WeightGrad.apply(x, g, stride, w.shape[-1], chunk) if ctx.needs_input_grad[1] else None
        return dx, dw, None, None


class _Adjoint(Function):
    @staticmethod
    def forward(ctx, y: Tensor, w: Tensor, stride: int, in_size: tuple[int, int], chunk_bytes: int) -> Tensor:
        ctx.save_for_backward(y, w)
        ctx.conf = (stride, chunk_bytes)
        return lc_adjoint(y, w, stride, in_size, chunk_bytes)

    @staticmethod
    def backward(ctx, g: Tensor):
        y, w = ctx.saved_tensors
        stride, chunk = ctx.conf
        dy = _Apply.apply(g, w, stride, chunk) if ctx.needs_input_grad[0] else None
        # <g, A_w^T y> = <A_w g, y>, so the weight gradient is weight_grad with g as the input.
        dw = _WeightGrad.apply(g, y, stride, w.shape[-1], chunk) if ctx.needs_input_grad[1] else None
        return dy, dw, None, None, None


class _WeightGrad(Function):
    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, stride: int, k: int, chunk_bytes: int) -> Tensor:
        ctx.save_for_backward(x, y)
        ctx.conf = (stride, chunk_bytes)
        return lc_weight_grad(x, y, stride, k, chunk_bytes)

    @staticmethod
    def backward(ctx, gw: Tensor):
        x, y = ctx.saved_tensors
        stride, chunk = ctx.conf
        dx = _Adjoint.apply(y, gw, stride, tuple(x.shape[2:]), chunk) if ctx.needs_input_grad[0] else None
        dy = _Apply.apply(x, gw, stride, chunk) if ctx.needs_input_grad[1] else None
        return dx, dy, None, None, None


def untied_apply(x: Tensor, w: Tensor, stride: int, chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """Differentiable (to any order) untied layer: (B, C, H, W) -> (B, M, Ho, Wo)."""
    return _Apply.apply(x, w, stride, chunk_bytes)


def untied_adjoint(y: Tensor, w: Tensor, stride: int, in_size: tuple[int, int],
                   chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """Differentiable transpose of :func:`untied_apply`: (B, M, Ho, Wo) -> (B, C, H, W)."""
    return _Adjoint.apply(y, w, stride, tuple(in_size), chunk_bytes)
