"""What a Ray run leaves to the next run inside a keeping (downpour/ps/keeping_on_ray.py): only a run that ended
whole, and each actor only to a start that places it as it was. No Ray is started here."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from downpour.ps.cluster_on_ray import RayCluster
from downpour.ps.keeping_on_ray import Keeping, died, kept, keeping


def ended(**changed):
    """A Ray driver's state at its close, as ``RayCluster._keeping`` reads it: a run that ended whole, but for
    ``changed``; with no actors (every one answers)."""
    state = {"ran": True, "coord": SimpleNamespace(lost=[]), "partition_actors": {}, "gpus": 0.0, "started": False,
             "_incarnation": [1, 1], "shard_actors": [], "shard_pins": [], "worker_actors": []}
    return SimpleNamespace(**{**state, **changed})


def test_a_run_that_ended_whole_leaves_its_actors_to_the_keeping_in_force_and_none_outside_one():
    assert RayCluster._keeping(ended()) is None
    with keeping() as keep:
        assert RayCluster._keeping(ended()) is keep
        with keeping() as inner:              # one inside another: the outer one
            assert inner is keep and kept() is keep
    assert kept() is None


@pytest.mark.parametrize("changed", [{"ran": False}, {"coord": SimpleNamespace(lost=[1])}, {"_incarnation": [1, 2]},
                                     {"partition_actors": {0: ["a"]}}, {"gpus": 1.0}, {"started": True},
                                     {"shard_actors": ["a"]}],
                         ids=["stopped", "a worker lost", "a worker restarted", "partitions", "gpus",
                              "its own ray, shut down at its close", "a shard without its pin"])
def test_a_run_that_did_not_end_whole_keeps_nothing(changed):
    with keeping():
        assert RayCluster._keeping(ended(**changed)) is None


def test_asking_no_actors_starts_no_ray():
    import ray

    assert Keeping.keepable([]) and not ray.is_initialized()   # (ray.get([]) started one, which the next module's
    #                                                              local_ray found up: "ray.init twice")


class Actor:
    """A kept actor's stand-in: ``node.remote()`` is its own answer, which ``ray.get`` raises for a dead one and
    ``ray.wait`` never has ready for a hung one."""

    def __init__(self, name: str, state: str = "alive"):
        self.name, self.state = name, state
        self.node = SimpleNamespace(remote=lambda: self)
        self.close = SimpleNamespace(remote=lambda: self)   # (a shard's: it removes its shared memory)

    def __repr__(self) -> str:
        return self.name


@pytest.fixture
def killed(monkeypatch):
    """The stand-ins ``ray.kill`` was called with, in order (``ray.wait`` and ``ray.get`` answer for them)."""
    import ray

    def get(refs, timeout=None):
        if any(ref.state == "dead" for ref in refs):
            raise ray.exceptions.RayActorError()   # (a dead actor's answer)
        return ["node"] * len(refs)

    out = []
    monkeypatch.setattr(ray, "kill", out.append)
    monkeypatch.setattr(ray, "wait", lambda refs, num_returns, timeout: ([r for r in refs if r.state != "hung"],
                                                                         [r for r in refs if r.state == "hung"]))
    monkeypatch.setattr(ray, "get", get)
    return out


def test_a_start_takes_the_actors_placed_as_its_own_and_kills_the_rest(killed):
    s0, w0, w1, s1 = Actor("s0"), Actor("w0"), Actor("w1"), Actor("s1")
    keep = Keeping()
    keep.give({("shard", 0, None): s0, ("worker", 0, None, 1.0, 0.0): w0, ("worker", 1, None, 1.0, 0.0): w1})
    taken = keep.take([("shard", 0, None), ("worker", 0, None, 2.0, 0.0), ("worker", 1, None, 1.0, 0.0)])
    assert taken == {("shard", 0, None): s0, ("worker", 1, None, 1.0, 0.0): w1}   # w0 asked other CPUs
    assert keep.actors == {} and killed == [w0]
    keep.give({("shard", 0, None): s1})
    keep.close()
    assert killed == [w0, s1] and keep.actors == {}


def test_a_kept_actor_that_died_or_hangs_since_is_killed_not_taken(killed):
    """One that died between the runs or does not answer is not handed over: the start starts it anew (one that dies
    after this check: ``died``)."""
    alive, dead, hung = Actor("alive"), Actor("dead", "dead"), Actor("hung", "hung")
    keep = Keeping()
    keep.give({("shard", 0, None): alive, ("shard", 1, None): dead, ("worker", 0, None, 1.0, 0.0): hung})
    taken = keep.take([("shard", 0, None), ("shard", 1, None), ("worker", 0, None, 1.0, 0.0)])
    assert taken == {("shard", 0, None): alive}
    assert sorted(map(repr, killed)) == ["dead", "hung"] and keep.actors == {}
    assert not Keeping.keepable([alive, dead]) and Keeping.keepable([alive])


@pytest.mark.parametrize("pins", ["kept", "cleared"])
def test_a_second_close_of_a_kept_run_kills_nothing_it_gave_the_keeping(killed, pins):
    """A run that ended whole gives its 2 shards and 2 workers to the keeping at its close; a second close (the
    driver's ``finally`` after a close that raised, say) keeps nothing and kills nothing, even with the start's
    ``shard_pins`` cleared ("cleared"): else the second close gives the keeping an empty run, whose ``give`` kills the
    4 actors the first close kept."""
    run = object.__new__(RayCluster)   # (no start: the state a start and a whole run leave, with stand-in actors)
    shards, workers = [Actor("s0"), Actor("s1")], [Actor("w0"), Actor("w1")]
    vars(run).update(vars(ended(shard_actors=list(shards), shard_pins=[None, None], worker_actors=list(workers))),
                     pusher=None, _channels={}, reused={}, run_id="no-such-run", pins={}, per_worker=1.0,
                     lanes=[None, None],   # (the shards' answers: no shared memory)
                     setup=SimpleNamespace(cfg=SimpleNamespace(cluster=SimpleNamespace(workers=2))))
    with keeping() as keep:
        run.close()
        assert sorted(map(repr, keep.actors.values())) == ["s0", "s1", "w0", "w1"] and killed == []
        if pins == "cleared":
            run.shard_pins = []
        run.close()
        assert sorted(map(repr, keep.actors.values())) == ["s0", "s1", "w0", "w1"] and killed == []


@pytest.mark.parametrize("cause", [ValueError("a bug in again"), "an actor it asked died"])
def test_a_rebuild_that_died_is_told_from_one_that_raised(monkeypatch, cause):
    """``died``: a kept actor's ``again`` whose actor died (RayActorError: the start starts a new one in its place) is
    told from an error ``again`` raised (RayTaskError, even of a RayActorError: a worker's rebuild waits for a shard
    that died), which fails the start; an answer not ready yet is left to the start's wait."""
    import ray
    from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

    raised = RayTaskError("again", "Traceback", RayActorError() if isinstance(cause, str) else cause)
    errors = {"dead": ActorDiedError(), "raised": raised.as_instanceof_cause()}

    def get(ref, timeout=None):
        if ref in errors:
            raise errors[ref]
        return {"node": "n"}

    monkeypatch.setattr(ray, "wait", lambda refs, num_returns, timeout: ([r for r in refs if r != "slow"],
                                                                         [r for r in refs if r == "slow"]))
    monkeypatch.setattr(ray, "get", get)
    assert died({}, 1.0) == ({}, [])
    assert died({("shard", 0): "alive", ("shard", 1): "dead", ("worker", 0): "slow"}, 1.0) == (
        {("shard", 1): errors["dead"]}, [("worker", 0)])
    with pytest.raises(RayTaskError) as caught:
        died({("shard", 0): "dead", ("worker", 0): "raised"}, 1.0)
    assert caught.value is errors["raised"]


@pytest.mark.parametrize("kind", ["shard", "worker"])
@pytest.mark.parametrize("rebuild", ["hung", "died"])
def test_a_kept_rebuild_that_hangs_costs_the_start_its_limit_once(monkeypatch, kind, rebuild):
    """A kept actor's ``again`` that hangs (not ready in the start's limit) was waited for twice before the start
    failed: the limit in ``died``, then the limit again in the kind's own wait (``gathered``). It gets the limit once
    in all (the timeouts Ray's wait was given, summed), and the start fails naming it. One that died is replaced, and
    the new actor's wait gets the whole limit (the timeouts: ``died``'s, the wait's)."""
    from ray.exceptions import ActorDiedError
    from ray_room import two_nodes_one_full

    from downpour.errors import RunError
    from downpour.ps import keeping_on_ray
    from downpour.ps.connect_on_ray import gathered

    stand_in = two_nodes_one_full(monkeypatch, ready=lambda ref: ref != "hung")
    waits, answered = [], stand_in.wait

    def wait(refs, num_returns, timeout):
        waits.append(timeout)
        return answered(refs, num_returns, timeout)

    def get(refs):
        if refs == "died":
            raise ActorDiedError()
        return refs

    stand_in.wait, stand_in.get = wait, get
    monkeypatch.setattr(keeping_on_ray, "ray", stand_in)
    answer = SimpleNamespace(remote=lambda: "new")
    new = SimpleNamespace(lanes=answer, start_report=answer)
    run = object.__new__(RayCluster)   # (the state a start leaves: kind's actor 0 kept and rebuilding, 1 fresh)
    vars(run).update(anew={(kind, 0): lambda: new}, actor_starts={kind + "s": ["kept", "fresh"]},
                     shard_actors=["kept", "fresh"], worker_actors=["kept", "fresh"], lanes=[rebuild, "fresh"],
                     reborn={0: rebuild})
    spent = run._replace_dead(kind, run.lanes if kind == "shard" else run.reborn, 60.0)
    refs = run.lanes if kind == "shard" else [run.reborn.get(0) or run.worker_actors[0].start_report.remote(), "fresh"]
    if rebuild == "hung":
        with pytest.raises(RunError, match=f"could not start 1 of 2 {kind} actors within 60 s"):
            gathered(refs, f"{kind} actors", 60.0, waited=spent)
        assert sum(waits) == 60.0
    else:
        assert gathered(refs, f"{kind} actors", 60.0, waited=spent) == ["new", "fresh"]
        assert waits == [60.0, 60.0] and run.actor_starts[kind + "s"] == ["fresh: the kept one died", "fresh"]
