"""Model parallelism on Ray: a replica whose partitions are actors computes what the whole network
computes (float64, 1e-10), a 2 replicas x 2 partitions Downpour run trains end to end, and a partition
holding two shards trains what the simulator trains."""
import copy
import json
from types import SimpleNamespace

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
from test_runner_equivalence import TINY_CAT, _losses, _model


# (1, 2, 4, 9 in process: tests/test_parallel.py; each actor is a process that imports torch, seconds on 2 cores:
# 4 splits both axes, as 9 does, for half its time here). A frozen first layer never travels through the
# shards, and the partitions must not compute with uninitialised filters. Tiled: the main recipe's tile 2, every
# bank lent to both partitions and their gradients summed in the replica; tile 16, stage 1's banks shared (blocks of
# 12 and 13 rows, smaller than the period) and stage 2 untied, its blocks the partitions' own. The untied decoder
# at tile 16: stage 1's decoder banks lent with its filter banks, stage 2's blocks the partitions' own;
# under a frozen Gabor first layer, whose decoder trains alone (the replica's anchor must still reach the partitions:
# with the frozen layer's anchor, stage 1's decoder had no gradient).
@pytest.mark.parametrize("k, first_layer, tile, decoder", [(2, "learned", 0, "tied"), (4, "learned", 0, "tied"),
                                                           (2, "gabor", 0, "tied"), (2, "learned", 2, "tied"),
                                                           (2, "learned", 16, "tied"), (2, "learned", 16, "untied"), (2, "gabor", 0, "untied")])
def test_a_replica_with_partition_actors_equals_the_whole_network(local_ray, request, k, first_layer, tile, decoder):
    from downpour.ps.partitions_on_ray import PartitionActor, remote_replica, stage_specs

    # 4 partitions run their actors in this process (``actors_in_process``): what Ray carries between a replica and
    # its partitions is the 2-partition cases', and 4 actor processes cost ~10 s of a 2-core suite (2026-12-06).
    # So do three of the 2-partition cases (2 actor processes, ~5 s CPU, each): what Ray carries for
    # them, Ray carries for the three kept on it. Tile 2 (every bank lent, the partitions own no filter: nothing
    # loaded) and tile 16 untied (stage 1's filter and decoder banks lent, stage 2's blocks the partitions' own,
    # loaded and their gradients sent back) carry all that tile 0, tied, and tile 16, tied, carry; the frozen Gabor
    # layer untied (no gradient, the Nones sent back) all that it carries tied.
    in_process = (k, first_layer, tile, decoder) in {(4, "learned", 0, "tied"), (2, "learned", 0, "tied"),
                                                     (2, "gabor", 0, "tied"), (2, "learned", 16, "tied")}
    if in_process:
        request.getfixturevalue("actors_in_process")
    start = ((lambda *args: _Recorded(PartitionActor.__ray_metadata__.modified_class(*args), []))
             if in_process else PartitionActor.remote)
    torch.manual_seed(0)
    full = create_model("cat-demo", first_layer=first_layer, tile=tile, decoder=decoder).double()
    local = partition_model(copy.deepcopy(full), k)
    actors = [start(0, p, stage_specs(local, p), [], [], [], 0.0, 1, p) for p in range(k)]
    ray.get([a.load.remote(torch.cat([w.detach().reshape(-1) for w in part.parameters() if w.requires_grad]).numpy())
             for a, part in zip(actors, local.partitions) if len(part.weights)])   # what a fetch brings: their filters
    replica = copy.deepcopy(local)
    remote_replica(replica, actors)
    # no filter is left in the replica but the tiled stages' shared banks (and decoder banks), which it lends out
    assert [n for n, p in replica.named_parameters() if p.requires_grad] == \
        [f"{group}.{i}" for group in ("shared_banks", "shared_decoders") for i, p in getattr(local, group, {}).items()
         if p.requires_grad]
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
        if not stage.filter.untied:                               # the blocks' gradients, summed by the replica
            assert all(g[i] is None for g in grads)
            torch.testing.assert_close(replica.shared_banks[str(i)].grad, stage.filter.weight.grad, rtol=0, atol=1e-10)
            continue
        got = stitch([torch.from_numpy(g[i]) for g in grads], local.stages[i].filter.blocks, dims=(0, 1))
        torch.testing.assert_close(got, stage.filter.weight.grad, rtol=0, atol=1e-10)
    n, checked = len(full.stages), 0
    for i, stage in enumerate(full.stages):      # the untied decoders': the partitions' blocks, or the lent banks'
        if stage.decoder_weight is None:
            assert all(g[n + i] is None for g in grads)
            continue
        if stage.filter.untied:
            got = stitch([torch.from_numpy(g[n + i]) for g in grads], local.stages[i].filter.blocks, dims=(0, 1))
        else:
            got = replica.shared_decoders[str(i)].grad
        torch.testing.assert_close(got, stage.decoder_weight.grad, rtol=0, atol=1e-10)
        checked += 1
    assert checked == n * (decoder == "untied")
    for actor in actors if not in_process else ():
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


