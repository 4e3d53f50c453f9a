"""The old way of reading a network's layers (a pass per layer), and swapping it into a module for a baseline: shared
by the benches that time the one-pass read (``units.layer_responses``) against it."""
from __future__ import annotations

from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from downpour.analysis.units import layer_responses, unit_responses


def per_layer(model: Any, x: torch.Tensor, layers: Sequence[str], batch_size: int = 256,
              dtype: type = np.float64) -> dict[str, np.ndarray]:
    """The old way, with ``layer_responses``' signature: one pass of the network per layer."""
    return {layer: unit_responses(model, x, layer, batch_size).astype(dtype) for layer in layers}


@contextmanager
def reading(module: ModuleType, way: Any) -> Iterator[None]:
    """``module`` reads its layers with ``way`` inside (its ``layer_responses``, the one pass, put back after)."""
    module.layer_responses = way
    try:
        yield
    finally:
        module.layer_responses = layer_responses
