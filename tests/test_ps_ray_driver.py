"""The Ray driver's bookkeeping around lost workers and checkpoints, with its actors stood in for (no Ray
started): a restart under sync, the restart budget, a worker dead after its last push, the step a
checkpoint holds while push answers are still out."""
from types import SimpleNamespace
from typing import Any

import pytest
import ray
import torch
from ray_room import A_NODE, Hog, two_nodes_one_full, workers_start_within
from scripted_ray import HandedCluster

import downpour.ps.asking_on_ray as asking_module
import downpour.ps.cluster_on_ray as driver_module
import downpour.ps.restarts_on_ray as restarts_module
from downpour.ps.cluster_on_ray import RayCluster
from downpour.ps.coordinator import restarts_left
from downpour.ps.consistency import make_consistency
from downpour.ps.coordinator import Coordinator
from downpour.ps.recorder import ShardLost
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard


class FakeRay:
    """What the driver calls of ``ray``: ``get`` (values pass through; an exception is raised), ``kill``, ``nodes``."""

    exceptions = ray.exceptions

    def __init__(self) -> None:
        self.killed: list[Any] = []
        self.node_list: list[dict[str, Any]] = []   # what ``nodes`` answers

    def nodes(self) -> list[dict[str, Any]]:
        return self.node_list

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        values = [r.value if isinstance(r, Ref) else r for r in (refs if isinstance(refs, list) else [refs])]
        for v in values:
            if isinstance(v, BaseException):
                raise v
        return values if isinstance(refs, list) else values[0]

    def kill(self, actor: Any) -> None:
        self.killed.append(actor)

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None) -> tuple[list[Any], list[Any]]:
        """Every stood-in future is ready (an actor's answer is its value)."""
        return refs[:num_returns], refs[num_returns:]


class Ref:
    """A stood-in future: hashable, as Ray's ObjectRef is (the driver keeps sets of them), whatever its value."""

    def __init__(self, value: Any) -> None:
        self.value = value


class FakeActor:
    """``actor.method.remote(*args)`` answers a :class:`Ref` of ``answers[method](*args)`` (a value, or an
    exception ``ray.get`` raises)."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers

    def __getattr__(self, method: str) -> Any:
        answer = self.answers.get(method, lambda *a: None)
        return type("Method", (), {"remote": staticmethod(lambda *args: Ref(answer(*args)))})()


def _driver(coord: Coordinator, shard_actors: list[Any], workers: list[Any], restarts: int = 0) -> RayCluster:
    """The driver's own state on stand-in actors, built by its real constructor (no Ray: scripted_ray.HandedCluster)."""
    return HandedCluster(coord, shard_actors, workers, restarts)


@pytest.fixture
def fake_ray(monkeypatch):
    fake = FakeRay()
    monkeypatch.setattr(driver_module, "ray", fake)
    monkeypatch.setattr(asking_module, "ray", fake)
    monkeypatch.setattr(restarts_module, "ray", fake)
    return fake


def _cycle(coord: Coordinator, shard: Shard, w: int, seq: int) -> None:
    assert coord.begin_cycle(w) == 1
    coord.end_compute(w)
    assert shard.push(w, torch.ones(4), shard.version, seq).accepted
    coord.end_cycle(w, 1)


def test_a_worker_lost_mid_round_under_sync_lets_the_round_close_before_it_rejoins(fake_ray, monkeypatch):
    """Workers 0 and 2 pushed round 1, worker 1 died before it did: restarted level with them, their next
    pushes went into the still open round 1 and were refused (2 steps counted, never applied)."""
    coord = Coordinator(make_consistency("sync"), workers=3, total_steps=100)
    shard = Shard(0, torch.zeros(4), make_rule("sgd", 0.1), workers=coord.live, sync=True)
    old = FakeActor()
    d = _driver(coord, [FakeActor(set_workers=shard.set_workers)], [FakeActor(), old, FakeActor()], restarts=1)
    monkeypatch.setattr(d, "_spawn", lambda w, seq, step: FakeActor(node=lambda: "n"))
    monkeypatch.setattr(d, "_dispatch", lambda w: None)
    for w in range(3):
        _cycle(coord, shard, w, 0)                    # round 0
    _cycle(coord, shard, 0, 1)
    _cycle(coord, shard, 2, 1)                        # round 1: worker 1 owes its push
    coord.begin_cycle(1)
    d._lost(1, RuntimeError("ActorDiedError"))
    assert shard.version == 2                         # round 1 closed on workers 0 and 2
    assert old in fake_ray.killed and coord.live == {0, 1, 2}
    for w in range(3):
        _cycle(coord, shard, w, 2 if w != 1 else 1)   # round 2, the restarted worker in it
    assert shard.version == 3 and not shard.rejected


