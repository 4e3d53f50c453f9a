"""Checkpoints as safetensors + JSON, written atomically. Never pickle.

A checkpoint is a stem (``checkpoints/local``): ``stem.safetensors`` holds the tensors, ``stem.json``
everything else (step, optimiser hyper-parameters, counters).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from downpour.errors import DownpourError


class CheckpointError(DownpourError):
    """A checkpoint or model file is unreadable, incomplete or does not fit; the message names the file."""


def read_tensors(path: Path) -> dict[str, Tensor]:
    """``load_file``, with a damaged file (truncated, not safetensors) reported by name."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {err}") from None


def save_state(stem: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write ``stem.safetensors`` and ``stem.json``; a crash mid-write leaves the previous pair intact."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    for suffix, write in ((".safetensors", lambda p: save_file(tensors, str(p))),
                          (".json", lambda p: p.write_text(json.dumps(meta, indent=1, sort_keys=True)))):
        tmp = stem.with_name(stem.name + suffix + ".tmp")
        write(tmp)
        os.replace(tmp, stem.with_name(stem.name + suffix))


def load_state(stem: str | Path, meta_keys: Iterable[str] = (),
               tensor_keys: Iterable[str] = ()) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read ``stem.safetensors`` and ``stem.json``; raises :class:`CheckpointError` naming the file when
    one is missing, damaged or lacks one of ``meta_keys`` / ``tensor_keys``."""
    stem = Path(stem)
    tensor_path, meta_path = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")
    for p in (tensor_path, meta_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {str(p)!r} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint file {str(meta_path)!r} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint file {str(meta_path)!r} does not hold a JSON object")
    tensors = read_tensors(tensor_path)
    for keys, have, path in ((meta_keys, meta, meta_path), (tensor_keys, tensors, tensor_path)):
        for key in keys:
            if key not in have:
                raise CheckpointError(f"{str(path)!r} lacks key {key!r}")
    return tensors, meta


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimiser's state split into tensors (``opt.<param>.<key>``) and JSON (param groups, scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"opt.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
