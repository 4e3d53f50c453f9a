"""One base for the errors a user can fix: the CLI says those in one line (exit 2) and lets a bug
keep its traceback."""
import pytest

import downpour.cli as cli
from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.errors import DataError, DownpourError, RunError
from downpour.train.checkpoint import CheckpointError
from downpour.train.rundir import NotARunError, RunDir, RunExistsError


@pytest.mark.parametrize("error", [ConfigError, RunError, DataError, CheckpointError, NotARunError, RunExistsError])
def test_every_project_error_is_a_downpour_error(error):
    assert issubclass(error, DownpourError)


def _raising(error):
    def command(args):
        raise error
    return command


def test_a_users_mistake_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    monkeypatch.setattr(cli, "cmd_presets", _raising(DataError("image folder 'x' holds no image files")))
    assert main(["presets"]) == 2
    assert capsys.readouterr().err == "downpour: error: image folder 'x' holds no image files\n"
    for bug in (ValueError("a bug"), KeyError("a bug"), FileNotFoundError("a bug")):
        monkeypatch.setattr(cli, "cmd_presets", _raising(bug))
        with pytest.raises(type(bug)):
            main(["presets"])


def test_a_misspelt_run_folder_names_the_run_beside_it(tmp_path, capsys):
    """`downpour analyze runs/cta` names runs/cat beside it, not only that it does not exist."""
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "config.toml").write_text("seed = 0\n")
    (tmp_path / "car").mkdir()                  # a folder that holds no run is not suggested
    for command in (["analyze"], ["report"], ["train", "--resume"]):
        assert main([*command, str(tmp_path / "cta")]) == 2
        assert f"does not exist; did you mean {str(tmp_path / 'cat')!r}?" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "zzz")]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_run_directory_mistakes_are_said_in_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a downpour run directory" in capsys.readouterr().err


def test_unusable_data_is_said_in_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not an array")
    args = ["train", "--config", "ufldl-sae", "--runner", "local", "--steps", "5", "--no-report",
            "--out", str(tmp_path / "run"), "--set", 'data.source="array"', "--set", f'data.path="{junk}"']
    assert main(args) == 2                       # found only once the data is read, after the run directory exists
    assert "junk.npz: not a readable .npz file" in capsys.readouterr().err


def test_a_resume_without_a_checkpoint_is_said_in_one_line(tmp_path, capsys):
    cfg = load_config("ufldl-sae", ['cluster.runner="local"', "train.steps=5", "data.samples=200"])
    run = RunDir.create(tmp_path / "run", cfg)   # made, never trained: nothing to resume, and how to start it
    assert main(["train", "--resume", str(run.path)]) == 2
    assert "never started training" in capsys.readouterr().err
    # it trained, and has no checkpoint (killed before its first): it trains again from step 0, saying so (not
    # "local.safetensors' is missing", and a new run into the folder "already holds a run; resume it")
    (run.path / "metrics.jsonl").write_text('{"step": 2, "loss": 1.0}\n')
    assert main(["train", "--resume", str(run.path), "--no-report"]) == 0
    assert "stopped before its first checkpoint (train.checkpoint_every sets how often" in capsys.readouterr().err
    # a cluster run's checkpoints are cluster.checkpoint_every's (not the local runner's key)
    cluster = RunDir.create(tmp_path / "cluster", load_config("ufldl-sae", ['cluster.runner="simulated"', "train.steps=5",
                                                                            "data.samples=200"]))
    (cluster.path / "metrics.jsonl").write_text('{"step": 2, "loss": 1.0}\n')
    assert main(["train", "--resume", str(cluster.path), "--no-report"]) == 0
    assert "stopped before its first checkpoint (cluster.checkpoint_every sets how often" in capsys.readouterr().err


def test_a_run_stopped_before_its_first_step_says_how_to_start_it_again(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the main job loads its data or starts Ray (a minute on a busy 2-core machine) says how to start it
    again, not only "downpour: interrupted": `--resume`, what the README says a stopped run takes, is refused for a
    run with no step."""
    import re
    import shlex

    import downpour.runners

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    out = tmp_path / "run"
    args = ["train", "--config", "ufldl-sae", "--runner", "local", "--steps", "5", "--no-report", "--out", str(out),
            "--set", "data.samples=200"]
    with monkeypatch.context() as patched:
        patched.setattr(downpour.runners, "train", stopped)
        assert main(args) == 130
    err = capsys.readouterr().err
    assert "stopped before the run kept anything" in err
    advice = re.search(r"`downpour (train --config .*)` starts it again", err).group(1)
    assert main(shlex.split(advice)) == 0 and RunDir(out).finished(5)     # the advice works as given
