"""A resumed stream says where it picks up: the pass, and the file of its share (each worker's on the simulator)."""
import logging

import numpy as np
import pytest
from PIL import Image

from downpour.config import load_config
from downpour.runners import train
from downpour.train.rundir import RunDir

SETS = ["data.source=folder", "data.mode=crops", "data.size=8", "data.pipeline=stream", "data.loader_workers=0",
        "data.mix_items=4", "data.fit_sample=8", "data.normalize=patch", "data.whiten=none", "train.batch_size=8",
        "train.log_every=5", "train.tensorboard=false", "train.threads=1"]


@pytest.mark.parametrize("runner, said", [
    # 5 batches of 8 one-crop files, blocks of 4: the 24 files once (6 blocks), then 4 blocks of the second pass
    ("local", "at step 5 where its checkpoint left it: pass 2, image file 17 of 24"),
    ("simulated", "worker 0: pass ")])
def test_a_resumed_stream_says_the_pass_and_file_it_picks_up_at(tmp_path, caplog, runner, said):
    """A --resume of a streamed run says the pass and the file its stream picks up at, not only its step."""
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i:02d}.png")
    sets = [*SETS, f"data.path={tmp_path / 'imgs'}", f"cluster.runner={runner}",
            *(["cluster.workers=2", "cluster.shards=2"] if runner == "simulated" else [])]
    run = RunDir.create(tmp_path / "run", load_config("ufldl-sae", [*sets, "train.steps=5"]))
    train(load_config("ufldl-sae", [*sets, "train.steps=5"]), run)
    with caplog.at_level(logging.INFO, logger="downpour.data.pipeline"):
        train(load_config("ufldl-sae", [*sets, "train.steps=8"]), run, resume=True)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming the stream")]
    assert len(lines) == 1 and said in lines[0], lines
    if runner == "simulated":
        assert "worker 1: " in lines[0] and " of 12" in lines[0] and "(each in its share of the files)" in lines[0]
