"""What a run does when things go wrong: a mistyped resume, Ctrl-C mid-run, every step non-finite,
a damaged checkpoint; and the counts its summary reports. Both runners (local and simulated)."""
import json
import math

import pytest
import torch

import downpour.ps.worker as ps_worker
import downpour.train.loop as loop
from downpour.config import ConfigError, load_config
from downpour.errors import RunError
from downpour.ps.cluster import Recorder, run_cluster
from downpour.train.checkpoint import CheckpointError
from downpour.train.json_digest import rewrite_json
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir
from downpour.train.step import NonFiniteLoss

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings run in this process)

SAE = ["data.samples=500", "train.batch_size=20", "train.log_every=10", "train.tensorboard=false"]
CLUSTER = ["cluster.runner=simulated", "data.samples=256", "train.batch_size=16", "train.log_every=4",
           "train.tensorboard=false", "cluster.workers=4", "cluster.shards=2"]


def _local(path, *overrides, resume=False):
    if resume:
        cfg = load_config(str(path / "config.toml"), list(overrides))
        return run_local(cfg, RunDir.open(path), resume=True)
    cfg = load_config("ufldl-sae", [*SAE, *overrides])
    return run_local(cfg, RunDir.create(path, cfg))


def _cluster(path, *overrides, resume=False):
    cfg = load_config("ufldl-sae", [*CLUSTER, *overrides])
    return run_cluster(cfg, RunDir.open(path) if resume else RunDir.create(path, cfg), resume=resume)


def _steps(path):
    return [r["step"] for r in RunDir(path).metrics()]


def _patch_train_step(monkeypatch, module, fail):
    """Make ``module.train_step`` call ``fail(n)`` before its n-th step (1-based)."""
    real, calls = module.train_step, {"n": 0}

    def patched(model, objective, batch):
        calls["n"] += 1
        fail(calls["n"], batch)
        return real(model, objective, batch)

    monkeypatch.setattr(module, "train_step", patched)


# --- 1. a refused resume leaves config.toml and preprocess as they were ----------------------------
def test_a_refused_local_resume_leaves_the_config_untouched(tmp_path):
    _local(tmp_path / "r", "train.steps=20")
    before = {name: (tmp_path / "r" / name).read_bytes() for name in ("config.toml", "preprocess.json")}
    with pytest.raises(ConfigError, match="already reached step 20"):
        _local(tmp_path / "r", "train.steps=10", "train.lr=0.5", resume=True)
    (tmp_path / "r/checkpoints/local.safetensors").write_bytes(b"\0\0")
    with pytest.raises(CheckpointError):
        _local(tmp_path / "r", "train.steps=40", resume=True)
    assert {name: (tmp_path / "r" / name).read_bytes() for name in before} == before


def test_a_refused_cluster_resume_leaves_the_config_untouched(tmp_path):
    _cluster(tmp_path / "c", "train.steps=16")
    before = (tmp_path / "c/config.toml").read_bytes()
    with pytest.raises(ConfigError, match="already reached step 16"):
        _cluster(tmp_path / "c", "train.steps=8", "train.lr=0.5", resume=True)
    assert (tmp_path / "c/config.toml").read_bytes() == before


@pytest.mark.parametrize("runner", ["local", "cluster"])
def test_a_run_stopped_between_its_last_checkpoint_and_its_model_writes_the_model_on_resume(tmp_path, runner):
    """The last checkpoint is written before the model: a run killed between the two is finished, and
    --resume writes its model from the checkpoint (not refused as 'already reached', which would leave a
    greedy run unable to raise its steps)."""
    go = _local if runner == "local" else _cluster
    go(tmp_path / "r", "train.steps=16")
    weights = (tmp_path / "r/model.safetensors").read_bytes()
    (tmp_path / "r/model.json").unlink()
    (tmp_path / "r/model.safetensors").unlink()
    summary = go(tmp_path / "r", "train.steps=16", resume=True)
    assert summary["steps"] == summary["resumed_from"] == 16 and math.isfinite(summary["final_loss"])
    assert (tmp_path / "r/model.safetensors").read_bytes() == weights
    assert RunDir.open(tmp_path / "r").read_json("model.json")["step"] == 16
    with pytest.raises(ConfigError, match="already reached step 16"):   # now it is whole again
        go(tmp_path / "r", "train.steps=16", resume=True)


