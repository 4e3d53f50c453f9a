"""Which of the variance gate's paths is fastest: a cost model per layer shape, measured once and cached.

The gate's three ways to produce the same output (the layer's values where a tile is open, 0 where
it is closed) cost, for a batch whose tile mask has a fraction ``open`` of tiles open and, by rows
of tiles (:class:`~downpour.layers._gate_bands.RowPlan`), fractions ``mixed`` / ``closed`` of the
output rows in partly open / closed tile-rows and ``band`` in the n bands the layer runs on:

    dense  = t_dense + mixed (t_mixed - t_dense) + closed t_zero   the layer everywhere; the mask
                                                                    multiply on mixed rows, a memset on closed ones
    gated ~= t_none + open (t_all - t_none)                         gather the open tiles' fields,
                                                                    their GEMMs, scatter into zeros
    bands ~= t_zero + band (t_band - t_zero) + (n - 1) t_call       the layer on the bands' input rows
                                                                    only (shared weights only)

(the variance test runs in every path and cancels between them; ``t_test`` is measured too, for
mode 'auto', which may skip it and run the plain layer, t_dense: :mod:`~downpour.layers._gate_auto`).
Each line is close to linear in its fraction:
the work scales with it, and what does not is the intercept. The times are measured on the caller's
own input with forced masks (every tile open; one tile closed in every tile-row; none open; every
other tile-row closed, for t_call), best of a few interleaved calls, the first time a shape is seen,
and cached per (layer kind, weight shape, input shape, tiles, device, dtype, threads).

A path other than dense runs only when predicted MARGIN = 0.9 times the dense path's time: near a
break-even both cost the same, the times are measured on a shared machine, and a wrong "dense"
costs at most the zeroing while a wrong "gated" can cost more. Counting the bands, not only the
open tiles, is what lets a face in a flat canvas skip the canvas around it: its tiles are 26% open,
but a gather of single tiles runs far below the dense convolution's speed (MKL-DNN near peak),
while the band runs the same convolution on the face's box, 32% of the positions.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Hashable

import torch
from torch import Tensor

from downpour.layers._gate_bands import RowPlan

__all__ = ["CostModel", "cost_model", "forced_masks", "clear_cache"]

_CACHE: dict[Hashable, "CostModel"] = {}
REPEATS = 5
WARMUPS = 2
MARGIN = 0.9


@dataclass(frozen=True)
class CostModel:
    """Measured seconds of one call of each path under the forced masks (see the module docstring).
    ``t_mixed`` None: dense costs ``t_dense`` whatever the mask; ``t_band`` None: no band path."""

    t_dense: float
    t_none: float
    t_all: float
    t_mixed: float | None = None
    t_zero: float | None = None
    t_band: float | None = None
    t_call: float = 0.0
    t_test: float = 0.0     # the full variance test alone: what mode 'auto' saves when it runs the plain layer untested

    def dense(self, plan: RowPlan | None) -> float:
        if self.t_mixed is None or plan is None:
            return self.t_dense
        return self.t_dense + plan.fraction("mixed") * (self.t_mixed - self.t_dense) + plan.fraction("closed") * (self.t_zero or 0.0)

    def gated(self, open_fraction: float) -> float:
        return self.t_none + open_fraction * (self.t_all - self.t_none)

    def bands(self, plan: RowPlan) -> float | None:
        if self.t_band is None or self.t_zero is None:
            return None
        return self.t_zero + plan.band_fraction * (self.t_band - self.t_zero) + max(0, len(plan.bands) - 1) * self.t_call

    def merge_rows(self, rows: int) -> int:
        """Output rows of a gap between two bands that cost less to compute (at full width) than a second band."""
        if self.t_band is None or self.t_zero is None or self.t_band <= self.t_zero:
            return 0
        return int(self.t_call / ((self.t_band - self.t_zero) / max(1, rows)))

    @property
    def break_even(self) -> float:
        """Open-tile fraction below which the gated path beats the dense path zeroing every row (1: always; 0: never)."""
        ref = self.t_dense if self.t_mixed is None else self.t_mixed
        if self.t_all <= MARGIN * ref:
            return 1.0
        return min(1.0, max(0.0, (MARGIN * ref - self.t_none) / (self.t_all - self.t_none)))

    def choose(self, open_fraction: float, plan: RowPlan | None) -> str:
        """'dense', 'gated' or 'bands': the fastest predicted path; not dense unless MARGIN times faster."""
        dense = self.dense(plan)
        costs = {"gated": self.gated(open_fraction)}
        band = None if plan is None else self.bands(plan)
        if band is not None:
            costs["bands"] = band
        path = min(costs, key=costs.get)
        return path if costs[path] < MARGIN * dense else "dense"


def _best_of(fns: tuple[Callable[[], object], ...], sync: Callable[[], None], repeats: int) -> list[float]:
    """Best wall time of each fn over ``repeats`` interleaved calls, after two warm-up rounds: the
    first calls of a new shape grow the heap (page faults: 3-4x the call's time on our VM), and a
    call that needs more memory than the one before it faults again while the heap settles."""
    for _ in range(WARMUPS):
        for fn in fns:
            fn()
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def cost_model(key: Hashable, probes: Callable[[], tuple[dict[str, Callable[[], object]], tuple[float, int] | None]],
               device: torch.device, repeats: int = REPEATS) -> CostModel:
    """The cached model for ``key``, measured now (under no_grad) if this is the first call for it.

    ``probes()`` (called only then) gives a call of each path under its forced mask, by the
    :class:`CostModel` field it measures (``t_dense``, ``t_none``, ``t_all`` and optionally ``t_mixed``,
    ``t_zero``, ``t_band``, ``t_alt``, ``t_test``), and the (band fraction, bands) of ``t_alt``'s mask, which
    gives ``t_call``."""
    found = _CACHE.get(key)
    if found is not None:
        return found
    fns, alt = probes()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        times = dict(zip(fns, _best_of(tuple(fns.values()), sync, repeats)))
    t_alt = times.pop("t_alt", None)
    model = CostModel(**times)
    if t_alt is not None and alt is not None and alt[1] > 1 and model.t_band is not None:
        predicted = model.t_zero + alt[0] * (model.t_band - model.t_zero)
        model = CostModel(**times, t_call=max(0.0, (t_alt - predicted) / (alt[1] - 1)))
    _CACHE[key] = model
    return model


def forced_masks(tiles: Tensor) -> dict[str, Tensor]:
    """The masks the paths are timed under, shaped like ``tiles`` (B, nbh, nbw): every tile open
    (``all``), none (``none``), one tile closed in every tile-row (``mixed``: the multiply over every
    row) and, of those, every other tile-row closed (``alt``: a band per open tile-row, for t_call)."""
    masks = {"all": torch.ones_like(tiles), "none": torch.zeros_like(tiles)}
    masks["mixed"] = masks["all"].clone()
    masks["mixed"][:, :, 0] = False
    masks["alt"] = masks["mixed"].clone()
    masks["alt"][:, 1::2] = False
    return masks


def clear_cache() -> None:
    """Forget every measured model (tests; or after the machine's load changed a lot)."""
    _CACHE.clear()
