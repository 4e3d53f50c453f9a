"""Lost Ray workers and their restarts, each scenario with one outcome: the real Ray driver
(:class:`~downpour.ps.cluster_on_ray.RayCluster`) on stand-in actors whose deaths are scripted
(tests/scripted_ray.py), so what a replacement trains, when it is given up and what the run records
are asserted exactly. (On a real Ray the same scenarios have as many outcomes as Ray's timing: the
end-to-end restart is tests/test_ps_ray_lost_workers.py's.)"""
import html
import logging
import os

import numpy as np
import pytest
import scripted_ray
import torch
from scripted_ray import ScriptedCluster, coordinator, scripted_runtime, stubbed_spawns

from downpour.ps import partition_restarts_on_ray, shm
from downpour.ps.on_ray import RESTART_SECONDS
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard
from downpour.ps.shard_server import ShardServer

STEPS = 120


def _events(coord):
    return [(e["event"], e.get("worker", e.get("workers")), e["step"]) for e in coord.events]


def _dies_at(step):
    """A worker actor that dies when it is granted its first cycle reaching ``step`` (before it computes it)."""
    return {"dies": lambda n, first, k: first + k > step}


def _kill_first_actor(coord, w, step):
    """A hook for ``run_scripted``: worker ``w``'s first actor dies once ``step`` steps are done, whether or not it
    has a cycle (one waiting for the warm start has none that could fail)."""
    def hook(c):
        if coord.done >= step and c.lives[w].life == 0:
            c.lives[w].dead = True
    return hook


@pytest.fixture
def runtime(monkeypatch):
    return scripted_runtime(monkeypatch)


def test_a_restart_outlives_the_last_handout_and_trains_the_step_a_later_loss_gives_back(runtime):
    """Worker 1 dies at step 20; its replacement answers only once worker 0 is lost, and worker 0 dies as it is
    granted the run's last step. Until 2026-12-04 the replacement was given up once every step was handed out: the
    run ended "every worker was lost after 119 of 120 steps". Now it rejoins and trains that step. (On a real Ray,
    whether worker 0's last step had reached the shard before its actor died was Ray's timing: the test there
    accepted lost_workers [0] or [1, 0].)"""
    coord = coordinator(2, STEPS)
    # (told=3: the driver looks at its restarts once between worker 0's death and Ray telling it of it)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: 0 in coord.lost},
                                                            (0, 0): {**_dies_at(STEPS - 1), "told": 3}})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS))     # every step, once
    assert coord.lost == [0] and coord.live == {1}
    # worker 1 (steps alternate: 1, 3, ...) dies granted step 21, which its loss hands back to worker 0
    assert (0, 0, 21, 1) in c.pushes and not any(w == 1 and first >= 21 for w, _, first, _ in c.pushes[:-1])
    assert _events(coord) == [("worker-lost", 1, 21), ("worker-lost", 0, STEPS - 1), ("worker-restarted", 1, STEPS - 1),
                              ("not-restarted", 0, STEPS - 1)]
    assert coord.events[3]["reason"] == "cluster.restarts spent"     # worker 1's replacement took the one restart
    assert [(w, life, first) for w, life, first, _ in c.pushes if life == 1] == [(1, 1, STEPS - 1)]


def test_a_restart_still_coming_up_when_the_run_is_over_is_given_up(runtime, caplog):
    """The other outcome on a real Ray: worker 0 trains every step, and the replacement, not up yet, is given up
    once every step is applied (not before: a later loss could have handed steps back)."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False}})
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1]
    assert _events(coord) == [("worker-lost", 1, 21), ("restart-given-up", 1, STEPS)] and c.lives[-1].killed
    assert coord.events[-1]["reason"] == "no steps left for it"
    assert "worker 1 could not be restarted (no steps left for it)" in caplog.text


def test_a_replacement_up_while_the_others_push_without_a_pause_rejoins_at_once(runtime):
    """The driver took a restart's first answer only when none of its workers' pushes was ready: in a run whose
    driver was the slowest part (here every cycle is done by the time the driver waits) a replacement up three
    waits after its start was given up at the run's end, "no steps left for it", and never trained. Now a
    restart's answer is taken first."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"starts": 3}})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == []
    assert _events(coord) == [("worker-lost", 1, 21), ("worker-restarted", 1, 21)]   # (before: at step 120)
    assert sum(1 for w, life, *_ in c.pushes if (w, life) == (1, 1)) == 49     # of the 98 steps 22..119 (before: 0)


