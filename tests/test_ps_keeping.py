"""What a Ray run leaves to the next run inside a keeping (downpour/ps/keeping_on_ray.py): only a run that ended
whole, and each actor only to a start that places it as it was. No Ray is started here."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from downpour.ps.cluster_on_ray import RayCluster
from downpour.ps.keeping_on_ray import Keeping, kept, keeping


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


def test_a_start_takes_the_actors_placed_as_its_own_and_kills_the_rest(monkeypatch):
    import ray

    killed = []
    monkeypatch.setattr(ray, "kill", killed.append)
    keep = Keeping()
    keep.give({("shard", 0, None): "s0", ("worker", 0, None, 1.0, 0.0): "w0", ("worker", 1, None, 1.0, 0.0): "w1"})
    taken = keep.take([("shard", 0, None), ("worker", 0, None, 2.0, 0.0), ("worker", 1, None, 1.0, 0.0)])
    assert taken == {("shard", 0, None): "s0", ("worker", 1, None, 1.0, 0.0): "w1"}   # w0 asked other CPUs
    assert keep.actors == {} and killed == ["w0"]
    keep.give({("shard", 0, None): "s1"})
    keep.close()
    assert killed == ["w0", "s1"] and keep.actors == {}
