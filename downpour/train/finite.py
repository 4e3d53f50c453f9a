"""Whether a gradient can be applied and leave the parameters and the optimiser's state finite: the local
step tests each parameter's gradient with it, a shard its slice of a push (several parameters, summed
over ``n_push`` steps), so a gradient the local step refuses, the shards refuse too."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def applicable(grad: Tensor, dtype: torch.dtype) -> bool:
    """Whether the rules can apply ``grad`` to parameters of ``dtype`` and stay finite: no NaN or Inf, and a
    squared norm within the dtype (Adagrad and Adam add g² element by element, and momentum's buffer adds g:
    a finite push of 1e20 made Adagrad's sum inf, freezing its element for the rest of the run; the norm is
    the stricter, whole-tensor bound, by up to sqrt(numel), met only by gradients no run survives anyway).
    ``torch.linalg.vector_norm``: one strided pass, 41 µs on 422,400 values contiguous or not (a ``dot`` of
    the flattened tensor copied a non-contiguous gradient first: 618 µs)."""
    return float(torch.linalg.vector_norm(grad)) <= math.sqrt(torch.finfo(dtype).max)   # (NaN compares False)