def test_a_restart_still_coming_up_when_every_step_is_handed_out_trains_what_a_later_loss_gives_back(fake_ray,
                                                                                                      monkeypatch):
    """A restart was given up as soon as every step was handed out; when the last survivor then died with a step
    in flight, the run ended "every worker was lost" one step short, its restart budget spent on nothing."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=4)
    d = _driver(coord, [FakeActor()], [FakeActor(), FakeActor()], restarts=1)
    monkeypatch.setattr(d, "_spawn", lambda w, seq, step: FakeActor(node=lambda: "node-b"))
    monkeypatch.setattr(d, "_dispatch", lambda w: None)
    held = ["node-b"]                    # the replacement's first answer: not come yet
    monkeypatch.setattr(fake_ray, "wait", lambda refs, num_returns=1, timeout=None:
                        ([r for r in refs if r.value not in held], [r for r in refs if r.value in held]))
    assert coord.begin_cycle(0) == coord.begin_cycle(1) == 1            # steps 0 and 1
    d._lost(1, RuntimeError("ActorDiedError"))                          # step 1 handed back; worker 1 restarting
    for step in (0, 1, 2):                                              # worker 0 trains 0, then 1 and 2
        coord.end_compute(0)
        coord.end_cycle(0, 1)
        assert coord.begin_cycle(0) == 1 and coord.first_step(0) == step + 1
    assert coord.handed_out
    d.poll_restarts()
    assert 1 in d._starting                                             # (it was given up here)
    d._lost(0, RuntimeError("ActorDiedError"))                          # step 3 handed back; no restart left
    assert coord.live == set() and coord.returned == [(3, 1)] and d.restart_timeout() > 0
    held.clear()
    d.poll_restarts()                                                   # the replacement answers: it rejoins
    assert coord.live == {1} and coord.begin_cycle(1) == 1 and coord.first_step(1) == 3
    coord.end_compute(1)
    coord.end_cycle(1, 1)
    assert coord.done == 4 and coord.lost == [0]


def test_a_worker_lost_with_nothing_left_to_hand_out_is_not_restarted_and_a_later_loss_restarts_its_own(fake_ray,
                                                                                                       monkeypatch):
    """A worker lost once every step is handed out, with no cycle of its own uncomputed, is not restarted: nothing
    is left for it. A later loss that hands steps back restarts its own worker then (the loss puts them back
    before the restart is asked), so those steps are trained and the shared budget is spent once, on the restart
    that had steps to train; the run does not end short of them or with every worker lost."""
    coord = Coordinator(make_consistency("async"), workers=3, total_steps=4)
    d = _driver(coord, [FakeActor()], [FakeActor(), FakeActor(), FakeActor()], restarts=1)
    monkeypatch.setattr(d, "_spawn", lambda w, seq, step: FakeActor(node=lambda: "node-b"))
    monkeypatch.setattr(d, "_dispatch", lambda w: None)

    def train(w, first):
        assert coord.first_step(w) == first
        coord.end_compute(w)
        coord.end_cycle(w, 1)

    assert coord.begin_cycle(2) == 1
    train(2, 0)                                                          # worker 2 trains step 0
    assert coord.begin_cycle(0) == coord.begin_cycle(1) == 1             # steps 1 and 2
    train(0, 1)
    assert coord.begin_cycle(0) == 1 and coord.handed_out               # step 3: every step handed out
    d._lost(2, RuntimeError("ActorDiedError"))                           # nothing of its own uncomputed
    assert d.restarts == 1 and not d._starting and coord.lost == [2] and coord.handed_out
    d._lost(1, RuntimeError("ActorDiedError"))                           # step 2 handed back: restarted
    assert d.restarts == 0 and coord.live == {0, 1} and coord.lost == [2]      # (up at once: it rejoined)
    d._lost(0, RuntimeError("ActorDiedError"))                           # step 3 handed back; no restart left
    assert coord.live == {1} and coord.returned == [(2, 1), (3, 1)]
    for step in (2, 3):                                                  # the replacement trains both
        assert coord.begin_cycle(1) == 1
        train(1, step)
    assert coord.done == 4 and coord.lost == [2, 0]
    assert [(e["event"], e["worker"]) for e in coord.events] == [
        ("worker-lost", 2), ("not-restarted", 2), ("worker-lost", 1), ("worker-restarted", 1), ("worker-lost", 0),
        ("not-restarted", 0)]
    assert [e["reason"] for e in coord.events if e["event"] == "not-restarted"] == ["no steps left for it",
                                                                                   "cluster.restarts spent"]


def test_a_lost_workers_partition_actors_go_with_it(fake_ray, monkeypatch):
    """Model parallelism: a worker lost and not restarted left its partition actors (its filters'
    memory) alive until the run ended."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    d = _driver(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()])
    parts = [FakeActor(), FakeActor()]
    d.partition_actors = {0: [FakeActor()], 1: parts}
    monkeypatch.setattr(d, "_dispatch", lambda w: None)
    coord.begin_cycle(1)
    d._lost(1, RuntimeError("ActorDiedError"))
    assert all(p in fake_ray.killed for p in parts) and list(d.partition_actors) == [0]


