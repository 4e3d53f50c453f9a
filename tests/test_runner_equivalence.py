"""The runners train the same thing: server SGD with one worker and one shard is the local loop bit
for bit, and the cat network trained in sync rounds on Ray is the simulator's, bit for bit, each
run through the command line with its report.

The references are other runners, not saved numbers: a bug in one runner (a learning rate that does
not reach the shards, a worker that skips a fetch, a round applied twice, a stage trained at the
wrong step) makes the two disagree.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import downpour.ps.setup
from downpour.cli import main
from downpour.config import load_config
from downpour.ps.checkpoint import load_server
from downpour.runners import train
from downpour.train.json_digest import rewrite_json
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings and analyses run in this process)

SGD = ["data.samples=64", "train.batch_size=8", "train.steps=12", "train.log_every=4", "train.tensorboard=false",
       "train.optimizer=sgd", "train.momentum=0", "train.lr=0.05"]
ONE_WORKER = ["cluster.runner=simulated", "cluster.workers=1", "cluster.shards=1", "cluster.rule=sgd",
              "cluster.n_fetch=1", "cluster.n_push=1", 'cluster.delay="constant:0"']


def _model(path):
    return load_file(str(path / "model.safetensors"))


def _losses(path):
    return [(r["step"], r["loss"]) for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines())]


def test_one_worker_one_shard_server_sgd_is_the_local_loop_bit_for_bit(tmp_path):
    """What has to match, and why it then matches bit for bit on CPU:

    - the initial parameters: both runners seed torch with ``seed``, build the data, then the model;
    - the batch order: the local loop draws it from ``Generator(seed + 1)``, and so does worker 0 from step 0
      (``batch_seed``; the other workers and re-seeds differ), without this test pointing it there by hand;
    - the learning rate: ``train.lr`` is both the local optimiser's and the shard rule's; momentum 0,
      as the server's SGD has none;
    - n_fetch = n_push = 1 and no delay: the worker fetches before every step (so it never moves its
      own replica) and its push is applied before the next fetch: no staleness.

    Then the shard's update ``w.add_(g, alpha=-lr)`` on the flat (numel,) vector and torch.optim.SGD's
    ``p.add_(grad, alpha=-lr)`` on each parameter are the same float32 operation on every element.
    """
    local_cfg = load_config("ufldl-sae", [*SGD, "cluster.runner=local"])
    local = train(local_cfg, RunDir.create(tmp_path / "local", local_cfg))
    server_cfg = load_config("ufldl-sae", [*SGD, *ONE_WORKER])
    server = train(server_cfg, RunDir.create(tmp_path / "server", server_cfg))
    assert server["versions"] == [12] and server["max_staleness"] == 0
    a, b = _model(tmp_path / "local"), _model(tmp_path / "server")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "local") == _losses(tmp_path / "server") and local["final_loss"] == server["final_loss"]


def test_one_worker_server_sgd_draws_the_local_loops_random_numbers(tmp_path):
    """A model that draws random numbers while it trains (the RBM's Gibbs chain) draws them from torch's global
    RNG, which both runners seed with ``seed``. The simulator's worker builds its own replica, whose initial
    weights its first fetch overwrites: built under ``fork_rng`` it draws nothing, so the worker's chain draws
    what the local loop's does and the run is the local run bit for bit (an initialisation drawing 6,400 normals
    first gives the same data, the same parameters at step 1, other negative samples: step 1's cost -0.19 against
    -0.17, rbm-digits, seed 0). The model file keeps the worker's persistent chains (``chains_h``, its replica's
    buffer), as the local run's keeps its own, not the driver's copy's, zeros never trained."""
    sets = [*SGD, "train.steps=6", "train.log_every=1"]
    local_cfg = load_config("rbm-digits", [*sets, "cluster.runner=local"])
    train(local_cfg, RunDir.create(tmp_path / "local", local_cfg))
    server_cfg = load_config("rbm-digits", [*sets, *ONE_WORKER])
    train(server_cfg, RunDir.create(tmp_path / "server", server_cfg))
    assert _losses(tmp_path / "local") == _losses(tmp_path / "server")
    a, b = _model(tmp_path / "local"), _model(tmp_path / "server")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) and a["chains_h"].any()


