"""The Ray driver's choice of loop on a real cluster that grows while a run starts (``ray.cluster_utils.Cluster`` on
this machine): a head of 1 CPU, held by another job's actor (``Hog``), and a second node added while the start waits
for the shards, after its one ``ray.nodes()`` read. The run's one worker, with no room on the head, starts on the new
node, away from the shard and the driver: it has no inbox on the shard's node to stage its pushes in, so its cycles
must go as Ray tasks, not over a channel (the piped loop, :mod:`downpour.ps.piped_on_ray`). The start chooses from
where the shards and the workers said they run, not from the nodes it read (one node, there: the piped loop's
channel handed to that worker failed its first cycle, the run ending with every worker lost)."""
import pytest
from two_nodes import STORE

from downpour.config import load_config
from downpour.ps import starting_on_ray
from downpour.ps.cluster import run_cluster
from downpour.train.rundir import RunDir

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")


@pytest.fixture(scope="module")
def one_node():
    """A head of 1 CPU alone; a test adds the second node."""
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": STORE})
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def test_a_worker_on_a_node_that_joined_during_the_start_gets_its_cycles_as_ray_tasks(tmp_path, one_node, monkeypatch):
    from ray_room import Hog

    ray.init(address=one_node.address)
    head = ray.get_runtime_context().get_node_id()
    hog = Hog.options(num_cpus=1).remote()      # the head's CPU: the worker waits for room
    ray.get(hog.ping.remote())
    real, added = starting_on_ray.gathered, []

    def gathered(refs, what, *more, **named):
        if what == "shard actors":     # after the start's ray.nodes() and the actors asked of Ray
            added.append(one_node.add_node(num_cpus=1, object_store_memory=STORE).node_id)
            one_node.wait_for_nodes()
        return real(refs, what, *more, **named)

    monkeypatch.setattr(starting_on_ray, "gathered", gathered)
    cfg = load_config("ufldl-sae", ["cluster.runner=ray", f"cluster.address={one_node.address}", "data.samples=64",
                                    "train.batch_size=8", "train.steps=12", "cluster.workers=1", "cluster.shards=1",
                                    "train.tensorboard=false"])
    try:
        run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
    finally:
        ray.kill(hog)
    summary = RunDir.open(tmp_path / "r").read_json("cluster.json")
    where = {kind: [summary["node_ids"][i] for i in nodes] for kind, nodes in summary["placement"].items()}
    assert where == {"shards": [head], "workers": added}     # the shard beside the driver, the worker on the new node
    assert summary["applied"] == summary["accepted"] == [12]
