"""The simulated cluster runner at the end of a run: a stop after the last push keeps it, and a resume of a sync
run stopped with its last round still open applies that round (else the run is lost to a restart from step 0, and
the resumed model is one push short, with no cluster.json)."""
import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from ctrl_c import ctrl_c_after_push
from safetensors.torch import load_file

import downpour.ps.recorder as recorder_module
import downpour.ps.shard as shard_module
from downpour.config import ConfigError, load_config
from downpour.ps.cluster import run_cluster
from downpour.runners import train
from downpour.train.rundir import RunDir

SYNC = ["cluster.runner=simulated", "cluster.workers=3", "cluster.shards=2", "cluster.consistency=sync",
        "cluster.delay=uniform:0:3", "train.steps=31", "train.lr=0.02", "train.log_every=10", "train.tensorboard=false"]


def _run(path, *overrides, resume=False):
    if resume:
        return run_cluster(load_config(str(path / "config.toml")), RunDir.open(path), resume=True)
    cfg = load_config("teacher-student", [*SYNC, *overrides])
    return run_cluster(cfg, RunDir.create(path, cfg))


def test_a_stop_after_the_last_push_keeps_the_run(tmp_path, monkeypatch):
    def stopped(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(recorder_module.Recorder, "close", stopped)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "r")
    monkeypatch.undo()
    assert json.loads((tmp_path / "r/checkpoints/server.json").read_text())["step"] == 31
    summary = _run(tmp_path / "r", resume=True)
    assert summary["resumed_from"] == 31 and (tmp_path / "r/cluster.json").is_file()


def test_a_resume_that_finds_every_push_made_keeps_the_runs_refused_pushes(tmp_path, monkeypatch):
    """A run most of whose pushes were refused (lr 500), stopped after its last push: its resume saved the model with a
    summary that had no refused_pushes (and so no word of the divergence), and cluster.json never held them."""
    def stopped(self):
        raise KeyboardInterrupt

    mostly_refused = ("train.lr=500", "train.steps=120")
    whole = _run(tmp_path / "whole", *mostly_refused)
    monkeypatch.setattr(recorder_module.Recorder, "close", stopped)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "r", *mostly_refused)
    monkeypatch.undo()
    resumed = _run(tmp_path / "r", resume=True)
    refused = whole["refused_pushes"]
    assert refused["of"] == 120 and refused["refused"] * 2 > 120 and resumed["refused_pushes"] == refused
    for name in ("whole", "r"):
        assert json.loads((tmp_path / name / "cluster.json").read_text())["refused_pushes"] == refused, name


def test_a_sync_run_stopped_with_its_last_round_open_resumes_to_the_uninterrupted_model(tmp_path, monkeypatch):
    """31 pushes of 3 workers: the last round holds one push, applied at the end (Shard.flush). Stopped there,
    the resume saved the checkpoint's parameters: versions [10, 10] against [11, 11]."""
    whole = _run(tmp_path / "whole")
    real, calls = shard_module.Shard.flush, {"n": 0}

    def stopped_at_flush(self):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(shard_module.Shard, "flush", stopped_at_flush)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "stopped")
    monkeypatch.undo()
    resumed = _run(tmp_path / "stopped", resume=True)
    assert resumed["versions"] == whole["versions"] and resumed["applied"] == whole["applied"]
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("whole", "stopped"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "stopped/staleness.json").read_text())["rejected"] == \
        json.loads((tmp_path / "whole/staleness.json").read_text())["rejected"]


