"""Per-batch augmentation: random shifts, zooms and horizontal flips, drawn from the batch generator.

Applied by :meth:`Dataset.batches` to each batch as it is drawn, so the stored data stay fixed and
every epoch sees new variants. Shift and zoom are one affine resampling (``grid_sample``); whole-pixel
shifts with no zoom land exactly on pixel centres, so they move pixels without blurring them. The
border is repeated into the area a shift uncovers (no black bands that a model could learn).
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
        b, _, h, w = x.shape
        if self.shift > 0 or self.scale > 0:
            # Draw in a fixed order (shifts, then zooms) so the stream of random numbers is stable.
            shifts = torch.randint(-self.shift, self.shift + 1, (b, 2), generator=generator) if self.shift else torch.zeros(b, 2)
            zoom = 1.0 + self.scale * (2 * torch.rand(b, generator=generator) - 1) if self.scale else torch.ones(b)
            theta = torch.zeros(b, 2, 3)
            # Output pixel p samples input at p / zoom - shift (normalised coordinates span 2 / side per pixel).
            theta[:, 0, 0] = 1.0 / zoom
            theta[:, 1, 1] = 1.0 / zoom
            theta[:, 0, 2] = -2.0 * shifts[:, 0].float() / w
            theta[:, 1, 2] = -2.0 * shifts[:, 1].float() / h
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.flip:
            mirror = torch.rand(b, generator=generator) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        return x
