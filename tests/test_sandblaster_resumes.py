"""Sandblaster runs stopped and resumed: the CLI's run directory resumed to the same iterates; random delays and a stop
inside an iteration resumed in the same virtual time; a stop during the step saving all of it or none; converged
runs' last checkpoint and their resumes; what a resume says of its L-BFGS history, and a stop of the checkpoint it
goes on from."""
import dataclasses
import logging

import pytest
import torch
from sandblaster_runs import PLANTED, SMALL, _cfg

from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.preflight import check_run_config
from downpour.runners import train
from downpour.sandblaster.history import HistoryShard
from downpour.sandblaster.lbfgs import Coordinator
from downpour.train.checkpoint import load_state
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_cli_writes_a_run_directory_and_resumes_it_to_the_same_iterates(tmp_path, capsys):
    cli = ["train", "--config", "tica-8x8", "--runner", "simulated", "--workers", "3", "--no-report",
           *[arg for o in SMALL[2:] + ["sandblaster.precision=float64", "sandblaster.units=6"] for arg in ("--set", o)],
           "--set", "cluster.algorithm=sandblaster"]
    assert main([*cli, "--out", str(tmp_path / "a"), "--steps", "3"]) == 0
    run = RunDir.open(tmp_path / "a")
    for name in ("config.toml", "metrics.jsonl", "model.safetensors", "model.json", "sandblaster.json"):
        assert (run.path / name).is_file(), name
    rows = run.metrics()
    assert [r["step"] for r in rows] == [1, 2, 3] and {"reconstruction", "pooled_l2", "t", "vtime"} <= set(rows[0])
    summary = run.read_json("sandblaster.json")
    for key in ("steps", "resumed_from", "final_loss", "seconds", "run", "units_dispatched", "backups",
                "backups_won", "duplicates_dropped", "per_worker", "batches", "batch_time_mean"):
        assert key in summary, key
    assert summary["units_dispatched"] >= 6 * summary["evaluations"] and run.config.cluster.algorithm == "sandblaster"
    assert run.load_model() is not None
    assert load_state(run.checkpoints / "sandblaster")[1]["config"]["sandblaster"]["units"] == 6   # what a resume checks
    weights = (run.path / "model.safetensors").read_bytes()    # stopped before its model was written:
    (run.path / "model.json").unlink()                          # resume writes it from the checkpoint
    assert main(["train", "--resume", str(tmp_path / "a"), "--no-report"]) == 0
    assert (run.path / "model.safetensors").read_bytes() == weights and run.read_json("model.json")["step"] == 3
    assert main(["train", "--resume", str(tmp_path / "a"), "--steps", "5", "--no-report"]) == 0
    assert main([*cli, "--out", str(tmp_path / "b"), "--steps", "5"]) == 0
    capsys.readouterr()
    resumed, straight = RunDir.open(tmp_path / "a"), RunDir.open(tmp_path / "b")
    assert resumed.read_json("sandblaster.json")["resumed_from"] == 3
    assert [r["loss"] for r in resumed.metrics()] == [r["loss"] for r in straight.metrics()]


@pytest.mark.parametrize("delay", ["uniform:0:2", "straggler:0:10"])
def test_a_resume_with_random_delays_takes_the_same_steps_in_the_same_virtual_time(tmp_path, delay):
    # the delay generators restarted and the copies still running were lost: vtime 38.046 against 37.968
    cfg = _cfg("cluster.workers=3", "sandblaster.units=6", "sandblaster.precision=float64", f"cluster.delay={delay}",
               "sandblaster.backup_after=0.5")
    straight = RunDir.create(tmp_path / "straight", dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4)))
    train(straight.config, straight)
    half = RunDir.create(tmp_path / "half", dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2)))
    train(half.config, half)
    train(load_config(str(half.path / "config.toml"), ["train.steps=4"]), RunDir.open(half.path), resume=True)
    keep = ("loss", "vtime", "units", "backups", "duplicates")
    assert [{k: r[k] for k in keep} for r in half.metrics()] == [{k: r[k] for k in keep} for r in straight.metrics()]


def test_a_stop_that_cannot_checkpoint_says_which_checkpoint_resume_goes_on_from(tmp_path):
    """A shard's node lost at iteration 10 (a 3-node Ray, 2026-12-07): "could not checkpoint the shards (...)" and
    nothing on what was kept; with cluster.checkpoint_every = 0 there was nothing to resume, unsaid."""
    from downpour.sandblaster.run import CHECKPOINT, _kept
    from downpour.train.checkpoint import save_state
    from downpour.train.rundir import RunDir

    cfg = _cfg("cluster.runner=ray")
    run = RunDir.create(tmp_path / "run", cfg)
    assert _kept(run, cfg) == "there is no checkpoint to resume from (cluster.checkpoint_every = 0: one at the end only)"
    every = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, checkpoint_every=5))
    assert _kept(run, every).endswith("(cluster.checkpoint_every = 5: one every 5 iterations)")
    every_one = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, checkpoint_every=1))
    assert _kept(run, every_one).endswith("(cluster.checkpoint_every = 1: one every iteration)")   # not "1 iterations"
    save_state(run.checkpoints / CHECKPOINT, {"shard0.w": torch.zeros(3)}, run.stamped({"iteration": 5}))
    assert _kept(run, every) == f"the checkpoint of L-BFGS iteration 5 is kept: --resume {run.path} goes on from it"


