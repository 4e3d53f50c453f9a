"""A model's trainable parameters as one flat vector: what the parameter server shards and moves."""
from __future__ import annotations

import torch
from torch import Tensor, nn

# the flat vector in words (a checkpoint's metadata: :func:`slice_words`, the simulator's replicas' sim.w<w>.params)
FLAT_WORDS = ("the model's trainable parameters laid end to end, in the model's named_parameters order, each "
              "flattened row-major")


class ParamLayout:
    """Names, shapes and offsets of a model's trainable parameters (``requires_grad``), in
    ``named_parameters`` order. Frozen parameters (designed or random first layers) are left out."""

    def __init__(self, model: nn.Module):
        self.names: list[str] = []
        self.shapes: list[torch.Size] = []
        self.offsets: list[int] = []
        n = 0
        for name, p in model.named_parameters():
            if p.requires_grad:
                self.names.append(name)
                self.shapes.append(p.shape)
                self.offsets.append(n)
                n += p.numel()
        self.numel = n

    def describe(self, start: int = 0, end: int | None = None, words: dict[str, str] | None = None) -> str:
        """What elements [start, end) of the flat vector hold, in words, for a checkpoint's metadata: each
        parameter they cover, in order, with its place in the slice, its name and shape, and which of its
        row-major elements when the slice cuts it (a reader without downpour splits a shard with this);
        ``words``: name -> what a parameter is, said after its name (a partitioned model's blocks)."""
        end = self.numel if end is None else end
        parts = []
        for name, offset, shape in zip(self.names, self.offsets, self.shapes):
            n = shape.numel()
            a, b = max(start, offset), min(end, offset + n)
            if a < b:
                cut = "" if (a, b) == (offset, offset + n) else f" (its elements [{a - offset}, {b - offset}))"
                said = f" = {words[name]}" if words and name in words else ""
                parts.append(f"[{a - start}, {b - start}) {name} {list(shape)}{cut}{said}")
        return "; ".join(parts)

    def params(self, model: nn.Module) -> list[nn.Parameter]:
        """The model's trainable parameters in layout order. A caller that steps the same model many
        times (a worker) keeps this list and passes it to the ``*_list`` methods: looking the
        parameters up by name costs more than copying a small model's values."""
        named = dict(model.named_parameters())
        return [named[n] for n in self.names]

    def params_to_vector(self, model: nn.Module) -> Tensor:
        """(numel,) copy of the parameters."""
        return self.params_to_vector_list(self.params(model))

    def grads_to_vector(self, model: nn.Module) -> Tensor:
        """(numel,) copy of the gradients; a parameter without a gradient contributes zeros."""
        return self.grads_to_vector_list(self.params(model))

    def vector_to_params(self, vec: Tensor, model: nn.Module) -> None:
        """Write ``vec`` (numel,) into the model's parameters in place."""
        self.vector_to_params_list(vec, self.params(model))

    @staticmethod
    def params_to_vector_list(params: list[nn.Parameter]) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in params])

    @staticmethod
    def grads_to_vector_list(params: list[nn.Parameter]) -> Tensor:
        return torch.cat([
            p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
            for p in params
        ])

    def vector_to_params_list(self, vec: Tensor, params: list[nn.Parameter]) -> None:
        if vec.numel() != self.numel:
            raise ValueError(f"flat vector has {vec.numel()} values, the model has {self.numel} trainable")
        with torch.no_grad():
            for p, off, shape in zip(params, self.offsets, self.shapes):
                p.copy_(vec[off:off + p.numel()].view(shape))


def frozen_params(model: nn.Module) -> dict[str, Tensor]:
    """The parameters :class:`ParamLayout` leaves out (a Gabor or random first layer), by name: the
    shards never hold them, so a replica built in another place or process takes them from here
    (a random layer drawn there would be other filters than the driver's, the model the run saves)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}


def load_frozen(model: nn.Module, frozen: dict[str, Tensor]) -> None:
    """Copy :func:`frozen_params` of another replica of the same model into ``model``."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in frozen.items():
            named[name].copy_(value)


def slice_words(start: int, end: int, layout: ParamLayout | None = None, words: dict[str, str] | None = None) -> str:
    """Elements [start, end) of the flat vector in words, for a checkpoint's metadata (a shard's slice): its length
    (``(elements N)``), its place, and with ``layout``, :meth:`ParamLayout.describe`'s list of what it holds."""
    held = f": {layout.describe(start, end, words)}" if layout is not None else ""
    return f"(elements {end - start}): elements [{start}, {end}) of {FLAT_WORDS}{held}"
