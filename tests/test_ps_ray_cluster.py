"""The path a user with a real cluster takes: a two-node Ray cluster on this machine (tests/two_nodes.py), and
`downpour train --address ...` with shards and workers placed on both nodes."""
import pytest
from two_nodes import two_node_cluster

from downpour.cli import main
from downpour.train.rundir import RunDir

ray = pytest.importorskip("ray")

two_nodes = pytest.fixture(scope="module")(two_node_cluster)   # (cluster, node ids sorted)


def test_train_with_address_uses_both_nodes(tmp_path, two_nodes):
    cluster, ids = two_nodes
    code = main(["train", "--config", "ufldl-sae", "--runner", "ray", "--address", cluster.address,
                 "--workers", "2", "--shards", "2", "--steps", "24", "--out", str(tmp_path / "run"),
                 "--no-report", "--set", "data.samples=256", "--set", "train.batch_size=16",
                 "--set", "train.tensorboard=false"])
    assert code == 0
    summary = RunDir.open(tmp_path / "run").read_json("cluster.json")
    assert summary["nodes"] == 2 and summary["steps"] == 24
    assert sorted(summary["placement"]["shards"]) == [0, 1] and sorted(summary["placement"]["workers"]) == [0, 1]
    assert summary["applied"] == summary["accepted"] == [24, 24]
    # which machine each placement number is: node i is the i-th of the nodes used, by Ray's id (the numbers
    # alone would not say which node held worker 1)
    nodes = sorted(cluster.list_all_nodes(), key=lambda node: node.node_id)
    assert summary["node_ids"] == ids == [node.node_id for node in nodes]
    assert summary["node_addresses"] == [node.node_ip_address for node in nodes]
    # which cluster the run joined: the address as given and the head Ray resolved it to (config.toml's
    # cluster.address alone is as typed: `auto` or a host name names no cluster)
    assert summary["ray"] == {"address": cluster.address, "head": cluster.address, "version": ray.__version__}


def test_model_parallel_partitions_spread_over_both_nodes(tmp_path, two_nodes):
    """A replica split in 2 places its partition actors on both nodes. The tiny cat network (TINY_CAT, as the other
    partition tests on Ray have it): where the partitions go does not hang on the network's size,
    and the full-size network's steps cost seconds more."""
    from test_runner_equivalence import TINY_CAT

    cluster, _ = two_nodes
    code = main(["train", "--config", "cat-untied", "--runner", "ray", "--address", cluster.address,
                 "--workers", "1", "--shards", "2", "--steps", "8", "--out", str(tmp_path / "mp"), "--no-report",
                 *[a for o in [*TINY_CAT, "cluster.partitions=2"] for a in ("--set", o)]])
    assert code == 0
    summary = RunDir.open(tmp_path / "mp").read_json("cluster.json")
    assert summary["nodes"] == 2 and sorted(summary["placement"]["partitions"]) == [0, 1]
    assert summary["applied"] == summary["accepted"] == [8, 8]


def test_a_worker_pinned_to_a_full_node_fails_the_start_naming_that_nodes_room(tmp_path, two_nodes, monkeypatch):
    """Another job's actor holds the first node's CPU; the run's one worker is pinned to that node (the placer pins a
    CPU worker round-robin, hard, counting only the run's own actors), so it cannot start while the other node has its
    CPU free. The line names the node it was pinned to and that node's room (not "the cluster has CPU 1 of 2 free",
    summed over the nodes)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from ray_room import Hog, workers_start_within

    from downpour.config import load_config
    from downpour.errors import RunError
    from downpour.ps import starting_on_ray
    from downpour.ps.cluster import run_cluster

    cluster, (first, _) = two_nodes      # the placer pins worker 0 to the first node by id
    if not ray.is_initialized():
        ray.init(address=cluster.address)
    hog = Hog.options(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(first, soft=False)).remote()
    ray.get(hog.ping.remote())
    workers_start_within(monkeypatch, starting_on_ray, 1.0)   # (it never starts: 4 s would wait 3 more)
    cfg = load_config("ufldl-sae", ["cluster.runner=ray", f"cluster.address={cluster.address}", "data.samples=64",
                                    "train.batch_size=8", "train.steps=4", "cluster.workers=1", "cluster.shards=1",
                                    "train.tensorboard=false"])
    try:
        with pytest.raises(RunError, match=rf"could not start 1 of 1 worker actors within 1 s: each asks CPU 1; 1 "
                                           rf"pinned to node {first[:8]}, which has CPU 0 of 1 free\. "):
            run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
    finally:
        ray.kill(hog)
