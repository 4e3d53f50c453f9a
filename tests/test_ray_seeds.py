"""A Ray run of a model that draws random numbers while it trains (the RBM's Gibbs chain) is seeded by the run's
seed: each worker actor seeds torch's RNG in its own process (``ps.seeds.worker_rng``), so a sync run repeats,
and one worker draws the local loop's random numbers. Unseeded, each process begins at a random seed, and two sync
runs of rbm-digits, seed 0, 40 steps, end 0.094 apart in their weights."""
from __future__ import annotations

import functools
import json

import pytest
import torch
from safetensors.torch import load_file

from downpour.config import load_config
from downpour.runners import train
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("local_ray", "one_thread")

# tiny rbm-digits: SGD everywhere, one thread per worker (as on 2 cores: a thread count can change float sums)
TINY = ["data.samples=64", "train.batch_size=8", "train.steps=6", "train.log_every=1", "train.tensorboard=false",
        "train.optimizer=sgd", "train.momentum=0", "train.lr=0.05", "train.threads=1"]
RAY_SYNC = ["cluster.runner=ray", "cluster.consistency=\"sync\"", "cluster.shards=1", "cluster.rule=sgd",
            "cluster.n_fetch=1", "cluster.n_push=1"]
TRAINED = ("weight", "visible_bias", "hidden_bias")
TWO_WORKERS = [*RAY_SYNC, "cluster.workers=2", "train.log_every=2"]


def _run(path, *sets):
    cfg = load_config("rbm-digits", [*TINY, *sets])
    train(cfg, RunDir.create(path, cfg))
    rows = [json.loads(r) for r in (path / "metrics.jsonl").read_text().splitlines()]
    return load_file(str(path / "model.safetensors")), [(r["step"], r["loss"]) for r in rows]


@pytest.fixture(scope="module")
def two_ray_workers(tmp_path_factory):
    """The Ray run of :data:`TWO_WORKERS`, made once for the module by the first test that calls it (under that
    test's ``one_thread``): the tests below each compare other runs with it (a Ray run's actors cost seconds
    to start, some 10 s of the suite's 2-core run)."""
    return functools.cache(lambda: _run(tmp_path_factory.mktemp("two_ray_workers"), *TWO_WORKERS))


def test_a_sync_ray_run_of_a_model_drawing_random_numbers_repeats(tmp_path, two_ray_workers):
    """Two workers in sync rounds: a round's mean of two pushes is the same sum whichever arrives first, so with
    every worker's draws seeded the whole run repeats; a logged row is a round's two pushes, in arrival order. The Ray
    run is the simulator's of the same seed bit for bit, and the simulator's repeats: a Ray run is the seed's run.
    (The simulator stands in for a second Ray run, 3 actor starts: a worker process left unseeded draws apart from
    the simulator's seeded worker as it would from another Ray run's.)"""
    ray_run, ray_losses = two_ray_workers()
    a, losses_a = _run(tmp_path / "a", *TWO_WORKERS, "cluster.runner=simulated")
    b, losses_b = _run(tmp_path / "b", *TWO_WORKERS, "cluster.runner=simulated")
    assert all(torch.equal(a[k], b[k]) and torch.equal(ray_run[k], a[k]) for k in TRAINED)
    assert [s for s, _ in ray_losses] == [s for s, _ in losses_a] == [s for s, _ in losses_b]
    assert [x for _, x in ray_losses] == pytest.approx([x for _, x in losses_a], rel=1e-6)
    assert [x for _, x in losses_b] == pytest.approx([x for _, x in losses_a], rel=1e-6)


def test_one_ray_worker_draws_the_local_loops_random_numbers(tmp_path):
    """Worker 0 from step 0 draws on from the run's RNG once the initial model is drawn, as the local loop (and the
    simulator's workers) do: one worker in sync rounds with server SGD is the local run bit for bit."""
    local, local_losses = _run(tmp_path / "local", "cluster.runner=local")
    ray_run, ray_losses = _run(tmp_path / "ray", *RAY_SYNC, "cluster.workers=1")
    assert ray_losses == local_losses
    assert local.keys() == ray_run.keys() and all(torch.equal(local[k], ray_run[k]) for k in local)   # chains_h too


def test_two_simulated_workers_draw_what_two_ray_workers_draw(tmp_path, two_ray_workers):
    """The simulator's workers each draw from their own RNG, seeded as the Ray workers' processes are: the same sync
    run on both runners is bit for bit the same model, the first worker's persistent chains included (not drawn from
    one shared RNG, nor the driver's zeros in the model files)."""
    ray_run, ray_losses = two_ray_workers()
    sim, sim_losses = _run(tmp_path / "sim", *TWO_WORKERS, "cluster.runner=simulated")
    assert sim.keys() == ray_run.keys() and all(torch.equal(sim[k], ray_run[k]) for k in sim)
    assert [s for s, _ in sim_losses] == [s for s, _ in ray_losses]
    assert [x for _, x in sim_losses] == pytest.approx([x for _, x in ray_losses], rel=1e-6)