def test_a_replacement_records_the_step_its_seeds_were_derived_from(runtime):
    """A replacement's batch order and torch's RNG are seeded from the step it was started at (``ps.setup.batch_seed``,
    ``worker_seed``), which its ``worker-restarted`` event records as ``seed_step``: it rejoins later (here a step
    later: up six waits after its start), so the event's own step does not say it. Until 2026-12-05 nothing recorded
    it."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"starts": 6}})
    c.run_scripted()
    restarted = [e for e in coord.events if e["event"] == "worker-restarted"]
    assert restarted == [{"event": "worker-restarted", "worker": 1, "step": 22, "seed_step": 21}]


def test_a_replacement_that_dies_coming_up_is_named_by_its_own_node_not_its_predecessors(monkeypatch):
    """Worker 1 on node a lost; its replacement, pinned to node b, dies coming up: the restart-failed event and the log
    name node b (until 2026-12-06 nothing named it; the worker-lost before names a, the lost actor's own)."""

    class Pinned(ScriptedCluster):
        def _spawn(self, w, seq, step):
            actor = super()._spawn(w, seq, step)
            self.pins[w, None] = "node-a" if self._incarnation[w] == 1 else "node-b"
            return actor

    coord, runtime = coordinator(2, STEPS), scripted_runtime(monkeypatch, nodes=["node-a", "node-b"])
    c = Pinned(runtime, coord, restarts=2, script={(1, 0): _dies_at(20), (1, 1): {"dead_on_arrival": True}})
    c.run_scripted()
    lost, failed = [e for e in coord.events if e["event"] in ("worker-lost", "restart-failed")]
    assert lost["where"] == "node node-a" and failed["where"] == "node node-b"


def test_a_replacement_that_dies_coming_up_is_restarted_again_from_the_same_budget(runtime):
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=2, script={(1, 0): _dies_at(20), (1, 1): {"dead_on_arrival": True}})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == []
    assert [e[0] for e in _events(coord)] == ["worker-lost", "restart-failed", "worker-restarted"]
    assert c.restarts == 0 and [(a.w, a.life) for a in c.lives] == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert {life for w, life, *_ in c.pushes if w == 1} == {0, 2}      # the third actor trains on


def test_a_replacement_given_up_is_an_event_naming_why_and_when_and_the_report_shows_it(runtime, tmp_path):
    """restarts=1: worker 1's replacement dies coming up (restart-failed, the restart spent), so none follows. Until
    2026-12-04 staleness.json then held its worker-lost and restart-failed and nothing after: read the same as a
    replacement still coming up at a checkpoint. Now a restart-given-up event says why, at which step."""
    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults
    from downpour.config import load_config
    from downpour.train.rundir import RunDir

    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"dead_on_arrival": True}})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1]
    assert _events(coord) == [("worker-lost", 1, 21), ("restart-failed", 1, 21), ("restart-given-up", 1, 21)]
    assert coord.events[-1]["reason"] == "cluster.restarts spent"
    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    run.write_json("staleness.json", {"events": coord.events})
    assert "its restart given up at step 21 (cluster.restarts spent)" in html.unescape(_cluster_faults(run))


def test_a_restart_ray_cannot_place_is_given_up_at_its_deadline(runtime, caplog):
    """The only worker is lost and Ray never places its replacement: given up after RESTART_SECONDS (the stand-in
    clock jumps there), and the run ends with every worker lost and what was trained kept, instead of waiting."""
    from downpour.ps.on_ray import RESTART_SECONDS

    coord = coordinator(1, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(0, 0): _dies_at(30), (0, 1): {"up": lambda: False}})
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    c.run_scripted()
    assert coord.lost == [0] and not coord.live and coord.done == 30 and c.trained() == list(range(30))
    assert runtime.now >= RESTART_SECONDS and f"not up within {RESTART_SECONDS} s" in caplog.text
    assert _events(coord) == [("worker-lost", 0, 30), ("restart-given-up", 0, 30)]
    assert coord.events[-1]["reason"] == f"not up within {RESTART_SECONDS} s"


