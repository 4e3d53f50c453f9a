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
at k=9) and contracts it with an einsum that torch turns into permutes + a bmm, touching the huge
buffer several times, and its backward runs F.fold's scalar col2im. Here the receptive fields of a
few output rows at a time are copied from a batch-innermost (C, H, W, B) copy of x straight into
the GEMM layout (R*Wo, Q, B) (one copy, sized to stay in cache); each bmm writes its result in
place into the output / weight gradient; col2im is a few large adds (``_lc_fold``); the output
rows are split over worker threads (``_lc_threads``). The only full-size temporaries are
the ones autograd needs anyway. Two results that read the same fields come from one copy of them (the
backward's input and weight gradients; a tied decoder's backward, :func:`lc_apply_and_weight_grad`), and a layer's
training forward keeps its copies whole for the weight gradient where they are small (:func:`keeps_fields`).
docs/benchmarks.md (## locally_connected, ## adjoint_backward, ## kept_fields) has the numbers.

On a GPU (any non-CPU tensor) the same loop runs with the ``batched`` schedule: no thread pool (a
GPU runs one kernel over all its cores), and chunks of GPU_CHUNK_BYTES, so each step is a few large
batched GEMMs over thousands of positions at once instead of many cache-sized ones. ``schedule=``
forces either (tests run the batched schedule on CPU against the threaded one).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor
from torch.autograd import Function

from downpour.layers._lc_fold import RowsFirstFold
from downpour.layers._lc_threads import run_parts, split_rows, streams

# Budget for one chunk's receptive-field buffer. A few MB keeps it in the last-level cache and the
# layer's extra memory well below the weights' size; larger chunks only amortise Python overhead.
CHUNK_BYTES = 2 << 20
# The batched schedule's budget: large enough that a 200x200 cat stage is a handful of bmm calls.
GPU_CHUNK_BYTES = 256 << 20
# The forward keeps x's receptive fields (P, Q, B) for its weight gradient, instead of the backward copying them
# again, where they take at most this much (on a CPU, and where the weight gradient is wanted: :func:`keeps_fields`).
# Kept, the backward's GEMMs read them from memory instead of from a cache-sized copy: the layer's forward + weight
# gradient took 0.83 of the CPU at 5.1 MB of fields, 0.85 at 10.2 MB, 0.90 at 20.5 MB and 1.26 at 49 MB (paired
# medians, bench/kept_fields.py, docs/benchmarks.md#kept_fields): the gain shrinks as the memory held grows, and this
# budget keeps the main job's stages (5.1 and 1.6 MB at batch 32), not larger fields.
KEEP_BYTES = 8 << 20
SCHEDULES = ("threads", "batched")
_ASKED = threading.local()      # .inputs_only: set by input_gradients_only, on the thread that runs the backward


@contextmanager
def input_gradients_only() -> Iterator[None]:
    """Within it, a backward through the untied kernel on this thread computes no weight gradient.

    For ``torch.autograd.grad(out, x)`` of a model whose weights require grad: a custom Function's
    ``needs_input_grad`` says which inputs require grad, not which gradients the call asked for, so the weight
    gradient (a bmm as large as the input gradient's) would be computed and dropped. The optimal stimulus asks
    for the input's alone, 302 times an analysis (0.3 s of its 1.2 s CPU on the main job's network,
    bench/stimulus_grad.py); the input gradient is the same, bit for bit. Only where the backward runs on the calling
    thread (a CPU graph: a GPU's runs on autograd's device thread, which computes the weight gradient as before).
    """
    was = getattr(_ASKED, "inputs_only", False)
    _ASKED.inputs_only = True
    try:
        yield
    finally:
        _ASKED.inputs_only = was


def _weight_grad_wanted(ctx, index: int) -> bool:
    """Whether a backward computes the gradient of its weight input ``index`` (:func:`input_gradients_only`)."""
    return ctx.needs_input_grad[index] and not getattr(_ASKED, "inputs_only", False)


def _plan(t: Tensor, out_rows: int, k: int, chunk_bytes: int, schedule: str | None) -> tuple[list[tuple[int, int]], int, bool]:
    """(row ranges to run; chunk budget; whether on CPU threads) for ``schedule`` (None: by t's device)."""
    schedule = schedule or ("threads" if t.device.type == "cpu" else "batched")
    if schedule not in SCHEDULES:
        raise ValueError(f"untied kernel: schedule must be one of {SCHEDULES} or None, got {schedule!r}")
    if schedule == "batched":
        return [(0, out_rows)], max(chunk_bytes, GPU_CHUNK_BYTES), False
    return split_rows(out_rows, streams(out_rows, k)), chunk_bytes, True


def _run(part, spans: list[tuple[int, int]], threaded: bool) -> list:
    """``part`` of each span: threaded, on the worker threads (one span too, so that its ops never fork
    and join the intra-op team on the caller, :func:`~downpour.layers._lc_threads.run_parts`); else inline."""
    return run_parts(part, spans) if threaded else [part(span) for span in spans]


def _rows_per_chunk(wo: int, batch: int, q: int, itemsize: int, chunk_bytes: int) -> int:
    per_row = max(1, wo * batch * q * itemsize)
    return max(1, chunk_bytes // per_row)


def _to_chwb(t: Tensor) -> Tensor:
    """(B, C, H, W) -> contiguous (C, H, W, B): batch innermost, so a receptive field is (Q, B) rows
    and each (c, dy) line of it, (dx, b), is one contiguous run of k*B numbers."""
    return t.permute(1, 2, 3, 0).contiguous()


def _positions_major(y: Tensor) -> Tensor:
    """(B, M, Ho, Wo) -> contiguous (Ho*Wo, M, B): one small (M, B) matrix per output position."""
    b, m, ho, wo = y.shape
    # reshape alone would return a strided view here, which sends bmm down a per-matrix copy path
    return y.permute(2, 3, 1, 0).contiguous().view(ho * wo, m, b)


def _windows(xt: Tensor, k: int, stride: int, i0: int, i1: int, wo: int, out: Tensor | None = None) -> Tensor:
    """Receptive fields of output rows i0..i1-1 of xt (C, H, W, B), copied to (R*Wo, C*k*k, B) (into ``out``, a
    contiguous tensor of that shape, if given)."""
    c, b = xt.shape[0], xt.shape[3]
    sc, sh, sw, sb = xt.stride()
    view = xt.as_strided((i1 - i0, wo, c, k, k, b), (stride * sh, stride * sw, sc, sh, sw, sb),
                         xt.storage_offset() + i0 * stride * sh)
    if out is None:
        return view.reshape((i1 - i0) * wo, c * k * k, b)
    out.view(view.shape).copy_(view)
    return out


def keeps_fields(positions: int, reduction: int, batch: int, itemsize: int, device: torch.device) -> bool:
    """Whether a training forward of the untied kernel (``positions`` P = Ho*Wo, ``reduction`` Q = C*k*k, ``batch``
    B, whose weight gradient is wanted) keeps its receptive fields, P*Q*B numbers, for the backward.

    The weight gradient reads the same fields as the forward; kept, the backward does not copy them again (a
    quarter of a cat stage's field copies a step, bench/kept_fields.py), for P*Q*B numbers held from the forward
    to the backward (the main job's stage 1 at batch 32: 5.1 MB; the plan counts them, ``plan/held.py``). On a CPU
    up to :data:`KEEP_BYTES`, where it pays; a GPU runs as before (its batched schedule's few large copies, not
    measured here)."""
    return device.type == "cpu" and positions * reduction * batch * itemsize <= KEEP_BYTES


def maps_last(w: Tensor) -> bool:
    """Whether the banks w (Ho, Wo, M, C, k, k) are stored maps-innermost, as (Ho, Wo, C, k, k, M).

    That is how LocallyConnected2d allocates untied weights: the weight gradient's GEMM is then
    (Q, B) @ (B, M) per position, about 1.5x faster in MKL than (M, B) @ (B, Q), and the other two
    GEMMs read the banks equally fast either way. Contiguous banks work too.
    """
    return w.permute(0, 1, 3, 4, 5, 2).is_contiguous()


def _bank_matrices(w: Tensor) -> Tensor:
    """(P, M, Q) per-position filter matrices of w, a view whatever w's layout (a copy only if neither fits)."""
    ho, wo, m, c, k, _ = w.shape
    if maps_last(w):
        return w.permute(0, 1, 3, 4, 5, 2).view(ho * wo, c * k * k, m).transpose(1, 2)
    return w.contiguous().view(ho * wo, m, c * k * k)


def new_banks(ho: int, wo: int, m: int, c: int, k: int, like: Tensor | None = None, **kw) -> Tensor:
    """An uninitialised (Ho, Wo, M, C, k, k) tensor stored maps-innermost (see :func:`maps_last`)."""
    make = torch.empty if like is None else like.new_empty
    return make(ho, wo, c, k, k, m, **kw).permute(0, 1, 5, 2, 3, 4)


def _new_weight_grad(like: Tensor, ho: int, wo: int, m: int, c: int, k: int, maps_last: bool) -> tuple[Tensor, Tensor]:
    """An uninitialised weight gradient twice over, the same memory: per position, the matrices
    :func:`_weight_grad_rows` writes, (P, Q, M) if ``maps_last`` else (P, M, Q); and the banks (Ho, Wo, M, C, k, k)
    they make, stored maps-innermost if ``maps_last`` (the weight's layout, so autograd does not copy it)."""
    if maps_last:
        rows = like.new_empty(ho * wo, c * k * k, m)
        return rows, rows.view(ho, wo, c, k, k, m).permute(0, 1, 5, 2, 3, 4)
    rows = like.new_empty(ho * wo, m, c * k * k)
    return rows, rows.view(ho, wo, m, c, k, k)


def _weight_grad_rows(cols: Tensor, g: Tensor, out: Tensor, maps_last: bool) -> None:
    """A chunk's weight gradient, written straight into ``out``: receptive fields cols (L, Q, B), output gradient
    g (L, M, B) -> (L, Q, M) if ``maps_last`` else (L, M, Q)."""
    if maps_last:   # (L, Q, B) @ (L, B, M)
        torch.bmm(cols, g.transpose(1, 2), out=out)
    else:           # (L, M, B) @ (L, B, Q)
        torch.bmm(g, cols.transpose(1, 2), out=out)


def lc_apply(x: Tensor, w: Tensor, stride: int, chunk_bytes: int = CHUNK_BYTES, schedule: str | None = None,
             fields: Tensor | None = None) -> Tensor:
    """(B, C, H, W), (Ho, Wo, M, C, k, k) -> (B, M, Ho, Wo). ``fields``: an uninitialised contiguous (Ho*Wo, C*k*k, B)
    tensor that receives x's receptive fields (for :func:`lc_backward`'s weight gradient), the same bits out."""
    return _apply_pass(x, w, stride, chunk_bytes, schedule, fields=fields)[0]


def lc_apply_and_weight_grad(x: Tensor, w: Tensor, y: Tensor, stride: int, chunk_bytes: int = CHUNK_BYTES,
                             grad_maps_last: bool = True, schedule: str | None = None) -> tuple[Tensor, Tensor]:
    """(apply(x, w), weight_grad(x, y)) from one copy of x's receptive fields, each the same, bit for bit, as
    :func:`lc_apply` and :func:`lc_backward` give it (the same chunks, the same GEMMs).

    What the adjoint's backward needs, with x its output gradient and y its input (a tied decoder's codes): the
    layer applied to x, and the weight gradient with x as the input. The copy saved is a quarter of a cat stage's
    receptive-field copies a step (bench/adjoint_backward.py). y (B, M, Ho, Wo); the weight gradient stored as
    :func:`lc_backward` stores it (``grad_maps_last``)."""
    out, dw = _apply_pass(x, w, stride, chunk_bytes, schedule, y, grad_maps_last)
    assert dw is not None
    return out, dw


def _apply_pass(x: Tensor, w: Tensor, stride: int, chunk_bytes: int, schedule: str | None, y: Tensor | None = None,
                grad_maps_last: bool = True, fields: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """(apply(x, w), weight_grad(x, y) if ``y`` is given, else None) in one pass over x's receptive fields; each
    chunk's fields copied into their rows of ``fields`` (P, Q, B) if given, else into a chunk-sized buffer."""
    ho, wo, m, c, k, _ = w.shape
    b = x.shape[0]
    q = c * k * k
    spans, chunk_bytes, threaded = _plan(x, ho, k, chunk_bytes, schedule)
    xt = _to_chwb(x)
    wf = _bank_matrices(w)                                           # (P, M, Q)
    out = x.new_empty(ho * wo, m, b)  # position-major, so each bmm writes a contiguous slab
    rows = _rows_per_chunk(wo, b, q, x.element_size(), chunk_bytes)
    if y is not None:
        g = _positions_major(y)                                      # (P, M, B)
        dw, banks = _new_weight_grad(y, ho, wo, m, c, k, grad_maps_last)

    def part(span: tuple[int, int]) -> None:
        for i0 in range(span[0], span[1], rows):
            i1 = min(span[1], i0 + rows)
            p0, p1 = i0 * wo, i1 * wo
            cols = _windows(xt, k, stride, i0, i1, wo, None if fields is None else fields[p0:p1])   # (L, Q, B)
            # (L, M, Q) @ (L, Q, B): the (M x B) output tile per position suits MKL better than (B x M).
            torch.bmm(wf[p0:p1], cols, out=out[p0:p1])
            if y is not None:
                _weight_grad_rows(cols, g[p0:p1], dw[p0:p1], grad_maps_last)

    _run(part, spans, threaded)
    return out.view(ho, wo, m, b).permute(3, 2, 0, 1).contiguous(), banks if y is not None else None


def lc_backward(y: Tensor, stride: int, k: int, in_size: tuple[int, int], w: Tensor | None = None,
                x: Tensor | None = None, chunk_bytes: int = CHUNK_BYTES, grad_maps_last: bool = True,
                schedule: str | None = None, fields: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
    """Both halves of the layer's backward in one pass over the output rows (reads ``y`` once).

    y (B, M, Ho, Wo) is the output gradient. Returns (adjoint(y, w) if ``w`` is given, else None;
    weight_grad(x, y) if ``x`` is given, else None), shapes (B, C, H, W) and (Ho, Wo, M, C, k, k);
    the weight gradient is stored maps-innermost if ``grad_maps_last`` (match the weight's layout,
    or autograd copies it), else contiguous. ``fields``: x's receptive fields as :func:`lc_apply` kept them (P, Q, B),
    read instead of copied again from x (the same bits).
    """
    b, m, ho, wo = y.shape
    c = w.shape[3] if w is not None else x.shape[1]
    h, width = in_size
    q = c * k * k
    spans, chunk_bytes, threaded = _plan(y, ho, k, chunk_bytes, schedule)
    g = _positions_major(y)                                          # (P, M, B)
    rows = _rows_per_chunk(wo, b, q, y.element_size(), chunk_bytes)
    if w is not None:
        wf = _bank_matrices(w)                                       # (P, M, Q)
    if x is not None:
        xt = _to_chwb(x) if fields is None else None
        dw, banks = _new_weight_grad(y, ho, wo, m, c, k, grad_maps_last)

    def part(span: tuple[int, int]) -> tuple[int, Tensor] | None:
        fold = RowsFirstFold(y, c, k, span, wo, width, b, stride) if w is not None else None
        for i0 in range(span[0], span[1], rows):
            i1 = min(span[1], i0 + rows)
            p0, p1 = i0 * wo, i1 * wo
            if x is not None:
                cols = _windows(xt, k, stride, i0, i1, wo) if fields is None else fields[p0:p1]   # (L, Q, B)
                _weight_grad_rows(cols, g[p0:p1], dw[p0:p1], grad_maps_last)
            if fold is not None:    # (L, Q, M) @ (L, M, B): per-position input gradients, then col2im
                fold.add_rows(i0, i1, wf, g)
        return fold.result() if fold is not None else None

    parts = _run(part, spans, threaded)
    dx = None
    if w is not None:   # the ranges' input rows overlap by k - stride rows: sum the pieces
        image = y.new_zeros(h, width, c, b)                          # (H, W, C, B)
        for top, piece in parts:
            image[top:top + piece.shape[0]].add_(piece)
        dx = image.permute(3, 2, 0, 1).contiguous()
    return dx, banks if x is not None else None


def lc_adjoint(y: Tensor, w: Tensor, stride: int, in_size: tuple[int, int],
               chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """(B, M, Ho, Wo), (Ho, Wo, M, C, k, k) -> (B, C, H, W): the transpose of :func:`lc_apply`."""
    return lc_backward(y, stride, w.shape[-1], in_size, w=w, chunk_bytes=chunk_bytes)[0]


def lc_weight_grad(x: Tensor, y: Tensor, stride: int, k: int, chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """(B, C, H, W), (B, M, Ho, Wo) -> (Ho, Wo, M, C, k, k): sum_b y[b, m, p] X[b, p, q]."""
    return lc_backward(y, stride, k, tuple(x.shape[2:]), x=x, chunk_bytes=chunk_bytes)[1]


class _Apply(Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, stride: int, chunk_bytes: int, keep: bool) -> Tensor:
        ho, wo, _, c, k, _ = w.shape
        fields = None           # x's receptive fields (P, Q, B), kept for the weight gradient (keeps_fields)
        if keep and ctx.needs_input_grad[1] and keeps_fields(ho * wo, c * k * k, x.shape[0], x.element_size(),
                                                             x.device):
            fields = x.new_empty(ho * wo, c * k * k, x.shape[0])
        ctx.save_for_backward(x, w, fields)
        ctx.conf = (stride, chunk_bytes)
        return lc_apply(x, w, stride, chunk_bytes, fields=fields)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w, fields = ctx.saved_tensors
        stride, chunk = ctx.conf
        weight = _weight_grad_wanted(ctx, 1)
        if not torch.is_grad_enabled():  # plain backward: one fused pass over the output rows
            return (*lc_backward(g, stride, w.shape[-1], tuple(x.shape[2:]), w if ctx.needs_input_grad[0] else None,
                                 x if weight else None, chunk, maps_last(w), fields=fields), None, None, None)
        dx = _Adjoint.apply(g, w, stride, tuple(x.shape[2:]), chunk) if ctx.needs_input_grad[0] else None
        dw = _WeightGrad.apply(x, g, stride, w.shape[-1], chunk) if weight else None
        return dx, dw, None, None, None


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
        if ctx.needs_input_grad[0] and ctx.needs_input_grad[1] and not torch.is_grad_enabled():
            # plain backward of both (a tied decoder's, every training step): one copy of g's receptive fields
            return (*lc_apply_and_weight_grad(g, w, y, stride, chunk, maps_last(w)), None, None, None)
        dy = _Apply.apply(g, w, stride, chunk, False) if ctx.needs_input_grad[0] else None
        # <g, A_w^T y> = <A_w g, y>, so the weight gradient is weight_grad with g as the input.
        if not ctx.needs_input_grad[1]:
            dw = None
        elif torch.is_grad_enabled():
            dw = _WeightGrad.apply(g, y, stride, w.shape[-1], chunk)
        else:  # in the weight's own layout, so autograd does not copy it
            dw = lc_backward(y, stride, w.shape[-1], tuple(g.shape[2:]), x=g, chunk_bytes=chunk,
                             grad_maps_last=maps_last(w))[1]
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
        dy = _Apply.apply(x, gw, stride, chunk, False) if ctx.needs_input_grad[1] else None
        return dx, dy, None, None, None


def untied_apply(x: Tensor, w: Tensor, stride: int, chunk_bytes: int = CHUNK_BYTES, keep_fields: bool = False
                 ) -> Tensor:
    """Differentiable (to any order) untied layer: (B, C, H, W) -> (B, M, Ho, Wo). ``keep_fields``: a training
    forward keeps x's receptive fields for the weight gradient where :func:`keeps_fields` says so (a whole layer's
    calls, which the plan counts so, ``plan/held.py``; a model-parallel block's keep none, ``plan/hub.py``)."""
    # (a Function's forward runs with grad off and sees needs_input_grad under no_grad too: a frozen stage's forward,
    # an analysis's, makes no graph to keep the fields for)
    return _Apply.apply(x, w, stride, chunk_bytes, keep_fields and torch.is_grad_enabled())


def untied_adjoint(y: Tensor, w: Tensor, stride: int, in_size: tuple[int, int],
                   chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """Differentiable transpose of :func:`untied_apply`: (B, M, Ho, Wo) -> (B, C, H, W)."""
    return _Adjoint.apply(y, w, stride, tuple(in_size), chunk_bytes)
