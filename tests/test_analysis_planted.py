"""Best single neuron on planted models: a unit wired to a face template must be found and score near 100%.

Also home to the small planted models the other analysis tests import.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from downpour.analysis.labelled import LabelledSet
from downpour.analysis.choice import threshold_scan
from downpour.analysis.selectivity import best_unit, face_neuron_table, split
from downpour.analysis.units import randomized_copy, unit_responses
from downpour.batch import Batch, Outputs
from downpour.errors import DataError
from downpour.models.base import FeatureModel


class PlantedModel(FeatureModel):
    """A dense layer of ``n_units`` (B, C·H·W) -> (B, n_units); ``plant(unit, w, b)`` wires one unit by hand.

    Inputs are centred and scaled to unit norm per image first (like correlating with a template).
    """

    def __init__(self, input_shape: tuple[int, ...], n_units: int = 12, seed: int = 0):
        super().__init__()
        self.input_shape = tuple(input_shape)
        d = int(np.prod(input_shape))
        self.encoder = nn.Linear(d, n_units)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            self.encoder.weight.copy_(torch.randn(n_units, d, generator=g) / np.sqrt(d))
            self.encoder.bias.zero_()

    def plant(self, unit: int, weight: Tensor, bias: float = 0.0) -> None:
        with torch.no_grad():
            self.encoder.weight[unit] = weight.reshape(-1)
            self.encoder.bias[unit] = bias

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        flat = flat - flat.mean(dim=1, keepdim=True)
        flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-8)
        return self.encoder(flat)


class TinyAutoencoder(FeatureModel):
    """A trainable dense autoencoder (B, C, H, W) -> (B, hidden) codes, for sklearn-wrapper tests."""

    def __init__(self, input_shape: tuple[int, ...], hidden: int = 16):
        super().__init__()
        self.input_shape = tuple(input_shape)
        d = int(np.prod(input_shape))
        self.enc = nn.Linear(d, hidden)
        self.dec = nn.Linear(hidden, d)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.enc(x.reshape(x.shape[0], -1)))

    def forward_train(self, batch: Batch) -> dict[str, Outputs]:
        h = self(batch.x)
        return {"": Outputs(x=batch.x, codes=h, recon=self.dec(h).reshape(batch.x.shape), weights=(self.enc.weight,))}


def lfw_all(size: int = 25) -> LabelledSet:
    """All 200 lfw_subset images (faces = 1) as a LabelledSet (the data layer's ``lfw_all``)."""
    from downpour.data import lfw_all as every

    data = every(size=size)
    return LabelledSet("lfw-all", data.x, data.y.numpy(), ["non-face", "face"])


def planted_face_model(data: LabelledSet, unit: int = 7) -> PlantedModel:
    """A PlantedModel whose ``unit`` is the face template: the direction that separates faces in ``data``."""
    model = PlantedModel(tuple(data.x.shape[1:]))
    flat = data.x.reshape(len(data), -1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    flat = (flat / flat.norm(dim=1, keepdim=True)).double().numpy()   # what the model's units see
    clf = LogisticRegression(C=100.0, max_iter=5000).fit(flat, data.y)
    model.plant(unit, torch.as_tensor(clf.coef_[0], dtype=torch.float32), float(clf.intercept_[0]))
    return model


@pytest.fixture(scope="module")
def faces() -> LabelledSet:
    return lfw_all()


def test_threshold_scan_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(2, 12))
        scores = rng.integers(0, 4, (n, 3)).astype(float)   # many ties
        y = rng.integers(0, 2, n)
        acc, threshold, sign = threshold_scan(scores, y)
        for j in range(3):
            best = max(((g * (scores[:, j] - t) > 0) == y.astype(bool)).mean()
                       for t in np.r_[scores[:, j] - 0.5, scores[:, j] + 0.5] for g in (1, -1))
            assert acc[j] == pytest.approx(best)
            assert ((sign[j] * (scores[:, j] - threshold[j]) > 0) == y.astype(bool)).mean() == pytest.approx(acc[j])


def test_best_unit_picks_the_separating_column():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    scores = np.stack([np.zeros(8), -3.0 * y + 0.1 * np.arange(8), np.arange(8.0)], axis=1)
    idx = np.arange(8)
    result = best_unit(scores, y, idx, idx)
    assert result["unit"] == 1 and result["sign"] == -1 and result["test_accuracy"] == 1.0


def test_planted_face_unit_is_found_with_near_perfect_accuracy(faces):
    model = planted_face_model(faces, unit=7)
    table = face_neuron_table(model, faces, seed=3, n_random_filters=300)
    learned, chance, random_net, pixel, filters, linear = table["rows"]
    assert learned["unit"] == 7
    assert learned["test_accuracy"] >= 0.97
    assert table["paper_style"]["unit"] == 7 and table["paper_style"]["test_accuracy"] >= 0.98
    assert chance["test_accuracy"] == pytest.approx(0.5)
    # The baselines are computed and are below the planted unit (random weights far below).
    assert random_net["test_accuracy"] < learned["test_accuracy"] - 0.1
    for row in (pixel, filters, linear):
        assert 0.5 <= row["test_accuracy"] <= learned["test_accuracy"] + 1e-9
    assert table["split"] == {"seed": 3, "test_fraction": 0.5, "selection": 100, "test": 100, "positives_in_test": 50}


def test_table_is_reproducible_from_its_seed(faces):
    model = planted_face_model(faces)
    a = face_neuron_table(model, faces, seed=1, n_random_filters=50)
    b = face_neuron_table(model, faces, seed=1, n_random_filters=50)
    c = face_neuron_table(model, faces, seed=2, n_random_filters=50)
    assert a == b
    assert split(faces.y, 0.5, 1)[1].tolist() != split(faces.y, 0.5, 2)[1].tolist()
    # the pixel baseline and the learned unit's threshold depend on the seed only through the split
    # (random filters and random weights are drawn from the seed as well, so they differ anyway)
    assert a["rows"][3] != c["rows"][3] and a["rows"][0]["threshold"] != c["rows"][0]["threshold"]


def test_without_a_planted_unit_no_unit_is_near_perfect(faces):
    table = face_neuron_table(PlantedModel(tuple(faces.x.shape[1:])), faces, seed=0, n_random_filters=50)
    assert table["rows"][0]["test_accuracy"] < 0.9


def test_randomized_copy_replaces_every_weight(faces):
    model = planted_face_model(faces)
    twin, note = randomized_copy(model, seed=0)
    assert note == "reset_parameters"
    assert not torch.equal(twin.encoder.weight, model.encoder.weight)
    assert unit_responses(twin, faces.x[:4]).shape == (4, 12)


def test_one_class_only_is_a_clear_error(faces):
    only_faces = LabelledSet("faces", faces.x[faces.y == 1], faces.y[faces.y == 1], faces.classes)
    with pytest.raises(DataError, match="both classes"):
        face_neuron_table(PlantedModel(tuple(faces.x.shape[1:])), only_faces)


def test_table_baselines_use_the_fixed_images_not_the_prepared_input():
    from downpour.analysis.labelled import load_labelled
    from downpour.data.preprocess import Preprocess

    plain = load_labelled("lfw", (1, 16, 16))
    prepared = load_labelled("lfw", (1, 32, 32), prepare=Preprocess(normalize="patch"))
    a = face_neuron_table(PlantedModel((1, 16, 16)), plain, seed=0, n_random_filters=100)
    b = face_neuron_table(PlantedModel((1, 32, 32)), prepared, seed=0, n_random_filters=100)
    assert a["rows"][3:] == b["rows"][3:]            # pixel, random filters, probe: the same for every run
    assert a["rows"][3]["candidates"] == 625         # the native 25x25 pixels
    assert a["representation"]["baselines"].startswith("raw images [1, 25, 25]")


@pytest.mark.parametrize("n, columns", [(12, 5), (3000, 2)])      # compared pairwise, and ranked
def test_auc_scores_match_brute_force(n, columns):
    from downpour.analysis.choice import auc_scores

    rng = np.random.default_rng(n)
    scores, y = rng.integers(0, 5, (n, columns)).astype(float), rng.integers(0, 2, n)   # many ties
    pos, neg = scores[y == 1], scores[y == 0]
    brute = [((pos[:, None, j] > neg[None, :, j]) + 0.5 * (pos[:, None, j] == neg[None, :, j])).mean() for j in range(columns)]
    np.testing.assert_allclose(auc_scores(scores, y), brute)
