"""The best single neuron for the user's own concept: a labelled folder of generated images (stripes, blobs, noise),
a planted detector found on held-out images, and the folder's mistakes named by key, folder and class."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from downpour.analysis.labelled import load_labelled
from downpour.analysis.options import analysis_options
from downpour.analysis.selectivity import best_unit, face_neuron_tables, over_splits, split
from downpour.analysis.units import unit_responses
from downpour.config import ConfigError, RunConfig, load_config
from downpour.errors import DataError
from downpour.models.base import FeatureModel

SIZE = 32


def _draw(kind: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """One (side, side) image in [0, 1]: a grating of random angle, frequency and phase; 2-4 Gaussian blobs; or noise."""
    y, x = np.mgrid[0:side, 0:side] / side
    if kind == "stripes":
        angle, cycles = rng.uniform(0, np.pi), rng.uniform(4, 7)
        return 0.5 + 0.4 * np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    if kind == "blobs":
        image = np.full((side, side), 0.3)
        for _ in range(rng.integers(2, 5)):
            cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
            image += 0.5 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        return np.clip(image, 0, 1)
    return np.clip(0.5 + 0.2 * rng.standard_normal((side, side)), 0, 1)


def make_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """``root/<class>/`` of generated images: PNG and JPEG, grey and RGB, 40-100 px, every other one a level deeper."""
    rng = np.random.default_rng(seed)
    for kind, n in counts.items():
        for k in range(n):
            folder = root / kind / ("deeper" if k % 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray((_draw(kind, int(rng.choice([40, 48, 64, 100])), rng) * 255).astype(np.uint8))
            image = image.convert("RGB") if k % 3 == 0 else image
            image.save(folder / f"{kind}{k}.{'jpg' if k % 2 else 'png'}")
    return root


class BandEnergyModel(FeatureModel):
    """(B, 1, H, W) -> (B, units): random linear units on the centred, unit-norm image, except ``planted``, the share of
    the image's (non-constant) spectral power at 3.5-8 cycles per image: a stripes detector by construction (a grating
    of 4-7 cycles puts nearly all its power there; blobs put theirs below, white noise spreads it over the plane)."""

    def __init__(self, input_shape: tuple[int, ...], units: int = 12, planted: int | None = 5, seed: int = 0):
        super().__init__()
        self.input_shape, self.planted = tuple(input_shape), planted
        g = torch.Generator().manual_seed(seed)
        self.encoder = nn.Linear(int(np.prod(input_shape)), units)
        with torch.no_grad():
            self.encoder.weight.copy_(torch.randn(units, int(np.prod(input_shape)), generator=g))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        flat = flat - flat.mean(dim=1, keepdim=True)
        codes = self.encoder(flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-8))
        if self.planted is None:
            return codes
        power = torch.fft.fft2(x[:, 0] - x[:, 0].mean(dim=(1, 2), keepdim=True)).abs() ** 2    # (B, H, W)
        f = torch.fft.fftfreq(x.shape[-1]) * x.shape[-1]                                        # cycles per image
        radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
        band = power[:, (radius >= 3.5) & (radius <= 8)].sum(dim=1) / power.sum(dim=(1, 2)).clamp_min(1e-12)
        return torch.cat([codes[:, :self.planted], band[:, None], codes[:, self.planted + 1:]], dim=1)


@pytest.fixture(scope="module")
def concept_folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("concept"), {"stripes": 16, "blobs": 16, "noise": 16})


def test_a_planted_stripes_unit_is_chosen_on_selection_images_and_scores_auc_near_one_on_the_others(concept_folder):
    data = load_labelled(str(concept_folder), (1, SIZE, SIZE))
    assert data.classes == ["blobs", "noise", "stripes"] and data.counts() == {"blobs": 16, "noise": 16, "stripes": 16}
    model = BandEnergyModel((1, SIZE, SIZE))
    out = over_splits(model, data, [0, 1, 2], positive=2, n_random_filters=50,
                      random_model=BandEnergyModel((1, SIZE, SIZE), planted=None, seed=1))
    first = out["first"]
    learned = first["rows"][0]
    assert first["positive_class"] == "stripes" and learned["unit"] == 5 and learned["sign"] == 1
    select, test = split((data.y == 2).astype(int), 0.5, 0)
    assert not set(select) & set(test) and first["split"]["test"] == len(test) == 24
    responses = unit_responses(model, data.x)
    # scored on the test images only, as sklearn scores them
    assert learned["test_auc"] == pytest.approx(roc_auc_score(data.y[test] == 2, responses[test, 5]))
    assert learned["test_auc"] >= 0.95 and next(s for s in out["summary"] if s["method"] == "learned unit")["auc_mean"] >= 0.95
    randoms = [roc_auc_score(data.y[test] == 2, responses[test, k]) for k in range(12) if k != 5]
    assert abs(np.mean(randoms) - 0.5) < 0.1             # a random unit: chance
    chance = next(s for s in out["summary"] if s["method"].startswith("chance"))
    assert chance["auc_mean"] == 0.5 and all("auc_std" in s for s in out["summary"])


def test_a_rare_concepts_unit_reads_below_chance_in_accuracy_and_its_test_auc_says_otherwise():
    # 4 concept images among 40 test images: the unit ranks 3 of them above every other image and the 4th above 25 of
    # the 36, but its threshold (5.5, chosen where it was perfect) lets 6 others through: accuracy 0.825, below the
    # majority's 0.9; AUC (3 * 36 + 25) / 144 = 0.924
    y = np.r_[np.ones(4), np.zeros(36), np.ones(4), np.zeros(36)].astype(int)
    score = np.r_[np.array([9.0, 8, 7, 6]), np.linspace(0, 5, 36), np.array([9.0, 8, 7, 4.5]), np.linspace(0, 6.5, 36)]
    select, test = np.arange(40), np.arange(40, 80)
    result = best_unit(score[:, None], y, select, test)
    assert result["test_accuracy"] == pytest.approx(0.825)
    assert result["test_auc"] == pytest.approx(roc_auc_score(y[test], score[test])) == pytest.approx(133 / 144)


def test_a_units_test_auc_is_oriented_as_it_was_chosen():
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    score = -np.array([0.0, 1, 5, 6, 0.5, 2, 4, 7])      # the concept lowers it
    result = best_unit(score[:, None], y, np.arange(4), np.arange(4, 8))
    assert result["sign"] == -1 and result["test_auc"] == 1.0


def test_the_concepts_number_is_the_loaders_not_a_count_of_every_sub_folder(tmp_path):
    root = make_folder(tmp_path / "set", {"blobs": 3, "stripes": 3})
    (root / "aaa-empty").mkdir()
    (root / ".thumbnails").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / ".thumbnails" / "x.png")
    assert analysis_options(RunConfig(), {"dataset": str(root), "positive": 1}).positive == 1
    with pytest.raises(ConfigError, match=r"analysis.positive = 2: .* has classes 0-1 \(0 = blobs, 1 = stripes\)"):
        analysis_options(RunConfig(), {"dataset": str(root), "positive": 2})     # 4 sub-folders, 2 classes
    only = make_folder(tmp_path / "one", {"stripes": 3})
    (only / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"analysis.dataset: .*at least 2; its images are in \['stripes'\]; the "
                                          r"sub-folder 'empty' holds no images$"):
        analysis_options(RunConfig(), {"dataset": str(only), "positive": 0})
    with pytest.raises(ConfigError, match=r"analysis.dataset: .* holds 2 images at its top level"):
        analysis_options(RunConfig(), {"dataset": str(only / "stripes"), "positive": 0})


def test_a_probe_folder_of_fewer_than_two_classes_is_refused_before_anything_is_measured(tmp_path):
    """`downpour analyze RUN --set 'analysis.probes=["concept"]'` with one class of images (the other sub-folder empty)
    measured every part, then died in scikit-learn ("This solver needs samples of at least 2 classes", a traceback,
    rc 1); a folder with no sub-folder failed there too, without its key."""
    only = make_folder(tmp_path / "one", {"cat": 3})
    (only / "other").mkdir()
    with pytest.raises(ConfigError, match=r"analysis.probes: .*at least 2; its images are in \['cat'\]; the sub-folder "
                                          r"'other' holds no images$"):
        analysis_options(RunConfig(), {"probes": [str(only)]})
    (only / "more").mkdir()
    with pytest.raises(ConfigError, match=r"\['cat'\]; the sub-folders 'more', 'other' hold no images$"):
        analysis_options(RunConfig(), {"probes": [str(only)]})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"analysis.probes: image folder .*empty' holds no image files"):
        analysis_options(RunConfig(), {"probes": ["digits", str(tmp_path / "empty")]})
    two = make_folder(tmp_path / "two", {"a": 3, "b": 3})
    assert analysis_options(RunConfig(), {"probes": [str(two), "lfw"]}).probes == [str(two), "lfw"]


def test_the_concept_can_be_named_by_its_sub_folder_and_a_wrong_name_lists_the_classes(tmp_path):
    root = make_folder(tmp_path / "set", {"blobs": 3, "noise": 3, "stripes": 3})
    (root / "aaa-empty").mkdir()                                     # no class: the names are the loader's
    assert analysis_options(RunConfig(), {"dataset": str(root), "positive": "stripes"}).positive == 2
    assert analysis_options(RunConfig(), {"dataset": str(root), "positive": "blobs"}).positive == 0
    cfg = load_config("cat-demo", [f'analysis.dataset="{root}"', 'analysis.positive="noise"'])   # as --set writes it
    assert cfg.analysis.positive == "noise" and analysis_options(cfg, {}).positive == 1
    assert analysis_options(RunConfig(), {"positive": "face"}).positive == 1 and RunConfig().analysis.runs_face_test()
    assert analysis_options(RunConfig(), {"dataset": "digits", "positive": "7"}).positive == 7
    with pytest.raises(ConfigError, match=r"analysis.positive = 'stripe': the labelled set '.*set' has no class of that "
                                          r"name \(did you mean 'stripes'\?\); its classes: 'blobs', 'noise', 'stripes' "
                                          r"\(or their numbers 0-2\)") as err:
        analysis_options(RunConfig(), {"dataset": str(root), "positive": "stripe"})
    assert err.value.key == "analysis.positive"
    with pytest.raises(ConfigError, match=r"analysis.positive = 'aaa-empty': the sub-folder .* holds no images"):
        analysis_options(RunConfig(), {"dataset": str(root), "positive": "aaa-empty"})
    with pytest.raises(ConfigError, match=r"analysis.positive must be a class's number or name, got 1.5 \(float\)"):
        analysis_options(RunConfig(), {"dataset": str(root), "positive": 1.5})
    numbers = make_folder(tmp_path / "numbered", {"10": 3, "7": 3})
    with pytest.raises(ConfigError, match=r"has classes 0-1 \(0 = 10, 1 = 7\); the class named '7' is quoted"):
        analysis_options(RunConfig(), {"dataset": str(numbers), "positive": 7})
    assert analysis_options(RunConfig(), {"dataset": str(numbers), "positive": "7"}).positive == 1


def test_a_number_that_names_another_class_is_refused_not_read_as_that_other_class(tmp_path):
    """Sub-folders 1/ and 2/ are classes 0 and 1: analysis.positive = 1 analysed the sub-folder called 2 and named it
    the concept, silently. Numbers whose classes bear their own names (digits' 0-9) stay numbers."""
    numbered = make_folder(tmp_path / "numbered", {"1": 3, "2": 3})
    with pytest.raises(ConfigError, match=r"analysis.positive = 1: the labelled set '.*numbered' numbers its classes "
                                          r"0 = 1, 1 = 2, so class number 1 is '2', not the one named '1'; name the one "
                                          r"meant, quoted: --set 'analysis.positive=\"1\"' or --set "
                                          r"'analysis.positive=\"2\"'") as err:
        analysis_options(RunConfig(), {"dataset": str(numbered), "positive": 1})
    assert err.value.key == "analysis.positive"
    assert analysis_options(RunConfig(), {"dataset": str(numbered), "positive": "1"}).positive == 0
    assert analysis_options(RunConfig(), {"dataset": str(numbered), "positive": "2"}).positive == 1
    assert analysis_options(RunConfig(), {"dataset": str(numbered), "positive": 0}).positive == 0   # no class named 0
    assert analysis_options(RunConfig(), {"dataset": "digits", "positive": 7}).positive == 7


def test_a_concept_class_of_one_image_or_of_unreadable_files_is_named_with_its_key(tmp_path):
    model = BandEnergyModel((1, SIZE, SIZE))
    root = make_folder(tmp_path / "one", {"blobs": 6, "stripes": 1})
    with pytest.raises(DataError, match=r"class 1 \('stripes', analysis.positive\) holds 1 readable image; .*analysis.dataset"):
        face_neuron_tables(model, load_labelled(str(root), (1, SIZE, SIZE)), [0], positive=1, n_random_filters=5)
    with pytest.raises(DataError, match=r"every class but 'blobs' together holds 1 readable image"):
        face_neuron_tables(model, load_labelled(str(root), (1, SIZE, SIZE)), [0], positive=0, n_random_filters=5)
    root = make_folder(tmp_path / "unread", {"blobs": 4, "noise": 4})
    (root / "zebra").mkdir()
    for name in ("a.jpg", "b.png"):
        (root / "zebra" / name).write_bytes(b"not an image")
    data = load_labelled(str(root), (1, SIZE, SIZE))
    with pytest.raises(DataError, match=r"class 2 \('zebra', analysis.positive\) holds 0 readable images \(2 of its files"):
        face_neuron_tables(model, data, [0], positive=2, n_random_filters=5)


def test_a_concept_class_too_small_to_split_is_refused_before_training(tmp_path, capsys):
    """A concept of one image file (or the other classes one together) is refused by the options, which
    `downpour train` checks before it makes its run folder: the split's own refusal (above) came after the training."""
    from downpour.cli import main
    root = make_folder(tmp_path / "one", {"blobs": 6, "stripes": 1})
    with pytest.raises(ConfigError, match=r"labelled set '.*one': class 1 \('stripes', analysis.positive\) holds 1 image "
                                          r"file; .* at least 2 of each") as err:
        analysis_options(RunConfig(), {"dataset": str(root), "positive": "stripes"})
    assert err.value.key == "analysis.dataset"
    with pytest.raises(ConfigError, match=r"every class but 'blobs' together holds 1 image file"):
        analysis_options(RunConfig(), {"dataset": str(root), "positive": 0})
    assert analysis_options(RunConfig(), {"dataset": str(make_folder(tmp_path / "two", {"blobs": 2, "stripes": 2})),
                                          "positive": 1}).positive == 1
    out = tmp_path / "run"
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--report", "--out", str(out), "--set",
                 f'analysis.dataset="{root}"', "--set", 'analysis.positive="stripes"']) == 2
    assert "holds 1 image file" in capsys.readouterr().err and not out.exists()