def test_the_stand_in_driver_has_a_field_the_driver_gains_without_being_mended(monkeypatch):
    """The stand-in driver was object.__new__ with its fields set by hand: each field the driver gained (``_seeded_at``,
    ``silence``, ``devices`` ...) broke these tests with an AttributeError until the stub learned it too."""
    init = RayCluster.__init__

    def gains_a_field(self, *args, **kwargs):
        self.gained = {"set": "in the constructor"}
        init(self, *args, **kwargs)

    monkeypatch.setattr(RayCluster, "__init__", gains_a_field)
    d = _driver(Coordinator(make_consistency("async"), workers=2, total_steps=10), [FakeActor()], [FakeActor()] * 2)
    assert d.gained == {"set": "in the constructor"} and len(d.worker_actors) == 2 and d.restarts == 0


def test_the_restart_budget_counts_the_restarts_of_the_whole_run():
    events = [{"event": "worker-lost"}, {"event": "worker-restarted"}, {"event": "joined"}]
    assert restarts_left(1, events) == 0 and restarts_left(3, events) == 2 and restarts_left(2, []) == 2
    # a replacement that died coming up used one too
    assert restarts_left(3, [*events, {"event": "worker-lost"}, {"event": "restart-failed"}]) == 1


def test_a_worker_dead_after_its_last_push_is_a_loss_not_a_failed_run(fake_ray):
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=10)
    dead = FakeActor(data_report=lambda: ray.exceptions.ActorDiedError(), profile=lambda: {})
    d = _driver(coord, [FakeActor(profile=lambda: {"shard": 0})], [FakeActor(data_report=lambda: {"samples": 5},
                                                                              profile=lambda: {}), dead])
    info = d.info()
    assert info["data_workers"] == [{"samples": 5}] and coord.lost == [1]


def test_the_model_file_keeps_the_buffers_of_the_first_worker_alive_at_the_end(fake_ray):
    """Worker 0 found dead at the run's end is lost there: worker 1, now the first live one, gives the buffers (an
    RBM's chains), as the simulator's first live worker does (only worker 0 was asked: none, the driver's zeros)."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=10)
    dead = FakeActor(data_report=lambda: ray.exceptions.ActorDiedError(), profile=lambda: {},
                     buffers=lambda: ray.exceptions.ActorDiedError())
    alive = FakeActor(data_report=lambda: {"samples": 5}, profile=lambda: {}, buffers=lambda: {"chains_h": torch.ones(2)})
    info = _driver(coord, [FakeActor(profile=lambda: {"shard": 0})], [dead, alive]).info()
    assert coord.lost == [0] and torch.equal(info["model_buffers"]["chains_h"], torch.ones(2))


def test_the_summary_and_a_lost_shard_name_each_node_by_its_id_and_address(fake_ray):
    """cluster.json's placement numbers index node_ids and node_addresses, and a lost shard's message names the node
    it ran on (until 2026-12-06 neither: over two machines nothing said which held worker 1, or the lost shard)."""
    a, b = "a" * 56, "b" * 56
    fake_ray.node_list = [{"NodeID": b, "NodeManagerAddress": "10.0.0.2"},
                          {"NodeID": a, "NodeManagerAddress": "10.0.0.1"}]
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=10)
    lost = FakeActor(node=lambda: ray.exceptions.RayError("gone"), profile=lambda: {})
    d = _driver(coord, [FakeActor(node=lambda: a, profile=lambda: {}), lost],
                [FakeActor(data_report=lambda: {}, profile=lambda: {}) for _ in range(2)])
    d.placement = {"shards": [a, b], "workers": [b, a]}
    info = d.info()
    assert info["placement"] == {"shards": [0, 1], "workers": [1, 0]}
    assert info["node_ids"] == [a, b] and info["node_addresses"] == ["10.0.0.1", "10.0.0.2"]
    d.addresses = {a: "10.0.0.1", b: "10.0.0.2"}     # (read at the start, when every actor was up)
    fake_ray.node_list = []                          # (Ray knows neither now: the loss reads the start's)
    with pytest.raises(ShardLost, match=r"^shard 1 lost at step 0 on node bbbbbbbb at 10\.0\.0\.2 \(RuntimeError\)$") \
            as lost:
        d._shard_lost(RuntimeError("its node is gone"))
    # where the lost go's actors were (its shard event keeps it: cluster.json's shard_events)
    assert lost.value.placed == {"nodes": 2, "placement": {"shards": [0, 1], "workers": [1, 0]}, "node_ids": [a, b],
                                 "node_addresses": ["10.0.0.1", "10.0.0.2"], "lost_shards": [1]}


def test_a_lost_workers_event_log_line_and_stop_name_its_node_as_a_lost_shards_message_does(fake_ray, caplog):
    """Until 2026-12-06 a lost worker's words named no node ("worker 1 was lost at step 0 (RuntimeError); the run
    went on without it") where a lost shard's named its own."""
    from downpour.ps.cluster import _loss_reasons

    a, b = "a" * 56, "b" * 56
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=10)
    d = _driver(coord, [FakeActor()], [FakeActor(), FakeActor()])
    d.placement, d.addresses = {"shards": [a], "workers": [a, b]}, {a: "10.0.0.1", b: "10.0.0.2"}
    with caplog.at_level("WARNING"):
        d._lost(1, RuntimeError("its node is gone"))
    assert coord.events[0]["where"] == "node bbbbbbbb at 10.0.0.2"
    assert "worker 1 lost at step 0 on node bbbbbbbb at 10.0.0.2: RuntimeError" in caplog.text
    assert _loss_reasons(coord) == ["worker 1 at step 0 on node bbbbbbbb at 10.0.0.2: RuntimeError"]


