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
from torch import Tensor
from torch.autograd import Function

# Budget for one chunk's receptive-field buffer. A few MB keeps it in the last-level cache and the
# layer's extra memory well below the weights' size; larger chunks only amortise Python overhead.
CHUNK_BYTES = 2 << 20


def _rows_per_chunk(wo: int, batch: int, q: int, itemsize: int, chunk_bytes: int) -> int:
    per_row = max(1, wo * batch * q * itemsize)
    return max(1, chunk_bytes // per_row)


def _to_hwcb(t: Tensor) -> Tensor:
    """(B, C, H, W) -> contiguous (H, W, C, B): batch innermost, so a receptive field is (Q, B) rows."""
    return t.permute(2, 3, 1, 0).contiguous()


def _positions_major(y: Tensor) -> Tensor:
    """(B, M, Ho, Wo) -> contiguous (Ho*Wo, M, B): one small (M, B) matrix per output position."""
    b, m, ho, wo = y.shape
    return y.permute(2, 3, 1, 0).reshape(ho * wo, m, b)


def _windows(xt: Tensor, k: int, stride: int, i0: int, i1: int, wo: int) -> Tensor:
    """Receptive fields of output rows i0..i1-1 of xt (H, W, C, B), copied to (R*Wo, C*k*k, B)."""
    c, b = xt.shape[2:]
    sh, sw, sc, sb = xt.stride()
    view = xt.as_strided((i1 - i0, wo, c, k, k, b), (stride * sh, stride * sw, sc, sh, sw, sb),
                         xt.storage_offset() + i0 * stride * sh)
    return view.reshape((i1 - i0) * wo, c * k * k, b)


def lc_apply(x: Tensor, w: Tensor, stride: int, chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """(B, C, H, W), (Ho, Wo, M, C, k, k) -> (B, M, Ho, Wo)."""
    ho, wo, m, c, k, _ = w.shape
    b = x.shape[0]
    q = c * k * k
    xt = _to_hwcb(x)
    wf = w.contiguous().view(ho * wo, m, q)
    out = x.new_empty(ho * wo, m, b)  # position-major, so each bmm writes a contiguous slab
    rows = _rows_per_chunk(wo, b, q, x.element_size(), chunk_bytes)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        p0, p1 = i0 * wo, i1 * wo
        # (L, M, Q) @ (L, Q, B): the (M x B) output tile per position suits MKL better than (B x M).
        torch.bmm(wf[p0:p1], _windows(xt, k, stride, i0, i1, wo), out=out[p0:p1])
    return out.view(ho, wo, m, b).permute(3, 2, 0, 1).contiguous()


def _fold_rows(acc: Tensor, xt: Tensor, cols: Tensor, i0: int, stride: int) -> None:
    """Add the receptive-field gradients of R output rows into xt (H, W, C, B), in place.

    cols: (R, Wo, C, k, k, B). col2im (F.fold) does this with a scalar loop; summing first over
    dx into row buffers (R, k, W, C, B) and then over dy takes 2k large vectorised adds instead.
    """
    r, wo, _, k, _, _ = cols.shape
    by_dy = cols.permute(0, 3, 1, 4, 2, 5)            # (R, dy, Wo, dx, C, B), a view
    acc.zero_()
    span = stride * (wo - 1) + 1
    for dx in range(k):
        acc[:, :, dx:dx + span:stride] += by_dy[:, :, :, dx]
    top, rspan = i0 * stride, stride * (r - 1) + 1
    for dy in range(k):
        xt[top + dy:top + dy + rspan:stride] += acc[:, dy]


def lc_adjoint(y: Tensor, w: Tensor, stride: int, in_size: tuple[int, int],
               chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """(B, M, Ho, Wo), (Ho, Wo, M, C, k, k) -> (B, C, H, W): the transpose of :func:`lc_apply`."""
    ho, wo, m, c, k, _ = w.shape
    b = y.shape[0]
    h, width = in_size
    q = c * k * k
    wf = w.contiguous().view(ho * wo, m, q)
    g = _positions_major(y)
    xt = y.new_zeros(h, width, c, b)
    rows = _rows_per_chunk(wo, b, q, y.element_size(), chunk_bytes)
    acc = y.new_empty(rows, k, width, c, b)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        p0, p1 = i0 * wo, i1 * wo
        cols = torch.bmm(wf[p0:p1].transpose(1, 2), g[p0:p1])       # (L, Q, B)
        _fold_rows(acc[:i1 - i0], xt, cols.view(i1 - i0, wo, c, k, k, b), i0, stride)
    return xt.permute(3, 2, 0, 1).contiguous()


def lc_weight_grad(x: Tensor, y: Tensor, stride: int, k: int,
                   chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """(B, C, H, W), (B, M, Ho, Wo) -> (Ho, Wo, M, C, k, k): sum_b y[b, m, p] X[b, p, q]."""
    b, m, ho, wo = y.shape
    c = x.shape[1]
    q = c * k * k
    xt = _to_hwcb(x)
    g = _positions_major(y)
    out = x.new_empty(ho * wo, m, q)
    rows = _rows_per_chunk(wo, b, q, x.element_size(), chunk_bytes)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        p0, p1 = i0 * wo, i1 * wo
        torch.bmm(g[p0:p1], _windows(xt, k, stride, i0, i1, wo).transpose(1, 2), out=out[p0:p1])
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
