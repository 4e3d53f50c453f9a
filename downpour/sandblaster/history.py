"""One Sandblaster parameter shard: a slice of the parameters and of the L-BFGS history, and the
vector operations on them.

Dean et al. (2012) keep the optimiser's vectors where the parameters live: each shard holds its
slice ``[start, stop)`` of the parameters ``w``, of the gradient ``g``, of the search direction
``d`` and of the last ``history`` pairs ``(s_i, y_i)``, and runs the vector half of L-BFGS on
them. The coordinator only ever sends scalars (a step size, a coefficient) and gets scalars back
(this slice's part of a dot product, summed over the shards by the coordinator).

Vectors are named so the coordinator can address them: ``"w"``, ``"g"``, ``"d"``, ``"q"`` (the
two-loop recursion's work vector), ``"acc"`` (the gradient being accumulated from work units),
and ``("s", i)`` / ``("y", i)``, the i-th stored pair, oldest first. :meth:`HistoryShard.run`
executes a short list of operations in one call (one round trip on Ray):

    ("dot", a, b)          -> appends a . b (this slice's share) to the answer
    ("axpy", alpha, x, y)  y <- y + alpha * x
    ("scale", x, c)        x <- c * x
    ("copy", src, dst, c)  dst <- c * src

Plain torch, no Ray: the simulator holds these objects directly, the Ray runner wraps each in an actor.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import torch
from torch import Tensor

Name = Union[str, tuple[str, int]]
Op = tuple[Any, ...]


class HistoryShard:
    """Slice ``[start, start + n)`` of the parameters, ``w`` (n,), and its share of L-BFGS's vectors.

    ``history``: pairs kept (L-BFGS's memory m). Work-unit gradients are added into ``acc`` by
    :meth:`accumulate`, which takes each ``(evaluation, unit)`` once: a second copy of a unit (a
    backup that lost the race) is refused and counted in ``duplicates``, so it can never be added twice.
    """

    def __init__(self, index: int, w: Tensor, history: int, start: int = 0):
        if w.dim() != 1:
            raise ValueError(f"shard {index}: parameters must be a flat (n,) vector, got shape {tuple(w.shape)}")
        self.index, self.start, self.history = index, start, history
        self.vec: dict[str, Tensor] = {"w": w.detach().clone()}
        for name in ("g", "d", "q", "acc"):
            self.vec[name] = torch.zeros_like(self.vec["w"])
        self.pairs: list[tuple[Tensor, Tensor]] = []           # (s_i, y_i), oldest first, at most ``history``
        self.evaluation = -1                                    # the evaluation ``acc`` belongs to
        self._units: set[int] = set()                           # its units added so far
        self.duplicates = 0                                     # unit results refused (already added)
        self._candidate: tuple[Tensor, Tensor] | None = None    # (s, y) of the step being accepted

    @property
    def stop(self) -> int:
        return self.start + self.vec["w"].numel()

    def _get(self, name: Name) -> Tensor:
        if isinstance(name, tuple):
            kind, i = name
            return self.pairs[i][0 if kind == "s" else 1]
        return self.vec[name]

    # -- the points the workers evaluate, and the gradient they send back ------------------------
    def point(self, t: float) -> Tensor:
        """``w + t d`` (n,): this slice of the point an evaluation's units are computed at (t = 0: ``w``)."""
        return torch.add(self.vec["w"], self.vec["d"], alpha=t)

    def begin(self, evaluation: int) -> None:
        """Start accumulating the gradient of ``evaluation``: ``acc`` <- 0."""
        self.evaluation = evaluation
        self._units = set()
        self.vec["acc"].zero_()

    def accumulate(self, evaluation: int, unit: int, grad: Tensor) -> bool:
        """Add unit ``unit``'s gradient slice (n,) into ``acc``; False (nothing added) for a unit already
        added or an evaluation that is over."""
        if evaluation != self.evaluation or unit in self._units:
            self.duplicates += 1
            return False
        self._units.add(unit)
        self.vec["acc"].add_(grad.to(self.vec["acc"].dtype))
        return True

    # -- the two-loop recursion's vector operations ------------------------------------------------
    def run(self, ops: Sequence[Op]) -> list[float]:
        """Execute ``ops`` in order (see the module docstring); the dot products' local shares, in order."""
        out: list[float] = []
        for op in ops:
            kind = op[0]
            if kind == "dot":
                out.append(float(torch.dot(self._get(op[1]), self._get(op[2]))))
            elif kind == "axpy":
                self._get(op[3]).add_(self._get(op[2]), alpha=op[1])
            elif kind == "scale":
                self._get(op[1]).mul_(op[2])
            elif kind == "copy":
                torch.mul(self._get(op[1]), op[3], out=self._get(op[2]))
            else:
                raise ValueError(f"shard {self.index}: unknown operation {kind!r}")
        return out

    # -- taking a step -----------------------------------------------------------------------------
    def stage_pair(self, t: float) -> list[float]:
        """The step about to be taken: s = t d, y = acc - g (the gradient at the new point minus the one
        at ``w``, both on this batch). Returns this slice's shares of [s . y, y . y] so the coordinator
        can decide whether the pair keeps the L-BFGS matrix positive definite."""
        s = self.vec["d"] * t
        y = self.vec["acc"] - self.vec["g"]
        self._candidate = (s, y)
        return [float(torch.dot(s, y)), float(torch.dot(y, y))]

    def accept(self, t: float, keep_pair: bool) -> None:
        """Move to ``w + t d`` (exactly the point the units were computed at), take ``acc`` as the new
        gradient, and keep the staged pair if ``keep_pair`` (dropping the oldest beyond ``history``)."""
        self.vec["w"] = self.point(t)
        self.vec["g"] = self.vec["acc"].clone()
        if keep_pair and self._candidate is not None:
            self.pairs.append(self._candidate)
            del self.pairs[:-self.history]
        self._candidate = None

    def take_gradient(self) -> None:
        """``g`` <- ``acc`` without moving: the gradient at ``w`` on a new batch."""
        self.vec["g"] = self.vec["acc"].clone()

    def reset(self) -> None:
        """Forget the history (a new greedy stage, or a step the line search could not take)."""
        self.pairs = []

    # -- state -------------------------------------------------------------------------------------
    def params(self) -> Tensor:
        return self.vec["w"]

    def vector(self, name: Name) -> Tensor:
        """A copy of vector ``name`` (e.g. ``"acc"``: the gradient accumulated so far)."""
        return self._get(name).clone()

    def state_dict(self) -> dict[str, Tensor]:
        """``w``, ``g`` and the pairs (s0, y0, s1, ...), for a checkpoint."""
        out = {"w": self.vec["w"], "g": self.vec["g"]}
        for i, (s, y) in enumerate(self.pairs):
            out[f"s{i}"], out[f"y{i}"] = s, y
        return out

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        n = self.vec["w"].numel()
        if tensors["w"].numel() != n:
            raise ValueError(f"shard {self.index}: checkpoint slice has {tensors['w'].numel()} values, this shard {n}")
        dtype = self.vec["w"].dtype
        self.vec["w"], self.vec["g"] = tensors["w"].to(dtype).clone(), tensors["g"].to(dtype).clone()
        k = sum(1 for key in tensors if key.startswith("s"))
        self.pairs = [(tensors[f"s{i}"].to(dtype).clone(), tensors[f"y{i}"].to(dtype).clone()) for i in range(k)]

    def stats(self) -> dict[str, Any]:
        return {"index": self.index, "start": self.start, "stop": self.stop, "pairs": len(self.pairs),
                "duplicates": self.duplicates}
