"""The Ray driver's start: every actor of a run started at once, the shards' first answers awaited with the workers'
processes already starting (until 2026-12-06 the workers were started only once every shard had answered: a fresh
process importing torch each, one after the other, most of a short run's start)."""
import ray
import pytest
from ray_room import Hog, workers_start_within

import downpour.ps.cluster_on_ray as driver_module


def test_the_workers_are_started_before_the_shards_first_answers_are_awaited(local_ray, tmp_path, monkeypatch):
    """The worker actors exist (named, asked of Ray) when the driver waits for the shards; here Ray has no room for
    them (another job holds every CPU), so the start then fails on them, as before, after their limit (4 s)."""
    from downpour.config import load_config
    from downpour.errors import RunError
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    workers_start_within(monkeypatch, driver_module, 4.0)
    seen: dict[str, list[str]] = {}
    wait = driver_module.gathered

    def gathered(refs, what, *more, **named):
        seen.setdefault(what, sorted(a for a in ray.util.list_named_actors() if "-worker" in a))
        return wait(refs, what, *more, **named)

    monkeypatch.setattr(driver_module, "gathered", gathered)
    hog = Hog.remote()
    ray.get(hog.ping.remote())                                   # every CPU taken: the workers wait for room
    cfg = load_config("ufldl-sae", ["cluster.runner=ray", "data.samples=64", "train.batch_size=8", "train.steps=12",
                                    "cluster.workers=2", "cluster.shards=2", "train.tensorboard=false"])
    try:
        with pytest.raises(RunError, match=r"could not start 2 of 2 worker actors within 4 s"):
            run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
    finally:
        ray.kill(hog)
    assert [name.rsplit("-", 1)[-1] for name in seen["shard actors"]] == ["worker0", "worker1"]
