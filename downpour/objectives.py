"""Cost terms that compose by weighted addition.

An :class:`Objective` is a dict of named terms. Called on a model's ``forward_train`` result (one
:class:`~downpour.batch.Outputs` per trainable part) it returns the total and every named,
weighted part, so every run logs every part:

    >>> objective = Objective.from_config({"reconstruction": 1.0, "kl_sparsity": {"weight": 3.0, "rho": 0.01}})
    >>> total, parts = objective(model.forward_train(batch))   # parts: {"reconstruction": ..., "kl_sparsity": ...}

Conventions (UFLDL's): per-sample sums, averaged over the batch; squared errors carry a 1/2.

A model may also report diagnostics that are not costs (an RBM's reconstruction error and
pseudo-likelihood): ``Outputs.extra`` entries named ``metric/<name>`` come back among the parts,
detached, and are never added to the total (:func:`is_metric` tells them apart).

A term named ``PART/TERM`` (``"stage2/l1"``, the name its part is logged under) is that part's own: it replaces the
shared ``TERM`` in that part alone, and weight 0 turns ``TERM`` off there. Its fields are its own, not the shared
term's (the config merges a partial table over the shared term's: :func:`downpour.models.registry.resolve_objective`).
Stage 1 trained by reconstruction + pooled_l2, stage 2 by reconstruction + l1 (a per-unit L1 on its codes, its pools
unchanged)::

    Objective.from_config({"reconstruction": 1.0, "pooled_l2": 0.1, "stage2/pooled_l2": 0, "stage2/l1": 0.1})
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from downpour._names import nearest
from downpour.batch import Batch, Outputs
from downpour.errors import ConfigError


def _per_sample_sum(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


# A parameter's valid range, as data: (test, what the value must be) for the error message.
Limit = tuple[Callable[[Any], bool], str]
NON_NEGATIVE: Limit = (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
OPEN_UNIT: Limit = (lambda v: 0 < v < 1, "in (0, 1)")


class TermFieldError(ValueError):
    """A cost term's field out of its range; ``field`` names it (so an error can name what set it)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass
class Term:
    """A cost term: ``weight * value(outputs)``. Subclasses add their parameters as fields and
    their valid ranges to ``limits``; a term out of range is refused when it is built."""

    weight: float = 1.0
    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    limits: ClassVar[dict[str, Limit]] = {}

    def __post_init__(self):
        # a negative weight would maximise a cost; NaN/Inf poisons every step
        for key, (ok, want) in {"weight": NON_NEGATIVE, **self.limits}.items():
            value = getattr(self, key)
            if not ok(value):
                shown = f"{value:g}" if isinstance(value, float) else repr(value)
                raise TermFieldError(f"{self.name}.{key} must be {want}, got {shown}", key)

    def value(self, o: Outputs) -> Tensor:
        raise NotImplementedError

    def __call__(self, o: Outputs, where: str = "") -> Tensor:
        for attr in self.needs:
            if getattr(o, attr) is None:
                raise ValueError(f"cost term {self.name!r} needs '{attr}', which model part '{where or 'model'}' does not produce")
        value = self.value(o)
        return value if self.weight == 1.0 else self.weight * value   # ×1 is exact: skip its autograd node


def _squared_error(o: Outputs, recon: Tensor) -> Tensor:
    """½ Σ w·(x̂ − x)² per sample, averaged: w = ``o.recon_weight`` (e.g. 0 where a layer cannot reconstruct)."""
    err = (recon - o.x) ** 2
    if o.recon_weight is not None:
        err = err * o.recon_weight
    return 0.5 * _per_sample_sum(err).mean()


@dataclass
class Reconstruction(Term):
    """½‖x̂ − x‖² per sample (weighted per value by ``Outputs.recon_weight`` when the model gives one)."""

    name: ClassVar[str] = "reconstruction"
    needs: ClassVar[tuple[str, ...]] = ("recon",)

    def value(self, o: Outputs) -> Tensor:
        return _squared_error(o, o.recon)


@dataclass
class L1Codes(Term):
    """Σ|h| per sample: sparsity as an L1 penalty on the codes."""

    name: ClassVar[str] = "l1"

    def value(self, o: Outputs) -> Tensor:
        return _per_sample_sum(o.codes.abs()).mean()


