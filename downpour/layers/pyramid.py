"""Multi-resolution input: Gaussian / Laplacian pyramids and a foveated glimpse front end.

The essay's third hard problem: deep nets model depth and sparsity but not the brain's
multi-resolution processing or attention. Two front ends put those in front of any filter layer:

- :class:`PyramidFront`: the input's Gaussian (or Laplacian, band-pass) pyramid, each level
  resampled back to the input grid and stacked as channels, so one filter layer (untied, tiled or
  a convolution) sees every scale at every position: (B, C, H, W) -> (B, C*levels, H, W).
- :class:`GlimpseFront`: a few foveated glimpses at the most salient places, salience being local
  contrast (the local standard deviation); each glimpse is a sharp centre crop plus coarser,
  wider crops around it, all resampled to the same side: (B, C, H, W) -> (B, n, C*scales, g, g).

The pyramid maths are pure functions (:func:`gaussian_pyramid`, :func:`laplacian_pyramid`,
:func:`reconstruct`); the Laplacian pyramid reconstructs its input exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.layers.gating import local_variance
from downpour.settings import is_count

__all__ = ["GlimpseFront", "PyramidFront", "gaussian_pyramid", "laplacian_pyramid", "reconstruct"]

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)  # Burt & Adelson's 5-tap kernel: a cheap, near-Gaussian blur


def _blur(x: Tensor) -> Tensor:
    """Separable 5-tap binomial blur with reflected borders, channel by channel: (B, C, H, W) -> same."""
    if min(x.shape[2:]) < 3:  # reflect padding needs 3 pixels; a 1-2 pixel level is already coarse
        return x
    c = x.shape[1]
    k = x.new_tensor(_BINOMIAL) / 16.0
    y = F.pad(x, (2, 2, 2, 2), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(y, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def _up(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def gaussian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """[x, blur-and-halve(x), ...]: ``levels`` tensors (B, C, H/2^i, W/2^i) (sides rounded up)."""
    if not is_count(levels, 1):   # 2.5 and "3" would be TypeErrors naming nothing; True one level
        raise ValueError(f"gaussian_pyramid: levels must be a positive int, got {levels!r}")
    out = [x]
    for i in range(1, levels):
        if min(out[-1].shape[2:]) < 2:
            need = 2 ** (levels - 2) + 1     # sides round up: 9 -> 5 -> 3 -> 2 -> 1 is 5 levels
            raise ValueError(f"gaussian_pyramid: {levels} levels need an input of at least {need} "
                             f"pixels a side, got {tuple(x.shape[2:])}")
        out.append(_blur(out[-1])[:, :, ::2, ::2])
    return out


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """Band-pass levels G_i - up(G_{i+1}) and the coarsest Gaussian level last; sums back to x exactly."""
    g = gaussian_pyramid(x, levels)
    return [g[i] - _up(g[i + 1], tuple(g[i].shape[2:])) for i in range(levels - 1)] + [g[-1]]


def reconstruct(laplacian: list[Tensor]) -> Tensor:
    """Inverse of :func:`laplacian_pyramid`: coarsest level up, add each band, finest last."""
    x = laplacian[-1]
    for band in reversed(laplacian[:-1]):
        x = band + _up(x, tuple(band.shape[2:]))
    return x


class PyramidFront(nn.Module):
    """(B, C, H, W) -> (B, C*levels, H, W): every pyramid level on the input grid, stacked as channels.

    ``kind="gaussian"`` gives progressively blurred copies (the coarse levels carry context);
    ``"laplacian"`` gives band-pass levels (each scale's own detail, the coarsest as residual).
    Channel order: level 0's C channels first.
    """

    def __init__(self, levels: int = 3, kind: str = "laplacian"):
        super().__init__()
        if kind not in ("gaussian", "laplacian"):
            raise ValueError(f"PyramidFront: kind must be 'gaussian' or 'laplacian', got {kind!r}")
        if not is_count(levels, 1):   # (2.5 would be taken here, and fail at the first batch naming nothing)
            raise ValueError(f"PyramidFront: levels must be a positive int, got {levels!r}")
        self.levels, self.kind = levels, kind

    def extra_repr(self) -> str:
        return f"levels={self.levels}, kind={self.kind!r}"

    def out_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        c, h, w = input_shape
        return c * self.levels, h, w

    def forward(self, x: Tensor) -> Tensor:
        size = tuple(x.shape[2:])
        pyr = (laplacian_pyramid if self.kind == "laplacian" else gaussian_pyramid)(x, self.levels)
        return torch.cat([p if i == 0 else _up(p, size) for i, p in enumerate(pyr)], dim=1)


class GlimpseFront(nn.Module):
    """(B, C, H, W) -> (B, glimpses, C*scales, size, size): foveated crops at the most contrasted places.

    Salience is the local variance over ``size`` x ``size`` windows (:func:`local_variance`); the
    centres are picked greedily, highest first, each suppressing a ``size``-wide square around it
    (so glimpses do not pile up on one spot); more glimpses than fit apart start a new round from the
    most salient place. Glimpse scale s covers ``size * 2**s`` pixels around
    the centre (zero beyond the image), average-pooled down to ``size``: sharp fovea, blurry
    periphery. ``last_centres`` holds the (B, glimpses, 2) row/column centres of the last call.
    """

    def __init__(self, glimpses: int = 3, size: int = 8, scales: int = 2):
        super().__init__()
        for name, v in (("glimpses", glimpses), ("size", size), ("scales", scales)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"GlimpseFront: {name} must be a positive int, got {v!r}")
        self.glimpses, self.size, self.scales = glimpses, size, scales
        self.last_centres: Tensor | None = None

    def extra_repr(self) -> str:
        return f"glimpses={self.glimpses}, size={self.size}, scales={self.scales}"

    def out_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        return self.glimpses, input_shape[0] * self.scales, self.size, self.size

    def centres(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, glimpses, 2) int64 (row, col) of the glimpse centres."""
        b, _, h, w = x.shape
        g = self.size
        if min(h, w) < g:
            raise ValueError(f"GlimpseFront: input {h}x{w} is smaller than the glimpse size {g}")
        salience = local_variance(x, g)                         # (B, H-g+1, W-g+1): window top-left corners
        sal = salience.clone()
        wo = sal.shape[2]
        out = []
        for _ in range(self.glimpses):
            # every corner suppressed (more glimpses than fit apart): a new round over the whole image,
            # from its most salient place again (argmax of all -1 would be the top-left corner, every time)
            spent = sal.view(b, -1).amax(dim=1) < 0
            if bool(spent.any()):
                sal = torch.where(spent[:, None, None], salience, sal)
            idx = sal.view(b, -1).argmax(dim=1)                 # (B,)
            r, c = idx // wo, idx % wo
            out.append(torch.stack([r + g // 2, c + g // 2], dim=1))
            rows = torch.arange(sal.shape[1], device=x.device)
            cols = torch.arange(wo, device=x.device)
            near = ((rows[None, :, None] - r[:, None, None]).abs() < g) & ((cols[None, None, :] - c[:, None, None]).abs() < g)
            sal = sal.masked_fill(near, -1.0)                  # non-maximum suppression
        return torch.stack(out, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g = self.size
        centres = self.centres(x)
        self.last_centres = centres
        half = g * 2 ** (self.scales - 1)                       # the widest crop's half-side bound
        xp = F.pad(x, (half, half, half, half))
        crops = []
        for s in range(self.scales):
            side = g * 2 ** s
            top = centres[..., 0] - g // 2 - (side - g) // 2 + half   # (B, n) in padded coordinates
            left = centres[..., 1] - g // 2 - (side - g) // 2 + half
            rows = top[..., None] + torch.arange(side, device=x.device)          # (B, n, side)
            cols = left[..., None] + torch.arange(side, device=x.device)
            bi = torch.arange(b, device=x.device)[:, None, None, None]
            patch = xp.permute(0, 2, 3, 1)[bi, rows[..., :, None], cols[..., None, :]]  # (B, n, side, side, C)
            patch = patch.permute(0, 1, 4, 2, 3).reshape(b * self.glimpses, c, side, side)
            crops.append(F.avg_pool2d(patch, 2 ** s) if s else patch)
        return torch.cat(crops, dim=1).view(b, self.glimpses, c * self.scales, g, g)
