"""cluster.faults: the simulator loses a worker or a shard at a step, as the config says, through the paths a real
loss takes (not only a test's SimulatedCluster.lose, a ShardLost raised by hand)."""
import html
import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from test_cluster_resume_edges import _losing_shard_1
from test_cluster_resume_edges import _run as _sync_run
from test_ps_simulated import _run, _same_run, _stopped_and_resumed, _without_wall_clock

import downpour.ps.recorder as recorder_module
import downpour.ps.simulated as simulated_module
from downpour.analysis.report_cluster import cluster_faults
from downpour.cli import main
from downpour.errors import RunError
from downpour.train.rundir import RunDir

SETS = ['cluster.delay="uniform:0:3"', "cluster.n_push=2", "cluster.checkpoint_every=3"]
SHARD = ["cluster.consistency=async", "cluster.checkpoint_every=8", "cluster.workers=2"]


def _events(path):
    return json.loads((path / "staleness.json").read_text())["events"]


def test_a_worker_lost_by_cluster_faults_is_the_run_that_lose_gave(tmp_path, monkeypatch):
    """'worker 1 at 12': the run (model, metrics, staleness) that SimulatedCluster.lose(1) at step 12 gave, but
    the reason, which names the item."""
    on_push = recorder_module.Recorder.on_push

    def losing(self, push, record):                 # (test_ps_simulated's loss: worker 1 dies as step 12 lands)
        if self.coord.done >= 12 and 1 in self.coord.live:
            self.driver.lose(1, "cluster.faults 'worker 1 at 12'")
        on_push(self, push, record)

    monkeypatch.setattr(recorder_module.Recorder, "on_push", losing)
    _run(tmp_path / "by-hand", *SETS)
    monkeypatch.undo()
    summary, _ = _run(tmp_path / "by-key", *SETS, "cluster.faults=['worker 1 at 12']")
    assert summary["lost_workers"] == [1] and summary["steps"] == 48
    lost = [e for e in _events(tmp_path / "by-key") if e["event"] == "worker-lost"]
    assert lost == [{"event": "worker-lost", "worker": 1, "step": 12, "reason": "cluster.faults 'worker 1 at 12'"}]
    a, b = RunDir(tmp_path / "by-hand"), RunDir(tmp_path / "by-key")
    assert a.read_json("staleness.json") == b.read_json("staleness.json")
    assert [(r["step"], r["loss"]) for r in a.metrics()] == [(r["step"], r["loss"]) for r in b.metrics()]


def test_a_shard_lost_by_cluster_faults_restarts_every_shard_from_the_checkpoint(tmp_path, monkeypatch):
    """'shard 1 at 20' with a checkpoint every 8 pushes: the shards restart from step 16 and the run finishes, as
    test_cluster_resume_edges' ShardLost raised by hand did; the report's Faults line names the item."""
    _losing_shard_1(monkeypatch, [20])
    _sync_run(tmp_path / "by-hand", *SHARD)
    monkeypatch.undo()
    assert _sync_run(tmp_path / "by-key", *SHARD, "cluster.faults=['shard 1 at 20']")["steps"] == 31
    events = _events(tmp_path / "by-key")
    assert [(e["event"], e["step"]) for e in events] == [(e["event"], e["step"]) for e in _events(tmp_path / "by-hand")] \
        == [("shards-restarted", 16), ("resumed", 16)]
    assert events[0]["reason"] == "shard 1 lost at step 20 (cluster.faults 'shard 1 at 20')"
    assert html.unescape(cluster_faults(RunDir.open(tmp_path / "by-key"))) == (
        '<p class="note">Faults: a shard lost at step 20, the shards restarted from the checkpoint of step 16 (shard 1 '
        "lost at step 20 (cluster.faults 'shard 1 at 20')), its 2 workers started again.</p>")