def test_a_replacement_given_up_takes_its_partition_actors_with_it(runtime):
    """Model parallelism: a replacement comes with partition actors of its own (holding its filters' memory). Until
    2026-12-04 giving it up killed the worker actor alone, and its partition actors lived on to the run's end (as
    the replacement that died coming up had its own killed). Now they go with it."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, partitions=2,
                        script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False}})
    c.run_scripted()
    assert _events(coord)[-1][0] == "restart-given-up" and c.lives[-1].killed
    assert [[p.killed for p in parts] for parts in c.parts] == [[False, False], [True, True], [True, True]]
    assert 1 not in c.partition_actors


def test_a_replacement_whose_partition_actors_never_answer_is_given_up_and_its_restart_given_back(runtime, caplog):
    """Model parallelism: worker 1's replacement answers, but its partition actors (0 CPUs, pinned to a node) never
    do. Until 2026-12-05 the driver waited for them with a plain ray.get, for good, every survivor with it (the
    stand-in's get raises instead: a real driver would block there). Now it waits RESTART_SECONDS, then gives the
    replacement up, its partitions killed and its restart given back (never up, as restarts_left has it), and the
    others train the rest."""
    from downpour.ps.on_ray import RESTART_SECONDS

    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, partitions=2,
                        script={(1, 0): _dies_at(20), (1, 1): {"parts_up": lambda: False}})
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    c.run_scripted()
    why = f"its partition actors or device did not answer within {RESTART_SECONDS} s"
    assert f"worker 1 could not be restarted ({why})" in caplog.text
    assert [e[0] for e in _events(coord)] == ["worker-lost", "restart-given-up"] and coord.events[-1]["reason"] == why
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1] and c.restarts == 1
    assert c.lives[-1].killed and all(p.killed for p in c.parts[-1])


def test_a_replacements_partition_actors_are_pinned_to_the_nodes_alive_at_its_restart(monkeypatch, caplog):
    """Model parallelism on three nodes: worker 1's partitions are pinned round-robin, its first to node c. Node c is
    lost, and worker 1 with it. Until 2026-12-05 its replacement's partitions were pinned by the start's placer, built
    from the nodes at the start: the first to node c again, where Ray never starts it, and the replacement was given
    up after RESTART_SECONDS. Now each is placed as the one it replaces: the second on node a, where it was, the
    first, whose node is gone, round-robin over the nodes alive at the restart free of its siblings (b: earlier on
    2026-12-05 index 2 over a and b, node a, stacking both on one node with b alive), said in the log, and it
    rejoins."""
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
    (on a real Ray 2.60: 2-3 s against some 14 s), so the replacement's first partition is pinned to c again; once
    Ray has c dead the replacement dies coming up. Until 2026-12-05 that was a restart-failed, the one restart spent,
    and the run went on without worker 1; now it is the same restart, placed again off c (partition 0 on b), and
    worker 1 trains on. (On a real multi-node Ray: tests/test_ps_ray_nodes.py.)"""
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
    # staleness.json says the first replacement was placed again, and why (until 2026-12-05 the log alone did)
    assert [e[0] for e in _events(coord)] == ["worker-lost", "restart-placed-again", "worker-restarted"]
    # its partition 0's node, not the worker's (on b, alive): until 2026-12-05 "its node cccccccc gone"
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
    is placed round-robin over the nodes with its CPUs free (index 0: b), not a; with no node free, Ray chooses. Earlier
    on 2026-12-05 it went round-robin over the nodes alive by their size: index 0 pinned it to the full node a, where it
    waited until given up after RESTART_SECONDS (Ray, choosing, had started it on b or d)."""
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
    (index 3) goes to b. Counting Ray's free CPUs alone, it went to d as well, where one of the two waited until
    given up after RESTART_SECONDS (Ray, choosing, had started both)."""
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


@pytest.mark.parametrize("n_push", [1, 3])
def test_the_ranges_a_lost_worker_held_are_trained_once_by_the_others_or_its_replacement(runtime, n_push):
    """Worker 1 dies with two cycles queued (steps 1..2 x n_push); worker 2 dies later, restarts spent; each step
    of the budget is trained once, whoever trained it."""
    coord = coordinator(3, STEPS, n_push=n_push)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(40), (2, 0): _dies_at(80)})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS))
    assert coord.lost == [2] and [e[0] for e in _events(coord)] == ["worker-lost", "worker-restarted", "worker-lost",
                                                                    "not-restarted"]
    assert coord.events[-1]["reason"] == "cluster.restarts spent"
    assert all(k == n_push for *_, k in c.pushes)         # 120 is a multiple of 3: no range was split


def test_a_restart_under_sync_rejoins_the_round_it_owes_and_no_step_is_trained_twice(runtime):
    coord = coordinator(2, STEPS, "sync", depth=1)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20)})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == []
    told = c.shard_actors[0].told
    assert told[0] == [0] and told[-1] == [0, 1]          # the round closes on worker 0 alone while 1 restarts
    assert max(coord.clocks().values()) - min(coord.clocks().values()) <= 1


def test_a_checkpoint_taken_while_a_replacement_comes_up_resumes_every_step_once(runtime):
    """The server's checkpoint (``state()``) taken with worker 1's replacement not up yet and its steps handed back:
    a resume from it trains every step not applied before it, once."""
    coord = coordinator(2, STEPS)
    saved = {}

    def checkpoint(c):
        if c._starting and not saved and coord.done >= 30:
            saved.update(c.state()[0], trained=c.trained())

    first = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False}})
    first.run_scripted(checkpoint)
    assert saved and saved["step"] == len(saved["trained"])
    again = coordinator(2, STEPS, start=saved["step"], events=coord.events)
    second = ScriptedCluster(runtime, again, restarts=1, saved=saved)
    second.run_scripted()
    assert again.done == STEPS and sorted(saved["trained"] + second.trained()) == list(range(STEPS))


def test_a_replacement_ray_never_places_gives_its_restart_back_for_a_later_loss(monkeypatch, caplog):
    """restarts=1: worker 1 is lost at step 20 and Ray never places its replacement; worker 0 is lost at step 300.
    A replacement given up for no room is no restart: restarts_left (the count a resume or a shard restart starts
    from) leaves it out, as docs/parameter-server.md says. The driver itself kept it spent until 2026-12-04: worker 0
    was not restarted and the run ended "every worker was lost" after 300 of 400 steps (lost_workers [1, 0]); now
    worker 0's replacement trains the last 100. (Each wait takes 5 s of the driver's clock: the first replacement's
    120 s run out while worker 0 pushes.)"""
    runtime = scripted_runtime(monkeypatch, tick=5.0)
    coord = coordinator(2, 400)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False},
                                                            (0, 0): _dies_at(300)})
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    c.run_scripted()
    assert "worker 1 could not be restarted (not up within" in caplog.text
    assert coord.done == 400 and c.trained() == list(range(400)) and coord.lost == [1]
    assert _events(coord) == [("worker-lost", 1, 21), ("restart-given-up", 1, 32), ("worker-lost", 0, 300),
                              ("worker-restarted", 0, 300)]
    assert {life for w, life, *_ in c.pushes if w == 0} == {0, 1}


