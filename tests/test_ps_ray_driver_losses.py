"""The Ray driver's bookkeeping around lost workers, with its actors stood in for (no Ray started): a restart under
sync, the restart budget, a worker dead after its last push, the nodes a loss names, a cluster's head gone, and a
Ctrl-C while a loss asks the head or the shards."""
from types import SimpleNamespace

import pytest
import ray
import torch
from driver_stand_ins import FakeActor, fake_ray, stand_in  # noqa: F401 (fake_ray: a fixture)

import downpour.ps.restarts_on_ray as restarts_module
from downpour.ps.cluster_on_ray import RayCluster
from downpour.ps.consistency import make_consistency
from downpour.ps.coordinator import Coordinator, restarts_left
from downpour.ps.recorder import ShardLost
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard


def _cycle(coord: Coordinator, shard: Shard, w: int, seq: int) -> None:
    assert coord.begin_cycle(w) == 1
    coord.end_compute(w)
    assert shard.push(w, torch.ones(4), shard.version, seq).accepted
    coord.end_cycle(w, 1)


def test_a_worker_lost_mid_round_under_sync_lets_the_round_close_before_it_rejoins(fake_ray, monkeypatch):
    """Workers 0 and 2 pushed round 1, worker 1 died before it did: the round closes before it rejoins (restarted
    level with them, their next pushes would go into the still open round 1 and be refused: 2 steps counted, never
    applied)."""
    coord = Coordinator(make_consistency("sync"), workers=3, total_steps=100)
    shard = Shard(0, torch.zeros(4), make_rule("sgd", 0.1), workers=coord.live, sync=True)
    old = FakeActor()
    d = stand_in(coord, [FakeActor(set_workers=shard.set_workers)], [FakeActor(), old, FakeActor()], restarts=1)
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
    d = stand_in(coord, [FakeActor()], [FakeActor(), FakeActor()], restarts=1)
    monkeypatch.setattr(d, "_spawn", lambda w, seq, step: FakeActor(node=lambda: "node-b"))
    monkeypatch.setattr(d, "_dispatch", lambda w: None)
    held = ["node-b"]                    # the replacement's first answer (its start report): not come yet

    def waiting(ref):
        return isinstance(ref.value, dict) and ref.value.get("node") in held

    monkeypatch.setattr(fake_ray, "wait", lambda refs, num_returns=1, timeout=None:
                        ([r for r in refs if not waiting(r)], [r for r in refs if waiting(r)]))
    assert coord.begin_cycle(0) == coord.begin_cycle(1) == 1            # steps 0 and 1
    d._lost(1, RuntimeError("ActorDiedError"))                          # step 1 handed back; worker 1 restarting
    for step in (0, 1, 2):                                              # worker 0 trains 0, then 1 and 2
        coord.end_compute(0)
        coord.end_cycle(0, 1)
        assert coord.begin_cycle(0) == 1 and coord.first_step(0) == step + 1
    assert coord.handed_out
    d.poll_restarts()
    assert 1 in d._starting                                             # (not given up here)
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
    d = stand_in(coord, [FakeActor()], [FakeActor(), FakeActor(), FakeActor()], restarts=1)
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
    """Model parallelism: a worker lost and not restarted takes its partition actors with it (else they, and their
    filters' memory, stay alive until the run ends)."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    d = stand_in(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()])
    parts = [FakeActor(), FakeActor()]
    d.partition_actors = {0: [FakeActor()], 1: parts}
    monkeypatch.setattr(d, "_dispatch", lambda w: None)
    coord.begin_cycle(1)
    d._lost(1, RuntimeError("ActorDiedError"))
    assert all(p in fake_ray.killed for p in parts) and list(d.partition_actors) == [0]


def test_the_stand_in_driver_has_a_field_the_driver_gains_without_being_mended(monkeypatch):
    """The stand-in driver is built by the driver's own __init__, not object.__new__ with its fields set by hand, where
    each field the driver gains (``_seeded_at``, ``silence``, ``devices`` ...) would break these tests with an
    AttributeError until the stub learns it too."""
    init = RayCluster.__init__

    def gains_a_field(self, *args, **kwargs):
        self.gained = {"set": "in the constructor"}
        init(self, *args, **kwargs)

    monkeypatch.setattr(RayCluster, "__init__", gains_a_field)
    d = stand_in(Coordinator(make_consistency("async"), workers=2, total_steps=10), [FakeActor()], [FakeActor()] * 2)
    assert d.gained == {"set": "in the constructor"} and len(d.worker_actors) == 2 and d.restarts == 0


def test_the_restart_budget_counts_the_restarts_of_the_whole_run():
    events = [{"event": "worker-lost"}, {"event": "worker-restarted"}, {"event": "joined"}]
    assert restarts_left(1, events) == 0 and restarts_left(3, events) == 2 and restarts_left(2, []) == 2
    # a replacement that died coming up used one too
    assert restarts_left(3, [*events, {"event": "worker-lost"}, {"event": "restart-failed"}]) == 1


def test_a_worker_dead_after_its_last_push_is_a_loss_not_a_failed_run(fake_ray):
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=10)
    dead = FakeActor(data_report=lambda: ray.exceptions.ActorDiedError(), profile=lambda: {})
    d = stand_in(coord, [FakeActor(profile=lambda: {"shard": 0})], [FakeActor(data_report=lambda: {"samples": 5},
                                                                              profile=lambda: {}), dead])
    info = d.info()
    assert info["data_workers"] == [{"samples": 5}] and coord.lost == [1]


def test_the_model_file_keeps_the_buffers_of_the_first_worker_alive_at_the_end(fake_ray):
    """Worker 0 found dead at the run's end is lost there: worker 1, now the first live one, gives the buffers (an
    RBM's chains), as the simulator's first live worker does (asking only worker 0 gives none: the driver's zeros)."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=10)
    dead = FakeActor(data_report=lambda: ray.exceptions.ActorDiedError(), profile=lambda: {},
                     buffers=lambda: ray.exceptions.ActorDiedError())
    alive = FakeActor(data_report=lambda: {"samples": 5}, profile=lambda: {}, buffers=lambda: {"chains_h": torch.ones(2)})
    info = stand_in(coord, [FakeActor(profile=lambda: {"shard": 0})], [dead, alive]).info()
    assert coord.lost == [0] and torch.equal(info["model_buffers"]["chains_h"], torch.ones(2))


def test_the_summary_and_a_lost_shard_name_each_node_by_its_id_and_address(fake_ray):
    """cluster.json's placement numbers index node_ids and node_addresses, and a lost shard's message names the node
    it ran on (else over two machines nothing says which held worker 1, or the lost shard)."""
    a, b = "a" * 56, "b" * 56
    fake_ray.node_list = [{"NodeID": b, "NodeManagerAddress": "10.0.0.2"},
                          {"NodeID": a, "NodeManagerAddress": "10.0.0.1"}]
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=10)
    lost = FakeActor(node=lambda: ray.exceptions.RayError("gone"), profile=lambda: {})
    d = stand_in(coord, [FakeActor(node=lambda: a, profile=lambda: {}), lost],
                [FakeActor(data_report=lambda: {}, profile=lambda: {}) for _ in range(2)])
    d.placement = {"shards": [a, b], "workers": [b, a]}
    info = d.info()
    assert info["placement"] == {"shards": [0, 1], "workers": [1, 0]}
    assert info["node_ids"] == [a, b] and info["node_addresses"] == ["10.0.0.1", "10.0.0.2"]
    d.addresses = {a: "10.0.0.1", b: "10.0.0.2"}     # (read at the start, when every actor was up)
    fake_ray.node_list = []                          # (Ray knows neither by then: the loss reads the start's)
    with pytest.raises(ShardLost, match=r"^shard 1 lost at step 0 on node bbbbbbbb at 10\.0\.0\.2 \(RuntimeError\)$") \
            as lost:
        d._shard_lost(RuntimeError("its node is gone"))
    # where the lost go's actors were (its shard event keeps it: cluster.json's shard_events)
    assert lost.value.placed == {"nodes": 2, "placement": {"shards": [0, 1], "workers": [1, 0]}, "node_ids": [a, b],
                                 "node_addresses": ["10.0.0.1", "10.0.0.2"], "lost_shards": [1]}