def test_a_shard_lost_before_the_first_checkpoint_is_not_said_to_leave_nothing_to_resume(tmp_path, caplog):
    """'shard 1 at 5', the first checkpoint due at 8: no warning says "there is no server checkpoint to resume from",
    nor "stopped at step 5; could not checkpoint the server (ShardLost: shard 1 is lost)", of a run that restarts its
    shards from step 0 and finishes: the simulator's lost shard is gone, no checkpoint can be taken, and what follows is
    run_cluster's to say (the restart from the start); the report says so too, not "from the checkpoint of step 0"."""
    assert _warnings_of_a_shard_lost_at(5, tmp_path / "r", caplog) == [
        "shard 1 lost at step 5 (cluster.faults 'shard 1 at 5'); restarting every shard from the start "
        "(no checkpoint yet)"]
    assert html.unescape(cluster_faults(RunDir.open(tmp_path / "r"))).startswith(
        "<p class=\"note\">Faults: a shard lost at step 5, the shards restarted from the start, step 0 (shard 1 lost at "
        "step 5 ")


def test_a_shard_event_says_the_step_its_shard_was_lost_at_beside_the_step_the_shards_restarted_from(tmp_path):
    """'shard 1 at 5' before the first checkpoint, then (shard_restarts spent) 'shard 1 at 20': cluster.json's
    shard_events give the restart's "step": 0 (the start it went back to) with "lost_at": 5, and the stop's "step": 20
    with "lost_at": 20, the same key on every shard event; the loss's step is not left to the reason's words."""
    with pytest.raises(RunError, match="the shards were already restarted 1 time"):
        _sync_run(tmp_path / "r", *SHARD, "cluster.shard_restarts=1",
                  "cluster.faults=['shard 1 at 5', 'shard 1 at 20']")
    shard_events = RunDir.open(tmp_path / "r").read_json("cluster.json")["shard_events"]
    assert [(e["event"], e["step"], e["lost_at"]) for e in shard_events] == [("shards-restarted", 0, 5),
                                                                             ("shards-lost", 20, 20)]
    assert [e for e in _events(tmp_path / "r") if e["event"].startswith("shards")] == shard_events   # (staleness.json)


def test_a_shard_lost_right_after_a_checkpoint_is_not_said_to_need_a_resume(tmp_path, caplog):
    """'shard 1 at 16', a checkpoint every 8 pushes: the checkpoint of step 16 stands (no push since it), and no warning
    says "stopped at step 16" or "--resume RUN goes on from it" before the run restarts its shards from it itself. What
    follows a lost shard is run_cluster's to say: the restart (or, restarts spent, the stop with what --resume does)."""
    assert _warnings_of_a_shard_lost_at(16, tmp_path / "r", caplog) == [
        "shard 1 lost at step 16 (cluster.faults 'shard 1 at 16'); restarting every shard from the "
        "checkpoint at step 16"]


def _warnings_of_a_shard_lost_at(step, path, caplog):
    """The warnings of a run (SHARD) whose shard 1 is lost at ``step``; the run restarts its shards and finishes."""
    with caplog.at_level("WARNING"):
        assert _sync_run(path, *SHARD, f"cluster.faults=['shard 1 at {step}']")["steps"] == 31
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_fault_run_stopped_by_its_shard_loss_resumes_without_losing_it_again(tmp_path):
    """cluster.shard_restarts = 0: the shard's loss stops the run (its shards-lost event); --resume goes on from the
    checkpoint of step 16 to the end, the loss taken once."""
    # (not "the shards were already restarted 0 times")
    off = r"shard 1 lost at step 20 .*, and shard restarts are off \(cluster\.shard_restarts = 0\): the run stopped"
    with pytest.raises(RunError, match=off):
        _sync_run(tmp_path / "r", *SHARD, "cluster.shard_restarts=0", "cluster.faults=['shard 1 at 20']")
    assert _sync_run(tmp_path / "r", resume=True)["steps"] == 31
    assert [(e["event"], e["step"]) for e in _events(tmp_path / "r")] == [("shards-lost", 20), ("resumed", 16)]