@dataclass
class WeightL2(Term):
    """½ Σ W² over the model's penalised weights (weight decay)."""

    name: ClassVar[str] = "weight_l2"

    def value(self, o: Outputs) -> Tensor:
        if not o.weights:
            return o.codes.new_zeros(())
        return 0.5 * sum((w ** 2).sum() for w in o.weights)


@dataclass
class KLSparsity(Term):
    """Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j the mean activation of unit j over the batch (codes in (0, 1))."""

    rho: float = 0.05
    name: ClassVar[str] = "kl_sparsity"
    limits: ClassVar[dict[str, Limit]] = {"rho": OPEN_UNIT}   # log(rho), log(1 - rho)

    def value(self, o: Outputs) -> Tensor:
        rho_hat = o.codes.reshape(o.codes.shape[0], -1).mean(dim=0).clamp(1e-6, 1 - 1e-6)
        rho = self.rho
        return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


@dataclass
class PooledL2(Term):
    """TICA's pooled sparsity, Σ sqrt(ε + p²) per sample, p the L2-pooled codes."""

    eps: float = 1e-4
    name: ClassVar[str] = "pooled_l2"
    needs: ClassVar[tuple[str, ...]] = ("pooled",)
    limits: ClassVar[dict[str, Limit]] = {"eps": NON_NEGATIVE}

    def value(self, o: Outputs) -> Tensor:
        if self.eps == 0:   # |p|, whose gradient at a code of exactly 0 is 0; sqrt(p²)'s was 0/0 = NaN
            return _per_sample_sum(o.pooled.abs()).mean()
        return _per_sample_sum(torch.sqrt(self.eps + o.pooled ** 2)).mean()


@dataclass
class Denoising(Term):
    """½‖g(f(x̃)) − x‖², x̃ the input corrupted by Gaussian noise (``kind="gaussian"``, std ``noise``)
    or by zeroing a fraction ``noise`` of its entries (``kind="mask"``)."""

    noise: float = 0.3
    kind: str = "mask"
    name: ClassVar[str] = "denoising"
    needs: ClassVar[tuple[str, ...]] = ("encode", "decode")
    KINDS: ClassVar[tuple[str, ...]] = ("mask", "gaussian")
    limits: ClassVar[dict[str, Limit]] = {"kind": (lambda v: v in Denoising.KINDS, "'mask' or 'gaussian'"),
                                          "noise": NON_NEGATIVE}

    def __post_init__(self):
        super().__post_init__()
        if self.kind == "mask" and self.noise > 1:   # a fraction of the entries
            raise ValueError(f"denoising.noise must be in [0, 1] with kind = 'mask' (the fraction zeroed), "
                             f"got {self.noise:g}")

    def value(self, o: Outputs) -> Tensor:
        if self.kind == "gaussian":
            corrupted = o.x + self.noise * torch.randn_like(o.x)
        else:  # mask
            corrupted = o.x * (torch.rand_like(o.x) >= self.noise)
        return _squared_error(o, o.decode(o.encode(corrupted)))


@dataclass
class Contractive(Term):
    """‖∂h/∂x‖²_F per sample (Rifai et al. 2011). Exact when ``probes`` is 0 (one backward pass per
    code unit: small codes only), else Hutchinson's unbiased estimate E_v‖Jᵀv‖², v ~ N(0, I)."""

    probes: int = 1
    name: ClassVar[str] = "contractive"
    needs: ClassVar[tuple[str, ...]] = ("encode",)
    limits: ClassVar[dict[str, Limit]] = {"probes": (lambda v: not isinstance(v, bool) and v >= 0, "an integer >= 0")}

    def value(self, o: Outputs) -> Tensor:
        x = o.x.detach().requires_grad_(True)
        h = o.encode(x).reshape(x.shape[0], -1)  # (B, n_codes)
        if self.probes == 0:
            directions = [F.one_hot(torch.full((x.shape[0],), j, device=x.device), h.shape[1]).to(h.dtype)
                          for j in range(h.shape[1])]
        else:
            directions = [torch.randn_like(h) for _ in range(self.probes)]
        total = h.new_zeros(x.shape[0])
        for v in directions:
            (jtv,) = torch.autograd.grad(h, x, grad_outputs=v, create_graph=True)
            total = total + _per_sample_sum(jtv ** 2)
        scale = 1.0 if self.probes == 0 else 1.0 / self.probes
        return scale * total.mean()


