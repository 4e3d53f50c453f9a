"""The forward passes of an invariance sweep, each made once for every sweep of the same images.

    passes = Passes([7, 3])                               # the units any sweep sharing it will read
    sweep(model, faces, [7], [1], [b7], passes=passes, ...)          # 96 forward passes
    sweep(model, faces, [7, 3], [1, -1], [b7, b3], passes=passes, ...)   # none: every warp's codes are read back

``analyze_run`` sweeps the pictured unit (``invariance``) and then the units tied with it (``invariance.tied``), it
among them, over the same images, warps and preparation; the second sweep reads the first's 99 passes back instead of
running them again (of the main job's 17 s analysis, 1.1 s, a 6th of it the negatives' unwarped pass each curve
would repeat).
A pass's codes are kept for the shared units only, so what a sweep reads from here is what it computed itself, bit
for bit (the same column of the same forward pass); ``reuse=False`` makes every read a new pass (the
bench's and the tests' slow path).
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import torch
from torch import Tensor

from downpour.models.base import FeatureModel


class Passes:
    """The codes of ``units`` (flat indices into one image's codes at a layer) from each forward pass of a sweep,
    by key (which images, which transform, which value), for the sweeps bound to the same inputs."""

    def __init__(self, units: Sequence[int], *, reuse: bool = True):
        self.units = list(dict.fromkeys(int(u) for u in units))
        self.columns = torch.as_tensor(self.units, dtype=torch.long)
        self.reuse, self.made, self._codes = reuse, 0, {}
        self._inputs: tuple[tuple[Any, ...], tuple[str, str]] | None = None

    def bind(self, model: FeatureModel, layer: str, x: Tensor, negatives: Tensor | None,
             prepare: Callable[[Tensor], Tensor] | None, fill: str, units: Sequence[int]) -> None:
        """Checks a sweep reads what these passes were made of: the same model, layer, images (the same tensors),
        preparation (the same function) and fill, and units among :attr:`units`; a ValueError otherwise."""
        objects, names = (model, x, negatives, prepare), (layer, fill)     # the same objects; equal names
        if self._inputs is None:
            self._inputs = objects, names
        elif any(a is not b for a, b in zip(objects, self._inputs[0])) or names != self._inputs[1]:
            raise ValueError("Passes: a sweep of other inputs (model, layer, images, prepare or fill) than the passes "
                             "were made of; give each its own Passes")
        missing = [u for u in units if int(u) not in self.units]
        if missing:
            raise ValueError(f"Passes: unit {missing[0]} is not among the passes' units {self.units}")

    def signed(self, key: Hashable, model: FeatureModel, images: Callable[[], Tensor], layer: str, units: Tensor,
               signs: Tensor) -> Tensor:
        """(N, T) float64: each of ``units`` (T,) times its sign (T,), from the pass ``key`` of ``images()`` (N, C, H,
        W): made now unless made before (and ``reuse``)."""
        codes = self._codes.get(key) if self.reuse else None
        if codes is None:
            flat = model.features(images(), layer)
            codes = flat.reshape(flat.shape[0], -1)[:, self.columns]
            self.made += 1
            if self.reuse:
                self._codes[key] = codes
        return self._signed(codes, units, signs)

    def read(self, key: Hashable, units: Tensor, signs: Tensor) -> Tensor:
        """(N, T) float64 as :meth:`signed` gives them, from the pass ``key`` made before (no model is run); a KeyError
        naming the key if none was kept (``reuse=False``, or no sweep made it). The per-image responses behind a
        sweep's mean curves, for their bootstrap (:mod:`~downpour.analysis.invariance_ci`)."""
        if key not in self._codes:
            raise KeyError(f"Passes: no pass {key!r} was kept (reuse={self.reuse}); sweep first, with reuse")
        return self._signed(self._codes[key], units, signs)

    def _signed(self, codes: Tensor, units: Tensor, signs: Tensor) -> Tensor:
        at = torch.as_tensor([self.units.index(int(u)) for u in units], dtype=torch.long)
        return codes[:, at].double() * signs
