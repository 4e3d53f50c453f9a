"""Workers lost on a local Ray (2 CPUs), their actors killed mid-run: the run goes on without them or with their
replacements (pinned where they were), no push applied twice; a restart Ray cannot place, a worker dead in the
warm start, every worker lost."""
import threading

import pytest
from ray_kill import kill_when, run_killing
from ray_runs import run_cfg, shard_logs

from downpour.ps.checkpoint import load_server
from downpour.ps.cluster import run_cluster
from downpour.train.rundir import RunDir

ray = pytest.importorskip("ray")


def _killing_worker1(cfg, path, timeout, monkeypatch):
    """Run ``cfg`` into ``path`` in a thread, kill its worker 1 once step 40 is logged (training under way), the
    driver held still from there until the actor is gone (:func:`ray_kill.run_killing`'s ``dead``: the steps after the
    kill see its loss however slow Ray is to end it), and return the run's summary once it ended (within ``timeout``
    seconds)."""
    return run_killing(cfg, RunDir.create(path, cfg), 40, "-worker1", timeout, monkeypatch, dead=True)


def _survivors_wait_for_restarts(monkeypatch):
    """The driver grants no cycle while a replacement is coming up (up to 60 s): on a loaded machine
    an actor's start outlasted the survivors' 3,000 steps, and the restart was given up with no steps
    left for it. (That the survivors need not wait is test_a_restart_ray_cannot_place_....)"""
    from downpour.ps.cluster_on_ray import RayCluster

    real_dispatch = RayCluster._dispatch

    def dispatch(self, w):
        if self._starting:
            ray.wait(self.restart_refs(), num_returns=len(self._starting), timeout=60)
        real_dispatch(self, w)

    monkeypatch.setattr(RayCluster, "_dispatch", dispatch)


