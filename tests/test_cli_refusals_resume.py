"""A run stopped, finished or resumed, and what it is told: SIGTERM, which stops a run as Ctrl-C does, an output
reader gone, the resume refusals, a finished run's next commands, folders that cannot be written or are no run."""
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib

import pytest

from downpour.cli import main
from downpour.config import ConfigError, load_config

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings run in this process)

TINY = ["--config", "ufldl-sae", "--steps", "20", "--set", "data.samples=500", "--set", "train.tensorboard=false",
        "--runner", "local", "--no-report"]


def test_resume_on_a_file_says_it_is_a_file(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("")
    assert main(["train", "--resume", str(tmp_path / "x.txt")]) == 2
    assert "is a file, not a run directory" in capsys.readouterr().err


def test_a_resume_of_a_folder_that_is_not_there_names_the_flag(tmp_path, capsys):
    """The refusal names --resume (as `downpour plan --check-run` names its flag), not the folder alone."""
    missing = tmp_path / "nosuchdir"
    assert main(["train", "--resume", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"downpour: error: --resume {missing}: {str(missing)!r} does not exist"


def test_sigterm_stops_a_run_with_its_checkpoint_so_it_resumes(tmp_path):
    """The process is killed as `timeout` or a batch scheduler kills it; the run's steps so far are kept."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "downpour.cli", "train", *TINY, "--steps", "1000000", "--set",
            "analysis.no_faces_twin=false", "--set", "train.log_every=10", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text().strip():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)            # (a loop without a pause held one of the 2 cores the run starts on)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint saved" in err and "terminated" in err
    step = json.loads((out / "checkpoints" / "local.json").read_text())["step"]
    assert step >= 10


def test_a_run_whose_output_reader_left_fails_and_says_how_to_start_again(tmp_path, capsys):
    # `downpour train 2>&1 | head -0`: it stopped at its first line and exited 0, a run folder with
    # only config.toml behind it, and --resume then named a missing checkpoint file
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "downpour.cli", "train", *TINY, "--set", "analysis.no_faces_twin=false", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc.stdout.close()                          # the reader leaves before the first line
    assert proc.wait(timeout=300) == 128 + signal.SIGPIPE
    assert main(["train", "--resume", str(out)]) == 2
    assert "never started training" in capsys.readouterr().err
    assert main(["train", "--config", str(out / "config.toml"), "--out", str(out)]) == 0   # takes the folder over


def test_an_out_that_cannot_be_written_is_refused_up_front(tmp_path, capsys):
    """--dry-run passed an --out that was a file or held a run (the run then failed); `study` and
    `crossfit --jobs 2` given a file as --out ended in a FileExistsError traceback."""
    afile = tmp_path / "afile"
    afile.write_text("")
    held = tmp_path / "held"
    assert main(["train", "--config", "ufldl-sae", "--runner", "local", "--steps", "2", "--set", "train.tensorboard=false",
                 "--out", str(held)]) == 0
    capsys.readouterr()
    for argv, named in (
            (["train", "--config", "ufldl-sae", "--dry-run", "--out", str(afile)], "is not an empty folder (a file)"),
            (["train", "--config", "ufldl-sae", "--dry-run", "--out", str(afile / "x")], f"{str(afile)!r} is a file"),
            (["train", "--config", "ufldl-sae", "--dry-run", "--out", str(held)], "already holds a run"),
            (["study", "staleness", "--quick", "--out", str(afile)], "cannot make the study's folder"),
            (["study", "staleness", "--quick", "--out", str(held)], "holds a training run (config.toml)"),
            (["crossfit", "--config", "ufldl-sae", "--runner", "local", "--jobs", "2", "--control", "none",
              "--out", str(afile)], "cannot make the cross-fit's folder")):
        assert main(argv) == 2, argv
        assert named in capsys.readouterr().err, argv
    assert not (held / "cells.jsonl").exists() and not (held / "context.json").exists()     # nothing mixed into the run


def test_a_dry_run_of_a_resume_refuses_what_the_resume_would(tmp_path, capsys):
    """--dry-run passed a resume that then failed with "already reached"."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--set", "train.checkpoint_every=3", "--out", str(out)]) == 0
    capsys.readouterr()
    for steps in ("6", "3"):
        assert main(["train", "--resume", str(out), "--steps", steps, "--dry-run"]) == 2
        assert "already reached step 6" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--steps", "9", "--dry-run"]) == 0
    (out / "model.json").unlink()          # stopped between its last checkpoint and its model: the resume writes it
    assert main(["train", "--resume", str(out), "--dry-run"]) == 0
    assert main(["train", "--resume", str(out)]) == 0 and (out / "model.json").is_file()
    (out / "checkpoints" / "local.json").write_text("{")
    assert main(["train", "--resume", str(out), "--steps", "9", "--dry-run"]) == 2
    assert "local.json' is not valid JSON" in capsys.readouterr().err


def test_a_resume_of_a_finished_run_is_refused_before_it_says_it_resumes(tmp_path, capsys, caplog):
    """It printed "downpour: resuming RUN ..." and logged "resuming RUN at step 6", then refused ("already reached
    step 6 of 6"), where its --dry-run refused before saying anything; the refusal's words are the same."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--out", str(out)]) == 0
    capsys.readouterr()
    caplog.set_level(logging.INFO)                   # (what the command logs: the runner's "resuming RUN at step 6")
    for steps in ("6", "3"):
        said = []
        for dry in (["--dry-run"], []):
            caplog.clear()
            assert main(["train", "--resume", str(out), "--steps", steps, *dry]) == 2
            said.append(capsys.readouterr().err)
            # (--steps 3 read "already reached step 6 of 3")
            reached = "step 6 of 6" if steps == "6" else "step 6, past its train.steps = 3"
            assert "resuming" not in said[-1] + caplog.text and f"already reached {reached};" in said[-1]
        assert said[0] == said[1]


def test_a_resume_of_a_run_whose_checkpoints_folder_is_gone_says_what_is_left_and_how_to_train_it_again(tmp_path, capsys):
    """It said only "checkpoint file 'RUN/checkpoints/local.safetensors' is missing"."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--set", "train.checkpoint_every=3", "--out", str(out)]) == 0
    shutil.rmtree(out / "checkpoints")
    metrics = (out / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "9"]) == 2
    err = capsys.readouterr().err
    assert f"its folder {str(out / 'checkpoints')!r} is missing" in err
    assert "model.safetensors (step 6) is there" in err and f"`downpour analyze {out}`" in err
    assert f"`downpour train --config {out}/config.toml --out NEW`" in err
    assert (out / "metrics.jsonl").read_bytes() == metrics and not (out / "checkpoints").exists()   # nothing touched
    (out / "model.safetensors").unlink()
    assert main(["train", "--resume", str(out), "--dry-run"]) == 2
    assert "model.safetensors is missing too" in capsys.readouterr().err


