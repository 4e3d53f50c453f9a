"""A run on a local Ray (2 CPUs) as on the simulator: its run directory, the queue of cycles, sync rounds, a
replica's parameters as views of its fetch buffer, and runs taking the simulator's steps cost for cost (a random
first layer, a greedy stage switch mid-cycle and mid-run)."""
import pytest
import torch
from ray_runs import run_cfg, shard_logs

from downpour.config import load_config
from downpour.ps.cluster import run_cluster
from downpour.train.rundir import RunDir

pytest.importorskip("ray")


def test_async_run_writes_the_run_directory(tmp_path, local_ray):
    # DC-ASGD must see every pull, so this run also takes the object-store path (no shared memory)
    cfg = run_cfg("train.steps=60", 'cluster.compensation="dc-asgd"', "cluster.rule=sgd", "train.lr=0.01")
    summary = run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
    run = RunDir.open(tmp_path / "r")
    assert summary["steps"] == 60 and summary["versions"] == [60, 60]
    assert summary["accepted"] == summary["applied"] == [60, 60] and summary["rejected"] == {}
    assert summary["queue_depth"] == 2 == run.read_json("cluster.json")["queue_depth"]   # the default
    st = run.read_json("staleness.json")
    assert set(st["per_worker"]) == {"0", "1"} and st["overall"]["pushes"] == 120
    assert st["overall"]["max"] > 0          # the workers really overlapped
    rows = run.metrics()
    assert rows[-1]["step"] == 60 and {r["worker"] for r in rows} <= {0, 1} and "staleness" in rows[-1]
    run.load_model()


def test_a_queue_of_one_cycle_per_worker(tmp_path, local_ray):
    # (one shard: the queue is the worker's, and an actor fewer to start)
    cfg = run_cfg("train.steps=24", "cluster.queue_depth=1", "cluster.workers=1", "cluster.shards=1")
    summary = run_cluster(cfg, RunDir.create(tmp_path / "q", cfg))
    assert summary["queue_depth"] == 1 and summary["versions"] == [24]
    # one worker, one cycle at a time: a push is at most the one before it stale (its apply may still be
    # running when the next cycle fetches); with two queued, the next cycle starts before it is sent
    assert summary["max_staleness"] <= 1


def test_sync_rounds_on_ray(tmp_path, local_ray):
    cfg = run_cfg("train.steps=24", "cluster.consistency=sync")
    summary = run_cluster(cfg, RunDir.create(tmp_path / "s", cfg))
    assert summary["versions"] == [12, 12] and summary["max_staleness"] == 0
    for rows in shard_logs(tmp_path / "s"):
        rounds = {}
        for w, _, base, applied in rows:
            rounds.setdefault(applied, []).append((w, base))
        assert all(sorted(v) == [(0, a), (1, a)] for a, v in rounds.items())


def test_a_replicas_parameters_become_views_of_the_fetch_buffer_only_on_its_device():
    """A worker's parameters become views of its CPU fetch buffer; on another device (a GPU replica)
    that swap moved them to the CPU, under a model whose batches go to the GPU. ("meta" stands in.)"""
    from downpour.ps.on_ray import params_as_views

    names, offsets = ["weight", "bias"], [0, 6]
    model, vec = torch.nn.Linear(3, 2), torch.zeros(8)
    assert params_as_views(model, names, offsets, vec)
    assert model.weight.data_ptr() == vec.data_ptr() and torch.equal(vec[6:], model.bias.detach())
    elsewhere = torch.nn.Linear(3, 2, device="meta")
    assert not params_as_views(elsewhere, names, offsets, torch.zeros(8))
    assert all(p.device.type == "meta" for p in elsewhere.parameters())


