"""A 95% bootstrap interval for each invariance range, over the test images its curve averages.

    ci = range_intervals(result, passes, seed=run_seed)      # result: invariance_curves(..., passes=passes)
    ci["scale"]   # {"low": [lo, hi], "high": [lo, hi], "width": [lo, hi], "replicates": 500, ...}

A range (:func:`~downpour.analysis.invariance.invariance_summary`) is read off a mean curve over N images; another N
images would move it. A replicate draws N images with replacement (the face test's multinomial counts,
:func:`~downpour.analysis.controls.bootstrap_weights`), recomputes every curve from the per-image responses the sweep
already made (:meth:`~downpour.analysis.passes.Passes.read`: no forward pass) and reads its range at the same floor.
Each point is the replicate's (mean response - baseline) / (mean untransformed response - baseline) of the *same*
resampled images, so the normalisation is resampled too. The baseline (the unit's mean on the other class) is held
fixed: the interval covers which concept images were tested, not which others, nor training (another run learns
other units). Percentile interval, 2.5% and 97.5%; a range's ends are swept values, so its interval's are too (the
lower quantile taken downward, the upper upward). Since 2026-12-06: the ranges were single numbers, while every
AUC in the report carried an interval.

    N   test images of the concept;  V   values swept of one transform;  B   replicates
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from downpour.analysis.controls import bootstrap_weights
from downpour.analysis.invariance import invariance_summary, range_width, responsive
from downpour.analysis.passes import Passes

RANGE_REPLICATES = 500     # ~0.1 s of per-image arithmetic for the four in-plane curves (docs/analysis.md)
RANGE_STREAM = 3           # the seed's spawn key: the face test draws streams 0-2 of the same seed (face_controls)


def range_weights(n: int, replicates: int, seed: int) -> np.ndarray:
    """(B, n) multinomial counts of ``n`` images, from the run's ``seed`` (its own stream of it)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(RANGE_STREAM,)))
    return bootstrap_weights(np.ones(n, dtype=bool), replicates, rng)


def curve_interval(transform: str, values: list[float], per_image: np.ndarray, reference: np.ndarray, base: float,
                   weights: np.ndarray, floor: float = 0.5) -> dict[str, Any]:
    """The interval of one curve's range. per_image (V, N): each image's signed response at each value swept;
    reference (N,): each one's untransformed response (the curve's 1); base: the signed baseline (its 0); weights
    (B, N): :func:`range_weights`. ``low`` / ``high``: the intervals of the range's two ends, ``width``: of its
    :func:`~downpour.analysis.invariance.range_width`; ``censored``: how many replicates ran to an end of the sweep
    (their width is a lower bound); ``without_range``: how many had none (the resampled images no stronger than the
    baseline untransformed, or below the floor there), left out of the percentiles."""
    total = weights.sum(axis=1)                                              # (B,): n each
    top = weights @ per_image.T / total[:, None] - base                      # (B, V)
    bottom = weights @ reference / total - base                              # (B,)
    ranges, censored = [], 0
    for b in range(len(weights)):
        if not bottom[b] > 1e-12:       # no response above the baseline to keep: no range (as the sweep reads it)
            continue
        got = invariance_summary({"curves": [{"transform": transform, "values": values,
                                              "response": (top[b] / bottom[b]).tolist()}]}, floor)
        if got["ranges"][transform] is not None:
            ranges.append(got["ranges"][transform])
            censored += bool(got["censored"][transform])
    out = {"replicates": int(len(weights)), "without_range": int(len(weights) - len(ranges)), "censored": censored,
           "floor": floor}
    if not ranges:
        return {**out, "low": None, "high": None, "width": None}
    ends = np.array(ranges)                                                  # (B', 2)
    widths = np.array([range_width(transform, r) for r in ranges])
    return {**out, "low": _interval(ends[:, 0]), "high": _interval(ends[:, 1]), "width": _interval(widths)}


def _interval(v: np.ndarray) -> list[float]:
    """The 2.5% and 97.5% points of ``v``, each an observed value (taken outward): on a sweep's grid, a grid value."""
    return [float(np.percentile(v, 2.5, method="lower")), float(np.percentile(v, 97.5, method="higher"))]


def range_intervals(result: dict[str, Any], passes: Passes, *, seed: int, replicates: int = RANGE_REPLICATES,
                    floor: float = 0.5) -> dict[str, dict[str, Any] | None]:
    """Per in-plane transform of :func:`~downpour.analysis.invariance.invariance_curves`' ``result`` (one unit), the
    :func:`curve_interval` of its range, from the per-image responses kept in ``passes`` (the sweep's own); None for a
    unit with no range to keep (its curves not relative to its untransformed response) and for the pose curve (its
    images are not in ``passes``). The rotation's 1 is the unturned images in the disc where the sweep used it."""
    out: dict[str, dict[str, Any] | None] = {c["transform"]: None for c in result["curves"]}
    if not responsive(result):
        return out
    unit, sign = torch.tensor([result["unit"]]), torch.tensor([float(result["sign"])], dtype=torch.float64)
    base = result["sign"] * result["baseline"]

    def read(key: tuple) -> np.ndarray:     # (N,): the unit's signed response to each image of the pass ``key``
        return passes.read(key, unit, sign)[:, 0].numpy()

    originals = read(("x", None))
    weights = range_weights(len(originals), replicates, seed)
    for c in result["curves"]:
        name = c["transform"]
        if name == "out_of_plane_rotation":
            continue
        per_image = np.stack([read(("x", name, v)) for v in c["values"]])     # (V, N)
        reference = originals
        if name == "rotation" and result.get("rotation_aperture") == "disc":
            disc = read(("x", "rotation", 0.0))
            reference = disc if disc.mean() - base > 1e-12 else originals     # (as the sweep falls back)
        out[name] = curve_interval(name, c["values"], per_image, reference, base, weights, floor)
    return out
