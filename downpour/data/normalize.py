"""Per-sample normalisation of patches or crops, applied before whitening.

- ``none``: values as loaded (images in [0, 1]).
- ``patch``: each sample minus its own mean, divided by sqrt(its variance + 1% of the average sample
  variance): about its own std, and nearly flat patches (sky, walls) are not blown up into noise.
  (A soft floor, as in Coates & Ng's preprocessing: a patch at 1% of the mean variance comes out at std 0.71.)
- ``ufldl``: UFLDL's ``normalizeData`` for sigmoid autoencoders: remove each sample's mean (DC),
  clip to ±3 standard deviations (one std over the whole set), rescale into [0.1, 0.9] so a sigmoid
  decoder can reach every value.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from downpour.config import DataConfig
from downpour.settings import choices_of


def normalize(x: np.ndarray, mode: str, fitted: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (N, C, H, W) float32 -> same shape, and a JSON-able summary of what was done.

    The summary holds the set-wide statistic each mode uses (``variance_floor``, ``clip``); pass a
    previous summary as ``fitted`` to process new images with the training set's statistic.
    """
    if mode == "none":
        return x, {"normalize": "none"}
    if mode not in choices_of(DataConfig, "normalize"):   # a preprocess.json from elsewhere
        raise ValueError(f"data.normalize must be one of {', '.join(choices_of(DataConfig, 'normalize'))}, got {mode!r}")
    if len(x) == 0:
        raise ValueError("nothing to normalise: no samples")
    if fitted is not None and fitted.get("normalize") != mode:
        raise ValueError(f"fitted statistics are for normalize={fitted.get('normalize')!r}, not {mode!r}")
    flat = x.reshape(len(x), -1).astype(np.float64)
    centred = flat - flat.mean(axis=1, keepdims=True)
    if mode == "patch":
        var = centred.var(axis=1, keepdims=True)
        floor = fitted["variance_floor"] if fitted else 0.01 * float(var.mean())
        out = centred / np.sqrt(var + floor) if floor > 0 else centred
        return out.astype(np.float32).reshape(x.shape), {"normalize": "patch", "variance_floor": floor}
    bound = fitted["clip"] if fitted else 3.0 * float(centred.std())
    if bound == 0:
        out = np.full_like(centred, 0.5)   # all samples flat: everything sits at the middle value
    else:
        out = (np.clip(centred, -bound, bound) / bound + 1.0) * 0.4 + 0.1
    return out.astype(np.float32).reshape(x.shape), {"normalize": "ufldl", "clip": bound}
