"""Where a lost Ray worker's replacement and its partition actors go: the real Ray driver
(:class:`~downpour.ps.cluster_on_ray.RayCluster`) on stand-in actors whose deaths are scripted
(tests/scripted_ray.py, tests/restart_scripts.py), and ``connect_on_ray``'s placement over stand-ins of
``ray.nodes()``: on the nodes alive at its restart, read once; off a node that crashed before Ray said so; where its
actor was, or only to a node with room where that node is gone."""
import logging

from restart_scripts import STEPS, _dies_at, _events
from scripted_ray import ScriptedCluster, coordinator, scripted_runtime, stubbed_spawns

from downpour.ps.on_ray import RESTART_SECONDS


def test_a_replacements_partition_actors_are_pinned_to_the_nodes_alive_at_its_restart(monkeypatch, caplog):
    """Model parallelism on three nodes: worker 1's partitions are pinned round-robin, its first to node c. Node c is
    lost, and worker 1 with it. Each of its replacement's partitions is placed as the one it replaces: the second on
    node a, where it was, the first, whose node is gone, round-robin over the nodes alive at the restart free of its
    siblings (b, not index 2 over a and b, node a, stacking both on one node with b alive), said in the log, and it
    rejoins. (Pinned by the start's placer, built from the nodes at the start, the first would go to node c again,
    where Ray never starts it, and the replacement be given up after RESTART_SECONDS.)"""
    a, b, c = ("a" * 56, "b" * 56, "c" * 56)
    rt = scripted_runtime(monkeypatch, nodes=[a, b, c])

    def node_c_lost(n, first, k):
        if first + k > 20:
            rt.lose_node(c)
        return first + k > 20

    coord = coordinator(2, STEPS)
    cluster = ScriptedCluster(rt, coord, restarts=1, partitions=2, script={(1, 0): {"dies": node_c_lost}})
    assert [p.node.fn().value for p in cluster.partition_actors[1]] == [c, a]   # (w * K + p) round-robin over a, b, c
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    cluster.run_scripted()
    assert [e[0] for e in _events(coord)] == ["worker-lost", "worker-restarted"] and coord.done == STEPS
    assert cluster.placement["partitions"][2:] == [b, a]
    assert "worker 1's partition 0's node cccccccc is gone: its replacement is pinned to node bbbbbbbb" in caplog.text
    assert "partition 1's node" not in caplog.text


def test_a_replacement_pinned_to_a_node_that_crashed_before_ray_said_so_is_placed_again_off_it(monkeypatch, caplog):
    """Node c crashes with worker 1 (its first partition there), and Ray tells of the loss before ray.nodes() has c dead
    (on a real Ray 2.60: 2-3 s against some 14 s), so the replacement's first partition is pinned to c again; once Ray
    has c dead the replacement dies coming up. That is the same restart, placed again off c (partition 0 on b), and
    worker 1 trains on (not a restart-failed, the one restart spent, the run going on without worker 1). (On a real
    multi-node Ray: tests/test_ps_ray_nodes.py.)"""
    a, b, c = ("a" * 56, "b" * 56, "c" * 56)
    rt = scripted_runtime(monkeypatch, nodes=[a, b, c])
    spawn = ScriptedCluster._spawn

    def spawned(self, w, seq, step):     # Ray has node c dead just after the first replacement was placed
        actor = spawn(self, w, seq, step)
        if actor.life == 1:
            rt.lose_node(c)
        return actor

    monkeypatch.setattr(ScriptedCluster, "_spawn", spawned)
    coord = coordinator(2, STEPS)
    cluster = ScriptedCluster(rt, coord, restarts=1, partitions=2,
                              script={(1, 0): _dies_at(20), (1, 1): {"dead_on_arrival": True}})
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    cluster.run_scripted()
    # worker 1's partitions: the lost actor's, its first replacement's (pinned as before: c "alive"), then off c
    assert [[p.node.fn().value for p in parts] for parts in cluster.parts[1:]] == [[c, a], [c, a], [b, a]]
    # staleness.json says the first replacement was placed again, and why (not the log alone)
    assert [e[0] for e in _events(coord)] == ["worker-lost", "restart-placed-again", "worker-restarted"]
    # its partition 0's node, not the worker's (on b, alive): not "its node cccccccc gone"
    assert coord.events[1]["reason"] == "its partition 0's node cccccccc gone (ActorDiedError)" and coord.lost == []
    assert coord.done == STEPS and cluster.trained() == list(range(STEPS)) and cluster.restarts == 0
    assert cluster.placement["partitions"][2:] == [b, a]
    assert {life for w, life, *_ in cluster.pushes if w == 1} == {0, 2}      # the third actor trains on
    assert ("worker 1's replacement's partition 0 was pinned to node cccccccc, gone since (ActorDiedError): "
            "placed again") in caplog.text


