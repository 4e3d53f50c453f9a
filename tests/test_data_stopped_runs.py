"""A run that stops early (its folder gone mid-run, Ctrl-C) writes data.json with what its data did so far
(the files skipped, reads, samples) and ``stopped``; its resume's end writes the whole run's, without it.
Else a stopped run has no data.json until it is resumed, though the log says data.json names every skipped file.
(A worker's DataError on Ray: tests/test_data_stream_runners.py.)"""
import numpy as np
import pytest
from PIL import Image

import downpour.ps.recorder as recorder_module
import downpour.train.loop as loop_module
from downpour.config import load_config
from downpour.errors import DataError
from downpour.runners import train
from downpour.train.rundir import RunDir

BATCH = 8
STREAM = ["data.source=folder", "data.mode=crops", "data.size=8", "data.pipeline=stream", "data.prefetch=4",
          "data.fit_sample=8", "data.normalize=patch", "data.whiten=none", f"train.batch_size={BATCH}",
          "train.log_every=5", "train.tensorboard=false", "train.threads=1", "data.loader_workers=0"]


def _folder(root, n=20):
    """n good 16x16 PNGs and 2 bad files."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"im{i:02d}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (root / "empty.png").write_bytes(b"")
    return root


def test_a_local_run_whose_folder_vanished_names_what_it_skipped_and_its_resume_rewrites_it(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs")
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", "cluster.runner=local", "train.steps=30"])
    run = RunDir.create(tmp_path / "run", cfg)
    real, calls = loop_module.train_step, {"n": 0}

    def unmounted_at_step_6(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            root.rename(tmp_path / "away")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "train_step", unmounted_at_step_6)
    with pytest.raises(DataError, match="no longer exists"):
        train(cfg, run)
    monkeypatch.undo()
    data = run.read_json("data.json")
    step = run.read_json("checkpoints/local.json")["step"]
    assert data["stopped"]["step"] == step >= 6 and data["stopped"]["steps"] == 30
    assert data["stopped"]["by"].startswith("DataError: none of the 22 items of this stream can be read")
    skipped = {e["file"] for e in data["skipped"]}
    assert data["n_skipped"] == 22 and skipped == {str(root / f.name) for f in (tmp_path / "away").iterdir()}
    assert data["samples"] == step * BATCH and data["workers"][0]["batches"] == step
    (tmp_path / "away").rename(root)
    train(load_config(str(run.path / "config.toml")), run, resume=True)
    data = run.read_json("data.json")
    assert "stopped" not in data and data["samples"] == 30 * BATCH and data["workers"][0]["batches"] == 30
    assert {e["file"] for e in data["skipped"]} <= {str(root / "broken.png"), str(root / "empty.png")}


def test_a_simulated_run_stopped_by_ctrl_c_writes_each_workers_report_and_its_resume_goes_on(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs")
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", "cluster.runner=simulated", "train.steps=40",
                                    "cluster.workers=2", "cluster.shards=2"])
    run = RunDir.create(tmp_path / "run", cfg)
    real, calls = recorder_module.Recorder.on_push, {"n": 0}

    def ctrl_c_at_push_12(self, push, record):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        real(self, push, record)

    monkeypatch.setattr(recorder_module.Recorder, "on_push", ctrl_c_at_push_12)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run)
    monkeypatch.undo()
    data = run.read_json("data.json")
    saved = run.read_json("checkpoints/server.json")
    step, at = saved["step"], [s["position"] for s in saved["streams"]]
    assert data["stopped"] == {"step": step, "steps": 40, "by": "KeyboardInterrupt"} and 0 < step < 40
    assert [w["samples"] for w in data["workers"]] == [p["samples"] for p in at]
    assert sorted(e["file"] for e in data["skipped"]) == [str(root / "broken.png"), str(root / "empty.png")]
    train(load_config(str(run.path / "config.toml")), run, resume=True)
    data = run.read_json("data.json")
    # (the stopped push's batch was drawn: the checkpoint's streams hold one batch more than its steps)
    assert "stopped" not in data and data["samples"] == sum(p["samples"] for p in at) + (40 - step) * BATCH
    assert data["n_skipped"] == 2


def test_data_json_that_cannot_be_written_on_the_way_out_leaves_the_runs_own_error(tmp_path, monkeypatch, caplog):
    root = _folder(tmp_path / "imgs")
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", "cluster.runner=local", "train.steps=30"])
    run = RunDir.create(tmp_path / "run", cfg)
    real_step, real_write = loop_module.train_step, run.write_json

    def unmounted(*args, **kwargs):
        if root.exists():
            root.rename(tmp_path / "away")
        return real_step(*args, **kwargs)

    def full_disk(name, obj):
        if name == "data.json":
            raise OSError(28, "No space left on device")
        return real_write(name, obj)

    monkeypatch.setattr(loop_module, "train_step", unmounted)
    monkeypatch.setattr(run, "write_json", full_disk)
    with caplog.at_level("WARNING", logger="downpour.data.pipeline"), pytest.raises(DataError, match="no longer exists"):
        train(cfg, run)
    assert any("data.json could not be written on the way out (OSError" in r.getMessage() for r in caplog.records)
    assert (run.path / "checkpoints" / "local.json").is_file()


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_killed_loader_process_ends_the_run_in_one_line_naming_it_with_its_steps_kept(tmp_path, monkeypatch, runner):
    """The out-of-memory killer's SIGKILL on a DataLoader process ended `downpour train` with torch's traceback
    from its SIGCHLD handler, raised again wherever the main thread was: once inside the checkpoint's write,
    which was then lost."""
    import multiprocessing
    import os
    import signal

    import downpour.ps.worker as worker_module
    from downpour.errors import RunError

    root = _folder(tmp_path / "imgs")
    more = [] if runner == "local" else ["cluster.workers=2", "cluster.shards=1"]
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", f"cluster.runner={runner}", "train.steps=200",
                                    "data.loader_workers=1", *more])
    run = RunDir.create(tmp_path / "run", cfg)
    before = {p.pid for p in multiprocessing.active_children()}
    module = loop_module if runner == "local" else worker_module
    real, calls = module.train_step, {"n": 0}

    def oom_killed_at_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            loader = next(p for p in multiprocessing.active_children() if p.pid not in before)
            os.kill(loader.pid, signal.SIGKILL)
            loader.join(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train_step", oom_killed_at_step_5)
    with pytest.raises(RunError, match=r"a DataLoader process .* died \(pid \d+ was killed by signal SIGKILL.*"
                                       r"data.loader_workers or data.prefetch lower \(now 1 and 4"):
        train(cfg, run)
    monkeypatch.undo()
    checkpoint = "checkpoints/local.json" if runner == "local" else "checkpoints/server.json"
    assert run.read_json(checkpoint)["step"] >= (4 if runner == "local" else 1)   # (the simulator's: pushes applied)
    assert run.read_json("data.json")["stopped"]["by"].startswith("RunError: a DataLoader process")
    resumed = load_config(str(run.path / "config.toml"), ["data.loader_workers=0", "train.steps=12"])
    assert train(resumed, run, resume=True)["steps"] == 12
