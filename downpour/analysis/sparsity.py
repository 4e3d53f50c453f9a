"""How sparse a layer's codes are: Hoyer's measure and the fraction of active units.

    stats = code_sparsity(model, x, layer="codes")     # {"hoyer": ..., "active": ..., "mean": ...}

- **Hoyer** (Hoyer 2004), per image then averaged: (√n − ‖h‖₁/‖h‖₂) / (√n − 1) over the n units of
  one image's codes. 1 when a single unit responds, 0 when all respond equally; it ignores scale, so a
  layer whose units all sit at the same small value (a sigmoid layer pushed to a low mean by a KL
  penalty) is *dense* by Hoyer however low that value is.
- **active**: the share of (image, unit) codes with |h| above ``threshold`` (default 0.1, a tenth of
  a sigmoid unit's range); it says how many units fire, where Hoyer says how unevenly.
- **mean**: the mean |h|.

An image whose codes are all zero has no direction: it counts as 0 for Hoyer (nothing is sparse about
silence) and, for ``active``, as no unit active.
"""
from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from downpour.analysis.units import unit_responses
from downpour.models.base import FeatureModel

__all__ = ["code_sparsity", "fraction_active", "hoyer"]


def hoyer(codes: np.ndarray) -> float:
    """Mean over rows of Hoyer's sparsity of ``codes`` (N, n); NaN for n = 1 (one unit cannot be spread)."""
    h = np.abs(np.asarray(codes, dtype=np.float64)).reshape(len(codes), -1)
    n = h.shape[1]
    if n < 2:
        return math.nan
    l1, l2 = h.sum(axis=1), np.sqrt((h ** 2).sum(axis=1))
    ratio = np.divide(l1, l2, out=np.full_like(l1, math.sqrt(n)), where=l2 > 0)   # all-zero rows: ratio √n -> 0
    return float(((math.sqrt(n) - ratio) / (math.sqrt(n) - 1)).mean())


def fraction_active(codes: np.ndarray, threshold: float = 0.1) -> float:
    """Share of the entries of ``codes`` (N, ...) with |h| > ``threshold``."""
    return float((np.abs(np.asarray(codes)) > threshold).mean())


def code_sparsity(model: FeatureModel, x: Tensor, layer: str | None = None, threshold: float = 0.1) -> dict[str, float]:
    """Hoyer, active fraction and mean |h| of ``model``'s codes at ``layer`` (the top one when None)
    for the images ``x`` (N, C, H, W) as the model sees them."""
    codes = unit_responses(model, x, layer)
    return {"hoyer": hoyer(codes), "active": fraction_active(codes, threshold), "mean": float(np.abs(codes).mean())}
