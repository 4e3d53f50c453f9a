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
other units). The AUC ranges' intervals (:func:`selectivity_intervals`) resample the other class too, each class within
itself, and recompute each AUC curve by ranks (:func:`~downpour.analysis.controls.ranked_aucs`); the tied units' mean
widths' (:func:`tied_intervals`) average each replicate's widths over the units, every unit read on the same draw.
Percentile interval, 2.5% and 97.5%; a range's ends are swept values, so its interval's are too (the lower quantile
taken downward, the upper upward). Every AUC in the report carries an interval, so the ranges do too.

    N   test images of the concept;  V   values swept of one transform;  B   replicates
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch

from downpour.analysis.circle import covers_turn, walked_range, walks
from downpour.analysis.controls import bootstrap_weights, ranked_aucs
from downpour.analysis.invariance import SELECTIVE_KEY, identity_index
from downpour.analysis.invariance_widths import range_width, responsive
from downpour.analysis.passes import Passes

RANGE_REPLICATES = 500     # ~0.1 s of per-image arithmetic for the four in-plane curves (docs/analysis.md)
RANGE_STREAM = 3           # the seed's spawn key: the face test draws streams 0-2 of the same seed (face_controls)
NEGATIVE_STREAM = 4        # the other class's images, for the AUC ranges' intervals


def range_weights(n: int, replicates: int, seed: int) -> np.ndarray:
    """(B, n) multinomial counts of ``n`` images, from the run's ``seed`` (its own stream of it)."""
    return _stream_weights(n, replicates, seed, RANGE_STREAM)


def negative_weights(m: int, replicates: int, seed: int) -> np.ndarray:
    """(B, m) multinomial counts of the other class's ``m`` images, from the seed's next stream."""
    return _stream_weights(m, replicates, seed, NEGATIVE_STREAM)


def _stream_weights(n: int, replicates: int, seed: int, stream: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))
    return bootstrap_weights(np.ones(n, dtype=bool), replicates, rng)


def curve_interval(transform: str, values: list[float], per_image: np.ndarray, reference: np.ndarray, base: float,
                   weights: np.ndarray, floor: float = 0.5) -> dict[str, Any]:
    """The interval of one curve's range. per_image (V, N): each image's signed response at each value swept;
    reference (N,): each one's untransformed response (the curve's 1); base: the signed baseline (its 0); weights
    (B, N): :func:`range_weights`. ``low`` / ``high``: the intervals of the range's two ends, ``width``: of its
    :func:`~downpour.analysis.invariance_widths.range_width`; ``censored``: how many replicates ran to an end of the
    sweep (their width is a lower bound); ``without_range``: how many had none (the resampled images no stronger than
    the baseline untransformed, or below the floor there), left out of the percentiles."""
    ranges, censored = replicate_ranges(transform, values, per_image, reference, base, weights, floor)
    return {**_of_ranges(transform, ranges, censored), "floor": floor}


def replicate_ranges(transform: str, values: list[float], per_image: np.ndarray, reference: np.ndarray, base: float,
                     weights: np.ndarray, floor: float = 0.5) -> tuple[list[list[float] | None], int]:
    """:func:`curve_interval`'s (B,) replicates' ranges (None where one has none), and how many ran to the sweep's
    end."""
    total = weights.sum(axis=1)                                              # (B,): n each
    top = weights @ per_image.T / total[:, None] - base                      # (B, V)
    bottom = weights @ reference / total - base                              # (B,)
    kept = bottom > 1e-12       # no response above the baseline to keep: no range (as the sweep reads it)
    ratio = top / np.where(kept, bottom, 1.0)[:, None]
    return _spans(transform, values, ratio, np.where(kept, floor, np.nan))


def auc_interval(transform: str, values: list[float], pos: np.ndarray, neg: np.ndarray, w_pos: np.ndarray,
                 w_neg: np.ndarray, keep: float = 0.5) -> dict[str, Any]:
    """The interval of one AUC range (:func:`~downpour.analysis.invariance.selectivity_summary`): pos (V, N) the concept
    images' signed responses at each value swept, neg (V, M) the other class's warped alike; w_pos (B, N), w_neg (B, M)
    each class's resampling (:func:`range_weights`, :func:`negative_weights`). As :func:`curve_interval`, with ``auc``:
    the untransformed AUC's interval (None without an identity point), and ``points``: each swept value's AUC interval
    (V, 2), from the same replicates (the figure's band round the AUC curve)."""
    ranges, censored, at, aucs = auc_replicate_ranges(transform, values, pos, neg, w_pos, w_neg, keep)
    seen = at[np.isfinite(at)]
    return {**_of_ranges(transform, ranges, censored), "keep": keep, "auc": _interval(seen) if seen.size else None,
            "points": point_intervals(aucs)}