# --- 2. Ctrl-C keeps the work; resume neither loses nor repeats metrics rows -----------------------
def _interrupt_at(monkeypatch, step):
    def fail(n, batch):
        if n == step:
            raise KeyboardInterrupt

    _patch_train_step(monkeypatch, loop, fail)


def test_an_interrupted_local_run_is_checkpointed_and_resumes_without_repeated_rows(tmp_path, monkeypatch):
    run = tmp_path / "i"
    with monkeypatch.context() as m:
        _interrupt_at(m, 37)              # during step 37: steps 1..36 are done
        with pytest.raises(KeyboardInterrupt):
            _local(run, "train.steps=50", "train.checkpoint_every=20", "train.tensorboard=true")
    assert json.loads((run / "checkpoints/local.json").read_text())["step"] == 36
    assert _steps(run) == [10, 20, 30]
    summary = _local(run, "train.steps=50", resume=True)
    assert summary["resumed_from"] == 36
    assert _steps(run) == [10, 20, 30, 40, 50]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [10, 20, 30, 40, 50]

    straight = _local(tmp_path / "s", "train.steps=50")   # and it ends where an uninterrupted run ends
    wa, wb = RunDir(run).load_model().state_dict(), RunDir(tmp_path / "s").load_model().state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert straight["final_loss"] == pytest.approx(summary["final_loss"], rel=1e-4)


def _interrupt_after(patch, pushes):
    """Ctrl-C in the driver right after it recorded ``pushes`` pushes."""
    real = Recorder.on_push

    def on_push(self, push, record):
        real(self, push, record)
        if self.pushes == pushes:
            raise KeyboardInterrupt

    patch.setattr(Recorder, "on_push", on_push)


def test_a_resumed_cluster_run_drops_the_rows_logged_after_its_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "c"
    with monkeypatch.context() as m:
        _interrupt_after(m, 30)
        m.setattr(Recorder, "save_on_failure", lambda self, err=None: None)   # the periodic checkpoint alone: rows run past it
        with pytest.raises(KeyboardInterrupt):
            _cluster(run, "train.steps=48", "cluster.checkpoint_every=8")
    checkpointed = json.loads((run / "checkpoints/server.json").read_text())["step"]
    assert max(_steps(run)) > checkpointed           # rows the resumed run will log again
    _cluster(run, "train.steps=48", resume=True)
    steps = _steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == 48


def test_an_interrupted_cluster_run_checkpoints_where_it_stopped(tmp_path, monkeypatch):
    run = tmp_path / "i"
    with monkeypatch.context() as m:
        _interrupt_after(m, 30)
        with pytest.raises(KeyboardInterrupt):
            _cluster(run, "train.steps=48")                    # no periodic checkpoints at all
    meta = json.loads((run / "checkpoints/server.json").read_text())
    assert meta["step"] == 30 and all(s["version"] == 30 for s in meta["shards"])
    assert _cluster(run, "train.steps=48", resume=True)["steps"] == 48
    steps = _steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == 48


