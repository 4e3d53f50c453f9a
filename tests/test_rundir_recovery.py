"""Recovering a run directory left at a bad moment, as docs/training.md ("Interrupts and resume") says:
a resume stopped between its last checkpoint and its model (the model kept an earlier step's), and a
streamed run whose data failed before its first step (its empty metrics.jsonl made the folder count as
trained: the same command refused it, and --resume had no checkpoint)."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from downpour.config import ConfigError, load_config
from downpour.errors import DownpourError
from downpour.ps.cluster import run_cluster
from downpour.train.checkpoint import CheckpointError
from downpour.train.json_digest import rewrite_json
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir, RunExistsError

SAE = ["data.samples=500", "train.batch_size=20", "train.log_every=4", "train.tensorboard=false"]
CLUSTER = ["cluster.runner=simulated", "data.samples=256", "train.batch_size=16", "train.log_every=4",
           "train.tensorboard=false", "cluster.workers=4", "cluster.shards=2"]


def _go(runner, path, *overrides, resume=False):
    if resume:
        cfg = load_config(str(path / "config.toml"), list(overrides))
    else:
        cfg = load_config("ufldl-sae", [*(SAE if runner == "local" else CLUSTER), *overrides])
    run = RunDir.open(path) if resume else RunDir.create(path, cfg)
    return (run_local if runner == "local" else run_cluster)(cfg, run, resume=resume)


def _stop_in_save_model(monkeypatch):
    """Ctrl-C as the model is saved (after the last checkpoint); returns the weights it was about to write."""
    about = {}

    def save_model(self, model, step, extra=None):
        about.update({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_model", save_model)
    return about


def _checkpoint_step(runner, path):
    return json.loads((path / "checkpoints" / f"{'local' if runner == 'local' else 'server'}.json").read_text())["step"]


# --- A. a resume stopped between its last checkpoint and its model ---------------------------------
@pytest.mark.parametrize(("runner", "again"), [("local", ()), ("local", ("train.steps=16",)), ("cluster", ())])
def test_a_resume_stopped_before_its_model_rewrites_the_stale_model(tmp_path, monkeypatch, runner, again):
    """The model.json of the first 8 steps was there, so --resume refused with 'already reached' and
    kept the step-8 model, though the checkpoint held step 16."""
    run = tmp_path / "r"
    _go(runner, run, "train.steps=8")
    with monkeypatch.context() as m:
        about = _stop_in_save_model(m)
        with pytest.raises(KeyboardInterrupt):
            _go(runner, run, "train.steps=16", resume=True)
    assert _checkpoint_step(runner, run) == 16 and RunDir(run).read_json("model.json")["step"] == 8
    summary = _go(runner, run, *again, resume=True)
    assert summary["steps"] == summary["resumed_from"] == 16
    assert RunDir.open(run).read_json("model.json")["step"] == 16
    saved = RunDir(run).load_model().state_dict()
    assert saved.keys() == about.keys() and all(torch.equal(saved[k], about[k]) for k in saved)
    with pytest.raises(ConfigError, match="already reached step 16"):   # whole again: nothing left to do
        _go(runner, run, *again, resume=True)


def _model_files(path, step):
    """model.json at ``step`` beside a safetensors file (whole: one cut short is no saved model)."""
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path / "model.safetensors"))
    (path / "model.json").write_text(json.dumps({"step": step}) if isinstance(step, int) else step)


@pytest.mark.parametrize(("model", "unsaved"), [
    (None, True),                 # no model at all (the case that already worked)
    (8, True),                    # an earlier run's model
    ('{"step": 1', True),         # model.json torn mid-write
    (16, False),                  # whole: a resume with these steps is refused ('already reached')
    (20, False),
    ("cut", True),                # model.safetensors cut short: written again from the checkpoint, not 'already reached'
])
def test_unsaved_at_end_compares_the_models_step_with_the_checkpoints(tmp_path, model, unsaved):
    cfg = load_config("ufldl-sae", ["train.steps=16"])
    if model is not None:
        _model_files(tmp_path, 16 if model == "cut" else model)
    if model == "cut":
        weights = (tmp_path / "model.safetensors").read_bytes()
        (tmp_path / "model.safetensors").write_bytes(weights[:len(weights) - 4])
    run = RunDir(tmp_path)
    run.save_config(cfg)                                            # the run's own end: step 16
    assert run.unsaved_at_end(cfg, 16, resume=True) is unsaved
    assert run.unsaved_at_end(cfg, 12, resume=True) is False       # steps left: it trains them
    assert run.unsaved_at_end(cfg, 16, resume=False) is False


def test_a_model_json_without_its_weights_is_not_a_saved_model(tmp_path):
    _model_files(tmp_path, 16)
    (tmp_path / "model.safetensors").unlink()
    RunDir(tmp_path).save_config(load_config("ufldl-sae", ["train.steps=16"]))
    assert RunDir(tmp_path).unsaved_at_end(load_config("ufldl-sae", ["train.steps=16"]), 16, resume=True)


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_resume_with_steps_at_or_below_a_mid_run_checkpoint_is_refused_not_finished_there(tmp_path, runner):
    """A run of 100 stopped at its step-8 checkpoint, resumed with --steps 4 (or 8): it wrote a "finished"
    step-8 model under a config of 100 steps and exited 0."""
    run = tmp_path / "run"
    summary = _go(runner, run, "train.steps=8", f"{'train' if runner == 'local' else 'cluster'}.checkpoint_every=8")
    assert summary["steps"] == 8
    RunDir(run).save_config(load_config(str(run / "config.toml"), ["train.steps=100"]))   # as if stopped at 8 of 100
    for name in ("model.safetensors", "model.json"):
        (run / name).unlink()
    for steps in (4, 8):
        with pytest.raises(ConfigError, match="already reached step 8"):
            _go(runner, run, f"train.steps={steps}", resume=True)
        assert not (run / "model.json").exists() and RunDir(run).config.train.steps == 100


# --- B. a run whose data failed before its first step ----------------------------------------------
STREAM = ["data.source=folder", "data.mode=crops", "data.size=8", "data.pipeline=stream", "data.fit_sample=8",
          "data.normalize=none", "data.whiten=none", "data.loader_workers=1", "train.batch_size=8",
          "train.steps=5", "train.log_every=5", "train.threads=1"]


def test_a_streamed_run_whose_data_failed_is_taken_over_once_the_data_is_fixed(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_text("not an image")
    (images / "b.png").write_bytes(b"")
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={images}"])
    path = tmp_path / "runs/ab1"
    with pytest.raises(DownpourError, match="can be read"):
        run_local(cfg, RunDir.create(path, cfg))
    assert not RunDir(path).metrics() and not RunDir(path).has_checkpoint()
    assert RunDir(path).read_json("data.json")["n_skipped"] == 2     # what it skipped, said before the files are fixed
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(images / f"g{i:02d}.png")
    RunDir.create(path, cfg)                                          # the stopped start's record goes with it
    assert not (path / "data.json").exists()
    summary = run_local(cfg, RunDir.create(path, cfg))                 # the same command, fixed
    assert summary["steps"] == 5 and [r["step"] for r in RunDir(path).metrics()] == [5]
    with pytest.raises(RunExistsError, match="already holds a run"):  # once it has trained: never overwritten
        RunDir.create(path, cfg)


def _leftover(path, **files):
    """A run folder its data failed in: config.toml, tb/ and the preprocessing, plus ``files``."""
    cfg = load_config("ufldl-sae", SAE)
    RunDir.create(path, cfg)
    (path / "tb").mkdir()
    (path / "preprocess.json").write_text("{}")
    for name, text in files.items():
        target = path / name.replace("__", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return cfg


@pytest.mark.parametrize("metrics", ["", "\n", '{"step": 4, "lo'])
def test_a_metrics_file_without_a_row_does_not_make_a_run_trained(tmp_path, metrics):
    cfg = _leftover(tmp_path / "r", **{"metrics.jsonl": metrics})
    assert RunDir(tmp_path / "r").never_started()
    RunDir.create(tmp_path / "r", cfg)                                 # taken over, not refused
    assert not (tmp_path / "r/metrics.jsonl").exists()                 # no torn line for the new rows to follow


@pytest.mark.parametrize("files", [
    {"metrics.jsonl": '{"step": 4, "loss": 1.0}\n'},
    {"metrics.jsonl": '\n{"step": 4, "loss": 1.0}\n{"step": 8, "lo'},
    {"metrics.jsonl": "", "checkpoints__local.json": "{}"},
    {"metrics.jsonl": "", "model.json": "{}"},
])
def test_a_run_with_a_metrics_row_a_checkpoint_or_a_model_is_never_overwritten(tmp_path, files):
    cfg = _leftover(tmp_path / "r", **files)
    assert not RunDir(tmp_path / "r").never_started()
    with pytest.raises(RunExistsError, match="already holds a run"):
        RunDir.create(tmp_path / "r", cfg)
    assert (tmp_path / "r/metrics.jsonl").read_text() == files["metrics.jsonl"]


def test_a_resume_over_changed_images_says_its_input_processing_was_fitted_anew(tmp_path, caplog):
    """A resume fits the normalisation and whitening again on the folder as it is: with 30 images added
    that fit changed and preprocess.* was overwritten without a word (the first steps' fit was lost)."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(images / f"a{i:02d}.png")
    folder = ["data.source=folder", f"data.path={images}", "data.pipeline=memory", "data.mode=crops", "data.size=8",
              "data.whiten=zca", "train.batch_size=10"]
    run = tmp_path / "r"
    _go("local", run, *folder, "train.steps=4")
    _go("local", run, "train.steps=6", resume=True)                 # nothing changed: nothing said
    assert "refit_on_resume" not in RunDir(run).read_json("preprocess.json") and "differs" not in caplog.text
    for i in range(30, 60):
        Image.fromarray((rng.random((24, 24)) ** 3 * 255).astype(np.uint8)).save(images / f"b{i:02d}.png")
    _go("local", run, "train.steps=8", resume=True)
    assert "differs from the one this run began with" in caplog.text
    assert RunDir(run).read_json("preprocess.json")["refit_on_resume"] == [6]
    _go("local", run, "train.steps=10", resume=True)                # the refit is kept in the record
    assert RunDir(run).read_json("preprocess.json")["refit_on_resume"] == [6]


def test_the_run_directorys_own_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """model.safetensors, model.json and config.toml were written in place: a kill between the model's
    two files loaded the new weights as the old step's, one inside save_file lost the old model, and a
    config.toml cut at zero bytes read as the defaults (cat-demo, 1,000 steps)."""
    import downpour.train.model_file as model_file     # (what RunDir.save_model writes the pair with)
    from downpour.models.registry import build
    from downpour.train.checkpoint import CheckpointError

    cfg = load_config("ufldl-sae", ["train.steps=8"])
    run = RunDir.create(tmp_path / "r", cfg)
    old, new = (build(cfg, (1, cfg.data.size, cfg.data.size))[0] for _ in range(2))
    run.save_model(old, 8)
    real_write = model_file.write_tensors             # (safetensors' save_file, then the file's mode)

    def torn(state, path, layouts=None):          # killed halfway through writing the weights
        real_write(state, path, layouts)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(model_file, "write_tensors", torn)
        with pytest.raises(KeyboardInterrupt):
            run.save_model(new, 16)
    loaded = RunDir.open(tmp_path / "r").load_model()
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in loaded.state_dict().items())
    with monkeypatch.context() as m:              # killed between the weights and model.json
        m.setattr(model_file, "replace_text", lambda path, text: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run.save_model(new, 16)
    with pytest.raises(CheckpointError,      # (no checkpoint: a resume would be refused, so it is not named)
                       match="is not the model .* describes .* no checkpoint to write it from: .*train it again"):
        RunDir.open(tmp_path / "r").load_model()
    (tmp_path / "r/config.toml").write_text("")
    with pytest.raises(DownpourError, match="config.toml' is empty"):
        RunDir.open(tmp_path / "r").config


@pytest.mark.parametrize("damage, named", [
    (lambda m: m["shards"][0].pop("applied"), "lacks key 'applied'"),
    (lambda m: m["recorder"].pop("pushes"), "lacks key 'pushes'"),
    (lambda m: m["sim"].pop("heap"), "lacks key 'heap'"),
    (lambda m: m.update(step="16"), "step is '16', not a step number"),
])
def test_a_server_checkpoint_damaged_but_still_json_is_named_not_a_bare_key_error(tmp_path, damage, named):
    """Its checksum covers the tensors only: a key removed by hand is named with the file, not a bare KeyError."""
    run = tmp_path / "run"
    _go("simulated", run, "train.steps=16", "cluster.checkpoint_every=8")
    RunDir(run).save_config(load_config(str(run / "config.toml"), ["train.steps=24"]))
    rewrite_json(run / "checkpoints" / "server.json", damage)
    with pytest.raises(CheckpointError, match=rf"server.json.*{named}|{named}.*server.json|server.json'.*{named}"):
        _go("simulated", run, "train.steps=24", resume=True)


def test_two_runs_started_in_the_same_second_get_a_folder_each(tmp_path):
    """The default --out is named to the second: two runs took one folder and wrote into it together."""
    from downpour.train.folders import fresh_folder

    name = str(tmp_path / "runs" / "main-20261202-083836")
    first, second, third = fresh_folder(name), fresh_folder(name), fresh_folder(name)
    assert [p.name for p in (first, second, third)] == ["main-20261202-083836", "main-20261202-083836-2",
                                                        "main-20261202-083836-3"]
    assert all(p.is_dir() for p in (first, second, third))


def test_only_a_finished_run_going_on_is_recorded_as_extended(tmp_path):
    """A run whose every worker was lost saves its model at the step it reached; its resume is not recorded as
    "extended", as if it had finished there."""
    def events(path):
        return [e for e in json.loads((path / "staleness.json").read_text())["events"] if e["event"] == "extended"]

    finished, stopped = tmp_path / "finished", tmp_path / "stopped"
    for path in (finished, stopped):
        _go("simulated", path, "train.steps=16", "cluster.checkpoint_every=4")
    _go("simulated", finished, "train.steps=24", resume=True)
    assert events(finished) == [{"event": "extended", "step": 16}]
    # the model saved at step 16 of a run meant to go to 24 (as when every worker was lost there)
    RunDir(stopped).save_config(load_config(str(stopped / "config.toml"), ["train.steps=24"]))
    _go("simulated", stopped, "train.steps=24", resume=True)
    assert events(stopped) == []


@pytest.mark.parametrize("line, named", [(b"[1, 2]", "line 2 is not a metrics row"), (b'{"step": "30"}', "line 2 is not a metrics row"),
                                         (b'{"step": 4, "loss": "\xff"}', "is not text"),
                                         (b"\n\nGARBAGE", "line 4 is not JSON")])     # (blank lines counted: was "line 2")
def test_a_damaged_metrics_line_is_named_wherever_the_rows_are_read(tmp_path, line, named):
    """A JSON line that is not a row, or bytes that are not UTF-8, is named, not a traceback in the resume and the
    report."""
    from downpour.train.rundir import NotARunError

    path = tmp_path / "r"
    path.mkdir()
    (path / "metrics.jsonl").write_bytes(b'{"step": 2, "loss": 1.0}\n' + line + b'\n{"step": 6, "loss": 0.5}\n')
    run = RunDir(path)
    with pytest.raises(NotARunError, match=named):
        run.metrics()
    with pytest.raises(NotARunError, match=named):
        run.truncate_metrics(4)
    (path / "metrics.jsonl").write_text('{"step": 2, "loss": 1.0}\n{"step": 6, "lo')   # a torn last line: no row
    assert [row["step"] for row in run.metrics()] == [2] and run.truncate_metrics(4) == 1


def test_a_run_killed_before_its_first_checkpoint_trains_again_from_step_0_on_resume(tmp_path, capsys):
    """With train.checkpoint_every = 0 a local run saves its first checkpoint at its end: a kill before it left
    metrics rows and nothing to resume from, and `--resume` ("checkpoint missing") and a new run into the folder
    ("already holds a run; resume it") each pointed at the other."""
    from safetensors.torch import load_file

    from downpour.cli import main

    argv = ["--config", "tica-8x8", "--runner", "local", "--steps", "8", "--no-report", "--set", "train.threads=1",
            "--set", "train.log_every=2", "--set", "data.samples=500"]
    assert main(["train", *argv, "--out", str(tmp_path / "whole")]) == 0
    assert main(["train", *argv, "--out", str(tmp_path / "killed")]) == 0
    killed = tmp_path / "killed"
    for name in ("model.json", "model.safetensors", "checkpoints"):   # as a kill at step 6 leaves it
        shutil.rmtree(killed / name) if (killed / name).is_dir() else (killed / name).unlink()
    (killed / "metrics.jsonl").write_text("".join(line + "\n" for line in (killed / "metrics.jsonl").read_text().splitlines()[:3]))
    assert main(["train", "--resume", str(killed), "--dry-run"]) == 0 and (killed / "metrics.jsonl").is_file()
    assert main(["train", "--resume", str(killed)]) == 0
    assert "stopped before its first checkpoint" in capsys.readouterr().err
    whole, again = load_file(tmp_path / "whole" / "model.safetensors"), load_file(killed / "model.safetensors")
    assert all(torch.equal(whole[k], again[k]) for k in whole)
    assert [r["step"] for r in RunDir(killed).metrics()] == [2, 4, 6, 8]


@pytest.mark.parametrize("gone, found", [("checkpoints", "is missing"), ("checkpoints/*", "holds no checkpoint")])
def test_checkpoints_deleted_while_a_run_trained_are_told_from_a_kill_before_the_first(tmp_path, capsys, gone, found):
    """A run killed at step 6 whose checkpoints were deleted (or moved) while it trained left what a kill before its
    first checkpoint leaves (rows, no checkpoint, no model), and `--resume` trained it again from step 0 over its rows;
    its rows past a checkpoint's step say the checkpoints were written."""
    from downpour.cli import main

    argv = ["--config", "tica-8x8", "--runner", "local", "--steps", "8", "--no-report", "--set", "train.threads=1",
            "--set", "train.log_every=2", "--set", "data.samples=500", "--set", "train.checkpoint_every=2"]
    found = rf"checkpoints' {found}, though metrics.jsonl has rows to step 6, past step 2, where train.checkpoint_every = 2"
    killed = tmp_path / "killed"
    assert main(["train", *argv, "--out", str(killed)]) == 0
    for path in [killed / "model.json", killed / "model.safetensors", *killed.glob(gone)]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    rows = (killed / "metrics.jsonl").read_text().splitlines()[:3]     # as a kill at step 6 leaves them
    (killed / "metrics.jsonl").write_text("".join(line + "\n" for line in rows))
    capsys.readouterr()
    for dry in (["--dry-run"], []):
        assert main(["train", "--resume", str(killed), *dry]) == 2
        err = capsys.readouterr().err
        assert re.search(found, err) and "deleted (or moved) after they were written" in err, err
    assert (killed / "metrics.jsonl").read_text().splitlines() == rows       # nothing trained again over them


def test_a_kill_during_the_first_save_trains_again_from_step_0_not_told_as_checkpoints_deleted(tmp_path, capsys,
                                                                                               monkeypatch):
    """save_state makes checkpoints/ before its temporary file exists (it copies the tensors first: seconds of a large
    model, where an out-of-memory kill lands): a kill there leaves an empty checkpoints/ folder, which `--resume` takes
    for a kill before the first checkpoint, not for checkpoints deleted after they were written, refused."""
    import downpour.train.checkpoint as checkpoint
    from downpour.cli import main

    class Killed(BaseException):
        pass

    def killed_in_checkpoints(tensors, path, layouts=None):
        if path.parent.name == "checkpoints":
            raise Killed(path)
        write(tensors, path, layouts)

    argv = ["--config", "tica-8x8", "--runner", "local", "--steps", "8", "--no-report", "--set", "train.threads=1",
            "--set", "train.log_every=2", "--set", "data.samples=500"]
    killed, write = tmp_path / "killed", checkpoint.write_tensors
    monkeypatch.setattr(checkpoint, "write_tensors", killed_in_checkpoints)
    with pytest.raises(Killed):
        main(["train", *argv, "--out", str(killed)])
    monkeypatch.undo()
    assert (killed / "checkpoints").is_dir() and not any((killed / "checkpoints").iterdir())
    assert not (killed / "model.json").exists() and RunDir(killed).logged()
    capsys.readouterr()
    assert main(["train", "--resume", str(killed)]) == 0, capsys.readouterr().err
    assert "stopped before its first checkpoint" in capsys.readouterr().err
    assert RunDir(killed).model_step() == 8 and [r["step"] for r in RunDir(killed).metrics()] == [2, 4, 6, 8]


@pytest.mark.parametrize("every", [0, 6])
def test_a_run_killed_before_its_first_checkpoint_with_a_damaged_metrics_line_trains_again(tmp_path, capsys, every):
    """Telling checkpoints deleted from a kill read every metrics row (with train.checkpoint_every = 0 too, where no row
    can say a checkpoint was written), and a damaged line refused the resume that trained the run again from step 0,
    which writes the file anew."""
    from downpour.cli import main

    argv = ["--config", "tica-8x8", "--runner", "local", "--steps", "8", "--no-report", "--set", "train.threads=1",
            "--set", "train.log_every=2", "--set", "data.samples=500", "--set", f"train.checkpoint_every={every}"]
    killed = tmp_path / "killed"
    assert main(["train", *argv, "--out", str(killed)]) == 0
    for name in ("model.json", "model.safetensors", "checkpoints"):   # as a kill at step 6 leaves it
        shutil.rmtree(killed / name) if (killed / name).is_dir() else (killed / name).unlink()
    rows = (killed / "metrics.jsonl").read_text().splitlines()
    (killed / "metrics.jsonl").write_text("".join(line + "\n" for line in [rows[0], "GARBAGE", *rows[1:3]]))
    capsys.readouterr()
    assert main(["train", "--resume", str(killed)]) == 0, capsys.readouterr().err
    assert "stopped before its first checkpoint" in capsys.readouterr().err
    assert [r["step"] for r in RunDir(killed).metrics()] == [2, 4, 6, 8]


def test_a_run_being_trained_now_is_not_taken_for_one_killed_before_its_first_checkpoint(tmp_path, capsys):
    """A live run without a checkpoint yet (train.checkpoint_every = 0) looks like one killed before its first:
    `downpour train --resume` from another terminal (what `downpour analyze` of it suggests) removed its metrics
    and trained it again from step 0 in the same folder, beside the live run. The training holds a lock."""
    from downpour.cli import main
    from downpour.train.lock import training
    from downpour.train.rundir import NotARunError

    argv = ["--config", "tica-8x8", "--runner", "local", "--steps", "8", "--no-report", "--set", "train.threads=1",
            "--set", "train.log_every=2", "--set", "data.samples=500"]
    live = tmp_path / "live"
    assert main(["train", *argv, "--out", str(live)]) == 0     # (the lock is let go at its end: --resume below)
    for name in ("model.json", "model.safetensors", "checkpoints"):   # as it is while it trains
        shutil.rmtree(live / name) if (live / name).is_dir() else (live / name).unlink()
    rows = (live / "metrics.jsonl").read_text()
    with training(live):                                    # the other process, training it
        assert main(["train", "--resume", str(live)]) == 2
        assert "is being trained now by another downpour process" in capsys.readouterr().err
        with pytest.raises(NotARunError, match="being trained now"):
            with training(live):
                pass
    assert (live / "metrics.jsonl").read_text() == rows and not (live / "model.json").exists()
    assert main(["train", "--resume", str(live)]) == 0       # once it is not: trained again from step 0, as before


def test_a_folder_being_trained_is_not_taken_over_by_a_new_run_of_its_config(tmp_path, capsys):
    """The same command again in another terminal, while the first run has no metrics row yet (its data loading), does
    not take its folder over as one that never started (its metrics.jsonl removed, then refused by the lock)."""
    from downpour.cli import main
    from downpour.train.lock import training

    argv = ["train", "--config", "tica-8x8", "--runner", "local", "--steps", "8", "--no-report",
            "--set", "data.samples=500", "--out", str(tmp_path / "run")]
    RunDir.create(tmp_path / "run", load_config("tica-8x8"))
    (tmp_path / "run" / "metrics.jsonl").touch()           # opened by the live run, no row yet
    with training(tmp_path / "run"):                        # the other process, training it
        assert main(argv) == 2
        assert "is being trained now by another downpour process" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


@pytest.mark.parametrize("there", ["nothing", "a run that never started"])
def test_a_twin_or_a_fold_trained_into_its_folder_holds_its_lock(tmp_path, monkeypatch, there):
    """train_kept (a run's no-faces twin, a cross-fit's folds) trained unlocked: a `--resume` of the twin or a fold
    from another terminal found no checkpoint yet and trained it again from step 0 beside the live one."""
    from downpour.train.lock import check_not_training
    from downpour.train.rundir import NotARunError
    from downpour.twins import train_kept

    cfg = load_config("ufldl-sae", SAE)
    path = tmp_path / "fold-0"
    if there != "nothing":
        RunDir.create(path, cfg)
    refused = []

    def train(cfg, run, resume=False, opened=None):        # while it trains, another process's resume looks
        with pytest.raises(NotARunError, match="being trained now") as err:
            check_not_training(run.path)
        refused.append(err.value)
        return {"run": str(run.path)}

    monkeypatch.setattr("downpour.runners.train", train)
    assert train_kept(cfg, path) == {"run": str(path)} and len(refused) == 1
    check_not_training(path)                  # let go once it returns


def test_a_folder_not_there_yet_is_locked_before_its_run_is_made_in_it(tmp_path):
    """training_in (`downpour train --out NEW`, plan --check-simulated --out NEW) locks a folder not there yet before
    it makes the run in it: made first, the same command started beside it in that moment would find the run
    unlocked and never started, take it over and write its own config.toml over the first's, which trains on under
    it."""
    from downpour.train.lock import check_not_training, training_in
    from downpour.train.rundir import NotARunError

    cfg, path = load_config("ufldl-sae", SAE), tmp_path / "new" / "run"

    def make():                               # while it makes the run, another process's start looks
        with pytest.raises(NotARunError, match="being trained now"):
            check_not_training(path)
        return RunDir.create(path, cfg)

    with training_in(path, make) as run:
        assert run.path == path and (path / "config.toml").is_file()
    check_not_training(path)                  # let go once the block ends


def test_a_process_forked_while_a_run_trains_lets_go_of_its_lock(tmp_path):
    """flock locks belong to the open folder, and a forked child (a DataLoader worker) shares it: the run's lock must
    not outlive its training while the child lives (the next --resume would be told it is being trained now)."""
    import multiprocessing

    from downpour.train.lock import check_not_training, training

    ctx = multiprocessing.get_context("fork")
    started, done = ctx.Event(), ctx.Event()

    def child():
        started.set()
        done.wait(60)

    with training(tmp_path):
        process = ctx.Process(target=child)
        process.start()
        assert started.wait(60)
    try:
        check_not_training(tmp_path)
    finally:
        done.set()
        process.join()


@pytest.mark.parametrize("errno_name", ["ENOLCK", "EOPNOTSUPP"])
def test_a_folder_the_filesystem_cannot_lock_trains_unlocked(tmp_path, monkeypatch, caplog, errno_name):
    """flock on some NFS and FUSE mounts fails with ENOLCK or EOPNOTSUPP: the run crashed with that OSError
    before its first step, and a --resume of it too; it trains as before the lock, and the log says so."""
    import errno
    import os

    from downpour.train import lock

    def flock(fd, how):
        code = getattr(errno, errno_name)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(lock.fcntl, "flock", flock)
    monkeypatch.setattr(lock, "_UNLOCKABLE", set(), raising=False)     # (said once for each filesystem in a process)
    with lock.training(tmp_path):
        lock.check_not_training(tmp_path)
    assert "its folder cannot be locked" in caplog.text and str(tmp_path) in caplog.text


@pytest.mark.parametrize("edit, named", [({"step": "95"}, "step is '95', not a step number"),
                                         ({"step": -5}, "step is -5"), ({"row": {"sums": 1}}, "its row or elapsed time"),
                                         ({"elapsed": "soon"}, "its row or elapsed time")])
def test_a_hand_edited_local_checkpoint_is_named_not_a_traceback(tmp_path, edit, named):
    """"step": "95" was a TypeError in refuse_reached, -5 "stage 0 out of range", a bad row a TypeError."""
    cfg = load_config("ufldl-sae", [*SAE, "train.steps=8", "train.checkpoint_every=4", "train.threads=1"])
    path = tmp_path / "run"
    run_local(cfg, RunDir.create(path, cfg))
    rewrite_json(path / "checkpoints" / "local.json", **edit)
    with pytest.raises(CheckpointError, match=named):
        run_local(load_config(str(path / "config.toml"), ["train.steps=12"]), RunDir(path), resume=True)


def test_an_analysis_of_an_earlier_model_does_not_outlive_the_next_one(tmp_path, caplog):
    """`downpour report` while a resume trained wrote the old model's analysis, then the resume saved its model: the
    report went on showing the step-400 analysis of a 60,000-step model as current."""
    from downpour.analysis.options import open_run
    from downpour.analysis.report import write_report
    from downpour.train.rundir import NotARunError

    cfg = load_config("ufldl-sae", [*SAE, "train.steps=8", "train.checkpoint_every=4", "train.threads=1"])
    run = RunDir.create(tmp_path / "run", cfg)
    run_local(cfg, run)
    run.write_json("analysis.json", {"trained_steps": 8})
    run.save_model(run.load_model(), 8)                      # the same model: its analysis stays
    assert run.analysed_step() == 8
    run.write_json("analysis.json", {"trained_steps": 4})    # an analysis made of an earlier model
    run.save_model(run.load_model(), 8)
    assert not (run.path / "analysis.json").exists()
    run.write_json("analysis.json", {"trained_steps": 4})    # left by a version that kept it: the report drops it
    with pytest.raises(NotARunError, match="has no analysis.json"):
        write_report(run.path, analyze_if_missing=False)
    rewrite_json(run.checkpoints / "local.json", step=10)     # a resume to 12 stopped at step 10
    run.save_config(load_config("ufldl-sae", [*SAE, "train.steps=12", "train.checkpoint_every=4", "train.threads=1"]))
    with caplog.at_level("WARNING"):
        open_run(run.path)
    assert "its checkpoint is at step 10 of 12, past the model saved at step 8" in caplog.text


def test_a_file_where_the_tensorboard_folder_goes_is_named_before_training(tmp_path):
    from downpour.train.rundir import NotARunError

    cfg = load_config("ufldl-sae", [*SAE, "train.steps=4", "train.threads=1", "train.tensorboard=true"])
    run = RunDir.create(tmp_path / "run", cfg)
    (run.path / "tb").write_text("not a folder")
    with pytest.raises(NotARunError, match="/tb' is a file where the run's TensorBoard folder goes"):
        run_local(cfg, run)


def test_a_run_config_that_is_not_utf8_is_named_on_resume(tmp_path):
    """The emptiness check read it as text first: a UnicodeDecodeError traceback (--config named it cleanly)."""
    from downpour.config import ConfigError

    path = tmp_path / "run"
    path.mkdir()
    (path / "config.toml").write_bytes(b"seed = 0\n# \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        RunDir(path).config_with()


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_run_stopped_before_its_data_record_writes_it_when_resumed(tmp_path, monkeypatch, runner):
    """Stopped after its last checkpoint, before data.json: the resume saved the model with the source's
    info only, and the record of the files read and skipped (the bad one here) was lost."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(images / f"g{i:02d}.png")
    (images / "bad.png").write_text("not an image")
    more = [] if runner == "local" else ["cluster.runner=simulated", "cluster.workers=2", "cluster.shards=1",
                                         "data.loader_workers=0"]
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={images}", "train.tensorboard=false", *more])
    path = tmp_path / "r"
    go = run_local if runner == "local" else run_cluster
    real_write = RunDir.write_json

    def write_json(self, name, obj):
        if name == "data.json":
            raise KeyboardInterrupt
        return real_write(self, name, obj)

    with monkeypatch.context() as m:
        m.setattr(RunDir, "write_json", write_json)
        with pytest.raises(KeyboardInterrupt):
            go(cfg, RunDir.create(path, cfg))
    assert not (path / "data.json").exists() and not (path / "model.json").exists()
    go(load_config(str(path / "config.toml")), RunDir.open(path), resume=True)
    record = RunDir(path).read_json("data.json")
    assert record["n_skipped"] == 1 and record["skipped"][0]["file"].endswith("bad.png")
    assert RunDir(path).read_json("model.json")["data"]["n_skipped"] == 1


@pytest.mark.parametrize("damage, named", [
    (lambda p: rewrite_json(p / "model.json", lambda m: m.update(input_shape="abc")), "input_shape is 'abc', not a list"),
    (lambda p: rewrite_json(p / "model.json", lambda m: m.update(options=[1])), r"options is \[1\], not a table"),
    (lambda p: rewrite_json(p / "checkpoints/local.json", lambda m: m.update(
        row={"sums": {"a": 1.0}, "counts": {}, "steps": 1, "samples": 4, "loss": 1.0})), "its row .* cannot be read"),
    (lambda p: rewrite_json(p / "checkpoints/local.json", lambda m: m.update(skipped=99)), "99 steps skipped of 8"),
    (lambda p: ((p / "metrics.jsonl").unlink(), (p / "metrics.jsonl").mkdir()), "metrics.jsonl' is a folder"),
], ids=["input_shape", "options", "row", "skipped", "metrics-folder"])
def test_a_hand_edited_run_file_is_named_not_a_traceback(tmp_path, damage, named):
    """Each of these is named, not a TypeError, a KeyError at a later log step (saved again on the way out), a false
    'every step was skipped', or an IsADirectoryError."""
    path = tmp_path / "r"
    _go("local", path, "train.steps=8")
    damage(path)
    with pytest.raises(DownpourError, match=named):
        if named.startswith(("input_shape", "options")):
            RunDir.open(path).new_model()
        else:
            _go("local", path, "train.steps=16", resume=True)


def test_a_run_saved_with_an_option_refused_since_as_unread_still_resumes_and_loads(tmp_path, caplog):
    """model.init_scale under a Gabor first layer and a tied decoder was accepted (and read by nothing) before
    2026-12-03: such a run's resume and analysis are not refused ("model.init_scale = 0.1 is not read")."""
    from downpour.runners import train

    cfg = load_config("tica-8x8", ["cluster.runner=local", "train.steps=4", "data.samples=300", "train.tensorboard=false",
                                   "model.first_layer=gabor", "model.bias=true"])
    run = RunDir.create(tmp_path / "run", cfg)
    train(cfg, run)
    toml = (run.path / "config.toml").read_text()
    (run.path / "config.toml").write_text(toml.replace("init_scale = 0.0", "init_scale = 0.1"))   # as such a run saved it
    rewrite_json(run.path / "model.json", lambda meta: meta["options"].update(init_scale=0.1))
    with caplog.at_level("WARNING", logger="downpour.train.recorded"):
        again = RunDir.open(run.path)
        assert again.config.model.options["init_scale"] == 0.0          # its default
        again.load_model()
    assert "model.init_scale = 0.1 is not read" in caplog.text and "read as its default" in caplog.text
    summary = train(again.config_with(["train.steps=6"]), again, resume=True)      # as `--resume RUN --steps 6`
    assert summary["resumed_from"] == 4 and summary["steps"] == 6
    # only what the run saved is dropped: typed on a resume, the option is refused as in a new run (not dropped,
    # blamed on config.toml); and a new run from the file (what a refused resume advises) reads it as the resume does
    from downpour.cli import main
    from downpour.errors import UnreadOption
    from downpour.models.registry import resolve
    from downpour.preflight import new_run_config

    with pytest.raises(UnreadOption, match="model.init_scale = 0.2 is not read"):
        resolve(again.config_with(["model.init_scale=0.2"]))
    (run.path / "config.toml").write_text((run.path / "config.toml").read_text().replace("init_scale = 0.0",
                                                                                         "init_scale = 0.1"))
    assert new_run_config(str(run.path / "config.toml"), ["train.steps=2"]).model.options["init_scale"] == 0.0
    assert main(["train", "--config", str(run.path / "config.toml"), "--dry-run"]) == 0


@pytest.mark.parametrize("edit", [lambda m: m.update(whiten=5), lambda m: m.update(whiten=["zca"]),
                                  lambda m: m.pop("normalize")], ids=["whiten-5", "whiten-list", "no-normalize"])
def test_a_hand_edited_preprocess_json_is_named_not_a_traceback(tmp_path, edit):
    """The analysis read it with a bare ValueError / TypeError traceback (an unknown whitening, a list for one)."""
    path = tmp_path / "r"
    _go("local", path, "train.steps=4")
    rewrite_json(path / "preprocess.json", edit)
    with pytest.raises(CheckpointError, match="preprocess.json' cannot be read back"):
        RunDir.open(path).load_preprocess()


def test_weights_changed_in_a_run_without_a_checkpoint_are_named_in_a_whole_sentence(tmp_path):
    """model.safetensors whose SHA-256 is not the one model.json records, in a run with no checkpoint to write it
    from: the message opened "(its SHA-256 is not the one recorded there: ..." and never closed it."""
    from downpour.models.registry import build

    cfg = load_config("ufldl-sae", ["train.steps=8"])
    run = RunDir.create(tmp_path / "r", cfg)
    run.save_model(build(cfg, (1, cfg.data.size, cfg.data.size))[0], 8)
    weights = bytearray((tmp_path / "r/model.safetensors").read_bytes())
    weights[-8:] = bytes(b ^ 0xFF for b in weights[-8:])           # inside the last tensor's data, the header intact
    (tmp_path / "r/model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(CheckpointError, match="no checkpoint to write it from") as err:
        RunDir.open(tmp_path / "r").load_model()
    said = str(err.value)
    assert said.count("(") == said.count(")") and "between the two), and the run has no checkpoint" in said
