"""``model.safetensors`` + ``model.json``: a trained model and what rebuilds it (registry name, options,
input shape), the pair a run directory holds and a saved :class:`~downpour.learner.FeatureLearner` too.

    write_model(folder, model, "ufldl-sae", {"step": 400})     # every parameter and buffer + the JSON
    fit_weights(model, read_tensors(weights), weights)         # one-line CheckpointError naming the tensor

Reading back goes through :meth:`~downpour.train.rundir.RunDir.load_model` (which also checks the options
against a run's config.toml where there is one).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from downpour.models.base import FeatureModel
from downpour.train.checkpoint import PAIR_KEY, CheckpointError, sha256_of, write_tensors
from downpour.train.checkpoint_checks import check_dtypes
from downpour.train.json_digest import digested


def write_model(folder: Path, model: FeatureModel, name: str, extra: dict[str, Any] | None = None) -> None:
    """``folder/model.safetensors`` (every parameter and buffer) + ``model.json`` (registry ``name``, the model's
    options and input shape, ``extra``), each written whole; the JSON last, with the weights' SHA-256 and its own."""
    state = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
    weights = folder / "model.safetensors"
    tmp = weights.with_name(weights.name + ".tmp")
    write_tensors(state, tmp, model.tensor_layouts())
    meta = {"model": name, "options": dataclasses.asdict(model.config), "input_shape": list(model.input_shape),
            **(extra or {}), PAIR_KEY: sha256_of(tmp)}      # a loader tells a pair cut by a kill between the two renames
    os.replace(tmp, weights)
    replace_text(folder / "model.json", json.dumps(digested(meta), indent=1, sort_keys=True))


def fit_weights(model: FeatureModel, tensors: dict[str, Tensor], path: Path) -> None:
    """Load ``tensors`` (read from ``path``) into ``model``, or a one-line CheckpointError naming ``path`` and the first
    tensor missing, unexpected, of another shape or dtype (torch's own error lists them all over many lines)."""
    check_dtypes(model.state_dict(), tensors, path)
    want = model.state_dict()
    problems = ([f"lacks tensor {key!r}" for key in want if key not in tensors]
                + [f"holds tensor {key!r}, which the model has not" for key in tensors if key not in want]
                + [f"tensor {key!r} has shape {list(tensors[key].shape)}, the model's {list(want[key].shape)}"
                   for key in want if key in tensors and tensors[key].shape != want[key].shape])
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(f"{str(path)!r} does not fit the model that model.json describes: {problems[0]}{more}")
    model.load_state_dict(tensors)


def temp_of(path: Path) -> Path:
    """Where :func:`replace_text` writes ``path`` before it moves it in (a kill mid-write leaves it behind)."""
    return path.with_name(path.name + ".tmp")


def replace_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a kill mid-write leaves the old file (an empty config.toml
    read as the defaults, a torn model.json as no model), and :func:`temp_of` it."""
    _replace(path, lambda tmp: tmp.write_text(text))


def replace_bytes(path: Path, data: bytes) -> None:
    """:func:`replace_text` for bytes: a figure's PNG, whole or not at all (a kill mid-save would leave a torn PNG,
    shown broken in study.html or report.html until the figure is drawn again)."""
    _replace(path, lambda tmp: tmp.write_bytes(data))


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` to :func:`temp_of` ``path``, then the file moved in (one rename: whole or not at all)."""
    tmp = temp_of(path)
    write(tmp)
    os.replace(tmp, path)