def test_a_checkpoint_counts_the_pushes_the_shards_applied_before_the_driver_read_their_answers():
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    for w in (0, 1):
        coord.begin_cycle(w)
        coord.end_compute(w)
        coord.end_cycle(w, 1)
    d = _driver(coord, [], [FakeActor(), FakeActor()])
    d._pending, d._pushes = {"ref": ("push", 1), "cycle": ("cycle", 0)}, {"ref": ([None], {"steps": 3})}
    meta, tensors = d.state()
    assert meta == {"step": 5, "clocks": {"0": 1, "1": 2}, "dispatched": 2, "unapplied": []} and tensors == {}


def test_a_resumed_checkpoint_hands_out_again_the_steps_in_flight_at_the_stop_and_each_stage_gets_its_share():
    """A Ray checkpoint kept only the step count: the resume handed out new indices from it. Greedy, 60 steps
    (stage 2 from index 30), 4 steps a push: the cycle of steps 28-31 (two of each stage) landed before that of
    24-27, and the run stopped there. The resume trained 28-31 again and 24-27 never: stage 1 got 28 steps, stage
    2 got 32. Now the checkpoint keeps the ranges not applied, and the resumed driver hands them out first."""
    from functools import partial

    from downpour.train.setup import stage_for_step

    stage_of = partial(stage_for_step, total=60, n_stages=2, schedule="greedy")
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=60, n_push=4, depth=2, stage_of=stage_of)
    trained = []

    def cycle(c, w):
        first, k = c.first_step(w), c.end_compute(w)
        trained.extend(range(first, first + k))
        c.end_cycle(w, k)

    for _ in range(6):                                          # steps 0-23
        assert coord.begin_cycle(0) == 4
        cycle(coord, 0)
    assert coord.begin_cycle(0) == coord.begin_cycle(1) == 4    # 24-27 at worker 0, 28-31 at worker 1
    cycle(coord, 1)                                             # 28-31 lands first; the run stops
    meta, _ = _driver(coord, [], [FakeActor(), FakeActor()]).state()
    assert meta["step"] == 28

    resumed = Coordinator(make_consistency("async"), workers=2, total_steps=60, n_push=4, start_step=28,
                          stage_of=stage_of)
    resumed.restore_unapplied(meta, "checkpoints/server.json")      # as _run_once does, resuming on Ray
    while not resumed.finished:
        assert resumed.begin_cycle(0) == 4
        cycle(resumed, 0)
    assert sorted(trained) == list(range(60))                  # each step once
    assert [stage_of(i) for i in trained].count(1) == 30

    old = Coordinator(make_consistency("async"), workers=2, total_steps=60, start_step=28)
    old.restore_unapplied({"step": 28, "clocks": {}}, "server.json")     # a checkpoint from before 2026-12-04: its step
    assert (old.dispatched, old.returned, old.begin_cycle(0), old.first_step(0)) == (28, [], 1, 28)


def test_a_push_the_stop_cut_before_the_shards_applied_it_is_handed_out_again_and_the_resume_finishes():
    """A Ray checkpoint listed as unapplied the ranges given back and those of cycles not pushed yet, but not a push
    sent (end_compute) that the shards never applied: a Ctrl-C between the two (the driver's window before its held
    block) lost its steps. The resume ended one push short of train.steps and never counted as finished: each rerun
    resumed at its last step (cross-fit, 300 steps on Ray, stopped at step 176: dispatched 300, 299 applied). A push
    the shards did apply, its answers unread (in the snapshot, counted in its step), is not handed out again."""
    coord = Coordinator(make_consistency("async"), workers=3, total_steps=12, n_push=2, depth=2)
    trained: list[int] = []

    def cycle(c: Coordinator, w: int) -> None:
        first, k = c.first_step(w), c.end_compute(w)
        trained.extend(range(first, first + k))
        c.end_cycle(w, k)

    for w in (0, 1, 2):
        assert coord.begin_cycle(w) == 2                        # steps 0-1, 2-3, 4-5
    cycle(coord, 0)
    assert coord.begin_cycle(0) == 2                            # 6-7, still computing at the stop
    coord.end_compute(1)                                        # 2-3 sent; the stop cuts it before the shards
    coord.end_compute(2)                                        # 4-5 applied by the shards, their answers unread
    trained.extend(range(4, 6))
    d = _driver(coord, [], [FakeActor(), FakeActor(), FakeActor()])
    d._pending, d._pushes = {"ref": ("push", 2)}, {"ref": ([None], {"steps": 2})}
    meta, _ = d.state()
    assert (meta["step"], meta["dispatched"], meta["unapplied"]) == (4, 8, [[2, 2], [6, 2]])

    resumed = Coordinator(make_consistency("async"), workers=3, total_steps=12, n_push=2, start_step=meta["step"])
    resumed.restore_unapplied(meta, "checkpoints/server.json")      # as _run_once does, resuming on Ray
    while resumed.begin_cycle(0):
        cycle(resumed, 0)
    assert resumed.finished and sorted(trained) == list(range(12))   # each step once, the run done


