"""The local runner's optimisers: torch's SGD, Adagrad and Adam, stepped without ``torch.optim.Optimizer``.

Why not torch's classes: every ``torch.optim`` optimiser imports ``torch._dynamo`` when it is built (its
``add_param_group`` is wrapped in ``torch._disable_dynamo``) and at its first ``step``, whatever its arguments:
1.2 s of an idle start-up, 3 s on a loaded 2-core machine, in every process that trains locally
(``downpour train --runner local``, each study worker, each cross-fit fold, ``FeatureLearner.fit``).

What keeps them torch's: ``step`` calls the functional kernels torch's own ``step`` calls
(``torch.optim.adam.adam``, ``adagrad.adagrad``, ``sgd.sgd``) with the same lists and settings, and sets state up
as torch's ``_init_group`` does, so an update is torch's bit for bit on any device (on a GPU the kernels choose
their foreach path as they do for torch's classes: no device branch here). ``state_dict`` and
``load_state_dict`` are torch's format and rules (parameters by index, every setting in each group, a loaded
tensor cast to its parameter's dtype and device, the settings torch fills in for an older file filled in the same
way), so checkpoints written with torch's optimisers load unchanged (train/checkpoint.py) and continue the same.

Only torch's default step is offered: ``capturable``, ``differentiable`` and ``fused`` (CUDA graphs, gradients
through the step, AMP) are refused, not ignored.

    opt = Adam(model.parameters(), lr=1e-3)
    loss.backward(); opt.step()
    tensors, meta = optimizer_state(opt)        # train/optimizer_state.py: the same files as torch.optim.Adam's
"""
from __future__ import annotations

import inspect
from copy import deepcopy
from functools import cache
from typing import Any, Callable, ClassVar, Iterable

import torch
from torch import Tensor
from torch.optim.adagrad import adagrad
from torch.optim.adam import adam
from torch.optim.sgd import sgd

# torch's modes these classes do not run (they would need the state on the device, or a graph through the step)
REFUSED = ("capturable", "differentiable", "fused")


def _scalar_dtype() -> torch.dtype:
    """The dtype torch's optimisers keep ``step`` in (``torch.optim.optimizer._get_scalar_dtype``)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


@cache
def _settings_of(kernel: Callable[..., None]) -> frozenset[str]:
    return frozenset(inspect.signature(kernel).parameters)


def _call(kernel: Callable[..., None], *lists: list, **settings: Any) -> None:
    """``kernel(*lists, **settings)``, leaving out a setting this torch's kernel does not take while it is at
    its off value (``decoupled_weight_decay`` came in torch 2.7); one that is on is refused, not dropped."""
    takes = _settings_of(kernel)
    missing = [key for key, value in settings.items() if key not in takes and value]
    if missing:
        raise ValueError(f"torch {torch.__version__}'s {kernel.__name__} has no setting {', '.join(missing)}")
    kernel(*lists, **{key: value for key, value in settings.items() if key in takes})


class Optimiser:
    """What the three share: one group of parameters with torch's settings, state per parameter, and
    torch's ``state_dict`` format. A subclass names its settings (``defaults``, in torch's order; a
    state_dict records them all) and those torch's ``__setstate__`` fills into an older file's group
    (``filled``), and writes ``_update``: one torch step of ``params`` (those with a gradient)."""

    defaults: ClassVar[dict[str, Any]]
    filled: ClassVar[dict[str, Any]]

    def __init__(self, params: Iterable[torch.nn.Parameter], **settings: Any):
        unknown = sorted(set(settings) - set(type(self).defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no setting {', '.join(unknown)}")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        self.defaults = {**type(self).defaults, **settings}        # (torch's instances keep theirs too)
        self.param_groups: list[dict[str, Any]] = [{"params": params, **self.defaults}]
        self.state: dict[Any, dict[str, Any]] = {}
        self._refuse_modes()

    def _refuse_modes(self) -> None:
        for group in self.param_groups:
            on = [key for key in REFUSED if group.get(key)]
            if on:
                raise ValueError(f"{type(self).__name__} here runs torch's default step; "
                                 f"{', '.join(f'{key} = {group[key]!r}' for key in on)} is not offered")

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (torch's ``step`` without a closure)."""
        for group in self.param_groups:
            self._update(group, [p for p in group["params"] if p.grad is not None])

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        raise NotImplementedError

    def _fresh_step(self) -> Tensor:
        """A parameter's step count before its first update: a CPU scalar, as torch's default mode keeps it."""
        return torch.tensor(0.0, dtype=_scalar_dtype())

    def state_dict(self) -> dict[str, Any]:
        """torch's format: ``{"state": {index: {key: value}}, "param_groups": [{setting: value, "params": [index]}]}``,
        parameters numbered in group order; the state's tensors are the live ones (torch's are too)."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            index.update({id(p): i for i, p in enumerate(group["params"], len(index)) if id(p) not in index})
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``Optimizer.load_state_dict`` and the subclass's ``__setstate__``: the saved groups replace
        this one's settings (their parameters stay this optimiser's), each state tensor but ``step`` is cast to
        its parameter's dtype (a floating one) and device, and a ``step`` saved as a number becomes a tensor."""
        saved = deepcopy(state_dict["param_groups"])
        if len(saved) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        by_index = dict(zip((i for s in saved for i in s["params"]),
                            (p for g in self.param_groups for p in g["params"])))
        state: dict[Any, dict[str, Any]] = {}
        for key, values in state_dict["state"].items():
            param = by_index.get(key)
            state[key if param is None else param] = values if param is None else {
                name: _cast(value, param) if isinstance(value, Tensor) and name != "step" else value
                for name, value in values.items()}
        groups = [{**s, "params": g["params"]} for s, g in zip(saved, self.param_groups)]
        for group in groups:
            for key, value in type(self).filled.items():
                group.setdefault(key, value)
        self.param_groups, self.state = groups, state
        self._refuse_modes()
        for values in state.values():
            if "step" in values and not isinstance(values["step"], Tensor):
                values["step"] = torch.tensor(float(values["step"]), dtype=_scalar_dtype())


