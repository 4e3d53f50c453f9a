"""A training step's FLOPs as torch counts them, for the models the plan does not count on paper.

``footprint_table`` measures a model's inference path (``forward``) layer by layer; a training step runs
``forward_train`` and its objective instead: an autoencoder's decoder, a TICA cost's pooling product, an
RBM's Gibbs chain, a GRU autoencoder's decoding pass. Planned from the inference path, tica-8x8's step read
16.4 kFLOP per example where torch counts 57.3 k (ufldl-sae 6.4 k against 16.0 k, rnn-rows 676 k against
1.55 M), so the plan now counts the step itself, on the built model. (The cat network is counted on paper,
:mod:`downpour.plan.network`: at the paper's size it cannot be built.)

Torch's counter counts matrix products and convolutions (a multiply-add is 2 FLOPs), not element-wise work.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from downpour.batch import Batch
from downpour.config import RunConfig
from downpour.models.base import FeatureModel
from downpour.models.registry import build
from downpour.objectives import Objective
from downpour.train.step import train_step

__all__ = ["step_flops"]


def _count(model: FeatureModel, objective: Objective, input_shape: tuple[int, ...], batch: int) -> float:
    """torch's FLOPs of one training step on ``batch`` examples (all of them, not per example)."""
    generator = torch.Generator().manual_seed(0)
    data = Batch(torch.rand((batch, *input_shape), generator=generator), torch.zeros(batch, dtype=torch.long))
    with FlopCounterMode(display=False) as counter:
        train_step(model, objective, data)
    return float(counter.get_total_flops())


def step_flops(cfg: RunConfig, input_shape: tuple[int, ...]) -> tuple[float, ...]:
    """Per-example FLOPs of one training step of ``cfg``'s model and objective on ``input_shape`` at its
    ``train.batch_size``: one value for a joint schedule, one per stage for ``train.schedule = "greedy"`` (stage i's
    steps: the stages below it forward only, the ones above it not run). Data uniform in [0, 1] (a Bernoulli RBM's
    range); labels 0.

    A step's count is a part per example and a part per step (a PCD RBM's persistent chains: rbm-digits' 32 chains
    cost 1.64 MFLOP a step, whatever the batch), so it is counted on 1, 2 and 3 examples and read at the batch:
    fixed / B + per example, exact where the three counts lie on a line (any other step is counted at B itself).
    Until 2026-12-04 it was counted on 2 examples: rbm-digits read 896 kFLOP per example where its steps of 64 take
    102.4 k, and the plan's step 8.7x too long (compute 210.8 µs for 24.1)."""
    model, objective = build(cfg, input_shape)
    batch = cfg.train.batch_size
    greedy = cfg.train.schedule == "greedy" and model.n_stages > 1
    out = []
    for stage in range(1, model.n_stages + 1) if greedy else (None,):
        model.set_stage(stage)
        one, two, three = (_count(model, objective, input_shape, b) for b in (1, 2, 3))
        fixed, each = 2 * one - two, two - one
        if three != fixed + 3 * each:      # (a cost that pairs the batch's examples: no line to read)
            out.append(_count(model, objective, input_shape, batch) / batch)
        else:
            out.append(fixed / batch + each)
    return tuple(out)