def test_a_checkpoint_that_lost_a_push_before_the_fix_hands_out_the_last_steps_again_and_finishes(caplog, tmp_path):
    """A checkpoint written by that stop before 2026-12-06 counts the lost push as handed out and keeps no range of
    it (cross-fit fold-0 of 300 steps: step 299, dispatched 300, unapplied []): every resume trained nothing, the run
    never finished. Now the count missing is handed out again, the highest indices not in flight, and it finishes."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=300, start_step=299)
    coord.restore_unapplied({"step": 299, "dispatched": 300, "unapplied": []}, tmp_path / "checkpoints/server.json")
    assert coord.begin_cycle(0) == 1                            # (it was 0: nothing left to hand out)
    assert (coord.first_step(0), coord.handed_out) == (299, True)
    coord.end_cycle(0, coord.end_compute(0))
    assert coord.finished
    assert (f"checkpoint file {str(tmp_path / 'checkpoints/server.json')!r} counts 1 step handed out ('dispatched': "
            "300) that was neither applied ('step': 299) nor kept to hand out again ('unapplied')") in caplog.text
    assert "step index 299 is handed out again in its place" in caplog.text
    stopped = Coordinator(make_consistency("async"), workers=2, total_steps=300, start_step=172)
    # 2 applied, 2 kept, 2 lost
    stopped.restore_unapplied({"dispatched": 176, "unapplied": [[171, 1], [175, 1]]}, "server.json")
    assert stopped.returned == [(171, 1), (173, 1), (174, 1), (175, 1)]


@pytest.mark.parametrize("damaged", [{"dispatched": 32, "unapplied": [[24]]}, {"dispatched": "32", "unapplied": []},
                                     {"unapplied": [[24, 4]]}, {"dispatched": 28, "unapplied": [[24, 8]]},
                                     {"dispatched": 32, "unapplied": [[24, -4]]}])
def test_a_damaged_unapplied_range_in_a_ray_checkpoint_is_a_checkpoint_error(tmp_path, damaged):
    """A hand-damaged 'unapplied' or 'dispatched' in server.json was a bare ValueError, TypeError or KeyError from
    the resumed driver (`downpour train --resume` printed a traceback), or, a range past the steps handed out or of
    no steps, taken: a range handed out again that was applied trains its steps twice. Now a CheckpointError
    naming the file, as every other damaged key of it is."""
    from downpour.errors import CheckpointError
    from downpour.ps.checkpoint import restoring

    coord = Coordinator(make_consistency("async"), workers=2, total_steps=60, n_push=4, start_step=28)
    with pytest.raises(CheckpointError, match=r"checkpoints/server\.json"):
        with restoring(tmp_path / "checkpoints/server"):        # as _run_once restores it, resuming on Ray
            coord.restore_unapplied({"step": 28, "clocks": {}, **damaged}, tmp_path / "checkpoints/server.json")
    assert (coord.dispatched, coord.returned) == (28, [])       # nothing taken from it


def test_waiting_for_room_on_the_cluster_is_said(local_ray, caplog):
    """An actor Ray had no room for (a full cluster, one still adding nodes) held the run silent before
    its first step; the wait is now said, with what it waits for and the CPUs free."""
    import threading

    from downpour.ps.connect_on_ray import gathered

    hog = Hog.remote()
    ray.get(hog.ping.remote())                                   # every CPU taken
    late = Hog.remote()                                          # no room for it until the hog goes
    threading.Timer(1.5, lambda: ray.kill(hog)).start()
    with caplog.at_level("WARNING", logger="downpour.ps.connect_on_ray"):
        assert gathered([late.ping.remote()], "test actors", 60.0, {"CPU": 2.0}, every=0.5) == [1]
    assert "still waiting for Ray to start 1 of 1 test actors after" in caplog.text
    assert "(each asks CPU 2; the cluster has CPU 0 of 2 free): it has no room for them yet" in caplog.text
    ray.kill(late)


def test_the_wait_for_room_names_the_room_on_the_node_each_actor_was_pinned_to(monkeypatch, caplog):
    """The warning every minute of a start named the cluster's CPUs summed over its nodes ("4 of its 8 CPUs free")
    for actors pinned to a full node; now it names each pinned node's room, as the no-room failure does. (Stand-in
    two-node Ray.)"""
    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    two_nodes_one_full(monkeypatch)
    with caplog.at_level("WARNING", logger="downpour.ps.connect_on_ray"), pytest.raises(RunError):
        connect_on_ray.gathered(["w0", "w1", "w2"], "worker actors", 2.0, {"CPU": 1.0}, every=1.0,
                                pins=[A_NODE, A_NODE, None])
    assert ("still waiting for Ray to start 3 of 3 worker actors after 1 s (each asks CPU 1; 2 pinned to node "
            "aaaaaaaa, which has CPU 0 of 4 free; the others: the cluster has CPU 4 of 8 free (summed over its 2 nodes: "
            "an actor needs what it asks on one)): it has no room for them yet") in caplog.text


def test_a_start_ray_has_no_room_for_fails_after_the_limit_naming_the_room_asked_and_free(local_ray, tmp_path,
                                                                                          monkeypatch):
    """Every CPU held by another job's actor: the workers (1 CPU each) cannot be placed. Until 2026-12-05 the start
    waited for them for good, a warning a minute; now it fails after the start's limit (cluster.silent_seconds, at
    least FIRST_FLOOR: 5 s here, the run's), saying what each worker asks and what the cluster has free, and
    leaves no actor of the run behind."""
    import time

    from downpour.config import load_config
    from downpour.errors import RunError
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    workers_start_within(monkeypatch, driver_module, 4.0)
    hog = Hog.remote()
    ray.get(hog.ping.remote())                                   # every CPU taken
    cfg = load_config("ufldl-sae", ["cluster.runner=ray", "data.samples=64", "train.batch_size=8", "train.steps=12",
                                    "cluster.workers=2", "cluster.shards=1", "train.tensorboard=false",
                                    "cluster.silent_seconds=5"])
    before = set(ray.util.list_named_actors())
    try:
        with pytest.raises(RunError, match=r"could not start 2 of 2 worker actors within 5 s: each asks CPU 1; "
                                           r"the cluster has CPU 0 of 2 free") as err:
            run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
        # the run's actors (downpour-<run>-shard0, -worker0, ...) killed, though ``err`` holds the driver. (It asked
        # for the CPUs back once the hog went, which held without the start's close() too: the dropped handles killed
        # the actors; tried 2026-12-05)
        for _ in range(100):
            if not set(ray.util.list_named_actors()) - before:
                break
            time.sleep(0.1)
        assert sorted(set(ray.util.list_named_actors()) - before) == [], err.value
    finally:
        ray.kill(hog)


def test_partition_actors_ray_never_starts_fail_the_start_after_its_limit(local_ray, tmp_path, monkeypatch):
    """Model parallelism: the partition actors (0 CPUs, pinned to a node) answer after the worker actors, whose start
    does not wait for them; until 2026-12-05 a plain ray.get waited for their first answers for good. Now the start's
    limit (4 s here) holds for them too. (Stand-in for an actor Ray never starts: one asking a resource no node
    has.)"""
    from downpour.config import load_config
    from downpour.errors import RunError
    from downpour.ps import partitions_on_ray
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    real = partitions_on_ray.PartitionActor
    monkeypatch.setattr(partitions_on_ray, "PartitionActor",
                        SimpleNamespace(options=lambda **kw: real.options(resources={"nowhere": 1.0}, **kw)))
    workers_start_within(monkeypatch, driver_module, 4.0, "partition actors")
    cfg = load_config("cat-untied", ["cluster.runner=ray", "data.samples=32", "train.batch_size=8", "train.steps=4",
                                     "cluster.workers=1", "cluster.shards=2", "cluster.partitions=2",
                                     "train.tensorboard=false"])
    with pytest.raises(RunError, match=r"could not start 2 of 2 partition actors within 4 s: each asks no CPU"):
        run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))


def test_a_start_on_several_nodes_names_the_room_on_the_node_each_actor_was_pinned_to(monkeypatch):
    """Two nodes of 4 CPUs, another job's actors on all of node a's: worker actors pinned to node a (the placer pins
    a CPU worker round-robin, hard) cannot start while node b has 4 free. The line read "the cluster has CPU 4 of 8
    free", a contradiction: free room summed over the nodes. Now it names the room of the node they were pinned to,
    and says the sum is one for those Ray places itself. (Stand-in Ray: one machine has one node.)"""
    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    two_nodes_one_full(monkeypatch)
    with pytest.raises(RunError, match=r"could not start 3 of 3 worker actors within 1 s: each asks CPU 1; 2 pinned "
                                       r"to node aaaaaaaa, which has CPU 0 of 4 free; the others: the cluster has CPU "
                                       r"4 of 8 free \(summed over its 2 nodes: an actor needs what it asks on one\)"):
        connect_on_ray.gathered(["w0", "w1", "w2"], "worker actors", 1.0, {"CPU": 1.0}, pins=[A_NODE, A_NODE, None])


def test_a_checkpoint_that_fails_on_the_way_out_says_in_one_line_where_the_resume_goes_on(tmp_path, caplog):
    """A shard lost for good (cluster.shard_restarts spent) fails the checkpoint on the way out: the warning ran
    Ray's five-line ActorDiedError into the log and did not say the last checkpoint was still there."""
    from downpour.config import load_config
    from downpour.ps.cluster import run_cluster
    from downpour.ps.recorder import Recorder
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae", ["cluster.runner=simulated", "data.samples=64", "train.batch_size=8",
                                    "train.steps=12", "cluster.workers=2", "train.tensorboard=false"])
    run = RunDir.create(tmp_path / "r", cfg)
    run_cluster(cfg, run)                          # its last checkpoint: step 12
    rec = object.__new__(Recorder)
    rec.run, rec._saved_on_failure, rec._whole = run, False, False     # a Ray driver: no whole state on disk
    rec.coord = Coordinator(make_consistency("async"), 2, 40, start_step=17)

    def settle(on_push):
        raise ray.exceptions.RayError("The actor died unexpectedly before finishing this task.\n\tclass_name: Shard\n"
                                      "\tactor_id: 1234\nThe actor is dead because its worker process has died.")

    rec.driver, rec.on_push = type("Driver", (), {"settle": staticmethod(settle)})(), None
    with caplog.at_level("WARNING", logger="downpour.ps.recorder"):
        rec.save_on_failure()
    assert caplog.messages == [f"stopped at step 17; could not checkpoint the server (RayError: The actor died "
                               f"unexpectedly before finishing this task.); --resume {run.path} goes on from the "
                               f"last checkpoint, at step 12"]