def test_a_finished_run_with_a_twin_it_never_trains_and_no_checkpoints_folder_says_what_is_left(tmp_path, capsys):
    """A finished run's twin is all its resume trains, so the refusal let it by: where the config's no_faces_twin =
    true trains no twin (no lfw face to leave out: twins.twin_config turns it off), the resume then failed with
    "checkpoint file 'RUN/checkpoints/local.safetensors' is missing" (and its --dry-run passed)."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--out", str(out)]) == 0
    config = (out / "config.toml").read_text()
    assert "no_faces_twin = false" in config        # (as a config written before the twin was turned off says)
    (out / "config.toml").write_text(config.replace("no_faces_twin = false", "no_faces_twin = true"))
    shutil.rmtree(out / "checkpoints")
    for dry in ([], ["--dry-run"]):
        capsys.readouterr()
        assert main(["train", "--resume", str(out), *dry]) == 2
        err = capsys.readouterr().err
        assert f"{str(out)!r} is finished" in err and f"its folder {str(out / 'checkpoints')!r} is missing" in err


def test_a_finished_run_whose_checkpoints_folder_is_gone_is_refused_as_finished_not_as_one_to_put_back(tmp_path, capsys):
    """A resume with no more --steps of a finished run was told to put the folder back "to resume", where nothing is
    left to train: it says the run is finished, and what the user may have meant (analyse it, or more --steps)."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--out", str(out)]) == 0
    shutil.rmtree(out / "checkpoints")
    for dry in ([], ["--dry-run"]):
        capsys.readouterr()
        assert main(["train", "--resume", str(out), *dry]) == 2
        err = capsys.readouterr().err
        assert f"{str(out)!r} is finished (its model.safetensors is at step 6 of train.steps = 6)" in err
        assert "nothing to resume" in err and "put it back to resume" not in err
        assert f"`downpour analyze {out}`" in err and f"`downpour train --resume {out} --steps M`" in err
        assert f"its folder {str(out / 'checkpoints')!r} is missing" in err    # (what more steps would need)


