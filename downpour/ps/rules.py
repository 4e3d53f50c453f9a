"""Server-side update rules: how a shard turns a pushed gradient into a parameter change.

Each rule works in place on one shard's flat slice ``w`` (n,) with the gradient ``g`` (n,) and
keeps its state as named (n,)-shaped tensors (plus scalars stored as 1-element tensors), so a
shard checkpoints the state as safetensors without knowing which rule it runs.

    rule = make_rule("adagrad", lr=0.05)       # or make_rule("momentum", lr=0.05, momentum=0.9)
    state = rule.init_state(w.numel())
    rule.apply(w, g, state, lr_scale=1.0)
"""
from __future__ import annotations

import torch
from torch import Tensor

from downpour._names import nearest
from downpour.config import ConfigError


class UpdateRule:
    """Base class: ``state_names`` lists the (n,) state tensors :meth:`init_state` creates."""

    name: str = ""
    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float):
        if not lr > 0:
            raise ValueError(f"server learning rate must be > 0, got {lr!r}")
        self.lr = float(lr)

    def init_state(self, n: int) -> dict[str, Tensor]:
        return {k: torch.zeros(n, dtype=torch.float32) for k in self.state_names}

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0) -> None:
        """Update ``w`` (n,) in place from gradient ``g`` (n,); ``lr_scale`` multiplies the learning rate."""
        raise NotImplementedError


class SGD(UpdateRule):
    """w ← w − η·g."""

    name = "sgd"

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0) -> None:
        w.add_(g, alpha=-self.lr * lr_scale)


class Momentum(UpdateRule):
    """Heavy-ball SGD: v ← μ·v + g, w ← w − η·v (``cluster.momentum`` = μ). The staleness study's
    control: asynchrony with M workers acts like momentum 1 − 1/M at learning rate η/M
    (Mitliagkas et al. 2016)."""

    name = "momentum"
    state_names = ("velocity",)

    def __init__(self, lr: float, momentum: float = 0.9):
        super().__init__(lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"server momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0) -> None:
        v = state["velocity"]
        v.mul_(self.momentum).add_(g)
        w.add_(v, alpha=-self.lr * lr_scale)


class Adagrad(UpdateRule):
    """DistBelief's rule: h ← h + g², w ← w − η·g/(√h + ε); each shard adapts on its own."""

    name = "adagrad"
    state_names = ("sum_sq",)
    eps = 1e-10  # torch.optim.Adagrad's default, so the local and server rules agree

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0) -> None:
        h = state["sum_sq"]
        h.addcmul_(g, g)
        w.addcdiv_(g, h.sqrt().add_(self.eps), value=-self.lr * lr_scale)


class Adam(UpdateRule):
    """Kingma & Ba with bias correction; the step count is the shard's own update count."""

    name = "adam"
    state_names = ("exp_avg", "exp_avg_sq")
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def init_state(self, n: int) -> dict[str, Tensor]:
        state = super().init_state(n)
        state["step"] = torch.zeros(1, dtype=torch.float64)  # a tensor so it checkpoints with the rest
        return state

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0) -> None:
        state["step"] += 1
        t = float(state["step"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(self.beta1).add_(g, alpha=1 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        step = self.lr * lr_scale / (1 - self.beta1 ** t)
        denom = (v / (1 - self.beta2 ** t)).sqrt_().add_(self.eps)
        w.addcdiv_(m, denom, value=-step)


RULES: dict[str, type[UpdateRule]] = {r.name: r for r in (SGD, Momentum, Adagrad, Adam)}


def make_rule(name: str, lr: float, momentum: float = 0.9) -> UpdateRule:
    """The update rule called ``name`` (cluster.rule): sgd | momentum | adagrad | adam; ``momentum``
    (cluster.momentum) is the momentum rule's μ."""
    if name not in RULES:
        raise ConfigError(f"cluster.rule: unknown update rule {name!r}{nearest(name, RULES)}; choose from {', '.join(RULES)}")
    return Momentum(lr, momentum) if name == "momentum" else RULES[name](lr)