def test_a_folder_concept_end_to_end_records_its_set_and_the_report_names_it(tmp_path):
    from downpour.analysis.report import write_report
    from downpour.analysis.run import analyze_run
    from downpour.train.loop import run_local
    from downpour.train.rundir import RunDir

    images = make_folder(tmp_path / "train", {"stripes": 6, "blobs": 6, "noise": 6})
    labelled = make_folder(tmp_path / "labelled", {"stripes": 8, "blobs": 12, "noise": 6}, seed=1)
    cfg = load_config("cat-demo", ['data.source="folder"', f'data.path="{images}"', "train.steps=4",
                                   "train.tensorboard=false", "data.samples=200", 'data.pipeline="memory"'])
    run_local(cfg, RunDir.create(tmp_path / "run", cfg))
    a = analyze_run(tmp_path / "run", dataset=str(labelled), positive=2, splits=2, probes=[], stimulus_steps=5,
                    stimulus_restarts=1, random_filters=20, bootstrap=100, control_draws=1)
    assert a["labelled_set"]["path"] == str(labelled) and a["labelled_set"]["classes"] == ["blobs", "noise", "stripes"]
    assert a["labelled_set"]["counts"] == {"blobs": 12, "noise": 6, "stripes": 8}
    assert a["options"]["positive"] == 2 and a["face_neuron"]["positive_class"] == "stripes"
    assert all("test_auc" in r and "selection_auc" in r for r in a["face_neuron"]["rows"])
    assert a["face_neuron"]["choice"].startswith("each unit-like row's unit: its selection AUC furthest from 0.5")
    # the concept's controls, named after it, from the best single neuron's split seeds
    fn = a["face_neuron"]
    assert {r["negatives"] for r in fn["controls"]} == {"other_classes", "phase_scrambled", "block_shuffled",
                                                        "spectrum_matched_crops"}
    assert fn["controls_setup"]["concept"] == "stripes" and fn["controls_setup"]["split_seeds"] == fn["split_seeds"]
    assert fn["pictured"]["chosen_by"] == "the best single neuron of the first split"
    html = write_report(tmp_path / "run").read_text()
    assert "Concept: <b>stripes</b>" in html and "test AUC over 2 splits" in html
    assert "The unit is the one whose selection AUC is furthest from 0.5, as in the face test (ties to the larger" in html
    assert "selection AUC / acc." in html
    assert "Controls for stripes: low-level-matched negatives" in html
    assert ("(phase-scrambled stripes images, block-shuffled stripes images, spectrum-matched crops of photos; none "
            "from an image its split chose on)") in html
    assert "The face test" not in html and "lfw non-faces" not in html
    assert json.loads((tmp_path / "run" / "analysis.json").read_text())["face_neuron"]["split"]["positives_in_test"] == 4