def test_a_run_stopped_inside_an_iteration_resumes_in_the_same_virtual_time(tmp_path, monkeypatch):
    """The checkpoint written mid-iteration kept the simulator's clock and the evaluation count as they
    stood then, while the resume redoes the iteration from its start: every later vtime was late."""
    import downpour.sandblaster.lbfgs as lbfgs

    cfg = check_run_config(load_config("tica-8x8", [
        "cluster.runner=simulated", "cluster.algorithm=sandblaster", "train.threads=1", "train.tensorboard=false",
        "model.name=rica-8x8", "data.samples=300", "sandblaster.units=4", "train.steps=5", "cluster.workers=2",
        "sandblaster.batch=100", "cluster.delay=exponential:1"]))
    whole = train(cfg, RunDir.create(tmp_path / "whole", cfg))
    real, calls = lbfgs.Coordinator._evaluate, []

    def stop_at_the_fourth(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:                         # inside iteration 2 or 3 (each takes one or two)
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(lbfgs.Coordinator, "_evaluate", stop_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, RunDir.create(tmp_path / "cut", cfg))
    # its sandblaster.json says how far it got and what stopped it (until 2026-12-07 a stopped run wrote none); the
    # resume rewrites it whole (the summaries compared below)
    cut = RunDir.open(tmp_path / "cut")
    record, done = cut.read_json("sandblaster.json"), len(cut.metrics())
    assert record["stopped"] == {"step": done, "steps": 5, "by": "KeyboardInterrupt"} and 1 <= done <= 2
    assert record["steps"] == done and record["evaluations"] == len(record["batches"]) == 3 and record["stop"] is None
    assert record["final_loss"] == cut.metrics()[-1]["loss"] and record["speeds"] == whole["speeds"]
    monkeypatch.setattr(lbfgs.Coordinator, "_evaluate", real)
    resumed = train(cfg, RunDir.open(tmp_path / "cut"), resume=True)
    for key in ("evaluations", "vtime", "final_loss", "examples"):
        assert resumed.get(key) == whole.get(key), key
    assert "stopped" not in cut.read_json("sandblaster.json")
    rows = [RunDir.open(tmp_path / name).metrics() for name in ("whole", "cut")]
    assert [{k: v for k, v in r.items() if k not in ("time", "samples_per_s")} for r in rows[1]] == \
           [{k: v for k, v in r.items() if k not in ("time", "samples_per_s")} for r in rows[0]]
    assert (tmp_path / "cut/model.safetensors").read_bytes() == (tmp_path / "whole/model.safetensors").read_bytes()


def test_a_stop_during_the_step_saves_the_whole_step_or_none_of_it(tmp_path, monkeypatch):
    """Ctrl-C while the shards took an accepted step (between shard 0's move and shard 1's, or before the
    run's bookkeeping) saved shards that had moved with the coordinator's scalars from before: the
    resume's L-BFGS was not the uninterrupted run's. The step and its bookkeeping now finish first."""
    import signal

    cfg = check_run_config(load_config("tica-8x8", [
        "cluster.runner=simulated", "cluster.algorithm=sandblaster", "train.threads=1", "train.tensorboard=false",
        "model.name=rica-8x8", "data.samples=300", "sandblaster.units=4", "train.steps=5", "cluster.workers=2",
        "cluster.shards=2", "sandblaster.batch=0"]))
    whole = train(cfg, RunDir.create(tmp_path / "whole", cfg))
    real, calls = HistoryShard.accept, []

    def stop_inside_the_second_step(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls.append(self.index)
        if len(calls) == 3:                         # shard 0 of the second accepted step has moved, shard 1 not
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(HistoryShard, "accept", stop_inside_the_second_step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, RunDir.create(tmp_path / "cut", cfg))
    assert calls == [0, 1, 0, 1]                    # the step finished before the stop was taken
    monkeypatch.setattr(HistoryShard, "accept", real)
    resumed = train(cfg, RunDir.open(tmp_path / "cut"), resume=True)
    assert resumed["resumed_from"] == 2
    for key in ("evaluations", "vtime", "final_loss", "examples"):
        assert resumed.get(key) == whole.get(key), key
    assert (tmp_path / "cut/model.safetensors").read_bytes() == (tmp_path / "whole/model.safetensors").read_bytes()


def test_a_converged_run_checkpoints_its_last_iteration(tmp_path, monkeypatch):
    """The loop broke off on convergence before taking the iteration's boundary: the final checkpoint
    held the coordinator's scalars and evaluation log from the iteration before (a run extended with
    --resume then started from a cost that was not the shards' point's)."""
    search = Coordinator.search

    def converges_at_the_third(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        return dataclasses.replace(step, stop=PLANTED) if iteration == 2 else step

    monkeypatch.setattr(Coordinator, "search", converges_at_the_third)
    cfg = _cfg("train.steps=6")
    summary = train(cfg, RunDir.create(tmp_path / "run", cfg))
    _, meta = load_state(tmp_path / "run/checkpoints/sandblaster")
    assert summary["converged"] and meta["iteration"] == 3
    assert meta["coordinator"]["evaluations"] == len(meta["batches"]) == summary["evaluations"]
    assert meta["coordinator"]["f"] == pytest.approx(summary["final_loss"], rel=1e-6)


def test_a_converged_run_is_not_searched_again_and_one_that_steps_on_has_not_converged(tmp_path, monkeypatch):
    """On the whole set a resume of a converged run searched again from the same point, failed alike, and saved
    the same weights as the next iteration; with sampled batches a resume that stepped on still said converged.
    Since 2026-12-05 a sampled run that stopped is finished too: only a resume with more steps steps on."""
    search = Coordinator.search

    def converges_at_the_third(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        return dataclasses.replace(step, stop=PLANTED) if iteration == 2 else step

    monkeypatch.setattr(Coordinator, "search", converges_at_the_third)
    for name, sets in (("whole", ["train.steps=6"]), ("sampled", ["train.steps=6", "sandblaster.batch=100"])):
        cfg = _cfg(*sets)
        assert train(cfg, RunDir.create(tmp_path / name, cfg))["converged"]
    monkeypatch.undo()
    rows = (tmp_path / "whole/metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="is finished: it stopped at L-BFGS iteration 3 \\(converged"):
        train(_cfg("train.steps=6"), RunDir.open(tmp_path / "whole"), resume=True)
    assert (tmp_path / "whole/metrics.jsonl").read_text() == rows
    cfg = load_config(str(tmp_path / "sampled/config.toml"))
    with pytest.raises(ConfigError, match="is finished: it stopped at L-BFGS iteration 3 \\(converged.*M above its 6"):
        train(cfg, RunDir.open(tmp_path / "sampled"), resume=True)
    cfg = load_config(str(tmp_path / "sampled/config.toml"), ["train.steps=8"])
    summary = train(cfg, RunDir.open(tmp_path / "sampled"), resume=True)
    rows = RunDir.open(tmp_path / "sampled").metrics()
    assert summary["steps"] == 8 and [r["step"] for r in rows][-1] == 8 and any(r["t"] > 0 for r in rows[3:])
    assert not summary["converged"]


def test_a_converged_run_stopped_before_its_model_was_saved_is_finished_by_its_resume(tmp_path, monkeypatch):
    """Stopped between its final checkpoint and model.safetensors, a converged run's resume was refused as
    converged, so its trained weights could never be saved."""
    import downpour.sandblaster.run as sandblaster_run

    search = Coordinator.search

    def converges_at_the_third(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        return dataclasses.replace(step, stop=PLANTED) if iteration == 2 else step

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Coordinator, "search", converges_at_the_third)
    monkeypatch.setattr(sandblaster_run, "_finish", stopped)
    cfg = _cfg("train.steps=6")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, RunDir.create(tmp_path / "run", cfg))
    assert not (tmp_path / "run/model.safetensors").exists()
    monkeypatch.undo()
    summary = train(cfg, RunDir.open(tmp_path / "run"), resume=True)
    assert summary["converged"] and RunDir.open(tmp_path / "run").model_step() == 3


def test_a_resume_says_it_keeps_its_lbfgs_history_or_that_it_drops_it(tmp_path, caplog, monkeypatch):
    """The resume said only its iteration: whether it went on with its curvature pairs was unsaid, and where the
    checkpoint's shards and coordinator disagreed (saved inside a step) the history was dropped without a word."""
    cfg = _cfg("train.steps=3")
    train(cfg, RunDir.create(tmp_path / "run", cfg))
    more = _cfg("train.steps=4")
    with caplog.at_level(logging.INFO, logger="downpour.sandblaster.run"):
        train(more, RunDir.open(tmp_path / "run"), resume=True)
    assert (f"resuming {tmp_path / 'run'} at L-BFGS iteration 3 with its history: 3 of sandblaster.history = "
            f"{more.sandblaster.history} curvature pairs") in caplog.text
    load = Coordinator.load_state
    monkeypatch.setattr(Coordinator, "load_state", lambda self, meta: load(self, {**meta, "rho": meta["rho"][:-1]}))
    caplog.clear()
    train(_cfg("train.steps=5"), RunDir.open(tmp_path / "run"), resume=True)
    assert (f"resuming {tmp_path / 'run'} at L-BFGS iteration 4 without its history: its checkpoint's shards hold 4 "
            "curvature pairs and its coordinator 3 (saved inside a step)") in caplog.text