def point_intervals(ys: np.ndarray) -> list[list[float] | None]:
    """(V,) the 2.5% and 97.5% points of each column of replicates' curves ``ys`` (B, V), NaN left out (a replicate
    whose draw held no image of a class: None where none is left). Not taken outward: an AUC is no grid value."""
    out: list[list[float] | None] = []
    for column in ys.T:
        seen = column[np.isfinite(column)]
        out.append([float(q) for q in np.percentile(seen, [2.5, 97.5])] if seen.size else None)
    return out


def auc_replicate_ranges(transform: str, values: list[float], pos: np.ndarray, neg: np.ndarray, w_pos: np.ndarray,
                         w_neg: np.ndarray, keep: float = 0.5
                         ) -> tuple[list[list[float] | None], int, np.ndarray, np.ndarray]:
    """:func:`auc_interval`'s (B,) replicates' AUC ranges, how many ran to the sweep's end, (B,) their untransformed
    AUCs (NaN without an identity point) and (B, V) their AUC curves."""
    aucs = ranked_aucs(pos, neg, w_pos, w_neg).T                             # (B, V)
    at = identity_index({"transform": transform, "values": values})
    if at is None:
        return [None] * len(aucs), 0, np.full(len(aucs), np.nan), aucs
    lead = aucs[:, at]          # halfway from chance to it; at or below chance: none (selectivity_summary's rule)
    ranges, censored = _spans(transform, values, aucs, np.where(lead > 0.5, 0.5 + keep * (lead - 0.5), np.nan))
    return ranges, censored, lead, aucs


def _spans(transform: str, values: list[float], ys: np.ndarray,
           levels: np.ndarray) -> tuple[list[list[float] | None], int]:
    """(B,) curves ``ys`` (B, V)'s ranges around the identity where each stays >= its ``levels`` (NaN: none), and how
    many ran to the sweep's end: :func:`~downpour.analysis.invariance.invariance_summary`'s ``_span`` rule, walked
    for all B at once (:func:`~downpour.analysis.circle.walks`)."""
    at = identity_index({"transform": transform, "values": values})
    if at is None:
        return [None] * len(ys), 0
    round_ = covers_turn(transform, values)
    lo, hi = walks(ys, at, levels, round_)
    ranges, censored = [], 0
    for b in range(len(ys)):
        if not ys[b, at] >= levels[b]:      # (NaN: no level)
            ranges.append(None)
            continue
        r, ended = walked_range(values, int(lo[b]), int(hi[b]), round_)
        ranges.append(r)
        censored += ended
    return ranges, censored


def _of_ranges(transform: str, ranges: list[list[float] | None], censored: int) -> dict[str, Any]:
    """The percentile intervals of replicates' ``ranges`` (None: none, left out): ``low``, ``high``, ``width``."""
    kept = [r for r in ranges if r is not None]
    out = {"replicates": len(ranges), "without_range": len(ranges) - len(kept), "censored": censored}
    if not kept:
        return {**out, "low": None, "high": None, "width": None}
    ends = np.array(kept)                                                    # (B', 2)
    widths = np.array([range_width(transform, r) for r in kept])
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
    read = _reader(result, passes)
    weights = range_weights(len(read(("x", None))), replicates, seed)
    for name, values, per_image, reference in _response_curves(result, read):
        out[name] = curve_interval(name, values, per_image, reference, result["sign"] * result["baseline"], weights,
                                   floor)
    return out


def selectivity_intervals(result: dict[str, Any], passes: Passes, *, seed: int, replicates: int = RANGE_REPLICATES,
                          keep: float = 0.5) -> dict[str, dict[str, Any]]:
    """Per in-plane transform with an AUC curve (a sweep given the other class's images), the :func:`auc_interval` of
    its AUC range: the concept's images resampled as :func:`range_intervals` draws them (the same draws), the other
    class's within itself (its own stream of the seed), both read back from ``passes``, so the AUC ranges carry
    intervals as the AUCs beside them do."""
    read = _reader(result, passes)
    w_pos, w_neg = _both_weights(read, replicates, seed)
    return {name: auc_interval(name, values, pos, neg, w_pos, w_neg, keep)
            for name, values, pos, neg in _auc_curves(result, read)}


