"""A supervised run's own classifier, on the images it trained on and on those it never saw (analysis.json's
classifier): the digits data.digits_heldout kept from it, lfw's held-out part (data.lfw_heldout) for a faces run. The
split is the run's, disjoint from what it trained on, and a memoriser scores chance."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from downpour.analysis import heldout
from downpour.analysis.heldout import classifier_part, digits_held, scored
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
        classes = max(self.known.values()) + 1
        guesses = torch.randint(0, classes, (len(x),), generator=torch.Generator().manual_seed(0))
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
    c = scored(y, y, digits_held(len(y), 0.0, 0))
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
    held = digits_held(len(y), 0.2, 0)
    (tmp_path / "analysis.json").write_text(json.dumps({"classifier": scored(predicted, y, held)}))
    said = headline(tmp_path).splitlines()[0]
    assert said.startswith("downpour: classifier: 90.0% [") and "on 359 held-out digits, against 100.0% [" in said
    assert "on the 1,438 trained on" in said
    assert "Classifier accuracy</a>: 90.0% [" in in_short({"classifier": scored(predicted, y, held)}, "face test")
    (tmp_path / "analysis.json").write_text(json.dumps({"classifier": scored(y, y, digits_held(len(y), 0.0, 0))}))
    assert "no held-out digit (data.digits_heldout = 0): 100.0% [" in headline(tmp_path)
    page = _classifier({"classifier": scored(y, y, digits_held(len(y), 0.0, 0))})
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


def _faces(*sets: str):
    return load_config("cnn-digits", ["model.name=cnn-faces", "data.source=faces", "data.size=25", "seed=5", *sets])


@pytest.mark.parametrize("sets, trained", [((), 140), (("data.train_faces=10",), 80),
                                           (("data.lfw_heldout=fold:1:4",), 150)])
def test_a_faces_run_s_classifier_is_scored_on_the_lfw_images_it_held_out_and_a_memoriser_scores_chance(sets, trained):
    """lfw's held-out part is the face test's (30 faces, 30 non-faces; a fold's 50): the classifier of a network
    that knows only its training images by heart gets them all right and guesses on the held-out ones."""
    cfg = _faces(*sets)
    data = build_dataset(cfg.data, seed=5)         # the very images the run trains on
    c = classifier_part(cfg, _Memoriser(data.x, data.y), (1, 25, 25), None)["classifier"]
    held = 200 - 150 if "data.lfw_heldout=fold:1:4" in sets else 60
    assert c["dataset"] == "lfw" and c["chance"] == 0.5
    assert (c["train"]["n"], c["heldout"]["n"]) == (trained, held)
    assert c["train"]["accuracy"] == 1.0
    low, high = c["heldout"]["ci"]
    assert low < 0.5 < high and high < 0.8, c["heldout"]       # a guess: a leaked held-out image would lift it


def test_a_faces_run_s_held_out_images_are_the_face_test_s():
    """The classifier's held-out images are load_labelled("lfw")'s, as the run's model sees them, with their labels."""
    seen = {}

    class Recorder:
        supervised = True

        def predict(self, x: torch.Tensor) -> torch.Tensor:
            seen["x"] = x
            return torch.zeros(len(x), dtype=torch.int64)      # always "non-face"

    c = classifier_part(_faces(), Recorder(), (1, 25, 25), None)["classifier"]
    lfw = load_labelled("lfw", (1, 25, 25), prepare=None)
    assert len(seen["x"]) == 200                             # every lfw image, faces 0-99 first
    assert torch.equal(torch.cat([seen["x"][70:100], seen["x"][170:200]]), lfw.x)    # faces 70-99, non-faces 170-199
    assert c["heldout"]["correct"] == int((lfw.y == 0).sum()) == 30
    assert c["split"] == {"lfw_heldout": "fixed", "train": 140, "heldout": 60}


def test_the_report_and_the_terminal_say_a_faces_run_s_held_out_lfw_accuracy(tmp_path):
    from downpour.analysis.report import _classifier
    from downpour.cli_analyze import headline

    cfg = _faces()
    y = (np.arange(200) < 100).astype(int)
    predicted = y.copy()
    predicted[[70, 71, 170]] = 1 - y[[70, 71, 170]]         # 3 of the 60 held out wrong: 95.0%
    c = scored(predicted, y, heldout.lfw_held(cfg.data))
    (tmp_path / "analysis.json").write_text(json.dumps({"classifier": c}))
    said = headline(tmp_path).splitlines()[0]
    assert said.startswith("downpour: classifier: 95.0% [") and "on 60 held-out lfw images, against 100.0% [" in said
    assert "(majority class 50.0%)" in said
    page = _classifier({"classifier": c})
    assert "60 lfw images data.lfw_heldout = &#x27;fixed&#x27; holds out of training" in page
    assert "held-out lfw images (never trained on)</td><td>60</td><td>95.0% [" in page
    assert "digits" not in page
