"""What a model is fed and what it hands the cost terms: the two types every layer above shares.

``Batch`` is what ``Dataset.batches`` yields and ``forward_train`` reads; ``Outputs`` is what
``forward_train`` returns and :mod:`downpour.objectives` reads. They live on the ground floor so
that data/ and objectives.py need not import models/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor


@dataclass
class Batch:
    """One mini-batch. ``x``: (B, C, H, W) images/patches or (B, T, F) sequences; ``y``: (B,) labels."""

    x: Tensor
    y: Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.x.to(device), None if self.y is None else self.y.to(device))


@dataclass
class Outputs:
    """What one trainable part of a model produced on a batch; the cost terms read these fields.

    A stacked model returns one ``Outputs`` per stage (``{"stage1": ..., "stage2": ...}``) and every
    cost term is applied to each, giving parts named ``stage1/reconstruction`` and so on.
    """

    x: Tensor                                  # the input this part reconstructs, (B, ...)
    codes: Tensor                              # the hidden code, (B, ...)
    recon: Tensor | None = None                # reconstruction of ``x``, same shape as ``x``
    recon_weight: Tensor | None = None         # per-value weight of reconstruction errors, broadcast to ``x`` (None = 1)
    pooled: Tensor | None = None               # pooled code energies sqrt(pool(codes²)), for TICA
    logits: Tensor | None = None               # (B, n_classes), supervised models only
    y: Tensor | None = None                    # (B,) labels, supervised models only
    weights: tuple[Tensor, ...] = ()           # tensors penalised by weight decay
    encode: Callable[[Tensor], Tensor] | None = None   # x -> codes, for contractive penalties
    decode: Callable[[Tensor], Tensor] | None = None   # codes -> recon, for denoising
    extra: dict[str, Tensor] = field(default_factory=dict)  # model-specific terms (e.g. RBM free energy)
    costs: tuple[str, ...] | None = None       # the cost terms this part takes (None: every term of the objective)
