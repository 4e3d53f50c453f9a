"""The summary line a run prints at its end says how many files it had, on every runner and both paths."""
import numpy as np
import pytest
from PIL import Image

from downpour.config import load_config
from downpour.runners import train
from downpour.train.rundir import RunDir

SETTINGS = ["data.source=folder", "data.mode=crops", "data.size=8", "data.fit_sample=8", "data.whiten=none",
            "train.batch_size=4", "train.steps=2", "train.tensorboard=false", "train.threads=1", "cluster.workers=2"]


@pytest.mark.parametrize("runner", ["local", "simulated"])
@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_the_summary_counts_the_files_listed_read_and_left_out(tmp_path, runner, pipeline):
    """The console says how many of a folder's 3,010 image files the run had, and that 2 other files were left out,
    not the reads, samples and n_skipped alone (in memory n_skipped alone)."""
    root = tmp_path / "images"
    root.mkdir()
    for i in range(9):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16), dtype=np.uint8)).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (root / "notes.txt").write_text("not an image")
    cfg = load_config("ufldl-sae", [*SETTINGS, f"data.path={root}", f"data.pipeline={pipeline}",
                                    f"cluster.runner={runner}"])
    data = train(cfg, RunDir.create(tmp_path / "run", cfg))["data"]
    if pipeline == "memory":
        assert data == {"n_images": 9, "n_ignored": 1, "n_skipped": 1}
    else:
        assert {k: data[k] for k in ("n_items", "items_read", "n_ignored", "n_skipped")} == \
            {"n_items": 10, "items_read": 10, "n_ignored": 1, "n_skipped": 1}
        assert list(data)[:4] == ["n_items", "items_read", "n_ignored", "reads"]