@pytest.mark.parametrize("consistency", ["async", "sync", "bounded:2"])
def test_a_replacement_past_its_deadline_is_given_up_then_while_the_others_keep_the_driver_busy(monkeypatch,
                                                                                              consistency):
    """The task loop checked a replacement's deadline only when no push was ready (or a worker was lost): a driver
    kept busy (each wait 5 s of its clock, a push always ready) gave one never placed up at the run's end, step 400
    of 400, "no steps left for it", though its 120 s ran out near step 45. The piped loop looks every 50 ms. Now the
    task loop looks after every push too, and the give-up lands at the step its deadline passed."""
    from downpour.ps.on_ray import RESTART_SECONDS

    runtime = scripted_runtime(monkeypatch, tick=5.0)
    coord = coordinator(2, 400, consistency, depth=1 if consistency == "sync" else 2)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False}})
    c.run_scripted()
    assert coord.done == 400 and c.trained() == list(range(400)) and coord.lost == [1]
    lost, given_up = coord.events[-2:]
    assert (lost["event"], given_up["event"]) == ("worker-lost", "restart-given-up")
    assert given_up["reason"] == f"not up within {RESTART_SECONDS} s"
    # one push (one step) a turn; while the restart waits a turn is two waits of 5 s (the wait, then the look at the
    # restart listed before the push it gave: restarts_on_ray.first_ready): the 120 s run out 24 waits, about 12
    # steps, after the loss (before: 400)
    assert lost["step"] + 10 <= given_up["step"] <= lost["step"] + 15


def test_a_worker_that_dies_waiting_for_a_warm_start_the_run_never_ends_is_lost_at_the_step_it_died(monkeypatch):
    """cluster.warm_start past train.steps: workers 1 and 2 never join, and worker 1's actor dies at step 20. No cycle
    of its failed, so its death went unseen: until 2026-12-04 lost_workers was [] (on a real Ray too, on both loops;
    the piped one is tests/test_ps_ray_lost_workers.py's), and until 2026-12-05 the run's end found it, and recorded
    its loss at step 120. Now the driver asks each waiting worker whether it lives every WATCH_SECONDS (here a wait is
    0.1 s: 10 waits, about 10 steps) and takes its loss then; worker 2, alive, is not lost."""
    from downpour.ps.restarts_on_ray import WATCH_SECONDS

    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(3, STEPS, warm_start=STEPS + 100)
    c = ScriptedCluster(runtime, coord, restarts=0)

    c.run_scripted(_kill_first_actor(coord, 1, 20))
    c.info()                                  # what the run asks once its steps are done (cluster.json's fields)
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.live == {0}
    assert coord.lost == [1] and [e[:2] for e in _events(coord)] == [("worker-lost", 1), ("not-restarted", 1)]
    assert 20 <= coord.events[0]["step"] <= 20 + WATCH_SECONDS / 0.1 + 3      # (a death is told 2 waits late)
    assert coord.events[0]["reason"] == "ActorDiedError while it waited for the warm start"
    assert coord.events[1]["reason"] == "cluster.restarts = 0"


def test_the_workers_waiting_for_the_warm_start_are_looked_at_in_one_wait(monkeypatch):
    """Five workers wait for a warm start past the run, each asked whether it lives every WATCH_SECONDS: each loop
    turn looked at their unanswered questions one ray.wait each (until 2026-12-05: up to 5 looks a turn); now one
    look over all of them (and one over the answers of workers that joined)."""
    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(6, STEPS, warm_start=STEPS + 100)
    c = ScriptedCluster(runtime, coord, restarts=0)
    looks, watch = [], c.watch_waiting

    def counted() -> None:
        before = runtime.waits
        watch()
        looks.append(runtime.waits - before)

    monkeypatch.setattr(c, "watch_waiting", counted)
    c.run_scripted()
    assert coord.done == STEPS and coord.live == {0} and coord.lost == []
    assert max(looks) == 1 and len(looks) >= STEPS


def test_a_worker_lost_waiting_for_the_warm_start_is_restarted_and_waits_again(monkeypatch):
    """warm_start 60 of 120, restarts=1: worker 1 dies at step 20 while it waits. Its replacement waits for the warm
    start like the first actor (worker 0 trains steps 0..59 alone) and joins with worker 2 at step 60."""
    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(3, STEPS, warm_start=60)
    c = ScriptedCluster(runtime, coord, restarts=1)

    c.run_scripted(_kill_first_actor(coord, 1, 20))
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [] and coord.live == {0, 1, 2}
    kinds = [e[0] for e in _events(coord)]
    assert kinds == ["worker-lost", "worker-restarted", "joined"] and _events(coord)[2] == ("joined", [1, 2], 60)
    assert _events(coord)[0][2] < 60 and {w for w, _, first, _ in c.pushes if first < 60} == {0}
    assert any(w == 1 and life == 1 for w, life, *_ in c.pushes)      # the replacement trained after the warm start


