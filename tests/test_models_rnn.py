"""GRU autoencoder: sequence layouts, one step of every variant, reconstruction falls on digit rows."""
import numpy as np
import pytest
import torch

from downpour.batch import Batch
from downpour.data.builtin import digits
from downpour.models.registry import create_model, list_models, model_entry
from downpour.models.rnn import RNNAutoencoder, RNNConfig
from downpour.objectives import Objective
from downpour.train.step import train_step

RNN_MODELS = [e.name for e in list_models() if e.family is RNNAutoencoder]


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny nets: see conftest.py


@pytest.mark.parametrize("shape, steps, feats", [((5, 7), 5, 7), ((2, 6, 4), 6, 8), ((3, 2, 4, 5), 3, 40)],
                         ids=["sequence", "image-rows", "video-frames"])
def test_sequence_layouts_round_trip(shape, steps, feats):
    m = RNNAutoencoder(RNNConfig(hidden=8, code=4), shape)
    x = torch.randn(2, *shape)
    seq = m.to_sequence(x)
    assert seq.shape == (2, steps, feats)
    assert torch.equal(m.from_sequence(seq), x)
    assert m.decode(m.encode(x)).shape == x.shape


def test_image_rows_are_the_steps():
    """Step t of a (C, H, W) image is row t, channels side by side."""
    m = RNNAutoencoder(RNNConfig(hidden=8, code=4), (2, 6, 4))
    x = torch.randn(1, 2, 6, 4)
    seq = m.to_sequence(x)
    assert torch.equal(seq[0, 3], torch.cat([x[0, 0, 3], x[0, 1, 3]]))


@pytest.mark.parametrize("name", RNN_MODELS)
def test_one_step_of_every_variant(name):
    torch.manual_seed(0)
    entry = model_entry(name)
    model = create_model(name)
    x = torch.rand(4, *entry.input_shape)
    result = train_step(model, Objective.from_config(entry.objective), Batch(x))
    assert np.isfinite(result.loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    assert model(x).shape == (4, model.config.code)
    assert model.first_layer_filters().shape == (model.config.hidden, 1, 1, entry.input_shape[2])


@pytest.mark.parametrize("reverse", [True, False], ids=["reversed", "forward"])
def test_reconstruction_of_digit_rows_falls(reverse):
    d = digits()
    train, held = d.x[:1300], d.x[1300:]
    torch.manual_seed(0)
    model = create_model("rnn-rows", reverse=reverse)
    objective = Objective.from_config({"reconstruction": 1.0, "weight_l2": 1e-5})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def held_error() -> float:
        with torch.no_grad():
            return 0.5 * float(((model.decode(model.encode(held)) - held) ** 2).sum(dim=(1, 2, 3)).mean())

    before = held_error()
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(train), (32,), generator=g)
        train_step(model, objective, Batch(train[idx]))
        opt.step()
    after = held_error()
    assert after < 0.3 * before, (before, after)


def test_denoising_and_contractive_terms_work_through_encode_and_decode():
    torch.manual_seed(0)
    model = create_model("rnn-rows", hidden=16, code=8)
    spec = {"reconstruction": 1.0, "denoising": {"weight": 1.0, "noise": 0.2}, "contractive": 0.1}
    result = train_step(model, Objective.from_config(spec), Batch(torch.rand(4, 1, 8, 8)))
    assert set(result.parts) == {"reconstruction", "denoising", "contractive"}
    assert all(np.isfinite(v) and v > 0 for v in result.parts.values())


def test_clear_errors():
    with pytest.raises(ValueError, match="model.output"):
        RNNAutoencoder(RNNConfig(output="relu"), (1, 8, 8))
    with pytest.raises(ValueError, match=r"\(T, F\)"):
        RNNAutoencoder(RNNConfig(), (64,))
    with pytest.raises(ValueError, match="built for inputs"):
        create_model("rnn-rows")(torch.rand(2, 1, 9, 8))


@pytest.mark.parametrize("shape, tile", [((2, 5, 3), (2, 1, 3)), ((4, 2, 3, 3), (2, 3, 3))], ids=["rows", "frames"])
def test_the_filters_are_the_candidate_gates_rows_and_each_gate_is_apart(shape, tile):
    """All 3·hidden input rows came back as one bank: the reset, update and candidate gates side by side in the
    filter picture and the edge count. Each gate's block is filled with its own number, so a wrong block or a
    layout that splits a row across gates shows."""
    model = RNNAutoencoder(RNNConfig(hidden=6, code=4), shape)
    feats = model.encoder.weight_ih_l0.shape[1]
    with torch.no_grad():                             # torch's blocks: rows 0-5 reset, 6-11 update, 12-17 new
        model.encoder.weight_ih_l0.copy_(torch.cat([torch.full((6, feats), float(g)) for g in (1, 2, 3)]))
        model.encoder.weight_ih_l0[12, :] = torch.randn(feats)    # the first candidate unit: any row
    gates = model.gate_filters()
    assert list(gates) == ["reset", "update", "new"]
    assert all(g.shape == (6, *tile) for g in gates.values())
    assert (gates["reset"] == 1).all() and (gates["update"] == 2).all()
    filters = model.first_layer_filters()
    assert filters.shape == (6, *tile) and (filters[1:] == 3).all()
    # the tile lies over the pixels it weighs: its dot product with the first step's pixels (row 0 of every
    # channel, or frame 0) is what the GRU computes, W_in x_0 for that unit
    image = torch.randn(1, *shape)
    pixels = image[0, :, :1, :] if len(shape) == 3 else image[0, 0]
    step = model.to_sequence(image)[0, 0]
    assert torch.allclose((filters[0] * pixels).sum(), model.encoder.weight_ih_l0[12] @ step, atol=1e-5)
    assert RNNAutoencoder(RNNConfig(hidden=6, code=4), (5, 7)).first_layer_filters() is None
