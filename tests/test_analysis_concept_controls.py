"""A folder concept's low-level-matched controls: a planted shape unit beats them, a planted brightness unit that the
class-vs-class table cannot tell from it fails them, and the sets are named after the concept, never faces."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from downpour.analysis.concept_controls import OTHERS, concept_controls, concept_subject
from downpour.analysis.labelled import load_labelled
from downpour.analysis.options import analysis_options
from downpour.analysis.selectivity import over_splits
from downpour.config import ConfigError, RunConfig
from downpour.models.base import FeatureModel

SIDE = 32
CONTROLS = ("phase_scrambled", "block_shuffled", "spectrum_matched_crops")
FAST = dict(n_random_filters=100, replicates=300, control_draws=2)


def _draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    """(SIDE, SIDE) in [0, 1] on a noisy grey ground: a bright ring (the concept: brighter on average than the rest,
    its identity in where its bright pixels are), 1-2 faint blobs, or the ground alone, a little darker."""
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    ground = 0.35 + 0.12 * rng.standard_normal((SIDE, SIDE))
    if kind == "rings":
        cx, cy, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.2, 0.28)
        return np.clip(ground + 0.5 * np.exp(-(np.hypot(x - cx, y - cy) - r) ** 2 / (2 * 0.03 ** 2)), 0, 1)
    if kind == "blobs":
        for _ in range(rng.integers(1, 3)):
            cx, cy, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.1)
            ground = ground + 0.3 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    return np.clip(ground - 0.05, 0, 1)


def make_rings(root: Path, n: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for kind in ("rings", "blobs", "noise"):
        (root / kind).mkdir(parents=True)
        for k in range(n):
            Image.fromarray((_draw(kind, rng) * 255).astype(np.uint8)).save(root / kind / f"{kind}{k}.png")
    return root


class PlantedUnit(FeatureModel):
    """(B, 1, H, W) -> (B, 8): random linear units on the standardised image, except unit 3: ``"ring"``, a ring's
    matched filter at its best position (a shape detector); ``"brightness"``, the mean grey value; ``None``, one more
    random unit (the random-weights twin)."""

    def __init__(self, planted: str | None, seed: int = 0):
        super().__init__()
        self.input_shape, self.planted = (1, SIDE, SIDE), planted
        g = torch.Generator().manual_seed(seed)
        self.encoder = nn.Linear(SIDE * SIDE, 8)
        with torch.no_grad():
            self.encoder.weight.copy_(torch.randn(8, SIDE * SIDE, generator=g))
        d = torch.arange(15.0) - 7
        d = (d[:, None] ** 2 + d[None, :] ** 2).sqrt()
        ring = torch.exp(-(d - 7.5) ** 2 / 2)
        self.ring = (ring - ring.mean()) / (ring - ring.mean()).norm()           # (15, 15), zero mean

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(len(x), -1)
        codes = self.encoder((flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-6))
        if self.planted == "ring":
            unit = nn.functional.conv2d(x[:, :1], self.ring[None, None]).amax(dim=(1, 2, 3))
        elif self.planted == "brightness":
            unit = flat.mean(1)
        else:
            return codes
        return torch.cat([codes[:, :3], unit[:, None], codes[:, 4:]], dim=1)


@pytest.fixture(scope="module")
def rings(tmp_path_factory):
    return load_labelled(str(make_rings(tmp_path_factory.mktemp("rings"))), (1, SIDE, SIDE))


def _test(model: FeatureModel, data, kinds=CONTROLS, seeds=(0, 1, 2)) -> dict:
    return concept_controls(model, PlantedUnit(None, seed=1), data, positive=2, layer="codes", input_shape=(1, SIDE, SIDE),
                            prepare=None, seeds=list(seeds), kinds=kinds, **FAST)


def _learned(result: dict) -> dict[str, dict]:
    return {r["negatives"]: r for r in result["rows"] if r["method"] == "learned unit"}


def test_a_planted_ring_detector_beats_every_control_of_the_rings(rings):
    assert rings.classes == ["blobs", "noise", "rings"]
    result = _test(PlantedUnit("ring"), rings)
    learned = _learned(result)
    assert list(learned) == [OTHERS, *CONTROLS] and all(r["unit"] == 3 for r in learned.values())
    for name in CONTROLS:
        assert learned[name]["auc"] > 0.95 and learned[name]["auc_ci"][0] > 0.9, name
    assert result["verdict"]["passes_low_level"] is True
    assert result["verdict"]["sentences"][0] == ("On 3 of 3 low-level-matched controls the learned unit meets the "
                                                 "criterion (phase-scrambled rings images, block-shuffled rings images, "
                                                 "spectrum-matched crops of photos), which compares point AUCs; "
                                                 "the paired intervals also put it above the random-weights twin, "
                                                 "best single pixel and gradient energy on 3 of those 3 "
                                                 "(phase-scrambled rings images, block-shuffled rings images, "
                                                 "spectrum-matched crops of photos).")


def test_a_brightness_unit_passes_the_class_table_and_fails_every_control(rings):
    model = PlantedUnit("brightness")
    # the class-vs-class table cannot tell it from a ring detector: the rings are brighter than blobs and noise
    table = over_splits(model, rings, [0, 1, 2], positive=2, n_random_filters=100, random_model=PlantedUnit(None, 1))
    first = table["first"]["rows"][0]
    assert first["unit"] == 3 and first["test_auc"] > 0.95
    result = _test(model, rings)
    learned = _learned(result)
    assert learned[OTHERS]["auc"] > 0.95
    for name in CONTROLS:                      # every control keeps the mean: chance, and the criterion not met
        assert abs(learned[name]["auc"] - 0.5) < 0.05 and learned[name]["auc_ci"][0] <= 0.5, name
    assert [p["passes"] for p in result["verdict"]["per_negatives"][1:]] == [False, False, False]
    assert result["verdict"]["passes_low_level"] is False
    assert result["verdict"]["sentences"][0] == "On 0 of 3 low-level-matched controls the learned unit meets the criterion."


def test_each_split_tests_only_controls_of_its_own_test_images_and_none_is_called_a_face(rings):
    result = _test(PlantedUnit("ring"), rings, seeds=(0,))       # one split: 10 of the 20 rings held out
    assert result["positives"] == 10 and result["concept"] == "rings"
    for name in CONTROLS:                  # 2 draws of each held-out ring; a selection ring would make 40
        assert result["negatives"][name]["images"] == 20
        assert _learned(result)[name]["test_negatives"] == 20 and _learned(result)[name]["test_positives"] == 10
    assert result["negatives"][OTHERS]["label"] == "the other classes (blobs, noise)"
    words = json.dumps([result["verdict"], {k: v["label"] for k, v in result["negatives"].items()}])
    assert "rings images" in words and "face" not in words.lower()


def test_upside_down_is_built_only_when_asked_for(rings):
    assert "upside_down" not in RunConfig().analysis.concept_controls
    result = _test(PlantedUnit("ring"), rings, kinds=("phase_scrambled", "upside_down"), seeds=(0,))
    assert [r["negatives"] for r in result["rows"] if r["method"] == "learned unit"] == [OTHERS, "phase_scrambled",
                                                                                       "upside_down"]
    assert result["negatives"]["upside_down"]["label"] == "upside-down rings images"


def test_a_control_the_folder_cannot_have_is_refused_by_its_key(rings, tmp_path):
    with pytest.raises(ConfigError, match=r"analysis.concept_controls = \['phase_scrambled', 'mirror'\]: 'mirror' is not"):
        analysis_options(RunConfig(), {"dataset": str(tmp_path), "concept_controls": ["phase_scrambled", "mirror"]})
    with pytest.raises(ConfigError, match=r"analysis.concept_controls: only a labelled folder's concept reads it, not 'digits'"):
        analysis_options(RunConfig(), {"dataset": "digits", "concept_controls": ["phase_scrambled"]})
    odd = load_labelled(rings.info["path"], (1, 31, 31))
    with pytest.raises(ConfigError, match=r"block_shuffled .* 31x31 images .* leave it out"):
        concept_subject(odd, 2, CONTROLS)
    assert concept_subject(odd, 2, ("phase_scrambled",)).blocks == 0
    assert concept_subject(rings, 2, CONTROLS).blocks == 4                 # 32 x 32: 4 x 4 blocks of 8 px


def test_a_folder_concept_with_no_controls_asked_for_is_not_told_about_the_face_test(rings):
    """analysis.concept_controls = [] on a folder: the section is not headed "The face test", nor says "the face test
    needs analysis.dataset = lfw ...; a folder's concept gets its controls from analysis.concept_controls", the key
    just set."""
    from downpour.analysis.report_controls import heading
    from downpour.analysis.run import _controls

    opts = analysis_options(RunConfig(), {"dataset": rings.info["path"], "positive": 2, "concept_controls": []})
    out = _controls(None, None, opts, "codes", (1, SIDE, SIDE), None, [0], 0, None, rings)
    assert out["controls"] == [] and out["controls_verdict"]["sentences"] == [
        "Not run: analysis.concept_controls = [] asks for no controls of 'rings'."]
    a = {"options": {"dataset": rings.info["path"]}, "face_neuron": {"positive_class": "rings", **out}}
    assert heading(a) == "Controls for rings: low-level-matched negatives"
    digits = {"options": {"dataset": "digits"}, "face_neuron": {"positive_class": "3", "controls": []}}
    assert heading(digits) == "The face test: low-level-matched negatives"
