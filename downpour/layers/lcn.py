"""Local contrast normalisation (Jarrett, Kavukcuoglu, Ranzato & LeCun 2009), as in the cat network.

With w a Gaussian window that sums to 1 over space *and* channels:

    subtractive   v[c, i, j] = x[c, i, j] - sum_{c', p, q} w[p, q] x[c', i+p, j+q]
    divisive      y = v / max(mean(sigma), sigma),  sigma[i, j] = sqrt(sum_{c', p, q} w[p, q] v[c', i+p, j+q]^2)

``mean(sigma)`` is taken per image over all positions. Border correction: near the edges part of
the window falls outside the image; the windowed sums are zero-padded and divided by the window
mass that lies inside, so a constant image has local mean that constant everywhere, and (v is
computed about the image's first value, which leaves it unchanged) maps to exactly 0 in any dtype.

Speed (``sums``): the window is the same Gaussian in every channel and separable, and its
border-corrected mass is the product of two 1-D masses, so a windowed mean over channels and space is
the channels' mean multiplied on both sides by a small banded matrix whose rows are the taps inside
the map, rescaled to sum to 1 (``window_matrix``): two GEMMs instead of a (1, C, k, k) convolution
per windowed sum and a third for the mass ("direct"). The GEMMs cost O(side) per position, the
convolution O(C k^2), so on large maps of few channels the direct form wins: "auto" takes the banded
products up to sides of BANDED_SIDE, and beyond it from BANDED_CHANNELS channels on (bench/pool_lcn.py;
docs/benchmarks.md ``pool_lcn`` has the ratios and the crossover).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.settings import is_count


SUMS = ("auto", "banded", "direct")
BANDED_SIDE = 512       # "auto": banded products on maps up to this side, and on larger ones with at least
BANDED_CHANNELS = 8     # this many channels (1 channel of 800x800: 1.01-1.36x slower than direct; 8 of 1000: 0.82)


def gaussian_taps(kernel_size: int, sigma: float) -> Tensor:
    """(k,) 1-D Gaussian that sums to 1: the window is outer(taps, taps) / channels in every channel."""
    r = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g1 = torch.exp(-0.5 * (r / sigma) ** 2)
    return (g1 / g1.sum()).to(torch.get_default_dtype())


def window_matrix(n: int, taps: Tensor) -> Tensor:
    """(n, n) matrix A with (A @ t)[i] the border-corrected window mean of t's rows around row i: row i
    holds the taps that fall inside 0..n-1, rescaled to sum to 1 (a constant maps to itself)."""
    k = taps.numel()
    i = torch.arange(n, device=taps.device)
    tap = i[None, :] - i[:, None] + k // 2                    # which tap column j is for row i
    inside = (tap >= 0) & (tap < k)
    a = torch.where(inside, taps[tap.clamp(0, k - 1)], taps.new_zeros(()))
    return a / a.sum(dim=1, keepdim=True)


class LocalContrastNorm2d(nn.Module):
    """(B, C, H, W) -> (B, C, H, W). ``sigma`` (window std) defaults to kernel_size / 4; ``eps`` floors the divisor."""

    def __init__(self, channels: int, kernel_size: int = 9, sigma: float | None = None, eps: float = 1e-4,
                 sums: str = "auto"):
        super().__init__()
        if not is_count(channels, 1):
            raise ValueError(f"LocalContrastNorm2d: channels must be a positive int, got {channels!r}")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"LocalContrastNorm2d: kernel_size must be a positive odd int, got {kernel_size!r}")
        sigma = kernel_size / 4 if sigma is None else sigma
        if not (0 < sigma < float("inf") and 0 < eps < float("inf")):    # NaN: all-NaN output; inf eps: all zeros
            raise ValueError(f"LocalContrastNorm2d: sigma and eps must be finite and > 0, got sigma={sigma!r}, eps={eps!r}")
        if sums not in SUMS:
            raise ValueError(f"LocalContrastNorm2d: sums must be one of {SUMS}, got {sums!r}")
        self.channels, self.kernel_size, self.sigma, self.eps = channels, kernel_size, float(sigma), float(eps)
        self.sums = sums
        # A buffer, not a parameter: the window is fixed, but it follows .to(device / dtype).
        self.register_buffer("taps", gaussian_taps(kernel_size, self.sigma), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, sigma={self.sigma}, eps={self.eps}, sums={self.sums!r}"

    def local_mean(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """For inputs shaped like ``x``: t (B, C, H, W) -> (B, 1, H, W), the window-weighted, border-corrected
        mean over channels and space, by ``sums`` (the same numbers either way, up to rounding)."""
        h, w = x.shape[2:]
        taps = self.taps.to(x.dtype)
        banded = self.sums == "banded" or (self.sums == "auto" and (max(h, w) <= BANDED_SIDE
                                                                     or self.channels >= BANDED_CHANNELS))
        if banded:
            rows, cols = window_matrix(h, taps), window_matrix(w, taps)
            return lambda t: rows @ t.mean(dim=1, keepdim=True) @ cols.T
        k, c = self.kernel_size, self.channels
        window = (torch.outer(taps, taps) / c).expand(1, c, k, k).contiguous()
        mass = F.conv2d(x.new_ones(1, c, h, w), window, padding=k // 2)     # the window's mass inside the map
        return lambda t: F.conv2d(t, window, padding=k // 2) / mass

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"LocalContrastNorm2d: expected (B, {self.channels}, H, W), got {tuple(x.shape)}")
        local_mean = self.local_mean(x)
        # The same v for any offset r (the corrected window sums to 1), computed about the image's first
        # value: a constant image gives v = 0 exactly. About 0, float32's rounding of its local mean
        # (~1e-6 of the constant), divided by sigma's floor eps, came out as noise up to ~1 (a constant 100).
        x = x - x[:, :1, :1, :1].detach()
        v = x - local_mean(x)
        # eps^2 under the root floors sigma at eps smoothly (and keeps the gradient finite on flat patches).
        sigma = torch.sqrt(local_mean(v * v) + self.eps ** 2)   # (B, 1, H, W)
        c = sigma.mean(dim=(1, 2, 3), keepdim=True)                           # (B, 1, 1, 1)
        return v / torch.maximum(sigma, c)
