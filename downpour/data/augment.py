"""Per-batch augmentation: random shifts, zooms and horizontal flips, drawn from the batch generator.

Applied by :meth:`Dataset.batches` to each batch as it is drawn, so the stored data stay fixed and
every epoch sees new variants. Shifts alone are done by indexing (whole pixels, exact, no blur);
with a zoom, zoom and shift are one bilinear resampling (``grid_sample``). The border is repeated
into the area a shift uncovers, so there are no black bands for a model to learn.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Augment:
    shift: int = 0          # ± pixels, uniform integer per sample and axis
    scale: float = 0.0      # ± fraction: zoom factor uniform in [1 - scale, 1 + scale]
    flip: bool = False      # mirror left-right with probability 1/2

    def __post_init__(self) -> None:
        if self.shift < 0:
            raise ValueError(f"augmentation shift must be >= 0 pixels, got {self.shift}")
        if not 0.0 <= self.scale < 1.0:
            raise ValueError(f"augmentation scale must be in [0, 1), got {self.scale}")

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.scale > 0 or self.flip

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W), a new tensor; ``x`` is not changed."""
        b = x.shape[0]
        # Draw in a fixed order (shifts, zooms, flips) so the stream of random numbers is stable.
        shifts = torch.randint(-self.shift, self.shift + 1, (b, 2), generator=generator) if self.shift else None
        zoom = 1.0 + self.scale * (2 * torch.rand(b, generator=generator) - 1) if self.scale else None
        if zoom is not None:
            x = _affine(x, zoom, shifts if shifts is not None else torch.zeros(b, 2, dtype=torch.int64))
        elif shifts is not None:
            x = _shift(x, shifts)
        if self.flip:
            mirror = torch.rand(b, generator=generator) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        return x


def _shift(x: Tensor, shifts: Tensor) -> Tensor:
    """Whole-pixel shifts (B, 2) = (dx, dy) by indexing: exact, no resampling; borders repeat."""
    b, c, h, w = x.shape
    rows = (torch.arange(h)[None] - shifts[:, 1:2]).clamp(0, h - 1)     # (B, H): source row of each output row
    cols = (torch.arange(w)[None] - shifts[:, 0:1]).clamp(0, w - 1)     # (B, W)
    # One gather over the flattened pixels: ~3x faster than advanced indexing on CPU.
    src = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, h * w).gather(2, src).reshape(b, c, h, w)


def _affine(x: Tensor, zoom: Tensor, shifts: Tensor) -> Tensor:
    """Zoom (B,) about the centre plus shifts (B, 2) in pixels, by bilinear resampling."""
    b, _, h, w = x.shape
    theta = torch.zeros(b, 2, 3, dtype=x.dtype)
    # Output pixel p samples the input at p / zoom - shift (normalised coordinates: 2 / side per pixel).
    theta[:, 0, 0] = 1.0 / zoom
    theta[:, 1, 1] = 1.0 / zoom
    theta[:, 0, 2] = -2.0 * shifts[:, 0].to(x.dtype) / w
    theta[:, 1, 2] = -2.0 * shifts[:, 1].to(x.dtype) / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
