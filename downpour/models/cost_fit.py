"""What a cost term needs of the model it trains, checked on the built model before any step: a term
that would be clamped into giving no gradient, or one that would change nothing the network computes,
is a ConfigError naming it. Run by preflight for every run, and by the scikit-learn learner (which
builds its model without a run config).
"""
from __future__ import annotations

import copy
import math

import torch

from downpour._names import listed
from downpour.batch import Batch
from downpour.config import ConfigError
from downpour.models.base import FeatureModel
from downpour.objectives import Objective


def check_cost_fits(name: str, model: FeatureModel, objective: Objective, shape: tuple[int, ...]) -> None:
    """ConfigError naming the first term of ``objective`` that model ``name``, built for samples of
    ``shape``, cannot train with. Draws nothing from torch's RNG (a model's forward may: dropout)."""
    with torch.random.fork_rng(devices=[]):
        _check_kl_codes(name, model, objective, shape)
    _check_weight_decay(name, model, objective)


SCALES = (1.0, 1000.0)     # the probe batches' sizes: a ReLU's codes grow with its input, a sigmoid's stay in (0, 1)


def _check_kl_codes(name: str, model: FeatureModel, objective: Objective, shape: tuple[int, ...]) -> None:
    """KL sparsity reads each code as a firing probability: codes outside (0, 1) are clamped there, and their units
    get no gradient from it. Refuse it on a model whose codes leave [0, 1] on a random batch it takes, at
    :data:`SCALES` times its size: codes must stay in [0, 1] for any input (a sigmoid's), and a ReLU's, unbounded
    above, pass 1 at some size. A batch of size 1 alone would refuse a ReLU autoencoder's codes (up to 3.1) and
    accept cnn-digits' ReLU codes, under 1 at that size. (A Bernoulli RBM takes only
    data in [0, 1]: its codes, sigmoid probabilities, are looked at on the uniform batch at size 1.)"""
    if not objective.uses("kl_sparsity"):
        return
    # normal batches (normalised data) and uniform ones (what a Bernoulli RBM takes, and refuses others of), each at
    # every scale, through a copy: a persistent-CD model's forward moves its chains
    probe, codes = copy.deepcopy(model), []
    for draw in (torch.randn, torch.rand):
        for scale in SCALES:
            x = scale * draw(8, *shape, generator=torch.Generator().manual_seed(0))
            try:
                with torch.no_grad():
                    out = probe.forward_train(Batch(x, torch.zeros(8, dtype=torch.int64)))
                # the parts the term reaches (a part's own, stage2/kl_sparsity, reaches that part alone)
                codes += [(scale, o.codes) for part, o in out.items() if "kl_sparsity" in objective.terms_of(part)
                          and (o.costs is None or "kl_sparsity" in o.costs)]
            except ValueError:            # data this model does not take (an RBM's range): the others tell
                continue
    if not codes:
        return
    low, high = _range([c for _, c in codes])
    if low < 0 or high > 1:
        unit_low, unit_high = _range([c for s, c in codes if s == 1])
        grew = (" (in [0, 1] at unit size: they grow with the input, as a ReLU's do)"
                if 0 <= unit_low <= unit_high <= 1 else "")
        key = _key(objective, "kl_sparsity", list(objective.own))
        raise ConfigError(f"{key} needs codes that stay in [0, 1] for any input (a sigmoid hidden "
                          f"layer, as ufldl-sae's): it reads each as a firing probability, and one outside is clamped "
                          f"and gets no gradient from it; the codes of model {name!r} range over [{low:.3g}, "
                          f"{high:.3g}] on random batches at {listed(f'{s:g}' for s in SCALES)} times unit size"
                          f"{grew}; use l1 or pooled_l2 instead", key=key)


def _key(objective: Objective, term: str, parts: list[str]) -> str:
    """The config key that puts ``term`` in one of ``parts``: the first of those parts' own (``objective.stage2/l1``)
    that is on, else the shared one (``objective.l1``)."""
    own = [p for p in parts if (t := objective.own.get(p, {}).get(term)) is not None and t.weight]
    return f"objective.{own[0]}/{term}" if own else f"objective.{term}"


def _range(codes: list[torch.Tensor]) -> tuple[float, float]:
    """The least and greatest of ``codes``; (inf, -inf) where there are none (no range holds nothing)."""
    return (min((float(c.min()) for c in codes), default=math.inf),
            max((float(c.max()) for c in codes), default=-math.inf))


def _check_weight_decay(name: str, model: FeatureModel, objective: Objective) -> None:
    """A stage whose filters are used at a fixed norm (``model.filter_norm``) through a tied decoder has
    no weight whose size the network uses: weight_l2 would shrink the free length of the filters'
    directions, changing nothing but the logged number and the optimiser's effective step."""
    fixed = [i for i, stage in enumerate(getattr(model, "stages", ()), start=1)
             if getattr(getattr(stage, "filter", None), "norm", None) is not None
             and getattr(stage, "decoder_weight", False) is None]
    decayed = [i for i in fixed if "weight_l2" in objective.terms_of(f"stage{i}")]
    if decayed:
        key = _key(objective, "weight_l2", [f"stage{i}" for i in decayed])
        raise ConfigError(f"{key} on model {name!r}: stage(s) {fixed} use their filters at a "
                          f"fixed norm (model.filter_norm) through a tied decoder, so the decay would only shrink the "
                          f"filters' free length and change nothing the network computes; set model.filter_norm = 0 "
                          f"(free filters) or drop the term", key=key)