def test_a_run_whose_pushes_were_mostly_refused_says_it_diverged(tmp_path, caplog):
    """lr 0.25 with dc-asgd and exponential delays: most pushes refused as non-finite (209 of 300 on 2026-12-06, the
    logged loss 88.9 -> 1.6e+31 by step 300, 1.778 at its first push): the run says so, else it ends with exit 0 and a
    final_loss, without a word."""
    cfg = load_config("teacher-student", ["cluster.runner=simulated", "cluster.workers=3", "cluster.shards=2",
                                          "cluster.delay=exponential:2", "cluster.compensation=dc-asgd",
                                          "train.steps=300", "train.tensorboard=false"])
    with caplog.at_level(logging.WARNING):
        summary = train(cfg, RunDir.create(tmp_path / "r", cfg))
    # one warning (not ps.cluster's and the divergence one both), the refused count in it
    said = [r.getMessage() for r in caplog.records if "diverged" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("the run diverged: ")
    refused = summary["refused_pushes"]
    assert f"({refused['refused']} of its {refused['of']} pushes carried no finite gradient a shard " \
           "accepted); its model is not a trained one. Lower train.lr" in said[0]
    assert summary["diverged"]["refused"] == refused["refused"]


def test_a_resume_whose_cluster_cannot_be_reached_leaves_the_run_as_it_was(tmp_path, monkeypatch):
    """`--resume RUN --steps 400 --address HOST:PORT` with nothing at the address: begin() had already saved the
    new config.toml (the bad address in it, so a plain --resume failed the same way), cut metrics.jsonl back and
    removed the analysis before the driver failed to join."""
    import downpour.ps.cluster as cluster
    from downpour.config import ConfigError

    _run(tmp_path / "r", "train.steps=30", "cluster.consistency=async")
    run = RunDir.open(tmp_path / "r")
    run.write_json("analysis.json", {"trained_steps": 30})
    before = {name: (tmp_path / "r" / name).read_bytes() for name in ("config.toml", "metrics.jsonl", "analysis.json")}

    class Unreachable:
        def __init__(self, *args):
            raise ConfigError("cannot reach the Ray cluster at cluster.address='127.0.0.1:6399' within 10 s")

    monkeypatch.setattr(cluster, "_driver", lambda runner: Unreachable)
    cfg = load_config(str(tmp_path / "r/config.toml"), ["train.steps=60"])
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster"):
        run_cluster(cfg, run, resume=True)
    assert {name: (tmp_path / "r" / name).read_bytes() for name in before} == before


def test_a_resume_from_a_mark_crossed_by_non_finite_steps_writes_the_same_rows(tmp_path, monkeypatch):
    """Steps 5 and 6 (one push) have a NaN cost: the log mark at 6 is crossed with nothing to write, so the next
    push writes the row (step 8). The checkpoint at that push did not keep the last row's step, and a run
    resumed from it lost row 8 (its pushes merged into row 10, another loss)."""
    import downpour.ps.worker as worker_module
    from downpour.train.step import NonFiniteLoss

    step, calls = worker_module.train_step, [0]

    def nan_at_5_and_6(model, objective, batch):
        calls[0] += 1
        if calls[0] in (5, 6):
            raise NonFiniteLoss("non-finite cost nan")
        return step(model, objective, batch)

    monkeypatch.setattr(worker_module, "train_step", nan_at_5_and_6)
    cfg = load_config("ufldl-sae", ["cluster.runner=simulated", "cluster.workers=1", "cluster.shards=1",
                                    "data.samples=64", "train.batch_size=8", "train.steps=15", "train.log_every=3",
                                    "cluster.n_push=2", "train.tensorboard=false", "train.threads=1"])
    run_cluster(cfg, RunDir.create(tmp_path / "a", cfg))
    calls[0] = 0
    on_push = ctrl_c_after_push(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run_cluster(cfg, RunDir.create(tmp_path / "b", cfg))
    monkeypatch.setattr(recorder_module.Recorder, "on_push", on_push)
    calls[0] = 6
    run_cluster(cfg, RunDir.open(tmp_path / "b"), resume=True)
    rows = {d: [(r["step"], r["loss"]) for r in RunDir(tmp_path / d).metrics()] for d in "ab"}
    assert 8 in [s for s, _ in rows["a"]] and rows["b"] == rows["a"]


def _losing_shard_1(monkeypatch, losses, placed=None):
    """The driver loses shard 1 once the run reaches each step of ``losses`` (a list the test may add to), the
    shards' checkpoint on the way out failing as it does on Ray (the shard is gone); ``placed``: the loss's, as
    Ray's driver gives it."""
    from downpour.ps.recorder import ShardLost

    real = recorder_module.Recorder.on_push

    def on_push(self, push, record):
        real(self, push, record)
        if losses and self.coord.done >= losses[0]:
            losses.pop(0)
            raise ShardLost(f"shard 1 lost at step {self.coord.done} (ConnectionError)", step=self.coord.done,
                            placed=placed)

    monkeypatch.setattr(recorder_module.Recorder, "on_push", on_push)
    monkeypatch.setattr(recorder_module.Recorder, "save_on_failure", lambda self, err=None: None)
    return losses


def test_a_lost_shard_that_stops_the_run_is_an_event_in_staleness_json_and_stays_one_on_resume(tmp_path, monkeypatch):
    """A shard lost with cluster.shard_restarts spent stops the run with its events recorded: else one log line, and
    staleness.json (the last checkpoint's) holds no event of it, nor of a shard restart after that checkpoint. Here the
    driver loses a shard at step 20 (restarted from the checkpoint of step 16) and again at step 18 of the second go,
    with the shards' checkpoint on the way out failing as it does on Ray (the shard is gone)."""
    from downpour.errors import RunError

    _losing_shard_1(monkeypatch, [20, 18])      # the first go's loss, then the second's
    with pytest.raises(RunError, match="already restarted 1 time") as stop:
        _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.shard_restarts=1")
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    # the second go's resume is kept though the go stopped before its next checkpoint (it was lost with the go)
    assert [(e["event"], e["step"]) for e in events] == [("shards-restarted", 16), ("resumed", 16), ("shards-lost", 18)]
    assert events[1]["workers"] == [0, 1, 2] and events[1]["n"] == 1
    assert events[2]["checkpoint"] == 16 and events[2]["reason"] == "shard 1 lost at step 18 (ConnectionError)"
    # the folder says it stopped, where, why and from where a resume goes on (it had no cluster.json)
    summary = json.loads((tmp_path / "r/cluster.json").read_text())
    assert summary["stopped"] == {"step": 18, "steps": 31, "by": "ShardLost: shard 1 lost at step 18 (ConnectionError)"}
    # data.json (written on any stop, a built-in set's too) words the one stop alike: the report says it once
    assert json.loads((tmp_path / "r/data.json").read_text())["stopped"]["by"] == summary["stopped"]["by"]
    assert summary["checkpoint"] == 16 and summary["shard_events"] == [events[0], events[2]]
    assert summary["resumed_from"] == 0
    import shlex                                # (as a shell takes it: Python's repr quoted it, '$' and all)
    assert f"--resume {shlex.quote(str(tmp_path / 'r'))} goes on from its last server checkpoint, at step 16" in str(stop.value)
    monkeypatch.undo()
    assert _run(tmp_path / "r", resume=True)["steps"] == 31
    kept = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert [e["event"] for e in kept] == ["shards-restarted", "resumed", "shards-lost", "resumed"]   # (the resume's own)
    assert [e["n"] for e in kept] == [1, 1, 2, 2]     # (shard events and resumes, each numbered among its own)
    assert "stopped" not in json.loads((tmp_path / "r/cluster.json").read_text())   # the finished run's summary


def test_a_lost_shard_whose_shards_still_answer_is_checkpointed_and_restarted_from_that_checkpoint(
        tmp_path, monkeypatch, caplog):
    """Ray takes a shard silent for 10 s for lost (or the shards' head gone), and it may answer the snapshot on the way
    out still: that checkpoint is kept and said without "stopped" (the run restarts its shards from it and finishes),
    at the loss's step, the pushes answered but not read not recorded (settle not called). Here the loss is raised by
    hand, the simulator's shards all alive."""
    save_on_failure = recorder_module.Recorder.save_on_failure
    _losing_shard_1(monkeypatch, [20])
    monkeypatch.setattr(recorder_module.Recorder, "save_on_failure", save_on_failure)   # the real one, here
    settled = []
    monkeypatch.setattr("downpour.ps.simulated.SimulatedCluster.settle", lambda self, on_push: settled.append(1))
    with caplog.at_level("WARNING"):
        assert _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8",
                    "cluster.shard_restarts=1")["steps"] == 31
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == ["the server was checkpointed at step 20",
                    "shard 1 lost at step 20 (ConnectionError); restarting every shard from the checkpoint at step 20"]
    assert settled == []


def test_a_lost_shards_stop_gives_the_step_it_was_lost_at_in_its_warning_its_error_and_its_records(
        tmp_path, monkeypatch, caplog):
    """A shard's node removed on a 2-node Ray (2026-12-07): the error, cluster.json and staleness.json said "shard 1
    lost at step 22", but the warning "stopped at step 24; could not checkpoint the server", and so did data.json,
    whose later step the report's stop line gives: the checkpoint on the way out first recorded the two pushes whose
    answers were in hand, which no checkpoint can hold (the snapshot needs every shard). Here the driver's settle
    records two more steps as Ray's does, and its snapshot fails once the shard is lost, as Ray's does (an error of
    its own, not the simulator's ShardLost, which is said nothing of): the warning, the error, cluster.json,
    staleness.json, data.json and the report give one step, and the warning does not say "stopped" (a run with
    shard restarts left goes on)."""
    from downpour.analysis.report_stop import run_stop
    from downpour.errors import RunError
    from downpour.ps.simulated import SimulatedCluster

    save_on_failure = recorder_module.Recorder.save_on_failure
    losses = _losing_shard_1(monkeypatch, [20])
    monkeypatch.setattr(recorder_module.Recorder, "save_on_failure", save_on_failure)   # the real one, here
    real_snapshot = SimulatedCluster.snapshot

    def snapshot(self):
        if not losses:
            raise RuntimeError("The actor died unexpectedly before finishing this task.\n\tclass_name: Shard")
        return real_snapshot(self)

    def settle(self, on_push):          # two pushes' answers in hand, recorded (Ray: a shard on another node's)
        self.coord.done += 2

    monkeypatch.setattr(SimulatedCluster, "snapshot", snapshot)
    monkeypatch.setattr(SimulatedCluster, "settle", settle)
    with caplog.at_level("WARNING"), pytest.raises(RunError, match="shard restarts are off") as stop:
        _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.shard_restarts=0")
    step = int(str(stop.value).split("lost at step ")[1].split()[0])
    assert step >= 20 and [r.getMessage() for r in caplog.records if r.name == recorder_module.__name__] == [
        f"could not checkpoint the server at step {step} (RuntimeError: The actor died unexpectedly before finishing "
        "this task.)"]
    run = RunDir.open(tmp_path / "r")
    assert run.read_json("cluster.json")["stopped"]["step"] == run.read_json("data.json")["stopped"]["step"] == step
    assert run.read_json("staleness.json")["events"][-1]["step"] == run_stop(run)["step"] == step


def test_a_restarted_runs_cluster_json_keeps_where_the_lost_go_had_placed_its_actors(tmp_path, monkeypatch):
    """Each shard event keeps its go's placement in cluster.json: else a run whose shards restarted keeps the last go's
    alone (``nodes: 1`` after a node was lost), and the lost node is named only in the reason."""
    placed = {"nodes": 2, "placement": {"shards": [0, 1], "workers": [0, 1]}, "node_ids": ["a" * 56, "b" * 56],
              "node_addresses": ["10.0.0.1", "10.0.0.2"], "lost_shards": [1]}
    _losing_shard_1(monkeypatch, [20], placed)
    _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.workers=2",
         "cluster.shard_restarts=1")
    kept = json.loads((tmp_path / "r/cluster.json").read_text())["shard_events"]
    assert [(e["event"], e["step"]) for e in kept] == [("shards-restarted", 16)]
    assert {k: kept[0][k] for k in placed} == placed


