"""A Sandblaster worker: a model replica that computes one work unit's cost and gradient.

A unit is a slice of the batch's examples; the worker runs the shared training step
(:func:`~downpour.train.step.train_step`) on it, at the point the shards sent, and returns the
unit's cost, parts and gradient (cut into the shards' slices) weighted by its share of the batch,
k / B. The shares add up across units: the batch's cost is the example-weighted mean of the units'
costs, which for every cost term that is a mean over examples (reconstruction, L1, pooled L2,
cross-entropy) or does not depend on them (weight decay) is exactly the full batch's cost. A term
computed from batch statistics (``kl_sparsity``'s mean activation) is evaluated per unit instead.

Plain torch: the simulator keeps one per simulated worker, the Ray runner one per worker actor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from downpour.batch import Batch
from downpour.config import RunConfig
from downpour.models.registry import build
from downpour.train.flat import ParamLayout, load_frozen
from downpour.train.step import NonFiniteLoss, train_step

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class UnitResult:
    """One unit's contribution: cost, parts and gradient slices (n_j,), each weighted by ``examples`` / B.
    A non-finite cost comes back as ``loss = inf`` with no gradient (the line search then steps back)."""

    evaluation: int
    unit: int
    worker: int
    examples: int
    loss: float
    parts: dict[str, float] = field(default_factory=dict)
    grads: list[Tensor] = field(default_factory=list)

    def meta(self) -> dict[str, object]:
        """Everything but the gradient: what the Ray driver reads before handing the slices on."""
        return {"evaluation": self.evaluation, "unit": self.unit, "worker": self.worker, "examples": self.examples,
                "loss": self.loss, "parts": self.parts}


class UnitWorker:
    """Worker ``wid``: a replica of ``cfg``'s model in ``cfg.sandblaster.precision`` over the dataset
    ``x`` (N, C, H, W) / ``y`` (N,) or None, whose gradient it cuts at the shards' ``bounds``."""

    def __init__(self, cfg: RunConfig, wid: int, x: Tensor, y: Tensor | None, bounds: list[tuple[int, int]],
                 frozen: dict[str, Tensor]):
        self.wid, self.bounds = wid, bounds
        self.dtype = DTYPES[cfg.sandblaster.precision]
        self.x, self.y = x, y
        self.model, self.objective = build(cfg, tuple(x.shape[1:]))
        load_frozen(self.model, frozen)          # the driver's (a random first layer drawn here would differ)
        self.model.to(self.dtype)
        self.layout = ParamLayout(self.model)
        self._loaded: int | None = None   # the evaluation whose point the replica holds

    def load(self, evaluation: int, point: list[Tensor]) -> None:
        """Set the replica to ``point`` (the shards' slices) unless it already holds that evaluation's."""
        if self._loaded != evaluation:
            self.layout.vector_to_params(torch.cat(point), self.model)
            self._loaded = evaluation

    def compute(self, evaluation: int, unit: int, rows: Tensor, total: int, point: list[Tensor],
                stage: int | None) -> UnitResult:
        """The unit of examples ``rows`` (k,) of a batch of ``total`` at ``point``, training ``stage``
        (None: every stage); cost, parts and gradient weighted by k / total."""
        self.load(evaluation, point)
        self.model.set_stage(stage)
        batch = Batch(self.x[rows].to(self.dtype), None if self.y is None else self.y[rows])
        n = len(rows)
        try:
            step = train_step(self.model, self.objective, batch)
        except NonFiniteLoss:
            return UnitResult(evaluation, unit, self.wid, n, math.inf)
        weight = n / total
        grad = self.layout.grads_to_vector(self.model).mul_(weight)     # (numel,): this unit's share of the batch mean
        parts = {k: v * weight for k, v in step.parts.items()}
        return UnitResult(evaluation, unit, self.wid, n, step.loss * weight, parts, [grad[a:b].clone() for a, b in self.bounds])