def test_truncate_metrics_keeps_rows_up_to_the_step_and_drops_a_torn_last_line(tmp_path):
    run = RunDir(tmp_path)
    rows = [{"step": s, "loss": 1.0} for s in (10, 20, 30, 40)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5')
    assert run.truncate_metrics(30) == 2
    assert [r["step"] for r in run.metrics()] == [10, 20, 30]
    assert not list(tmp_path.glob("*.tmp"))


# --- 3. non-finite steps ----------------------------------------------------------------------------
def _poison(monkeypatch, module, steps):
    def fail(n, batch):
        if steps is all or n in steps:
            batch.x[:] = math.nan

    _patch_train_step(monkeypatch, module, fail)


def test_a_local_run_whose_every_step_is_non_finite_fails_after_saving(tmp_path, monkeypatch):
    _poison(monkeypatch, loop, all)
    with pytest.raises(RunError, match=r"every one of the 10 steps 1..10 had a non-finite cost.*last, step 10: non-finite"):
        _local(tmp_path / "nan", "train.steps=10")
    assert json.loads((tmp_path / "nan/model.json").read_text())["skipped_steps"] == 10
    assert _steps(tmp_path / "nan") == []


def test_a_finite_cost_with_a_non_finite_gradient_is_refused_and_nothing_is_left_to_apply(monkeypatch):
    """sqrt(0) in the pooled term (eps = 0, a blank batch): cost 0, gradient NaN. The local loop must not apply it:
    the model would go all NaN, the later steps be skipped, and the run end 'successfully'. (pooled_l2 with
    eps = 0 takes |p|; the test puts sqrt(p²) back: the NaN gradient a user's own term can make.)"""
    from downpour.batch import Batch
    from downpour.models.registry import create_model
    from downpour.objectives import Objective, PooledL2, _per_sample_sum
    from downpour.train.step import train_step

    monkeypatch.setattr(PooledL2, "value", lambda self, o: _per_sample_sum(torch.sqrt(self.eps + o.pooled ** 2)).mean())

    model = create_model("rica-8x8")
    objective = Objective.from_config({"reconstruction": 1.0, "pooled_l2": {"weight": 0.1, "eps": 0.0}})
    with pytest.raises(NonFiniteLoss, match="finite cost 0.0 but a non-finite gradient of weight"):
        train_step(model, objective, Batch(torch.zeros(4, 1, 8, 8)))
    assert all(p.grad is None for p in model.parameters())
    assert train_step(model, objective, Batch(torch.randn(4, 1, 8, 8))).loss > 0   # a batch with energy trains


def test_a_gradient_whose_sum_overflows_is_named_as_too_large_not_as_a_nan():
    """Every element finite (1e37), their float32 sum not: the step is skipped, as the shards refuse
    such a push, and the message names the parameter as too large, not "a non-finite gradient of" naming none."""
    from downpour.batch import Batch
    from downpour.models.registry import create_model
    from downpour.objectives import Objective
    from downpour.train.step import train_step

    model = create_model("rica-8x8")
    objective = Objective.from_config({"reconstruction": 1.0})
    model.weight.register_hook(lambda g: torch.full_like(g, 1e37))
    with pytest.raises(NonFiniteLoss, match=r"a gradient too large to apply \(its squared norm overflows float32; largest \|g\| 1e\+37, in weight\)"):
        train_step(model, objective, Batch(torch.randn(4, 1, 8, 8)))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("value", [1e20, -1e20])
def test_a_gradient_whose_square_overflows_is_skipped_as_the_shards_refuse_it(value):
    """|g| = 1e20 sums to a finite 1e22 (and +-1e20 halves cancel to 0), but Adagrad's and Adam's g² overflow:
    the local step applied it, every Adagrad sum went inf and the run froze while reporting success; the
    simulator's shards refused the same push."""
    from downpour.batch import Batch
    from downpour.models.registry import create_model
    from downpour.objectives import Objective
    from downpour.ps.shard import applicable
    from downpour.train.step import train_step

    model = create_model("rica-8x8")
    objective = Objective.from_config({"reconstruction": 1.0})
    signs = torch.ones_like(model.weight).flatten()
    signs[::2] = -1                                          # the sum of the elements cancels exactly
    model.weight.register_hook(lambda g: value * signs.reshape(g.shape))
    with pytest.raises(NonFiniteLoss, match="a gradient too large to apply"):
        train_step(model, objective, Batch(torch.randn(4, 1, 8, 8)))
    assert not applicable(value * signs, torch.float32)      # the shard's verdict on the same gradient


def test_the_last_row_is_logged_even_when_the_last_step_is_skipped(tmp_path, monkeypatch):
    _poison(monkeypatch, loop, {20})
    summary = _local(tmp_path / "r", "train.steps=20")
    rows = RunDir(tmp_path / "r").metrics()
    assert [r["step"] for r in rows] == [10, 20] and summary["skipped_steps"] == 1
    assert summary["final_loss"] == rows[-1]["loss"]     # the mean of the last logged steps, not one batch


def test_a_cluster_run_whose_every_push_is_non_finite_fails_after_writing_its_summary(tmp_path, monkeypatch):
    def fail(n, batch):
        raise NonFiniteLoss("non-finite cost nan")

    _patch_train_step(monkeypatch, ps_worker, fail)
    with pytest.raises(RunError, match="none of the 16 pushes of this run carried a finite gradient.*16 of their 16"):
        _cluster(tmp_path / "c", "train.steps=16")
    assert json.loads((tmp_path / "c/cluster.json").read_text())["steps"] == 16
    assert _steps(tmp_path / "c") == []               # no rows of loss 0 from empty pushes


# --- 4. a damaged checkpoint or model is named, not a traceback ------------------------------------
def test_a_damaged_local_checkpoint_is_named(tmp_path):
    run = tmp_path / "r"
    _local(run, "train.steps=10")
    ck = run / "checkpoints/local"
    rewrite_json(ck.with_suffix(".json"), lambda meta: meta.pop("skipped"))
    with pytest.raises(CheckpointError, match=r"local.json' lacks key 'skipped'"):
        _local(run, "train.steps=20", resume=True)
    data = ck.with_suffix(".safetensors").read_bytes()
    ck.with_suffix(".safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"local.safetensors' is not a readable safetensors file"):
        _local(run, "train.steps=20", resume=True)


def test_another_models_model_json_in_a_run_is_named_by_both_models_not_its_first_other_option(tmp_path):
    """An RBM's model.json (rbm-digits) in a cnn-digits run: it said "model.json builds model.hidden = 100,
    config.toml says 64: one of them was edited", the first option the two differ in, not that it is another
    model's file. No training: the check compares model.json's record with config.toml before any weight is read."""
    run = RunDir.create(tmp_path / "r", load_config("cnn-digits"))
    rbm = {"model": "rbm-digits", "input_shape": [1, 8, 8], "options": {"hidden": 100, "k": 1, "chains": 32}}
    with pytest.raises(CheckpointError, match=r"model.json' builds model.name = 'rbm-digits', .*config.toml' says "
                                              r"'cnn-digits': one of the two is another run's"):
        run.new_model(rbm)


def test_model_json_differences_say_the_name_first_then_the_options_by_name_whatever_the_files_order():
    """The name first (an RBM's file in a CNN's run), then the options by key, as before the name was put first:
    not in model.json's own order, which its writer chose (a hand-edited file's: reversed here)."""
    from downpour.train.config_record import config_record, model_differences

    cfg = load_config("cnn-digits")
    options = {k: v for k, v in reversed(config_record(cfg)["model"].items()) if k != "name"}
    edited = {**options, **{key: options[key] + 1 for key in ("tile", "classes", "kernel")}}
    said = [key for key, _, _ in model_differences("rbm-digits", edited, cfg)]
    assert said == ["model.name", "model.classes", "model.kernel", "model.tile"]


def test_a_damaged_model_is_named(tmp_path):
    run = tmp_path / "r"
    _local(run, "train.steps=10")
    weights = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(weights[:10])
    with pytest.raises(CheckpointError, match=r"model.safetensors' is not a readable safetensors file"):
        RunDir(run).load_model()
    (run / "model.safetensors").write_bytes(weights)
    meta = json.loads((run / "model.json").read_text())
    rewrite_json(run / "model.json", lambda m: m.pop("input_shape"))
    with pytest.raises(CheckpointError, match=r"model.json' lacks key 'input_shape'"):
        RunDir(run).load_model()
    rewrite_json(run / "model.json", lambda m: m["options"].update(hidden=3), input_shape=meta["input_shape"])
    with pytest.raises(CheckpointError, match=r"model.json' builds model.hidden = 3, .*config.toml' says 25"):
        RunDir(run).load_model()
    config = run / "config.toml"                    # both files edited alike: the weights are of another shape
    config.write_text(config.read_text().replace("hidden = 25\n", "hidden = 3\n"))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        RunDir(run).load_model()


# --- 5. the summary's counts ----------------------------------------------------------------------
def test_the_cluster_summary_counts_pushes_made_not_shard_log_rows(tmp_path):
    summary = _cluster(tmp_path / "c", "train.steps=48")
    assert summary["pushes"] == 48                     # 48 pushes of one step each, each to both shards
    assert summary["final_loss"] == RunDir(tmp_path / "c").metrics()[-1]["loss"]


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_resume_removes_the_analysis_of_the_model_it_trains_on(tmp_path, runner, caplog):
    """analysis.json, figures/ and report.html of step 20 would be shown by `downpour report` as the
    resumed model's; they go, and `downpour analyze` writes them again."""
    run = tmp_path / "r"
    if runner == "local":
        _local(run, "train.steps=20")
    else:
        _cluster(run, "train.steps=20")
    (run / "analysis.json").write_text('{"trained_steps": 20}')
    (run / "figures").mkdir()
    (run / "figures" / "loss.png").write_bytes(b"png")
    (run / "report.html").write_text("<html>")
    with caplog.at_level("INFO"):
        if runner == "local":
            _local(run, "train.steps=40", resume=True)
        else:
            _cluster(run, "train.steps=40", resume=True)
    assert not any((run / name).exists() for name in ("analysis.json", "figures", "report.html"))
    assert "writes them again" in caplog.text and (run / "model.json").is_file()


def test_a_restart_from_step_0_does_not_double_tensorboards_curves(tmp_path, monkeypatch):
    """A shard lost before the first checkpoint restarts the run from step 0 in the same tb/ (the metrics
    are cut back to 0): a writer opened at step 0 purged nothing, so every curve held its first steps twice."""
    import io
    import time
    import types

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.summary.writer import event_file_writer

    # TensorBoard reads a run's event files in name order; torch named them by the second and a per-process count,
    # so two writers opened in one second as the count passed 9 -> 10 ("...9" sorts after "...10") were read the
    # wrong way round, the restart's purge undone (the whole suite failed here once, 2026-12-04, earlier tests
    # having opened 9 writers). Both writers in one second, the count at 9: that case, every time.
    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(9))
    monkeypatch.setattr(time, "time", lambda: 1_765_000_000.25)
    from downpour.train.telemetry import Telemetry

    (tmp_path / "tb").mkdir()
    for go in range(2):                  # the first go, then the restart: both from step 0
        t = Telemetry(types.SimpleNamespace(path=tmp_path), 30, stream=io.StringIO())
        for step in (10, 20, 30):
            t.log(step, {"recon": 1.0 + go}, samples=step)
        t.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(10, 2.0), (20, 2.0), (30, 2.0)]


