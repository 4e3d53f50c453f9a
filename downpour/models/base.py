"""What every registered model is: a config dataclass, an ``nn.Module`` that maps inputs to codes,
and a ``forward_train`` that hands the cost terms the tensors they read.

The cost terms live in :mod:`downpour.objectives`; a model never computes its own loss, it only
says what it produced (``Outputs``), so every model is trained and logged the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import Tensor, nn


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


class FeatureModel(nn.Module):
    """Base class of every registered model.

    Subclasses set ``config_class`` (a dataclass), take ``(config, input_shape)`` in ``__init__``
    and implement ``forward`` (inputs -> top codes) and ``forward_train`` (batch -> Outputs per part).
    """

    config_class: ClassVar[type]
    supervised: ClassVar[bool] = False

    def forward(self, x: Tensor) -> Tensor:  # (B, ...) -> (B, ...) codes
        raise NotImplementedError

    def forward_train(self, batch: Batch) -> dict[str, Outputs]:
        raise NotImplementedError

    def feature_layers(self) -> list[str]:
        """Names accepted by :meth:`features`, bottom to top."""
        return ["codes"]

    def features(self, x: Tensor, layer: str | None = None) -> Tensor:
        """Codes of one named layer, (B, ...); the top layer when ``layer`` is None."""
        if layer not in (None, "codes"):
            raise KeyError(f"unknown layer {layer!r}; this model has {self.feature_layers()}")
        return self(x)

    def first_layer_filters(self) -> Tensor | None:
        """First-layer filters as images, (n_filters, C, kh, kw), for filter pictures; None if none."""
        return None

    def set_stage(self, stage: int | None) -> None:
        """Greedy training: train only ``stage`` (1-based); None trains every stage. One-stage models ignore it."""
