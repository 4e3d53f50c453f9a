"""Every registered model: builds, one training step gives a finite loss and reaches every trainable parameter."""
import math

import pytest
import torch

from downpour.batch import Batch
from downpour.config import ConfigError
from downpour.models.registry import create_model, list_models, model_entry
from downpour.objectives import Objective
from downpour.train.flat import ParamLayout
from downpour.train.step import train_step

ENTRIES = list_models()


def example_batch(entry, n=4):
    torch.manual_seed(0)
    x = torch.rand(n, *entry.input_shape)
    y = torch.arange(n) % 2 if entry.family.supervised else None
    return Batch(x, y)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_one_step_reaches_every_parameter(entry):
    torch.manual_seed(0)
    model = create_model(entry.name)
    result = train_step(model, Objective.from_config(entry.objective), example_batch(entry))
    assert math.isfinite(result.loss) and result.parts
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{entry.name}: no gradient reaches {name}"
            assert p.grad.abs().sum() > 0, f"{entry.name}: gradient of {name} is all zero"
    codes = model(example_batch(entry).x)
    assert codes.shape[0] == 4 and torch.isfinite(codes).all()
    for layer in model.feature_layers():
        assert model.features(example_batch(entry).x, layer).shape[0] == 4


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_features_at_several_layers_are_each_layers_features_bit_for_bit(entry):
    torch.manual_seed(0)
    model = create_model(entry.name).eval()
    x = example_batch(entry).x
    layers = model.feature_layers()
    with torch.no_grad():
        for asked in (layers[::-1], layers[:1], layers[-1:]):     # top first, the bottom alone, the top alone
            got = model.features_at(x, asked)
            assert list(got) == asked
            for layer in asked:
                assert torch.equal(got[layer], model.features(x, layer)), f"{entry.name}: {layer}"


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_flat_vector_round_trip(entry):
    model = create_model(entry.name)
    layout = ParamLayout(model)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert layout.numel == sum(p.numel() for _, p in trainable) < 2 ** 24    # integers exact in float32
    # every value distinct, each parameter its own block in named_parameters order: a wrong offset
    # or two parameters swapped (an encoder's and a decoder's weights) moves some value
    vec = torch.arange(layout.numel, dtype=torch.float32)
    layout.vector_to_params(vec, model)
    start = 0
    for name, p in trainable:
        assert torch.equal(p.detach().flatten(), vec[start:start + p.numel()].to(p.dtype)), f"{entry.name}: {name}"
        start += p.numel()
    assert torch.equal(layout.params_to_vector(model), vec)
    for _, p in trainable:
        p.grad = -p.detach()
    assert torch.equal(layout.grads_to_vector(model), -vec)


def test_greedy_stages_train_one_stage_at_a_time():
    model = create_model("cat-demo")
    batch = example_batch(model_entry("cat-demo"))
    objective = Objective.from_config(model_entry("cat-demo").objective)
    model.set_stage(1)
    result = train_step(model, objective, batch)
    assert all(k.startswith("stage1/") for k in result.parts)
    assert model.stages[1].filter.weight.grad is None
    model.set_stage(2)
    result = train_step(model, objective, batch)
    assert all(k.startswith("stage2/") for k in result.parts)
    assert model.stages[0].filter.weight.grad is None and model.stages[1].filter.weight.grad is not None


def test_model_options_are_checked():
    with pytest.raises(ConfigError, match="did you mean 'hidden'"):
        create_model("ufldl-sae", hiden=3)
    with pytest.raises(ConfigError, match="model.hidden must be int"):
        create_model("ufldl-sae", hidden="many")
    with pytest.raises(ConfigError, match="did you mean 'cat-demo'"):
        create_model("cat-dem")
    with pytest.raises(ValueError, match=r"model.maps = \[8, 8, 8\] gives 3 stages but model.kernels = \[8, 5\].* "
                                         "give every per-stage list 3 entries"):
        create_model("cat-demo", maps=[8, 8, 8])
    # a dense autoencoder has no receptive field: its local keys were ignored, a TICA group clamped
    for key, value in (("kernel_size", 3), ("stride", 2), ("tile", 7)):
        with pytest.raises(ConfigError, match=f"model.{key} = {value} is not read: it applies only to encoder = 'local'"):
            create_model("ufldl-sae", (1, 8, 8), **{key: value})
    with pytest.raises(ConfigError, match="model.pool: a dense TICA group of 100"):
        create_model("ufldl-sae", (1, 8, 8), pool=100)
    assert create_model("ufldl-sae", (1, 8, 8), encoder="local", kernel_size=3, tile=2).filter.kernel_size == 3
    # a local pool of even side has no centre: the pooled map was one larger than the codes, its border pools partial
    with pytest.raises(ConfigError, match="model.pool = 2: a local TICA neighbourhood of even side"):
        create_model("rica-local", (1, 16, 16), pool=2)
    out = create_model("rica-local", (1, 16, 16), pool=3).forward_train(Batch(torch.rand(2, 1, 16, 16)))[""]
    assert out.pooled.shape == out.codes.shape
    assert create_model("tica-8x8", (1, 8, 8), pool=4).config.pool == 4          # dense groups: any size
    # a local receptive field larger than the input was the layer's error, naming no key; a pool past the code map
    # pooled the whole map (rica-local's 2x2 codes on 8x8 inputs took pool = 15)
    with pytest.raises(ConfigError, match="model.kernel_size = 20 is larger than the 8x8 input") as err:
        create_model("rica-local", (1, 8, 8), kernel_size=20)
    assert err.value.key == "model.kernel_size"
    with pytest.raises(ConfigError, match="model.pool = 15: a local TICA neighbourhood larger than the") as err:
        create_model("rica-local", (1, 8, 8), pool=15)
    assert err.value.key == "model.pool"
