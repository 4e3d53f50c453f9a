"""The Ray driver's start: every actor of a run started at once, the shards' first answers awaited with the workers'
processes already starting, not once every shard has answered (a fresh process importing torch each, one after the
other, would be most of a short run's start)."""
import os
from pathlib import Path

import ray
import pytest
from ray_room import Hog

import downpour.ps.starting_on_ray as starting


class _Seen(Exception):
    """Raised by the stand-in wait once it has seen which workers exist: the start goes no further."""


def test_the_workers_are_started_before_the_shards_first_answers_are_awaited(local_ray, tmp_path, monkeypatch):
    """The worker actors exist (named, asked of Ray) when the driver first waits, for the shards; the start is then
    stopped there (closed, its actors killed). Ray has no room for the workers (another job holds every CPU), so
    their processes never start. The stopped start's close does not wait for the shards, still coming up, only to
    close them: it kills them (their first answers are errors, not their lanes) and leaves none of their shared
    memory. (The failed start's words, with the workers started beside the shards: test_ps_ray_driver_room's tests.)"""
    from downpour.config import load_config
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    seen: list[str] = []
    lanes: list = []
    segments = set(Path("/dev/shm").glob(f"downpour-{os.getpid()}-*"))

    def gathered(refs, what, *more, **named):
        seen.extend(sorted(a for a in ray.util.list_named_actors() if "-worker" in a))
        lanes.extend(refs)
        raise _Seen(what)

    monkeypatch.setattr(starting, "gathered", gathered)
    hog = Hog.remote()
    ray.get(hog.ping.remote())                                   # every CPU taken: the workers wait for room
    cfg = load_config("ufldl-sae", ["cluster.runner=ray", "data.samples=64", "train.batch_size=8", "train.steps=12",
                                    "cluster.workers=2", "cluster.shards=2", "train.tensorboard=false"])
    try:
        with pytest.raises(_Seen, match="shard actors"):
            run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
    finally:
        ray.kill(hog)
    assert [name.rsplit("-", 1)[-1] for name in seen] == ["worker0", "worker1"]
    assert len(lanes) == 2
    for ref in lanes:      # killed coming up (a fresh process importing torch: seconds), not brought up and closed
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(ref, timeout=60)
    assert set(Path("/dev/shm").glob(f"downpour-{os.getpid()}-*")) == segments


class _CountingRay:
    """The ray module as starting_on_ray sees it, each ``ray.nodes()`` counted."""

    def __init__(self, real):
        self.real, self.asked = real, 0

    def nodes(self):
        self.asked += 1
        return self.real.nodes()

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_the_start_reads_the_nodes_once_and_takes_the_piped_loop_on_one_node(local_ray, tmp_path, monkeypatch):
    """The workers' CPU share and the placer come from one ``ray.nodes()`` (not asked again after the shards' wait;
    the piped choice asks none: the actors' start reports make it); on the one node of a local Ray the run takes the
    piped loop. The start is stopped at its first channel (closed, its actors killed): the test costs one shard's and
    one worker's start. (A node that joins during the start: tests/test_ps_ray_node_changes.py.)"""
    from downpour.config import load_config
    from downpour.ps.cluster import run_cluster
    from downpour.ps.piped_on_ray import PipedRun
    from downpour.train.rundir import RunDir

    counting = _CountingRay(ray)

    def opened(self, w):
        raise _Seen(f"channel of worker {w}")

    monkeypatch.setattr(starting, "ray", counting)
    monkeypatch.setattr(PipedRun, "_open_channel", opened)
    cfg = load_config("ufldl-sae", ["cluster.runner=ray", "data.samples=64", "train.batch_size=8", "train.steps=12",
                                    "cluster.workers=1", "cluster.shards=1", "train.tensorboard=false"])
    with pytest.raises(_Seen, match="channel of worker 0"):
        run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
    assert counting.asked == 1
