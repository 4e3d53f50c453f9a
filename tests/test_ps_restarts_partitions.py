"""A lost partition actor restarted alone: the real Ray driver (:class:`~downpour.ps.cluster_on_ray.RayCluster`) on
stand-in actors whose deaths are scripted (tests/scripted_ray.py, tests/restart_scripts.py). Its cycles dropped and
trained again, its node added to the run's record, its failed push's staged slices dropped, a killed one's late write
refused; its replica restarted where it cannot be, or at once with no restart left; a stop while it comes up let
through."""
import os

import numpy as np
import pytest
import scripted_ray
import torch
from restart_scripts import STEPS
from scripted_ray import ScriptedCluster, coordinator, scripted_runtime

from downpour.ps import partition_restarts_on_ray, shm
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard
from downpour.ps.shard_server import ShardServer


def _partition_dies(cluster, w, p, step):
    """A ``fails`` script: worker ``w``'s cycle past ``step`` fails, its partition ``p`` killed, the worker alive."""
    def fails(n, first, k):
        if first + k > step and not cluster.partition_actors[w][p].dead and w not in cluster.replaced_at:
            cluster.partition_actors[w][p].dead = True
            cluster.replaced_at[w] = first
            return True
        return False
    return fails


def _losing_partition_1(monkeypatch, restarts=1, new_parts_up=None):
    """2 replicas x 2 partitions; worker 0's partition 1 dies in its cycle past step 20 (the worker alive)."""
    rt = scripted_runtime(monkeypatch)
    coord = coordinator(2, STEPS)
    script = {}
    cluster = ScriptedCluster(rt, coord, restarts=restarts, partitions=2, script=script)
    cluster.replaced_at = {}
    # a partition restarted alone: a stand-in, up where new_parts_up holds (None: at once)
    cluster._partition_actor = lambda w, p, name, options, step: scripted_ray.Shard(new_parts_up, "node-a")
    cluster.lives[0].fails = _partition_dies(cluster, 0, 1, 20)
    return cluster, coord


def test_a_lost_partition_is_restarted_alone_its_cycles_dropped_and_trained_again(monkeypatch):
    """Worker 0's partition 1 dies mid-cycle, the worker alive: a new partition 1 replaces it alone (the worker's actor
    kept, handed the new one), the worker's cycles in flight are dropped and their steps handed out again, so every
    step is trained once; one partition-restarted event, no worker lost (worker 0 is not lost and restarted
    whole)."""
    cluster, coord = _losing_partition_1(monkeypatch)
    old = list(cluster.partition_actors[0])
    cluster.run_scripted()
    events = [e for e in coord.events if e["event"] != "joined"]
    assert [(e["event"], e["worker"], e["partition"]) for e in events] == [("partition-restarted", 0, 1)]
    assert events[0]["step"] > 0 and events[0]["dropped_steps"] >= 1 and events[0]["seed_step"] == events[0]["step"]
    assert len(cluster.lives) == 2 and cluster.lives[0].replaced == [1]          # no new worker actor
    assert cluster.partition_actors[0][0] is old[0] and cluster.partition_actors[0][1] is not old[1]
    assert coord.done == STEPS and cluster.trained() == list(range(STEPS))     # the dropped steps trained again
    assert cluster.restarts == 0                                                 # one of cluster.restarts spent


def test_a_partition_restarted_alone_on_another_node_is_added_to_the_runs_record(monkeypatch):
    """The new partition answers its start's question (its node and install) as a restarted worker does: on a node
    no actor of the run had, environment.json's ``nodes`` gain it (``on_nodes``), once (asked its node alone, the
    record would list the start's nodes to the end)."""
    from downpour.ps.node_environments import node_environments, start_report

    cluster, coord = _losing_partition_1(monkeypatch)
    cluster._partition_actor = lambda w, p, name, options, step: scripted_ray.Shard(None, "node-b")
    cluster.reports = [start_report("node-a") for _ in range(7)]    # the start's: a shard, 2 workers, 4 partitions
    cluster.nodes = node_environments(cluster.reports, {})
    written = []
    cluster.on_nodes = written.append
    cluster.run_scripted()
    assert [e["event"] for e in coord.events if e["event"] != "joined"] == ["partition-restarted"]
    assert written == [{"node-a": {}, "node-b": {}}] and cluster.placement["partitions"][1] == "node-b"


