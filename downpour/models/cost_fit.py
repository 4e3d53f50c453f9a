"""What a cost term needs of the model it trains, checked on the built model before any step: a term
that would be clamped into giving no gradient, or one that would change nothing the network computes,
is a ConfigError naming it. Run by preflight for every run, and by the scikit-learn learner (which
builds its model without a run config).
"""
from __future__ import annotations

import copy

import torch

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


def _check_kl_codes(name: str, model: FeatureModel, objective: Objective, shape: tuple[int, ...]) -> None:
    """KL sparsity reads each code as a firing probability: codes outside (0, 1) are clamped there, and
    their units get no gradient from it. Refuse it on a model whose codes leave [0, 1] on a random batch it
    takes (a Bernoulli RBM takes only data in [0, 1]: its codes, sigmoid probabilities, were never looked at)."""
    if "kl_sparsity" not in objective.terms:
        return
    # a normal batch (normalised data) and one in [0, 1] (what a Bernoulli RBM takes, and refuses others of),
    # through a copy: a persistent-CD model's forward moves its chains
    probe, codes = copy.deepcopy(model), []
    for x in (torch.randn(8, *shape, generator=torch.Generator().manual_seed(0)),
              torch.rand(8, *shape, generator=torch.Generator().manual_seed(0))):
        try:
            with torch.no_grad():
                codes += [o.codes for o in probe.forward_train(Batch(x, torch.zeros(8, dtype=torch.int64))).values()]
        except ValueError:            # data this model does not take (an RBM's range): the other batch tells
            continue
    if not codes:
        return
    low, high = min(float(c.min()) for c in codes), max(float(c.max()) for c in codes)
    if low < 0 or high > 1:
        raise ConfigError(f"objective.kl_sparsity needs codes in (0, 1) (a sigmoid hidden layer, as ufldl-sae's), and "
                          f"the codes of model {name!r} range over [{low:.3g}, {high:.3g}] on a random batch: outside "
                          "(0, 1) they are clamped and get no gradient from it; use l1 or pooled_l2 instead",
                          key="objective.kl_sparsity")


def _check_weight_decay(name: str, model: FeatureModel, objective: Objective) -> None:
    """A stage whose filters are used at a fixed norm (``model.filter_norm``) through a tied decoder has
    no weight whose size the network uses: weight_l2 would shrink the free length of the filters'
    directions, changing nothing but the logged number and the optimiser's effective step."""
    fixed = [i for i, stage in enumerate(getattr(model, "stages", ()), start=1)
             if getattr(getattr(stage, "filter", None), "norm", None) is not None
             and getattr(stage, "decoder_weight", False) is None]
    if "weight_l2" in objective.terms and fixed:
        raise ConfigError(f"objective.weight_l2 on model {name!r}: stage(s) {fixed} use their filters at a "
                          f"fixed norm (model.filter_norm) through a tied decoder, so the decay would only shrink the "
                          f"filters' free length and change nothing the network computes; set model.filter_norm = 0 "
                          f"(free filters) or drop the term", key="objective.weight_l2")