@pytest.mark.parametrize("replacement_up", ["after worker 0's loss", "before it"])
def test_once_the_warm_starts_only_worker_dies_a_replacement_of_a_waiting_worker_waits_no_more(monkeypatch,
                                                                                               replacement_up):
    """warm_start 100 of 120, restarts=3: worker 1 dies at step 10 while it waits, worker 0 at step 30, which ends the
    warm start (worker 2, and worker 1's replacement if up and waiting again, join at step 30). Until 2026-12-05
    worker 1's replacement, up after that, waited for step 100 while 0 and 2 trained (its first step 104); one up
    before it joined at 30, but died at step 50 and its next replacement waited for step 100 too (a stale mark)."""
    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(3, STEPS, warm_start=100)
    script = {(0, 0): _dies_at(30)}
    if replacement_up == "after worker 0's loss":
        script[(1, 1)] = {"up": lambda: 0 in coord.lost or coord.done > 30}
    else:
        script[(1, 1)] = _dies_at(50)
    c = ScriptedCluster(runtime, coord, restarts=3, script=script)

    c.run_scripted(_kill_first_actor(coord, 1, 10))
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [] and coord.live == {0, 1, 2}
    assert not any(e[0] == "joined" and e[2] == 100 for e in _events(coord))
    last = max(life for w, life, *_ in c.pushes if w == 1)
    assert min(first for w, life, first, _ in c.pushes if w == 1 and life == last) < 60


def test_the_run_end_asks_live_and_waiting_workers_in_one_wait(runtime):
    """Worker 0 trains (live), workers 1 and 2 wait for a warm start past the run; at its end worker 0 and worker 1
    hang (a node gone silent). Until 2026-12-05 the live ones had their 60 s, then the waiting ones 60 s more: 120 s
    of the stand-in clock. Now one wait of 60 s for all; both silent ones are lost, no restart left for them."""
    coord = coordinator(3, STEPS, warm_start=STEPS + 100)
    c = ScriptedCluster(runtime, coord, restarts=1)
    c.run_scripted()
    c.lives[1].up = lambda: False
    c.lives[0].data_report = type(c.lives[0].cycle)(lambda: scripted_ray.Ref({}, when=lambda: False))
    before = runtime.now
    c.info()
    assert runtime.now - before == 60
    assert coord.lost == [0, 1] and [e["event"] for e in coord.events] == ["worker-lost", "not-restarted"] * 2
    assert [e["reason"] for e in coord.events] == ["GetTimeoutError after its last push", "no steps left for it",
                                                  "GetTimeoutError while it waited for the warm start",
                                                  "no steps left for it"]


def test_the_run_end_asks_every_worker_still_waiting_at_once(runtime):
    """Workers 1, 2 and 3 never join (warm start past the run); 1 and 2 hang (a node gone silent: their answer never
    comes), 3 answers. Until 2026-12-04 info() asked one at a time, 60 s each: 120 s of the stand-in clock for two
    silent workers (16 on a lost node: 16 minutes). Now one wait of 60 s for all of them, and the same outcome."""
    coord = coordinator(4, STEPS, warm_start=STEPS + 100)
    c = ScriptedCluster(runtime, coord, restarts=1)
    c.run_scripted()
    for w in (1, 2):
        c.lives[w].up = lambda: False
    before = runtime.now
    c.info()
    assert coord.lost == [1, 2] and coord.live == {0}
    assert [e["reason"] for e in coord.events if e["event"] == "worker-lost"] == \
        ["GetTimeoutError while it waited for the warm start"] * 2
    assert runtime.now - before == 60


def _faults(coord, tmp_path):
    """The report's Faults line for ``coord``'s events, unescaped."""
    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults
    from downpour.config import load_config
    from downpour.train.rundir import RunDir

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    run.write_json("staleness.json", {"events": coord.events})
    return html.unescape(_cluster_faults(run))


def test_with_no_restarts_each_loss_says_it_was_not_restarted_and_the_report_shows_every_loss(runtime, tmp_path):
    """cluster.restarts = 0, 7 workers, workers 1..6 lost. Until 2026-12-05 each loss was followed by a
    restart-given-up "cluster.restarts = 0" (a restart never tried read as one given up), and the report's Faults
    line, ten entries at most, an event each, showed 5 of the 6 losses. Now the outcome is "not-restarted", and each
    loss is one entry with what came of it."""
    coord = coordinator(7, 240)
    c = ScriptedCluster(runtime, coord, restarts=0, script={(w, 0): _dies_at(20 * w) for w in range(1, 7)})
    c.run_scripted()
    assert coord.done == 240 and c.trained() == list(range(240)) and coord.lost == [1, 2, 3, 4, 5, 6]
    assert [e[0] for e in _events(coord)] == ["worker-lost", "not-restarted"] * 6
    assert {e["reason"] for e in coord.events if e["event"] == "not-restarted"} == {"cluster.restarts = 0"}
    said = _faults(coord, tmp_path)
    assert "given up" not in said and "more (staleness.json" not in said
    for w in range(1, 7):
        assert f"worker {w} lost at step " in said
    assert said.count("(ActorDiedError), not restarted (cluster.restarts = 0)") == 6


