"""A run's no-faces twin on a real two-node Ray (``ray.cluster_utils.Cluster`` on this machine: a head and one node,
1 CPU each, started once for the module), joined by address as a user does (`downpour train --address`), 2 workers and
2 shards. The twin trains on the run's own actors, kept and rebuilt in place (docs/parameter-server.md, "Actors kept
between runs"): its cluster.json says each was kept, each actor is on the node it had in the run, and its model is the
one a twin started on new actors of the same cluster trains, bit for bit (sync, one torch thread)."""
import shutil

import pytest
from test_twins import TINY_CAT, TWIN
from two_nodes import two_node_cluster

from downpour.cli import main
from downpour.train.rundir import RunDir

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.usefixtures("one_thread")

# a worker and a shard on each node; sync and one torch thread: a run trained twice gives the same bytes. A denoising
# term draws from each worker's torch RNG as it trains: a kept worker not re-seeded as a new one is trains another twin
SYNC = ["--runner", "ray", "--workers", "2", "--shards", "2", "--no-report", *TWIN,
        "--set", "cluster.consistency=sync", "--set", "train.threads=1", "--set", "objective.denoising.weight=0.5"]


two_nodes = pytest.fixture(scope="module")(two_node_cluster)   # (cluster, node ids sorted)


@pytest.fixture(scope="module")
def kept(two_nodes, tmp_path_factory):
    """The run and its twin, one command joining the cluster (the twin on the run's actors): the run's folder."""
    cluster, _ = two_nodes
    out = tmp_path_factory.mktemp("kept") / "run"
    assert main(["train", *TINY_CAT, *SYNC, "--address", cluster.address, "--out", str(out)]) == 0
    assert RunDir(out).finished(4) and RunDir(out / "no-faces").finished(4) and not ray.is_initialized()
    return out


def _cluster_json(run):
    return RunDir.open(run).read_json("cluster.json")


def test_the_twin_on_two_nodes_trains_on_the_runs_actors_each_on_the_node_it_had(kept, two_nodes):
    cluster, ids = two_nodes
    run, twin = _cluster_json(kept), _cluster_json(kept / "no-faces")
    assert run["actor_starts"] == {"shards": ["fresh", "fresh"], "workers": ["fresh", "fresh"]}
    assert twin["actor_starts"] == {"shards": ["kept", "kept"], "workers": ["kept", "kept"]}
    for summary in (run, twin):     # both joined the cluster given, and used both of its nodes
        assert summary["ray"]["address"] == cluster.address and summary["nodes"] == 2 and summary["node_ids"] == ids
        assert sorted(summary["placement"]["shards"]) == [0, 1] and sorted(summary["placement"]["workers"]) == [0, 1]
        assert summary["applied"] == summary["accepted"] == [4, 4]
    # where each actor answered from (its start report), not where it was asked to go: shard j and worker w stayed
    assert twin["placement"] == run["placement"]


def test_the_twin_on_the_runs_kept_actors_is_the_twin_new_actors_train_bit_for_bit(kept, two_nodes, tmp_path):
    """The same twin trained again on new actors: the run copied without its twin, and `--resume` of it (the run
    finished, nothing of it to train: no actor of it to keep) trains only the twin, its actors all started anew."""
    cluster, _ = two_nodes
    anew = tmp_path / "run"
    shutil.copytree(kept, anew, ignore=shutil.ignore_patterns("no-faces"))
    assert main(["train", "--resume", str(anew), "--address", cluster.address]) == 0
    twin = _cluster_json(anew / "no-faces")
    assert twin["actor_starts"] == {"shards": ["fresh", "fresh"], "workers": ["fresh", "fresh"]}
    assert twin["placement"] == _cluster_json(kept / "no-faces")["placement"]
    assert ((anew / "no-faces" / "model.safetensors").read_bytes()
            == (kept / "no-faces" / "model.safetensors").read_bytes())
