"""The one training step every runner drives: a batch in, loss parts out, gradients left in ``.grad``.

The local loop follows it with an optimiser step; a parameter-server worker reads the gradients
as one flat vector (:class:`~downpour.train.flat.ParamLayout`) and pushes them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from downpour.batch import Batch
from downpour.models.base import FeatureModel
from downpour.objectives import Objective
from downpour.train.finite import applicable


@dataclass
class StepResult:
    loss: float              # the total cost on this batch
    parts: dict[str, float]  # every named, weighted cost part (they sum to ``loss``) and ``metric/`` diagnostics
    samples: int             # batch size


class NonFiniteLoss(FloatingPointError):
    """The cost, or a gradient of a finite cost, came out NaN or Inf; nothing was applied."""


def train_step(model: FeatureModel, objective: Objective, batch: Batch) -> StepResult:
    """Forward, cost, backward. Gradients are left in each parameter's ``.grad``.

    Raises :class:`NonFiniteLoss` (with the parts) before backward when the cost is not finite, and
    after it when a gradient is not (a finite cost can have one: the square root of an exactly zero
    pooled energy with eps = 0), its gradients cleared, so a runner can skip the batch instead of
    poisoning the parameters. A model whose parameters live elsewhere checks theirs in its backward
    (a model-parallel replica's partition actors): it raises :class:`NonFiniteLoss` there.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    total, parts = objective(model.forward_train(batch))
    loss = total.item()
    values = {name: v.item() for name, v in parts.items()}
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"non-finite cost {loss}: parts {values}")
    try:
        total.backward()
    except NonFiniteLoss as err:   # found in the backward of parameters held elsewhere (ps.partitions_on_ray)
        model.zero_grad(set_to_none=True)
        raise NonFiniteLoss(f"finite cost {loss} but {err}: parts {values}") from None
    # NaN, Inf, or a square an optimiser's state cannot hold (Adagrad's and Adam's g²: the sum of the sums let
    # 1e20 through, and Adagrad's sums went inf, freezing the run): the shards' own test (bench/step_check.py)
    if not all(applicable(p.grad, p.dtype) for p in model.parameters() if p.grad is not None):
        grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        bad = [n for n, g in grads if not bool(torch.isfinite(g).all())]
        if bad:
            what = f"a non-finite gradient of {', '.join(bad)}"
        else:     # every element finite: said as what it is, not as a NaN of no parameter
            top, name = max((float(g.abs().max()), n) for n, g in grads)
            dtype = str(dict(model.named_parameters())[name].dtype).removeprefix("torch.")
            what = f"a gradient too large to apply (its squared norm overflows {dtype}; largest |g| {top:.3g}, in {name})"
        model.zero_grad(set_to_none=True)
        raise NonFiniteLoss(f"finite cost {loss} but {what}: parts {values}")
    return StepResult(loss=loss, parts=values, samples=len(batch))