def test_the_progress_line_says_the_steps_its_samples_per_second_is_over(tmp_path):
    """A row's samples/s is its own steps' (since the previous row; a resumed process's first, since its resume at
    step 12), not the run's: a 20-step tica-8x8 Ray run printed 56,661 samples/s where its report gave 1,242 over the
    whole training, and neither said which it was."""
    import io
    import re
    import types

    from downpour.train.telemetry import Telemetry

    out = io.StringIO()
    t = Telemetry(types.SimpleNamespace(path=tmp_path), 30, tensorboard=False, stream=out, start_step=12)
    for step in (13, 20, 30):
        t.log(step, {"recon": 1.0}, samples=10)
    t.close()
    said = [re.search(r"samples/s (.*?)  eta", line)[1] for line in out.getvalue().splitlines()]
    assert said == ["over the last step", "over the last 7 steps", "over the last 10 steps"]


def test_a_new_event_file_sorts_after_every_event_file_already_in_tb(tmp_path, monkeypatch):
    """Name order is the order TensorBoard reads (and purges) in: a later writer's file sorts last even in
    the same second, after an older torch-named file of that second, and with the clock set back."""
    import time

    from downpour.train.telemetry import event_file_name

    tb = tmp_path / "tb"
    tb.mkdir()
    monkeypatch.setattr(time, "time", lambda: 1_765_000_000.5)
    (tb / "events.out.tfevents.1765000000.host.77.9").write_bytes(b"")      # torch's name, the same second
    (tb / "notes.txt").write_text("not an event file")
    names = []
    for now in (1_765_000_000.5, 1_765_000_000.9, 1_765_000_003.0, 1_764_000_000.0):   # the last: set back
        monkeypatch.setattr(time, "time", lambda now=now: now)
        names.append(event_file_name(tb))
        (tb / names[-1]).write_bytes(b"")
    assert ["events.out.tfevents.1765000000.host.77.9", *names] == sorted(p.name for p in tb.glob("*tfevents*"))
    assert names[2].startswith("events.out.tfevents.1765000003.000003.")   # the second, the files before it
