"""The staleness study's controls, matched to an asynchronous run without its delay:

- **gradient noise**: the stale gradient g(w_{t−s}) differs from the fresh one g(w_t) on the same
  batch; :func:`stale_error` replays SGD along an asynchronous run's own staleness sequence (plain
  torch, the same model, data and batches) and measures that difference: its RMS per parameter,
  and its size relative to the fresh gradient's, ρ = √(Σ‖g_stale − g_fresh‖² / Σ‖g_fresh‖²). The
  control adds noise of RMS ρ × each fresh gradient's RMS (``cluster.grad_noise = ρ``,
  ``grad_noise_relative = true``): like the stale error, it fades as the gradients do (an absolute
  σ would leave a noise floor that no run can converge under);
- **momentum**: asynchrony with M workers behaves in expectation like heavy-ball momentum
  μ = 1 − 1/M at learning rate η/M (Mitliagkas et al. 2016, "Asynchrony begets momentum");
  :func:`implicit_momentum` gives (μ, η/M) with M = 1 + the run's measured mean staleness.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Sequence

import torch

from downpour.config import RunConfig
from downpour.data import build_dataset
from downpour.models.registry import build
from downpour.ps.seeds import batch_seed
from downpour.train.flat import ParamLayout


def stale_error(cfg: RunConfig, staleness: Sequence[float]) -> tuple[float, float]:
    """(RMS per parameter of g(w_{t−s_t}) − g(w_t), that error's size relative to g(w_t)) along SGD
    (lr ``cfg.server_lr()``) driven by stale gradients with staleness s_t = ``staleness[t]`` (rounded), for
    resolved ``cfg``; (NaN, NaN) if the replay diverges."""
    torch.manual_seed(cfg.seed)
    data = build_dataset(cfg.data, cfg.seed)
    model, objective = build(cfg, data.input_shape)
    layout = ParamLayout(model)
    batches = data.batches(cfg.train.batch_size, torch.Generator().manual_seed(batch_seed(cfg.seed, 0, 0)))
    history: deque[torch.Tensor] = deque([layout.params_to_vector(model).clone()],
                                         maxlen=int(max(staleness, default=0)) + 1)

    def grad_at(vec: torch.Tensor, batch) -> torch.Tensor:
        layout.vector_to_params(vec, model)
        model.zero_grad(set_to_none=True)
        total, _ = objective(model.forward_train(batch))
        total.backward()
        return layout.grads_to_vector(model)

    sq, sq_fresh, n = 0.0, 0.0, 0
    for s in staleness:
        batch = next(batches)
        fresh = history[-1]
        stale = history[max(0, len(history) - 1 - int(round(s)))]
        g = grad_at(stale, batch)
        g_fresh = grad_at(fresh, batch)
        sq += float((g - g_fresh).pow(2).sum())
        sq_fresh += float(g_fresh.pow(2).sum())
        n += g.numel()
        step = fresh - cfg.server_lr() * g
        if not bool(torch.isfinite(step).all()):
            return float("nan"), float("nan")
        history.append(step)
    return math.sqrt(sq / max(n, 1)), math.sqrt(sq / sq_fresh) if sq_fresh > 0 else 0.0


def implicit_momentum(mean_staleness: float, lr: float) -> tuple[float, float]:
    """(μ, learning rate) of the momentum that asynchrony with mean staleness s implies: M = 1 + s
    workers in Mitliagkas et al.'s queueing model, μ = 1 − 1/M, η/M."""
    m = 1.0 + mean_staleness
    return 1.0 - 1.0 / m, lr / m
