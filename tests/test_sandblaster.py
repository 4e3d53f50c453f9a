"""Sandblaster L-BFGS: the same iterates as a textbook single-process L-BFGS, units counted once
whatever the backups do, backups beating a straggler in virtual time, the CLI's run directory and
resume, and a Ray run."""
import copy
import dataclasses
import json
import logging
import math

import pytest
import torch

from downpour.batch import Batch
from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.errors import RunError
from downpour.models.registry import build
from downpour.preflight import check_run_config
from downpour.ps.setup import set_up_cluster
from downpour.runners import train
from downpour.sandblaster.checks import check_examples, check_sandblaster
from downpour.sandblaster.history import HistoryShard
from downpour.sandblaster.lbfgs import Coordinator, Evaluation, LocalShards, Stop
from downpour.sandblaster.run import make_shards
from downpour.sandblaster.simulated import SimulatedPool
from downpour.sandblaster.units import UnitCounts, UnitScheduler, batch_rows, split_units
from downpour.train.checkpoint import load_state
from downpour.train.flat import ParamLayout
from downpour.train.rundir import RunDir
from downpour.train.step import train_step

pytestmark = pytest.mark.usefixtures("one_thread")

# RICA (linear codes, tied decoder, pooled L2 sparsity: a non-convex cost that is a mean over
# examples) with 16 codes on 300 whitened 8x8 patches
SMALL = ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "model.name=rica-8x8", "model.hidden=16",
         "data.samples=300", "train.tensorboard=false"]


PLANTED = Stop("gradient", "converged (planted by the test)")


def _cfg(*overrides):
    return load_config("tica-8x8", [*SMALL, *overrides])


# -- an independent reference: Nocedal & Wright's L-BFGS on one process, on the whole batch --------
def _full_batch(cfg):
    """f(w), grad f(w) on every example at once, float64, with the run's initial w."""
    setup = set_up_cluster(cfg)
    model, objective = build(cfg, setup.data.input_shape)
    model.double()
    layout = ParamLayout(model)
    x = setup.data.x.double()

    def fg(w, rows=slice(None)):
        layout.vector_to_params(w, model)
        step = train_step(model, objective, Batch(x[rows]))
        return step.loss, layout.grads_to_vector(model).clone()

    return fg, setup.layout.params_to_vector(setup.model).double(), setup


def _reference_lbfgs(fg, w, iterations, m, c1=1e-4, batch=None):
    """Two-loop recursion with H0 = (s.y / y.y) I; backtracking from t = 1 (first iteration:
    min(1, 1/|g|)) by the safeguarded quadratic step in [0.1 t, 0.5 t]; pairs kept when s.y > eps (-g.s), L-BFGS-B's test.
    ``batch(k)``: iteration k's examples (f and g re-evaluated at w on them first); None: all, always."""
    rows = slice(None)
    f, g = fg(w)
    S, Y, losses = [], [], []
    for k in range(iterations):
        if batch is not None:
            rows = batch(k)
            f, g = fg(w, rows)
        q, alphas = g.clone(), []
        for s, y in reversed(list(zip(S, Y))):
            a = s.dot(q) / y.dot(s)
            q -= a * y
            alphas.append(a)
        if S:
            q *= S[-1].dot(Y[-1]) / Y[-1].dot(Y[-1])
        for (s, y), a in zip(zip(S, Y), reversed(alphas)):
            b = y.dot(q) / y.dot(s)
            q += (a - b) * s
        d = -q
        gd = float(g.dot(d))
        assert gd < 0
        t = 1.0 if S else min(1.0, 1.0 / float(g.norm()))
        for _ in range(10):
            f_new, g_new = fg(w + t * d, rows)
            if f_new - f <= c1 * t * gd:      # (f + c1 t gd would round to f near the minimum)
                break
            t = min(max(-gd * t * t / (2 * (f_new - f - gd * t)), 0.1 * t), 0.5 * t)
        else:
            raise AssertionError("the reference's line search failed")
        s, y = t * d, g_new - g
        if s.dot(y) > 2.220446049250313e-16 * float(-g.dot(s)):
            S, Y = (S + [s])[-m:], (Y + [y])[-m:]
        w, f, g = w + t * d, f_new, g_new
        losses.append(f)
    return w, losses


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


def test_a_free_worker_backs_up_a_late_unit_not_one_already_done():
    """A unit whose backup won is done while its original still runs: it was the oldest single-copy
    "candidate", so a free worker got a third copy of it (5 of 15 backups in a simulated run)."""
    s = UnitScheduler(split_units(torch.arange(40), 4), 0.0)
    for w in range(3):
        s.next_for(w, 0.0)                      # units 0, 1, 2
    s.finish(0, 0, 1.0)
    assert s.next_for(0, 1.0)[0].index == 3     # the queue's last unit
    s.finish(1, 1, 1.0)
    unit, backup = s.next_for(1, 2.0)
    assert (unit.index, backup) == (2, True)    # unit 2 is late: backed up on worker 1
    s.finish(2, 1, 3.0)                         # the backup wins; worker 2 still runs the original
    got = s.next_for(1, 3.0)
    assert got is None or (got[0].index, got[1]) == (3, True)    # unit 3 (outstanding) or nothing, never 2 again


def test_every_unit_is_added_once_even_with_backups_and_late_copies():
    # backups from the first free worker on, a 10x straggler whose copies run on into the next evaluations
    cfg = _cfg("sandblaster.precision=float64", "sandblaster.units=10", "sandblaster.backup_after=0",
               "cluster.workers=4", "cluster.shards=2", "cluster.delay=straggler:0:10")
    cfg = check_run_config(cfg)
    fg, w0, setup = _full_batch(cfg)
    shards = make_shards(setup)
    pool = SimulatedPool(setup, shards)
    backups = duplicates = 0
    for evaluation in range(1, 5):   # a new sample of 200 examples each time: a late copy's rows are not this batch's
        rows = batch_rows(len(setup.data), 200, 0, evaluation)
        f, g = fg(w0, rows)
        pool.group.call("begin", evaluation)
        ev = pool.evaluate(evaluation, rows, 0.0, None)
        acc = torch.cat([s.vector("acc") for s in shards])
        assert (acc - g).abs().max() < 1e-12 and ev.loss == pytest.approx(f, rel=1e-12)
        assert sum(ev.counts.won.values()) == 10                 # each unit used once
        backups, duplicates = backups + ev.counts.backups, duplicates + ev.counts.duplicates
    assert backups > 0 and duplicates > 0                        # the straggler's copies lost, and were dropped
    assert all(s.duplicates == 0 for s in shards)                # the pool never even offered one twice


