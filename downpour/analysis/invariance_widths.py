"""How wide a unit's invariance ranges are (:func:`range_width`), and how wide over the units tied at the top of the
choice (:func:`tied_summary`): the ranges themselves are :mod:`~downpour.analysis.invariance`'s summaries.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from downpour.analysis.invariance import RELATIVE, SELECTIVE_KEY, invariance_summary, selectivity_summary


def range_width(transform: str, r: list[float] | None) -> float:
    """The width of one of :func:`~downpour.analysis.invariance.invariance_summary`'s ranges: scale in octaves
    (log2 hi / lo), every other transform in its own units (pixels, degrees); NaN where there is no range (the unit
    below the floor even untransformed)."""
    if r is None:
        return math.nan
    return math.log2(r[1] / r[0]) if transform == "scale" else float(r[1] - r[0])


def width_units(transform: str) -> str:
    """What :func:`range_width` of ``transform`` is in: octaves, degrees or pixels."""
    return "octaves" if transform == "scale" else "degrees" if "rotation" in transform else "pixels"


def responsive(result: dict[str, Any]) -> bool:
    """Whether a :func:`~downpour.analysis.invariance.sweep` result's unit is stronger on the untransformed images
    than its baseline (its curves ``normalised_to`` :data:`~downpour.analysis.invariance.RELATIVE`): one that is not
    has no response for a transform to keep, so no range."""
    return result.get("normalised_to", RELATIVE) == RELATIVE


def tied_summary(results: list[dict[str, Any]], floor: float = 0.5) -> dict[str, Any]:
    """The invariance ranges of every unit tied at the top of the choice
    (:func:`~downpour.analysis.invariance.sweep`'s results, the chosen unit first): each unit's ranges, and per
    transform the widths' (:func:`range_width`) mean, median, std, min and max over the ``measured`` units that have
    a range, ``without_range``, the others (of ``size``), and ``censored``: how many of
    the measured ran to the sweep's end (the mean is then a lower bound). One chosen unit's ranges depend on which of
    several equally good units the tie-break takes; the tied set's figures do not.

    A unit without a range is one no stronger on the untransformed images than on the other class, its baseline
    (``unresponsive``: those not :func:`responsive`). It has no response for a transform to keep: a width of 0 (a unit
    that loses its answer at the first step) would misdescribe it, and leaving it out unsaid would let the mean of the
    responsive ones speak for the tie. The widths
    are over the units with a range, the count without one beside them (the report says it) and the median with the
    mean."""
    summaries = [invariance_summary(r, floor) for r in results]
    unresponsive = [r["unit"] for r in results if not responsive(r)]
    out = {"size": len(results), "units": [r["unit"] for r in results], "signs": [r["sign"] for r in results],
           "floor": floor, "unresponsive": unresponsive, **_tied_widths(summaries)}
    if any(SELECTIVE_KEY in c for c in results[0]["curves"]):   # the AUC ranges too: none, at chance
        out["selectivity"] = _tied_widths([selectivity_summary(r) for r in results])
    return out


def _tied_widths(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`tied_summary`'s ``ranges`` and ``widths`` of several units' summaries."""
    ranges = [s["ranges"] for s in summaries]
    widths = {}
    for name in ranges[0]:
        w = [range_width(name, r[name]) for r in ranges]
        widths[name] = {**_stats(w), "censored": sum(bool(s["censored"][name]) for s in summaries),
                        "units": width_units(name)}
    if "scale" in ranges[0]:     # the upper end alone (:func:`~downpour.analysis.invariance.upper_scale`)
        ups = [s["scale_up"] for s in summaries]
        widths["scale_up"] = {**_stats([math.nan if u["octaves"] is None else u["octaves"] for u in ups]),
                              "censored": sum(bool(u["censored"]) for u in ups), "units": "octaves above 1x"}
    return {"ranges": {name: [r[name] for r in ranges] for name in ranges[0]}, "widths": widths}


def _stats(values: list[float]) -> dict[str, Any]:
    """Mean, median, std, min and max of the finite ``values`` (None where none is), ``measured`` (their count) and
    ``without_range`` (the others')."""
    w = np.array(values, dtype=float)
    got = w[np.isfinite(w)]
    stat = {k: (float(f(got)) if got.size else None) for k, f in
            (("mean", np.mean), ("median", np.median), ("std", np.std), ("min", np.min), ("max", np.max))}
    return {**stat, "measured": int(got.size), "without_range": int(len(w) - got.size)}
