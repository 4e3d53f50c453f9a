"""Sandblaster on Ray: a run on the shared local Ray takes the reference steps (tests/sandblaster_runs.py) and backs up
its straggler; a start with no room, there and on stand-in nodes, names the room where its workers were pinned; a
pool on three stand-in nodes places its shards after its workers, and a lost shard ends the run naming it and its
node."""
import json
import logging

import pytest
from ray_kill import kill_and_wait
from sandblaster_runs import _cfg, _full_batch, _reference_lbfgs

from downpour.errors import RunError
from downpour.runners import train
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


# -- Ray ----------------------------------------------------------------------------------------
ray = pytest.importorskip("ray")


def test_a_ray_run_trains_takes_the_reference_steps_and_backs_up_the_straggler(tmp_path, local_ray, caplog):
    """The straggler was 20x slower: whether it was late, and whether it finished a unit within the run, both
    hung on the machine's load (its sleep is 19x its own compute time, load included, while the backups compare
    against the other worker's round trips): under heavy load the test failed. Now its sleep, 10^6 times a
    unit's compute, outlasts the run, so what follows holds whatever the timing: in the first evaluation worker
    0 computes the other 7 units one after another while unit 1 runs, so unit 1 has run at least the 6 later
    ones' time, 3x their median or more (at least 3 of those 6 are >= it): late (1.5x), it is backed up.
    The straggler's T (5 s) is the simulator's latency, unread on Ray: --delay straggler:5:10 is refused on the
    command line (tests/test_cli_refusals_runner_keys.py); from a config file, or a run started so before 2026-12-06 and resumed,
    T was taken and did nothing, unsaid: a WARNING says it, and the run is straggler:0:1e6's, the reference steps.
    (Until 2026-12-06 the WARNING was a test of its own, a second run: 3 actor processes more.)"""
    # float64, so the iterates must be the textbook ones: a unit added twice (or lost) on the way from
    # the worker actors to the shard actors would change the gradient, and every step after it
    cfg = _cfg("cluster.runner=ray", "cluster.workers=2", "cluster.shards=2", "sandblaster.units=8",
               "sandblaster.backup_after=0", "cluster.delay=straggler:5:1e6", "sandblaster.precision=float64",
               "train.steps=3")
    with caplog.at_level(logging.WARNING, logger="downpour.sandblaster.on_ray"):
        summary = train(cfg, RunDir.create(tmp_path / "r", cfg))
    assert ("cluster.delay = 'straggler:5:1e+06': on Ray, Sandblaster's last worker only sleeps FACTOR - 1 times its "
            "compute after each unit (FACTOR >= 1); T, the simulator's latency, is not read there: write "
            "straggler:0:1e+06, or use --runner simulated; it runs as straggler:0:1e+06") in caplog.text
    losses = [r["loss"] for r in RunDir.open(tmp_path / "r").metrics()]
    fg, w0, _ = _full_batch(cfg)
    _, reference = _reference_lbfgs(fg, w0, 3, cfg.sandblaster.history)
    assert losses == pytest.approx(reference, rel=1e-9) and all(b < a for a, b in zip(losses, losses[1:]))
    assert summary["runner"] == "ray" and summary["backups"] >= 1 and summary["backups_won"] >= 1
    assert summary["per_worker"]["0"]["used"] == 8 * summary["evaluations"]        # every unit, once, from worker 0
    assert summary["per_worker"]["1"] == {"units": 0, "used": 0}
    # the pool's node, its install the driver's (downpour.ps.node_environments: a node of another numpy is warned of)
    here = ray.get_runtime_context().get_node_id()
    address = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == here)
    assert json.loads((tmp_path / "r" / "environment.json").read_text())["nodes"] == {address: {}}


def test_a_ray_start_with_no_room_fails_naming_no_setting_sandblaster_refuses(tmp_path, local_ray, monkeypatch):
    """Every CPU held by another job's actor: the start fails after its limit (Downpour's,
    tests/test_ps_ray_driver_room.py), and its line told a Sandblaster run to set cluster.silent_seconds or
    cluster.worker_gpus, each of which the run refuses (cli_flags.SANDBLASTER_READS); nothing lengthens its start's
    wait."""
    from ray_room import Hog, workers_start_within

    from downpour.sandblaster import on_ray

    # 1 s, not 4: the Hog holds every CPU for good, so no worker starts however long the start waits (its shard's
    # own wait keeps 600 s: workers_start_within)
    workers_start_within(monkeypatch, on_ray, 1.0)
    hog = Hog.remote()
    ray.get(hog.ping.remote())                                   # every CPU taken
    # (one shard: its 0-CPU actor starts all the same, and the line is the workers'; a shard fewer to start, 2026-12-06)
    cfg = _cfg("cluster.runner=ray", "cluster.workers=2", "cluster.shards=1", "train.steps=3")
    try:
        with pytest.raises(RunError, match=r"could not start 2 of 2 worker actors within 1 s: each asks CPU 1; the "
                                           r"cluster has CPU 0 of 2 free\. .* ask for less \(cluster\.workers\), "
                                           r"or, for a cluster still adding nodes, start the run once it has them"
                           ) as err:
            train(cfg, RunDir.create(tmp_path / "r", cfg))
        assert "silent_seconds" not in str(err.value) and "worker_gpus" not in str(err.value)
    finally:
        ray.kill(hog)