@pytest.mark.parametrize("rule", ["adagrad", "momentum"])
def test_a_partition_holding_two_shards_trains_what_the_simulator_trains(local_ray, tmp_path, rule):
    """1 replica x 2 partitions on 3 shards in sync rounds, on Ray and on the simulator. Partition 0 holds
    shards 0 and 1, so its actor rebases their bounds onto its own vector (shard 1 starts mid-vector) and
    partition 1's one shard starts at its vector's 0. The simulator computes the partitions in process and
    fetches the whole flat vector: it never rebases. A partition that fetches a shard into the wrong slice
    of its filters, or pushes the wrong slice of its gradient, trains other numbers than the simulator.
    (2 greedy steps per stage: each stage's first fetch and its pushes. The losses are equal bit for bit
    and the parameters to 2.4e-7 of 0.39: an actor's float32 gradient is an ulp from the
    in-process partition's, presumably its terms summed in another order. Shard 1 rebased one value
    early moved them by 0.08, and every loss. With momentum, a partition's push says which stage it trained, so
    its shards hold the other still, as the simulator's do.)"""
    args = ["train", "--config", "cat-untied", "--workers", "1", "--shards", "3", "--consistency", "sync",
            "--steps", "4", "--no-report",
            *[a for o in [*TINY_CAT, "cluster.partitions=2", "train.log_every=1", f"cluster.rule={rule}"]
              for a in ("--set", o)]]
    _ray_trains_what_the_simulator_trains(args, tmp_path)


def test_a_remote_replica_keeps_no_frozen_rows():
    """Its filters live in the partition actors (RemoteFilter.weights is empty): the frozen cache could not see a
    fetch change them, so it would answer a greedy step from rows of the old weights."""
    from downpour.ps.partitions_on_ray import remote_replica

    replica = partition_model(create_model("cat-demo", (1, 32, 32), tile=0), 2)
    assert replica.frozen_cache is not None         # a local partitioned model keeps one (it sees the partitions)
    remote_replica(replica, [])
    assert replica.frozen_cache is None


@pytest.mark.parametrize("sets", [("cluster.shards=1",), ("cluster.shards=3", "model.tile=8")])
def test_a_tiled_replica_split_on_ray_trains_what_the_simulator_trains(local_ray, tmp_path, sets):
    """The main recipe (tile 2, Adam) shrunk to tiny crops, 1 replica x 2 partitions in sync rounds, on Ray and on
    the simulator. Tile 2: every bank is shared, so the partitions own no shard and the replica fetches and pushes
    both itself, the blocks' bank gradients summed before the push (on one shard: a replica's own fetch and push over
    several shards is every plain run's, and a shard fewer is an actor fewer to start). Tile 8 (16x16
    codes, then 5x5 untied): stage 1's banks on the replica's shard 2, stage 2's blocks on the partitions' shards 0 and
    1. A replica that pushed each block's partial gradient, or lent a block the wrong banks, trains other numbers than
    the simulator."""
    args = ["train", "--config", "main", "--workers", "1", "--consistency", "sync", "--steps", "4", "--no-report",
            *[a for o in [*TINY_CAT, *sets, "cluster.partitions=2", "train.log_every=1", "analysis.no_faces_twin=false"]
              for a in ("--set", o)]]
    _ray_trains_what_the_simulator_trains(args, tmp_path)


def _ray_trains_what_the_simulator_trains(args: list[str], tmp_path) -> None:
    """``downpour train ARGS`` (4 steps, a row a step) on the simulator and on Ray: the same rows and weights."""
    threads = torch.get_num_threads()
    try:
        for runner in ("simulated", "ray"):
            assert main([*args, "--runner", runner, "--out", str(tmp_path / runner)]) == 0
    finally:
        torch.set_num_threads(threads)      # the simulator set train.threads in this process
    sim, on_ray = tmp_path / "simulated", tmp_path / "ray"
    (steps, losses), (ray_steps, ray_losses) = zip(*_losses(sim)), zip(*_losses(on_ray))
    assert steps == ray_steps == (1, 2, 3, 4) and ray_losses == pytest.approx(losses, rel=1e-6)
    a, b = _model(sim), _model(on_ray)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-5, msg=lambda m: f"{name}: {m}")