def test_a_resume_records_the_workers_it_started_again_and_the_report_says_which_came_back(runtime, tmp_path):
    """restarts=0: worker 1 is lost at step 20 (not restarted) and the run is checkpointed at step 40, then resumed.
    The resume starts every worker again, worker 1 too; until 2026-12-05 nothing in the events said so, and its
    worker-lost / not-restarted read as gone for good while it trained again. Now a ``resumed`` event names the
    workers started, and the report says worker 1 is back."""
    coord = coordinator(2, STEPS)
    saved = {}

    def checkpoint(c):
        if coord.done >= 40 and not saved:
            saved.update(c.state()[0], trained=c.trained(), events=list(coord.events))

    ScriptedCluster(runtime, coord, restarts=0, script={(1, 0): _dies_at(20)}).run_scripted(checkpoint)
    again = coordinator(2, STEPS, start=saved["step"], events=saved["events"])
    second = ScriptedCluster(runtime, again, restarts=0, saved=saved)
    again.resumed()                     # as run_cluster says it once the driver is up, on either runner
    second.run_scripted()
    assert again.done == STEPS and sorted(saved["trained"] + second.trained()) == list(range(STEPS))
    assert {w for w, *_ in second.pushes} == {0, 1}                     # worker 1 trained again
    assert _events(again) == [("worker-lost", 1, 21), ("not-restarted", 1, 21), ("resumed", [0, 1], saved["step"])]
    said = _faults(again, tmp_path)
    assert (f"worker 1 lost at step 21 on node node-a (ActorDiedError), not restarted (cluster.restarts = 0); the run resumed at step "
            f"{saved['step']} with its 2 workers started (worker 1 back after its loss)") in said


def test_a_watch_question_unanswered_when_its_worker_joins_is_read_once_it_answers(monkeypatch):
    """warm_start 60 of 120: worker 2 waits, and the driver asks it once a second whether it lives; its answer is
    held back to step 80, past its join. Until 2026-12-05 a question left when its worker joined was never read: had
    the actor died, Ray would print its error as "Unhandled error" at clean-up. Now it is read once it answers."""
    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(3, STEPS, warm_start=60)
    c = ScriptedCluster(runtime, coord, restarts=0, script={(2, 0): {"up": lambda: coord.done >= 80}})
    asked, node = [], c.lives[2].node.fn
    c.lives[2].node.fn = lambda: asked.append(node()) or asked[-1]
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == []
    assert asked and all(ref.read for ref in asked) and not c._watching and not c._unread


def test_the_piped_loops_end_and_the_run_end_share_one_wait_for_a_stuck_serve_task(runtime, monkeypatch):
    """Worker 1's serve task never ends at the piped loop's end (a stuck task: its actor answers nothing else). Until
    2026-12-05 the loop's end waited 60 s for the live serve tasks, then info() 60 s for the workers' answers: two
    end waits. Now info() waits once for both; worker 1 is lost there, no restart left for it."""
    from types import SimpleNamespace

    from downpour.ps import asking_on_ray, cluster_on_ray, piped_on_ray

    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0)
    c.run_scripted()
    stuck, ended = scripted_ray.Ref(None, when=lambda: False), scripted_ray.Ref(None)
    c._serving = {ended: (0, c.worker_actors[0]), stuck: (1, c.worker_actors[1])}
    c._channels = {w: SimpleNamespace(stop=lambda: None) for w in (0, 1)}
    c.worker_actors[1].data_report = type(c.worker_actors[1].cycle)(lambda: scripted_ray.Ref({}, when=lambda: False))
    waits = []     # (call, timeout) of each Ray wait or get on a future that never answers: an end wait spent

    def noted(name, call):
        def waited(refs, *args, timeout=None, **kw):
            if any(r.held() for r in (refs if isinstance(refs, list) else [refs])):
                waits.append((name, timeout))
            return call(refs, *args, timeout=timeout, **kw)
        return waited

    fake = SimpleNamespace(wait=noted("wait", runtime.wait), get=noted("get", runtime.get), kill=runtime.kill,
                           nodes=runtime.nodes, exceptions=cluster_on_ray.ray.exceptions)
    for module in (cluster_on_ray, asking_on_ray, piped_on_ray):
        monkeypatch.setattr(module, "ray", fake)
    c._run_piped(lambda *a: None)      # (nothing granted: straight to the loop's end)
    c.info()
    assert waits == [("wait", 60)]
    assert coord.lost == [1] and c._serving == {stuck: (1, c.worker_actors[1])}   # worker 0's ended task: read


def test_a_piped_stop_tells_the_workers_to_stop_serving_before_it_asks_their_data_reports(runtime, monkeypatch):
    """On a stop (Ctrl-C, an error) ``data_reports`` asks each live worker its data report, 5 s in all. Piped, a
    worker serves until told to stop, and a serving actor answers nothing else: until 2026-12-05 nothing told it, so
    the wait ran out and data.json had no worker's report (scripted: [] after 5 s of the stand-in clock). Now each is
    told to stop first, its serve task ends and is read in the same wait, and both reports come."""
    from types import SimpleNamespace

    from downpour.ps import cluster_on_ray, piped_on_ray

    monkeypatch.setattr(piped_on_ray, "ray", cluster_on_ray.ray)     # (the stand-in: the serve tasks are read there)
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0)
    stopped = set()
    c.piped = True
    c._channels = {w: SimpleNamespace(stop=lambda w=w: stopped.add(w)) for w in (0, 1)}
    c._serving = {scripted_ray.Ref(0, when=lambda w=w: w in stopped): (w, c.worker_actors[w]) for w in (0, 1)}
    for w in (0, 1):      # queued behind the serve task: answered once it ends
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda: w in stopped))
    before = runtime.now
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]
    assert stopped == {0, 1} and not c._serving and runtime.now == before


