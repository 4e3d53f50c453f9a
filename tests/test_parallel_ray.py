"""Model parallelism on Ray: a replica whose partitions are actors computes what the whole network
computes (float64, 1e-10), and a 2 replicas x 2 partitions Downpour run trains end to end."""
import copy
import json

import numpy as np
import pytest
import ray
import torch

from downpour.batch import Batch
from downpour.cli import main
from downpour.config import load_config
from downpour.models.registry import build, create_model
from downpour.parallel import partition_model
from downpour.parallel.partition import stitch
from downpour.train.rundir import RunDir
from downpour.train.step import train_step


# (1, 2, 4, 9 in process: tests/test_parallel.py; each actor is a process that imports torch, seconds on 2 cores:
# 4 splits both axes, as 9 does, for half its time here). A frozen first layer never travels through the
# shards: the partitions once computed with uninitialised filters.
@pytest.mark.parametrize("k, first_layer", [(2, "learned"), (4, "learned"), (2, "gabor")])
def test_a_replica_with_partition_actors_equals_the_whole_network(local_ray, k, first_layer):
    from downpour.ps.partitions_on_ray import PartitionActor, remote_replica, stage_specs

    torch.manual_seed(0)
    full = create_model("cat-demo", first_layer=first_layer).double()
    local = partition_model(copy.deepcopy(full), k)
    actors = [PartitionActor.remote(0, p, stage_specs(local, p), [], [], [], 0.0, 1) for p in range(k)]
    ray.get([a.load.remote(torch.cat([w.detach().reshape(-1) for w in part.weights if w.requires_grad]).numpy())
             for a, part in zip(actors, local.partitions)])      # what a fetch brings: the trainable filters
    replica = copy.deepcopy(local)
    remote_replica(replica, actors)
    assert not any(p.requires_grad for p in replica.parameters())     # no filter is left in the replica
    _, objective = build(load_config("main"), full.input_shape)
    x = torch.randn(3, *full.input_shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(replica(x), full(x), rtol=0, atol=1e-10)
    a, b = train_step(full, objective, Batch(x)), train_step(replica, objective, Batch(x))
    assert abs(a.loss - b.loss) < 1e-10
    grads = ray.get([actor.gradients.remote() for actor in actors])
    for i, stage in enumerate(full.stages):
        if stage.filter.weight.grad is None:                      # the frozen stage: no gradient anywhere
            assert first_layer == "gabor" and i == 0 and all(g[i] is None for g in grads)
            continue
        got = stitch([torch.from_numpy(g[i]) for g in grads], local.stages[i].filter.blocks, dims=(0, 1))
        torch.testing.assert_close(got, stage.filter.weight.grad, rtol=0, atol=1e-10)
    for actor in actors:
        ray.kill(actor)


def test_two_replicas_by_two_partitions_train_the_cat_network_end_to_end(local_ray, tmp_path, capsys):
    out = tmp_path / "mp"
    # 3 shards over 2 partitions: partition 0 holds two (its bounds rebased onto its own tensor), 9 actors, not 10
    # (each a process importing torch). (20 steps logged every 5 were too few: with the partitions' pushes zeroed,
    # stage 1's reconstruction still fell from step 5 to 10.)
    code = main(["train", "--config", "cat-untied", "--runner", "ray", "--workers", "2", "--shards", "3",
                 "--steps", "40", "--set", "cluster.partitions=2", "--set", "train.tensorboard=false",
                 "--set", "train.log_every=10", "--no-report", "--out", str(out)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 40 and summary["lost_workers"] == [] and summary["applied"] == [40] * 3
    run = RunDir.open(out)
    rows = run.metrics()
    assert rows[0]["stage1/reconstruction"] > rows[1]["stage1/reconstruction"]   # stage 1 learns
    model = run.load_model()                               # saved as the plain network: analysis reads it
    assert type(model).__name__ == "CatNet" and not hasattr(model, "partitions")
    assert np.isfinite(model(torch.randn(2, *model.input_shape)).detach().numpy()).all()
    assert not [a for a in ray.util.list_named_actors() if "-part" in a]   # partitions are gone with the run