def test_a_worker_fault_run_resumes_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """Stopped after its 4th checkpoint (worker 1 lost at step 12 by then), --resume goes on to the uninterrupted
    fault run bit for bit, the worker lost once."""
    def the_fourth(recorder):
        assert recorder.checkpoints < 4 or recorder.coord.lost == [1]
        return recorder.checkpoints == 4

    summary = _stopped_and_resumed(tmp_path, monkeypatch, [*SETS, "cluster.faults=['worker 1 at 12']"], the_fourth)
    assert summary["lost_workers"] == [1]
    _same_run(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("value, said", [
    ("worker 1 at 100, disk 0 at 50", "'disk 0 at 50': unknown kind 'disk'"),
    ("worker 1 after 100", "'worker 1 after 100' is not a fault"),
    ("worker 3 at 100", "'worker 3 at 100': the run has 3 workers"),
    ("shard 2 at 100", "'shard 2 at 100': the run has 2 shards"),
    ("shard 0 at 200", "'shard 0 at 200': step 200 is outside the run's steps 1 to 199"),
    ("shard 0 at 0", "'shard 0 at 0': step 0 is outside"),
    ("worker x at 10", "'worker x at 10': the worker and the step are whole numbers"),
    ("shard 0 at 50, shard 0 at 50", "'shard 0 at 50' repeats 'shard 0 at 50'"),
    ("worker 1 at 50, worker 1 at 50", "'worker 1 at 50' repeats 'worker 1 at 50' (the same loss twice)"),
    ("worker 1 at 50, worker 1 at 90", "'worker 1 at 90' loses worker 1 again, but its loss by 'worker 1 at 50' is "
                                       "not restarted: cluster.restarts = 0 restarts no worker loss, and "
                                       "'worker 1 at 50' is loss 1; set cluster.restarts = 1 or more"),
])
def test_a_bad_fault_is_refused_naming_the_key_and_the_item(tmp_path, capsys, value, said):
    argv = ["train", "--dry-run", "--config", "teacher-student", "--runner", "simulated", "--workers", "3", "--shards",
            "2", "--steps", "200", "--set", f"cluster.faults={value}", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cluster.faults" in err and said in err and not (tmp_path / "r").exists()


def test_a_loss_past_one_restart_is_refused_saying_the_first_worker_loss(tmp_path, capsys):
    """cluster.restarts = 1: "restarts the first worker loss in step order" (not "the first 1 worker loss"; at 0, not
    "the first 0 worker losses", above)."""
    argv = ["train", "--dry-run", "--config", "teacher-student", "--runner", "simulated", "--workers", "3", "--shards",
            "2", "--steps", "200", "--set", "cluster.faults=worker 0 at 20, worker 1 at 50, worker 1 at 90",
            "--set", "cluster.restarts=1", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert ("cluster.restarts = 1 restarts the first worker loss in step order, and 'worker 1 at 50' is loss 2; "
            "set cluster.restarts = 2 or more") in capsys.readouterr().err


def test_a_fault_past_a_single_shard_says_the_run_has_one(tmp_path, capsys):
    argv = ["train", "--dry-run", "--config", "teacher-student", "--runner", "simulated", "--shards", "1", "--set",
            "cluster.faults=shard 1 at 20"]
    assert main(argv) == 2
    assert "'shard 1 at 20': the run has 1 shard (cluster.shards = 1), numbered 0 to 0" in capsys.readouterr().err


@pytest.mark.parametrize("runner, said", [("local", "needs --runner simulated: the local runner has no workers"),
                                          ("ray", "is the simulator's: on Ray faults are real")])
def test_faults_are_refused_off_the_simulator(tmp_path, capsys, runner, said):
    toml = tmp_path / "faults.toml"       # (a --set cluster.* on the local runner is refused before, by cli_flags)
    toml.write_text('base = "teacher-student"\n[cluster]\nfaults = ["worker 1 at 10"]\n')
    assert main(["train", "--dry-run", "--config", str(toml), "--runner", runner]) == 2
    err = capsys.readouterr().err
    assert f"cluster.faults = ['worker 1 at 10'] {said}" in err


def test_shard_restarts_may_be_set_on_the_simulator_with_a_shard_fault(capsys):
    """cluster.shard_restarts is Ray's on the command line, but a shard cluster.faults loses restarts by it."""
    base = ["train", "--dry-run", "--config", "teacher-student", "--runner", "simulated", "--set",
            "cluster.shard_restarts=0"]
    assert main(base) == 2 and "only the ray runner reads it" in capsys.readouterr().err
    assert main([*base, "--set", "cluster.faults=shard 0 at 10"]) == 0


def test_a_run_whose_faults_lose_every_worker_stops_saying_what_can_go_on(tmp_path):
    """Every worker lost by cluster.faults: the run stops, its losses recorded, and the error says what can train on.
    Not "resume with --resume, or set cluster.restarts": on the simulator the resume would stop again at once (its
    workers still lost), and cluster.restarts is Ray's."""
    faults = "cluster.faults=['worker 0 at 8', 'worker 1 at 12', 'worker 2 at 16', 'worker 3 at 16']"
    with pytest.raises(RunError, match="every worker was lost") as stopped:
        _run(tmp_path / "r", *SETS, faults)
    assert "--resume goes on without them" in str(stopped.value) and "fewer worker losses in cluster.faults" in str(
        stopped.value)
    assert [(e["worker"], e["step"]) for e in _events(tmp_path / "r") if e["event"] == "worker-lost"] == [
        (0, 8), (1, 12), (2, 16), (3, 16)]
    with pytest.raises(RunError, match="every worker was lost"):      # (the resume cannot bring them back)
        _run(tmp_path / "r", *SETS, faults, resume=True)


RESTART = [*SETS, "cluster.faults=['worker 1 at 12']", "cluster.restarts=1"]


def _without(events, kind):
    return [e for e in events if e["event"] != kind]


def test_a_worker_lost_with_cluster_restarts_is_restarted_as_on_ray(tmp_path):
    """cluster.restarts = 1: worker 1, lost at step 12, is restarted (its replacement seeded from step 12, rejoining
    once the pushes it sent have landed), with the events Ray's driver records (test_ps_restarts_replacements: a
    worker-restarted with worker, step and seed_step); the report's Faults line reads as on Ray; the run repeats bit for
    bit and is not the run without the restart (the simulator takes cluster.restarts)."""
    summary, run = _run(tmp_path / "a", *RESTART)
    assert summary["lost_workers"] == [] and summary["steps"] == 48
    lost, restarted = _events(tmp_path / "a")
    assert lost == {"event": "worker-lost", "worker": 1, "step": 12, "reason": "cluster.faults 'worker 1 at 12'"}
    assert set(restarted) == {"event", "worker", "step", "seed_step"}    # Ray's fields, test_ps_restarts_replacements
    assert restarted["event"] == "worker-restarted" and restarted["worker"] == 1 and restarted["seed_step"] == 12
    assert restarted["step"] >= 12
    assert html.unescape(cluster_faults(run)) == (
        f"<p class=\"note\">Faults: worker 1 lost at step 12 (cluster.faults 'worker 1 at 12'), restarted at step "
        f"{restarted['step']}.</p>")
    _run(tmp_path / "b", *RESTART)
    _same_run_but_resumes(tmp_path / "a", tmp_path / "b")
    _run(tmp_path / "gone", *SETS, "cluster.faults=['worker 1 at 12']")
    assert (tmp_path / "gone/model.safetensors").read_bytes() != (tmp_path / "a/model.safetensors").read_bytes()


def test_a_second_loss_with_the_restarts_spent_is_not_restarted(tmp_path):
    """cluster.restarts = 1 and two workers lost: the first restarted, the second not (a not-restarted event naming
    why, as Ray's driver records it)."""
    summary, _ = _run(tmp_path / "r", *SETS, "cluster.faults=['worker 1 at 12', 'worker 2 at 20']", "cluster.restarts=1")
    assert summary["lost_workers"] == [2] and summary["steps"] == 48
    events = _events(tmp_path / "r")      # (worker 1's replacement, started at its loss, rejoins at step 22)
    assert [(e["event"], e["worker"]) for e in events] == [
        ("worker-lost", 1), ("worker-lost", 2), ("not-restarted", 2), ("worker-restarted", 1)]
    assert events[2] == {"event": "not-restarted", "worker": 2, "step": 20, "reason": "cluster.restarts spent"}


@pytest.mark.parametrize("when", ["starting", "rejoined"])
def test_a_restart_fault_run_resumes_as_the_uninterrupted_run(tmp_path, monkeypatch, when):
    """Stopped at a checkpoint while worker 1's replacement waits for its pushes to land (``starting``), or once it
    has rejoined: --resume goes on to the uninterrupted run bit for bit, the worker lost and restarted once."""
    def stop(recorder):
        if when == "starting":
            return 1 in recorder.driver._starting
        return any(e["event"] == "worker-restarted" for e in recorder.coord.events)

    assert _stopped_and_resumed(tmp_path, monkeypatch, RESTART, stop)["lost_workers"] == []
    _same_run_but_resumes(tmp_path / "a", tmp_path / "b")


def _same_run_but_resumes(a, b, but="resumed"):
    """Model, metrics (but the wall clock) and staleness.json alike, bit for bit, but ``b``'s ``but`` events."""
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _without_wall_clock(RunDir(a).metrics()) == _without_wall_clock(RunDir(b).metrics())
    sa, sb = RunDir(a).read_json("staleness.json"), RunDir(b).read_json("staleness.json")
    sb["events"] = _without(sb["events"], but)
    assert sa == sb


def test_restarts_may_be_set_on_the_simulator_with_a_worker_fault(capsys):
    """cluster.restarts is Ray's on the command line, but a worker cluster.faults loses restarts by it."""
    base = ["train", "--dry-run", "--config", "teacher-student", "--runner", "simulated", "--set", "cluster.restarts=1"]
    assert main(base) == 2 and "only the ray runner reads it" in capsys.readouterr().err
    assert main([*base, "--set", "cluster.faults=shard 0 at 10"]) == 2
    assert main([*base, "--set", "cluster.faults=worker 0 at 10"]) == 0


@pytest.mark.parametrize("restarts", ["0", "1"])
def test_a_sync_worker_lost_with_its_push_travelling_holds_its_round_until_it_lands(tmp_path, restarts):
    """Sync, worker 2 lost at step 10 with its push into round 3 still travelling: no survivor starts round 4 until it
    lands, and its replacement (cluster.restarts = 1) starts past round 3. (A gate letting worker 0 start round 4 at
    once would have its push into round 3, still open, rejected ("round"), its clock a round ahead of the shards' from
    then on.)"""
    summary = _sync_run(tmp_path / "r", "cluster.faults=['worker 2 at 10']", f"cluster.restarts={restarts}")
    assert summary["steps"] == 31 and summary["lost_workers"] == ([] if restarts == "1" else [2])
    staleness = RunDir(tmp_path / "r").read_json("staleness.json")
    assert staleness["rejected"] == {}
    assert [e["event"] for e in staleness["events"]][1:] == (["worker-restarted"] if restarts == "1" else [])


AGAIN = [*SETS, "cluster.faults=['worker 1 at 12', 'worker 1 at 30']", "cluster.restarts=2"]


def test_a_worker_lost_again_loses_its_replacement_once_it_has_rejoined(tmp_path):
    """'worker 1 at 12, worker 1 at 30' with cluster.restarts = 2: worker 1's replacement (rejoined at step 22) is lost
    at step 30 and restarted in turn, each loss's reason naming its item; the report's Faults line says both; the run
    repeats bit for bit and is not the run that lost worker 1 once (the second item is taken, not refused)."""
    summary, run = _run(tmp_path / "a", *AGAIN)
    assert summary["lost_workers"] == [] and summary["steps"] == 48
    events = _events(tmp_path / "a")
    assert [(e["event"], e["worker"], e["step"], e.get("reason", e.get("seed_step"))) for e in events] == [
        ("worker-lost", 1, 12, "cluster.faults 'worker 1 at 12'"), ("worker-restarted", 1, 22, 12),
        ("worker-lost", 1, 30, "cluster.faults 'worker 1 at 30'"), ("worker-restarted", 1, 30, 30)]
    assert html.unescape(cluster_faults(run)) == (
        "<p class=\"note\">Faults: worker 1 lost at step 12 (cluster.faults 'worker 1 at 12'), restarted at step 22; "
        "worker 1 lost at step 30 (cluster.faults 'worker 1 at 30'), restarted at step 30.</p>")
    _run(tmp_path / "b", *AGAIN)
    _same_run_but_resumes(tmp_path / "a", tmp_path / "b")
    _run(tmp_path / "once", *RESTART)
    assert (tmp_path / "once/model.safetensors").read_bytes() != (tmp_path / "a/model.safetensors").read_bytes()


def test_a_loss_before_the_replacement_rejoined_finds_no_worker_and_is_said_once(tmp_path):
    """'worker 1 at 13': worker 1 lost at step 12, its replacement waiting for its pushes to land until step 22: the
    item loses nothing, a fault-missed event naming it says so (once), and the run is the one without the item but
    that event."""
    _run(tmp_path / "r", *SETS, "cluster.faults=['worker 1 at 12', 'worker 1 at 13']", "cluster.restarts=2")
    events = _events(tmp_path / "r")
    assert [(e["event"], e["step"]) for e in events] == [("worker-lost", 12), ("fault-missed", 14),
                                                         ("worker-restarted", 22)]
    assert events[1]["reason"] == ("cluster.faults 'worker 1 at 13': worker 1 is lost already, its replacement has "
                                   "not rejoined yet")
    _run(tmp_path / "once", *RESTART, "cluster.restarts=2")
    _same_run_but_resumes(tmp_path / "once", tmp_path / "r", but="fault-missed")


@pytest.mark.parametrize("at", ["between", "after"])
def test_a_worker_lost_twice_resumes_as_the_uninterrupted_run(tmp_path, monkeypatch, at):
    """Stopped at a checkpoint between worker 1's two losses (its first replacement rejoined) or after the second
    (its second replacement rejoined at once: none of its pushes travelled): --resume goes on to the uninterrupted run
    bit for bit, each loss taken once."""
    def stop(recorder):
        kinds = [e["event"] for e in recorder.coord.events]
        return kinds.count("worker-lost") == kinds.count("worker-restarted") == (1 if at == "between" else 2)

    _stopped_and_resumed(tmp_path, monkeypatch, AGAIN, stop)
    _same_run_but_resumes(tmp_path / "a", tmp_path / "b")


def test_a_ctrl_c_while_the_replacement_waits_resumes_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """A SIGINT between two events while worker 1's replacement waits for the lost worker's pushes to land, past the
    last periodic checkpoint: the failure checkpoint (the whole state, the replacement still starting) and --resume
    go on to the uninterrupted run bit for bit, the worker restarted once."""
    _run(tmp_path / "a", *RESTART)
    event = simulated_module.SimulatedCluster._event

    def interrupted(self, on_push):
        event(self, on_push)
        if 1 in self._starting and self.coord.done >= 16 and not getattr(self, "_sent", False):
            self._sent = True
            os.kill(os.getpid(), signal.SIGINT)     # (held until the event ends, as a real Ctrl-C is)

    save_on_failure, unsaved = recorder_module.Recorder.save_on_failure, []

    def saving(self, err=None):
        unsaved.append(self._since_ckpt)        # pushes since the last periodic checkpoint: saved again
        save_on_failure(self, err)

    monkeypatch.setattr(simulated_module.SimulatedCluster, "_event", interrupted)
    monkeypatch.setattr(recorder_module.Recorder, "save_on_failure", saving)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", *RESTART)
    monkeypatch.undo()
    assert len(unsaved) == 1 and unsaved[0] > 0
    assert json.loads((tmp_path / "b/checkpoints/server.json").read_text())["sim"]["starting"] == {"1": 12}
    assert _run(tmp_path / "b", *RESTART, resume=True)[0]["lost_workers"] == []
    _same_run_but_resumes(tmp_path / "a", tmp_path / "b")


def test_a_worker_lost_again_for_good_is_said_once_not_its_restarted_loss(tmp_path, caplog):
    """cluster.restarts = 1, worker 1 lost at step 12 (restarted) and again at step 30 (not): the warning that the run
    went on without it names step 30 alone, and where every worker is lost the error names each one's last loss.
    (Not each loss of the worker, the restarted one too.)"""
    _run(tmp_path / "a", *SETS, "cluster.faults=['worker 1 at 12', 'worker 1 at 30']", "cluster.restarts=1")
    went_on = [r.getMessage() for r in caplog.records if "went on without it" in r.getMessage()]
    assert went_on == ["worker 1 was lost at step 30 (cluster.faults 'worker 1 at 30'); the run went on without it"]
    with pytest.raises(RunError, match=r"every worker was lost \(worker 1 at step 30: cluster.faults 'worker 1 at 30', "
                                       r"worker 0 at step 40: cluster.faults 'worker 0 at 40'\) after 40 of 48 steps"):
        _run(tmp_path / "b", *SETS, "cluster.workers=2", "cluster.restarts=1",
             "cluster.faults=['worker 1 at 8', 'worker 1 at 30', 'worker 0 at 40']")