def test_actors_that_ask_no_resource_are_not_told_to_ask_for_less(monkeypatch):
    """Shard and partition actors ask no CPU (0), so no fewer of them makes room; the no-room line told them to 'ask for
    less (cluster.workers)', a key that does not count shards at all. Now it says so only to actors that ask
    something. (Stand-in two-node Ray: a shard pinned to the full node.)"""
    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    two_nodes_one_full(monkeypatch)
    with pytest.raises(RunError, match=r"could not start 1 of 1 shard actors within 1 s: each asks no CPU") as err:
        connect_on_ray.gathered(["s0"], "shard actors", 1.0, pins=[A_NODE])
    assert "ask for less" not in str(err.value), err.value
    assert "so their processes did not start" in str(err.value) and "Free room" not in str(err.value)  # (2026-12-06)
    with pytest.raises(RunError, match=r"ask for less \(cluster\.workers\)"):
        connect_on_ray.gathered(["w0"], "worker actors", 1.0, {"CPU": 1.0}, pins=[A_NODE])


def test_the_wait_for_actors_that_ask_nothing_does_not_say_there_is_no_room(monkeypatch, caplog):
    """Sandblaster on Ray on a loaded 2-core machine: "still waiting for Ray to start 2 of 2 shard actors after 60 s
    (each asks no CPU; the cluster has CPU 0 of 2 free): it has no room for them yet" (2026-12-06); a shard asks no
    room, so none is missing: its process is slow to start. A worker's wait says no room, or its own held while its
    process starts (its 2 workers' read "CPU 0 of 2 free" of their own CPUs). (Stand-in Ray.)"""
    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    two_nodes_one_full(monkeypatch)
    with caplog.at_level("WARNING", logger="downpour.ps.connect_on_ray"), pytest.raises(RunError):
        connect_on_ray.gathered(["s0", "s1"], "shard actors", 2.0, every=1.0)
    assert "each asks no CPU" in caplog.text and "no room for them" not in caplog.text
    assert "they ask for no room, so their processes are still starting" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="downpour.ps.connect_on_ray"), pytest.raises(RunError):
        connect_on_ray.gathered(["w0"], "worker actors", 2.0, {"CPU": 1.0}, every=1.0)
    assert "it has no room for them yet, or holds it for them while their processes start" in caplog.text


