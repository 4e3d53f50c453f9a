"""An optimiser's state in a checkpoint: split into tensors and JSON to save, loaded back and checked.

    tensors, meta = optimizer_state(opt)          # saved beside the weights by train/checkpoint.py
    load_optimizer_state(opt, tensors, meta)      # ValueError for state that would fail at the next step
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from downpour.train.optimisers import Optimiser


# the runners' (train/optimisers.py) or torch's own: the same names (SGD, Adagrad, Adam), state and files
AnyOptimiser = Optimiser | torch.optim.Optimizer


def optimizer_state(opt: AnyOptimiser) -> tuple[dict[str, Tensor], dict[str, Any]]:
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
    return tensors, {"optimizer": type(opt).__name__, "param_groups": sd["param_groups"], "scalars": scalars}


# what each optimiser's step reads of a parameter's state once it has any (Adam with amsgrad: max_exp_avg_sq too)
NEEDED = {"Adam": ("step", "exp_avg", "exp_avg_sq"), "Adagrad": ("step", "sum")}

# settings only one kind of torch optimiser has: another's found in a checkpoint is that optimiser's state
OWN_SETTINGS = ("betas", "amsgrad", "momentum", "dampening", "nesterov", "lr_decay", "initial_accumulator_value")


def _check_same_optimizer(opt: AnyOptimiser, meta: dict[str, Any]) -> None:
    """ValueError unless ``meta`` was saved by ``opt``'s kind of optimiser: by its recorded name, and (older
    checkpoints name none) by the settings only one kind has (Adam's betas in an SGD run; a setting a newer
    torch added to the same optimiser is no sign of another)."""
    name = type(opt).__name__
    groups = meta.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError(f"its optimiser param_groups are {groups!r}, not a list of tables")
    if "optimizer" in meta:
        if meta["optimizer"] != name:
            raise ValueError(f"it was saved by {meta['optimizer']}, and this run uses {name} (train.optimizer)")
        return
    known = {key for group in opt.param_groups for key in group}
    foreign = sorted({key for group in groups for key in group if key in OWN_SETTINGS} - known)
    if foreign:
        raise ValueError(f"its optimiser settings {', '.join(foreign)} are not {name}'s: it was saved by another "
                         "optimiser (train.optimizer)")


def load_optimizer_state(opt: AnyOptimiser, tensors: dict[str, Tensor], meta: dict[str, Any],
                         trained: bool = True) -> None:
    """Load :func:`optimizer_state`'s split back into ``opt``; ValueError for state that loads but would fail
    (or train otherwise) at the next step: another optimiser's state, a moment of another shape or dtype than its
    parameter or one missing, a setting of another kind than this optimiser's (``"betas": [0.9]``), a learning
    rate that is not a number, or none at all where ``trained`` steps must have left some (torch takes them all;
    they crashed or trained on zeros at the first step, after the run was rewritten)."""
    _check_same_optimizer(opt, meta)
    params = [p for group in opt.param_groups for p in group["params"]]
    fresh = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
            if key != "step" and int(idx) < len(params) and value.dtype != params[int(idx)].dtype:   # (torch casts it)
                raise ValueError(f"its optimiser state {name!r} is {value.dtype}, its parameter {params[int(idx)].dtype}")
    scalars = meta.get("scalars", {})
    if not isinstance(scalars, dict) or not all(isinstance(v, dict) for v in scalars.values()):
        raise ValueError(f"its optimiser scalars are {scalars!r}, not a table per parameter")
    for idx, values in scalars.items():
        state.setdefault(int(idx), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    params = [p for group in opt.param_groups for p in group["params"]]
    for group in opt.param_groups:
        if not isinstance(group.get("lr"), (int, float)) or isinstance(group.get("lr"), bool):
            raise ValueError(f"its optimiser's learning rate is {group.get('lr')!r}, not a number")
    for before, group in zip(fresh, opt.param_groups):
        for key, value in before.items():
            if key in group and _kind(value) != "any" and _kind(group[key]) != _kind(value):
                raise ValueError(f"its optimiser setting {key} is {group[key]!r}, not {_kind(value)}")
    for param in params:
        for key, value in opt.state.get(param, {}).items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise ValueError(f"its optimiser state {key!r} has shape {list(value.shape)}, its parameter {list(param.shape)}")
    for group in opt.param_groups:
        needed = NEEDED.get(type(opt).__name__, ()) + (("max_exp_avg_sq",) if group.get("amsgrad") else ())
        for param in group["params"]:
            have = opt.state.get(param, {})
            missing = [key for key in needed if key not in have]
            if missing and (have or type(opt).__name__ == "Adagrad"):    # (Adagrad sets every one up at the start)
                raise ValueError(f"its optimiser state for parameter {params.index(param)} lacks {', '.join(missing)}")
    plain_sgd = type(opt).__name__ == "SGD" and not any(g.get("momentum") for g in opt.param_groups)
    if trained and not opt.state and not plain_sgd:
        raise ValueError(f"it holds no {type(opt).__name__} state, though steps were applied before it")


def _kind(value: Any) -> str:
    """What kind of optimiser setting ``value`` is, as :func:`load_optimizer_state` compares a loaded one with
    this torch's own: true or false, a number, n numbers; anything else (None, a name) is not compared."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return f"a list of {len(value)} numbers"
    return "any"