@dataclass
class CrossEntropy(Term):
    """Mean cross-entropy of ``logits`` against labels ``y`` (supervised models)."""

    name: ClassVar[str] = "cross_entropy"
    needs: ClassVar[tuple[str, ...]] = ("logits", "y")

    def value(self, o: Outputs) -> Tensor:
        return F.cross_entropy(o.logits, o.y)


@dataclass
class ContrastiveDivergence(Term):
    """Mean free energy of the data minus that of the model's (detached) negative samples: its
    gradient is the CD-k / PCD gradient of an RBM. Reads ``extra["free_energy_data"]`` and
    ``extra["free_energy_model"]``, both (B,)."""

    name: ClassVar[str] = "contrastive_divergence"

    def value(self, o: Outputs) -> Tensor:
        try:
            return o.extra["free_energy_data"].mean() - o.extra["free_energy_model"].mean()
        except KeyError as err:
            raise ValueError(f"cost term 'contrastive_divergence' needs extra[{err.args[0]!r}] from an RBM") from None


METRIC_PREFIX = "metric/"


def is_metric(part: str) -> bool:
    """True for a logged diagnostic (``metric/x`` or ``stage/metric/x``), which is not part of the total."""
    return part.startswith(METRIC_PREFIX) or f"/{METRIC_PREFIX}" in part


TERMS: dict[str, type[Term]] = {t.name: t for t in (
    Reconstruction, L1Codes, WeightL2, KLSparsity, PooledL2, Denoising, Contractive, CrossEntropy,
    ContrastiveDivergence,
)}


def split_part(name: str) -> tuple[str, str]:
    """``"stage2/l1"`` -> ("stage2", "l1"); a shared term's part is "". A ``/`` with nothing before or after it is a
    :class:`ConfigError` naming the key (``objective."/l1"`` read as a part named "")."""
    part, _, term = name.rpartition("/")
    if "/" in name and not (part and term):
        raise ConfigError(f"objective.{name}: a part's own cost term is named PART/TERM (e.g. \"stage2/l1\", as "
                          "its part is logged), with both halves", key=f"objective.{name}")
    return part, term


def make_term(name: str, spec: Any) -> Term:
    """A term from its config form: a bare weight (``l1 = 0.1``) or a table (``kl_sparsity = {weight = 3, rho =
    0.01}``); ``name`` a term (``l1``) or a part's own term (``stage2/l1``, :func:`split_part`).
    An unknown term or parameter is a one-line :class:`ConfigError` naming it and the valid ones (not a
    KeyError, which a caller that builds an Objective directly, as FeatureLearner does, would show in quotes)."""
    term = split_part(name)[1]
    if term not in TERMS:
        raise ConfigError(f"unknown cost term {name!r}{nearest(term, TERMS)}; known: {', '.join(TERMS)}",
                          key=f"objective.{name}")
    cls = TERMS[term]
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return cls(weight=float(spec))
    if not isinstance(spec, dict):
        raise TypeError(f"cost term {name!r}: expected a weight or a table, got {spec!r}")
    valid = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, val in spec.items():
        if key not in valid:
            raise ConfigError(f"cost term {name!r} has no parameter {key!r}{nearest(key, valid)}; it has {', '.join(valid)}",
                              key=f"objective.{name}.{key}")
        want = type(valid[key].default)
        if want is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if not isinstance(val, want):
            raise TypeError(f"cost term {name!r}: {key} must be {want.__name__}, got {val!r}")
        kwargs[key] = val
    return cls(**kwargs)