def test_a_worker_lost_with_the_clusters_head_gone_stops_as_a_shard_loss_not_a_restart(fake_ray, monkeypatch):
    """A joined cluster's head stopped, a worker's loss seen before a shard's: its restart asked the gone head for
    its nodes, which waited until Ray ended the process after 60 s (exit 1, nothing recorded). Now the loss is the
    shards' (ShardLost: run_cluster records the stop where it cannot rejoin)."""
    from downpour.ps.recorder import ShardLost

    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    d = _driver(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()], restarts=1)
    spawned = []
    monkeypatch.setattr(d, "_spawn", lambda w, seq, step: spawned.append(w) or FakeActor(node=lambda: "n"))
    monkeypatch.setattr(d, "_dispatch", lambda w: None)
    monkeypatch.setattr(restarts_module, "head_answers", lambda timeout=2.0: False)
    coord.begin_cycle(1)
    with pytest.raises(ShardLost, match=r"^the Ray cluster's head no longer answers \(worker 1 lost at step 0\)"):
        d._lost(1, RuntimeError("ActorDiedError"))
    assert spawned == []
    with pytest.raises(ShardLost, match=r"^the Ray cluster's head no longer answers \(worker 0 lost"):
        d._pinned_to_gone_node(0)         # (a replacement that died coming up: where was it pinned?)