def test_a_shard_refuses_a_unit_twice_and_a_unit_of_a_finished_evaluation():
    shard = HistoryShard(0, torch.zeros(3, dtype=torch.float64), history=2)
    shard.begin(1)
    assert shard.accumulate(1, 0, torch.ones(3)) and not shard.accumulate(1, 0, torch.ones(3))
    shard.begin(2)
    assert not shard.accumulate(1, 1, torch.ones(3))              # late: evaluation 1 is over
    assert shard.accumulate(2, 0, torch.full((3,), 2.0))
    assert shard.vector("acc").tolist() == [2.0, 2.0, 2.0] and shard.duplicates == 2


def test_the_scheduler_backs_up_only_late_units_once_the_queue_is_empty_and_enough_are_done():
    sched = UnitScheduler(split_units(torch.arange(8), 4), backup_after=0.5)
    assert [sched.next_for(w, 0.0)[0].index for w in range(3)] == [0, 1, 2]      # worker 2 is slow
    assert sched.finish(0, 0, 1.0) and sched.next_for(0, 1.0)[0].index == 3      # the queue empties
    assert sched.next_for(1, 1.0) is None                                        # 1 of 4 done < 2: no backup yet
    assert sched.finish(1, 1, 1.0)
    assert sched.next_for(1, 1.0) is None                                        # 2 done, but unit 2 is not late yet
    assert sched.backup_due() == 1.5                                             # 1.5 x the median time (1)
    unit, backup = sched.next_for(1, 1.5)
    assert (unit.index, backup) == (2, True)
    assert not sched.finish(3, 1, 1.8)                    # not a copy it handed out (a late one of another batch)
    assert sched.finish(3, 0, 2.0) and sched.finish(2, 1, 2.5) and not sched.finish(2, 2, 10.0)
    assert sched.complete
    c = sched.counts
    assert (c.dispatched, c.backups, c.backups_won, c.duplicates) == (5, 1, 1, 2)


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


def _batch_times(tmp_path, name, *overrides):
    cfg = _cfg("cluster.workers=4", "sandblaster.units=12", "train.steps=3", *overrides)
    summary = train(cfg, RunDir.create(tmp_path / name, cfg))
    return [b["span"] for b in json.loads((tmp_path / name / "sandblaster.json").read_text())["batches"]], summary


def test_backups_keep_a_10x_straggler_from_setting_the_pace(tmp_path):
    normal, _ = _batch_times(tmp_path, "normal", "cluster.delay=constant:0")
    backed, s = _batch_times(tmp_path, "backups", "cluster.delay=straggler:0:10", "sandblaster.backup_after=0.75")
    waiting, _ = _batch_times(tmp_path, "no-backups", "cluster.delay=straggler:0:10", "sandblaster.backup_after=1")
    base = sum(normal) / len(normal)
    assert max(backed) <= 1.5 * base and s["backups_won"] > 0
    assert sum(waiting) / len(waiting) >= 3 * base


@pytest.mark.parametrize("override, named", [
    ("model.name=rbm-digits", "contrastive_divergence"),
    ("data.flip=true", "augmentation"),
    ("sandblaster.units=400", "sandblaster.units"),
    ("objective.contractive=0.1", "contractive.probes = 0"),     # a bare weight: the default probes = 1 (was let through)
    # the value asked for, and the way out (until 2026-12-06 it named neither the 4 nor Downpour)
    ("cluster.partitions=4", r"cluster.partitions = 4 splits .*or train with cluster.algorithm = 'downpour'"),
])
def test_what_lbfgs_cannot_run_is_refused_before_the_run_starts(override, named):
    with pytest.raises(ConfigError, match=named):
        cfg = check_run_config(_cfg(override))
        train(cfg, RunDir.create("/nonexistent/never", cfg))


def test_the_exact_contractive_penalty_is_taken():
    check_sandblaster(check_run_config(_cfg("model.name=rica-8x8", "objective.contractive={weight=0.1, probes=0}")))


def test_more_units_than_the_patches_drawn_is_refused_by_preflight_before_any_folder_exists(tmp_path):
    """It was refused once the data was built, after the run directory was written."""
    with pytest.raises(ConfigError, match="sandblaster.units = 400 is more than the 300 examples data.samples draws"):
        check_run_config(_cfg("sandblaster.units=400", "sandblaster.batch=0"))


def test_a_gpu_asked_for_is_refused_not_left_idle():
    # the replicas compute on CPU: on a GPU machine train.device = cuda was accepted and never used
    # (on this CPU-only machine preflight's own device check answers first)
    with pytest.raises(ConfigError, match="computes on CPU"):
        check_sandblaster(_cfg("train.device=cuda"))
    check_sandblaster(_cfg("train.device=auto"))


def test_the_cli_writes_a_run_directory_and_resumes_it_to_the_same_iterates(tmp_path, capsys):
    cli = ["train", "--config", "tica-8x8", "--runner", "simulated", "--workers", "3", "--no-report",
           *[arg for o in SMALL[2:] + ["sandblaster.precision=float64", "sandblaster.units=6"] for arg in ("--set", o)],
           "--set", "cluster.algorithm=sandblaster"]
    assert main([*cli, "--out", str(tmp_path / "a"), "--steps", "3"]) == 0
    run = RunDir.open(tmp_path / "a")
    for name in ("config.toml", "metrics.jsonl", "model.safetensors", "model.json", "sandblaster.json"):
        assert (run.path / name).is_file(), name
    rows = run.metrics()
    assert [r["step"] for r in rows] == [1, 2, 3] and {"reconstruction", "pooled_l2", "t", "vtime"} <= set(rows[0])
    summary = run.read_json("sandblaster.json")
    for key in ("steps", "resumed_from", "final_loss", "seconds", "run", "units_dispatched", "backups",
                "backups_won", "duplicates_dropped", "per_worker", "batches", "batch_time_mean"):
        assert key in summary, key
    assert summary["units_dispatched"] >= 6 * summary["evaluations"] and run.config.cluster.algorithm == "sandblaster"
    assert run.load_model() is not None
    assert load_state(run.checkpoints / "sandblaster")[1]["config"]["sandblaster"]["units"] == 6   # what a resume checks
    weights = (run.path / "model.safetensors").read_bytes()    # stopped before its model was written:
    (run.path / "model.json").unlink()                          # resume writes it from the checkpoint
    assert main(["train", "--resume", str(tmp_path / "a"), "--no-report"]) == 0
    assert (run.path / "model.safetensors").read_bytes() == weights and run.read_json("model.json")["step"] == 3
    assert main(["train", "--resume", str(tmp_path / "a"), "--steps", "5", "--no-report"]) == 0
    assert main([*cli, "--out", str(tmp_path / "b"), "--steps", "5"]) == 0
    capsys.readouterr()
    resumed, straight = RunDir.open(tmp_path / "a"), RunDir.open(tmp_path / "b")
    assert resumed.read_json("sandblaster.json")["resumed_from"] == 3
    assert [r["loss"] for r in resumed.metrics()] == [r["loss"] for r in straight.metrics()]