def tied_intervals(results: list[dict[str, Any]], passes: Passes, *, seed: int, replicates: int = RANGE_REPLICATES,
                   floor: float = 0.5, keep: float = 0.5) -> dict[str, dict[str, list[float] | None]]:
    """The 95% intervals of the tied units' mean widths (:func:`~downpour.analysis.invariance_widths.tied_summary`'s
    ``widths[name]["mean"]``, its ``selectivity`` one's under ``"selectivity"``) over the same resamples of the images:
    each replicate redraws the images once for every unit, reads each unit's range from them and averages the widths
    of the units with a range (none: the replicate is left out). None where no replicate has one. A std over the
    units, beside the tied units' mean, says nothing of the images."""
    read = _reader(results[0], passes)
    w_pos, w_neg = _both_weights(read, replicates, seed)
    response: dict[str, list[list[float]]] = {}
    auc: dict[str, list[list[float]]] = {}
    for result in results:
        unit = _reader(result, passes)
        if responsive(result):
            for name, values, per_image, reference in _response_curves(result, unit):
                got, _ = replicate_ranges(name, values, per_image, reference, result["sign"] * result["baseline"],
                                          w_pos, floor)
                response.setdefault(name, []).append([range_width(name, r) for r in got])
        if w_neg is not None:
            for name, values, pos, neg in _auc_curves(result, unit):
                got, _, _, _ = auc_replicate_ranges(name, values, pos, neg, w_pos, w_neg, keep)
                auc.setdefault(name, []).append([range_width(name, r) for r in got])
    return {"widths": _mean_intervals(response), "selectivity": _mean_intervals(auc)}


def _mean_intervals(widths: dict[str, list[list[float]]]) -> dict[str, list[float] | None]:
    """Per transform, the interval of each replicate's mean width over the units with a range (units x B widths,
    NaN for none)."""
    out: dict[str, list[float] | None] = {}
    for name, w in widths.items():
        w = np.array(w, dtype=float)                                         # (units, B)
        had = np.isfinite(w).any(axis=0)                                     # (B,): a replicate with any range
        out[name] = _interval(np.nanmean(w[:, had], axis=0)) if had.any() else None
    return out


def _reader(result: dict[str, Any], passes: Passes) -> Callable[[tuple], np.ndarray]:
    """(N,) the signed responses of ``result``'s unit to each image of a pass (a key of ``passes``)."""
    unit, sign = torch.tensor([result["unit"]]), torch.tensor([float(result["sign"])], dtype=torch.float64)
    return lambda key: passes.read(key, unit, sign)[:, 0].numpy()


def _both_weights(read: Callable[[tuple], np.ndarray], replicates: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(B, N) resamples of the concept's images (:func:`range_weights`) and (B, M) of the other class's (None where the
    sweep had none)."""
    w_pos = range_weights(len(read(("x", None))), replicates, seed)
    try:
        m = len(read(("negatives", None)))
    except KeyError:        # (a sweep without the other class: no AUC curves)
        return w_pos, None
    return w_pos, negative_weights(m, replicates, seed)


def _response_curves(result: dict[str, Any], read: Callable[[tuple], np.ndarray]) -> Iterator[tuple]:
    """(transform, values, (V, N) per-image responses, (N,) the untransformed ones) of each in-plane curve: the
    rotation's relative to the unturned images in the disc where the sweep used it (as the sweep falls back)."""
    originals = read(("x", None))
    for c in result["curves"]:
        name = c["transform"]
        if name == "out_of_plane_rotation":
            continue
        per_image = np.stack([read(("x", name, v)) for v in c["values"]])     # (V, N)
        reference = originals
        if name == "rotation" and result.get("rotation_aperture") == "disc":
            disc = read(("x", "rotation", 0.0))
            reference = disc if disc.mean() - result["sign"] * result["baseline"] > 1e-12 else originals
        yield name, c["values"], per_image, reference


def _auc_curves(result: dict[str, Any], read: Callable[[tuple], np.ndarray]) -> Iterator[tuple]:
    """(transform, values, (V, N) concept images' responses, (V, M) the other class's warped alike) of each curve with
    an AUC (:func:`~downpour.analysis.invariance.sweep` given ``negatives``)."""
    for c in result["curves"]:
        if SELECTIVE_KEY in c:
            name, values = c["transform"], c["values"]
            yield (name, values, np.stack([read(("x", name, v)) for v in values]),
                   np.stack([read(("negatives", name, v)) for v in values]))