def test_a_rare_concepts_unit_is_chosen_by_its_selection_auc_not_by_one_concept_image_on_top_of_a_decoy():
    # 5 concept images among 100 per split. Column 0 ranks them high, each just below some other image, so no threshold
    # beats the majority's 95%; each of 20 decoys has one concept image on top of its range (96%) and the others
    # anywhere. Accuracy would choose a decoy (test AUC about 0.5); the face test's rule chooses column 0.
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(5), np.zeros(95), np.ones(5), np.zeros(95)].astype(int)
    real = np.r_[9.95 - 0.5 * np.arange(5), np.linspace(0, 10, 95)]          # AUC 0.895 on each split
    decoys = rng.standard_normal((200, 20))
    decoys[0] = decoys[:100].max(axis=0) + 1.0                                # one concept image on top, selection only
    scores = np.column_stack([np.r_[real, real + rng.normal(0, 0.01, 100)], decoys])
    select, test = np.arange(100), np.arange(100, 200)
    chosen = best_unit(scores, y, select, test)
    assert chosen["unit"] == 0 and chosen["sign"] == 1
    assert chosen["selection_auc"] == pytest.approx(roc_auc_score(y[select], scores[select, 0]))
    assert chosen["selection_accuracy"] == 0.95 and chosen["test_auc"] > 0.85
    by_accuracy = best_unit(scores, y, select, test, by="accuracy")          # the paper's choice: a decoy
    assert by_accuracy["unit"] != 0 and by_accuracy["selection_accuracy"] == 0.96
    assert by_accuracy["test_auc"] < 0.7 and by_accuracy["selection_auc"] < chosen["selection_auc"]


