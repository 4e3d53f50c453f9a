"""The intervals the analysis and the studies share (:mod:`downpour.studies.stats` re-exports them): a proportion's
Wilson 95% interval and a mean's Student's t one. Here, below both, so that the analysis gives its probes, its table's
splits and its edge-like share an interval: it cannot import the studies' helpers.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson(successes: int, n: int) -> tuple[float, float, float]:
    """(p, low, high): the proportion and its Wilson 95% interval; (nan, 0, 1) for n = 0."""
    if n == 0:
        return float("nan"), 0.0, 1.0
    p = successes / n
    denom = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denom
    return p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): Student's t 95% interval of the mean of the finite values (nan if none)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) == 1:
        return m, float("-inf"), float("inf")
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half
