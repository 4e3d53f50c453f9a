"""Reading units out of a model: every analysis sees a layer as a flat row of units per image.

A layer's codes (B, maps, H, W) become (B, maps·H·W) units, numbered in C order, so unit ``u`` of a
locally connected layer is map ``u // (H·W)`` at position ``divmod(u % (H·W), W)``.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from downpour._names import nearest
from downpour.config import ConfigError
from downpour.models.base import FeatureModel


def check_layer(model: FeatureModel, layer: str | None, key: str = "") -> str:
    """``layer`` if the model has it, else a clear error naming the valid ones (and ``key``, the setting that named it:
    ``analysis.layer``). Empty: the layer every analysis reads when none is named, the model's ``analysis_layer()``
    (its top feature layer unless it declares another: the CNN's ``fc``, not its ``logits``)."""
    if not layer:
        return model.analysis_layer()
    layers = model.feature_layers()
    if layer not in layers:
        raise ConfigError(f"{key + ' = ' if key else 'layer '}{layer!r} is not a feature layer of {type(model).__name__}; "
                          f"it has {layers}{nearest(layer, layers)}", key=key or None)
    return layer


def other_layers(model: FeatureModel, layer: str) -> str:
    """What a dead ``layer`` (no unit can be chosen) is told to try: the model's other feature layers by name, or, for a
    model of one (ufldl-sae's ``codes``), that it has none, rather than "set analysis.layer
    to another layer" to a model that has no other."""
    others = [name for name in model.feature_layers() if name != layer]
    if not others:
        return f"{layer!r} is {type(model).__name__}'s only feature layer: analysis.layer has no other to name"
    return f"set analysis.layer to another of {type(model).__name__}'s feature layers: {', '.join(map(repr, others))}"


def model_input_shape(model: FeatureModel, fallback: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The (C, H, W) a model was built for: its ``input_shape`` attribute, else ``fallback``."""
    shape = getattr(model, "input_shape", None) or fallback
    if shape is None:
        raise ValueError(f"{type(model).__name__} has no input_shape attribute; pass input_shape=(C, H, W)")
    return tuple(int(s) for s in shape)


@torch.no_grad()
def unit_responses(model: FeatureModel, x: Tensor, layer: str | None = None, batch_size: int = 256) -> np.ndarray:
    """Every unit's response to every image.

    x: (N, C, H, W) float32. Returns (N, U) float64 with U the flattened size of one image's codes
    at ``layer`` (the model's default layer when None). The model is put in eval mode and left there.
    """
    layer = check_layer(model, layer)
    model.eval()
    rows = []
    for start in range(0, x.shape[0], batch_size):
        codes = model.features(x[start:start + batch_size], layer)
        rows.append(codes.reshape(codes.shape[0], -1).double().cpu().numpy())
    return np.concatenate(rows, axis=0)


@torch.no_grad()
def layer_responses(model: FeatureModel, x: Tensor, layers: Sequence[str | None], batch_size: int = 256,
                    dtype: type = np.float64) -> dict[str | None, np.ndarray]:
    """:func:`unit_responses` at each of ``layers`` (None: the model's default layer), ``{layer as asked:
    (N, U_layer)}``, from one pass of the model per batch (``FeatureModel.features_at``): the same numbers, bit
    for bit. ``dtype=np.float32`` keeps the codes as the model gave them, half the memory for a caller holding
    many layers; a float64 cast of them is :func:`unit_responses` exactly."""
    names = {layer: check_layer(model, layer) for layer in layers}    # as asked -> the model's name for it
    model.eval()
    # each layer's (N, U) filled batch by batch: a list of batches concatenated at the end holds every layer twice at
    # once (the face test on cat-demo's six layers, 8,000 images: peak RSS over its start 1.61 GB filled, 1.82
    # concatenated, 1.61 read per layer; a 2-fold cross-fit of 3,000: 0.90, 0.99 and 0.78)
    out: dict[str, np.ndarray] = {}
    for start in range(0, x.shape[0], batch_size):
        for name, codes in model.features_at(x[start:start + batch_size], list(dict.fromkeys(names.values()))).items():
            codes = codes.reshape(codes.shape[0], -1)
            if name not in out:
                out[name] = np.empty((x.shape[0], codes.shape[1]), dtype=dtype)
            out[name][start:start + codes.shape[0]] = codes.cpu().numpy()
    return {layer: out[name] for layer, name in names.items()}


def unit_response(model: FeatureModel, x: Tensor, unit: int, layer: str | None = None) -> Tensor:
    """One unit's response, differentiable: x (B, C, H, W) -> (B,)."""
    codes = model.features(x, check_layer(model, layer))
    flat = codes.reshape(codes.shape[0], -1)
    if not 0 <= unit < flat.shape[1]:
        raise IndexError(f"unit {unit} out of range: layer {layer!r} has {flat.shape[1]} units")
    return flat[:, unit]


def describe_unit(model: FeatureModel, x: Tensor, unit: int, layer: str | None = None) -> dict[str, Any]:
    """Where a flat unit index lives in the layer: ``{"unit", "shape", "index"}`` (index into one image's codes)."""
    with torch.no_grad():
        shape = tuple(model.features(x[:1], check_layer(model, layer)).shape[1:])
    return {"unit": int(unit), "shape": list(shape), "index": [int(i) for i in np.unravel_index(unit, shape)]}


def randomized_copy(model: FeatureModel, seed: int) -> tuple[FeatureModel, str]:
    """The same architecture with fresh random weights, for the "random network" baseline.

    Deep-copies the model and calls ``reset_parameters`` on every submodule that has one, seeded.
    A parameter that no ``reset_parameters`` touched keeps its trained values, which would make the
    baseline dishonest, so those are shuffled instead (same values, random positions: the trained
    weight distribution with the learned structure destroyed). Returns the copy and a note saying
    which was done.
    """
    twin = copy.deepcopy(model)
    before = {name: p.detach().clone() for name, p in twin.named_parameters()}
    with torch.random.fork_rng(devices=[]):      # seeded, without moving the caller's RNG
        torch.manual_seed(seed)
        for module in twin.modules():
            reset = getattr(module, "reset_parameters", None)
            if module is not twin and callable(reset):
                reset()
    generator = torch.Generator().manual_seed(seed)
    shuffled = []
    with torch.no_grad():
        for name, p in twin.named_parameters():
            if p.numel() > 1 and torch.equal(p, before[name]) and bool(p.max() > p.min()):
                p.copy_(p.flatten()[torch.randperm(p.numel(), generator=generator)].reshape(p.shape))
                shuffled.append(name)
    note = "reset_parameters" if not shuffled else f"reset_parameters; shuffled (no reset available): {', '.join(shuffled)}"
    return twin.eval(), note

