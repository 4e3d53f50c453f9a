"""Sandblaster's L-BFGS: the same iterates as a textbook single-process L-BFGS (tests/sandblaster_runs.py), on the whole
set and on sampled batches; curvature pairs and the convergence test in any cost's units; line searches that fail or
meet a non-finite gradient; stages handing on."""
import copy
import dataclasses
import math

import pytest
import torch
from sandblaster_runs import PLANTED, _cfg, _full_batch, _reference_lbfgs

from downpour.cli import main
from downpour.config import load_config
from downpour.runners import train
from downpour.sandblaster.history import HistoryShard
from downpour.sandblaster.lbfgs import Coordinator, Evaluation, LocalShards
from downpour.sandblaster.units import UnitCounts, batch_rows
from downpour.train.checkpoint import load_state
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("batch", [0, 100])
def test_sandblaster_on_the_simulator_takes_the_same_steps_as_single_process_lbfgs(tmp_path, batch):
    # 3 workers (the last 4x slower, so backups win some units), 3 shards, 12 units, memory 3 (so
    # pairs are dropped), 8 iterations on the whole set or on a new 100 of its 300 examples each time:
    # the iterates agree to rounding
    cfg = _cfg("sandblaster.precision=float64", "sandblaster.history=3", "sandblaster.units=12",
               "sandblaster.backup_after=0.5", "cluster.workers=3", "cluster.shards=3", "cluster.delay=straggler:0:4",
               "train.steps=8", f"sandblaster.batch={batch}")
    summary = train(cfg, RunDir.create(tmp_path / "r", cfg))
    fg, w0, _ = _full_batch(cfg)
    sample = (lambda k: batch_rows(300, batch, cfg.seed, k)) if batch else None
    w_ref, losses_ref = _reference_lbfgs(fg, w0, 8, 3, batch=sample)
    tensors, _ = load_state(tmp_path / "r" / "checkpoints" / "sandblaster")
    w = torch.cat([tensors[f"shard{j}.w"] for j in range(3)])
    assert w.dtype == torch.float64
    assert (w - w_ref).abs().max() < 1e-6
    losses = [row["loss"] for row in RunDir.open(tmp_path / "r").metrics()]
    assert losses == pytest.approx(losses_ref, rel=1e-9)
    assert summary["backups_won"] > 0 and summary["evaluations"] >= 8 * (2 if batch else 1)
    if not batch:   # (on samples that change every iteration the cost may rise)
        assert all(b < a for a, b in zip(losses, losses[1:]))


class _Cosine:
    """A pool with no units: f(w) = sum(cos w), its gradient -sin w put straight into the shards."""

    def __init__(self, shards):
        self.shards, self.group = shards, LocalShards(shards)

    def evaluate(self, evaluation, rows, t, stage):
        points = [s.point(t) for s in self.shards]
        for s, p in zip(self.shards, points):
            s.accumulate(evaluation, 0, -torch.sin(p))
        loss = float(sum(torch.cos(p).sum() for p in points))
        return Evaluation(loss, {"cos": loss}, 0.0, 0.0, UnitCounts())


def test_a_step_across_negative_curvature_leaves_no_pair_behind():
    # from w = 0.1, where cos is concave, the step downhill has s.y < 0: keeping the pair would make
    # H indefinite, so neither the coordinator nor the shards may keep it
    w = torch.full((6,), 0.1, dtype=torch.float64)
    shards = [HistoryShard(j, w[3 * j:3 * j + 3], history=5, start=3 * j) for j in range(2)]
    coord = Coordinator(LocalShards(shards), _Cosine(shards), history=5, line_search=10)
    step = coord.iterate(0, torch.arange(1), None, new_batch=False, new_stage=False)
    assert step.t > 0 and step.loss < 6 * math.cos(0.1)
    assert coord.rho == [] and all(s.pairs == [] for s in shards)
    for it in range(1, 20):     # past pi/2 the curvature turns positive: pairs are kept, and it finds the minimum
        step = coord.iterate(it, torch.arange(1), None, new_batch=False, new_stage=False)
    assert coord.rho and step.loss == pytest.approx(-6.0, abs=1e-9)