def test_a_lost_workers_event_log_line_and_stop_name_its_node_as_a_lost_shards_message_does(fake_ray, caplog):
    """A lost worker's words name its node, as a lost shard's do (not "worker 1 was lost at step 0 (RuntimeError); the
    run went on without it")."""
    from downpour.ps.finish import _loss_reasons

    a, b = "a" * 56, "b" * 56
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=10)
    d = stand_in(coord, [FakeActor()], [FakeActor(), FakeActor()])
    d.placement, d.addresses = {"shards": [a], "workers": [a, b]}, {a: "10.0.0.1", b: "10.0.0.2"}
    with caplog.at_level("WARNING"):
        d._lost(1, RuntimeError("its node is gone"))
    assert coord.events[0]["where"] == "node bbbbbbbb at 10.0.0.2"
    assert "worker 1 lost at step 0 on node bbbbbbbb at 10.0.0.2: RuntimeError" in caplog.text
    assert _loss_reasons(coord) == ["worker 1 at step 0 on node bbbbbbbb at 10.0.0.2: RuntimeError"]


def test_a_worker_lost_with_the_clusters_head_gone_stops_as_a_shard_loss_not_a_restart(fake_ray, monkeypatch):
    """A joined cluster's head stopped, a worker's loss seen before a shard's: the loss is the shards' (ShardLost:
    run_cluster records the stop where it cannot rejoin). Else its restart asks the gone head for its nodes, which
    waits until Ray ends the process after 60 s (exit 1, nothing recorded)."""
    from downpour.ps.recorder import ShardLost

    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    d = stand_in(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()], restarts=1)
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
    """The head's gcs_server got SIGTERM, its port still accepting connections and answering nothing: asked as a join
    asks, it is gone: the shards' loss. (The restart's check by a connection alone would read it as alive, ask it for
    its nodes, and Ray end the run after 60 s: exit 1, no shards-lost record, no cluster.json.)"""
    import socket

    from downpour.ps import connect_on_ray
    from downpour.ps.recorder import ShardLost

    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    d = stand_in(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()], restarts=1)
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
    asks the head first, up to 10 s where the host drops connections unanswered. A Ctrl-C then stops the run during
    the question, no restart begun (not waiting for the answer and the restart it starts)."""
    import os
    import signal
    import time

    from downpour.train.signals import signals_held

    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    d = stand_in(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()], restarts=1)
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


def test_the_shards_are_asked_whether_they_died_at_once_in_one_wait(fake_ray, monkeypatch):
    """After a failure every shard is asked whether it answers: all at once, one wait of 10 s for them all (one after
    another, up to 10 s each, a node gone silent with 4 of 8 shards would hold the driver 40 s). A dead shard's answer
    is its error, a silent one's never comes: both are lost, and named."""
    waits = []

    def wait(refs, num_returns=1, timeout=None):
        waits.append((len(refs), num_returns, timeout))
        ready = [r for r in refs if r.value != "silent"]
        return ready, [r for r in refs if r not in ready]

    monkeypatch.setattr(fake_ray, "wait", wait)
    coord = Coordinator(make_consistency("async"), workers=1, total_steps=10)
    answers = ["a", ray.exceptions.RayError("gone"), "silent", "a"]
    d = stand_in(coord, [FakeActor(node=lambda x=x: x) for x in answers], [FakeActor(node=lambda: "a")])
    d.placement = {"shards": ["a", "b", "c", "a"], "workers": ["a"]}
    assert d._dead_shards() == [1, 2] and waits == [(4, 4, 10)]
    with pytest.raises(ShardLost, match=r"^shard 1, 2 lost at step 0 on node b, node c \(RuntimeError\)$"):
        d._shard_lost(RuntimeError("ActorDiedError"))