def _cast(value: Tensor, param: Tensor) -> Tensor:
    """torch's load policy for a state tensor (not ``step``): the parameter's device, and its dtype where it
    is a floating one (``.to`` returns the tensor itself when both already match)."""
    if param.is_floating_point():
        return value.to(dtype=param.dtype, device=param.device)
    return value.to(device=param.device)


class SGD(Optimiser):
    """``torch.optim.SGD``: a momentum buffer per parameter only where momentum is on, made by the kernel
    at the parameter's first step (the gradient itself, cloned)."""

    defaults = {"lr": 1e-3, "momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False, "maximize": False,
                "foreach": None, "differentiable": False, "fused": None}
    filled = {"nesterov": False, "maximize": False, "foreach": None, "differentiable": False, "fused": False}

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        momentum = group["momentum"] != 0
        buffers = [self.state.setdefault(p, {}).get("momentum_buffer") for p in params] if momentum else []
        _call(sgd, params, [p.grad for p in params], buffers,
              weight_decay=group["weight_decay"], momentum=group["momentum"], lr=group["lr"],
              dampening=group["dampening"], nesterov=group["nesterov"], maximize=group["maximize"],
              has_sparse_grad=any(p.grad.is_sparse for p in params), foreach=group["foreach"], fused=group["fused"])
        if momentum:
            for p, buffer in zip(params, buffers):
                self.state[p]["momentum_buffer"] = buffer


class Adagrad(Optimiser):
    """``torch.optim.Adagrad``: every parameter's ``step`` and ``sum`` (filled with the initial accumulator
    value) are set up when it is built, not at its first step."""

    defaults = {"lr": 1e-2, "lr_decay": 0, "eps": 1e-10, "weight_decay": 0, "initial_accumulator_value": 0,
                "foreach": None, "maximize": False, "differentiable": False, "fused": None}
    filled = {"foreach": None, "maximize": False, "differentiable": False, "fused": None}

    def __init__(self, params: Iterable[torch.nn.Parameter], **settings: Any):
        super().__init__(params, **settings)
        for p in self.param_groups[0]["params"]:
            self.state[p] = self._fresh(p)

    def _fresh(self, p: Tensor) -> dict[str, Tensor]:
        # the constructor's initial_accumulator_value, not a loaded group's (torch reads self.defaults)
        start = self.defaults["initial_accumulator_value"]
        start = complex(start, start) if torch.is_complex(p) else start
        return {"step": self._fresh_step(), "sum": torch.full_like(p, start, memory_format=torch.preserve_format)}

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        states = [self.state.setdefault(p, {}) for p in params]
        for p, state in zip(params, states):
            if not state:       # (a loaded state_dict may leave a parameter none)
                state.update(self._fresh(p))
        _call(adagrad, params, [p.grad for p in params], [s["sum"] for s in states], [s["step"] for s in states],
              lr=group["lr"], weight_decay=group["weight_decay"], lr_decay=group["lr_decay"], eps=group["eps"],
              has_sparse_grad=any(p.grad.is_sparse for p in params), foreach=group["foreach"],
              maximize=group["maximize"], differentiable=group["differentiable"],
              has_complex=any(torch.is_complex(p) for p in params), fused=group["fused"])


class Adam(Optimiser):
    """``torch.optim.Adam``: ``step``, ``exp_avg`` and ``exp_avg_sq`` (and ``max_exp_avg_sq`` with amsgrad)
    set up at a parameter's first step."""

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False, "maximize": False,
                "foreach": None, "capturable": False, "differentiable": False, "fused": None,
                "decoupled_weight_decay": False}
    filled = {"amsgrad": False, "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
              "decoupled_weight_decay": False, "fused": None}

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        states = []
        for p in params:
            state = self.state.setdefault(p, {})
            if not state:
                state["step"] = self._fresh_step()
                moments = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
                state.update({key: torch.zeros_like(p, memory_format=torch.preserve_format) for key in moments})
            states.append(state)
        beta1, beta2 = group["betas"]
        _call(adam, params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
              [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [], [s["step"] for s in states],
              amsgrad=group["amsgrad"], has_complex=any(torch.is_complex(p) for p in params), beta1=beta1,
              beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
              maximize=group["maximize"], foreach=group["foreach"], capturable=group["capturable"],
              differentiable=group["differentiable"], fused=group["fused"],
              decoupled_weight_decay=group["decoupled_weight_decay"])
