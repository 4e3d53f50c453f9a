"""The digits a run holds out (``data.digits_heldout``): a share of scikit-learn's 1,797 digits, drawn with the
run's seed, that training never sees, so a supervised network's accuracy on them is a held-out figure
(:mod:`downpour.analysis.heldout`). The training load and the analysis draw the same split from the same seed."""
from __future__ import annotations

from typing import Any

import numpy as np

HELDOUT_STREAM = 5     # its own NumPy stream (build.py's are 1-4): the held-out draw moves no other draw


def digits_split(n: int, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """{"train": (n - k,), "heldout": (k,)}: sorted indices into the ``n`` digits, k = round(fraction * n) drawn
    with ``seed``; disjoint, and together every digit. ``fraction`` 0: every digit trains, none is held out."""
    if not 0 <= fraction < 1:
        raise ValueError(f"digits_split: fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(np.random.SeedSequence([seed, HELDOUT_STREAM])).permutation(n)
    k = round(fraction * n)
    return {"train": np.sort(order[k:]), "heldout": np.sort(order[:k])}


def split_record(n: int, fraction: float, seed: int) -> dict[str, Any]:
    """What data.json and analysis.json record of the split: its share, seed and sizes."""
    parts = digits_split(n, fraction, seed)
    return {"fraction": fraction, "seed": seed, "train": len(parts["train"]), "heldout": len(parts["heldout"])}