class _Quadratic:
    """A pool with no units: the planted convex f(w) = 1000 + ½ wᵀAw − bᵀw, minimum at w* = A⁻¹b (the
    constant puts f's rounding floor, 1000 · 2⁻⁵² ≈ 2e-13, within reach of a few dozen iterations)."""

    def __init__(self, shards, a, b):
        self.shards, self.group, self.a, self.b = shards, LocalShards(shards), a, b

    def f(self, w):
        return 1000.0 + float(0.5 * w @ self.a @ w - self.b @ w)

    def evaluate(self, evaluation, rows, t, stage):
        w = torch.cat([s.point(t) for s in self.shards])
        for s in self.shards:
            s.accumulate(evaluation, 0, (self.a @ w - self.b)[s.start:s.stop])
        return Evaluation(self.f(w), {}, 0.0, 0.0, UnitCounts())


def test_a_planted_quadratic_converges_to_its_minimum_as_scipys_lbfgs_does():
    """At the cost's rounding floor f + c1·t·g.d rounded to f, so a trial that changed nothing passed Armijo:
    every iteration took 10 evaluations to accept t = 1e-9 with f unchanged, and the run never converged."""
    optimize = pytest.importorskip("scipy.optimize")
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(20, 20, dtype=torch.float64, generator=generator)
    a = q @ q.T / 20 + 0.1 * torch.eye(20, dtype=torch.float64)          # condition number about 40
    w_star = torch.randn(20, dtype=torch.float64, generator=generator)
    w0 = torch.zeros(20, dtype=torch.float64)
    shards = [HistoryShard(j, w0[10 * j:10 * j + 10], history=5, start=10 * j) for j in range(2)]
    pool = _Quadratic(shards, a, a @ w_star)
    coord = Coordinator(LocalShards(shards), pool, history=5, line_search=10)
    steps, f = [], pool.f(w0)
    while len(steps) < 300 and not (steps and steps[-1].converged):
        steps.append(coord.iterate(len(steps), torch.arange(1), None, new_batch=False, new_stage=False))
        assert steps[-1].loss < f or steps[-1].t == 0      # a step taken decreased f
        f = steps[-1].loss
    assert steps[-1].converged and len(steps) < 150
    w = torch.cat([s.params() for s in shards])
    f_star = pool.f(w_star)
    scipy = optimize.minimize(lambda x: (pool.f(torch.from_numpy(x)), (a @ torch.from_numpy(x) - a @ w_star).numpy()),
                              w0.numpy(), jac=True, method="L-BFGS-B", options={"maxcor": 5, "gtol": 1e-12, "ftol": 1e-16})
    assert scipy.success and scipy.fun - f_star < 1e-11                 # (1.1e-13 here, 44 iterations; ours 1.1e-13, 47)
    assert coord.f - f_star < 1e-11 and (w - w_star).abs().max() < 1e-5     # the same rounding floor as scipy's


