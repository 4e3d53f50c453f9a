"""A streamed run's files enlarged in crops mode: each stream says the first it met (a cluster's workers, each by its
number), and the run's end says how many, once: the count data.json's n_upscaled holds (not 'a file' from each
worker, alike)."""
import logging

import numpy as np
import pytest
from PIL import Image

from downpour.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_streamed_runs_end_says_how_many_files_its_crops_enlarged(tmp_path, caplog):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / f"im{i}.png")
    for name in ("tiny.png", "wee.png"):
        Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(root / name)
    argv = ["train", "--config", "ufldl-sae", "--runner", "local", "--steps", "4", "--no-report", "--out",
            str(tmp_path / "run"), "--set", "data.source=folder", "--set", f"data.path={root}",
            "--set", "data.mode=crops",
            "--set", "data.whiten=none", "--set", "data.pipeline=stream", "--set", "data.loader_workers=0",
            "--set", "train.tensorboard=false"]
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        assert main(argv) == 0
    said = [m for m in caplog.messages if "crops mode enlarged" in m]
    assert sum("the first this stream met (the run's end says how many)" in m for m in said) == 1
    assert sum("enlarged 2 files smaller than data.size = 8" in m for m in said) == 1, said