def test_a_dataset_folder_that_does_not_exist_and_a_class_folder_without_images_are_said_to_be_so(tmp_path, monkeypatch):
    """A missing analysis.dataset was "neither a built-in labelled set (lfw, digits) nor a folder of class
    sub-folders", and analysis.positive = 'empty' (a sub-folder the user sees, holding no image) "has no class of
    that name", though it is there: neither said what was wrong with the folder."""
    with pytest.raises(ConfigError, match=r"analysis.dataset: the folder '.*gone' does not exist") as err:
        analysis_options(RunConfig(), {"dataset": str(tmp_path / "gone"), "positive": 0})
    assert err.value.key == "analysis.dataset"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"analysis.dataset: the folder 'gone' does not exist \(read as "
                                          rf"'{re.escape(str(tmp_path / 'gone'))}'\)"):
        analysis_options(RunConfig(), {"dataset": "gone", "positive": 0})
    root = make_folder(tmp_path / "concept", {"cat": 3, "other": 3})
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no image")
    said = rf"the sub-folder '{re.escape(str(root / 'empty'))}' holds no images, so it is no class of '.*concept'"
    with pytest.raises(ConfigError, match=rf"analysis.positive = 'empty': {said}; its classes: 'cat', 'other'") as err:
        analysis_options(RunConfig(), {"dataset": str(root), "positive": "empty"})
    assert err.value.key == "analysis.positive"
