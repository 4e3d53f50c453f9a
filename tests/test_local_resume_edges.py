"""The local loop at the edges of a run: a signal after its last step, a resume whose own steps are all
skipped, the first metrics row after a resume, and checkpoints whose files match but whose optimiser
state does not (else, in turn: a run lost, a false failure, a rate up to log_every x too high, tracebacks or a
silent fresh optimiser)."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import downpour.train.loop as loop
from downpour.config import load_config
from downpour.errors import RunError
from downpour.train.checkpoint import PAIR_KEY, CheckpointError, sha256_of
from downpour.train.json_digest import rewrite_json
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings run in this process)

SAE = ["data.samples=500", "train.batch_size=20", "train.tensorboard=false", "train.threads=1"]


def _run(path, *overrides, resume=False):
    if resume:
        return run_local(load_config(str(path / "config.toml"), list(overrides)), RunDir.open(path), resume=True)
    cfg = load_config("ufldl-sae", [*SAE, *overrides])
    return run_local(cfg, RunDir.create(path, cfg))


def _interrupt_at(monkeypatch, n):
    """KeyboardInterrupt raised by the n-th train_step call (1-based) of this process."""
    real, calls = loop.train_step, {"n": 0}

    def step(*args):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop, "train_step", step)


def test_a_signal_after_the_last_step_keeps_the_run(tmp_path, monkeypatch):
    """A SIGTERM in Telemetry.close(), after step 30 of 30 and before the final checkpoint: no checkpoint, and
    --resume trained the whole run again from step 0."""
    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.Telemetry, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "r", "train.steps=30")
    monkeypatch.undo()
    assert json.loads((tmp_path / "r/checkpoints/local.json").read_text())["step"] == 30
    summary = _run(tmp_path / "r", resume=True)
    assert summary["resumed_from"] == 30 and RunDir.open(tmp_path / "r").model_step() == 30


def test_a_resume_whose_own_steps_are_all_skipped_ends_as_the_uninterrupted_run_does(tmp_path, monkeypatch):
    """Steps 1-4 trained, 5-8 non-finite: the uninterrupted run ends with exit 0, its resume from step 4 said
    'every one of the 4 steps 5..8 ... nothing was applied' and failed."""
    real = loop.train_step

    def poisoned(model, objective, batch):
        batch.x[:] = math.nan
        return real(model, objective, batch)

    _run(tmp_path / "r", "train.steps=4", "train.log_every=2")
    monkeypatch.setattr(loop, "train_step", poisoned)
    summary = _run(tmp_path / "r", "train.steps=8", resume=True)
    assert summary["skipped_steps"] == 4 and summary["final_loss"] == RunDir.open(tmp_path / "r").last_loss()
    with pytest.raises(RunError, match="every one of the 3 steps 1..3 had a non-finite cost"):
        _run(tmp_path / "all", "train.steps=3")                     # (nothing of the run trained: still an error)


def test_the_first_row_after_a_resume_rates_only_this_processs_samples(tmp_path, monkeypatch):
    """A row of 10 steps, 6 of them before the interruption: its samples_per_s divided all 10 steps' samples by
    the resumed process's time for 4 (a rate up to log_every x too high)."""
    logged = []
    real = loop.Telemetry.log

    def log(self, step, parts, samples, *args, **kwargs):
        logged.append((step, samples))
        return real(self, step, parts, samples, *args, **kwargs)

    _interrupt_at(monkeypatch, 17)                           # steps 1-16 done; the row of 11..20 holds 6 steps
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "r", "train.steps=30", "train.log_every=10")
    monkeypatch.undo()
    monkeypatch.setattr(loop.Telemetry, "log", log)
    _run(tmp_path / "r", resume=True)
    assert logged == [(20, 4 * 20), (30, 10 * 20)]          # (the row's own mean still covers its 10 steps)
    assert [r["step"] for r in RunDir.open(tmp_path / "r").metrics()] == [10, 20, 30]


def _edit_checkpoint(stem, tensors=None, meta=None):
    """Rewrite checkpoints/local with ``tensors(dict)`` (returning the new ones) / ``meta(dict)`` (changing it in
    place) applied, its pairing hash and its JSON's own digest made to fit (so only the contents are wrong, as a hand
    edit or another version would leave them)."""
    t = load_file(str(stem) + ".safetensors")
    t = tensors(t) if tensors else t
    save_file(t, str(stem) + ".safetensors")
    rewrite_json(stem.parent / (stem.name + ".json"), meta,
                 **{PAIR_KEY: sha256_of(stem.parent / (stem.name + ".safetensors"))})


def _first_opt_key(t):
    return next(k for k in t if k.startswith("opt.") and t[k].dim() > 0)


