"""A supervised digits run's own classifier, on the digits it trained on and on those data.digits_heldout kept from
it (analysis.json's classifier): the split is the run's, disjoint from what it trained on, and a memoriser scores
chance."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from downpour.analysis import heldout
from downpour.analysis.heldout import classifier_part, scored
from downpour.analysis.labelled import load_labelled
from downpour.analysis.options import open_run, run_preprocess
from downpour.config import load_config
from downpour.data import build_dataset
from downpour.data.builtin import digits
from downpour.data.digits_split import digits_split
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")   # a tiny net: see conftest.py


def test_the_digits_a_run_trains_on_are_the_split_s_training_part_and_none_it_holds_out():
    cfg = load_config("cnn-digits", ["seed=3"])
    assert cfg.data.digits_heldout == 0.2              # the preset holds a fifth out
    parts = digits_split(1797, 0.2, 3)
    assert len(parts["heldout"]) == 359 and len(parts["train"]) == 1438
    assert not set(parts["train"]) & set(parts["heldout"])
    trained = build_dataset(cfg.data, seed=3)
    assert trained.info["digits_heldout"] == {"fraction": 0.2, "seed": 3, "train": 1438, "heldout": 359}
    every = digits()
    # the very rows it trains on (shuffled): the training part's, as a multiset of images, never a held-out one's
    rows = sorted(r.tobytes() for r in trained.x.numpy())
    assert rows == sorted(every.x[i].numpy().tobytes() for i in parts["train"])
    assert sorted(trained.y.tolist()) == sorted(every.y[parts["train"]].tolist())
    assert not np.array_equal(digits_split(1797, 0.2, 4)["heldout"], parts["heldout"])    # the seed draws it


def test_a_run_s_analysis_scores_its_classifier_on_its_own_held_out_digits(tmp_path):
    path = tmp_path / "cnn"
    cfg = load_config("cnn-digits", ["train.steps=60", "train.tensorboard=false", "seed=1"])
    run = RunDir.create(path, cfg)
    run_local(cfg, run)
    run, model = open_run(path)
    c = classifier_part(run.config, model, (1, 8, 8), run_preprocess(run))["classifier"]
    assert c["split"] == {"fraction": 0.2, "seed": 1, "train": 1438, "heldout": 359}
    assert (c["train"]["n"], c["heldout"]["n"]) == (1438, 359)
    for part in (c["train"], c["heldout"]):
        assert part["ci"][0] <= part["accuracy"] <= part["ci"][1]
        assert part["accuracy"] > 0.5          # 60 steps of Adam learn the digits well past chance (0.10)


class _Memoriser:
    """Knows each training digit's label by its exact pixels; any other digit gets a seeded guess."""
    supervised = True

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.known = {row.numpy().tobytes(): int(label) for row, label in zip(x, y)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        guesses = torch.randint(0, 10, (len(x),), generator=torch.Generator().manual_seed(0))
        return torch.tensor([self.known.get(row.numpy().tobytes(), int(g)) for row, g in zip(x, guesses)])


def test_a_classifier_that_memorises_its_training_digits_scores_chance_on_the_held_out_ones():
    cfg = load_config("cnn-digits", ["seed=5"])
    trained = build_dataset(cfg.data, seed=5)
    c = classifier_part(cfg, _Memoriser(trained.x, trained.y), (1, 8, 8), None)["classifier"]
    assert c["train"]["accuracy"] == 1.0
    low, high = c["heldout"]["ci"]
    assert low < 0.1 < high and high < 0.2, c["heldout"]     # chance is 10 classes' 0.10; a leak would lift it


def test_a_run_that_held_out_no_digit_says_so_and_gives_no_held_out_figure():
    y = digits().y.numpy()
    c = scored(y, y, 0.0, 0)
    assert c["heldout"] is None and c["train"]["n"] == 1797 and c["train"]["accuracy"] == 1.0
    assert "trained on every digit shipped (1,797" in c["note"]
    assert classifier_part(load_config("cnn-digits"), object(), (1, 8, 8), None) == {}    # no classifier of its own



def test_the_terminal_and_the_report_say_the_held_out_accuracy_first(tmp_path):
    """`downpour analyze`'s headline and the report's "In short" open on it, beside the training digits' figure."""
    from downpour.analysis.report import _classifier
    from downpour.analysis.report_guide import in_short
    from downpour.cli_analyze import headline

    y = digits().y.numpy()
    predicted, wrong = y.copy(), digits_split(len(y), 0.2, 0)["heldout"][:36]     # 323 of the 359 right: 90.0%
    predicted[wrong] = (y[wrong] + 1) % 10
    (tmp_path / "analysis.json").write_text(json.dumps({"classifier": scored(predicted, y, 0.2, 0)}))
    said = headline(tmp_path).splitlines()[0]
    assert said.startswith("downpour: classifier: 90.0% [") and "on 359 held-out digits, against 100.0% [" in said
    assert "on the 1,438 trained on" in said
    assert "Classifier accuracy</a>: 90.0% [" in in_short({"classifier": scored(predicted, y, 0.2, 0)}, "face test")
    (tmp_path / "analysis.json").write_text(json.dumps({"classifier": scored(y, y, 0.0, 0)}))
    assert "no held-out digit (data.digits_heldout = 0): 100.0% [" in headline(tmp_path)
    page = _classifier({"classifier": scored(y, y, 0.0, 0)})
    assert "Held-out accuracy: none: the run trained on every digit shipped (1,797" in page
    assert "held-out digits (never trained on)" not in page and "<td>1,797</td><td>100.0% [" in page


def test_the_digits_the_analysis_has_loaded_are_scored_as_those_it_would_load(monkeypatch):
    cfg = load_config("cnn-digits", ["seed=5"])
    trained = build_dataset(cfg.data, seed=5)
    model = _Memoriser(trained.x, trained.y)
    loaded = load_labelled("digits", (1, 8, 8), prepare=None)
    fresh = classifier_part(cfg, model, (1, 8, 8), None)
    monkeypatch.setattr(heldout, "load_labelled", lambda *a, **k: pytest.fail("loaded the digits again"))
    assert classifier_part(cfg, model, (1, 8, 8), None, loaded) == fresh
    lfw_named = dataclasses.replace(loaded, name="lfw")
    with pytest.raises(ValueError, match="'lfw'"):
        classifier_part(cfg, model, (1, 8, 8), None, lfw_named)
