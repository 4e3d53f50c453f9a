"""The path a user with a real cluster takes: a two-node Ray cluster on this machine, and
`downpour train --address ...` with shards and workers placed on both nodes."""
import pytest

from downpour.cli import main
from downpour.train.rundir import RunDir

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")


@pytest.fixture(scope="module")
def two_nodes():
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def test_train_with_address_uses_both_nodes(tmp_path, two_nodes):
    code = main(["train", "--config", "ufldl-sae", "--runner", "ray", "--address", two_nodes.address,
                 "--workers", "2", "--shards", "2", "--steps", "24", "--out", str(tmp_path / "run"),
                 "--no-report", "--set", "data.samples=256", "--set", "train.batch_size=16",
                 "--set", "train.tensorboard=false"])
    assert code == 0
    summary = RunDir.open(tmp_path / "run").read_json("cluster.json")
    assert summary["nodes"] == 2 and summary["steps"] == 24
    assert sorted(summary["placement"]["shards"]) == [0, 1] and sorted(summary["placement"]["workers"]) == [0, 1]
    assert summary["applied"] == summary["accepted"] == [24, 24]


def test_model_parallel_partitions_spread_over_both_nodes(tmp_path, two_nodes):
    code = main(["train", "--config", "cat-untied", "--runner", "ray", "--address", two_nodes.address,
                 "--workers", "1", "--shards", "2", "--steps", "8", "--out", str(tmp_path / "mp"), "--no-report",
                 "--set", "cluster.partitions=2", "--set", "train.tensorboard=false", "--set", "train.log_every=4"])
    assert code == 0
    summary = RunDir.open(tmp_path / "mp").read_json("cluster.json")
    assert summary["nodes"] == 2 and sorted(summary["placement"]["partitions"]) == [0, 1]
    assert summary["applied"] == summary["accepted"] == [8, 8]
