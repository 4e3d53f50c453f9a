"""The intervals every study reports, and the words a verdict uses for them.

- a proportion (P(success) over seeds): Wilson's 95% interval;
- a paired difference (condition − baseline on the same seeds): a seeded bootstrap over seeds
  (2,000 resamples), for proportions and for continuous figures alike, plus, for successes, the
  flip counts (seeds where only one of the two succeeds) and McNemar's exact p-value;
- a mean: Student's t interval.

Everything is deterministic: the bootstrap's generator is seeded, so study.json is reproducible.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats

Z95 = 1.959963984540054
RESAMPLES = 2000


def wilson(successes: int, n: int) -> tuple[float, float, float]:
    """(p, low, high): the proportion and its Wilson 95% interval; (nan, 0, 1) for n = 0."""
    if n == 0:
        return float("nan"), 0.0, 1.0
    p = successes / n
    denom = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): Student's t 95% interval of the mean of the finite values (nan if none)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) == 1:
        return m, float("-inf"), float("inf")
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def paired_difference(baseline: Sequence[float], other: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """(mean of other − baseline, low, high): a bootstrap over the pairs; non-finite pairs are dropped."""
    a, b = np.asarray(baseline, dtype=np.float64), np.asarray(other, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    d = (b - a)[keep]
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(RESAMPLES, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(d.mean()), float(lo), float(hi)


def flips(baseline: Sequence[bool], other: Sequence[bool]) -> dict[str, Any]:
    """Paired successes: seeds where only ``other`` succeeds (``gained``), only ``baseline`` does
    (``lost``), and McNemar's exact two-sided p-value for gained vs lost."""
    gained = sum(1 for a, b in zip(baseline, other) if b and not a)
    lost = sum(1 for a, b in zip(baseline, other) if a and not b)
    p = float(stats.binomtest(min(gained, lost), gained + lost, 0.5).pvalue) if gained + lost else 1.0
    return {"gained": gained, "lost": lost, "mcnemar_p": round(p, 6)}


def effect_words(diff: float, low: float, high: float, resolution: float) -> str:
    """How an interval reads: 'higher' / 'lower' when it excludes 0; 'no detectable effect' when it
    holds 0 and is narrower than ±``resolution``; else 'inconclusive'."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "no detectable effect" if max(-low, high) <= resolution else "inconclusive"