@pytest.mark.parametrize("delay", ["uniform:0:2", "straggler:0:10"])
def test_a_resume_with_random_delays_takes_the_same_steps_in_the_same_virtual_time(tmp_path, delay):
    # the delay generators restarted and the copies still running were lost: vtime 38.046 against 37.968
    cfg = _cfg("cluster.workers=3", "sandblaster.units=6", "sandblaster.precision=float64", f"cluster.delay={delay}",
               "sandblaster.backup_after=0.5")
    straight = RunDir.create(tmp_path / "straight", dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4)))
    train(straight.config, straight)
    half = RunDir.create(tmp_path / "half", dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2)))
    train(half.config, half)
    train(load_config(str(half.path / "config.toml"), ["train.steps=4"]), RunDir.open(half.path), resume=True)
    keep = ("loss", "vtime", "units", "backups", "duplicates")
    assert [{k: r[k] for k in keep} for r in half.metrics()] == [{k: r[k] for k in keep} for r in straight.metrics()]


# -- Ray ----------------------------------------------------------------------------------------
ray = pytest.importorskip("ray")


def test_a_ray_run_trains_takes_the_reference_steps_and_backs_up_the_straggler(tmp_path, local_ray, caplog):
    """The straggler was 20x slower: whether it was late, and whether it finished a unit within the run, both
    hung on the machine's load (its sleep is 19x its own compute time, load included, while the backups compare
    against the other worker's round trips): under heavy load the test failed. Now its sleep, 10^6 times a
    unit's compute, outlasts the run, so what follows holds whatever the timing: in the first evaluation worker
    0 computes the other 7 units one after another while unit 1 runs, so unit 1 has run at least the 6 later
    ones' time, 3x their median or more (at least 3 of those 6 are >= it): late (1.5x), it is backed up.
    The straggler's T (5 s) is the simulator's latency, unread on Ray: --delay straggler:5:10 is refused on the
    command line (tests/test_cli_refusals.py); from a config file, or a run started so before 2026-12-06 and resumed,
    T was taken and did nothing, unsaid: a WARNING says it, and the run is straggler:0:1e6's, the reference steps.
    (Until 2026-12-06 the WARNING was a test of its own, a second run: 3 actor processes more.)"""
    # float64, so the iterates must be the textbook ones: a unit added twice (or lost) on the way from
    # the worker actors to the shard actors would change the gradient, and every step after it
    cfg = _cfg("cluster.runner=ray", "cluster.workers=2", "cluster.shards=2", "sandblaster.units=8",
               "sandblaster.backup_after=0", "cluster.delay=straggler:5:1e6", "sandblaster.precision=float64",
               "train.steps=3")
    with caplog.at_level(logging.WARNING, logger="downpour.sandblaster.on_ray"):
        summary = train(cfg, RunDir.create(tmp_path / "r", cfg))
    assert ("cluster.delay = 'straggler:5:1e+06': on Ray, Sandblaster's last worker only sleeps FACTOR - 1 times its "
            "compute after each unit (FACTOR >= 1); T, the simulator's latency, is not read there: write "
            "straggler:0:1e+06, or use --runner simulated; it runs as straggler:0:1e+06") in caplog.text
    losses = [r["loss"] for r in RunDir.open(tmp_path / "r").metrics()]
    fg, w0, _ = _full_batch(cfg)
    _, reference = _reference_lbfgs(fg, w0, 3, cfg.sandblaster.history)
    assert losses == pytest.approx(reference, rel=1e-9) and all(b < a for a, b in zip(losses, losses[1:]))
    assert summary["runner"] == "ray" and summary["backups"] >= 1 and summary["backups_won"] >= 1
    assert summary["per_worker"]["0"]["used"] == 8 * summary["evaluations"]        # every unit, once, from worker 0
    assert summary["per_worker"]["1"] == {"units": 0, "used": 0}
    # the pool's node, its install the driver's (downpour.ps.node_environments: a node of another numpy is warned of)
    here = ray.get_runtime_context().get_node_id()
    address = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == here)
    assert json.loads((tmp_path / "r" / "environment.json").read_text())["nodes"] == {address: {}}


def test_a_ray_start_with_no_room_fails_naming_no_setting_sandblaster_refuses(tmp_path, local_ray, monkeypatch):
    """Every CPU held by another job's actor: the start fails after its limit (Downpour's,
    tests/test_ps_ray_driver_room.py), and its line told a Sandblaster run to set cluster.silent_seconds or
    cluster.worker_gpus, each of which the run refuses (cli_flags.SANDBLASTER_READS); nothing lengthens its start's
    wait."""
    from ray_room import Hog, workers_start_within

    from downpour.sandblaster import on_ray

    workers_start_within(monkeypatch, on_ray, 4.0)
    hog = Hog.remote()
    ray.get(hog.ping.remote())                                   # every CPU taken
    # (one shard: its 0-CPU actor starts all the same, and the line is the workers'; a shard fewer to start, 2026-12-06)
    cfg = _cfg("cluster.runner=ray", "cluster.workers=2", "cluster.shards=1", "train.steps=3")
    try:
        with pytest.raises(RunError, match=r"could not start 2 of 2 worker actors within 4 s: each asks CPU 1; the "
                                           r"cluster has CPU 0 of 2 free\. .* ask for less \(cluster\.workers\), "
                                           r"or, for a cluster still adding nodes, start the run once it has them"
                           ) as err:
            train(cfg, RunDir.create(tmp_path / "r", cfg))
        assert "silent_seconds" not in str(err.value) and "worker_gpus" not in str(err.value)
    finally:
        ray.kill(hog)


