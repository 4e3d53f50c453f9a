"""Locally connected filtering with a tiling dial between a convolution and fully untied filters.

``tile`` says how often the filter banks repeat across the output grid:

- ``tile=None`` (or >= the output size): fully untied, a different bank of ``maps`` filters at
  every output position, as in the cat network (Le et al. 2012);
- ``tile=1``: one bank shared everywhere, i.e. a convolution;
- ``tile=t``: position (i, j) uses bank (i mod t, j mod t): Tiled CNNs (Ngiam, Le et al. 2010).

There is no padding: the output has Ho = (H - k) // stride + 1 rows (same for columns).

``norm=r`` fixes every filter's L2 norm to r (weight normalisation, Salimans & Kingma 2016, with
a fixed gain): the parameter is each filter's direction V and the layer uses r·V/‖V‖. An
autoencoder whose filters may grow or shrink can trade code size against decoder gain instead of
learning structure (see models/cat.py); a fixed norm takes that freedom away.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.layers._lc_kernels import CHUNK_BYTES, new_banks, untied_adjoint, untied_apply
from downpour.settings import is_count

# Off the CPU, a tiled layer with at most this many distinct banks runs as one strided convolution
# per bank; beyond it, the banks are expanded to one per position and the untied kernel is used. (The
# variance gate runs the banks it wraps as convolutions up to this count: its bands need shared banks.)
_MAX_CONV_BANKS = 64
# On the CPU (see :func:`runs_banked`): a bank's convolution needs this many positions to pay; then,
# with a weight gradient, a long reduction (C·k·k) or a batch too small to pay for the expansion.
_BANKED_MIN_POSITIONS = 64
_BANKED_MIN_REDUCTION = 128
_EXPANDED_MIN_BATCH_BANKS = 10        # batch·banks per sqrt(MB) of expanded weights


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2 or not all(isinstance(n, int) and n > 0 for n in pair):
        raise ValueError(f"LocallyConnected2d: {name} must be a positive int or a pair of them, got {v!r}")
    return pair  # type: ignore[return-value]


def _expand_tiles(t: Tensor, out_size: tuple[int, int]) -> Tensor:
    """(tH, tW, ...) banks -> (Ho, Wo, ...): position (i, j) gets bank (i mod tH, j mod tW)."""
    th, tw = t.shape[:2]
    if (th, tw) == tuple(out_size):
        return t
    rows = torch.arange(out_size[0], device=t.device) % th
    cols = torch.arange(out_size[1], device=t.device) % tw
    return t.index_select(0, rows).index_select(1, cols)


def normalised(w: Tensor, norm: float | None) -> Tensor:
    """Filters ``w`` (..., M, C, k, k) with every filter rescaled to L2 norm ``norm`` (None: as given)."""
    if norm is None:
        return w
    length = w.pow(2).sum(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-24).sqrt()   # (..., M, 1, 1, 1)
    return w * (norm / length)


def locally_connected_reference(x: Tensor, weight: Tensor, stride: int, bias: Tensor | None = None) -> Tensor:
    """The slow, obvious layer: unfold every receptive field, then one einsum.

    ``x`` (B, C, H, W); ``weight`` (tH, tW, M, C, k, k) tiled over the output grid (tH = Ho for
    untied filters); ``bias`` (tH, tW, M) or None. Returns (B, M, Ho, Wo). Used by tests and as the
    baseline of ``bench/locally_connected.py``; it materialises the whole (B, C*k*k, Ho*Wo) unfold.
    """
    b, c, h, w = x.shape
    k = weight.shape[-1]
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    full = _expand_tiles(weight, (ho, wo))                            # (Ho, Wo, M, C, k, k)
    cols = F.unfold(x, k, stride=stride).view(b, c, k, k, ho, wo)     # (B, C, k, k, Ho, Wo)
    out = torch.einsum("bcuvij,ijmcuv->bmij", cols, full)
    if bias is not None:
        out = out + _expand_tiles(bias, (ho, wo)).permute(2, 0, 1)
    return out


def runs_banked(banks: int, positions: int, reduction: int, device: torch.device, *, batch: int, maps: int,
                weight_grad: bool, itemsize: int = 4) -> bool:
    """Whether a tiled layer of ``banks`` banks over ``positions`` output positions, ``maps`` filters
    of ``reduction`` = C·k·k each, on a batch of ``batch``, runs as one strided convolution per bank
    (:func:`banked_conv`), or expands its banks to one per position for the untied kernel (same map,
    other rounding). ``weight_grad``: the call's weights need a gradient (training).

    The expansion writes positions·maps·C·k·k numbers every call (and a weight gradient sums them back),
    whatever the batch; the untied kernel then beats the convolutions' backward per sample. Measured
    on the CPU (``bench/tiled.py``, docs/benchmarks.md): a bank's convolution needs >= 64 positions
    (fewer: 64 banks over 25x25 ran 22x slower banked); with that, the convolutions won without a
    weight gradient (inference, a greedy schedule's frozen stages: 1.2-40x, 192x192 at batch 1 2.3 ms
    against 94.7 ms) and, in training, with long filters (C·k·k >= 128: 3x9x9, 8x5x5, 16x5x5) or small
    batches on large images (192x192 at batch 1: 47.5 ms against 522.6 ms); the expansion won at batch 32
    on the main job's stages (1.8x, 1.4x). The batch's threshold, expanded when batch·banks >=
    10·sqrt(MB of expanded weights), was fitted to a grid of shapes and batches (``bench/tiled.py
    --sweep``: within 1.2x of the faster path at 65 of its 66 points; the earlier rule, blind to the
    batch and to gradients, picked the faster path in 14 of the bench's 19 training shapes and 6 of its
    19 forwards, worst 11x and 40x). Elsewhere (a GPU, not measured here) the earlier rule stands:
    convolutions up to ``_MAX_CONV_BANKS`` banks."""
    if device.type != "cpu":
        return banks <= _MAX_CONV_BANKS
    if positions < _BANKED_MIN_POSITIONS * banks:
        return False
    if not weight_grad or reduction >= _BANKED_MIN_REDUCTION:
        return True
    expanded_mb = positions * maps * reduction * itemsize / 1e6
    return batch * banks < _EXPANDED_MIN_BATCH_BANKS * math.sqrt(expanded_mb)


def banked_conv(x: Tensor, w: Tensor, stride: int, out_size: tuple[int, int]) -> Tensor:
    """A tiled layer's map as one strided convolution per bank: bank (a, b) of ``w`` (tH, tW, M, C, k, k)
    computes exactly the output positions i = a mod tH, j = b mod tW. x (B, C, H, W) is the input
    under an ``out_size`` (Ho, Wo) output whose (0, 0) uses bank (0, 0) -> (B, M, Ho, Wo)."""
    th, tw, m = w.shape[:3]
    out = x.new_empty(x.shape[0], m, *out_size)
    for a in range(min(th, out_size[0])):
        for b in range(min(tw, out_size[1])):
            out[:, :, a::th, b::tw] = F.conv2d(x[:, :, a * stride:, b * stride:], w[a, b],
                                               stride=(stride * th, stride * tw))
    return out


class LocallyConnected2d(nn.Module):
    """Filtering with ``maps`` filters per position, untied, tiled or shared (see module docstring).

    Parameters: ``in_channels`` C, ``maps`` M, ``in_size`` (H, W), ``kernel_size`` k, ``stride``,
    ``tile`` (None = untied), ``bias``, ``norm`` (None = free filters; r = every filter used at L2
    norm r). ``weight``: (tH, tW, M, C, k, k), ``bias``: (tH, tW, M); :meth:`effective_weight` is
    what the layer computes with (``weight`` itself when ``norm`` is None).
    Attributes: ``in_size``, ``out_size`` (Ho, Wo), ``tile`` ((tH, tW), or None when fully untied),
    ``tile_shape`` (tH, tW) always, ``chunk_bytes`` (work-buffer budget of the untied kernel).
    An untied ``weight`` is stored maps-innermost (its strides are those of a (Ho, Wo, C, k, k, M)
    tensor; ``.reshape``/``.contiguous()`` work, ``.view(-1)`` does not); ``torch.empty_like(weight)``
    keeps that layout, which the kernel is fastest with.
    """

    def __init__(self, in_channels: int, maps: int, in_size: int | tuple[int, int], kernel_size: int,
                 stride: int = 1, tile: int | None = None, bias: bool = False, norm: float | None = None):
        super().__init__()
        if norm is not None and not (isinstance(norm, (int, float)) and math.isfinite(norm) and norm > 0):
            raise ValueError(f"LocallyConnected2d: norm must be None or a finite number > 0, got {norm!r}")
        self.norm = None if norm is None else float(norm)
        for name, v in (("in_channels", in_channels), ("maps", maps), ("kernel_size", kernel_size), ("stride", stride)):
            if not is_count(v, 1):
                raise ValueError(f"LocallyConnected2d: {name} must be a positive int, got {v!r}")
        self.in_channels, self.maps, self.kernel_size, self.stride = in_channels, maps, kernel_size, stride
        self.in_size = _pair(in_size, "in_size")
        if min(self.in_size) < kernel_size:
            raise ValueError(f"LocallyConnected2d: in_size {self.in_size} is smaller than kernel_size {kernel_size}")
        self.out_size = tuple((n - kernel_size) // stride + 1 for n in self.in_size)
        if tile is not None and not is_count(tile, 1):
            raise ValueError(f"LocallyConnected2d: tile must be None or a positive int, got {tile!r}")
        self.tile_shape = self.out_size if tile is None else tuple(min(tile, n) for n in self.out_size)
        self.tile = None if self.tile_shape == self.out_size else self.tile_shape
        self.chunk_bytes = CHUNK_BYTES
        th, tw = self.tile_shape
        if self.tile is None:  # stored maps-innermost: the untied kernel's weight gradient is faster so
            self.weight = nn.Parameter(new_banks(th, tw, maps, in_channels, kernel_size))
        else:
            self.weight = nn.Parameter(torch.empty(th, tw, maps, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(th, tw, maps)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), so every tiling starts alike.
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size ** 2)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def weights(self) -> tuple[Tensor, ...]:
        """The trainable tensors a weight penalty sees: ``(weight,)`` (a partitioned layer: its blocks')."""
        return (self.weight,)

    @property
    def untied(self) -> bool:
        return self.tile is None

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.maps}, in_size={self.in_size}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, tile={self.tile}, bias={self.bias is not None}, norm={self.norm}")

    def weight_axes(self) -> str:
        """``weight``'s shape words, ``(tile rows T, ..., kernel columns K)``: the first words of its layout."""
        (th, tw), k = self.tile_shape, self.kernel_size
        return (f"(tile rows {th}, tile columns {tw}, maps {self.maps}, input channels {self.in_channels}, kernel rows "
                f"{k}, kernel columns {k})")

    def weight_layout(self) -> str:
        """``weight``'s axes and use in words, for a reader without downpour (a safetensors file's metadata)."""
        (th, tw), (ho, wo) = self.tile_shape, self.out_size
        axes = (f"{self.weight_axes()}; output position (i, j) of {ho}x{wo}, input rows i*{self.stride}.. and "
                f"columns j*{self.stride}.. (no padding), uses bank (i mod {th}, j mod {tw}); code = sum over "
                "channels and kernel of filter * input window")
        if self.norm is None:
            return axes + "; the filters as stored"
        return (axes + f"; each filter's direction only: used at L2 norm {self.norm!r}, "
                f"as weight * {self.norm!r} / sqrt(sum of weight**2 over its last 3 axes)")

    def effective_weight(self, weight: Tensor | None = None) -> Tensor:
        """The filters the layer computes with: ``weight`` (default ``self.weight``) rescaled so every
        filter has L2 norm ``self.norm``; unchanged when ``norm`` is None. Keeps the weight's layout."""
        return normalised(self.weight if weight is None else weight, self.norm)

    def _check(self, t: Tensor, channels: int, size: tuple[int, int], what: str) -> None:
        if t.dim() != 4 or t.shape[1] != channels or tuple(t.shape[2:]) != tuple(size):
            raise ValueError(f"LocallyConnected2d.{what}: expected (B, {channels}, {size[0]}, {size[1]}), "
                             f"got {tuple(t.shape)}")

    def _n_classes(self) -> int:
        return self.tile_shape[0] * self.tile_shape[1]

    def _expanded(self, w: Tensor, batch: int) -> bool:
        """Whether a call on ``batch`` samples runs on the untied kernel: untied, or tiled where that is
        faster (:func:`runs_banked`; with a weight gradient or without)."""
        if self.untied:
            return True
        positions = self.out_size[0] * self.out_size[1]
        return not runs_banked(self._n_classes(), positions, self.in_channels * self.kernel_size ** 2, w.device,
                               batch=batch, maps=self.maps, weight_grad=torch.is_grad_enabled() and w.requires_grad,
                               itemsize=w.element_size())

    def forward(self, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """(B, C, H, W) -> (B, maps, Ho, Wo). ``weight``: filters to use as given instead of
        :meth:`effective_weight` (one computed once for a forward and its tied adjoint)."""
        self._check(x, self.in_channels, self.in_size, "forward")
        out = self._linear(x, self._filters_for(weight, "forward"))
        if self.bias is not None:
            out = out + _expand_tiles(self.bias, self.out_size).permute(2, 0, 1)
        return out

    def adjoint(self, y: Tensor, weight: Tensor | None = None) -> Tensor:
        """(B, maps, Ho, Wo) -> (B, C, H, W): the transpose of the bias-free map.

        With ``weight=None`` it uses the layer's own filters (a tied decoder, RICA's W^T W x, at
        :meth:`effective_weight`); otherwise an explicit tensor of ``weight``'s shape, used as given
        (an untied decoder). Differentiable in both.
        """
        self._check(y, self.maps, self.out_size, "adjoint")
        return self._linear_t(y, self._filters_for(weight, "adjoint"))

    def _filters_for(self, weight: Tensor | None, what: str) -> Tensor:
        """``weight`` as given (checked against ``self.weight``'s shape), or :meth:`effective_weight` when None."""
        if weight is None:
            return self.effective_weight()
        if weight.shape != self.weight.shape:
            raise ValueError(f"LocallyConnected2d.{what}: weight must have shape {tuple(self.weight.shape)}, "
                             f"got {tuple(weight.shape)}")
        return weight

    def filters(self) -> Tensor:
        """(n_distinct_filters, C, k, k) = (tH*tW*maps, C, k, k), as used (at ``norm``), for pictures; detached."""
        return self.effective_weight().detach().reshape(-1, self.in_channels, self.kernel_size, self.kernel_size)

    # --- the three regimes of the dial -------------------------------------------------------
    def _linear(self, x: Tensor, w: Tensor) -> Tensor:
        s = self.stride
        if self._n_classes() == 1:
            return F.conv2d(x, w[0, 0], stride=s)
        if self._expanded(w, x.shape[0]):
            return untied_apply(x, _expand_tiles(w, self.out_size), s, self.chunk_bytes, keep_fields=True)
        return banked_conv(x, w, s, self.out_size)

    def _linear_t(self, y: Tensor, w: Tensor) -> Tensor:
        s, (th, tw), (h, width) = self.stride, self.tile_shape, self.in_size
        k = self.kernel_size
        if self._n_classes() == 1:
            extra = (h - ((self.out_size[0] - 1) * s + k), width - ((self.out_size[1] - 1) * s + k))
            return F.conv_transpose2d(y, w[0, 0], stride=s, output_padding=extra)
        if self._expanded(w, y.shape[0]):
            return untied_adjoint(y, _expand_tiles(w, self.out_size), s, self.in_size, self.chunk_bytes)
        x = y.new_zeros(y.shape[0], self.in_channels, h, width)
        for a in range(th):
            for b in range(tw):
                part = F.conv_transpose2d(y[:, :, a::th, b::tw], w[a, b], stride=(s * th, s * tw))
                top, left = a * s, b * s
                x = x + F.pad(part, (left, width - left - part.shape[3], top, h - top - part.shape[2]))
        return x