def test_a_partition_that_cannot_be_restarted_restarts_its_replica_and_says_why(monkeypatch):
    """The new partition never comes up (no node with room): a partition-restart-failed event says so, and the replica
    is lost and restarted as before, every step trained."""
    from downpour.ps.partition_restarts_on_ray import PARTITION_SECONDS

    cluster, coord = _losing_partition_1(monkeypatch, new_parts_up=lambda: False)
    cluster.run_scripted()
    events = [e for e in coord.events if e["event"] != "joined"]
    assert [(e["event"], e["worker"]) for e in events] == [("partition-restart-failed", 0), ("worker-lost", 0),
                                                           ("worker-restarted", 0)]
    assert events[0]["partition"] == 1
    assert events[0]["reason"] == f"its new actor not up within {PARTITION_SECONDS:.0f} s (no node with room)"
    assert coord.done == STEPS and len(cluster.lives) == 3


def test_a_partition_restart_has_the_shards_drop_what_the_failed_push_staged(monkeypatch):
    """The failed cycle may have staged some of its slices in the shards' inboxes (the partitions that lived staged
    theirs before the dead one failed it): every shard is told to drop worker 0's push of that seq, the one its next
    push takes again, after the worker took the new partition. An inbox is never overwritten: undropped, the next
    push's stage would wait on the stale slice, which no ring takes, and fail after INBOX_WAIT_SECONDS
    (tests/test_ps_doorbell.py shows the inbox)."""
    rt = scripted_runtime(monkeypatch)
    coord = coordinator(2, STEPS)
    cluster = ScriptedCluster(rt, coord, restarts=1, partitions=2, shards=2)
    cluster.replaced_at, failed_seq = {}, []
    cluster._partition_actor = lambda w, p, name, options, step: scripted_ray.Shard(None, "node-a")
    dies = _partition_dies(cluster, 0, 1, 20)
    cluster.lives[0].fails = lambda n, first, k: dies(n, first, k) and not failed_seq.append(cluster.lives[0].seq)
    cluster.run_scripted()
    assert [e["event"] for e in coord.events if e["event"] != "joined"] == ["partition-restarted"]
    assert len(failed_seq) == 1 and all(s.dropped == [(0, failed_seq[0])] for s in cluster.shard_actors)
    assert coord.done == STEPS and cluster.trained() == list(range(STEPS))


@pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")
def test_a_killed_partitions_late_write_is_refused_and_its_successors_push_does_not_wait(monkeypatch, tmp_path):
    """Worker 0's partition 1 is judged dead and killed, and may still run a moment: here it stages its slice of the
    failed push in its shard's inbox after the driver's drop_inbox (the run is over by then). The shards behind the
    stand-ins are real (shared memory): partition 1's shard gives worker 0 a fresh inbox before the new partition
    starts, which maps it, so the late slice lands in the retired one, refused and counted (``fenced``), and the new
    partition stages the same seq at once, its own slice applied. (With the inbox kept, the late slice would sit where
    the retried push stages, which would wait INBOX_WAIT_SECONDS on it and fail, the replica then restarted.) Shard
    0, of partition 0, which lived, keeps its inbox."""
    rt = scripted_runtime(monkeypatch)
    coord = coordinator(2, STEPS)
    cluster = ScriptedCluster(rt, coord, restarts=1, partitions=2, shards=2)
    servers = [ShardServer(Shard(j, torch.zeros(4), make_rule("sgd", 1.0), workers=[0, 1]),
                           f"/dev/shm/downpour-test-{os.getpid()}-{tmp_path.name}-{j}", workers=2) for j in (0, 1)]
    segments = []
    try:
        for j, (stand_in, srv) in enumerate(zip(cluster.shard_actors, servers)):
            stand_in.new_inbox = scripted_ray._Method(lambda w, n, srv=srv: scripted_ray.Ref(srv.new_inbox(w, n)))
            stand_in.drop_inbox = scripted_ray._Method(lambda w, seq, srv=srv: scripted_ray.Ref(srv.drop_inbox(w, seq)))
            cluster.lanes[j] = srv.lanes()
        first = [srv.lanes()["inbox"][0] for srv in servers]
        killed = shm.Segment(first[1], 4, writer=True)   # the lost partition 1's mapping of its shard's inbox
        segments.append(killed)
        maps = []

        def started(w, p, name, options, step):   # the new partition maps its shards' inboxes as it starts
            maps.append(cluster.lanes[p]["inbox"][w])
            return scripted_ray.Shard(None, "node-a")
        cluster._partition_actor = started
        cluster.replaced_at, failed_seq = {}, []
        dies = _partition_dies(cluster, 0, 1, 20)
        cluster.lives[0].fails = lambda n, first, k: dies(n, first, k) and not failed_seq.append(cluster.lives[0].seq)
        cluster.run_scripted()
        assert [e["event"] for e in coord.events if e["event"] != "joined"] == ["partition-restarted"]
        seq = failed_seq[0]
        killed.put(np.full(4, 7.0, dtype=np.float32), seq, 0, timeout=0.0)     # the late write, after the drop
        successor = shm.Segment(maps[0], 4)
        segments.append(successor)
        successor.put(np.ones(4, dtype=np.float32), seq, 0, timeout=0.0)       # staged at once: no wait
        assert servers[1].push_inbox(0, 0, seq)["accepted"]
        assert servers[1].shard.params.tolist() == [-1.0] * 4 and servers[1].shard.rejected == {"fenced": 1}
        assert servers[0].lanes()["inbox"][0] == first[0]     # partition 0 lived: its shard's inbox kept
    finally:
        for seg in segments:
            seg.close()
        for srv in servers:
            srv.close()


