"""Each simulated worker draws its random numbers (the RBM's Gibbs samples) from its own torch RNG, seeded as a Ray
worker's process seeds its own (``ps.seeds.worker_rng``), kept in the whole-state checkpoint; an old checkpoint's one
shared state still resumes. Drawing on from one shared state in event order, a run of 2+ workers would draw other
numbers than the same run on Ray."""
import pytest
import torch
from ctrl_c import ctrl_c_after_push
from safetensors.torch import load_file

import downpour.ps.recorder as recorder
from downpour.config import load_config
from downpour.errors import CheckpointError
from downpour.ps.cluster import run_cluster
from downpour.ps.seeds import worker_seed
from downpour.ps.worker import Worker
from downpour.train.checkpoint import load_state, save_state
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")

# tiny rbm-digits on 2 workers, random delays: pushes land out of order, the workers' steps interleave
TINY = ["cluster.runner=simulated", "data.samples=64", "train.batch_size=8", "train.steps=24", "train.log_every=2",
        "train.tensorboard=false", "cluster.workers=2", "cluster.shards=1", 'cluster.delay="exponential:1.5"']


def _run(path, *sets, resume=False):
    cfg = load_config("rbm-digits", [*TINY, *sets])
    return run_cluster(cfg, RunDir.open(path) if resume else RunDir.create(path, cfg), resume=resume)


def _draws(monkeypatch):
    """{worker: torch's CPU RNG state at the start of each of its steps}, filled as the run steps."""
    seen: dict[int, list[torch.Tensor]] = {}
    step = Worker.step

    def noting(self, stage=None):
        seen.setdefault(self.wid, []).append(torch.get_rng_state())
        step(self, stage)

    monkeypatch.setattr(Worker, "step", noting)
    return seen


def _seeded(seed):
    return torch.Generator().manual_seed(seed).get_state()


def _same_training(a, b):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [(r["step"], r["loss"]) for r in RunDir(a).metrics()] == [(r["step"], r["loss"]) for r in RunDir(b).metrics()]


def test_each_simulated_worker_draws_what_its_ray_process_draws(tmp_path, monkeypatch):
    """Worker 0 goes on from the run's RNG once the initial model is drawn (the local loop's), worker 1 from
    worker_seed(seed, 1, 0): what ``worker_rng`` seeds each Ray worker's process with."""
    import downpour.ps.setup as setup_module

    runs = []
    set_up = setup_module.set_up_cluster
    monkeypatch.setattr("downpour.ps.cluster.set_up_cluster",
                        lambda cfg, resume=False, opened=None, listed_at_start=None:
                        runs.append(set_up(cfg, resume, opened, listed_at_start)) or runs[-1])
    seen = _draws(monkeypatch)
    _run(tmp_path / "a", "seed=3")
    assert torch.equal(seen[0][0], runs[0].rng)
    assert torch.equal(seen[1][0], _seeded(worker_seed(3, 1, 0)))
    assert not torch.equal(seen[0][1], seen[1][0])   # each goes on from its own: worker 1 not where worker 0 left off


def test_a_resume_of_a_random_model_on_two_workers_is_the_uninterrupted_run(tmp_path, monkeypatch):
    """The whole-state checkpoint keeps each worker's RNG state (``sim.w<w>.torch_rng``)."""
    _run(tmp_path / "a")
    on_push = ctrl_c_after_push(monkeypatch, 9)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b")
    monkeypatch.setattr(recorder.Recorder, "on_push", on_push)
    saved = load_file(str(tmp_path / "b/checkpoints/server.safetensors"))
    assert {"sim.w0.torch_rng", "sim.w1.torch_rng"} <= saved.keys()
    _run(tmp_path / "b", resume=True)
    _same_training(tmp_path / "a", tmp_path / "b")


def _rewrite(stem, tensors, meta):
    """The checkpoint ``stem`` saved anew with ``tensors`` and ``meta``, its digests written afresh (as a tool would)."""
    save_state(stem, tensors, {k: v for k, v in meta.items() if k not in ("safetensors_sha256", "json_sha256")})


def _as_before_2026_12_05(stem):
    """A whole-state checkpoint rewritten as the simulator wrote it before each worker kept its own RNG: one state,
    ``sim.torch_rng`` (worker 0's: the one a one-worker run drew from)."""
    tensors, meta = load_state(stem)
    tensors["sim.torch_rng"] = tensors.pop("sim.w0.torch_rng")
    for key in [k for k in tensors if k.endswith(".torch_rng") and k != "sim.torch_rng"]:
        del tensors[key]
    _rewrite(stem, tensors, meta)
    return meta["step"]


def test_a_checkpoint_missing_one_workers_rng_state_is_named_damaged_not_re_seeded(tmp_path, monkeypatch):
    """Worker 1's state gone from a file that keeps each worker's (its digests written anew, as a tool would):
    that worker was re-seeded without a word, and the resume drew other numbers than the run it continues."""
    on_push = ctrl_c_after_push(monkeypatch, 9)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b")
    monkeypatch.setattr(recorder.Recorder, "on_push", on_push)
    tensors, meta = load_state(tmp_path / "b/checkpoints/server")
    del tensors["sim.w1.torch_rng"]
    _rewrite(tmp_path / "b/checkpoints/server", tensors, meta)
    with pytest.raises(CheckpointError, match="lacks key 'sim.w1.torch_rng'"):
        _run(tmp_path / "b", resume=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_old_checkpoint_with_one_shared_rng_state_resumes(tmp_path, monkeypatch, workers):
    """Worker 0 goes on from the one saved state (one worker: the uninterrupted run bit for bit), the others
    re-seeded at the resume's step, as a Ray resume seeds them (not the run that never stopped: acceptable for
    an old file alone)."""
    sets = [f"cluster.workers={workers}"]
    _run(tmp_path / "a", *sets)
    on_push = ctrl_c_after_push(monkeypatch, 9)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", *sets)
    monkeypatch.setattr(recorder.Recorder, "on_push", on_push)
    step = _as_before_2026_12_05(tmp_path / "b/checkpoints/server")
    seen = _draws(monkeypatch)
    _run(tmp_path / "b", *sets, resume=True)
    if workers == 1:
        _same_training(tmp_path / "a", tmp_path / "b")
    else:
        assert torch.equal(seen[1][0], _seeded(worker_seed(0, 1, step)))


def test_the_model_file_keeps_the_first_workers_chains_also_when_saved_from_the_checkpoint(tmp_path):
    """The run's end saves worker 0's persistent chains (``chains_h``), not the driver's untrained zeros; a run stopped
    after its last push, before its model was saved, saves the same from its whole-state checkpoint."""
    _run(tmp_path / "a")
    _run(tmp_path / "b")
    for name in ("model.safetensors", "model.json"):
        (tmp_path / "b" / name).unlink()
    _run(tmp_path / "b", resume=True)
    a = load_file(str(tmp_path / "a/model.safetensors"))
    assert a["chains_h"].any()
    _same_training(tmp_path / "a", tmp_path / "b")
