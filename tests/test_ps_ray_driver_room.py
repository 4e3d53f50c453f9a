"""The Ray driver's start when Ray has no room for its actors: the wait is said, with the room each actor asks and the
room free (on the node it was pinned to), and the start fails after its limit leaving no actor behind."""
from types import SimpleNamespace

import pytest
import ray
from ray_room import A_NODE, Hog, two_nodes_one_full, workers_start_within

import downpour.ps.starting_on_ray as starting


def test_waiting_for_room_on_the_cluster_is_said(local_ray, caplog):
    """An actor Ray has no room for (a full cluster, one still adding nodes) holds the run before its first step: the
    wait is said, with what it waits for and the CPUs free."""
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
    """The warning every minute of a start names each pinned node's room, as the no-room failure does, not the
    cluster's CPUs summed over its nodes ("4 of its 8 CPUs free") for actors pinned to a full node. (Stand-in
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
    """Every CPU held by another job's actor: the workers (1 CPU each) cannot be placed. The start does not wait for
    them for good, a warning a minute: it fails after the start's limit (cluster.silent_seconds, at
    least FIRST_FLOOR: 2 s here, the run's), saying what each worker asks and what the cluster has free, and
    leaves no actor of the run behind."""
    import time

    from downpour.config import load_config
    from downpour.errors import RunError
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    # (FIRST_FLOOR 1 s, the run's limit 2 s: over it, so the run's; the workers never start, so any limit is waited
    # out in full and 2 s, not 5, fails them alike)
    workers_start_within(monkeypatch, starting, 1.0)
    hog = Hog.remote()
    ray.get(hog.ping.remote())                                   # every CPU taken
    cfg = load_config("ufldl-sae", ["cluster.runner=ray", "data.samples=64", "train.batch_size=8", "train.steps=12",
                                    "cluster.workers=2", "cluster.shards=1", "train.tensorboard=false",
                                    "cluster.silent_seconds=2"])
    before = set(ray.util.list_named_actors())
    try:
        with pytest.raises(RunError, match=r"could not start 2 of 2 worker actors within 2 s: each asks CPU 1; "
                                           r"the cluster has CPU 0 of 2 free") as err:
            run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
        # the run's actors (downpour-<run>-shard0, -worker0, ...) killed, though ``err`` holds the driver. (It asked
        # for the CPUs back once the hog went, which held without the start's close() too: the dropped handles killed
        # the actors, as tried on 2026-12-05)
        for _ in range(100):
            if not set(ray.util.list_named_actors()) - before:
                break
            time.sleep(0.1)
        assert sorted(set(ray.util.list_named_actors()) - before) == [], err.value
    finally:
        ray.kill(hog)


def test_partition_actors_ray_never_starts_fail_the_start_after_its_limit(local_ray, tmp_path, monkeypatch):
    """Model parallelism: the partition actors (0 CPUs, pinned to a node) answer after the worker actors, whose start
    does not wait for them: the start's limit (1 s here) holds for them too (a plain ray.get would wait for their first
    answers for good). (Stand-in for an actor Ray never starts: one asking a resource no node
    has.)"""
    from downpour.config import load_config
    from downpour.errors import RunError
    from downpour.ps import partitions_on_ray
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    real = partitions_on_ray.PartitionActor
    monkeypatch.setattr(partitions_on_ray, "PartitionActor",
                        SimpleNamespace(options=lambda **kw: real.options(resources={"nowhere": 1.0}, **kw)))
    # (1 s, not 4: Ray can never start them, so the limit is waited out in full whatever it is)
    workers_start_within(monkeypatch, starting, 1.0, "partition actors")
    cfg = load_config("cat-untied", ["cluster.runner=ray", "data.samples=32", "train.batch_size=8", "train.steps=4",
                                     "cluster.workers=1", "cluster.shards=2", "cluster.partitions=2",
                                     "train.tensorboard=false"])
    with pytest.raises(RunError, match=r"could not start 2 of 2 partition actors within 1 s: each asks no CPU"):
        run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))


def test_a_start_on_several_nodes_names_the_room_on_the_node_each_actor_was_pinned_to(monkeypatch):
    """Two nodes of 4 CPUs, another job's actors on all of node a's: worker actors pinned to node a (the placer pins
    a CPU worker round-robin, hard) cannot start while node b has 4 free. The line names the room of the node they
    were pinned to, not "the cluster has CPU 4 of 8 free", a contradiction (free room summed over the nodes), and
    says the sum is one for those Ray places itself. (Stand-in Ray: one machine has one node.)"""
    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    two_nodes_one_full(monkeypatch)
    with pytest.raises(RunError, match=r"could not start 3 of 3 worker actors within 1 s: each asks CPU 1; 2 pinned "
                                       r"to node aaaaaaaa, which has CPU 0 of 4 free; the others: the cluster has CPU "
                                       r"4 of 8 free \(summed over its 2 nodes: an actor needs what it asks on one\)"):
        connect_on_ray.gathered(["w0", "w1", "w2"], "worker actors", 1.0, {"CPU": 1.0}, pins=[A_NODE, A_NODE, None])


def test_actors_that_ask_no_resource_are_not_told_to_ask_for_less(monkeypatch):
    """Shard and partition actors ask no CPU (0), so no fewer of them makes room: the no-room line tells only actors
    that ask something to 'ask for less (cluster.workers)', a key that does not count shards at all. (Stand-in two-node
    Ray: a shard pinned to the full node.)"""
    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    two_nodes_one_full(monkeypatch)
    with pytest.raises(RunError, match=r"could not start 1 of 1 shard actors within 1 s: each asks no CPU") as err:
        connect_on_ray.gathered(["s0"], "shard actors", 1.0, pins=[A_NODE])
    assert "ask for less" not in str(err.value), err.value
    assert "so their processes did not start" in str(err.value) and "Free room" not in str(err.value)
    with pytest.raises(RunError, match=r"ask for less \(cluster\.workers\)"):
        connect_on_ray.gathered(["w0"], "worker actors", 1.0, {"CPU": 1.0}, pins=[A_NODE])


def test_the_wait_for_actors_that_ask_nothing_does_not_say_there_is_no_room(monkeypatch, caplog):
    """Sandblaster on Ray on a loaded 2-core machine waits for its shard actors: a shard asks no room, so none is
    missing, and the wait says its process is slow to start (not "still waiting for Ray to start 2 of 2 shard actors
    after 60 s (each asks no CPU; the cluster has CPU 0 of 2 free): it has no room for them yet"). A worker's wait
    says no room, or its own held while its process starts (its 2 workers' read "CPU 0 of 2 free" of their own CPUs).
    (Stand-in Ray.)"""
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