def _pinning_every_actor(monkeypatch):
    """The start's placer pins every actor to this (the only) node, as it does round-robin on a cluster of several;
    returns the node each worker actor is pinned to, spawned in order (None: left to Ray)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from downpour.ps import starting_on_ray
    from downpour.ps.connect_on_ray import pinned

    node, real, pins = ray.get_runtime_context().get_node_id(), starting_on_ray.WorkerActor, []
    monkeypatch.setattr(starting_on_ray, "placer", lambda nodes: lambda i, cpus: {
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)})

    class Spy:
        @staticmethod
        def options(**options):
            pins.append(pinned(options))
            return real.options(**options)

    monkeypatch.setattr(starting_on_ray, "WorkerActor", Spy)
    return pins


def _once_each_on_every_shard(out, path, events):
    """Each shard of the run in ``path`` applied each push once, as many as ``out`` says; worker 1's pushes applied
    after the last of ``events`` (one push per step, so versions count steps)."""
    after = []
    for rows in shard_logs(path):
        assert len({(w, seq) for w, seq, _, _ in rows}) == len(rows)   # no push applied twice
        assert len(rows) == out["applied"][0]
        after.append([seq for w, seq, _, applied in rows if w == 1 and applied >= events[-1]["step"]])
    return after


def test_a_killed_worker_does_not_end_the_run_and_no_push_is_applied_twice(tmp_path, local_ray, monkeypatch):
    """The end-to-end loss on a real Ray, no restarts: the survivor trains the run to its end, worker 1 is lost and
    not restarted. (Its restart: test_a_replacement_that_dies_coming_up_is_restarted_again, not a second case of this
    test, 4 actor starts more.)"""
    # Where worker 1 is when it is killed (how many cycles it had finished, how far the others got while its
    # replacement came up) is Ray's timing, so what it trained after is bounded, not counted; each restart decision,
    # with one outcome per scenario, is tests/test_ps_restarts_*.py's.
    pins = _pinning_every_actor(monkeypatch)
    # (two workers: one survivor shows the run goes on; two shards: each must apply the same pushes, once)
    # (160 steps, not 400: the driver holds at step 40 until worker 1 is gone, and 120 steps of the survivor follow)
    cfg = run_cfg("train.steps=160", "cluster.restarts=0")
    out = _killing_worker1(cfg, tmp_path / "k", 120, monkeypatch)
    assert pins == [ray.get_runtime_context().get_node_id()] * 2
    assert out["steps"] == 160 and out["lost_workers"] == [1]
    assert out["applied"] == out["accepted"]
    events = RunDir.open(tmp_path / "k").read_json("staleness.json")["events"]
    assert [e["event"] for e in events] == ["worker-lost", "not-restarted"] and all(e["worker"] == 1 for e in events)
    assert all(len(after) <= 2 for after in _once_each_on_every_shard(out, tmp_path / "k", events))
    # (only the cycles it had finished before it died: 2 queued)


def test_a_replacement_that_dies_coming_up_is_restarted_again(tmp_path, local_ray, monkeypatch):
    """A replacement actor that dies before its first answer does not give the worker up with restarts left (nothing
    in staleness.json saying so). Here the first replacement is killed as it is created; the second comes up, pinned
    where worker 1 was, and trains on, the run losing no worker and each of its two shards applying each push once.
    (The restart that comes up, its pins and the shards are checked in this run too, not in a case of the test above:
    4 actor starts fewer.)"""
    from downpour.ps.cluster_on_ray import RayCluster

    real_spawn = RayCluster._spawn

    def spawn(self, w, seq, step):
        actor = real_spawn(self, w, seq, step)
        if self._incarnation[w] == 2:          # the first replacement of any worker
            ray.kill(actor)
        return actor

    monkeypatch.setattr(RayCluster, "_spawn", spawn)
    _survivors_wait_for_restarts(monkeypatch)
    pins = _pinning_every_actor(monkeypatch)
    # (240 steps, not 600: the survivor waits for each restart, and the loss is seen at step 40, held there: the
    # second replacement has 200 steps to share with it, over 2 pushes however they fall)
    cfg = run_cfg("train.steps=240", "cluster.restarts=2")
    out = _killing_worker1(cfg, tmp_path / "r", 180, monkeypatch)
    # each replacement pinned where worker 1 was, its node alive: not left to Ray, pin dropped
    assert pins == [ray.get_runtime_context().get_node_id()] * 4
    assert out["steps"] == 240 and out["lost_workers"] == [] and out["applied"] == out["accepted"]
    events = RunDir.open(tmp_path / "r").read_json("staleness.json")["events"]
    assert [e["event"] for e in events] == ["worker-lost", "restart-failed", "worker-restarted"]
    assert all(e["worker"] == 1 for e in events) and events[1]["reason"] == "ActorDiedError"
    assert all(len(after) > 2 for after in _once_each_on_every_shard(out, tmp_path / "r", events))   # it trains on


def test_a_replacement_under_another_environment_is_added_to_environment_json(tmp_path, local_ray, monkeypatch):
    """environment.json is written at the start, from each actor's start_report, and a worker restarted mid-run is asked
    its start_report too (asked its node alone, a replacement on another machine or install goes unrecorded). Here the
    replacement's process runs with another MKL_CBWR (a runtime_env; MKL's kernels of another CPU, part of a record's
    platform): the run's record lists this node twice, the start's actors' record and the replacement's, the rest of it
    as it was."""
    import json
    import os

    from downpour.ps import starting_on_ray

    mkl = "AUTO" if os.environ.get("MKL_CBWR") == "COMPATIBLE" else "COMPATIBLE"
    real = starting_on_ray.WorkerActor

    class Spy:
        @staticmethod
        def options(**options):
            if "-restart" in options["name"]:
                options = {**options, "runtime_env": {"env_vars": {"MKL_CBWR": mkl}}}
            return real.options(**options)

    monkeypatch.setattr(starting_on_ray, "WorkerActor", Spy)
    _survivors_wait_for_restarts(monkeypatch)
    cfg = run_cfg("train.steps=240", "cluster.shards=1", "cluster.restarts=1")    # (240: as in the test above)
    out = _killing_worker1(cfg, tmp_path / "e", 180, monkeypatch)
    assert out["steps"] == 240 and out["lost_workers"] == []
    events = RunDir.open(tmp_path / "e").read_json("staleness.json")["events"]
    assert [e["event"] for e in events] == ["worker-lost", "worker-restarted"]
    record = json.loads((tmp_path / "e" / "environment.json").read_text())
    here = ray.get_runtime_context().get_node_id()
    address = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == here)
    assert record["nodes"] == {f"{address} (1 of 2)": {}, f"{address} (2 of 2)": {"MKL_CBWR": mkl}}
    assert record["step"] == 0 and "earlier" not in record


@pytest.mark.parametrize("extra", [(), ('cluster.compensation="dc-asgd"', "cluster.rule=sgd", "train.lr=0.01")],
                         ids=["channels", "tasks"])   # DC-ASGD sees every pull: the object store, Ray tasks per cycle
def test_a_restart_ray_cannot_place_does_not_hold_up_the_others(tmp_path, local_ray, monkeypatch, caplog, extra):
    """The driver does not wait for a restarted worker's actor to come up (up to RESTART_SECONDS) before it goes on,
    its survivors' pushes unread. Here Ray can never place the restart (it asks for 64 CPUs)
    and RESTART_SECONDS is beyond any test's patience: the survivors finish the run, and the restart
    is given up once no steps are left for it."""
    import logging

    from downpour.ps import restarts_on_ray
    from downpour.ps.cluster_on_ray import RayCluster

    monkeypatch.setattr(restarts_on_ray, "RESTART_SECONDS", 10 ** 6)
    real_start = RayCluster._start

    piped = []

    def start(self, shards, start_step):
        real_start(self, shards, start_step)
        self.per_worker = 64.0        # what every actor spawned from now on asks for
        piped.append(self.piped)

    monkeypatch.setattr(RayCluster, "_start", start)
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    # one survivor, one shard: enough (160 steps, not 400: the loss is seen at step 40, held there, and the restart
    # asked then; the survivor's 120 steps end the run with it unplaced)
    cfg = run_cfg("train.steps=160", "cluster.shards=1", "cluster.restarts=1", *extra)
    out = _killing_worker1(cfg, tmp_path / "n", 120, monkeypatch)
    assert out["steps"] == 160 and out["lost_workers"] == [1]
    assert "worker 1 could not be restarted (no steps left for it)" in caplog.text
    assert piped == [not extra]                  # each driving loop was tested
    events = RunDir.open(tmp_path / "n").read_json("staleness.json")["events"]
    assert [e["event"] for e in events] == ["worker-lost", "restart-given-up"]
    assert events[1]["worker"] == 1 and events[1]["reason"] == "no steps left for it"


def test_a_worker_that_dies_waiting_for_the_warm_start_is_lost_when_it_dies(tmp_path, local_ray, monkeypatch):
    """On the piped path a worker whose actor died while it waited for the warm start to end is lost when its serve
    task ends, before the warm start is over (not when it joins, step 100). Else its serve task's end is dropped (not
    live: "already handled"), and when it joins its first cycle is granted to the dead actor and awaited forever (the
    run hangs, worker 0 done with its steps)."""
    # (the driver held at step 20 until the killed actor is gone: unheld, worker 0 alone runs ~250 steps/s, and on a
    # loaded machine Ray took longer than 80 steps to end the killed actor's serve task, so the death was seen after
    # the join, a flaky 'joined' event, and the warm start had to be 500 steps; held, Ray knows it dead before
    # worker 0 goes on, and 180 steps are left to see it in before the join)
    cfg = run_cfg("train.steps=300", "cluster.shards=1", "cluster.warm_start=200")
    run = RunDir.create(tmp_path / "w", cfg)
    out = run_killing(cfg, run, 20, "-worker1", 120, monkeypatch, dead=True)      # worker 0 alone until step 200
    assert out["steps"] == 300 and out["lost_workers"] == [1]
    events = run.read_json("staleness.json")["events"]
    assert [(e["event"], e["worker"]) for e in events] == [("worker-lost", 1), ("not-restarted", 1)]
    assert 20 <= events[0]["step"] < 200 and events[0]["reason"] == "ActorDiedError while it waited for the warm start"


def test_a_worker_that_dies_waiting_for_a_warm_start_the_run_never_ends_is_lost(tmp_path, local_ray, monkeypatch):
    """cluster.warm_start past train.steps (run_cluster's callers; the CLI refuses it): workers 1 and 2 never join,
    and worker 1 is killed at step 20. Its serve task's end is its loss, at the step it died: [1]; worker 2, alive, is
    not lost. (Left for its join, which never comes, its death on the piped path would give lost_workers [], as on the
    task loop too (tests/test_ps_restarts_warm_start.py), or be found at the run's end, at its last step.)"""
    # (200 steps: the death must be seen before the run's end, and the driver holds at step 20 until the actor is
    # gone; see the test above for the race)
    cfg = run_cfg("train.steps=200", "cluster.shards=1", "cluster.workers=3", "cluster.warm_start=900")
    run = RunDir.create(tmp_path / "never", cfg)
    out = run_killing(cfg, run, 20, "-worker1", 120, monkeypatch, dead=True)
    assert out["steps"] == 200 and out["lost_workers"] == [1] == run.read_json("cluster.json")["lost_workers"]
    events = run.read_json("staleness.json")["events"]
    assert [(e["event"], e["worker"]) for e in events] == [("worker-lost", 1), ("not-restarted", 1)]
    assert 20 <= events[0]["step"] < 200
    assert events[0]["reason"] == "ActorDiedError while it waited for the warm start"


def test_losing_every_worker_is_an_error_that_keeps_what_was_done(tmp_path, local_ray):
    """The run stops with the error; the server checkpoint and the model of the work before the loss are kept, and
    `downpour report RUN` on the folder opens its training section with where the run stopped, as cluster.json says
    it (analysis at settings that cost seconds: its own tests are elsewhere)."""
    import html

    from downpour.cli import main
    from downpour.errors import RunError

    fast = ["analysis.splits=1", "analysis.probes=[]", "analysis.stimulus_steps=5", "analysis.stimulus_restarts=1",
            "analysis.bootstrap=200", "analysis.control_draws=1", "analysis.random_filters=50"]
    # bounded, should the kill miss: ~30 s
    cfg = run_cfg("train.steps=3000", "cluster.workers=1", "cluster.shards=1", *fast)
    run = RunDir.create(tmp_path / "all", cfg)
    out = {}
    earlier = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}

    def train():
        try:
            run_cluster(cfg, run)
        except RunError as err:
            out["error"] = str(err)

    thread = threading.Thread(target=train)
    thread.start()
    victim = kill_when(run, 20, "-worker0", earlier)
    thread.join(timeout=120)
    assert victim is not None and not thread.is_alive()
    assert "every worker was lost" in out["error"] and "worker 0" in out["error"]
    done = RunDir.open(tmp_path / "all")
    states, meta = load_server(done.path / "checkpoints/server")
    assert meta["step"] >= 20 and states[0][1]["version"] >= 20    # the work before the loss is kept
    done.load_model()
    stopped = done.read_json("cluster.json")["stopped"]
    assert stopped["steps"] == 3000 and stopped["by"] == "every worker was lost" and stopped["step"] >= 20
    assert main(["report", str(done.path)]) == 0
    training = html.unescape((done.path / "report.html").read_text()).split('<h2 id="training">Training curves</h2>')
    assert training[1].lstrip().startswith(
        f'<p class="note">Stopped after step {stopped["step"]} of 3000: every worker was lost.</p>')


def test_a_restarted_worker_is_placed_where_its_new_actor_is(local_ray):
    """cluster.json's placement and worker_devices named the first actor's node and device to the end of a run
    whose worker Ray restarted elsewhere (or on another GPU)."""
    from downpour.ps.restarts_on_ray import Restarts

    @ray.remote(num_cpus=0)
    class Moved:
        def node(self):
            return "node-b"

        def start_report(self):
            return {"node": "node-b", "environment": {}}

        def device(self):
            return {"device": "cuda:1", "gpus": ["1"]}

    restarts = Restarts()
    actor = Moved.remote()                        # (the worker and its one partition: one actor, each its own process)
    restarts.worker_actors, restarts.partition_actors = ["w0", actor], {1: [actor]}
    restarts.placement = {"shards": ["node-a"], "workers": ["node-a", "node-a"], "partitions": ["node-a", "node-a"]}
    restarts.devices = [{"device": "cpu", "gpus": []}] * 2
    assert restarts._place(1, ray.get(actor.node.remote())) == [{"node": "node-b", "environment": {}}]   # its part's
    assert restarts.placement == {"shards": ["node-a"], "workers": ["node-a", "node-b"],
                                  "partitions": ["node-a", "node-b"]}
    assert restarts.devices == [{"device": "cpu", "gpus": []}, {"device": "cuda:1", "gpus": ["1"]}]