def test_a_worker_lost_with_a_head_that_accepts_but_says_nothing_stops_as_a_shard_loss(fake_ray, monkeypatch):
    """The head's gcs_server got SIGTERM, its port still accepting connections and answering nothing: the restart's
    check (a connection alone) read it as alive, asked it for its nodes, and Ray ended the run after 60 s (exit 1, no
    shards-lost record, no cluster.json; until 2026-12-06). Asked as a join asks, it is gone: the shards' loss."""
    import socket

    from downpour.ps import connect_on_ray
    from downpour.ps.recorder import ShardLost

    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    d = _driver(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()], restarts=1)
    spawned = []
    monkeypatch.setattr(d, "_spawn", lambda w, seq, step: spawned.append(w) or FakeActor(node=lambda: "n"))
    monkeypatch.setattr(d, "_dispatch", lambda w: None)
    monkeypatch.setattr(restarts_module, "CONNECT_TIMEOUT_S", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as head:       # listening, never answering
        monkeypatch.setattr(connect_on_ray.ray, "is_initialized", lambda: True)
        monkeypatch.setattr(connect_on_ray.ray, "get_runtime_context",
                            lambda: SimpleNamespace(gcs_address=f"127.0.0.1:{head.getsockname()[1]}"))
        coord.begin_cycle(1)
        with pytest.raises(ShardLost, match=r"^the Ray cluster's head no longer answers \(worker 1 lost at step 0\)"):
            d._lost(1, RuntimeError("ActorDiedError"))
    assert spawned == [] and d.restarts == 1


def test_a_stop_during_a_restarts_head_check_in_a_held_block_is_not_held_for_it(fake_ray, monkeypatch):
    """The task loop handles a failed cycle in a held block (popped and counted together); the lost worker's restart
    asks the head first, up to 10 s where the host drops connections unanswered. A Ctrl-C then waited for the answer
    and for the restart it started (until 2026-12-06); now it stops the run during the question, no restart begun."""
    import os
    import signal
    import time

    from downpour.train.signals import signals_held

    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    d = _driver(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()], restarts=1)
    spawned, asked = [], []
    monkeypatch.setattr(d, "_spawn", lambda w, seq, step: spawned.append(w) or FakeActor(node=lambda: "n"))
    monkeypatch.setattr(d, "_dispatch", lambda w: None)

    def silent_head(timeout=2.0):
        os.kill(os.getpid(), signal.SIGINT)      # the Ctrl-C, while the question waits
        time.sleep(0.5)
        asked.append("answered")
        return True

    monkeypatch.setattr(restarts_module, "head_answers", silent_head)
    coord.begin_cycle(1)
    with pytest.raises(KeyboardInterrupt), signals_held():
        d._lost(1, RuntimeError("ActorDiedError"))
    assert asked == [] and spawned == [] and d.restarts == 1
    assert 1 in coord.lost                       # (the loss itself was recorded before the question)


def test_a_stop_while_the_driver_asks_which_shards_died_in_a_held_block_is_not_held_for_it(fake_ray):
    """A failure in the task loop's held block asks every shard whether it answers (up to 10 s each). A Ctrl-C then
    waited for every answer (until 2026-12-06); now it stops the run during the question, the next shard not asked."""
    import os
    import signal
    import time

    from downpour.train.signals import signals_held

    asked = []

    def silent(j):
        def node():
            asked.append(j)
            if j == 0:
                os.kill(os.getpid(), signal.SIGINT)      # the Ctrl-C, while the question waits
                time.sleep(0.5)
            return "n"
        return node

    coord = Coordinator(make_consistency("async"), workers=1, total_steps=100)
    d = _driver(coord, [FakeActor(node=silent(0), set_workers=lambda live: None),
                        FakeActor(node=silent(1), set_workers=lambda live: None)], [FakeActor()])
    with pytest.raises(KeyboardInterrupt), signals_held():
        d._shard_lost(RuntimeError("ActorDiedError"))
    assert asked == [0]


class _StoppedMidway(dict):
    """A coordinator's cycles in flight that take a Ctrl-C as a cycle's range enters (``setdefault``: the count handed
    out already raised) or leaves them (``pop``: not given back yet): the window of a stop between the two."""

    def _stop(self) -> None:
        import os
        import signal
        os.kill(os.getpid(), signal.SIGINT)

    def setdefault(self, *args: Any) -> Any:
        self._stop()
        return super().setdefault(*args)

    def pop(self, *args: Any) -> Any:
        got = super().pop(*args)
        self._stop()
        return got


def test_a_stop_as_a_restart_or_a_loss_hands_out_or_gives_back_a_cycle_keeps_its_steps(fake_ray):
    """A restart's or a loss's dispatch, and a loss, run outside the loops' held blocks: a Ctrl-C between the count
    handed out and the cycle's record in flight (begin_cycle), or between a lost worker's cycles leaving the flight and
    being given back (lose), lost their steps as the push before the shards did (until 2026-12-06)."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=12, n_push=2)
    d = _driver(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()])
    coord._inflight = _StoppedMidway()
    with pytest.raises(KeyboardInterrupt):
        d._dispatch(0)
    assert coord.unapplied_state() == {"dispatched": 2, "unapplied": [[0, 2]]}
    with pytest.raises(KeyboardInterrupt):
        d._lost(0, RuntimeError("ActorDiedError"))
    assert coord.unapplied_state() == {"dispatched": 2, "unapplied": [[0, 2]]} and coord.returned == [(0, 2)]
