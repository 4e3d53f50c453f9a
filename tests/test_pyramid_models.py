"""The registered multi-resolution models: shapes, training through the shared step, options."""
import pytest
import torch

from downpour.batch import Batch
from downpour.models.registry import create_model, model_entry
from downpour.objectives import Objective
from downpour.train.step import train_step


@pytest.mark.parametrize("name,codes", [("pyramid-rica", (4, 14, 14)), ("glimpse-rica", (12, 4, 4)),
                                        ("multires-none", (4, 14, 14))])
def test_variants_encode_and_train(name, codes):
    torch.manual_seed(0)
    model = create_model(name)
    objective = Objective.from_config(model_entry(name).objective)
    x = torch.rand(6, 1, 32, 32)
    assert model(x).shape == (6, *codes)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        losses.append(train_step(model, objective, Batch(x)).loss)
        opt.step()
    assert losses[-1] < losses[0]


def test_pyramid_stage_sees_every_level_and_options_apply():
    model = create_model("pyramid-rica", levels=2, pyramid="gaussian", tile=1)
    assert model.stage.filter.weight.shape == (1, 1, 4, 2, 6, 6)   # tied filters over 2 stacked levels
    frozen = create_model("pyramid-rica", first_layer="gabor")
    assert not frozen.stage.filter.weight.requires_grad
    with pytest.raises(ValueError, match="model.front must be"):
        create_model("pyramid-rica", front="fovea")


@pytest.mark.parametrize("name, key, too_big, fits", [
    ("glimpse-rica", "glimpse_size", 33, 32),
    ("glimpse-rica", "kernel_size", 13, 12),        # the stage sees one 12x12 glimpse
    ("pyramid-rica", "kernel_size", 33, 32),
    ("pyramid-rica", "levels", 7, 6),               # 32, 16, 8, 4, 2, 1: six levels fit
])
def test_a_shape_that_does_not_fit_names_its_key_when_the_model_is_built(name, key, too_big, fits):
    """The layers' own errors named a value ("in_size (12, 12) is smaller than kernel_size 13"), on the first batch."""
    from downpour.errors import ConfigError

    with pytest.raises(ConfigError, match=f"model.{key} = {too_big}") as err:
        create_model(name, (1, 32, 32), **{key: too_big})
    assert err.value.key == f"model.{key}"
    model = create_model(name, (1, 32, 32), **{key: fits})
    model(torch.randn(2, 1, 32, 32))
