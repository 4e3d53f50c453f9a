"""One config switch swaps learned, Gabor and random first layers; the frozen ones do not train."""
import pytest
import torch

from downpour.batch import Batch
from downpour.layers.gabor import GaborBank
from downpour.models.registry import create_model, model_entry
from downpour.objectives import Objective
from downpour.train.flat import ParamLayout
from downpour.train.step import train_step


def _first(model):
    if hasattr(model, "stages"):
        return model.stages[0].filter.weight
    return model.weight if getattr(model, "filter", None) is None else model.filter.weight


@pytest.mark.parametrize("name,shape", [("cat-demo", (1, 20, 20)), ("ufldl-sae", (1, 8, 8)), ("rica-local", (1, 16, 16))])
@pytest.mark.parametrize("kind", ["learned", "gabor", "random"])
def test_first_layer_switch(name, shape, kind):
    torch.manual_seed(0)
    options = {"kernels": (5, 3), "pools": (2, 2), "lcn": 3} if name == "cat-demo" else {}
    model = create_model(name, shape, first_layer=kind, **options)
    w = _first(model)
    before = w.detach().clone()
    assert w.requires_grad == (kind == "learned")
    if kind == "gabor" and before.dim() == 6:  # every position's bank is the same Gabor set
        maps, c, k = before.shape[2], before.shape[3], before.shape[-1]
        assert torch.allclose(before[-1, -1], GaborBank.sized(maps, k, c).filters()[:maps])
    objective = Objective.from_config(model_entry(name).objective)
    params = [p for p in model.parameters() if p.requires_grad]
    x = torch.rand(4, *shape)
    if params:  # RICA with a tied decoder and a frozen encoder has nothing left to train
        opt = torch.optim.SGD(params, lr=0.05)
        for _ in range(3):
            opt.zero_grad()
            train_step(model, objective, Batch(x))
            opt.step()
    assert (not torch.equal(w.detach(), before)) == (kind == "learned")
    # Frozen filters are left out of the flat vector the parameter server shards.
    total = sum(p.numel() for p in model.parameters())
    assert ParamLayout(model).numel == total - (0 if kind == "learned" else w.numel())


def test_bad_first_layer_names_the_key():
    with pytest.raises(ValueError, match="model.first_layer must be one of"):
        create_model("cat-demo", first_layer="designed")
    for kind in ("gabor", "gabor-init"):    # a 1-pixel filter minus its mean is 0: a dead (and frozen) bank
        with pytest.raises(ValueError, match="at least 2x2 pixels, got 1x1"):
            create_model("cat-demo", (1, 32, 32), first_layer=kind, kernels=[1, 5])


@pytest.mark.parametrize("name,shape", [("cat-demo", (1, 20, 20)), ("ufldl-sae", (1, 8, 8))])
def test_gabor_init_starts_from_the_bank_and_learns(name, shape):
    """``gabor-init``: the same filters as ``gabor`` at the start, but trainable, so a step changes them."""
    torch.manual_seed(0)
    options = {"kernels": (5, 3), "pools": (2, 2), "lcn": 3} if name == "cat-demo" else {}
    bank = _first(create_model(name, shape, first_layer="gabor", **options)).detach().clone()
    model = create_model(name, shape, first_layer="gabor-init", **options)
    w = _first(model)
    assert w.requires_grad and torch.equal(w.detach(), bank)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    train_step(model, Objective.from_config(model_entry(name).objective), Batch(torch.rand(4, *shape)))
    opt.step()
    assert not torch.equal(w.detach(), bank)
    assert ParamLayout(model).numel == sum(p.numel() for p in model.parameters())


def test_greedy_schedule_with_a_frozen_first_layer_is_refused_before_training():
    """Stage 1 has nothing to train: its greedy share of the steps would fail its first step."""
    from downpour.config import ConfigError, load_config
    from downpour.preflight import check_run_config

    with pytest.raises(ConfigError, match="stage 1 has nothing to train.*'gabor'.*joint"):
        check_run_config(load_config("cat-demo", [("model.first_layer", "gabor"), ("train.schedule", "greedy")]))
    check_run_config(load_config("cat-demo", [("model.first_layer", "gabor"), ("train.schedule", "joint")]))


@pytest.mark.parametrize("name", ["tica-8x8", "rica-8x8"])
def test_a_model_that_learns_only_its_first_layer_is_refused_a_frozen_one(name):
    """With a tied decoder and no bias a frozen first layer leaves nothing to train: the optimiser's
    "empty parameter list" traceback named no key."""
    from downpour.config import ConfigError, load_config
    from downpour.preflight import check_run_config

    with pytest.raises(ConfigError, match="nothing left to train with model.first_layer = 'random'"):
        check_run_config(load_config("tica-8x8", [("model.name", name), ("model.first_layer", "random")]))


@pytest.mark.parametrize("kind", ["gabor", "random", "gabor-init"])
def test_weight_decay_reads_only_the_weights_that_train(kind):
    """ufldl-sae's weight_l2 is ½ΣW² of its trained matrices: with a frozen first layer, the decoder's alone.
    It leaves out the frozen encoder's ½ΣW², a constant (0.00125 of the 0.0030 logged at the start with gabor)."""
    torch.manual_seed(0)
    model = create_model("ufldl-sae", first_layer=kind)
    objective = Objective.from_config({"reconstruction": 1.0, "weight_l2": 1.0})
    _, parts = objective(model.forward_train(Batch(torch.rand(4, 1, 8, 8))))
    trained = [model.decoder_weight] + ([model.weight] if kind == "gabor-init" else [])
    assert float(parts["weight_l2"].detach()) == pytest.approx(0.5 * sum(float((w.detach() ** 2).sum()) for w in trained))
