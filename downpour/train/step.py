"""The one training step every runner drives: a batch in, loss parts out, gradients left in ``.grad``.

The local loop follows it with an optimiser step; a parameter-server worker reads the gradients
as one flat vector (:class:`~downpour.train.flat.ParamLayout`) and pushes them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from downpour.batch import Batch
from downpour.models.base import FeatureModel
from downpour.objectives import Objective


@dataclass
class StepResult:
    loss: float              # the total cost on this batch
    parts: dict[str, float]  # every named, weighted cost part (they sum to ``loss``) and ``metric/`` diagnostics
    samples: int             # batch size


class NonFiniteLoss(FloatingPointError):
    """The cost came out NaN or Inf; nothing was applied."""


def train_step(model: FeatureModel, objective: Objective, batch: Batch) -> StepResult:
    """Forward, cost, backward. Gradients are left in each parameter's ``.grad``.

    Raises :class:`NonFiniteLoss` (with the parts) before backward when the cost is not finite, so
    a runner can skip the batch instead of poisoning the parameters.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    total, parts = objective(model.forward_train(batch))
    loss = total.item()
    values = {name: v.item() for name, v in parts.items()}
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"non-finite cost {loss}: parts {values}")
    total.backward()
    return StepResult(loss=loss, parts=values, samples=len(batch))
