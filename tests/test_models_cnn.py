"""CNN and its locally connected twin: one step of every variant, the twins' shapes, learning digits."""
import numpy as np
import pytest
import torch

from downpour.batch import Batch
from downpour.data.builtin import digits
from downpour.errors import ConfigError
from downpour.models.cnn import CNN, CNNConfig
from downpour.models.registry import create_model, list_models, model_entry
from downpour.objectives import Objective
from downpour.train.step import train_step

CNN_MODELS = [e.name for e in list_models() if e.family is CNN]


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny nets: see conftest.py


@pytest.mark.parametrize("name", CNN_MODELS)
def test_one_step_of_every_variant(name):
    torch.manual_seed(0)
    entry = model_entry(name)
    assert "supervised" in entry.tags and entry.family.supervised
    model = create_model(name)
    x = torch.rand(6, *entry.input_shape)
    y = torch.arange(6) % model.config.classes
    result = train_step(model, Objective.from_config(entry.objective), Batch(x, y))
    assert np.isfinite(result.loss) and set(result.parts) == {"cross_entropy"}
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    assert model(x).shape == (6, model.config.hidden)
    assert model.logits(x).shape == (6, model.config.classes)
    for layer in model.feature_layers():
        assert model.features(x, layer).shape[0] == 6
    assert model.first_layer_filters().shape[1:] == (entry.input_shape[0], model.config.kernel, model.config.kernel)


@pytest.mark.parametrize("name", CNN_MODELS)
def test_the_analysis_reads_the_fc_codes_not_the_class_scores_by_default(name):
    """The analysis (face test, best-neuron table, study probes) read the CNN's last layer, its logits: a linear
    readout of fc trained on the labels (on cnn-faces the face label itself), so its 'face unit' was the target."""
    from downpour.analysis.units import check_layer

    model = create_model(name)
    assert model.feature_layers()[-1] == "logits"         # still listed (and probed), just not the default
    assert check_layer(model, "") == check_layer(model, None) == "fc"
    assert check_layer(model, "logits", "analysis.layer") == "logits"     # analysis.layer still overrides
    x = torch.rand(3, *model_entry(name).input_shape)
    assert torch.equal(model.features(x), model.features(x, "fc"))


def test_the_twins_differ_only_in_weight_sharing():
    conv, local = create_model("cnn-digits"), create_model("lcn-digits")
    x = torch.rand(3, 1, 8, 8)
    for layer in conv.feature_layers():
        assert conv.features(x, layer).shape == local.features(x, layer).shape
    # 8x8 -> 6x6 after the first 3x3 layer: one bank shared vs a bank at each of the 36 positions.
    assert conv.filters[0].weight.shape == (1, 1, 16, 1, 3, 3)
    assert local.filters[0].weight.shape == (6, 6, 16, 1, 3, 3)
    assert local.first_layer_filters().shape == (36 * 16, 1, 3, 3)
    tiled = CNN(CNNConfig(tile=2), (1, 8, 8))
    assert tiled.filters[0].weight.shape == (2, 2, 16, 1, 3, 3)


def test_untied_equals_conv_when_every_position_holds_the_same_filters():
    torch.manual_seed(0)
    conv, local = create_model("cnn-digits"), create_model("lcn-digits")
    with torch.no_grad():
        for c, l in zip(conv.filters, local.filters):
            l.weight.copy_(c.weight.expand_as(l.weight))
            l.bias.copy_(c.bias.expand_as(l.bias))
        local.fc.load_state_dict(conv.fc.state_dict())
        local.classifier.load_state_dict(conv.classifier.state_dict())
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(conv.logits(x), local.logits(x), atol=1e-5)


@pytest.mark.parametrize("name", ["cnn-digits", "lcn-digits"])
def test_learns_digits_on_a_held_out_split(name):
    d = digits()
    order = torch.randperm(len(d.x), generator=torch.Generator().manual_seed(0))
    tr, te = order[:1300], order[1300:]
    torch.manual_seed(0)
    model = create_model(name)
    objective = Objective.from_config(model_entry(name).objective)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        idx = tr[torch.randint(0, len(tr), (32,), generator=g)]
        train_step(model, objective, Batch(d.x[idx], d.y[idx]))
        opt.step()
    accuracy = (model.predict(d.x[te]) == d.y[te]).float().mean().item()
    assert accuracy > 0.85, accuracy


def test_clear_errors():
    model = create_model("cnn-digits")
    with pytest.raises(ValueError, match="supervised.*labels"):
        model.forward_train(Batch(torch.rand(2, 1, 8, 8)))
    with pytest.raises(ValueError, match="model.classes"):
        model.forward_train(Batch(torch.rand(2, 1, 8, 8), torch.tensor([3, 12])))
    with pytest.raises(ValueError, match="built for inputs"):
        model(torch.rand(2, 1, 9, 9))
    with pytest.raises(ConfigError, match="model.kernel") as err:
        CNN(CNNConfig(maps=(8, 8, 8), pools=(1, 1, 1), kernel=3), (1, 6, 6))
    assert err.value.key == "model.kernel"       # (so preflight names the file or --set that set it)
    with pytest.raises(ConfigError, match=r"smaller than its pool 8 \(model.pools = \[8\]\)") as err:
        CNN(CNNConfig(maps=(8,), pools=(8,), kernel=3), (1, 8, 8))
    assert err.value.key == "model.pools"
    with pytest.raises(KeyError, match="conv1"):
        model.features(torch.rand(2, 1, 8, 8), "conv9")
    for key, value in (("pools", [-3, 2]), ("pools", [0, 2]), ("maps", [0, 32])):   # pool <= 1 passed as "no pool"
        with pytest.raises(ValueError, match=f"every value of model.{key} must be >= 1"):
            create_model("cnn-digits", **{key: value})