def test_a_ray_start_on_several_nodes_names_the_room_on_the_node_each_worker_was_pinned_to(monkeypatch):
    """Two nodes of 4 CPUs, node a's all held by another job: worker 0, pinned to node a (the placer pins a CPU worker
    round-robin, hard, as Downpour's), cannot start. Its line read "the cluster has CPU 4 of 8 free", summed over the
    nodes: the pool did not say where it had pinned its actors. Now it names node a's room, as Downpour's start does
    (tests/test_ps_ray_driver_room.py). (Stand-in two-node Ray and actors.)"""
    from types import SimpleNamespace

    from ray_room import two_nodes_one_full

    from downpour.sandblaster import on_ray

    stand_in = two_nodes_one_full(monkeypatch, ready=lambda ref: ref != "worker0")

    class Actor:
        def __init__(self, kind):
            self.kind = kind

        def options(self, **_):
            return self

        def remote(self, *args):
            label = f"worker{args[1]}" if self.kind == "worker" else "shard"   # (cfg, w, ...) / (shard,)
            return SimpleNamespace(start_report=SimpleNamespace(remote=lambda: label))

    monkeypatch.setattr(on_ray, "ray", SimpleNamespace(nodes=stand_in.nodes, put=lambda value: value,
                                                       cluster_resources=stand_in.cluster_resources))
    pool = _unstarted_pool(monkeypatch, Actor("shard"), Actor("worker"))
    setup = SimpleNamespace(data=SimpleNamespace(x=None, y=None), model=None, bounds=[])
    with pytest.raises(RunError, match=r"could not start 1 of 2 worker actors within \d+ s: each asks CPU 1; 1 pinned "
                                       r"to node aaaaaaaa, which has CPU 0 of 4 free\. "):
        pool._start(setup, [object(), object()])
    # train.threads = 0: each worker runs its node's 4 CPUs (one worker pinned to each), not the driver's 64 cores / 2
    # (until 2026-12-06, as Downpour's: tests/test_ps_placement.py)
    threads: list[int] = []
    monkeypatch.setattr(on_ray, "WorkerActor", SimpleNamespace(options=lambda **_: SimpleNamespace(
        remote=lambda *args: threads.append(args[5]) or Actor("worker").remote(*args))))
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    pool.cfg.train.threads = 0
    with pytest.raises(RunError, match="could not start 1 of 2 worker actors"):
        pool._start(setup, [object(), object()])
    assert threads == [4, 4]


def _unstarted_pool(monkeypatch, shard_actor, worker_actor):
    """A RayPool of 2 workers, not started (its ``_start`` is the test's), whose actors are the stand-ins given, its
    speeds, straggler warning and frozen parameters none (its stand-in cfg lacks their keys)."""
    from types import SimpleNamespace

    from downpour.sandblaster import on_ray

    monkeypatch.setattr(on_ray, "ShardActor", shard_actor)
    monkeypatch.setattr(on_ray, "WorkerActor", worker_actor)
    monkeypatch.setattr(on_ray, "speed_factors", lambda spec, n: [1.0] * n)
    monkeypatch.setattr(on_ray, "ray_straggler_warning", lambda cfg: None)
    monkeypatch.setattr(on_ray, "frozen_params", lambda model: None)
    pool = on_ray.RayPool.__new__(on_ray.RayPool)
    pool.cfg = SimpleNamespace(cluster=SimpleNamespace(workers=2, spec=lambda key: ("constant", [0.0])),
                               train=SimpleNamespace(threads=1))
    return pool


def _three_node_pool(monkeypatch):
    """A RayPool started on a stand-in Ray of three 1-CPU nodes (ids a..., b..., c... at 10.0.0.1-3), 2 workers and 2
    shards, every actor up at once and answering its start with the node it was pinned to (None: Ray's choice)."""
    from types import SimpleNamespace

    from downpour.ps import asking_on_ray, connect_on_ray
    from downpour.sandblaster import on_ray

    ids = [c * 56 for c in "abc"]
    stand_in = SimpleNamespace(
        wait=lambda refs, num_returns, timeout: (list(refs), []), get=lambda refs: refs, put=lambda value: value,
        nodes=lambda: [{"NodeID": n, "Alive": True, "Resources": {"CPU": 1.0}, "NodeManagerAddress": f"10.0.0.{i + 1}"}
                       for i, n in enumerate(ids)])
    for module in (connect_on_ray, asking_on_ray, on_ray):
        monkeypatch.setattr(module, "ray", stand_in)

    class Actor:
        def options(self, **options):
            node = connect_on_ray.pinned(options)
            return SimpleNamespace(remote=lambda *args: SimpleNamespace(
                start_report=SimpleNamespace(remote=lambda: {"node": node, "environment": {}})))

    pool = _unstarted_pool(monkeypatch, Actor(), Actor())
    pool.ray_info, pool.lost = {"address": "HEAD:6379"}, {}
    pool._start(SimpleNamespace(data=SimpleNamespace(x=None, y=None), model=None, bounds=[]), [object(), object()])
    return pool, ids


def test_a_ray_pool_on_three_nodes_puts_its_shards_after_its_workers_and_names_the_nodes(monkeypatch):
    """Two workers and two shards on three nodes, by Downpour's one running index over both kinds
    (connect_on_ray.spot): workers on nodes 0, 1, shards on 2, 0. Until 2026-12-07 each kind counted from the first
    node: shard j beside worker j, node c left empty (seen on a 3-node Ray: "nodes": 2). sandblaster.json names the
    nodes its placement numbers stand for (node_ids, node_addresses: until then the numbers alone, which the report
    could not read)."""
    pool, (a, b, c) = _three_node_pool(monkeypatch)
    assert pool.placement == {"shards": [c, a], "workers": [a, b]}
    info = pool.info()
    assert info["nodes"] == 3 and info["placement"] == {"shards": [2, 0], "workers": [0, 1]}
    assert info["node_ids"] == [a, b, c] and info["node_addresses"] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_a_lost_shard_ends_a_sandblaster_ray_run_naming_the_shard_and_its_node(monkeypatch):
    """A shard's node removed mid-run (a 3-node Ray, 2026-12-07): the run ended in a traceback of Ray's ActorDiedError,
    from the driver's wait for the shards' sums. Now a RunError says which shard, on which node, and why it ends."""
    from types import SimpleNamespace

    from ray.exceptions import ActorDiedError

    from downpour.sandblaster import on_ray

    pool, (a, b, c) = _three_node_pool(monkeypatch)
    shard_ids = ["11" * 16, "22" * 16]
    pool.group.actors = [SimpleNamespace(_actor_id=SimpleNamespace(hex=lambda i=i: i)) for i in shard_ids]

    def died(refs):
        err = ActorDiedError()
        err.actor_id = shard_ids[1]
        raise err

    monkeypatch.setattr(on_ray.ray, "get", died)
    with pytest.raises(RunError, match=r"^sandblaster shard 1 was lost on node aaaaaaaa at 10\.0\.0\.1 "
                                       r"\(ActorDiedError\): the shards hold the parameters, the gradient and"):
        pool.group.get(["ref"])
    said = on_ray.shard_lost(ActorDiedError(), pool.group.actors, pool.group.nodes, pool.group.addresses)
    assert str(said).startswith("a sandblaster shard was lost (ActorDiedError): ")   # an error naming no actor