def test_a_shard_restart_is_one_entry_in_the_reports_faults_line_with_the_workers_it_started(tmp_path, monkeypatch):
    """A shard lost at step 20 restarts every shard from the checkpoint of step 16, and the run resumes there
    (``shards-restarted``, then ``resumed``, both at step 16). The Faults line says the one fault once, not twice as
    in "the shards restarted from the checkpoint of step 16 (...); the run resumed at step 16 with its 2 workers
    started"."""
    import html

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    _losing_shard_1(monkeypatch, [20])
    assert _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.workers=2",
                "cluster.shard_restarts=1")["steps"] == 31
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert [(e["event"], e["step"]) for e in events] == [("shards-restarted", 16), ("resumed", 16)]
    assert html.unescape(_cluster_faults(RunDir.open(tmp_path / "r"))) == (
        '<p class="note">Faults: a shard lost at step 20, the shards restarted from the checkpoint of step 16 (shard 1 '
        'lost at step 20 (ConnectionError)), its 2 workers started again.</p>')


def test_two_shard_restarts_alike_in_step_and_reason_stay_two_events(tmp_path, monkeypatch):
    """The shard events of a go are gathered from its checkpoint, staleness.json and the command's own list, and each
    is numbered in the run: told apart by comparing the events whole, a shard lost at step 20 from the checkpoint of
    step 16, once before a stop and once after its --resume, would make two restarts alike in every field, and
    staleness.json keep one (shards-restarted, shards-lost, and no second restart)."""
    from downpour.errors import RunError

    losses = _losing_shard_1(monkeypatch, [20, 20])   # a restart, then the stop (restarts spent)
    with pytest.raises(RunError, match="already restarted 1 time"):
        _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.shard_restarts=1")
    losses.append(20)                                            # the same loss after the resume: restarted
    assert _run(tmp_path / "r", resume=True)["steps"] == 31
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    # each go's resume too, alike as they are (step 16, both workers): the first restart's, the user's --resume's (its
    # go stopped by the next loss before a checkpoint) and the second restart's (not the last one alone)
    assert [(e["event"], e["step"]) for e in events] == [("shards-restarted", 16), ("resumed", 16), ("shards-lost", 20),
                                                         ("resumed", 16), ("shards-restarted", 16), ("resumed", 16)]
    shard = [e for e in events if e["event"] != "resumed"]
    assert [e["n"] for e in shard] == [1, 2, 3] and [e["n"] for e in events if e["event"] == "resumed"] == [1, 2, 3]
    assert {e["reason"] for e in shard} == {"shard 1 lost at step 20 (ConnectionError)"}