def test_a_replacement_is_placed_as_the_actor_it_replaces_and_elsewhere_where_its_node_is_gone(monkeypatch):
    """connect_on_ray.replacing, over a stand-in of ray.nodes(): nodes a and b alive, c gone. Ray chooses again where it
    chose (no pin: a GPU worker, a one-node start); a pin whose node is alive is kept; one whose node is gone is
    round-robin over the nodes alive (the actor's index), or Ray's choice where one node is left."""
    from downpour.ps import connect_on_ray
    from downpour.ps.connect_on_ray import pinned, replacing

    a, b, c = ("a" * 56, "b" * 56, "c" * 56)
    monkeypatch.setattr(connect_on_ray, "_free_per_node", lambda: {a: {"CPU": 2.0}, b: {"CPU": 2.0}})
    nodes = [{"NodeID": n, "Alive": n != c, "Resources": {"CPU": 4.0}} for n in (a, b, c)]
    assert replacing(None, 0, 1.0, nodes) == {}
    assert [pinned(replacing(b, i, 1.0, nodes)) for i in range(3)] == [b, b, b]
    assert [pinned(replacing(c, i, 1.0, nodes)) for i in range(3)] == [a, b, a]
    assert replacing(c, 0, 1.0, [nd for nd in nodes if nd["NodeID"] != b]) == {}


def test_a_replacement_whose_node_is_gone_goes_only_to_a_node_with_room(monkeypatch):
    """Nodes a, b and d alive, c gone; node a full (Ray's per-node free CPUs), b and d with room. A worker pinned to c
    is placed round-robin over the nodes with its CPUs free (index 0: b), not a; with no node free, Ray chooses.
    Round-robin over the nodes alive by their size, index 0 would pin it to the full node a, where it would wait
    until given up after RESTART_SECONDS (Ray, choosing, starts it on b or d)."""
    from downpour.ps import connect_on_ray
    from downpour.ps.connect_on_ray import pinned, replacing

    a, b, c, d = ("a" * 56, "b" * 56, "c" * 56, "d" * 56)
    free = {a: {"CPU": 0.0}, b: {"CPU": 1.0}, d: {"CPU": 3.0}}
    monkeypatch.setattr(connect_on_ray, "_free_per_node", lambda: free)
    nodes = [{"NodeID": n, "Alive": n != c, "Resources": {"CPU": 4.0}} for n in (a, b, c, d)]
    assert [pinned(replacing(c, i, 1.0, nodes)) for i in range(3)] == [b, d, b]
    assert pinned(replacing(c, 0, 2.0, nodes)) == d
    free.update({b: {"CPU": 0.5}, d: {}})
    assert replacing(c, 0, 1.0, nodes) == {}
    assert pinned(replacing(c, 0, 0.0, nodes)) == a          # a partition actor asks no CPU: any node alive