class Objective:
    """A weighted sum of named cost terms; terms with weight 0 are dropped. ``terms`` may hold a part's own terms
    (``"stage2/l1"``): ``self.terms`` lists every one on, ``self.own`` each part's, weight 0 (off there) included."""

    def __init__(self, terms: dict[str, Term]):
        self.terms = {name: t for name, t in terms.items() if t.weight != 0.0}
        if not self.terms:
            raise ValueError("the objective has no cost term with a non-zero weight")
        self.own: dict[str, dict[str, Term]] = {}        # part -> term -> its own Term (weight 0: off in that part)
        for name, t in terms.items():
            part, term = split_part(name)
            if part:
                self.own.setdefault(part, {})[term] = t
        self._terms_of: dict[tuple[str, tuple[str, ...] | None], dict[str, Term]] = {}   # terms_of's answers

    def uses(self, term: str) -> bool:
        """Whether ``term`` is on in some part: shared (``kl_sparsity``) or a part's own (``stage2/kl_sparsity``)."""
        return any(split_part(name)[1] == term for name in self.terms)

    def check_parts(self, parts: list[str]) -> None:
        """ConfigError naming ``objective.PART/TERM`` for a part's own term whose part is not one of ``parts``, the
        parts the model trains (its ``forward_train`` keys, every stage at once): it would never be read. The one
        check of train's preflight, FeatureLearner.fit and ``downpour plan``, each its own words before it (the
        plan's cat network gives its stages, counted on paper; the others :meth:`check_model_parts`)."""
        for part, own in self.own.items():
            if part not in parts:
                named = [p for p in parts if p] or ["none: the model is one part, its terms the shared ones"]
                key = f"objective.{part}/{next(iter(own))}"
                raise ConfigError(f"{key}: the model has no part {part!r}{nearest(part, parts)}; its parts: "
                                  f"{', '.join(named)}", key=key)

    def check_model_parts(self, model: torch.nn.Module, batch: Batch) -> None:
        """:meth:`check_parts` on the parts ``model`` trains, its ``forward_train`` keys on ``batch``. The forward runs
        on a copy (a persistent-CD model's moves its chains) without gradients under a forked RNG (it may draw:
        dropout), so the model and the caller's RNG are left as they were; an objective with no part's own term has
        nothing to check, and no copy is made."""
        if not self.own:
            return
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            parts = list(copy.deepcopy(model).forward_train(batch))
        self.check_parts(parts)

    def terms_of(self, part: str, costs: tuple[str, ...] | None = None) -> dict[str, Term]:
        """The terms ``part`` takes (the logged name without the part): the shared ones its own replace, those of
        weight 0 dropped; ``costs`` (``Outputs.costs``), the only terms the part can take (its own outside it:
        ValueError). Fixed once the objective is built, so worked out on a part's first step and kept: the same dict
        on every later call (read it, do not change it)."""
        if (part, costs) not in self._terms_of:
            self._terms_of[part, costs] = self._work_out_terms_of(part, costs)
        return self._terms_of[part, costs]

    def _work_out_terms_of(self, part: str, costs: tuple[str, ...] | None) -> dict[str, Term]:
        own = self.own.get(part, {})
        if costs is not None and (wrong := [n for n, t in own.items() if t.weight and n not in costs]):
            raise ValueError(f"cost term '{part}/{wrong[0]}': model part '{part}' takes only the cost terms "
                             f"{list(costs)}")
        shared = {n: t for n, t in self.terms.items() if "/" not in n and n not in own}
        return {n: t for n, t in (shared | own).items() if t.weight and (costs is None or n in costs)}

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> "Objective":
        return cls({name: make_term(name, value) for name, value in spec.items()})

    def __call__(self, outputs: dict[str, Outputs]) -> tuple[Tensor, dict[str, Tensor]]:
        """Total and parts; a part is named ``term`` for a one-part model, ``part/term`` otherwise."""
        parts: dict[str, Tensor] = {}
        for where, o in outputs.items():
            terms = self.terms_of(where, o.costs)
            if not terms and o.costs is None:   # its own terms turned every shared one off: it would never train
                own = ", ".join(f"{where}/{n}" for n in self.own.get(where, {}))
                raise ValueError(f"model part '{where}' has no cost term with a non-zero weight: its own terms "
                                 f"({own}) turn off the shared ones")
            if not terms:   # a part that takes none of the terms would never train, unsaid
                raise ValueError(f"model part '{where or 'model'}' takes only the cost terms {list(o.costs or ())}, "
                                 f"and the objective has none of them ({', '.join(self.terms)})")
            for name, term in terms.items():
                parts[f"{where}/{name}" if where else name] = term(o, where)
        first, *rest = parts.values()
        total = sum(rest, first)      # not sum(parts): 0 + first would add an autograd node to every step
        # Diagnostics ride along as parts, detached and outside the total, so they are logged like costs.
        for where, o in outputs.items():
            for key, value in o.extra.items():
                if key.startswith(METRIC_PREFIX):
                    parts[f"{where}/{key}" if where else key] = value.detach()
        return total, parts

    def __repr__(self) -> str:
        return f"Objective({', '.join(f'{n}={t.weight:g}' for n, t in self.terms.items())})"