def test_a_stop_while_the_driver_asks_which_shards_died_in_a_held_block_is_not_held_for_it(fake_ray):
    """A failure in the task loop's held block asks every shard whether it answers (up to 10 s). A Ctrl-C then stops
    the run during the question, the next shard not asked (not waiting for every answer)."""
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
    d = stand_in(coord, [FakeActor(node=silent(0), set_workers=lambda live: None),
                        FakeActor(node=silent(1), set_workers=lambda live: None)], [FakeActor()])
    with pytest.raises(KeyboardInterrupt), signals_held():
        d._shard_lost(RuntimeError("ActorDiedError"))
    assert asked == [0]


def test_a_worker_restarted_on_another_node_and_install_is_added_to_the_runs_record_and_warned_of(fake_ray,
                                                                                                  monkeypatch, caplog):
    """A restarted worker is asked its start_report, not its node alone: the record's ``nodes`` gains it
    (``on_nodes``), warned of as at the start; a second replacement there under the same install changes nothing.
    Else environment.json, written at the start, never lists the node its replacement ran on nor the install there
    (another numpy computes other floats), and nothing is warned."""
    import logging

    from downpour.train.environment import environment

    coord, d = _restarting_on_node_b(fake_ray, monkeypatch)
    written = []
    d.on_nodes = written.append
    with caplog.at_level(logging.WARNING, logger="downpour.ps.node_environments"):
        d._lost(1, RuntimeError("ActorDiedError"))                # restarted, and up at once (FakeRay: all ready)
    assert coord.live == {0, 1} and d.placement["workers"] == ["n", "node-b"]
    assert written == [{"10.0.0.4": {}, "10.0.0.5": {"numpy": "1.26.4"}}] and d.nodes == written[0]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "downpour.ps.node_environments"]
    assert line.startswith("node node-b at 10.0.0.5 runs other versions than the driver's install: numpy 1.26.4 "
                           f"(driver {environment()['numpy']})")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="downpour.ps.node_environments"):
        d._lost(1, RuntimeError("ActorDiedError"))                # again there, the same install: known already
    assert coord.live == {0, 1} and len(written) == 1
    assert not [r for r in caplog.records if r.name == "downpour.ps.node_environments"]


