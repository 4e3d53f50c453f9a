"""Files an image folder leaves out for their extension are said, by extension, on both paths."""
import json
import logging

import numpy as np
import pytest
from PIL import Image

from downpour.config import DataConfig


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_files_left_out_for_their_extension_are_said_by_extension(tmp_path, caplog, pipeline):
    """Files left out for their extension are said by extension, not only counted in data.json's n_ignored: else a
    phone's .heic photos beside JPEGs, or 2 notes among 3,010 images in a run's folder, go unsaid."""
    from downpour.data.pipeline import open_data
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    for i in range(3):
        (tmp_path / f"IMG_{i}.HEIC").write_bytes(b"ftypheic" * 8)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("no extension")
    (tmp_path / ".DS_Store").write_bytes(b"hidden: counted, not said")
    cfg = DataConfig(source="folder", path=str(tmp_path), mode="crops", size=8, pipeline=pipeline, fit_sample=2)
    with caplog.at_level(logging.INFO, logger="downpour.data"):
        data = open_data(cfg, seed=0)
    assert len(data) == 4 and data.info["n_ignored"] == 6
    assert data.info["ignored_extensions"] == {".heic": 3, "": 1, ".txt": 1}
    assert data.info["ignored_first"] == str(tmp_path / "IMG_0.HEIC")
    said = [r.getMessage() for r in caplog.records if "not read" in r.getMessage()]
    assert said == [f"folder {tmp_path}: 5 files not read, their extensions name no image Pillow decodes here "
                    f"(3 .heic, 1 with no extension, 1 .txt; e.g. {tmp_path / 'IMG_0.HEIC'}); data.json counts them "
                    "(n_ignored, ignored_extensions)"]
    json.dumps(data.info)    # recorded in data.json as it is