def test_a_lost_partitions_replica_and_its_partitions_are_asked_whether_they_live_at_once(monkeypatch):
    """Whether the replica's actor and each of its partitions lives: one question to them all, one wait of
    ASK_SECONDS (not one after another, up to ASK_SECONDS each, every survivor held up meanwhile); the
    dead partition found by it is the one restarted."""
    asked = []

    def answering(actors, timeout):
        asked.append((list(actors), timeout))
        return real(actors, timeout)

    real = partition_restarts_on_ray.answering
    monkeypatch.setattr(partition_restarts_on_ray, "answering", answering)
    cluster, coord = _losing_partition_1(monkeypatch)
    replica, parts = cluster.worker_actors[0], list(cluster.partition_actors[0])
    cluster.run_scripted()
    assert asked == [([replica, *parts], partition_restarts_on_ray.ASK_SECONDS)]
    assert [(e["event"], e["partition"]) for e in coord.events if e["event"] != "joined"] == \
        [("partition-restarted", 1)]


def test_with_no_restart_left_a_lost_partition_asks_nothing_before_its_replica_is_lost(monkeypatch):
    """cluster.restarts = 0: a cycle failed by a dead partition loses its replica at once, as before partitions were
    restarted alone: no actor is asked whether it lives (each question may wait ASK_SECONDS, the driver held up)."""
    asked = []
    monkeypatch.setattr(partition_restarts_on_ray, "answering", lambda actors, timeout: asked.extend(actors) or
                        [True] * len(actors))
    cluster, coord = _losing_partition_1(monkeypatch, restarts=0)
    cluster.run_scripted()
    assert [(e["event"], e["worker"]) for e in coord.events if e["event"] != "joined"] == \
        [("worker-lost", 0), ("not-restarted", 0)]
    assert asked == []


@pytest.mark.parametrize("wait", ["its first answer", "the hand-over"])
def test_a_stop_while_a_new_partition_comes_up_is_let_through(monkeypatch, wait):
    """A Ctrl-C while the driver waits (up to PARTITION_SECONDS each, every survivor held up) for the new partition's
    first answer, or for the worker to take it, stops the run there, not once the restart is done: nothing is recorded
    as restarted, and the new partition's actor, not the run's yet, is killed (not left running)."""
    import signal

    cluster, coord = _losing_partition_1(monkeypatch)
    worker = cluster.lives[0]

    def interrupted() -> bool:
        signal.raise_signal(signal.SIGINT)
        return True
    if wait == "the hand-over":
        worker.replace_partition = scripted_ray._Method(lambda p, actor: scripted_ray.Ref(worker.seq, when=interrupted))
    new = []
    cluster._partition_actor = lambda *args: new.append(
        scripted_ray.Shard(interrupted if wait == "its first answer" else None, "node-a")) or new[-1]
    with pytest.raises(KeyboardInterrupt):
        cluster.run_scripted()
    assert [e["event"] for e in coord.events if e["event"] != "joined"] == []
    assert len(new) == 1 and new[0].killed