def _planted_without_constant(scale, limit, resume_at=None):
    """The planted quadratic times ``scale``, with no constant term, run from 0 until it converges or ``limit``
    iterations: (the iterations, w at the end, w*); ``resume_at``: a new coordinator takes over the old one's
    state there, as a resumed run's does from its checkpoint."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(20, 20, dtype=torch.float64, generator=generator)
    a = (q @ q.T / 20 + 0.1 * torch.eye(20, dtype=torch.float64)) * scale
    w_star = torch.randn(20, dtype=torch.float64, generator=generator)
    w0 = torch.zeros(20, dtype=torch.float64)
    shards = [HistoryShard(j, w0[10 * j:10 * j + 10], history=5, start=10 * j) for j in range(2)]
    pool = _Quadratic(shards, a, a @ w_star)
    pool.f = lambda w: float(0.5 * w @ a @ w - (a @ w_star) @ w)
    coord = Coordinator(LocalShards(shards), pool, history=5, line_search=10)
    steps = []
    while len(steps) < limit and not (steps and steps[-1].converged):
        if len(steps) == resume_at:
            state, coord = copy.deepcopy(coord.state()), Coordinator(LocalShards(shards), pool, history=5, line_search=10)
            coord.load_state(state)
        steps.append(coord.iterate(len(steps), torch.arange(1), None, new_batch=False, new_stage=False))
    return steps, torch.cat([s.params() for s in shards]), w_star


def test_a_cost_in_other_units_keeps_its_curvature_pairs():
    """The pair test was s.y > 1e-10, in the cost's units: the planted quadratic times 1e-8 (no constant) kept
    no pair, and 400 iterations of steps along -g left w where it started (|w - w*| 1.61). L-BFGS's steps do not
    change with the cost's scale, so neither may its test: s.y > eps (-g.s), as L-BFGS-B's."""
    steps, w, w_star = _planted_without_constant(1e-8, 400)
    assert max(s.pairs for s in steps) == 5 and (w - w_star).abs().max() < 1e-3      # (30 iterations, 1.2e-4 here)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_the_convergence_test_does_not_depend_on_the_costs_units(scale):
    """|g| <= 1e-12 was in the cost's units: the planted quadratic (no constant) times 1e-6 stopped at once near
    |w - w*| 5e-7 (45 iterations), times 1 and 1e6 never reached it and ended in a failed line search (54-56). Now
    the same iterations, within a few, at every scale, each ended by the gradient test, not by a failed search."""
    steps, w, w_star = _planted_without_constant(scale, 200)
    assert steps[-1].converged and steps[-1].move == "none"          # the gradient test, not a failed search
    assert 47 <= len(steps) <= 55 and all(s.t > 0 for s in steps[:-1])   # (50, 52, 52 here)
    assert (w - w_star).abs().max() < 2e-7                            # (9.8e-8, 5.8e-8, 5.8e-8)


def test_a_resumed_run_keeps_its_stages_first_gradient_as_the_convergence_scale():
    """|g| <= 1e-8 |g0| reads g0 from the checkpoint: a resume that took its own first |g| as g0 would hold the run
    to a tighter test than the run it resumes, and stop elsewhere (52 iterations here; 56 with the resume's own |g|)."""
    whole, w, _ = _planted_without_constant(1.0, 200)
    resumed, w_resumed, _ = _planted_without_constant(1.0, 200, resume_at=30)
    assert len(resumed) == len(whole) and resumed[-1].converged and torch.equal(w, w_resumed)


class _Steep:
    """A pool with no units: f(w) = 1000·|w|², so from w = (0.001, 0) a unit step along -g overshoots
    by far more than two backtracks can undo: every line search of two evaluations fails."""

    def __init__(self, shards):
        self.shards, self.group, self.evaluations = shards, LocalShards(shards), 0

    def evaluate(self, evaluation, rows, t, stage):
        self.evaluations += 1
        points = [s.point(t) for s in self.shards]
        for s, p in zip(self.shards, points):
            s.accumulate(evaluation, 0, 2000 * p)
        loss = float(sum(1000 * (p ** 2).sum() for p in points))
        return Evaluation(loss, {"f": loss}, 0.0, 0.0, UnitCounts())


class _NaNGradientOnce:
    """f(w) = |w|²/2, whose gradient is NaN at the ``bad``-th evaluation (its cost finite)."""

    def __init__(self, shards, bad):
        self.shards, self.group, self.evaluations, self.bad = shards, LocalShards(shards), 0, bad

    def evaluate(self, evaluation, rows, t, stage):
        self.evaluations += 1
        points = [s.point(t) for s in self.shards]
        for s, p in zip(self.shards, points):
            s.accumulate(evaluation, 0, p.clone() if self.evaluations != self.bad else torch.full_like(p, math.nan))
        loss = float(sum(0.5 * (p ** 2).sum() for p in points))
        return Evaluation(loss, {"f": loss}, 0.0, 0.0, UnitCounts())


def test_a_trial_whose_gradient_is_not_finite_is_rejected_not_taken():
    """Armijo read the cost alone: the step was taken and its NaN gradient became the next iteration's,
    which then failed (after the step and its checkpoint), and so did every resume."""
    w = torch.tensor([1.0, -2.0], dtype=torch.float64)
    shards = [HistoryShard(j, w[j:j + 1], history=5, start=j) for j in range(2)]
    coord = Coordinator(LocalShards(shards), _NaNGradientOnce(shards, bad=2), history=5, line_search=10)
    first = coord.iterate(0, torch.arange(1), None, new_batch=True, new_stage=False)   # f(w), then the trials
    assert first.move == "step" and first.evaluations == 3     # the first trial passed Armijo: its NaN turned it down
    assert all(torch.isfinite(s.vec["g"]).all() for s in shards)
    for it in range(1, 30):
        if coord.iterate(it, torch.arange(1), None, new_batch=False, new_stage=False).converged:
            break
    assert coord.f < 1e-12


@pytest.mark.parametrize("new_batch, searches", [(False, 1), (True, 2)])
def test_a_failed_search_along_minus_g_on_the_same_batch_is_not_repeated(new_batch, searches):
    # on the whole data set the next iteration would search from the same point, along the same -g,
    # with the same first step: it used to, a full distributed pass per evaluation, before converging
    w = torch.tensor([0.001, 0.0], dtype=torch.float64)
    shards = [HistoryShard(j, w[j:j + 1], history=5, start=j) for j in range(2)]
    pool = _Steep(shards)
    coord = Coordinator(LocalShards(shards), pool, history=5, line_search=2)
    steps = [coord.iterate(0, torch.arange(1), None, new_batch=new_batch, new_stage=False)]
    while not steps[-1].stop and len(steps) < 5:
        steps.append(coord.iterate(len(steps), torch.arange(1), None, new_batch=new_batch, new_stage=False))
    assert len(steps) == searches and all(s.t == 0 for s in steps)
    assert steps[-1].stop.reason == "line search" and not steps[-1].converged     # (f = 1e-3 with 1e-3 to gain)
    assert pool.evaluations == 2 * searches + (searches if new_batch else 1)   # + f(w) per new batch


def test_a_new_stage_does_not_inherit_the_last_stages_failed_search():
    """On sampled batches two failed searches in a row converge; the count ran on across a stage switch,
    so a stage whose first search failed right after the last stage's last one ended the run."""
    w = torch.tensor([0.001, 0.0], dtype=torch.float64)
    shards = [HistoryShard(j, w[j:j + 1], history=5, start=j) for j in range(2)]
    coord = Coordinator(LocalShards(shards), _Steep(shards), history=5, line_search=2)
    first = coord.iterate(0, torch.arange(1), 1, new_batch=True, new_stage=False)
    assert first.t == 0 and not first.stop and coord.failures == 1
    assert not coord.iterate(1, torch.arange(1), 2, new_batch=True, new_stage=True).stop
    assert coord.iterate(2, torch.arange(1), 2, new_batch=True, new_stage=False).stop   # two in this stage


def test_a_greedy_stage_that_converges_hands_on_to_the_next(tmp_path, monkeypatch):
    # convergence ended the whole run: stage 2 of a greedy schedule was never trained
    search = Coordinator.search

    def converges_in_stage_1(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        return dataclasses.replace(step, stop=PLANTED) if stage == 1 else step

    monkeypatch.setattr(Coordinator, "search", converges_in_stage_1)
    cfg = load_config("cat-demo", ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "train.steps=6",
                                   "train.tensorboard=false"])
    summary = train(cfg, RunDir.create(tmp_path / "greedy", cfg))
    rows = RunDir.open(tmp_path / "greedy").metrics()
    assert [r["step"] for r in rows] == [1, 4, 5, 6]                   # stage 1 gave up its iterations 2-3
    assert all(any(k.startswith("stage2/") for k in r) for r in rows[1:]) and summary["steps"] == 6
    assert not summary["converged"]


def test_a_non_finite_gradient_fails_the_run_instead_of_converging(tmp_path, capsys, monkeypatch):
    """Half-blank images, pooled_l2 with eps = 0: a finite cost with a NaN gradient. L-BFGS read the NaN
    gradient norm as "converged" and the run ended with exit 0. (pooled_l2 with eps = 0 now computes |p|,
    whose gradient at 0 is 0; the test puts the old sqrt(p²) back, the NaN gradient a user's term can make.)"""
    import numpy as np

    from downpour.objectives import PooledL2, _per_sample_sum

    monkeypatch.setattr(PooledL2, "value", lambda self, o: _per_sample_sum(torch.sqrt(self.eps + o.pooled ** 2)).mean())

    images = np.random.default_rng(0).random((20, 16, 16)).astype(np.float32)
    images[:, :, 8:] = 0.0                                   # every 8x8 window on the right is blank
    np.save(tmp_path / "halfblank.npy", images)
    argv = ["train", "--config", "tica-8x8", "--runner", "simulated", "--workers", "2", "--shards", "2",
            "--steps", "5", "--out", str(tmp_path / "run")]
    for key in ("cluster.algorithm=sandblaster", "sandblaster.units=4", "model.name=rica-8x8", "data.source=array",
                f"data.path={tmp_path / 'halfblank.npy'}", "data.samples=200", "data.normalize=none",
                "data.whiten=none", "objective.pooled_l2.eps=0", "train.threads=1", "train.tensorboard=false"):
        argv += ["--set", key]
    assert main(argv) == 2
    assert "or its gradient, is not finite" in capsys.readouterr().err