def test_replacements_moved_off_one_lost_node_count_those_not_up_yet(monkeypatch):
    """Node c lost with workers 1 and 3 (per worker 1 CPU); a full, b and d with 1 CPU free each (Ray's count). Worker
    1's replacement is pinned to d (index 1 over b, d) and not up yet, so Ray's count still shows d free: worker 3's
    (index 3) goes to b. Counting Ray's free CPUs alone, it would go to d as well, where one of the two would wait
    until given up after RESTART_SECONDS (Ray, choosing, starts both)."""
    from downpour.ps import connect_on_ray
    from downpour.ps.connect_on_ray import pinned

    a, b, c, d = ("a" * 56, "b" * 56, "c" * 56, "d" * 56)
    rt = scripted_runtime(monkeypatch, nodes=[a, b, c, d])
    monkeypatch.setattr(connect_on_ray, "_free_per_node", lambda: {a: {"CPU": 0.0}, b: {"CPU": 1.0}, d: {"CPU": 1.0}})
    cluster = ScriptedCluster(rt, coordinator(4, STEPS))
    cluster.per_worker = 1.0
    cluster.pins.update({(1, None): c, (3, None): c})
    rt.lose_node(c)
    assert pinned(cluster._placed((1, None), 1, 1.0, rt.nodes())) == d
    cluster._starting[1] = (None, RESTART_SECONDS)       # (what _respawn records: its first answer still to come)
    assert pinned(cluster._placed((3, None), 3, 1.0, rt.nodes())) == b


def test_a_replacement_whose_node_is_listed_alive_but_does_not_answer_goes_to_a_node_with_room(monkeypatch, caplog):
    """Node c crashed with worker 1, and Ray lists it alive still (its health checks have not failed yet): its raylet's
    port refuses the connection, and the replacement is pinned to a node that answers with its CPUs free (b, not a,
    full), said in the log, as where c is gone. Where no other node has the room, it is pinned to c still (the room the
    lost actor held: Ray may have the node back), and so is one whose node answers (a live raylet: the actor alone
    died), and one a Ray Client driver places (it asks nothing). Pinned to c, as before, it died coming up once Ray had
    c dead, and was placed again (back 17 s after the crash, against 5 s: bench/replacement_seconds.py)."""
    import socket

    from downpour.ps import connect_on_ray, placing_on_ray
    from downpour.ps.connect_on_ray import pinned

    a, b, c = ("a" * 56, "b" * 56, "c" * 56)
    rt = scripted_runtime(monkeypatch, nodes=[a, b, c])
    free = {a: {"CPU": 0.0}, b: {"CPU": 1.0}, c: {"CPU": 1.0}}
    monkeypatch.setattr(connect_on_ray, "_free_per_node", lambda: free)
    cluster = ScriptedCluster(rt, coordinator(2, STEPS))
    cluster.per_worker = 1.0
    with socket.socket() as live, socket.socket() as gone:
        live.bind(("127.0.0.1", 0))
        live.listen()
        gone.bind(("127.0.0.1", 0))      # bound, not listening: a connection is refused, as a crashed raylet's
        nodes = [{**nd, "NodeManagerAddress": "127.0.0.1", "NodeManagerPort": sock.getsockname()[1]}
                 for nd, sock in zip(rt.nodes(), (live, live, gone))]
        caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
        cluster.pins[1, None] = c
        assert pinned(cluster._placed((1, None), 1, 1.0, nodes)) == b
        assert "worker 1's node cccccccc does not answer (Ray lists it alive): its replacement is pinned to node " \
               "bbbbbbbb" in caplog.text
        free[b] = {"CPU": 0.0}
        cluster.pins[1, None] = c
        assert pinned(cluster._placed((1, None), 1, 1.0, nodes)) == c
        assert "its replacement is pinned to node cccccccc still (no other node has its CPUs free)" in caplog.text
        free[b] = {"CPU": 1.0}
        cluster.pins[1, None] = a     # (its node answers: the actor alone died)
        assert pinned(cluster._placed((1, None), 1, 1.0, nodes)) == a
        # a Ray Client driver (ray://) may reach no node's private address: it asks nothing, and keeps the pin
        monkeypatch.setattr(placing_on_ray.client_ray, "is_connected", lambda: True)
        cluster.pins[1, None] = c
        assert pinned(cluster._placed((1, None), 1, 1.0, nodes)) == c


