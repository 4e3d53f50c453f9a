"""Server-side update rules: how a shard turns a pushed gradient into a parameter change.

Each rule works in place on one shard's flat slice ``w`` (n,) with the gradient ``g`` (n,) and
keeps its state as named (n,)-shaped tensors (plus scalars stored as 1-element tensors), so a
shard checkpoints the state as safetensors without knowing which rule it runs.

    rule = make_rule("adagrad", lr=0.05)       # or make_rule("momentum", lr=0.05, momentum=0.9)
    state = rule.init_state(w.numel())
    rule.apply(w, g, state, lr_scale=1.0)
    apply_live(rule, w, g, state, 1.0, live=[(0, 300)])   # a greedy push: [300, n) is a held stage's

A rule that ``holds`` (Momentum, Adam) leaves alone the parameter tensors a push trained none of (a stage
a greedy schedule holds, grad None, pushed as zeros), as torch's optimisers skip a parameter whose grad is
None: the shard applies it only on the ``live`` ranges, the tensors of the stages the push says it trained
(:meth:`~downpour.ps.shard.Shard.live_ranges`). Every element of a trained tensor, an exactly-zero gradient
included (a ReLU unit dead for the batch, a piece of a tensor cut by a shard boundary), gets torch's
arithmetic. SGD and Adagrad move nothing on a zero gradient anyway, and always apply to the whole slice.
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
    # leaves a tensor pushed without a gradient alone: the shard applies it only on the trained stages' ranges
    holds: bool = False

    def __init__(self, lr: float):
        if not lr > 0:
            raise ValueError(f"server learning rate must be > 0, got {lr!r}")
        self.lr = float(lr)

    def init_state(self, n: int) -> dict[str, Tensor]:
        return {k: torch.zeros(n, dtype=torch.float32) for k in self.state_names}

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0) -> None:
        """Update ``w`` (n,) in place from gradient ``g`` (n,), every element trained; ``lr_scale`` multiplies
        the learning rate."""
        raise NotImplementedError


def apply_live(rule: UpdateRule, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0,
               live: list[tuple[int, int]] | None = None) -> None:
    """``rule`` on the [a, b) ranges ``live`` of the slice (views of ``w``, ``g`` and the state), the rest left
    as it is; ``live`` None: the whole slice. Whole ranges, not a mask: a masked Adam took 3.3x torch's time
    with a quarter of a 2 MB slice held (bench/server_rules.py)."""
    if live is None:
        rule.apply(w, g, state, lr_scale)
        return
    for a, b in live:
        rule.apply(w[a:b], g[a:b], {k: v[a:b] for k, v in state.items()}, lr_scale)


class SGD(UpdateRule):
    """w ← w − η·g."""

    name = "sgd"

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0) -> None:
        w.add_(g, alpha=-self.lr * lr_scale)


class Momentum(UpdateRule):
    """Heavy-ball SGD: v ← μ·v + g, w ← w − η·v (``cluster.momentum`` = μ), torch's SGD with momentum; a
    tensor a push did not train keeps its velocity and stays still (``holds``: a velocity left to coast on
    would drift a greedy run's held stage 1 by up to 0.53). The staleness study's
    control: asynchrony with M workers acts like momentum 1 − 1/M at learning rate η/M
    (Mitliagkas et al. 2016). ``lr_scale`` (``staleness-lr``: 1/s for a push s updates stale) weighs
    this push's gradient as it joins the velocity, v ← μ·v + lr_scale·g: a stale push counts less,
    and the fresh pushes already in the velocity keep their weight (scaling the step scaled them too)."""

    name = "momentum"
    holds = True
    state_names = ("velocity",)

    def __init__(self, lr: float, momentum: float = 0.9):
        super().__init__(lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"server momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0) -> None:
        v = state["velocity"]
        v.mul_(self.momentum).add_(g, alpha=lr_scale)
        w.add_(v, alpha=-self.lr)


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
    """Kingma & Ba with bias correction, torch.optim.Adam's arithmetic on every element it is applied to, an
    exactly-zero gradient too (a rule lazy about every exact 0, SparseAdam's way, would let a ReLU unit
    dead for one batch keep its moments and not coast: cnn-digits, one simulated worker at
    staleness 0 given the local loop's batches, split from it at step 40, seed 3 ending at loss 0.065 against
    0.028). A tensor a push did not train (``holds``: a greedy schedule's held stage) does not move, its
    moments do not decay and its step count does not advance, as torch skips a parameter whose grad is None.

    Each element counts its own steps, as torch counts a parameter's steps while it has a grad. With
    one count per shard, the cat network's stage 2 would start at step ~750 with its bias correction
    spent: steps 2-5x Adam's for hundreds of updates (stage-2 reconstruction 106 after 1,500 pushes
    on Ray against 4 in the local loop, with one count per shard).
    """

    name = "adam"
    holds = True
    state_names = ("exp_avg", "exp_avg_sq", "step")   # step: (n,) per element (a checkpoint's (1,) broadcasts)
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], lr_scale: float = 1.0) -> None:
        m, v, step = state["exp_avg"], state["exp_avg_sq"], state["step"]
        step += 1
        m.lerp_(g, 1 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        lr = self.lr * lr_scale
        k = _common_step(step)
        if k is not None:       # the usual case: two scalar bias corrections
            c1, c2 = 1 - self.beta1 ** k, 1 - self.beta2 ** k
            denom = (v.sqrt() / c2 ** 0.5).add_(self.eps)
            w.addcdiv_(m, denom, value=-lr / c1)
            return
        # elements at different counts (a push across a greedy stage switch trains both stages' tensors)
        c1 = 1 - torch.pow(self.beta1, step)
        c2 = 1 - torch.pow(self.beta2, step)
        w.sub_((m / c1).div_((v / c2).sqrt_().add_(self.eps)).mul_(lr))


def _common_step(step: Tensor) -> float | None:
    """The step count every element of ``step`` shares; None where they differ (or there is none).

    Per-element powers of the betas made an apply 8x torch's Adam on a 2 MB slice; the elements a push
    trains nearly always share one count (a stage trains, or is held, as a whole), and then the bias
    corrections are two scalars (bench/server_rules.py)."""
    if step.numel() == 0:
        return None
    lo, hi = torch.aminmax(step)
    return float(lo) if bool(lo == hi) else None


RULES: dict[str, type[UpdateRule]] = {r.name: r for r in (SGD, Momentum, Adagrad, Adam)}


def make_rule(name: str, lr: float, momentum: float = 0.9) -> UpdateRule:
    """The update rule called ``name`` (cluster.rule): sgd | momentum | adagrad | adam; ``momentum``
    (cluster.momentum) is the momentum rule's μ."""
    if name not in RULES:
        raise ConfigError(f"cluster.rule: unknown update rule {name!r}{nearest(name, RULES)}; choose from {', '.join(RULES)}")
    return Momentum(lr, momentum) if name == "momentum" else RULES[name](lr)
