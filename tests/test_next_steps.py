"""What a user is told to run on a run once it is trained: `downpour analyze RUN`, or for a run whose input is no
image (teacher-student's N(0, I) vectors), which has no analysis, `downpour report RUN` (its training alone). A
teacher-student run is not told to "analyse it then" once resumed (stopped), that `downpour analyze RUN` analyses it
(finished, its checkpoints gone), to wait and then analyse it (being trained), or `downpour analyze RUN --set
analysis.layer=X` to name another layer: none of which it can be."""
from __future__ import annotations

import shutil

import pytest

from downpour.cli import main
from downpour.config import load_config
from downpour.train import lock
from downpour.train.rundir import RunDir

TEACHER = ["--config", "teacher-student", "--set", "train.tensorboard=false", "--set", "cluster.checkpoint_every=5",
           "--no-report"]
SAE = ["--config", "ufldl-sae", "--runner", "local", "--set", "data.samples=500", "--set", "train.batch_size=20",
       "--set", "train.tensorboard=false", "--set", "train.checkpoint_every=5", "--no-report"]


def _stopped(tmp_path, preset: list[str]):
    """A run trained 10 steps of 20: its checkpoint at step 10, no model.json (as a stopped run's)."""
    out = tmp_path / "run"
    assert main(["train", *preset, "--steps", "10", "--out", str(out)]) == 0
    (out / "model.json").unlink()
    config = out / "config.toml"
    config.write_text(config.read_text().replace("steps = 10\n", "steps = 20\n", 1))
    return out


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_a_stopped_run_with_no_image_input_is_told_to_be_reported_once_resumed(tmp_path, capsys, command):
    out = _stopped(tmp_path, TEACHER)
    capsys.readouterr()
    assert main([command, str(out)]) == 2
    err = capsys.readouterr().err
    assert "its checkpoint is at step 10 of 20" in err
    assert f"`downpour train --resume {out}` trains it to its end" in err
    assert f"after which `downpour report {out}` reports its training (it has no image input to analyse)" in err
    assert "analyse it then" not in err and "downpour analyze" not in err


def test_a_stopped_image_run_is_still_told_to_be_analysed_once_resumed(tmp_path, capsys):
    out = _stopped(tmp_path, SAE)
    capsys.readouterr()
    assert main(["analyze", str(out)]) == 2
    assert f"after which `downpour analyze {out}` analyses it" in capsys.readouterr().err


def test_a_finished_run_with_no_image_input_whose_checkpoints_are_gone_is_told_to_be_reported(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TEACHER, "--steps", "10", "--out", str(out)]) == 0
    shutil.rmtree(out / "checkpoints")
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{str(out)!r} is finished" in err and "nothing to resume" in err
    assert f"`downpour report {out}` reports its training (it has no image input to analyse)" in err
    assert "downpour analyze" not in err


def test_analyze_of_a_run_with_no_image_input_says_so_before_its_analysis_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TEACHER, "--steps", "10", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["analyze", str(out), "--set", "analysis.layer=nosuch"]) == 2
    err = capsys.readouterr().err
    assert "so it has nothing to measure here" in err and f"`downpour report {out}` writes its report" in err
    assert "is not a feature layer" not in err


def test_analyze_of_a_run_with_no_image_input_being_trained_is_told_to_report_it_once_done(tmp_path, capsys):
    path = tmp_path / "run"
    RunDir.create(path, load_config("teacher-student"))
    with lock.training(path):                       # the other process, training it
        assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "(`downpour train` reports its run at its end when analysis.report is on)" in err
    assert f"then `downpour report {path}`" in err and "downpour analyze" not in err
