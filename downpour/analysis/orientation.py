"""Is a filter an oriented edge? The coherence of its structure tensor.

For a filter f with gradients (gx, gy), the structure tensor J = Σ [gx², gx·gy; gx·gy, gy²] has
eigenvalues λ1 ≥ λ2; coherence (λ1 − λ2) / (λ1 + λ2) is 1 for a perfectly oriented edge or grating
and near 0.13 for white noise on an 8×8 grid. Learned first-layer filters of a working sparse
coder on natural images score well above noise.
"""
from __future__ import annotations

import numpy as np
from torch import Tensor


def coherence(filters: Tensor | np.ndarray) -> np.ndarray:
    """(n, H, W) or (n, C, H, W) filters -> (n,) orientation coherence in [0, 1] (channels summed)."""
    f = np.asarray(filters, dtype=np.float64)
    if f.ndim == 3:
        f = f[:, None]
    f = f - f.mean(axis=(2, 3), keepdims=True)
    gy, gx = np.gradient(f, axis=(2, 3))
    jxx, jyy, jxy = ((gx * gx).sum(axis=(1, 2, 3)), (gy * gy).sum(axis=(1, 2, 3)), (gx * gy).sum(axis=(1, 2, 3)))
    half_trace = (jxx + jyy) / 2
    root = np.sqrt(np.maximum(half_trace ** 2 - (jxx * jyy - jxy ** 2), 0.0))
    return (2 * root) / (jxx + jyy + 1e-12)  # (λ1 − λ2) / (λ1 + λ2)