def _failing_at(monkeypatch, module, name, at):
    """``module.name`` raises an error a run can meet mid-event (a worker's step, a shard's push) at its call ``at``."""
    real, calls = getattr(module, name), [0]

    def failing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            raise RuntimeError("out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def _same_rows_and_model(a, b):
    assert [(r["step"], r["loss"]) for r in RunDir(a).metrics()] == [(r["step"], r["loss"]) for r in RunDir(b).metrics()]
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("where", ["push", "step"])
def test_an_error_mid_event_keeps_the_whole_checkpoint_of_the_last_push(tmp_path, monkeypatch, where):
    """``cluster.checkpoint_every = 1``: the checkpoint at push 4 holds the simulator's whole state. An error inside
    the next event (push 5 reaching its second shard, its first having applied it; or a worker's step) must not save
    the server again mid-event over it, without the workers' state: the resume would start them afresh, and row 5 on
    and the model would be off the uninterrupted run's. Nothing is recorded after it, so that checkpoint stands."""
    import downpour.ps.worker as worker_module

    sets = ["cluster.consistency=async", "cluster.checkpoint_every=1", "train.log_every=1"]
    _run(tmp_path / "a", *sets)
    if where == "push":
        _failing_at(monkeypatch, shard_module.Shard, "push", 10)
    else:
        _failing_at(monkeypatch, worker_module, "train_step", 7)
    with pytest.raises(RuntimeError):
        _run(tmp_path / "b", *sets)
    monkeypatch.undo()
    _run(tmp_path / "b", resume=True)
    _same_rows_and_model(tmp_path / "a", tmp_path / "b")


def test_an_error_before_a_resumes_first_push_keeps_the_checkpoint_it_resumed_from(tmp_path, monkeypatch):
    """A Ctrl-C at push 7 saves the whole state; the resume fails in its first worker step: the checkpoint it
    went on from stands (not saved again mid-event, without the workers), and the next resume is exact."""
    import downpour.ps.worker as worker_module

    sets = ["cluster.consistency=async", "train.log_every=1"]
    _run(tmp_path / "a", *sets)
    ctrl_c_after_push(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", *sets)
    monkeypatch.undo()
    _failing_at(monkeypatch, worker_module, "train_step", 1)
    with pytest.raises(RuntimeError):
        _run(tmp_path / "b", resume=True)
    monkeypatch.undo()
    _run(tmp_path / "b", resume=True)
    _same_rows_and_model(tmp_path / "a", tmp_path / "b")


def _restart_driver(monkeypatch, start):
    """The first go runs on the real driver; every later one (a shard restart's) is ``start``, called as the driver
    is (``_driver(runner)(...)``): a restart's driver that fails or is stopped as it starts."""
    import downpour.ps.cluster as cluster

    real, goes = cluster._driver, []

    def driver(runner):
        goes.append(runner)
        return real(runner) if len(goes) == 1 else start

    monkeypatch.setattr(cluster, "_driver", driver)


def test_a_restart_that_cannot_rejoin_the_cluster_records_the_stop(tmp_path, monkeypatch):
    """A joined cluster's head stopped mid-run: the shards are lost and their restart cannot rejoin (`cannot reach the
    Ray cluster`). The run records the shards-lost event and cluster.json and says where a --resume goes on, and no
    shards-restarted event or restart for the restart that never started (else that error alone ends the run)."""
    from downpour.errors import RunError

    def unreachable(*args):
        raise RunError("cannot reach the Ray cluster at cluster.address='127.0.0.1:6399' within 10 s")

    _restart_driver(monkeypatch, unreachable)
    _losing_shard_1(monkeypatch, [20])
    with pytest.raises(RunError, match="restarting the shards failed .cannot reach the Ray cluster") as stop:
        _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.shard_restarts=3")
    assert "goes on from its last server checkpoint, at step 16" in str(stop.value)
    # the restart never started: no shards-restarted event, none counted
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert [(e["event"], e["step"], e["n"], e.get("restarts")) for e in events] == [("shards-lost", 20, 1, 0)]
    assert events[0]["restart_failed"].startswith("cannot reach the Ray cluster")
    summary = json.loads((tmp_path / "r/cluster.json").read_text())
    assert summary["stopped"]["step"] == 20 and summary["checkpoint"] == 16
    assert summary["shard_restarts"] == 0 and summary["shard_events"] == events


def test_a_restart_refused_by_its_config_records_the_stop(tmp_path, monkeypatch):
    """A node lost with the shard took the cluster's GPUs with it: the restart's driver refuses the run
    (ConfigError: too few GPUs). The run records it as it does a failed rejoin: else that ConfigError alone ends the
    run, with no shards-lost event, no cluster.json, the shard's loss unsaid and no word of where --resume goes on."""
    from downpour.errors import RunError

    def refused(*args):
        raise ConfigError("train.device='cuda': the Ray cluster has 0 GPUs and the run's 3 workers ask 1 each")

    _restart_driver(monkeypatch, refused)
    _losing_shard_1(monkeypatch, [20])
    with pytest.raises(RunError, match=r"^shard 1 lost at step 20 .*restarting the shards failed \(train.device='cuda'"
                       ) as stop:
        _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.shard_restarts=3")
    assert "goes on from its last server checkpoint, at step 16" in str(stop.value)
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert [(e["event"], e["step"], e["restarts"]) for e in events] == [("shards-lost", 20, 0)]
    assert events[0]["restart_failed"].startswith("train.device='cuda'")
    assert json.loads((tmp_path / "r/cluster.json").read_text())["stopped"]["step"] == 20


def test_a_restarted_go_that_loses_every_worker_ends_as_such_not_as_a_failed_restart(tmp_path, monkeypatch):
    """The shards restarted from the checkpoint of step 16 and the go trained on; then every worker was lost at
    step 24: the stop is the workers' loss. If the handler of a restart that cannot rejoin took any RunError after a
    restart, it would read "shard 1 lost at step 20 ..., and restarting the shards failed (every worker was lost ...)":
    a shards-lost event at step 20, and cluster.json's summary of the go overwritten with a stop at step 20."""
    from downpour.errors import RunError

    _losing_shard_1(monkeypatch, [20])
    lossy = recorder_module.Recorder.on_push

    def losing_all(self, push, record):
        lossy(self, push, record)
        if self.coord.done >= 24 and any(e["event"] == "resumed" for e in self.coord.events):
            for w in sorted(self.coord.live):
                self.driver.lose(w, "killed")

    monkeypatch.setattr(recorder_module.Recorder, "on_push", losing_all)
    with pytest.raises(RunError, match="^every worker was lost") as stop:
        _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.shard_restarts=3")
    assert "restarting the shards failed" not in str(stop.value)
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert [e["event"] for e in events if e["event"].startswith("shards")] == ["shards-restarted"]
    summary = json.loads((tmp_path / "r/cluster.json").read_text())     # the go's own, its stop the workers' loss
    assert summary["steps"] >= 24 and summary["stopped"] == {"step": summary["steps"], "steps": 31,
                                                             "by": "every worker was lost"}


def _interrupted_stop(path, how):
    """The run folder of a stop (``how``) that came while the shards lost at step 20 were restarted from the checkpoint
    of step 16: the loss recorded as a restart that never started, and a --resume goes on from that checkpoint."""
    events = json.loads((path / "staleness.json").read_text())["events"]
    assert [(e["event"], e["step"], e["n"], e["restarts"]) for e in events] == [("shards-lost", 20, 1, 0)]
    assert events[0]["restart_interrupted"] == how and "restart_failed" not in events[0]
    summary = json.loads((path / "cluster.json").read_text())
    assert summary["stopped"]["step"] == 20 and summary["checkpoint"] == 16
    assert summary["shard_restarts"] == 0 and summary["shard_events"] == events
    assert _run(path, resume=True)["steps"] == 31


@pytest.mark.parametrize("signum, how, status", [(signal.SIGINT, "interrupted (Ctrl-C or SIGTERM)", 130),
                                                 (signal.SIGTERM, "terminated (SIGTERM)", 143)])
def test_a_stop_while_the_shards_restart_records_the_loss(tmp_path, monkeypatch, caplog, signum, how, status):
    """A Ctrl-C or SIGTERM after shard 1 was lost, while the restarted go's driver started (on Ray: its actors coming
    up). The command exits as for any stop, the shard's loss recorded: else the interrupt alone ends the run, with no
    shards-lost event, no cluster.json, nothing to say the shard was lost (a --resume goes on from the checkpoint all
    the same)."""
    from downpour.cli import main

    def stopped(*args):
        os.kill(os.getpid(), signum)
        time.sleep(5)            # (the signal's handler raises here)

    _restart_driver(monkeypatch, stopped)
    _losing_shard_1(monkeypatch, [20])
    sets = [*SYNC, "cluster.consistency=async", "cluster.checkpoint_every=8"]    # (cluster.shard_restarts: 3)
    args = ["train", "--config", "teacher-student", "--no-report", "--out", str(tmp_path / "r")]
    assert main([*args, *(x for item in sets for x in ("--set", item))]) == status
    assert f"and the shards' restart was {how}: the run stopped; --resume" in caplog.text
    monkeypatch.undo()
    _interrupted_stop(tmp_path / "r", how)


def _stopped_losing_shard_1(path: Path, monkeypatch, restarts: int) -> None:
    """An async run at ``path`` that loses shard 1 at step 20 with ``restarts`` shard restarts to spend, stopped by a
    Ctrl-C (the test's stand-in raises it)."""
    _losing_shard_1(monkeypatch, [20])
    with pytest.raises(KeyboardInterrupt):
        _run(path, "cluster.consistency=async", "cluster.checkpoint_every=8", f"cluster.shard_restarts={restarts}")


def _closed_then_stopped(monkeypatch, times: int | None = None) -> None:
    """A go's recorder closes, then a Ctrl-C comes (in its first ``times`` closes; None: in every one)."""
    real, closes = recorder_module.Recorder.close, []

    def close(self):
        real(self)
        closes.append(1)
        if times is None or len(closes) <= times:
            raise KeyboardInterrupt

    monkeypatch.setattr(recorder_module.Recorder, "close", close)


def test_a_stop_while_a_go_a_lost_shard_ended_winds_up_records_the_loss(tmp_path, monkeypatch):
    """A Ctrl-C in the wrap-up of the go shard 1's loss ended (its recorder's, its driver's close: on Ray the dead
    shard's close waits up to 30 s): the ShardLost under it is recorded, not dropped."""
    _closed_then_stopped(monkeypatch, times=1)
    _stopped_losing_shard_1(tmp_path / "r", monkeypatch, restarts=3)
    monkeypatch.undo()
    _interrupted_stop(tmp_path / "r", "interrupted (Ctrl-C or SIGTERM)")


def test_a_stop_while_the_last_go_a_lost_shard_ended_winds_up_is_the_stop_the_loss_was(tmp_path, monkeypatch):
    """No shard restart left: the loss stopped the run; a Ctrl-C in its go's wrap-up records it as that stop, not
    as a restart interrupted."""
    _closed_then_stopped(monkeypatch)
    _stopped_losing_shard_1(tmp_path / "r", monkeypatch, restarts=0)
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert [(e["event"], e["step"], e["restarts"]) for e in events] == [("shards-lost", 20, 0)]
    assert "restart_interrupted" not in events[0]
    assert json.loads((tmp_path / "r/cluster.json").read_text())["stopped"]["step"] == 20


def test_a_stop_while_the_restart_is_prepared_records_the_loss(tmp_path, monkeypatch):
    """A Ctrl-C while the restart reads the checkpoint it goes on from (before its go begins): the loss is recorded
    (else the Ctrl-C comes in the handler of the loss, which nothing records)."""
    import downpour.ps.cluster as cluster

    def stopped(run):
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster, "checkpoint_step", stopped)      # (the restart's own look at the checkpoint)
    _stopped_losing_shard_1(tmp_path / "r", monkeypatch, restarts=3)
    monkeypatch.undo()
    _interrupted_stop(tmp_path / "r", "interrupted (Ctrl-C or SIGTERM)")


def test_a_restart_from_a_damaged_checkpoint_records_the_stop(tmp_path, monkeypatch):
    """The server checkpoint was damaged before the shards restarted from it: the restart could not read its step
    (CheckpointError). The stop is recorded, the checkpoint said unreadable, the file named (else the record of the stop
    fails the same way, so the run stops with that error and the shard's loss unrecorded)."""
    from downpour.errors import RunError

    _losing_shard_1(monkeypatch, [20])
    real = recorder_module.Recorder.on_push

    def on_push(self, push, record):
        try:
            real(self, push, record)
        except BaseException:
            (self.run.checkpoints / "server.json").write_text("{not json")   # damaged as the shard was lost
            raise

    monkeypatch.setattr(recorder_module.Recorder, "on_push", on_push)
    failed = r"^shard 1 lost at step 20 .*restarting the shards failed .*server\.json"
    with pytest.raises(RunError, match=failed) as stop:
        _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.shard_restarts=3")
    assert str(stop.value).count("server.json") == 1       # (the restart's error, said once)
    assert "its server checkpoint is unreadable: --resume" in str(stop.value)
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert [(e["event"], e["step"], e["restarts"], e["checkpoint"]) for e in events] == [("shards-lost", 20, 0, None)]
    assert "server.json" in events[0]["checkpoint_unreadable"]
    assert json.loads((tmp_path / "r/cluster.json").read_text())["stopped"]["step"] == 20


def test_a_restart_refused_by_an_error_without_a_message_says_so(tmp_path, monkeypatch):
    """A restart's driver refused with an error whose message is empty: the stop says the restart failed and its event
    has restart_failed (else it reads as if the restarts were spent, "already restarted 0 times")."""
    from downpour.errors import RunError

    def refused(*args):
        raise ConfigError("")

    _restart_driver(monkeypatch, refused)
    _losing_shard_1(monkeypatch, [20])
    with pytest.raises(RunError, match=r"restarting the shards failed \(ConfigError\)") as stop:
        _run(tmp_path / "r", "cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.shard_restarts=3")
    assert "already restarted" not in str(stop.value)
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert events[0]["restart_failed"] == "ConfigError"


def test_a_driver_whose_close_fails_still_closes_the_recorder(tmp_path, monkeypatch):
    """The driver's close raises at the end of a go: the recorder closes too (its close not skipped), and the
    driver's error is still raised."""
    import downpour.ps.cluster as cluster

    real, closed = cluster._driver, []

    def driver(runner):
        class Failing(real(runner)):
            def close(self):
                super().close()
                raise OSError("the driver's close failed")
        return Failing

    real_close = recorder_module.Recorder.close
    monkeypatch.setattr(cluster, "_driver", driver)
    monkeypatch.setattr(recorder_module.Recorder, "close", lambda self: (closed.append(True), real_close(self)))
    with pytest.raises(OSError, match="the driver's close failed"):
        _run(tmp_path / "r", "train.steps=4")
    assert closed


def test_a_second_ctrl_c_while_the_lost_shards_stop_is_recorded_waits_for_the_record(tmp_path, monkeypatch, capsys):
    """The stop of a go a lost shard ended, recorded (cluster.json, staleness.json) while an impatient user presses
    Ctrl-C again: the record is whole (else the Ctrl-C cuts it, and nothing says the shard was lost)."""
    _ctrl_c_in_the_lost_shards_record(monkeypatch)
    _closed_then_stopped(monkeypatch, times=1)
    _stopped_losing_shard_1(tmp_path / "r", monkeypatch, restarts=3)
    monkeypatch.undo()
    err = capsys.readouterr().err
    _interrupted_stop(tmp_path / "r", "interrupted (Ctrl-C or SIGTERM)")
    assert err.count("saving the lost shard's stop record (cluster.json, staleness.json) first") == 1


def _ctrl_c_in_the_lost_shards_record(monkeypatch):
    """A Ctrl-C (SIGINT, as a user's) while a lost shard's stop is recorded, before cluster.json and staleness.json."""
    import downpour.ps.lost_shards as lost_shards

    kept_step = lost_shards._kept_step

    def kept_then_ctrl_c(run):
        found = kept_step(run)
        os.kill(os.getpid(), signal.SIGINT)
        return found

    monkeypatch.setattr(lost_shards, "_kept_step", kept_then_ctrl_c)


def test_a_ctrl_c_while_a_lost_shard_with_no_restarts_left_is_recorded_waits_for_the_record(tmp_path, monkeypatch,
                                                                                           capsys):
    """Shard 1 lost at step 20 with cluster.shard_restarts spent (0): the stop's record (RunError's) is written
    shielded (else a Ctrl-C then cuts it and nothing says the shard was lost), and the line of a Ctrl-C while a lost
    shard's stop is recorded names no checkpoint, since none is written (the shards are gone)."""
    _ctrl_c_in_the_lost_shards_record(monkeypatch)
    _stopped_losing_shard_1(tmp_path / "r", monkeypatch, restarts=0)     # (the Ctrl-C, at the record's end)
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert err.count("saving the lost shard's stop record (cluster.json, staleness.json) first") == 1
    assert "checkpoint and stop record" not in err
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert [(e["event"], e["step"], e["restarts"]) for e in events] == [("shards-lost", 20, 0)]
    assert json.loads((tmp_path / "r/cluster.json").read_text())["stopped"]["step"] == 20
    assert _run(tmp_path / "r", resume=True)["steps"] == 31


def test_a_ctrl_c_while_a_failed_shard_restart_is_recorded_waits_for_the_record(tmp_path, monkeypatch, capsys):
    """The restart after shard 1's loss cannot start (its ConfigError), and a Ctrl-C comes while that stop is recorded:
    the record (RunError's) is whole (else the Ctrl-C cuts it, and nothing says the shard was lost)."""
    def refused(*args):
        raise ConfigError("train.device='cuda' but no GPU is visible")

    _restart_driver(monkeypatch, refused)
    _ctrl_c_in_the_lost_shards_record(monkeypatch)
    _stopped_losing_shard_1(tmp_path / "r", monkeypatch, restarts=3)
    monkeypatch.undo()
    assert capsys.readouterr().err.count("saving the lost shard's stop record") == 1
    events = json.loads((tmp_path / "r/staleness.json").read_text())["events"]
    assert [(e["event"], e["step"]) for e in events] == [("shards-lost", 20)]
    assert events[0]["restart_failed"] == "train.device='cuda' but no GPU is visible"


def test_a_resume_that_finds_every_push_made_of_a_run_none_of_whose_pushes_was_finite_fails_as_the_run_did(
        tmp_path, monkeypatch):
    """Its uninterrupted run fails with Diverged; stopped after its last push, its resume saved the model and
    returned a summary, as if the run had trained."""
    import downpour.ps.worker as ps_worker
    from downpour.errors import Diverged
    from downpour.train.step import NonFiniteLoss

    def fail(model, objective, batch):
        raise NonFiniteLoss("non-finite cost nan")

    def stopped(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(ps_worker, "train_step", fail)
    with pytest.raises(Diverged, match="none of the 31 pushes of this run carried a finite gradient"):
        _run(tmp_path / "whole")
    monkeypatch.setattr(recorder_module.Recorder, "close", stopped)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "r")
    monkeypatch.undo()
    with pytest.raises(Diverged, match="none of the 31 pushes of this run carried a finite gradient"):
        _run(tmp_path / "r", resume=True)
    assert json.loads((tmp_path / "r/cluster.json").read_text())["refused_pushes"] == {"refused": 31, "of": 31}