class _Recorded:
    """A partition actor run in this process (its class under Ray's decorator), the arguments of its calls recorded."""

    def __init__(self, actor, calls: list):
        self.actor, self.calls = actor, calls

    def __getattr__(self, name):
        def remote(*args):
            self.calls.append((name, args))
            return getattr(self.actor, name)(*args)
        return SimpleNamespace(remote=remote)


def test_a_partition_is_sent_only_what_it_uses(actors_in_process):
    """A frozen Gabor first layer with an untied decoder, tiled (tile 2: every bank lent), split in 2. The partition
    drops a frozen encoder's code gradient (its decoder's gradient needs the codes it kept and the reconstruction's
    gradient), and a forward-only call (a greedy step's stages below the trained one, an evaluation) decodes nothing, so
    the replica sends a block neither the code gradient nor the decoder's banks for nothing. The partitions' answers are
    the whole network's (1e-10 in float64). The actors run in this process (``actors_in_process``: a partition actor
    seeds torch, and must not reseed this process's)."""
    from downpour.ps.partitions_on_ray import PartitionActor, remote_replica, stage_specs

    torch.manual_seed(0)
    full = create_model("cat-demo", first_layer="gabor", tile=2, decoder="untied").double()
    local = partition_model(copy.deepcopy(full), 2)
    calls: list = []
    make = PartitionActor.__ray_metadata__.modified_class                  # (the last argument: its RNG's seed)
    actors = [_Recorded(make(0, p, stage_specs(local, p), [], [], [], 0.0, 1, p), calls) for p in range(2)]
    replica = copy.deepcopy(local)
    remote_replica(replica, actors)
    _, objective = build(load_config("main"), full.input_shape)
    x = torch.randn(3, *full.input_shape, dtype=torch.float64)
    a, b = train_step(full, objective, Batch(x)), train_step(replica, objective, Batch(x))
    assert abs(a.loss - b.loss) < 1e-10
    for i in range(2):
        torch.testing.assert_close(replica.shared_decoders[str(i)].grad, full.stages[i].decoder_weight.grad,
                                   rtol=0, atol=1e-10)
    sent = {(name, args[0]): args for name, args in calls}    # (method, stage) -> what the last block was sent
    assert sent["backward", 0][1] is None                     # the frozen encoder's code gradient
    assert sent["backward", 1][1] is not None and sent["backward", 0][2] is not None   # the trained ones
    assert all(sent["encode", i][5] is not None for i in range(2))     # a call that decodes gets the decoder's banks
    calls.clear()
    with torch.no_grad():
        torch.testing.assert_close(replica(x), full(x), rtol=0, atol=1e-10)
    assert len(calls) == 4 and all(args[4] is not None and args[5] is None for _, args in calls)


def test_a_killed_partition_actor_is_restarted_alone_its_replica_kept(local_ray, tmp_path, monkeypatch):
    """1 replica x 2 partitions, cluster.restarts = 1: partition 1's actor is killed at step 10. A new partition 1 is
    started in its place (its filters fetched from its shard by the replica's next step), the replica's actor and
    partition 0 kept, and the cycle in flight dropped, its steps trained again: the run finishes every step with no
    worker lost or restarted, and staleness.json and cluster.json say "partition 1 of replica 0 restarted at step N".
    The replica is not lost and restarted whole (worker-lost, worker-restarted). The driver holds still from step 10
    until the kill (``run_killing``'s ``monkeypatch``), so 48 steps do, 38 of them after it, the stage switch (step
    24) among them (400 steps, without the hold, only outlast the kill, some 10 s of the test)."""
    from ray_kill import run_killing

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    cfg = load_config("cat-untied", [*TINY_CAT, "cluster.runner=ray", "cluster.workers=1", "cluster.shards=2",
                                     "cluster.partitions=2", "cluster.restarts=1", "train.steps=48"])
    run = RunDir.create(tmp_path / "part", cfg)
    out = run_killing(cfg, run, 10, "-part1", 300, monkeypatch)
    assert out["steps"] == 48 and out["lost_workers"] == []
    events = run.read_json("staleness.json")["events"]
    assert [(e["event"], e["worker"], e.get("partition")) for e in events] == [("partition-restarted", 0, 1)]
    assert events[0]["step"] >= 10 and events[0]["dropped_steps"] >= 1 and events[0]["seed_step"] == events[0]["step"]
    assert run.read_json("cluster.json")["partition_restarts"] == events
    assert _cluster_faults(run) == (f'<p class="note">Faults: partition 1 of replica 0 restarted at step '
                                    f'{events[0]["step"]} (ActorDiedError).</p>')
    assert max(r["step"] for r in run.metrics()) == 48      # the replica trained on with its new partition
    assert not [a for a in ray.util.list_named_actors() if "-part" in a]   # the new partition is gone with the run
