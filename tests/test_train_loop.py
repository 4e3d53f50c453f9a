"""The local runner end to end: run directory, falling cost, resume, greedy schedule, bad batches."""
import json
import math

import pytest
import torch

from downpour.analysis.orientation import coherence
from downpour.config import ConfigError, TrainConfig, load_config
from downpour.train.loop import run_local
from downpour.train.setup import stage_for_step
from downpour.train.rundir import NotARunError, RunDir, RunExistsError

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings and analyses run in this process)

SMALL_CAT = ["model.maps=[4, 4]", "model.kernels=[6, 3]", "data.size=16", "train.batch_size=16",
             "train.log_every=5", "train.tensorboard=false"]


def metrics(run):
    return [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]


def test_cat_network_cost_falls_and_resume_continues_the_step_count(tmp_path):
    cfg = load_config("cat-demo", SMALL_CAT + ["train.steps=40"])
    run = RunDir.create(tmp_path / "run", cfg)
    run_local(cfg, run)
    for name in ("config.toml", "metrics.jsonl", "model.safetensors", "model.json", "checkpoints/local.safetensors"):
        assert (run.path / name).is_file(), name
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(5, 41, 5))
    # greedy, the cat presets' schedule: stage 1 alone for the first half of the steps, then stage 2
    stage1 = [r for r in rows if "stage1/reconstruction" in r]
    stage2 = [r for r in rows if "stage2/reconstruction" in r]
    assert [r["step"] for r in stage1] == [5, 10, 15, 20] and [r["step"] for r in stage2] == [25, 30, 35, 40]
    assert stage1[-1]["stage1/reconstruction"] < 0.5 * stage1[0]["stage1/reconstruction"]
    assert {"stage1/pooled_l2", "samples_per_s", "time"} <= set(rows[0])
    saved = RunDir.open(run.path).config
    assert saved.model.options["maps"] == [4, 4] and saved.objective["pooled_l2"]["weight"] == 0.2

    more = load_config(str(run.path / "config.toml"), ["train.steps=50"])
    run_local(more, RunDir.open(run.path), resume=True)
    rows = metrics(run)
    assert [r["step"] for r in rows][-3:] == [40, 45, 50]
    assert rows[-1]["time"] >= rows[-3]["time"]
    assert json.loads((run.path / "model.json").read_text())["step"] == 50
    with pytest.raises(ConfigError, match="already reached step 50"):
        run_local(more, RunDir.open(run.path), resume=True)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    base = SMALL_CAT + ["model.maps=[2]", "model.kernels=[4]", "model.strides=[2]", "model.pools=[2]",
                        "model.pool_strides=[1]"]
    straight = load_config("cat-demo", base + ["train.steps=12"])
    a = RunDir.create(tmp_path / "a", straight)
    run_local(straight, a)
    half = load_config("cat-demo", base + ["train.steps=6"])
    b = RunDir.create(tmp_path / "b", half)
    run_local(half, b)
    run_local(load_config(str(b.path / "config.toml"), ["train.steps=12"]), RunDir.open(b.path), resume=True)
    wa, wb = a.load_model().state_dict(), b.load_model().state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_greedy_schedule_splits_steps_bottom_up():
    assert [stage_for_step(s, 9, 3, "greedy") for s in range(9)] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert stage_for_step(5, 9, 3, "joint") is None
    with pytest.raises(ConfigError, match="train.schedule must be one of joint, greedy"):
        TrainConfig(schedule="sideways")      # refused where the config is built, before any step


def test_ufldl_sparse_autoencoder_learns_oriented_edges(tmp_path):
    """The UFLDL preset's filters must look like oriented edges, not noise (coherence of noise is ~0.13)."""
    cfg = load_config("ufldl-sae", ["train.tensorboard=false"])
    run = RunDir.create(tmp_path / "sae", cfg)
    run_local(cfg, run)
    rows = metrics(run)
    assert {"reconstruction", "kl_sparsity", "weight_l2"} <= set(rows[0])
    assert rows[-1]["reconstruction"] < rows[0]["reconstruction"]
    c = coherence(run.load_model().first_layer_filters())
    assert (c > 0.5).mean() >= 0.6, f"filters are not edge-like: coherence {sorted(c.round(2))}"
    noise = coherence(torch.randn(200, 8, 8))
    assert (noise > 0.5).mean() < 0.1


