"""Where the Ray driver's start places each actor (``connect_on_ray.placer`` by ``connect_on_ray.spot``), over
stand-ins of ``ray.nodes()``: no Ray cluster. The plan (``downpour plan``, docs/plan.md) gives every process a machine
of its own, R x K partitions + R replica processes (K >= 2) + S shards; on a cluster of that many nodes the runner
puts each actor on a node of its own, and on fewer it wraps round-robin. (On a real multi-node Ray:
tests/test_ps_ray_nodes.py, tests/test_ps_ray_cluster.py.)"""
from types import SimpleNamespace

import pytest

from downpour.plan.hub import machines_of

pytest.importorskip("ray")

from downpour.ps.connect_on_ray import pinned, placer, spot  # noqa: E402  (ray needed)


def _nodes(n):
    return [{"NodeID": f"{i:056x}", "Alive": True, "Resources": {"CPU": 1.0}} for i in range(n)]   # (Ray's hex ids)


def _start(n, r, k, s):
    """Each actor's node index, placed in the order the driver's start places them (``RayCluster._start``: the shards,
    then each worker's own actor, 1 CPU, and its partitions, none)."""
    place = placer(_nodes(n))

    def at(kind, i, cpus):
        return int(pinned(place(spot(kind, i, r, k), cpus)), 16)

    shards = [at("shard", j, 0.0) for j in range(s)]
    workers, partitions = [], []
    for w in range(r):
        workers.append(at("worker", w, 1.0))
        partitions += [at("partition", w * k + p, 0.0) for p in range(k)] if k > 1 else []
    return {"shards": shards, "workers": workers, "partitions": partitions}


@pytest.mark.parametrize("r, k, s", [(2, 2, 2), (3, 2, 2), (2, 1, 1), (3, 1, 2), (1, 4, 4)])
def test_a_cluster_of_the_plans_machines_puts_every_actor_on_a_node_of_its_own(r, k, s):
    """The plan's count of machines (``machines_of``: a machine each for a split replica's own process) is the number
    of nodes the start uses, each actor alone on one. Each kind counting from the first node, replica 0's process
    would share a node with its partition 0 and shard 0, and the higher nodes stay empty (the main job split in 2,
    2 x 2 + 2 + 2: its 8 actors on 4 of 8 nodes)."""
    n = machines_of(SimpleNamespace(banks_shared=True), r, k, s)
    placed = _start(n, r, k, s)
    every = [i for v in placed.values() for i in v]
    assert sorted(every) == list(range(n))
    assert placed["partitions"] == list(range(r * k if k > 1 else 0))    # the partitions first, then the replicas'
    assert placed["workers"] == list(range(r * k, r * k + r) if k > 1 else range(r))   # processes, then the shards


def test_on_fewer_nodes_the_index_wraps_round_robin_and_workers_stay_where_they_were_unsplit():
    """Fewer nodes than the plan's machines: one index over every kind, round-robin (2 x 2 + 2 + 2 on 3 nodes: 3, 3
    and 2 actors a node, where each kind counted from the first had put 4, 3 and 1). Unsplit (K = 1), worker w stays on
    node w, and 2 workers and a shard on 2 nodes sit as before (the shard beside worker 0)."""
    assert _start(3, 2, 2, 2) == {"shards": [0, 1], "workers": [1, 2], "partitions": [0, 1, 2, 0]}
    assert _start(2, 2, 1, 1) == {"shards": [0], "workers": [0, 1], "partitions": []}
    assert _start(3, 2, 1, 1) == {"shards": [2], "workers": [0, 1], "partitions": []}


def test_an_actor_kind_the_placer_does_not_know_is_refused_by_name():
    with pytest.raises(ValueError, match=r"no such actor kind 'replica' \(one of partition, worker, shard\)"):
        spot("replica", 0, 2, 2)


def _driver(monkeypatch, nodes, r, k):
    """A scripted cluster of ``r`` replicas of ``k`` partitions on ``nodes`` (tests/scripted_ray.py), whose workers
    ``RayCluster._spawn`` itself starts afresh (actors stubbed): the list of each actor's node, in the order started."""
    from scripted_ray import ScriptedCluster, coordinator, scripted_runtime, stubbed_spawns

    rt = scripted_runtime(monkeypatch, nodes=nodes)
    cluster = ScriptedCluster(rt, coordinator(r, 40), partitions=k)
    made = stubbed_spawns(monkeypatch, cluster, r, k)
    cluster.place, cluster.pins = placer(rt.nodes()), {}
    for w in range(r):
        cluster._incarnation[w] = 0
    return rt, cluster, made


def test_the_drivers_start_places_each_worker_and_partition_by_its_index_in_the_layout(monkeypatch):
    """``RayCluster._spawn`` at the start, 2 x 2 on nodes a, b, c: worker w's partitions (indices 2w, 2w + 1), then
    the worker (4 + w). Each kind counting from the first node would put the workers on a and b, worker 0 beside its
    partition 0."""
    from downpour.ps.cluster_on_ray import RayCluster

    a, b, c = ("a" * 56, "b" * 56, "c" * 56)
    _, cluster, made = _driver(monkeypatch, [a, b, c], 2, 2)
    for w in range(2):
        RayCluster._spawn(cluster, w, 0, 0)
    assert made == [a, b, b, c, a, c]       # partitions 0, 1 and worker 0; partitions 2, 3 and worker 1


