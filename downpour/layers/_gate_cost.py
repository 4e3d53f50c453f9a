"""When the variance gate pays: a two-point cost model per layer shape, measured once and cached.

The gate's two ways to produce the same output (the layer's where a tile is open, 0 where it is
closed) cost, for n of N output tiles open:

    dense(n)  = t_dense                       the layer at every position, then the closed tiles zeroed
    gated(n) ~= t_none + (t_all - t_none) n/N  gather the open tiles' fields, their GEMMs, scatter into zeros

(the variance test runs in both and cancels). ``gated`` is close to linear in n: its gather,
arithmetic and scatter all scale with the open tiles, and what does not (the zero-filled output) is
t_none. So gating pays when the open fraction is below

    break_even = (MARGIN t_dense - t_none) / (t_all - t_none)          (clipped to [0, 1])

and the flat fraction above 1 - break_even. MARGIN = 0.9 asks the gated path to be predicted 10%
faster: near the break-even both paths cost the same, the times are measured on a shared machine,
and a wrong "dense" costs at most the test while a wrong "gated" can cost more. The three times are measured on the caller's own
input with forced tile masks (none open, all open), best of a few interleaved calls, the first time
a shape is seen; the model is cached per (layer kind, weight shape, input shape, tiles, device,
dtype, threads). A dense convolution near MKL-DNN's peak leaves little to skip (break-even at ~50%
flat on our 512x512 image), an untied layer far more (its cost is reading a bank per position).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Hashable

import torch

__all__ = ["CostModel", "cost_model", "clear_cache"]

_CACHE: dict[Hashable, "CostModel"] = {}
REPEATS = 5
MARGIN = 0.9


@dataclass(frozen=True)
class CostModel:
    """Measured seconds of one call: the dense path, and the gated path with no tile / every tile open."""

    t_dense: float
    t_none: float
    t_all: float

    @property
    def break_even(self) -> float:
        """Open-tile fraction below which the gated path is the faster one (1: always; 0: never)."""
        if self.t_all <= MARGIN * self.t_dense:
            return 1.0
        return min(1.0, max(0.0, (MARGIN * self.t_dense - self.t_none) / (self.t_all - self.t_none)))

    def gated_pays(self, open_fraction: float) -> bool:
        return open_fraction < self.break_even


def _best_of(fns: tuple[Callable[[], object], ...], sync: Callable[[], None], repeats: int) -> list[float]:
    """Best wall time of each fn over ``repeats`` interleaved calls (after one warm-up each)."""
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


def cost_model(key: Hashable, dense: Callable[[], object], gated_none: Callable[[], object],
               gated_all: Callable[[], object], device: torch.device, repeats: int = REPEATS) -> CostModel:
    """The cached model for ``key``, measured now (under no_grad) if this is the first call for it."""
    found = _CACHE.get(key)
    if found is not None:
        return found
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        t_dense, t_none, t_all = _best_of((dense, gated_none, gated_all), sync, repeats)
    model = _CACHE[key] = CostModel(t_dense, t_none, t_all)
    return model


def clear_cache() -> None:
    """Forget every measured model (tests; or after the machine's load changed a lot)."""
    _CACHE.clear()