def test_a_restart_reads_the_nodes_once_and_places_its_partitions_by_that_read(monkeypatch):
    """RayCluster._spawn itself (the scripted cluster's stands in for it elsewhere), actors stubbed: worker 1's
    replacement, its two partitions first on nodes c and a, node c lost. Earlier on 2026-12-05 the worker's placement
    and then its partitions' each read ray.nodes(): two reads a restart, between which a node could be lost. Now one,
    which places the partitions too: partition 0's node is gone, so b (free of its sibling on a); partition 1 stays
    on a; the worker, pinned to a, stays there."""
    from downpour.ps import cluster_on_ray
    from downpour.ps.cluster_on_ray import RayCluster

    a, b, c = ("a" * 56, "b" * 56, "c" * 56)
    rt = scripted_runtime(monkeypatch, nodes=[a, b, c])
    reads = []
    monkeypatch.setattr(cluster_on_ray.ray, "nodes", lambda: reads.append(1) or rt.nodes())
    cluster = ScriptedCluster(rt, coordinator(2, STEPS), partitions=2)
    assert [cluster.pins[1, p] for p in (0, 1)] == [c, a]
    made = stubbed_spawns(monkeypatch, cluster, 2, 2)
    cluster.pins[1, None] = a
    rt.lose_node(c)
    reads.clear()
    RayCluster._spawn(cluster, 1, 0, 20)
    assert len(reads) == 1 and made == [b, a, a]      # partitions 0 and 1, then the worker


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
    step is trained once; one partition-restarted event, no worker lost. Until 2026-12-06 worker 0 was lost and
    restarted whole."""
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
    no actor of the run had, environment.json's ``nodes`` gain it (``on_nodes``), once. Until 2026-12-07 it was asked
    its node alone, and the record listed the start's nodes to the end."""
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
    push takes again, after the worker took the new partition. Until 2026-12-06 nothing dropped them, and an inbox is
    never overwritten: the next push's stage waited on the stale slice, which no ring takes, and failed after
    INBOX_WAIT_SECONDS (tests/test_ps_doorbell.py shows the inbox)."""
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
    stand-ins are real (shared memory): partition 1's shard gave worker 0 a fresh inbox before the new partition
    started, which maps it, so the late slice lands in the retired one, refused and counted (``fenced``), and the new
    partition stages the same seq at once, its own slice applied. Until 2026-12-06 the inbox was kept: the late slice
    sat where the retried push stages, which waited INBOX_WAIT_SECONDS on it and failed (the replica then
    restarted); shard 0, of partition 0, which lived, keeps its inbox."""
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


def test_with_no_restart_left_a_lost_partition_asks_nothing_before_its_replica_is_lost(monkeypatch):
    """cluster.restarts = 0: a cycle failed by a dead partition loses its replica at once, as before partitions were
    restarted alone: no actor is asked whether it lives (each question may wait ASK_SECONDS, the driver held up)."""
    asked = []
    monkeypatch.setattr(partition_restarts_on_ray, "_answers", lambda actor: asked.append(actor) or True)
    cluster, coord = _losing_partition_1(monkeypatch, restarts=0)
    cluster.run_scripted()
    assert [(e["event"], e["worker"]) for e in coord.events if e["event"] != "joined"] == \
        [("worker-lost", 0), ("not-restarted", 0)]
    assert asked == []


@pytest.mark.parametrize("wait", ["its first answer", "the hand-over"])
def test_a_stop_while_a_new_partition_comes_up_is_let_through(monkeypatch, wait):
    """A Ctrl-C while the driver waits (up to PARTITION_SECONDS each, every survivor held up) for the new partition's
    first answer, or for the worker to take it, stops the run there, not once the restart is done: nothing is recorded
    as restarted, and the new partition's actor, not the run's yet, is killed. Until the 2026-12-06 review the
    hand-over's wait held the stop, and a stop in the first wait left the new actor running."""
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