def test_a_non_finite_batch_is_skipped_not_applied(tmp_path, monkeypatch):
    import downpour.train.loop as loop

    real = loop.train_step
    calls = {"n": 0}

    def poisoned(model, objective, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            batch.x[:] = math.nan
        return real(model, objective, batch)

    monkeypatch.setattr(loop, "train_step", poisoned)
    cfg = load_config("ufldl-sae", ["train.steps=10", "train.tensorboard=false", "data.samples=500"])
    run = RunDir.create(tmp_path / "nan", cfg)
    summary = run_local(cfg, run)
    assert summary["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in run.load_model().parameters())


def test_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(NotARunError, match="not a downpour run"):
        RunDir.open(tmp_path)
    with pytest.raises(NotARunError, match="does not exist"):
        RunDir.open(tmp_path / "missing")
    cfg = load_config("cat-demo")
    RunDir.create(tmp_path / "r", cfg)
    RunDir.create(tmp_path / "r", cfg)                  # it never started: taken over
    (tmp_path / "r" / "metrics.jsonl").write_text("")   # opened before a first step that never came: still not
    RunDir.create(tmp_path / "r", cfg)
    (tmp_path / "r" / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')   # once a step is logged, it is a run
    with pytest.raises(RunExistsError, match="already holds a run"):
        RunDir.create(tmp_path / "r", cfg)


def test_device_is_resolved_or_refused_clearly():
    from downpour.train.setup import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no GPU"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="train.device must be one of cpu, cuda, auto"):
        TrainConfig(device="tpu")


def test_a_part_is_averaged_over_the_steps_that_reported_it():
    from downpour.train.telemetry import PartsMean

    mean = PartsMean()
    # the row where a greedy run moves on: 3 steps of stage 1, then 1 of stage 2
    for v in (4.0, 2.0, 3.0):
        mean.add({"stage1/reconstruction": v, "stage1/pooled_l2": 2 * v}, samples=8)
    mean.add({"stage2/reconstruction": 10.0}, samples=8)
    parts, samples, loss = mean.pop()
    assert parts == {"stage1/reconstruction": 3.0, "stage1/pooled_l2": 6.0, "stage2/reconstruction": 10.0}
    assert samples == 32
    # the row's loss is the mean of the steps' own totals (12, 6, 9, 10), not the sum of the parts'
    # means (19: stage 1's added to stage 2's, a false spike at every stage switch)
    assert loss == 9.25
    assert mean.pop() == ({}, 0, 0.0) and mean.steps == 0


def test_a_row_gathered_over_a_checkpoint_keeps_its_parts_order():
    """A checkpoint's JSON sorts its keys: the first row after a resume printed (and logged) stage1/pooled_l2 before
    stage1/reconstruction, unlike every other row of the run."""
    from downpour.train.telemetry import PartsMean

    mean = PartsMean()
    mean.add({"stage1/reconstruction": 1.0, "stage1/pooled_l2": 2.0}, samples=8)
    saved = json.loads(json.dumps(mean.state(), sort_keys=True))      # as checkpoint.py writes it
    assert list(PartsMean.from_state(saved).pop()[0]) == ["stage1/reconstruction", "stage1/pooled_l2"]
    del saved["parts"]                                                 # a checkpoint from before: read as saved
    assert PartsMean.from_state(saved).pop()[0] == {"stage1/reconstruction": 1.0, "stage1/pooled_l2": 2.0}


@pytest.mark.parametrize("at", [7, 10])     # 10: a step that logs its row (log_every 5)
def test_ctrl_c_during_an_update_checkpoints_after_it_and_resumes_bit_for_bit(tmp_path, monkeypatch, at):
    # a signal landing between opt.step() and the step count saved step k+1's weights labelled k:
    # the resume applied that batch twice
    import os
    import signal

    from downpour.train.telemetry import PartsMean

    base = SMALL_CAT + ["model.maps=[2]", "model.kernels=[4]", "model.strides=[2]", "model.pools=[2]",
                        "model.pool_strides=[1]", "train.steps=12"]
    cfg = load_config("cat-demo", base)
    straight = RunDir.create(tmp_path / "a", cfg)
    run_local(cfg, straight)
    add, calls = PartsMean.add, []

    def add_then_ctrl_c(self, parts, samples=0, loss=None):
        add(self, parts, samples, loss)
        calls.append(1)
        if len(calls) == at:                     # inside step at's update, as a signal would
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(PartsMean, "add", add_then_ctrl_c)
    cut = RunDir.create(tmp_path / "b", cfg)
    with pytest.raises(KeyboardInterrupt):
        run_local(cfg, cut)
    assert json.loads((cut.path / "checkpoints" / "local.json").read_text())["step"] == at
    monkeypatch.setattr(PartsMean, "add", add)
    run_local(load_config(str(cut.path / "config.toml")), RunDir.open(cut.path), resume=True)
    wa, wb = straight.load_model().state_dict(), cut.load_model().state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # and the row the interrupt fell in (steps 6-10) holds all its steps, not only those after the resume
    assert [(r["step"], r["loss"]) for r in metrics(cut)] == [(r["step"], r["loss"]) for r in metrics(straight)]


def test_a_stopped_runs_warning_gives_its_folder_as_a_shell_takes_it(tmp_path, monkeypatch, caplog):
    """The folder is quoted (_names.pasted), as in every suggested command: "continue with --resume runs/my run" is
    two words pasted into a shell."""
    import os
    import signal

    from downpour.train.telemetry import PartsMean

    cfg = load_config("cat-demo", SMALL_CAT + ["model.maps=[2]", "model.kernels=[4]", "model.strides=[2]",
                                               "model.pools=[2]", "model.pool_strides=[1]", "train.steps=12"])
    add = PartsMean.add

    def add_then_ctrl_c(self, parts, samples=0, loss=None):
        add(self, parts, samples, loss)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(PartsMean, "add", add_then_ctrl_c)
    run = RunDir.create(tmp_path / "my run", cfg)
    with caplog.at_level("WARNING"), pytest.raises(KeyboardInterrupt):
        run_local(cfg, run)
    assert f"checkpoint saved, continue with --resume '{run.path}'" in caplog.text


def test_a_signal_another_thread_takes_still_waits_for_the_held_block():
    """The kernel gives a process's SIGINT to any thread not masking it (torch's, a loader's); Python
    then raises KeyboardInterrupt in the main thread, inside the block masking was meant to hold."""
    import signal
    import threading
    import time

    from downpour.train.signals import signals_held

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                signal.pthread_kill(other.ident, signal.SIGINT)
                time.sleep(0.05)             # the interpreter runs pending handlers here
                done.append("the update")
    finally:
        stop.set()
        other.join()
    assert done == ["the update"]


def test_a_held_signal_the_process_ignores_does_not_swallow_a_sigterm_after_it():
    """A cross-fit's fold ignores SIGINT; the terminal's Ctrl-C reaches it inside a held block, then the parent's
    SIGTERM, which the fold acts on (delivering only the first, to "ignore", the fold would train on until it was
    killed, unsaved)."""
    import os
    import signal

    from downpour.train.signals import Terminated, sigterm_as_interrupt, signals_held

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    done = []
    try:
        with pytest.raises(Terminated), sigterm_as_interrupt():
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("the update")
    finally:
        signal.signal(signal.SIGINT, before)
    assert done == ["the update"]


def test_a_wait_let_through_in_a_held_block_is_cut_by_a_stop_and_the_block_holds_again_after_it():
    """signals_let_through: a held block's wait that a stop may cut (a restart's head check, up to 10 s). A signal
    noted before it (here by a block inside the held one) acts at its start; after it the block holds again."""
    import os
    import signal

    from downpour.train.signals import signals_held, signals_let_through

    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held(), signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("held")
            with signals_let_through():
                done.append("the wait")
    assert done == ["held"]
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            with signals_let_through():
                done.append("a wait")
            os.kill(os.getpid(), signal.SIGINT)
            done.append("held again")
    assert done == ["held", "a wait", "held again"]
    with signals_let_through():       # outside a held block: nothing to let through
        done.append("no block")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
