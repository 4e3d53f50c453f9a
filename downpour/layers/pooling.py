"""L2 pooling: out = sqrt(eps + sum_{neighbourhood} h * x^2) (Hyvarinen's TICA; Le et al. 2012).

The neighbourhood is ``kernel_size`` x ``kernel_size`` positions within a map and, with
``maps_pool`` > 1, a group of ``maps_pool`` adjacent maps (maps 0..g-1 pool into output map 0, and
so on), which is the topographic pooling of TICA. ``h`` is uniform (all ones, a plain sum of
squares) unless ``learnable=True``, in which case it is a parameter kept non-negative by |.|.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.settings import is_count


class L2Pool2d(nn.Module):
    """(B, C, H, W) -> (B, C // maps_pool, Ho, Wo), Ho = (H + 2*padding - kernel_size) // stride + 1.

    ``energy(x)`` is the pooled sum of squares before the square root (same shape as the output).
    With ``learnable=True`` (needs ``channels``), ``weight`` (C // maps_pool, maps_pool, k, k) holds
    the pooling weights, initialised to ones; ``pool_weights()`` returns the effective |weight|.
    """

    def __init__(self, kernel_size: int, stride: int = 1, padding: int = 0, maps_pool: int = 1,
                 learnable: bool = False, channels: int | None = None, eps: float = 1e-8):
        super().__init__()
        for name, v, low in (("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0),
                             ("maps_pool", maps_pool, 1)):
            if not is_count(v, low):
                raise ValueError(f"L2Pool2d: {name} must be an int >= {low}, got {v!r}")
        if padding * 2 > kernel_size:
            raise ValueError(f"L2Pool2d: padding {padding} is more than half of kernel_size {kernel_size}")
        if not (eps >= 0 and eps != float("inf")):     # (NaN compares False: it took the eps = 0 branch)
            raise ValueError(f"L2Pool2d: eps must be finite and >= 0, got {eps!r}")
        if channels is not None and (channels < 1 or channels % maps_pool):
            raise ValueError(f"L2Pool2d: channels {channels} must be a positive multiple of maps_pool {maps_pool}")
        if learnable and channels is None:
            raise ValueError("L2Pool2d: learnable=True needs channels (the number of input maps)")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.maps_pool, self.channels, self.eps = maps_pool, channels, eps
        self.weight = None
        if learnable:
            self.weight = nn.Parameter(torch.ones(channels // maps_pool, maps_pool, kernel_size, kernel_size))

    @property
    def learnable(self) -> bool:
        return self.weight is not None

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"maps_pool={self.maps_pool}, learnable={self.learnable}, channels={self.channels}")

    def pool_weights(self) -> Tensor:
        """The effective non-negative pooling weights, (C // maps_pool, maps_pool, k, k)."""
        if self.weight is not None:
            return self.weight.abs()
        if self.channels is None:
            raise ValueError("L2Pool2d.pool_weights: fixed uniform weights of unknown channel count; pass channels")
        k = self.kernel_size
        return torch.ones(self.channels // self.maps_pool, self.maps_pool, k, k)

    def energy(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C // maps_pool, Ho, Wo): sum_{neighbourhood} h * x^2."""
        if x.dim() != 4:
            raise ValueError(f"L2Pool2d: expected (B, C, H, W), got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        g = self.maps_pool
        if c % g or (self.channels is not None and c != self.channels):
            want = self.channels if self.channels is not None else f"a multiple of maps_pool={g}"
            raise ValueError(f"L2Pool2d: input has {c} channels, expected {want}")
        if min(h, w) + 2 * self.padding < self.kernel_size:
            raise ValueError(f"L2Pool2d: input {h}x{w} is smaller than kernel_size {self.kernel_size}")
        sq = x * x
        if self.weight is not None:
            return F.conv2d(sq, self.weight.abs(), stride=self.stride, padding=self.padding, groups=c // g)
        if g > 1:
            sq = sq.view(b, c // g, g, h, w).sum(dim=2)
        # avg_pool counts the zero padding, so times k*k it is exactly the zero-padded window sum.
        pooled = F.avg_pool2d(sq, self.kernel_size, self.stride, self.padding, count_include_pad=True)
        return pooled * float(self.kernel_size ** 2)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C // maps_pool, Ho, Wo): sqrt(eps + energy(x)). With eps = 0, a window of
        zeros pools to 0 with gradient 0 (sqrt's own is infinite there: NaN through every input)."""
        energy = self.energy(x)
        if self.eps > 0:
            return torch.sqrt(energy + self.eps)
        live = energy > 0
        return torch.where(live, torch.where(live, energy, 1.0).sqrt(), 0.0)
