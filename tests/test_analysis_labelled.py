"""Labelled sets for analysis: built-in sets and class-folders at the model's input shape, prepared like training data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from downpour.analysis.labelled import load_labelled, resize_to
from downpour.data.preprocess import Preprocess
from downpour.errors import DataError


def test_lfw_heldout_is_resized_and_normalised_like_training():
    data = load_labelled("lfw", (1, 16, 16), prepare=Preprocess(normalize="patch"))
    assert data.x.shape == (60, 1, 16, 16) and data.x.dtype == torch.float32
    assert data.counts() == {"non-face": 30, "face": 30}
    per_image = data.x.reshape(60, -1)
    assert torch.allclose(per_image.mean(dim=1), torch.zeros(60), atol=1e-5)   # "patch": each image centred
    assert data.info["normalize"] == "patch" and data.info["whitened"] is False


def test_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    data = load_labelled(str(tmp_path), (1, 12, 12))
    assert data.x.shape == (6, 1, 12, 12)
    assert data.classes == ["cats", "dogs"] and sorted(data.y.tolist()) == [0, 0, 0, 1, 1, 1]


def test_bad_sets_fail_clearly(tmp_path):
    with pytest.raises(DataError, match="neither a built-in set"):
        load_labelled(str(tmp_path / "nope"), (1, 8, 8))
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError, match="one sub-folder per class"):
        load_labelled(str(tmp_path), (1, 8, 8))


def test_resize_maps_channels():
    grey = torch.rand(2, 1, 8, 8)
    assert resize_to(grey, (3, 4, 4)).shape == (2, 3, 4, 4)
    assert torch.allclose(resize_to(grey.repeat(1, 3, 1, 1), (1, 8, 8)), grey)      # colour -> grey averages
    with pytest.raises(ValueError, match="2-channel"):
        resize_to(torch.rand(1, 2, 8, 8), (3, 8, 8))


def test_raw_keeps_the_native_images_for_the_baselines():
    from downpour.data import lfw_split

    for shape, prepare in (((1, 16, 16), Preprocess(normalize="patch")), ((3, 32, 32), None)):
        data = load_labelled("lfw", shape, prepare=prepare)
        assert data.x.shape[1:] == shape
        assert torch.equal(data.raw, lfw_split(size=25)["heldout"].x)        # native 25x25 grey, [0, 1], unprepared
    digits = load_labelled("digits", (1, 16, 16), prepare=Preprocess(normalize="patch"))
    assert digits.raw.shape[1:] == (1, 8, 8) and float(digits.raw.min()) >= 0.0


def test_a_folder_set_keeps_its_resized_but_unprepared_images(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((12, 12), 200, np.uint8)).save(tmp_path / name / "0.png")
    data = load_labelled(str(tmp_path), (1, 12, 12), prepare=lambda x: x - 1.0)
    assert torch.allclose(data.raw, data.x + 1.0) and data.raw.shape == data.x.shape


def test_a_folders_images_enlarged_to_the_models_input_are_recorded_and_said_as_the_analysis_records_them(tmp_path,
                                                                                                        caplog):
    """A concept folder's 20x20 images tested as 32x32 blurs: the warning named a data.json no analysis writes and said
    to lower data.size (the trained model's input), and the labelled set's info, analysis.json's, dropped the count."""
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    with caplog.at_level("WARNING", logger="downpour.data"):
        data = load_labelled(str(tmp_path), (1, 32, 32))
    assert data.info["n_upscaled"] == 4 and data.info["upscaled"][0] == {"file": str(tmp_path / "cats" / "0.png"),
                                                                         "size": "20x20"}
    said = [m for m in caplog.messages if "crops mode enlarged 4 files" in m]
    assert len(said) == 1 and "data.json" not in said[0] and "lower data.size" not in said[0]
    assert "analysis.json's labelled_set counts them" in said[0]