def test_the_actors_lost_with_a_node_that_answers_nothing_ask_it_once(monkeypatch):
    """Workers 0 and 1 were both on node c, listed alive still, whose machine answers nothing (each question waits its
    2 s out, the driver's loop with it): the first replacement asks c's raylet, the second takes that answer, and both
    are placed off c."""
    from downpour.ps import connect_on_ray, placing_on_ray
    from downpour.ps.connect_on_ray import pinned

    a, b, c = ("a" * 56, "b" * 56, "c" * 56)
    rt = scripted_runtime(monkeypatch, nodes=[a, b, c])
    monkeypatch.setattr(connect_on_ray, "_free_per_node", lambda: {a: {"CPU": 1.0}, b: {"CPU": 1.0}, c: {"CPU": 2.0}})
    asked = []
    monkeypatch.setattr(placing_on_ray, "answers_at", lambda host, port, timeout: asked.append((host, port)) and False)
    cluster = ScriptedCluster(rt, coordinator(2, STEPS))
    cluster.per_worker = 1.0
    nodes = [{**nd, "NodeManagerAddress": "192.0.2.3", "NodeManagerPort": 41234} for nd in rt.nodes()]
    cluster.pins[0, None] = cluster.pins[1, None] = c
    assert {pinned(cluster._placed((w, None), w, 1.0, nodes)) for w in (0, 1)} <= {a, b}
    assert asked == [("192.0.2.3", 41234)]


def test_a_restart_reads_the_nodes_once_and_places_its_partitions_by_that_read(monkeypatch):
    """RayCluster._spawn itself (the scripted cluster's stands in for it elsewhere), actors stubbed: worker 1's
    replacement, its two partitions first on nodes c and a, node c lost. One read of ray.nodes() places the worker and
    its partitions (not two reads a restart, between which a node could be lost): partition 0's node is gone, so b (free
    of its sibling on a); partition 1 stays on a; the worker, pinned to a, stays there."""
    from downpour.ps import starting_on_ray
    from downpour.ps.cluster_on_ray import RayCluster

    a, b, c = ("a" * 56, "b" * 56, "c" * 56)
    rt = scripted_runtime(monkeypatch, nodes=[a, b, c])
    reads = []
    monkeypatch.setattr(starting_on_ray.ray, "nodes", lambda: reads.append(1) or rt.nodes())
    cluster = ScriptedCluster(rt, coordinator(2, STEPS), partitions=2)
    assert [cluster.pins[1, p] for p in (0, 1)] == [c, a]
    made = stubbed_spawns(monkeypatch, cluster, 2, 2)
    cluster.pins[1, None] = a
    rt.lose_node(c)
    reads.clear()
    RayCluster._spawn(cluster, 1, 0, 20)
    assert len(reads) == 1 and made == [b, a, a]      # partitions 0 and 1, then the worker


def test_a_piped_runs_replacement_is_pinned_to_the_drivers_node(monkeypatch):
    """RayCluster._spawn itself, actors stubbed: worker 1, left to Ray at the start (a one-node start pins none), is
    replaced on a cluster of two nodes now (b joined since). On the piped loop its replacement is pinned to the
    driver's node a, where its channel and the shards' inboxes are (on b its first cycle would fail, the worker lost
    again); on the task loop it is left to Ray, as it was, and on the piped loop too once b is gone (one node alive:
    Ray has no other choice, and a hard pin would fail at once where Ray's choice waits for room). Its pin stays Ray's
    choice in ``pins``, so its torch threads are counted as the start counted them."""
    from downpour.ps import starting_on_ray
    from downpour.ps.cluster_on_ray import RayCluster

    a, b = "a" * 56, "b" * 56
    rt = scripted_runtime(monkeypatch, nodes=[a, b])
    cluster = ScriptedCluster(rt, coordinator(2, STEPS))
    made = stubbed_spawns(monkeypatch, cluster, 2, 1)
    monkeypatch.setattr(starting_on_ray, "this_node", lambda: a)
    cluster.pins[1, None] = None
    for piped, b_alive in ((False, True), (True, True), (True, False)):
        cluster.piped, rt.alive[b] = piped, b_alive
        RayCluster._spawn(cluster, 1, 0, 20)
    assert made == [None, a, None] and cluster.pins[1, None] is None
