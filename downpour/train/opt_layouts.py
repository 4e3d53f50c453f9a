"""A local checkpoint's optimiser state in words: what each ``opt.<i>.<key>`` tensor that
:func:`~downpour.train.optimizer_state.optimizer_state` writes is, written into the checkpoint's safetensors metadata
(``layout.opt.<i>.<key>``) for a reader without downpour (docs/training.md, "Reading a run without downpour").
"""
from __future__ import annotations

from torch import Tensor

from downpour.train.optimizer_state import AnyOptimiser

# each optimiser state's meaning in words (torch's names; Adam with amsgrad: max_exp_avg_sq too)
_OPT_WORDS = {"step": "the updates this parameter has had (a float)", "sum": "Adagrad's running sum of squared "
              "gradients", "exp_avg": "Adam's first moment (decayed mean of gradients)", "exp_avg_sq": "Adam's "
              "second moment (decayed mean of squared gradients)", "max_exp_avg_sq": "Adam's (amsgrad) largest "
              "second moment", "momentum_buffer": "SGD's momentum buffer"}


def optimizer_layouts(opt: AnyOptimiser, names: dict[int, str]) -> dict[str, str]:
    """:func:`~downpour.train.optimizer_state.optimizer_state`'s tensors' meanings in words, for the checkpoint's
    metadata: ``opt.<i>.<key>`` is ``key`` of the parameter numbered ``i`` in param_groups' order, named here as the
    model's state-dict name (``names``: ``id(parameter)`` -> name, e.g. ``model.`` + named_parameters' names)."""
    params = [p for group in opt.param_groups for p in group["params"]]
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        param = params[idx] if isinstance(idx, int) and idx < len(params) else None
        name = f"parameter {idx}" if param is None else names.get(id(param), f"parameter {idx}")
        for key, value in state.items():
            if isinstance(value, Tensor):
                each = "" if value.dim() == 0 else ", element for element"
                out[f"opt.{idx}.{key}"] = f"(shape {list(value.shape)}): {_OPT_WORDS.get(key, key)} of {name}{each}"
    return out