def test_a_sigterm_that_ray_re_raises_as_a_bare_interrupt_still_exits_terminated(monkeypatch, capsys):
    """A SIGTERM while the driver waited in ray.wait for its actors came back as a plain KeyboardInterrupt
    (Ray's check_status), and the command said "interrupted" with Ctrl-C's status 130."""
    import time

    from downpour.train.signals import Terminated

    def waits_in_ray(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:
            raise KeyboardInterrupt from None        # what Ray's wait does with it
        return 0

    monkeypatch.setattr("downpour.cli.cmd_presets", waits_in_ray)
    assert main(["presets"]) == 128 + signal.SIGTERM and "downpour: terminated" in capsys.readouterr().err
    monkeypatch.setattr("downpour.cli.cmd_presets", lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["presets"]) == 130 and "downpour: interrupted" in capsys.readouterr().err


def test_a_cluster_flag_on_a_local_resume_does_not_advise_another_runner(tmp_path, capsys):
    """It said "add --runner simulated or --runner ray", which the resume then refused as another run."""
    assert main(["train", *TINY, "--steps", "4", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "6", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "a resumed run keeps its runner" in err and "add --runner" not in err


def test_an_output_folder_that_cannot_be_made_is_named_not_a_traceback(tmp_path, monkeypatch, capsys):
    """On a read-only file system (EROFS, a plain OSError) train, study and crossfit ended in a traceback, and
    --dry-run said "config checked"."""
    import errno
    from pathlib import Path

    from downpour.train import folders

    ro = tmp_path / "ro"
    ro.mkdir()
    mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if ro in (self, *self.parents):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    for argv, what in ((["train", *TINY, "--out", str(ro / "r")], "the run folder"),
                       (["study", "costs", "--quick", "--out", str(ro / "s")], "the study's folder"),
                       (["crossfit", *[a for a in TINY if a != "--no-report"], "--set", "data.source=natural+faces", "--folds", "2", "--jobs", "2", "--out", str(ro / "c")], "the cross-fit's folder")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"cannot make {what}" in err and "Read-only file system" in err
    access = os.access
    monkeypatch.setattr(folders.os, "access", lambda p, mode: Path(p) != ro and access(p, mode))
    assert main(["train", *TINY, "--out", str(ro / "r"), "--dry-run"]) == 2
    assert f"{str(ro)!r} cannot be written" in capsys.readouterr().err
    assert list(ro.iterdir()) == []


def test_a_finished_joint_run_says_the_command_that_goes_on_and_the_one_that_shows_it(tmp_path, capsys):
    """A finished joint run's resume said only "raise train.steps (--steps) to go on": no command, and nothing of
    the report a user who resumed a finished run by mistake wants (the greedy refusal named its command)."""
    out = tmp_path / "my run"
    assert main(["train", "--config", "ufldl-sae", "--steps", "4", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"already reached step 4 of 4; raise train.steps above 4 to go on (downpour train --resume '{out}' --steps M); " \
        f"what it learned: downpour report '{out}'" in err
    assert main(["train", "--resume", str(out), "--steps", "2"]) == 2          # (fewer: how many is enough)
    assert "already reached step 4, past its train.steps = 2; raise train.steps above 4 to go on" in capsys.readouterr().err


def test_the_commands_a_run_in_a_folder_with_a_space_is_told_paste_into_a_shell(tmp_path, capsys):
    """The advice of a resume with --out, of analyze and of a run whose checkpoints/ is gone gave the run's folder
    bare: `downpour analyze /runs/my run` pasted is two words (today's refusals of a finished run quoted it)."""
    out = tmp_path / "my run"
    assert main(["train", "--config", "ufldl-sae", "--steps", "4", "--out", str(out)]) == 0
    capsys.readouterr()
    said = []
    assert main(["train", "--resume", str(out), "--out", str(tmp_path / "x")]) == 2
    said.append(capsys.readouterr().err)
    shutil.rmtree(out / "checkpoints")
    assert main(["train", "--resume", str(out)]) == 2
    said.append(capsys.readouterr().err)
    (out / "model.safetensors").unlink()
    assert main(["analyze", str(out)]) == 2
    said.append(capsys.readouterr().err)
    commands = [command for err in said for command in re.findall(r"`(downpour [^`]*)`|(--config .*?) --set", err)]
    assert len(commands) == 6, said
    for command in commands:
        paths = [word for word in shlex.split("".join(command)) if word.startswith(str(tmp_path))]
        assert paths and set(paths) <= {str(out), str(out / "config.toml")}, command


def test_a_finished_greedy_run_says_plainly_how_to_train_more(tmp_path, capsys):
    """It used to say "a greedy run's stages split its steps, so it cannot go past them"; now: finished at step N
    of N, each stage has its share of train.steps, so more steps is a new run from the run's own config.toml."""
    out = tmp_path / "run"
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "4", "--out", str(out)]) == 0
    capsys.readouterr()
    for dry in ([], ["--dry-run"]):
        assert main(["train", "--resume", str(out), *dry]) == 2
        err = capsys.readouterr().err
        assert "already reached step 4 of 4; it is finished: a greedy schedule gives each stage its share of train.steps" in err
        assert f"downpour train --config {out / 'config.toml'} --steps M --out NEW" in err      # (shell quoting, as
        assert "a joint run could be resumed with more --steps instead" in err                 # every other advice)
        assert f"what it learned: downpour report {out}" in err
    # asked for more steps, it says the same way out (it said only that the split depends on train.steps)
    assert main(["train", "--resume", str(out), "--steps", "6", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "cannot change train.steps (4 -> 6) when resuming a greedy run" in err
    assert f"to train it for 6 steps start a new run (downpour train --config {out / 'config.toml'} --steps 6 --out NEW)" in err
    # the command it suggests works, and so does what it says of a joint run
    assert main(["train", "--config", str(out / "config.toml"), "--steps", "6", "--out", str(tmp_path / "new")]) == 0
    joint = tmp_path / "joint"
    argv = ["train", "--config", "cat-demo", "--set", "train.schedule=joint", "--runner", "local", "--out", str(joint)]
    assert main([*argv, "--steps", "4"]) == 0
    assert main(["train", "--resume", str(joint), "--steps", "6"]) == 0


def test_a_refused_resume_names_the_new_run_from_its_own_config_toml(tmp_path, capsys):
    """A resume that would make another run (fewer --steps of a greedy run, another model option) suggested
    `--config RUN/config.toml` with the word RUN in it, whatever the run's folder, and told a --steps below the run's
    to start a new run "for more steps"."""
    out = tmp_path / "my run"
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "6", "--out", str(out)]) == 0
    capsys.readouterr()
    config = shlex.quote(str(out / "config.toml"))
    assert main(["train", "--resume", str(out), "--steps", "4", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"to train it for 4 steps start a new run (downpour train --config {config} --steps 4 --out NEW)" in err
    assert "RUN/" not in err and "more steps" not in err
    assert main(["train", "--resume", str(out), "--set", "model.maps=[4,4]", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume with model.maps" in err
    assert f"start a new run (downpour train --config {config} --set 'model.maps=[4,4]' --out NEW)" in err


def test_a_refused_resume_suggests_a_new_run_with_the_flags_the_user_typed(tmp_path, capsys):
    """`--resume RUN --set model.X=...` was told to start a new run with `--set ...`, literally: it names the flags
    typed, each shell-quoted (a value with a space or brackets), and the command it suggests is the run asked for."""
    out = tmp_path / "run"
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "6", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "8", "--set", "model.maps=[4, 4]", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "--set ..." not in err
    suggested = re.search(r"start a new run \(downpour train (.*) --out NEW\) instead", err).group(1)
    assert suggested == f"--config {out / 'config.toml'} --steps 8 --no-report --set 'model.maps=[4, 4]'"
    argv = ["train", *shlex.split(suggested), "--out", str(tmp_path / "new"), "--dry-run"]
    assert main(argv) == 0
    config = tomllib.loads(capsys.readouterr().out)
    assert config["model"]["maps"] == [4, 4] and config["train"]["steps"] == 8


@pytest.mark.parametrize("flag", [["--config", "main"], ["--out", "new"]])
def test_a_resume_of_a_folder_that_is_no_run_says_so_before_the_flag_it_refuses_with_resume(tmp_path, capsys, flag):
    """`--resume NOTES --config main` was told "the run goes on in NOTES with its own config ... start a new run:
    downpour train --config NOTES/config.toml", a file that is not there."""
    (tmp_path / "notes").mkdir()
    assert main(["train", "--resume", str(tmp_path / "notes"), *flag]) == 2
    err = capsys.readouterr().err
    assert "is not a downpour run directory (no config.toml)" in err and "config.toml --" not in err


def test_an_out_with_resume_suggests_the_new_run_with_the_flags_the_user_typed(tmp_path, capsys):
    """`--resume RUN --out NEW --set ...` (a new run from a run's config, asked the wrong way) was told to start one
    with `--set ...`, literally, and no --out: it gives the flags and the --out typed, shell-quoted."""
    run, new = tmp_path / "my run", tmp_path / "new run"
    run.mkdir()
    (run / "config.toml").write_text('base = "ufldl-sae"\n')
    assert main(["train", "--resume", str(run), "--out", str(new), "--set", "model.maps=[4, 4]", "--steps", "8"]) == 2
    err = capsys.readouterr().err
    assert "--out with --resume" in err and "--set ..." not in err
    assert (f"start a new run: downpour train --config {shlex.quote(str(run / 'config.toml'))} --steps 8 "
            f"--set 'model.maps=[4, 4]' --out {shlex.quote(str(new))})") in err


@pytest.mark.parametrize("inner", ["config.toml", "checkpoints", "figures/"])
@pytest.mark.parametrize("command", [["analyze"], ["report"], ["train", "--resume"]])
def test_a_file_or_folder_inside_a_run_names_the_run_to_give(tmp_path, capsys, inner, command):
    """`--resume runs/cat/checkpoints` (a tab completion one level too deep) said "not a downpour run directory;
    give the --out directory of a `downpour train` run", and `analyze runs/cat/config.toml` "is a file, not a run
    directory": neither named the run that was one level up."""
    from downpour.train.rundir import RunDir

    run = RunDir.create(tmp_path / "run", load_config("ufldl-sae")).path
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "figures").mkdir(exist_ok=True)
    assert main([*command, str(run / inner)]) == 2
    kind = "a file" if inner == "config.toml" else "a folder"
    assert f"is {kind} of the run {str(run)!r}, not a run; give {str(run)!r}" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["analyze"], ["report"], ["train", "--resume"]])
def test_a_missing_file_inside_a_run_names_the_run_to_give(tmp_path, capsys, command):
    """`downpour report runs/cat/analysis.json` of a run not yet analysed said only "'runs/cat/analysis.json' does
    not exist", as of a misspelt run: the run it is in, the folder to give, went unnamed."""
    from downpour.train.rundir import RunDir

    run = RunDir.create(tmp_path / "run", load_config("ufldl-sae")).path
    assert main([*command, str(run / "analysis.json")]) == 2
    assert f"would be inside the run {str(run)!r}, not a run; give {str(run)!r}" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["analyze"], ["report"]])
def test_a_runs_missing_no_faces_twin_is_not_called_one_of_its_files(tmp_path, capsys, command):
    """RUN/no-faces is a run's own place (analysis.no_faces_twin), not one of its files: before its twin trained,
    `analyze RUN/no-faces` and analysis.no_faces_run = 'RUN/no-faces' were told "it would be inside the run 'RUN', not a
    run; give 'RUN'", the run that trained on faces."""
    from downpour.analysis.options import no_faces_run
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae")
    run = RunDir.create(tmp_path / "run", cfg).path
    assert main([*command, str(run / "no-faces")]) == 2
    err = capsys.readouterr().err
    assert f"the run {str(run)!r} has no no-faces twin" in err and "give" not in err
    with pytest.raises(ConfigError, match="has no no-faces twin") as refused:
        no_faces_run(str(run / "no-faces"), cfg)
    assert f"give {str(run)!r}" not in str(refused.value)


@pytest.mark.parametrize("preset, overrides, advice", [
    ("cat-demo", [], ", never trained; `downpour train --resume {run} --set analysis.no_faces_twin=true` trains it"),
    # (a run on no lfw face was said to have a twin "never trained" too, until later on 2026-12-05)
    ("ufldl-sae", [], "; none can be trained: the run saw no lfw face (data.source = 'natural')"),
    # (until 2026-12-05 this one read "data.source = 'natural+faces' holds no lfw face": its source holds them)
    ("cat-demo", ["data.train_faces=0"], "; none can be trained: the run saw no lfw face (data.train_faces = 0)")])
def test_a_no_faces_twin_never_trained_says_so_and_how_to_train_it(tmp_path, capsys, preset, overrides, advice):
    """`downpour analyze RUN/no-faces` of a run without a twin said only "would be inside the run RUN, not a run; give
    RUN": nothing said the twin was never trained, nor how to train it (or that a run on no lfw face has none, and by
    which setting)."""
    from downpour.train.rundir import RunDir

    run = RunDir.create(tmp_path / "run", load_config(preset, overrides)).path
    assert main(["analyze", str(run / "no-faces")]) == 2
    err = capsys.readouterr().err
    assert f"the run {str(run)!r} has no no-faces twin{advice.format(run=run)}" in err