@pytest.mark.parametrize("damage, named", [
    (dict(meta=lambda m: m.update(scalars=[1])), "optimiser scalars are \\[1\\], not a table"),
    (dict(tensors=lambda t: {**t, _first_opt_key(t): torch.zeros(2)}), "has shape \\[2\\], its parameter"),
    (dict(tensors=lambda t: {k: v for k, v in t.items() if not k.startswith("opt.")}), "holds no Adam state"),
    (dict(meta=lambda m: m["param_groups"][0].update(lr="fast")),
     "learning rate is 'fast', not a number"),
    # another optimiser's checkpoint (an adagrad run's copied in): KeyError 'betas' inside Adam at the first step
    (dict(meta=lambda m: m.update(optimizer="Adagrad")), "saved by Adagrad, and this run uses Adam"),
    (dict(meta=lambda m: (m.pop("optimizer"),      # (older: no name recorded)
                          m.update(param_groups=[{"params": m["param_groups"][0]["params"], "lr": 0.1, "lr_decay": 0,
                                                  "initial_accumulator_value": 0, "eps": 1e-10, "weight_decay": 0}]))),
     "settings initial_accumulator_value, lr_decay are not Adam's"),
    # a moment missing, a setting of another kind, amsgrad without its moment: a KeyError, ValueError or TypeError
    # inside Adam at the first step; an integer moment: cast to the parameter's dtype, the moments trained on as 0
    (dict(tensors=lambda t: {k: v for k, v in t.items() if k != "opt.0.exp_avg"}), "parameter 0 lacks exp_avg"),
    (dict(meta=lambda m: m["param_groups"][0].update(betas=[0.9])),
     "setting betas is \\[0.9\\], not a list of 2 numbers"),
    (dict(meta=lambda m: m["param_groups"][0].update(eps="x")), "setting eps is 'x', not a number"),
    (dict(meta=lambda m: m["param_groups"][0].update(amsgrad=True)), "lacks max_exp_avg_sq"),
    (dict(tensors=lambda t: {**t, "opt.0.exp_avg": t["opt.0.exp_avg"].int()}),
     "'opt.0.exp_avg' is torch.int32, its parameter torch.float32"),
])
def test_a_checkpoint_whose_optimiser_state_does_not_fit_is_named_before_anything_is_touched(tmp_path, damage, named):
    """Each loaded with its files paired: an AttributeError or a RuntimeError inside Adam at the first step
    (after metrics.jsonl was cut back), or a silent fresh optimiser (not the run it resumed)."""
    _run(tmp_path / "r", "train.steps=12", "train.checkpoint_every=5", "train.log_every=5", "train.optimizer=adam")
    stem = tmp_path / "r/checkpoints/local"
    _edit_checkpoint(stem, **damage)
    (tmp_path / "r/model.safetensors").unlink()                 # (so the resume has steps to train)
    before = (tmp_path / "r/metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match=named):
        _run(tmp_path / "r", "train.steps=20", resume=True)
    assert (tmp_path / "r/metrics.jsonl").read_text() == before


def test_a_resume_stopped_before_its_end_keeps_the_analysis_of_the_model_still_saved(tmp_path, monkeypatch):
    """The resume's start keeps analysis.json and report.html, since model.safetensors (what they describe) stays the
    old model until the resume's end saves another."""
    _run(tmp_path / "r", "train.steps=10", "train.checkpoint_every=5")
    run = RunDir.open(tmp_path / "r")
    run.write_json("analysis.json", {"trained_steps": 10})
    (tmp_path / "r/report.html").write_text("<p>the step-10 model</p>")
    _interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "r", "train.steps=30", "train.checkpoint_every=5", resume=True)
    assert run.model_step() == 10 and run.analysed_step() == 10 and (tmp_path / "r/report.html").is_file()
    monkeypatch.undo()
    _run(tmp_path / "r", resume=True)                     # its end saves the step-30 model: the analysis goes
    assert run.model_step() == 30 and not (tmp_path / "r/analysis.json").exists()
    assert not (tmp_path / "r/report.html").exists()


@pytest.mark.parametrize("dtype", [torch.int32, torch.float16])
def test_weights_of_another_dtype_are_named_not_cast(tmp_path, dtype):
    """load_state_dict casts what it is given: integer weights in the checkpoint resumed from whole numbers (mostly
    zeros), and in model.safetensors were analysed as such, each with the files paired and no word."""
    _run(tmp_path / "r", "train.steps=10", "train.optimizer=adam")
    _edit_checkpoint(tmp_path / "r/checkpoints/local", tensors=lambda t: {**t, "model.weight": t["model.weight"].to(dtype)})
    with pytest.raises(CheckpointError, match=f"local.safetensors': tensor 'weight' is {dtype}, the model's is torch.float32"):
        _run(tmp_path / "r", "train.steps=20", resume=True)
    _edit_checkpoint(tmp_path / "r/model", tensors=lambda t: {**t, "weight": t["weight"].to(dtype)})
    with pytest.raises(CheckpointError, match=f"model.safetensors': tensor 'weight' is {dtype}"):
        RunDir.open(tmp_path / "r").load_model()


def test_a_model_damaged_inside_its_data_is_written_again_by_the_resume(tmp_path):
    """model.safetensors of a finished run with a byte changed inside its data (size and header intact) is not counted
    as saved: the resume writes it again, as `analyze` says, not refusing a run that "already reached" its end."""
    _run(tmp_path / "r", "train.steps=20")
    weights = tmp_path / "r/model.safetensors"
    whole = weights.read_bytes()
    damaged = bytearray(whole)
    damaged[-3] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    run = RunDir.open(tmp_path / "r")
    assert run.model_step() is None and not run.finished(20)
    with pytest.raises(CheckpointError, match=r"model.safetensors' is not the model .*bytes changed on disk"):
        run.load_model()
    summary = _run(tmp_path / "r", resume=True)
    assert summary["resumed_from"] == 20 and weights.read_bytes() == whole
    assert run.model_step() == 20
