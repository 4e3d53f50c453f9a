"""A run trained again from step 0 (a `--resume` of one stopped before its first checkpoint, a cross-fit fold alike)
starts from its config alone: everything its training wrote is removed first (RunDir.WRITTEN), a Sandblaster run's
sandblaster.json too: left behind, it would have the run's own folder refused ("not an empty folder
(sandblaster.json)"), its rows already discarded."""
import shutil

from downpour.cli import main
from downpour.train.rundir import RunDir

SANDBLASTER = ["--config", "tica-8x8", "--runner", "simulated", "--workers", "2", "--steps", "2", "--no-report",
               *[arg for o in ("cluster.algorithm=sandblaster", "model.name=rica-8x8", "model.hidden=16",
                               "data.samples=300", "train.tensorboard=false", "sandblaster.units=2")
                 for arg in ("--set", o)]]


def test_discarding_a_runs_training_leaves_its_config_and_what_downpour_did_not_train(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "config.toml").write_text("")
    for name in RunDir.WRITTEN:
        (tmp_path / name).write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")          # the user's own: downpour did not write it
    (tmp_path / RunDir.TWIN).mkdir()                     # a twin run of its own, kept when this one trains again
    run.discard_training()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["config.toml", "notes.txt", RunDir.TWIN])
    assert "sandblaster.json" in RunDir.WRITTEN and "data.json" in RunDir.WRITTEN


def test_a_sandblaster_run_stopped_unsaved_trains_again_without_its_old_record_beside_user_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SANDBLASTER, "--out", str(out)]) == 0
    for name in ("model.json", "model.safetensors", "checkpoints"):   # as a kill before the first checkpoint leaves it
        shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    old = (out / "sandblaster.json").read_text()
    (out / "notes.txt").write_text("mine")   # the user's, put there meanwhile: it stays (and the folder is not
    capsys.readouterr()                      # refused as "not an empty folder (notes.txt)", its rows discarded)
    assert main(["train", "--resume", str(out), "--steps", "3"]) == 0, capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert "training it again from step 0" in capsys.readouterr().err
    assert RunDir.open(out).read_json("sandblaster.json")["steps"] == 3
    assert (out / "sandblaster.json").read_text() != old