def test_an_environment_json_that_cannot_be_rewritten_after_a_restart_is_warned_of_and_the_run_trains_on(
        fake_ray, monkeypatch, caplog, tmp_path):
    """The record's rewrite comes mid-run, from the driver's loop: a full disk there raised out of the restart and
    ended the run. It is one WARNING naming the file; the replacement rejoins, the file as the start wrote it."""
    import logging

    import downpour.train.environment as environment_module
    from downpour.train.environment import record_environment, record_nodes

    coord, d = _restarting_on_node_b(fake_ray, monkeypatch)
    record_environment(tmp_path, 0, d.nodes)
    before = (tmp_path / "environment.json").read_text()
    d.on_nodes = lambda nodes: record_nodes(tmp_path, nodes)

    def full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(environment_module, "replace_text", full)
    with caplog.at_level(logging.WARNING, logger="downpour.train.environment"):
        d._lost(1, RuntimeError("ActorDiedError"))
    assert coord.live == {0, 1} and d.placement["workers"] == ["n", "node-b"]
    assert (tmp_path / "environment.json").read_text() == before
    (line,) = [r.getMessage() for r in caplog.records if r.name == "downpour.train.environment"]
    assert f"could not rewrite {tmp_path / 'environment.json'}" in line and "No space left on device" in line


def _restarting_on_node_b(fake_ray, monkeypatch):
    """A driver of two workers whose start's actors (a shard, the workers) ran on node a, and whose worker 1, once
    lost, is restarted on node b (joined since; IP 10.0.0.5) under another numpy, up at once (FakeRay: all ready)."""
    from downpour.ps.node_environments import node_environments, start_report

    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    d = stand_in(coord, [FakeActor()], [FakeActor(), FakeActor()], restarts=2)
    fake_ray.node_list = [{"NodeID": node, "NodeManagerAddress": address, "Alive": True}
                          for node, address in (("node-a", "10.0.0.4"), ("node-b", "10.0.0.5"))]
    d.addresses = {"node-a": "10.0.0.4"}                          # node b joined the cluster after the start
    d.reports = [start_report("node-a") for _ in range(3)]        # the start's: a shard and two workers, on node a
    d.nodes = node_environments(d.reports, d.addresses)
    moved = start_report("node-b")
    moved["environment"]["numpy"] = "1.26.4"
    monkeypatch.setattr(d, "_spawn", lambda w, seq, step: FakeActor(start_report=lambda: moved))
    monkeypatch.setattr(d, "_dispatch", lambda w: None)
    return coord, d