def test_a_stop_that_cannot_checkpoint_says_which_checkpoint_resume_goes_on_from(tmp_path):
    """A shard's node lost at iteration 10 (a 3-node Ray, 2026-12-07): "could not checkpoint the shards (...)" and
    nothing on what was kept; with cluster.checkpoint_every = 0 there was nothing to resume, unsaid."""
    from downpour.sandblaster.run import CHECKPOINT, _kept
    from downpour.train.checkpoint import save_state
    from downpour.train.rundir import RunDir

    cfg = _cfg("cluster.runner=ray")
    run = RunDir.create(tmp_path / "run", cfg)
    assert _kept(run, cfg) == "there is no checkpoint to resume from (cluster.checkpoint_every = 0: one at the end only)"
    every = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, checkpoint_every=5))
    assert _kept(run, every).endswith("(cluster.checkpoint_every = 5: one every 5 iterations)")
    save_state(run.checkpoints / CHECKPOINT, {"shard0.w": torch.zeros(3)}, run.stamped({"iteration": 5}))
    assert _kept(run, every) == f"the checkpoint of L-BFGS iteration 5 is kept: --resume {run.path} goes on from it"


def test_a_unit_that_raises_in_a_live_worker_ends_the_run_naming_the_cause_not_the_workers():
    """Every RayError counted the worker lost: a unit's ValueError went to each worker in turn, and the run
    ended "every worker was lost (worker 1: RayTaskError(ValueError), ...)", the cause only in Ray's log."""
    from ray.exceptions import ActorDiedError, RayTaskError

    from downpour.sandblaster.on_ray import lost_worker

    unit = split_units(torch.arange(8), 4)[2]
    with pytest.raises(RunError, match="sandblaster worker 1 failed on unit 2: ValueError: a pixel is NaN"):
        lost_worker(1, unit, RayTaskError("compute", "traceback", ValueError("a pixel is NaN")))
    assert lost_worker(1, unit, ActorDiedError()) == "ActorDiedError"      # gone: its units go to the others


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