def test_a_shard_killed_mid_run_ends_it_naming_the_shard_and_sandblaster_json_keeps_where_each_actor_ran(
        tmp_path, local_ray, monkeypatch, caplog):
    """A shard actor killed after the first iteration (as its node's loss does): the run ends naming that shard, found
    by the actor id its start report gave against the error's ``actor_id`` (Ray's public ids, on a real Ray), and its
    sandblaster.json keeps where each actor ran, how far it got and what stopped it. Until 2026-12-07 a failed run
    wrote no sandblaster.json: its placement was only in the error's text."""
    from downpour.sandblaster import lbfgs

    cfg = _cfg("cluster.runner=ray", "cluster.workers=1", "cluster.shards=2", "sandblaster.units=2", "train.steps=4")
    real, killed = lbfgs.Coordinator.commit, []

    def commit_then_kill(self, step):
        real(self, step)
        if not killed:
            killed.append(self.shards.ids[1])
            kill_and_wait(self.shards.actors[1])     # (ray.kill alone: the run could stop an iteration late)

    monkeypatch.setattr(lbfgs.Coordinator, "commit", commit_then_kill)
    here = ray.get_runtime_context().get_node_id()
    with pytest.raises(RunError, match=rf"^sandblaster shard 1 was lost on node {here[:8]} at \S+ \(\w+Error\): the "
                                       "shards hold the parameters") as err:
        train(cfg, RunDir.create(tmp_path / "r", cfg))
    record = json.loads((tmp_path / "r" / "sandblaster.json").read_text())
    assert record["stopped"] == {"step": 1, "steps": 4, "by": f"RunError: {err.value}"}
    assert record["steps"] == 1 and record["evaluations"] >= 2 and record["stop"] is None and not record["converged"]
    assert record["node_ids"] == [here] and record["placement"] == {"shards": [0, 0], "workers": [0]}
    assert record["lost_workers"] == {} and record["start_seconds"] > 0 and len(record["batches"]) >= 2


def test_a_ray_start_on_several_nodes_names_the_room_on_the_node_each_worker_was_pinned_to(monkeypatch):
    """Two nodes of 4 CPUs, node a's all held by another job: worker 0, pinned to node a (the placer pins a CPU worker
    round-robin, hard, as Downpour's), cannot start. Its line read "the cluster has CPU 4 of 8 free", summed over the
    nodes: the pool did not say where it had pinned its actors. Now it names node a's room, as Downpour's start does
    (tests/test_ps_ray_driver_room.py). (Stand-in two-node Ray and actors.)"""
    from types import SimpleNamespace

    from ray_room import two_nodes_one_full

    from downpour.sandblaster import on_ray

    stand_in = two_nodes_one_full(monkeypatch, ready=lambda ref: ref != "worker0")

    class Actor:
        def __init__(self, kind):
            self.kind = kind

        def options(self, **_):
            return self

        def remote(self, *args):
            label = f"worker{args[1]}" if self.kind == "worker" else "shard"   # (cfg, w, ...) / (shard,)
            return SimpleNamespace(start_report=SimpleNamespace(remote=lambda: label))

    monkeypatch.setattr(on_ray, "ray", SimpleNamespace(nodes=stand_in.nodes, put=lambda value: value,
                                                       cluster_resources=stand_in.cluster_resources))
    pool = _unstarted_pool(monkeypatch, Actor("shard"), Actor("worker"))
    setup = SimpleNamespace(data=SimpleNamespace(x=None, y=None), model=None, bounds=[])
    with pytest.raises(RunError, match=r"could not start 1 of 2 worker actors within \d+ s: each asks CPU 1; 1 pinned "
                                       r"to node aaaaaaaa, which has CPU 0 of 4 free\. "):
        pool._start(setup, [object(), object()])
    # train.threads = 0: each worker runs its node's 4 CPUs (one worker pinned to each), not the driver's 64 cores / 2
    # (until 2026-12-06, as Downpour's: tests/test_ps_placement.py)
    threads: list[int] = []
    monkeypatch.setattr(on_ray, "WorkerActor", SimpleNamespace(options=lambda **_: SimpleNamespace(
        remote=lambda *args: threads.append(args[5]) or Actor("worker").remote(*args))))
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    pool.cfg.train.threads = 0
    with pytest.raises(RunError, match="could not start 1 of 2 worker actors"):
        pool._start(setup, [object(), object()])
    assert threads == [4, 4]