def test_a_random_first_layer_is_the_drivers_on_ray_too(tmp_path, local_ray):
    """The workers train against the frozen random first layer the saved model has, not one each drew from its own
    process's generator: one sync worker on Ray takes the simulator's steps, cost for cost."""
    losses = {}
    for runner in ("ray", "simulated"):
        cfg = run_cfg("train.steps=8", "train.log_every=1", "cluster.workers=1", "cluster.shards=1",
                   "cluster.consistency=sync", "model.first_layer=random", "train.threads=1", f"cluster.runner={runner}")
        run_cluster(cfg, RunDir.create(tmp_path / runner, cfg))
        losses[runner] = [r["loss"] for r in RunDir.open(tmp_path / runner).metrics()]
    assert len(losses["ray"]) == 8 and losses["ray"] == pytest.approx(losses["simulated"], rel=1e-5)


def test_a_greedy_cycle_across_the_stage_switch_switches_with_it_as_on_the_simulator(tmp_path, local_ray):
    """Each step of a Ray cycle trains its own stage, not the stage of the cycle's first (the push of steps 7-9 of 15,
    stage 2 from step 9, training stage 1 on all three), as the simulator's do: one sync worker takes the simulator's
    steps, cost for cost. With momentum the shards hold still the stage a push did not train: the push's stages reach
    them through the inbox as on the simulator (a push taken as training every stage coasts stage 1 on its velocity
    through stage 2). (One shard, holding both stages' tensors, shows both: an actor fewer to start than two. Momentum
    alone, not also adagrad: its case trains each step at its own stage, as adagrad's would, and adds the held stage;
    adagrad's untrained stage, a zero gradient, is left as it was held or not: two actors fewer.)"""
    rows = {}
    for runner in ("ray", "simulated"):
        cfg = load_config("cat-demo", ["data.samples=128", "train.batch_size=8", "train.steps=15", "train.log_every=1",
                                       "train.tensorboard=false", "cluster.workers=1", "cluster.shards=1",
                                       "cluster.n_push=3", "cluster.consistency=sync", "train.threads=1",
                                       "cluster.rule=momentum", f"cluster.runner={runner}"])
        run_cluster(cfg, RunDir.create(tmp_path / runner, cfg))
        rows[runner] = RunDir.open(tmp_path / runner).metrics()
    across = rows["ray"][2]                      # steps 7-9 (indices 6-8; index 8 starts stage 2: 8 * 2 // 15 = 1)
    assert across["step"] == 9 and "stage1/reconstruction" in across and "stage2/reconstruction" in across
    assert [r["loss"] for r in rows["ray"]] == pytest.approx([r["loss"] for r in rows["simulated"]], rel=1e-5)


def test_a_short_greedy_run_logs_each_stage_in_its_own_rows_as_on_the_simulator(tmp_path, local_ray):
    """cat-demo, 3 async workers, 20 steps: stage 2's first cycle waits for stage 1's pushes on both runners, so the
    rows hold one stage each. (Handed out while stage 1's pushes are still coming back, they land out of order: both
    rows average pushes of both stages, and the analysis's per-stage costs, ``training.stages``, come out [].) (One
    shard: the race is the workers', and without the wait the Ray run's rows still mix both stages, as seen on
    2026-12-06; an actor fewer to start than two.)"""
    from downpour.analysis.training import stage_losses

    stages = {}
    for runner in ("ray", "simulated"):
        cfg = load_config("cat-demo", ["data.samples=128", "train.batch_size=8", "train.steps=20", "train.log_every=10",
                                       "train.tensorboard=false", "cluster.workers=3", "cluster.shards=1",
                                       "train.threads=1", f"cluster.runner={runner}"])
        run_cluster(cfg, RunDir.create(tmp_path / runner, cfg))
        rows = RunDir.open(tmp_path / runner).metrics()
        stages[runner] = [sorted({k.split("/")[0] for k in r if k.startswith("stage")}) for r in rows]
        assert [s["stage"] for s in stage_losses(rows)] == ["stage1", "stage2"], runner
    assert stages["ray"] == stages["simulated"] == [["stage1"], ["stage2"]]