def test_a_run_stopped_inside_an_iteration_resumes_in_the_same_virtual_time(tmp_path, monkeypatch):
    """The checkpoint written mid-iteration kept the simulator's clock and the evaluation count as they
    stood then, while the resume redoes the iteration from its start: every later vtime was late."""
    import downpour.sandblaster.lbfgs as lbfgs

    cfg = check_run_config(load_config("tica-8x8", [
        "cluster.runner=simulated", "cluster.algorithm=sandblaster", "train.threads=1", "train.tensorboard=false",
        "model.name=rica-8x8", "data.samples=300", "sandblaster.units=4", "train.steps=5", "cluster.workers=2",
        "sandblaster.batch=100", "cluster.delay=exponential:1"]))
    whole = train(cfg, RunDir.create(tmp_path / "whole", cfg))
    real, calls = lbfgs.Coordinator._evaluate, []

    def stop_at_the_fourth(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:                         # inside iteration 2 or 3 (each takes one or two)
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(lbfgs.Coordinator, "_evaluate", stop_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, RunDir.create(tmp_path / "cut", cfg))
    monkeypatch.setattr(lbfgs.Coordinator, "_evaluate", real)
    resumed = train(cfg, RunDir.open(tmp_path / "cut"), resume=True)
    for key in ("evaluations", "vtime", "final_loss", "examples"):
        assert resumed.get(key) == whole.get(key), key
    rows = [RunDir.open(tmp_path / name).metrics() for name in ("whole", "cut")]
    assert [{k: v for k, v in r.items() if k not in ("time", "samples_per_s")} for r in rows[1]] == \
           [{k: v for k, v in r.items() if k not in ("time", "samples_per_s")} for r in rows[0]]
    assert (tmp_path / "cut/model.safetensors").read_bytes() == (tmp_path / "whole/model.safetensors").read_bytes()


def test_a_stop_during_the_step_saves_the_whole_step_or_none_of_it(tmp_path, monkeypatch):
    """Ctrl-C while the shards took an accepted step (between shard 0's move and shard 1's, or before the
    run's bookkeeping) saved shards that had moved with the coordinator's scalars from before: the
    resume's L-BFGS was not the uninterrupted run's. The step and its bookkeeping now finish first."""
    import signal

    cfg = check_run_config(load_config("tica-8x8", [
        "cluster.runner=simulated", "cluster.algorithm=sandblaster", "train.threads=1", "train.tensorboard=false",
        "model.name=rica-8x8", "data.samples=300", "sandblaster.units=4", "train.steps=5", "cluster.workers=2",
        "cluster.shards=2", "sandblaster.batch=0"]))
    whole = train(cfg, RunDir.create(tmp_path / "whole", cfg))
    real, calls = HistoryShard.accept, []

    def stop_inside_the_second_step(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls.append(self.index)
        if len(calls) == 3:                         # shard 0 of the second accepted step has moved, shard 1 not
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(HistoryShard, "accept", stop_inside_the_second_step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, RunDir.create(tmp_path / "cut", cfg))
    assert calls == [0, 1, 0, 1]                    # the step finished before the stop was taken
    monkeypatch.setattr(HistoryShard, "accept", real)
    resumed = train(cfg, RunDir.open(tmp_path / "cut"), resume=True)
    assert resumed["resumed_from"] == 2
    for key in ("evaluations", "vtime", "final_loss", "examples"):
        assert resumed.get(key) == whole.get(key), key
    assert (tmp_path / "cut/model.safetensors").read_bytes() == (tmp_path / "whole/model.safetensors").read_bytes()


def test_a_converged_run_checkpoints_its_last_iteration(tmp_path, monkeypatch):
    """The loop broke off on convergence before taking the iteration's boundary: the final checkpoint
    held the coordinator's scalars and evaluation log from the iteration before (a run extended with
    --resume then started from a cost that was not the shards' point's)."""
    search = Coordinator.search

    def converges_at_the_third(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        return dataclasses.replace(step, stop=PLANTED) if iteration == 2 else step

    monkeypatch.setattr(Coordinator, "search", converges_at_the_third)
    cfg = _cfg("train.steps=6")
    summary = train(cfg, RunDir.create(tmp_path / "run", cfg))
    _, meta = load_state(tmp_path / "run/checkpoints/sandblaster")
    assert summary["converged"] and meta["iteration"] == 3
    assert meta["coordinator"]["evaluations"] == len(meta["batches"]) == summary["evaluations"]
    assert meta["coordinator"]["f"] == pytest.approx(summary["final_loss"], rel=1e-6)



def test_a_converged_run_is_not_searched_again_and_one_that_steps_on_has_not_converged(tmp_path, monkeypatch):
    """On the whole set a resume of a converged run searched again from the same point, failed alike, and saved
    the same weights as the next iteration; with sampled batches a resume that stepped on still said converged.
    Since 2026-12-05 a sampled run that stopped is finished too: only a resume with more steps steps on."""
    search = Coordinator.search

    def converges_at_the_third(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        return dataclasses.replace(step, stop=PLANTED) if iteration == 2 else step

    monkeypatch.setattr(Coordinator, "search", converges_at_the_third)
    for name, sets in (("whole", ["train.steps=6"]), ("sampled", ["train.steps=6", "sandblaster.batch=100"])):
        cfg = _cfg(*sets)
        assert train(cfg, RunDir.create(tmp_path / name, cfg))["converged"]
    monkeypatch.undo()
    rows = (tmp_path / "whole/metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="is finished: it stopped at L-BFGS iteration 3 \\(converged"):
        train(_cfg("train.steps=6"), RunDir.open(tmp_path / "whole"), resume=True)
    assert (tmp_path / "whole/metrics.jsonl").read_text() == rows
    cfg = load_config(str(tmp_path / "sampled/config.toml"))
    with pytest.raises(ConfigError, match="is finished: it stopped at L-BFGS iteration 3 \\(converged.*M above its 6"):
        train(cfg, RunDir.open(tmp_path / "sampled"), resume=True)
    cfg = load_config(str(tmp_path / "sampled/config.toml"), ["train.steps=8"])
    summary = train(cfg, RunDir.open(tmp_path / "sampled"), resume=True)
    rows = RunDir.open(tmp_path / "sampled").metrics()
    assert summary["steps"] == 8 and [r["step"] for r in rows][-1] == 8 and any(r["t"] > 0 for r in rows[3:])
    assert not summary["converged"]


def test_a_converged_run_stopped_before_its_model_was_saved_is_finished_by_its_resume(tmp_path, monkeypatch):
    """Stopped between its final checkpoint and model.safetensors, a converged run's resume was refused as
    converged, so its trained weights could never be saved."""
    import downpour.sandblaster.run as sandblaster_run

    search = Coordinator.search

    def converges_at_the_third(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        return dataclasses.replace(step, stop=PLANTED) if iteration == 2 else step

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Coordinator, "search", converges_at_the_third)
    monkeypatch.setattr(sandblaster_run, "_finish", stopped)
    cfg = _cfg("train.steps=6")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, RunDir.create(tmp_path / "run", cfg))
    assert not (tmp_path / "run/model.safetensors").exists()
    monkeypatch.undo()
    summary = train(cfg, RunDir.open(tmp_path / "run"), resume=True)
    assert summary["converged"] and RunDir.open(tmp_path / "run").model_step() == 3


class _Hang(Exception):
    """The driver waits with no timeout on futures that never come: on a real Ray, forever."""


class _FakeRef:
    def __init__(self, value=None, hangs=False):
        self.value, self.hangs = value, hangs


class _FakeRay:
    """Just what RayPool.evaluate asks of ray, on a stand-in clock: a hanging ref is never ready."""

    def __init__(self):
        self.now, self.killed = 0.0, []

    def wait(self, refs, num_returns=1, timeout=None):
        from scripted_ray import last_ready     # (ray's modules: imported only by the tests on a stand-in of it)

        ready = last_ready([r for r in refs if not r.hangs], num_returns)    # Ray's: any ready ones
        if not ready:
            if timeout is None:
                raise _Hang(f"ray.wait on {len(refs)} futures with no timeout, {self.now:.0f} s in")
            self.now += timeout
        return ready, [r for r in refs if r not in ready]

    def get(self, ref):
        return [r.value for r in ref] if isinstance(ref, list) else ref.value

    def kill(self, actor):
        self.killed.append(actor)


def test_a_sandblaster_worker_silent_mid_unit_is_lost_not_waited_for_forever(monkeypatch):
    """One Ray worker whose third unit never returns (a node gone silent, a hung read): the driver's ray.wait had no
    timeout while no backup was due, and none can be with no free worker: the run hung for good. Now it is lost once
    silent past the limit (downpour/ps/silence.py: 300 s, its first unit long done), its actor killed, and the run ends
    with the error every worker's loss gives."""
    from types import SimpleNamespace

    from downpour.ps import restarts_on_ray, silence
    from downpour.sandblaster import on_ray

    fake = _FakeRay()
    for module in (on_ray, restarts_on_ray):   # (restarts_on_ray: the silent workers' wait and kill, shared)
        monkeypatch.setattr(module, "ray", fake)
    monkeypatch.setattr(on_ray, "time", SimpleNamespace(perf_counter=lambda: fake.now))
    monkeypatch.setattr(silence, "time", SimpleNamespace(monotonic=lambda: fake.now))
    done = []

    def remote(evaluation, unit, rows, total, stage, *point):
        done.append(unit)
        meta = {"loss": 1.0, "parts": {}}
        return [_FakeRef(meta, hangs=len(done) >= 3), _FakeRef(torch.zeros(1), hangs=len(done) >= 3)]

    worker = SimpleNamespace(compute=SimpleNamespace(options=lambda num_returns: SimpleNamespace(remote=remote)))
    shard = SimpleNamespace(point=SimpleNamespace(remote=lambda t: _FakeRef(torch.zeros(1))),
                            accumulate=SimpleNamespace(remote=lambda ev, u, g: _FakeRef(True)))
    pool = on_ray.RayPool.__new__(on_ray.RayPool)
    pool.cfg = SimpleNamespace(cluster=SimpleNamespace(workers=1), sandblaster=SimpleNamespace(units=4, backup_after=0.75))
    pool.shard_actors, pool.worker_actors, pool._pending, pool.busy, pool.lost = [shard], [worker], {}, set(), {}
    pool.silence, pool._unread = silence.Silence(), []
    pool.silence.fresh(0)
    with pytest.raises(RunError, match=r"every worker was lost \(worker 0: silent for 300 s, limit 300 s\)"):
        pool.evaluate(1, torch.arange(8), 1.0, None)
    assert done == [0, 1, 2] and fake.killed == [worker] and fake.now == silence.FLOOR


class _TimedRef(_FakeRef):
    """Ready at ``at`` on the stand-in clock (None: never), its get raising ``error`` if one is given."""

    def __init__(self, value=None, at=None, error=None):
        super().__init__(value, hangs=at is None)
        self.at, self.error = at, error


class _TimedRay(_FakeRay):
    """``_FakeRay`` whose clock runs on to the next ref's time, or the wait's timeout if that comes first."""

    def wait(self, refs, num_returns=1, timeout=None):
        from scripted_ray import last_ready

        def ready():
            return last_ready([r for r in refs if r.at is not None and r.at <= self.now], num_returns)

        if not ready():
            ends = [r.at for r in refs if r.at is not None] + ([self.now + timeout] if timeout is not None else [])
            if not ends:
                raise _Hang(f"ray.wait on {len(refs)} futures with no timeout, {self.now:.0f} s in")
            self.now = min(ends)
        return ready(), [r for r in refs if r not in ready()]

    def get(self, ref):
        for r in ref if isinstance(ref, list) else [ref]:     # (a list: Ray raises its first error)
            if isinstance(r, _TimedRef) and r.error is not None:
                raise r.error
        return super().get(ref)


def _timed_pool(monkeypatch, workers, units, unit, stall=lambda fake, index: None):
    """A RayPool of ``workers`` stand-in workers on ``_TimedRay``'s clock, ``units`` units an evaluation: ``unit(fake,
    w, index)`` gives worker ``w``'s two refs for unit ``index``; ``stall(fake, index)`` runs as the driver hands a
    finished unit's slices to the shard (its turn)."""
    from types import SimpleNamespace

    from downpour.ps import restarts_on_ray, silence
    from downpour.sandblaster import on_ray

    fake = _TimedRay()
    for module in (on_ray, restarts_on_ray):   # (restarts_on_ray: the silent workers' wait and kill, shared)
        monkeypatch.setattr(module, "ray", fake)
    monkeypatch.setattr(on_ray, "time", SimpleNamespace(perf_counter=lambda: fake.now))
    monkeypatch.setattr(silence, "time", SimpleNamespace(monotonic=lambda: fake.now))

    def worker(w):
        def remote(evaluation, index, rows, total, stage, *point):
            return unit(fake, w, index)
        return SimpleNamespace(compute=SimpleNamespace(options=lambda num_returns: SimpleNamespace(remote=remote)))

    def accumulate(ev, index, g):
        stall(fake, index)
        return _TimedRef(True, 0.0)

    shard = SimpleNamespace(point=SimpleNamespace(remote=lambda t: _TimedRef(torch.zeros(1), 0.0)),
                            accumulate=SimpleNamespace(remote=accumulate))
    pool = on_ray.RayPool.__new__(on_ray.RayPool)
    pool.cfg = SimpleNamespace(cluster=SimpleNamespace(workers=workers),
                               sandblaster=SimpleNamespace(units=units, backup_after=1.0))
    pool.shard_actors, pool.worker_actors = [shard], [worker(w) for w in range(workers)]
    pool.group = on_ray.RayShards(pool.shard_actors)     # (the driver reads the shards' answers through it)
    pool._pending, pool.busy, pool.lost = {}, set(), {}
    pool.silence, pool._unread = silence.Silence(workers=workers), []
    return fake, pool


def test_a_sandblaster_worker_that_dies_late_teaches_the_silence_limit_nothing(monkeypatch):
    """A unit that fails (its actor died) after 500 s is no report: Downpour's loops count a silence only once its
    cycle's answer is read, and until 2026-12-05 the pool counted the dead worker's 500 s (its first unit: 2x, so the
    other worker's hung unit was lost at 1000 s, not at the 300 s floor)."""
    from ray.exceptions import RayActorError

    def unit(fake, w, index):
        if w == 0:                   # its actor dies 500 s into its first unit
            return [_TimedRef(at=fake.now + 500, error=RayActorError()) for _ in range(2)]
        at = None if index == 0 else fake.now   # no time a unit, but hangs on worker 0's, handed back to it
        return [_TimedRef({"loss": 1.0, "parts": {}}, at), _TimedRef(torch.zeros(1), at)]

    _, pool = _timed_pool(monkeypatch, 2, 4, unit)
    with pytest.raises(RunError, match=r"worker 0: RayActorError, worker 1: silent for 300 s, limit 300 s\)"):
        pool.evaluate(1, torch.arange(8), 1.0, None)


def test_a_sandblaster_driver_stall_does_not_raise_the_silence_limit(monkeypatch):
    """Downpour's driver stall (ps/silence.py) on the pool: the driver stalls 1000 s handing unit 2's slices on while
    worker 1's second unit (1 s) is done and waits unread, then every later unit hangs on both workers. The silence that
    unit ended counted the stall without the pool's listening() (FACTOR x 1001 s the limit: both lost after
    20020 s); now both are lost at FLOOR."""
    from downpour.ps.silence import FLOOR

    def unit(fake, w, index):
        at = None if index >= 4 else fake.now + 1
        return [_TimedRef({"loss": 1.0, "parts": {}}, at), _TimedRef(torch.zeros(1), at)]

    def stall(fake, index):
        if index == 2:
            fake.now += 1000.0

    _, pool = _timed_pool(monkeypatch, 2, 8, unit, stall)
    lost = f"silent for {FLOOR:.0f} s, limit {FLOOR:.0f} s"
    with pytest.raises(RunError, match=rf"every worker was lost \(worker 0: {lost}, worker 1: {lost}\)"):
        pool.evaluate(1, torch.arange(8), 1.0, None)


def test_a_dead_workers_failed_unit_is_read_before_the_answers_that_came_after_it(monkeypatch):
    """Worker 0's actor died (its unit failed, ready at once) while worker 1's answers keep coming, each ready before
    the driver looks again. Ray's wait answers with any ready unit (the stand-in: the last), and until 2026-12-06 the
    pool took that one: the failed unit was read once worker 1 had nothing else to do, and handed out again at the end.
    Now the oldest ready is read first (``restarts_on_ray.first_ready``): worker 0 is lost before worker 1's second
    unit is handed out."""
    from ray.exceptions import RayActorError

    asked, pools = [], []

    def unit(fake, w, index):
        asked.append((w, index, sorted(pools[0].lost)))
        if w == 0:
            return [_TimedRef(at=fake.now, error=RayActorError()) for _ in range(2)]
        return [_TimedRef({"loss": 1.0, "parts": {}}, fake.now), _TimedRef(torch.zeros(1), fake.now)]

    pools.append(_timed_pool(monkeypatch, 2, 4, unit)[1])
    pools[0].evaluate(1, torch.arange(8), 1.0, None)
    assert [lost for *_, lost in asked] == [[], [], [0], [0], [0]]    # (its unit handed out again, to worker 1)


@pytest.mark.parametrize("shard_alive", [True, False])
def test_a_unit_whose_shard_point_was_lost_asks_the_shards_before_blaming_the_worker(monkeypatch, shard_alive):
    """A shard's node removed while a unit computes: the unit fails reading that shard's point (ObjectLostError, the
    worker alive). It counted the worker lost, and each worker in turn, "every worker was lost", the shard unnamed.
    Now the shards are asked first: a shard gone ends the run naming it; all alive, the worker is lost as before."""
    from types import SimpleNamespace

    from ray.exceptions import ActorDiedError, ObjectLostError

    def unit(fake, w, index):
        if w == 0:
            return [_TimedRef(at=fake.now, error=ObjectLostError("00" * 28, "", "")) for _ in range(2)]
        return [_TimedRef({"loss": 1.0, "parts": {}}, fake.now), _TimedRef(torch.zeros(1), fake.now)]

    fake, pool = _timed_pool(monkeypatch, 2, 4, unit)
    died = ActorDiedError()
    died.actor_id = "ab" * 16
    answer = _TimedRef({"pairs": 0}, 0.0) if shard_alive else _TimedRef(at=0.0, error=died)
    shard = pool.shard_actors[0]
    shard.call, shard._actor_id = SimpleNamespace(remote=lambda *args: answer), SimpleNamespace(hex=lambda: "ab" * 16)
    pool.group.nodes, pool.group.addresses = ["c" * 56], {"c" * 56: "10.0.0.3"}
    if shard_alive:
        pool.evaluate(1, torch.arange(8), 1.0, None)
        assert list(pool.lost) == [0]
    else:
        with pytest.raises(RunError, match=r"^sandblaster shard 0 was lost on node cccccccc at 10\.0\.0\.3 "):
            pool.evaluate(1, torch.arange(8), 1.0, None)


def test_a_batch_larger_than_the_patches_drawn_is_refused_not_run_as_the_whole_set():
    """sandblaster.batch = 400 of 300 patches was run as the whole set every iteration (deterministic, no sampling),
    with no word; it is refused before the run directory exists, naming both ways to say what was meant."""
    with pytest.raises(ConfigError, match=r"sandblaster.batch = 400 is more than the 300 examples data.samples draws: "
                                          r"set sandblaster.batch = 0 for all 300 in every iteration, or below 300"):
        check_run_config(_cfg("sandblaster.batch=400", "sandblaster.units=4"))
    check_run_config(_cfg("sandblaster.batch=300", "sandblaster.units=4"))   # all of them: the whole set, as asked


def test_a_batch_larger_than_the_data_known_once_built_is_said_and_run_whole(caplog):
    cfg = _cfg("sandblaster.batch=250", "sandblaster.units=4")
    with caplog.at_level(logging.WARNING, logger="downpour.sandblaster.checks"):
        check_examples(cfg, 200)          # a fold of 200, say, of the 300 patches
    assert "sandblaster.batch = 250 is more than the 200 examples of the data: every iteration uses all" in caplog.text
    caplog.clear()
    check_examples(cfg, 250)
    assert not caplog.text


def test_an_older_run_with_a_batch_above_its_patches_resumes_with_a_warning(tmp_path, caplog, monkeypatch):
    """Refused as a new run's, it would lose an older run: its resume can neither keep sandblaster.batch = 400 nor
    change it (a resume keeps the key). It ran whole, and goes on whole, said."""
    run = RunDir.create(tmp_path / "old", _cfg("sandblaster.batch=400", "sandblaster.units=4", "train.steps=1"))
    with monkeypatch.context() as m:        # started before 2026-12-06, when it was taken
        m.setattr("downpour.sandblaster.run.check_sandblaster", lambda cfg, resume=False: None)
        train(run.config, run)
    more = check_run_config(load_config(str(run.path / "config.toml"), ["train.steps=2"]), resume=True)
    with caplog.at_level(logging.WARNING, logger="downpour.sandblaster.checks"):
        assert train(more, RunDir.open(run.path), resume=True)["steps"] == 2
    assert "sandblaster.batch = 400 is more than the 300 examples of the data" in caplog.text
    assert "a resume keeps it, as the run started" in caplog.text


def test_the_summary_says_a_copy_still_computing_at_the_end_was_not_counted():
    """On Ray (a stand-in: the scheduler as the Ray pool drives it) a backup won while its original still ran at the
    end: per_worker added up to 49 against units_dispatched 50, unsaid, until 2026-12-06."""
    sched = UnitScheduler(split_units(torch.arange(4), 2), backup_after=0.5)
    sched.next_for(0, 0.0), sched.next_for(1, 0.0)            # worker 1 is slow
    assert sched.finish(0, 0, 1.0) and sched.next_for(0, 1.5) == (sched.units[1], True)
    assert sched.finish(1, 0, 2.0) and sched.complete           # the backup won; worker 1's copy still computes
    said = sched.counts.per_worker_summary(2)
    assert said["per_worker"] == {"0": {"units": 2, "used": 2}, "1": {"units": 0, "used": 0}}
    assert sched.counts.dispatched == 3 and said["uncounted_copies"] == 1
    assert said["uncounted_why"].startswith("1 unit copy of units_dispatched = 3 never finished here (still computing")
    assert not sched.finish(1, 1, 9.0) and "uncounted_copies" not in sched.counts.per_worker_summary(2)   # it came in


def test_a_resume_says_it_keeps_its_lbfgs_history_or_that_it_drops_it(tmp_path, caplog, monkeypatch):
    """The resume said only its iteration: whether it went on with its curvature pairs was unsaid, and where the
    checkpoint's shards and coordinator disagreed (saved inside a step) the history was dropped without a word."""
    cfg = _cfg("train.steps=3")
    train(cfg, RunDir.create(tmp_path / "run", cfg))
    more = _cfg("train.steps=4")
    with caplog.at_level(logging.INFO, logger="downpour.sandblaster.run"):
        train(more, RunDir.open(tmp_path / "run"), resume=True)
    assert (f"resuming {tmp_path / 'run'} at L-BFGS iteration 3 with its history: 3 of sandblaster.history = "
            f"{more.sandblaster.history} curvature pairs") in caplog.text
    load = Coordinator.load_state
    monkeypatch.setattr(Coordinator, "load_state", lambda self, meta: load(self, {**meta, "rho": meta["rho"][:-1]}))
    caplog.clear()
    train(_cfg("train.steps=5"), RunDir.open(tmp_path / "run"), resume=True)
    assert (f"resuming {tmp_path / 'run'} at L-BFGS iteration 4 without its history: its checkpoint's shards hold 4 "
            "curvature pairs and its coordinator 3 (saved inside a step)") in caplog.text