def _unstarted_pool(monkeypatch, shard_actor, worker_actor):
    """A RayPool of 2 workers, not started (its ``_start`` is the test's), whose actors are the stand-ins given, its
    speeds, straggler warning and frozen parameters none (its stand-in cfg lacks their keys)."""
    from types import SimpleNamespace

    from downpour.sandblaster import on_ray

    monkeypatch.setattr(on_ray, "ShardActor", shard_actor)
    monkeypatch.setattr(on_ray, "WorkerActor", worker_actor)
    monkeypatch.setattr(on_ray, "speed_factors", lambda spec, n: [1.0] * n)
    monkeypatch.setattr(on_ray, "ray_straggler_warning", lambda cfg: None)
    monkeypatch.setattr(on_ray, "frozen_params", lambda model: None)
    pool = on_ray.RayPool.__new__(on_ray.RayPool)
    pool.cfg = SimpleNamespace(cluster=SimpleNamespace(workers=2, spec=lambda key: ("constant", [0.0])),
                               train=SimpleNamespace(threads=1))
    return pool


def _three_node_pool(monkeypatch):
    """A RayPool started on a stand-in Ray of three 1-CPU nodes (ids a..., b..., c... at 10.0.0.1-3), 2 workers and 2
    shards, every actor up at once and answering its start with the node it was pinned to (None: Ray's choice) and an
    actor id of its own ("actor-0", "actor-1", ... in the order they were made: the shards' first)."""
    from types import SimpleNamespace

    from downpour.ps import asking_on_ray, connect_on_ray
    from downpour.sandblaster import on_ray

    ids = [c * 56 for c in "abc"]
    stand_in = SimpleNamespace(
        wait=lambda refs, num_returns, timeout: (list(refs), []), get=lambda refs: refs, put=lambda value: value,
        nodes=lambda: [{"NodeID": n, "Alive": True, "Resources": {"CPU": 1.0}, "NodeManagerAddress": f"10.0.0.{i + 1}"}
                       for i, n in enumerate(ids)])
    for module in (connect_on_ray, asking_on_ray, on_ray):
        monkeypatch.setattr(module, "ray", stand_in)

    made = iter(range(100))

    class Actor:
        def options(self, **options):
            node = connect_on_ray.pinned(options)
            return SimpleNamespace(remote=lambda *args, i=next(made): SimpleNamespace(start_report=SimpleNamespace(
                remote=lambda: {"node": node, "environment": {}, "actor": f"actor-{i}"})))

    pool = _unstarted_pool(monkeypatch, Actor(), Actor())
    pool.ray_info, pool.lost = {"address": "HEAD:6379"}, {}
    pool._start(SimpleNamespace(data=SimpleNamespace(x=None, y=None), model=None, bounds=[]), [object(), object()])
    return pool, ids


def test_a_ray_pool_on_three_nodes_puts_its_shards_after_its_workers_and_names_the_nodes(monkeypatch):
    """Two workers and two shards on three nodes, by Downpour's one running index over both kinds
    (connect_on_ray.spot): workers on nodes 0, 1, shards on 2, 0. Until 2026-12-07 each kind counted from the first
    node: shard j beside worker j, node c left empty (seen on a 3-node Ray: "nodes": 2). sandblaster.json names the
    nodes its placement numbers stand for (node_ids, node_addresses: until then the numbers alone, which the report
    could not read)."""
    pool, (a, b, c) = _three_node_pool(monkeypatch)
    assert pool.placement == {"shards": [c, a], "workers": [a, b]}
    info = pool.info()
    assert info["nodes"] == 3 and info["placement"] == {"shards": [2, 0], "workers": [0, 1]}
    assert info["node_ids"] == [a, b, c] and info["node_addresses"] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_a_lost_shard_ends_a_sandblaster_ray_run_naming_the_shard_and_its_node(monkeypatch):
    """A shard's node removed mid-run (a 3-node Ray, 2026-12-07): the run ended in a traceback of Ray's ActorDiedError,
    from the driver's wait for the shards' sums. Now a RunError says which shard, on which node, and why it ends. The
    shard is found by the actor id its start report gave (Ray's public ``get_actor_id``) against the error's public
    ``actor_id``; the stand-in handles here have no private ``_actor_id`` (until 2026-12-07 read from the handles)."""
    from ray.exceptions import ActorDiedError

    from downpour.sandblaster import on_ray

    pool, (a, b, c) = _three_node_pool(monkeypatch)
    assert pool.group.ids == ["actor-0", "actor-1"] and not hasattr(pool.group.actors[1], "_actor_id")

    def died(refs):
        err = ActorDiedError()
        err.actor_id = "actor-1"
        raise err

    monkeypatch.setattr(on_ray.ray, "get", died)
    with pytest.raises(RunError, match=r"^sandblaster shard 1 was lost on node aaaaaaaa at 10\.0\.0\.1 "
                                       r"\(ActorDiedError\): the shards hold the parameters, the gradient and"):
        pool.group.get(["ref"])
    said = on_ray.shard_lost(ActorDiedError(), pool.group.ids, pool.group.nodes, pool.group.addresses)
    assert str(said).startswith("a sandblaster shard was lost (ActorDiedError): ")   # an error naming no actor
