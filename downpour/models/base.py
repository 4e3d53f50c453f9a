"""What every registered model is: a config dataclass, an ``nn.Module`` that maps inputs to codes,
and a ``forward_train`` that hands the cost terms the tensors they read.

The cost terms live in :mod:`downpour.objectives`; a model never computes its own loss, it only
says what it produced (:class:`~downpour.batch.Outputs`), so every model is trained and logged the
same way.
"""
from __future__ import annotations

from typing import ClassVar, Sequence

from torch import Tensor, nn

from downpour.batch import Batch, Outputs


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

    def tensor_layouts(self) -> dict[str, str]:
        """State-dict name -> what the tensor's axes mean and how the model uses it, in words, written into
        model.safetensors' metadata (``layout.<name>``) for a reader without downpour; {} where a family says none."""
        return {}

    def feature_layers(self) -> list[str]:
        """Names accepted by :meth:`features`, bottom to top."""
        return ["codes"]

    def analysis_layer(self) -> str:
        """The layer an analysis reads when ``analysis.layer`` is empty: the top of :meth:`feature_layers`,
        unless the model declares a better one (the CNN: its ``fc`` codes, not the class scores read out of them)."""
        return self.feature_layers()[-1]

    def features(self, x: Tensor, layer: str | None = None) -> Tensor:
        """Codes of one named layer, (B, ...); the top layer when ``layer`` is None."""
        if layer not in (None, "codes"):
            raise KeyError(f"unknown layer {layer!r}; this model has {self.feature_layers()}")
        return self(x)

    def features_at(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Codes of several named layers of one input, ``{layer: (B, ...)}``: :meth:`features` of each, the same
        numbers. A stacked model overrides it to run its stages once for all of them."""
        return {layer: self.features(x, layer) for layer in layers}

    # what first_layer_filters() are, said in the report beside their picture, where "first-layer filters" alone
    # misleads (an RNN's are its input weights, one image row each); None: a layer's filters, as the words say
    filters_what: str | None = None

    def first_layer_filters(self) -> Tensor | None:
        """First-layer filters as images, (n_filters, C, kh, kw), for filter pictures; None if none."""
        return None

    @property
    def n_stages(self) -> int:
        """Stages a greedy schedule trains one after the other (stacked models' ``stages``; else 1)."""
        return len(getattr(self, "stages", ())) or 1

    def set_stage(self, stage: int | None) -> None:
        """Greedy training: train only ``stage`` (1-based); None trains every stage. One-stage models ignore it."""

    def param_stages(self) -> dict[str, int]:
        """The greedy stage (1-based) that trains each parameter, by ``named_parameters`` name; a parameter left
        out trains at every stage, which a greedy Momentum or Adam cluster run refuses for a trainable one (Adam
        would count a forgotten stage-2 tensor's steps through stage 1). One-stage models: none (the
        parameter server then never holds a tensor)."""
        return {}