def test_a_replacement_whose_node_is_gone_goes_round_robin_by_its_index_in_the_layout(monkeypatch):
    """2 x 2 on nodes a, b, c, d: worker 1 (index 5) on b, its partitions (2, 3) on c and d. Node b is lost: the
    replacement goes round-robin over the three alive with room by the same index, 5 -> d (index 1, the worker's
    own count, read c), its partitions kept."""
    from downpour.ps import connect_on_ray
    from downpour.ps.cluster_on_ray import RayCluster

    a, b, c, d = ("a" * 56, "b" * 56, "c" * 56, "d" * 56)
    rt, cluster, made = _driver(monkeypatch, [a, b, c, d], 2, 2)
    for w in range(2):
        RayCluster._spawn(cluster, w, 0, 0)
    assert made[3:] == [c, d, b]
    monkeypatch.setattr(connect_on_ray, "_free_per_node", lambda: {n: {"CPU": 4.0} for n in (a, c, d)})
    rt.lose_node(b)
    made.clear()
    RayCluster._spawn(cluster, 1, 0, 20)
    assert made == [c, d, d]


def test_workers_sharing_the_clusters_cpus_ask_a_share_that_fits_node_by_node_and_it_is_said(caplog):
    """4 workers on nodes of 1 and 2 CPUs ask 2/3 CPU each (1 fits on the first, 3 on the second), said in the log;
    asking 3/4 (the total over the workers), 3 would fit and the start wait 600 s for the 4th.
    2 workers on 2 CPUs ask 1 each, unsaid."""
    import logging

    from downpour.ps.setup import worker_cpus

    with caplog.at_level(logging.INFO, logger="downpour.ps.setup"):
        assert worker_cpus(2, [2.0]) == 1.0 and worker_cpus(2, [1.0, 1.0]) == 1.0
        assert not caplog.messages
        assert worker_cpus(4, [0.0]) == 1.0 and not caplog.messages   # (no CPU: the start says what it waits for)
        assert worker_cpus(4, [1.0]) == 0.25 and worker_cpus(2, [1.0]) == 0.5     # (a local Ray: as before, total / n)
        assert worker_cpus(3, [1.0, 1.0]) == 0.5     # (total / n, 0.6667, fitted one a node: 2 of 3)
        each = worker_cpus(4, [1.0, 2.0])
    assert 0.66 < each <= 2 / 3 and int(1.0 / each) + int(2.0 / each) == 4
    assert caplog.messages[0] == ("the Ray cluster has 1 CPU on 1 node for the run's 4 workers: each worker actor asks "
                                  "0.25 CPU, and they share the cores (1 CPU each would need 4 CPUs)")


def test_each_worker_runs_its_nodes_cpus_over_the_workers_placed_there_not_the_drivers_cores():
    """``train.threads = 0``: a worker pinned to a node runs that node's CPUs (as Ray reports them) over the workers
    pinned there, not the driver machine's cores over all the workers (here 4 // 4 = 1 thread each on a node of 16
    CPUs). Where Ray chooses (a one-node cluster's workers, a GPU worker) the driver's share stays: a one-node run's
    counts are unchanged."""
    from downpour.ps.placing_on_ray import worker_threads

    a, b = "a" * 56, "b" * 56
    cpus = {a: 16.0, b: 2.0}
    assert [worker_threads(0, w, [a, b, a, a], cpus, here=4) for w in range(4)] == [5, 2, 5, 5]
    assert worker_threads(0, 1, [a, None], cpus, here=4) == 2        # Ray chooses: the driver's 4 cores / 2
    assert worker_threads(0, 0, [a, a, a], {a: 2.0}, here=4) == 1    # at least 1
    assert worker_threads(3, 0, [a, b], cpus, here=4) == 3           # train.threads as asked
    assert [worker_threads(0, w, [None] * 3, {a: 16.0}, here=8) for w in range(3)] == [2, 2, 2]   # one node


def test_the_drivers_start_and_a_restart_hand_each_worker_its_nodes_share_of_threads(monkeypatch):
    """4 workers on nodes a, b, c of 4 CPUs (stand-ins): the start places every worker before starting any, so worker
    0 counts worker 3 beside it on a (2 threads each; b's and c's worker 4). Node c lost, worker 2's replacement goes
    to a: 4 // 3 = 1 thread, the node table read at the restart."""
    from downpour.ps import connect_on_ray, starting_on_ray
    from downpour.ps.cluster_on_ray import RayCluster

    a, b, c = "a" * 56, "b" * 56, "c" * 56
    rt, cluster, made = _driver(monkeypatch, [a, b, c], 4, 1)
    threads: list[int] = []

    class Worker:
        @staticmethod
        def options(**options):
            made.append(pinned(options))
            return SimpleNamespace(remote=lambda *args: threads.append(args[9]))

    monkeypatch.setattr(starting_on_ray, "WorkerActor", Worker)
    cluster.threads, cluster.node_cpus = 0, connect_on_ray.live_cpus(rt.nodes())
    cluster.placed_first = {w: cluster._placed((w, None), spot("worker", w, 4, 1), 1.0, None) for w in range(4)}
    for w in range(4):                                # (as RayCluster._start: every worker placed, then started)
        RayCluster._spawn(cluster, w, 0, 0)
    assert made == [a, b, c, a] and threads == [2, 4, 4, 2]
    monkeypatch.setattr(connect_on_ray, "_free_per_node", lambda: {a: {"CPU": 2.0}, b: {"CPU": 3.0}})
    rt.lose_node(c)
    RayCluster._spawn(cluster, 2, 0, 20)
    assert made[-1] == a and threads[-1] == 1