def test_a_piped_stop_frees_the_inboxes_a_worker_staging_ahead_waits_on(runtime, monkeypatch):
    """A piped worker granted cycles ahead (queue depth 2) stages each push in its shards' inboxes, and the next
    ``put`` waits until the shard takes the last one: on a stop no ring takes it, so the worker waited 60 s mid-cycle,
    its serve task (and its data report behind it) did not end within the 5 s, and data.json had no worker's report
    (until 2026-12-06: Ctrl-C of a streamed one-node Ray run, 3,003 files, 6 skipped: data.json named none). Now the
    shards drop what waits, again every 0.05 s, and both reports come: the queued cycle's staging, blocked again
    by the first drop, costs one short round, not (until later that day) a round's whole 1 s wait."""
    from types import SimpleNamespace

    from downpour.ps import asking_on_ray, cluster_on_ray, piped_on_ray

    monkeypatch.setattr(piped_on_ray, "ray", cluster_on_ray.ray)
    monkeypatch.setattr(asking_on_ray, "ray", cluster_on_ray.ray)
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0)
    stopped, shard = set(), c.shard_actors[0]
    c.piped = True
    c._channels = {w: SimpleNamespace(stop=lambda w=w: stopped.add(w)) for w in (0, 1)}

    def served(w: int) -> bool:   # stopped, and its blocked cycle's and its queued cycle's stagings let through
        return w in stopped and sum(d[0] == w for d in shard.dropped) >= 2

    c._serving = {scripted_ray.Ref(0, when=lambda w=w: served(w)): (w, c.worker_actors[w]) for w in (0, 1)}
    for w in (0, 1):
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda w=w: served(w)))
    began = runtime.now
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]
    assert not c._serving and {w for w, _ in shard.dropped} == {0, 1}
    assert runtime.now - began <= 2 * asking_on_ray.DROP_ROUND_SECONDS   # (the scripted Ray's clock)


def test_a_piped_stop_with_a_shard_lost_still_asks_the_workers_their_data_reports(runtime, monkeypatch):
    """The inboxes' drop on a stop (above) is asked of every shard: one lost (a lost shard stops the run) answers
    ActorDiedError, and the reports are asked all the same, not the whole data.json lost to that error."""
    from types import SimpleNamespace

    from downpour.ps import asking_on_ray, cluster_on_ray, piped_on_ray

    monkeypatch.setattr(piped_on_ray, "ray", cluster_on_ray.ray)
    monkeypatch.setattr(asking_on_ray, "ray", cluster_on_ray.ray)
    c = ScriptedCluster(runtime, coordinator(2, STEPS), restarts=0)
    stopped = set()
    c.piped = True
    c._channels = {w: SimpleNamespace(stop=lambda w=w: stopped.add(w)) for w in (0, 1)}
    c.shard_actors[0].drop_inbox = type(c.shard_actors[0].flush)(
        lambda w, seq: scripted_ray.Ref(error=cluster_on_ray.ray.exceptions.ActorDiedError()))
    c._serving = {scripted_ray.Ref(0, when=lambda w=w: w in stopped): (w, c.worker_actors[w]) for w in (0, 1)}
    for w in (0, 1):
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda w=w: w in stopped))
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]


def test_a_stop_on_ray_tasks_frees_the_inboxes_a_worker_staging_ahead_waits_on(runtime, monkeypatch):
    """The same stop on Ray's task path (a run over more than one node, or cluster.partitions > 1: no channels): a
    worker on a shard's node stages in its inbox, its next queued cycle (queue depth 2) waits for the shard to take
    the last push, which no ring will now, and its data report, queued behind that cycle on the actor, did not come
    within the 5 s (until 2026-12-06 only the piped path dropped what waits). Now the shards drop it here too."""
    from downpour.ps import asking_on_ray, cluster_on_ray

    monkeypatch.setattr(asking_on_ray, "ray", cluster_on_ray.ray)
    c = ScriptedCluster(runtime, coordinator(2, STEPS), restarts=0)
    shard = c.shard_actors[0]

    def staged(w: int) -> bool:   # its blocked cycle's staging let through
        return any(d[0] == w for d in shard.dropped)

    c._pending = {scripted_ray.Ref({}, when=lambda w=w: staged(w)): ("cycle", w) for w in (0, 1)}
    for w in (0, 1):
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda w=w: staged(w)))
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]
    assert {w for w, _ in shard.dropped} == {0, 1}


def test_a_stop_with_a_shard_lost_goes_on_freeing_the_live_shards_inboxes_for_every_queued_cycle(runtime, monkeypatch):
    """Shard 0 is lost (its drop answers ActorDiedError; a worker waiting on its inbox sees it gone itself:
    tests/test_ps_shm.py), shard 1 lives, and each worker has a second cycle queued (queue depth 2) that waits on
    shard 1's inbox once the first is let through. Until 2026-12-06 the lost shard's error ended the drops after the
    first round, the second cycle stayed blocked, and its worker's data report, queued behind it, was lost to the
    stop's 5 s wait (data.json: no worker's report). Now the lost shard is asked no more and the rounds go on."""
    from downpour.ps import asking_on_ray, cluster_on_ray

    monkeypatch.setattr(asking_on_ray, "ray", cluster_on_ray.ray)
    c = ScriptedCluster(runtime, coordinator(2, STEPS), restarts=0, shards=2)
    lost, live = c.shard_actors
    died = cluster_on_ray.ray.exceptions.ActorDiedError
    lost.drop_inbox = type(lost.flush)(lambda w, seq: scripted_ray.Ref(error=died()))

    def staged(w: int) -> bool:   # both its cycles' stagings on shard 1 let through
        return sum(d[0] == w for d in live.dropped) >= 2

    c._pending = {scripted_ray.Ref({}, when=lambda w=w: staged(w)): ("cycle", w) for w in (0, 1)}
    for w in (0, 1):
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda w=w: staged(w)))
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]