def test_a_simulated_run_checkpointed_before_worker_0_drew_the_local_stream_resumes_its_own_stream(tmp_path,
                                                                                                 monkeypatch):
    """A checkpoint written before 2026-12-05 records worker 0's seed step, not its seed: resumed, it goes on with the
    stream it began (the old formula), not the local loop's, so the resume is still its uninterrupted run bit for
    bit; a checkpoint written from then on says so (``LOCAL_FIRST``) and goes on with the local loop's."""
    import downpour.ps.recorder as recorder
    from downpour.ps.cluster import run_cluster
    from downpour.ps.seeds import LOCAL_FIRST, batch_seed, seeds_local_first

    sets = [*SGD, "train.steps=16", "cluster.runner=simulated", "cluster.workers=2", "cluster.shards=1",
            'cluster.delay="exponential:1.5"', "cluster.checkpoint_every=2"]

    def run(path, resume=False):
        cfg = load_config("ufldl-sae", sets)
        return run_cluster(cfg, RunDir.open(path) if resume else RunDir.create(path, cfg), resume=resume)

    class Killed(Exception):
        pass

    def killed_at_8(self, states=None):
        checkpoint(self, states)
        if self.coord.done >= 8:
            raise Killed

    checkpoint = recorder.Recorder.checkpoint
    for old in (True, False):
        a, b = tmp_path / f"a{old}", tmp_path / f"b{old}"
        if old:    # the code before: worker 0 on the formula the others use
            monkeypatch.setattr(downpour.ps.setup, "batch_seed", lambda s, w, k, local_first=True: batch_seed(s, w, k, False))
        run(a)
        monkeypatch.setattr(recorder.Recorder, "checkpoint", killed_at_8)
        monkeypatch.setattr(recorder.Recorder, "save_on_failure", lambda self, err=None: None)
        with pytest.raises(Killed):
            run(b)
        monkeypatch.undo()
        meta = json.loads((b / "checkpoints/server.json").read_text())
        assert meta["step"] >= 8 and meta["sim"]["seed_steps"] == [0, 0] and meta.pop(LOCAL_FIRST) is True
        if not old:
            meta[LOCAL_FIRST] = True
        rewrite_json(b / "checkpoints/server.json", meta)
        run(b, resume=True)
        wa, wb = _model(a), _model(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa) and _losses(a) == _losses(b)
    assert _losses(tmp_path / "aTrue") != _losses(tmp_path / "aFalse")     # the two formulas' streams differ
    assert not seeds_local_first({"streams": [{"seed_step": 0, "position": {}}]}) and seeds_local_first({})


# --- the cat network on the simulator and on Ray, through the command line -------------------------

# tiny: 20x20 crops, 4 maps per stage; 24 greedy steps (stage 1 for the first 12), a fast analysis
TINY_CAT = ["data.size=20", "model.kernels=[5,3]", "model.maps=[4,4]", "train.batch_size=8", "train.lr=0.02",
            "train.log_every=4", "train.tensorboard=false",
            # one thread, as each Ray worker has on 2 cores: a thread count can change float sums
            "train.threads=1",
            "analysis.splits=1", "analysis.bootstrap=20", "analysis.random_filters=20", "analysis.stimulus_steps=5",
            "analysis.stimulus_restarts=1", 'analysis.probes=["lfw"]', "analysis.probe_samples=100",
            "analysis.probe_folds=2", "analysis.top_k=2"]


@pytest.fixture(scope="module")
def cat_runs(tmp_path_factory, local_ray):
    """cat-demo (tiny) trained by ``downpour train ... --report`` on the simulator and on the local Ray
    (2 CPUs), 2 workers and 2 shards in sync rounds: {runner: run directory}."""
    root = tmp_path_factory.mktemp("cat")
    threads = torch.get_num_threads()
    args = ["train", "--config", "cat-demo", "--workers", "2", "--shards", "2", "--consistency", "sync",
            "--steps", "24", "--report", *[a for o in TINY_CAT for a in ("--set", o)]]
    try:
        for runner in ("simulated", "ray"):
            assert main([*args, "--runner", runner, "--out", str(root / runner)]) == 0
    finally:
        torch.set_num_threads(threads)
    return {runner: root / runner for runner in ("simulated", "ray")}


@pytest.mark.parametrize("runner", ["simulated", "ray"])
def test_cat_network_trains_on_a_parameter_server_runner_and_writes_its_report(cat_runs, runner):
    path = cat_runs[runner]
    assert (path / "report.html").stat().st_size > 10_000 and (path / "analysis.json").is_file()
    summary = json.loads((path / "cluster.json").read_text())
    assert summary["runner"] == runner and summary["steps"] == 24
    assert summary["accepted"] == summary["applied"] == [24, 24]
    stage1 = [r["stage1/reconstruction"] for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines())
              if "stage1/reconstruction" in r]
    assert len(stage1) == 3 and stage1[-1] < 0.75 * stage1[0]      # 42.4 -> 17.6 when written


def test_ray_sync_rounds_are_the_simulators_bit_for_bit(cat_runs):
    """With 2 workers a round's mean is (g0 + g1) / 2 whichever push arrives first (float addition of
    two terms commutes), so the arrival order Ray happens to give cannot change a bit."""
    sim, ray_run = cat_runs["simulated"], cat_runs["ray"]
    a, b = _model(sim), _model(ray_run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the same applied rounds: per shard, every (worker, push number, base version, applied version)
    sim_states, _ = load_server(sim / "checkpoints/server")
    ray_states, _ = load_server(ray_run / "checkpoints/server")
    for (s, _), (r, _) in zip(sim_states, ray_states, strict=True):
        assert sorted(s["log"].tolist()) == sorted(r["log"].tolist())
    # a logged loss is a mean over the pushes since the last row, summed in arrival order
    (steps, losses), (ray_steps, ray_losses) = zip(*_losses(sim)), zip(*_losses(ray_run))
    assert steps == ray_steps and losses == pytest.approx(ray_losses, rel=1e-12)
