"""Symbolic links in a data folder that lead back to a folder holding them: not followed, counted and named."""
import logging

import numpy as np
import pytest
from PIL import Image

from downpour.config import DataConfig
from downpour.data.pipeline import open_data


def _png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_a_link_loop_is_not_followed_and_data_json_and_the_log_name_it(tmp_path, caplog, pipeline):
    """``data/sub/up -> ..`` and ``data/up2 -> ../..`` (a folder above data.path) are not followed, and said: else the
    first is left out unsaid, and through the second the run reads the images beside data.path (here other/o.png) as
    its own, and nothing says so."""
    root = tmp_path / "top" / "data"
    for i in range(3):
        _png(root / "sub" / f"{i}.png", i)
    _png(tmp_path / "top" / "other" / "o.png", 9)
    (root / "sub" / "up").symlink_to("..", target_is_directory=True)
    (root / "up2").symlink_to("../..", target_is_directory=True)
    cfg = DataConfig(source="folder", path=str(root), mode="crops", size=8, pipeline=pipeline, fit_sample=2)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        data = open_data(cfg, seed=0)
    assert data.info["n_images" if pipeline == "memory" else "n_items"] == 3           # o.png is not read
    assert data.info["loops"] == [{"link": str(root / "up2"), "to": str(tmp_path.resolve())},
                                  {"link": str(root / "sub" / "up"), "to": str(root.resolve())}]
    said = [r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage()]
    assert len(said) == 1 and "2 symbolic links not followed" in said[0] and str(root / "up2") in said[0], said


def test_a_link_to_a_sibling_folder_is_followed_and_is_no_loop(tmp_path):
    """Only a link to a folder holding it is a loop: ``data/sub/side -> ../../side`` (beside data.path, holding
    neither) is read as before, ``data/sub/up -> ..`` is not."""
    root = tmp_path / "data"
    _png(root / "sub" / "a.png", 0)
    _png(tmp_path / "side" / "s.png", 1)
    (root / "sub" / "side").symlink_to("../../side", target_is_directory=True)
    (root / "sub" / "up").symlink_to("..", target_is_directory=True)
    data = open_data(DataConfig(source="folder", path=str(root), mode="crops", size=8, pipeline="memory"), seed=0)
    assert data.info["n_images"] == 2
    assert data.info["loops"] == [{"link": str(root / "sub" / "up"), "to": str(root.resolve())}]
