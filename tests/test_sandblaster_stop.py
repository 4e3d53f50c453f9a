"""Why Sandblaster L-BFGS stopped: a float32 run that reached its precision says converged (its last line
search failed only because the cost could not resolve a further decrease), a line search that failed for
real (a gradient that does not match the cost, NaN) says so, and the run directory and the CLI carry it."""
import dataclasses
import json
import logging
import math
import shlex

import pytest
import torch

from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.runners import train
from downpour.sandblaster.history import HistoryShard
from downpour.sandblaster import lbfgs
from downpour.sandblaster.lbfgs import Coordinator, Evaluation, LocalShards
from downpour.sandblaster.stop import failed_search
from downpour.sandblaster.units import UnitCounts
from downpour.train.json_digest import rewrite_json
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


class _LeastSquares:
    """A pool with no units: f(w) = ½ mean((A w - b)²) in the shards' dtype, gradient Aᵀ(A w - b) / N times
    ``sign`` (-1: a gradient that does not match the cost, as a sign slip in a cost term's backward makes), plus
    ``bias`` (a constant error, as a cost term's backward that leaves out a small part makes)."""

    def __init__(self, shards, a, b, sign=1.0, nan_trials=False, bias=0.0):
        self.shards, self.group, self.a, self.b = shards, LocalShards(shards), a, b
        self.sign, self.nan_trials, self.bias = sign, nan_trials, bias

    def evaluate(self, evaluation, rows, t, stage):
        w = torch.cat([s.point(t) for s in self.shards])
        r = self.a @ w - self.b
        g = self.sign * (self.a.T @ r) / len(self.b) + self.bias
        for s in self.shards:
            s.accumulate(evaluation, 0, g[s.start:s.stop])
        f = 0.5 * float((r * r).mean())
        return Evaluation(math.nan if self.nan_trials and t > 0 else f, {}, 0.0, 0.0, UnitCounts())


def _least_squares(dtype, noise=1.0, sign=1.0, nan_trials=False, limit=1000, bias=0.0):
    """40 unknowns, 400 equations, condition number 30, solved by L-BFGS (memory 10) in ``dtype`` from 0 until
    it stops: (its iterations, f - f* and max |w - w*| in float64, w* from lstsq in float64); ``bias``: the
    gradient's constant error, a random direction of length ``bias`` |g0|."""
    generator = torch.Generator().manual_seed(0)
    n, rows = 40, 400
    u, _ = torch.linalg.qr(torch.randn(rows, n, dtype=torch.float64, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=generator))
    a = u @ torch.diag(torch.logspace(0, math.log10(30.0), n, dtype=torch.float64)) @ v.T * math.sqrt(rows)
    b = a @ torch.randn(n, dtype=torch.float64, generator=generator)
    b += noise * torch.randn(rows, dtype=torch.float64, generator=generator)
    w_star = torch.linalg.lstsq(a, b.unsqueeze(1)).solution.squeeze(1)
    w0 = torch.zeros(n, dtype=dtype)
    shards = [HistoryShard(j, w0[20 * j:20 * j + 20], history=10, start=20 * j) for j in range(2)]
    error = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    error *= bias * float((a.T @ b).norm()) / len(b) / float(error.norm())       # (|g0| = |Aᵀ b| / N, from w = 0)
    pool = _LeastSquares(shards, a.to(dtype), b.to(dtype), sign, nan_trials, error.to(dtype))
    coord = Coordinator(LocalShards(shards), pool, history=10, line_search=10, eps=torch.finfo(dtype).eps)
    steps = []
    while len(steps) < limit and not (steps and steps[-1].stop):
        steps.append(coord.iterate(len(steps), torch.arange(1), None, new_batch=False, new_stage=False))
    w = torch.cat([s.params() for s in shards]).double()
    gap = 0.5 * float(((a @ w - b) ** 2).mean() - ((a @ w_star - b) ** 2).mean())
    return steps, gap, float((w - w_star).abs().max())


@pytest.mark.parametrize("noise, gap_bound", [(1.0, 1e-5), (0.0, 1e-9)])
def test_float32_least_squares_ends_converged_to_its_precision_not_in_a_failed_search(noise, gap_bound):
    """float32 gradients do not reach 1e-8 |g0|: the run ended in a line search that could not lower f any
    more, read "converged" whatever stopped the search (and so did the failures below). Now the stop says
    which: here its precision (f* = 0.47: f - f* 1.5e-6, |w - w*| 4.4e-4, 125 iterations; f* = 0, consistent
    equations: 6.9e-11, 208 iterations), in float64 the gradient test (f - f* 9.6e-12, 198 iterations)."""
    steps, gap, dw = _least_squares(torch.float32, noise)
    stop = steps[-1].stop
    assert stop.reason == "precision" and stop.converged and "converged to float32 precision" in stop.message
    assert 0 <= gap < gap_bound and dw < 5e-3 and len(steps) < 400
    assert stop.numbers["grad_ratio"] > 1e-8           # (3.0e-6, 2.9e-8): the gradient test could not end it
    # which test said it (by the numbers): 4 eps |f| with a residual, |g| <= sqrt(eps) |g0| without (f: 8.3e-11); the
    # latter's message said "the gradient is mostly rounding", which float32's error in g (1.4e-8 |g0|) is not at 3.4e-4
    said = "within 4 eps |f|" if noise else "<= sqrt(eps) |g0|: what a quadratic model has left to gain is within eps"
    assert said in stop.message and "mostly rounding" not in stop.message
    steps, gap, _ = _least_squares(torch.float64, noise)
    assert steps[-1].stop.reason == "gradient" and gap < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_gradient_that_does_not_match_the_cost_fails_its_line_search_it_does_not_converge(dtype):
    """A gradient of the wrong sign: every trial along -g raised f at the rate g.d said it would fall, and the
    run ended "converged" after one iteration at f 2,700 above f*."""
    steps, gap, _ = _least_squares(dtype, sign=-1.0)
    stop = steps[-1].stop
    assert len(steps) == 1 and gap > 1e3
    assert stop.reason == "line search" and not stop.converged and not steps[-1].converged
    assert "the gradient does not match the cost" in stop.message and stop.numbers["grad_ratio"] == 1.0


@pytest.mark.parametrize("noise, bias", [(0.0, 1e-5), (0.0, 1e-4), (1.0, 1e-3)])
def test_a_float32_gradient_with_a_small_constant_error_fails_its_line_search_it_does_not_converge(noise, bias):
    """Near the minimum the wrong gradient is small (|g| 2.3e-6 to 2.5e-4 |g0|, within sqrt(eps) |g0|), and its last
    search read "converged to float32 precision" at f - f* 1.8e-5, 1.6e-3 and 0.18 (6.9e-11 and 1.5e-6 without the
    error): the trials' own slope along d says the cost rises where g.d says it falls."""
    steps, gap, _ = _least_squares(torch.float32, noise, bias=bias)
    stop = steps[-1].stop
    assert gap > 1e-5                                                     # (it did stop short of the minimum)
    assert stop.reason == "line search" and not stop.converged and "the gradient does not match the cost" in stop.message
    assert stop.numbers["grad_ratio"] <= math.sqrt(torch.finfo(torch.float32).eps)     # what read converged
    assert "or the cost is not smooth along d" in stop.message     # (an exact L1 kink reads the same: both named)
    assert stop.numbers["trial_slope"] > 0 and "where the gradient said g.d = -" in stop.message


def test_a_cost_that_is_not_finite_at_every_trial_fails_naming_it():
    steps, _, _ = _least_squares(torch.float32, nan_trials=True)
    stop = steps[-1].stop
    assert len(steps) == 1 and stop.reason == "line search" and stop.numbers["non_finite"] == 10
    assert "not finite at 10 of its 10 trial points" in stop.message


def test_a_search_that_ran_out_of_evaluations_far_from_the_minimum_is_a_failure_even_in_float32():
    # f = 1000 |w|² from f = 1e-3: the first trial overshoots to f = 998, and what is left to gain (1e-3) is
    # far above float32's rounding of f (1e-10), so two evaluations that found no step are too few, not precision
    trials = [(0.5, 998.0), (0.05, 8.1)]
    stop = failed_search(1e-3, -4.0, 2.0, 2.0, trials, torch.finfo(torch.float32).eps)
    assert stop.reason == "line search" and stop.numbers["promised_decrease"] == pytest.approx(1e-3, rel=1e-5)
    assert "sandblaster.line_search (2) allows too few evaluations" in stop.message


def test_a_run_that_starts_at_its_minimum_stops_converged_at_once():
    a, zeros = torch.eye(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    shards = [HistoryShard(j, zeros[2 * j:2 * j + 2], history=3, start=2 * j) for j in range(2)]
    coord = Coordinator(LocalShards(shards), _LeastSquares(shards, a, zeros), history=3, line_search=10)
    step = coord.iterate(0, torch.arange(1), None, new_batch=False, new_stage=False)
    assert step.converged and step.stop.reason == "gradient" and step.stop.numbers["grad_ratio"] == 0.0


SMALL = ["--set", "cluster.algorithm=sandblaster", "--set", "model.name=rica-8x8", "--set", "model.hidden=16",
         "--set", "data.samples=300", "--set", "train.tensorboard=false", "--set", "sandblaster.units=6"]


@pytest.mark.parametrize("dtype, trials, reason, said", [
    ("float32", [(1.0, 16.0000026)], "precision", "converged to float32 precision"),
    ("float64", [(1.0, 16.5), (0.1, 16.05)], "line search", "line search failed after 2 evaluations")])
def test_the_run_directory_and_the_cli_say_why_it_stopped(tmp_path, capsys, caplog, monkeypatch, dtype, trials, reason,
                                                          said):
    """sandblaster.json said only converged: true (for any search that failed along -g on the whole set), and the
    log "no step decreases the cost, or |g| <= 1e-8 |g0|". Planted here at iteration 3: f = 16, |g| = 1e-3, g.d =
    -1.2e-6 (a float32 RICA-16 run's last search, promising 9e-8 at eps |f| 1.9e-6) or a search in float64 whose
    g.d = -1 promised 0.17 and found no step."""
    search = Coordinator.search

    def stops_at_the_third(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        if iteration != 2:
            return step
        gd = -1.2e-6 if reason == "precision" else -1.0
        return dataclasses.replace(step, stop=failed_search(16.0, gd, 1e-3, 9.4, trials, self.eps))

    monkeypatch.setattr(Coordinator, "search", stops_at_the_third)
    caplog.set_level(logging.INFO, logger="downpour.sandblaster.run")
    argv = ["train", "--config", "tica-8x8", "--runner", "simulated", "--workers", "2", "--steps", "6", "--no-report",
            *SMALL, "--set", f"sandblaster.precision={dtype}", "--out", str(tmp_path / "run")]
    assert main(argv) == (0 if reason == "precision" else 1)    # (it was 0 for a failure too: a script saw success)
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "run/sandblaster.json").read_text())
    for s in (summary, saved):
        assert s["steps"] == 3 and s["stop"]["reason"] == reason and s["stop"]["iteration"] == 3
        assert s["converged"] == (reason == "precision") and said in s["stop"]["message"]
    (said_on_cli,) = [r for r in caplog.records if r.name == "downpour.sandblaster.run" and "stopped" in r.getMessage()]
    assert said_on_cli.getMessage().startswith(f"L-BFGS stopped after 3 iterations: {said}")
    assert said_on_cli.levelname == ("INFO" if reason == "precision" else "WARNING")
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ([] if reason == "precision" else
                      [f"{tmp_path / 'run'}: L-BFGS failed at iteration 3: {saved['stop']['message']}; the model saved "
                       "is its last accepted point"])
    monkeypatch.undo()
    cfg = load_config(str(tmp_path / "run/config.toml"))
    with pytest.raises(ConfigError, match=f"is finished: it stopped at L-BFGS iteration 3 \\({said}"):
        train(cfg, RunDir.open(tmp_path / "run"), resume=True)


def test_a_nan_gradient_piece_from_one_unit_in_the_line_search_ends_the_run_as_a_failure(tmp_path, monkeypatch):
    """From evaluation 4 on, unit 0's gradient slice for shard 1 is NaN (its cost finite): every trial that passed
    Armijo was turned down for it, the search along -g found no step, and the run said converged: true."""
    from downpour.sandblaster.worker import UnitWorker

    compute = UnitWorker.compute

    def nan_piece(self, evaluation, unit, rows, total, point, stage):
        r = compute(self, evaluation, unit, rows, total, point, stage)
        if evaluation >= 4 and unit == 0:
            r.grads[1] = torch.full_like(r.grads[1], math.nan)
        return r

    monkeypatch.setattr(UnitWorker, "compute", nan_piece)
    cfg = load_config("tica-8x8", ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "model.name=rica-8x8",
                                   "model.hidden=16", "data.samples=300", "train.tensorboard=false", "train.steps=20",
                                   "cluster.workers=2", "cluster.shards=2", "sandblaster.units=6"])
    summary = train(cfg, RunDir.create(tmp_path / "run", cfg))
    assert summary["steps"] < 20 and not summary["converged"] and summary["stop"]["reason"] == "line search"
    assert summary["stop"]["non_finite"] > 0 and "not finite at" in summary["stop"]["message"]   # (7 of 10 here)


def test_a_run_that_did_not_stop_early_says_its_iterations_ran_out(tmp_path):
    cfg = load_config("tica-8x8", ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "model.name=rica-8x8",
                                   "model.hidden=16", "data.samples=300", "train.tensorboard=false", "train.steps=2"])
    summary = train(cfg, RunDir.create(tmp_path / "run", cfg))
    assert summary["stop"]["reason"] == "steps" and not summary["converged"] and summary["stops"] == []


def test_a_checkpoint_from_before_the_stop_was_recorded_resumes_and_reports_converged_consistently(tmp_path, monkeypatch):
    """A run that converged (iteration 3) and was stopped before its model was saved, its checkpoint written before
    2026-12-04 (no ``stop``, no ``stops``): the resume saves the model and its summary said "converged": true beside
    "stop": {"reason": "steps", "converged": false, "message": "train.steps: 3 L-BFGS iterations done"} (of 6)."""
    search = Coordinator.search

    def stops_at_the_third(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        if iteration != 2:
            return step
        return dataclasses.replace(step, stop=failed_search(16.0, -1.2e-6, 1e-3, 9.4, [(1.0, 16.0000026)],
                                                                  self.eps))

    monkeypatch.setattr(Coordinator, "search", stops_at_the_third)
    cfg = load_config("tica-8x8", ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "model.name=rica-8x8",
                                   "model.hidden=16", "data.samples=300", "train.tensorboard=false", "train.steps=6",
                                   "cluster.workers=2", "sandblaster.units=6"])
    assert train(cfg, RunDir.create(tmp_path / "run", cfg))["converged"]
    monkeypatch.undo()
    meta_path = tmp_path / "run/checkpoints/sandblaster.json"
    meta = json.loads(meta_path.read_text())
    assert meta["stop"]["reason"] == "precision"
    meta = {k: v for k, v in meta.items() if k not in ("stop", "stops")}
    rewrite_json(meta_path, meta)
    (tmp_path / "run/model.safetensors").unlink()        # stopped between its last checkpoint and its model
    summary = train(cfg, RunDir.open(tmp_path / "run"), resume=True)
    assert summary["steps"] == 3 and summary["converged"] and summary["stop"]["converged"]
    assert summary["stop"]["reason"] != "steps" and "as its older checkpoint says" in summary["stop"]["message"]
    with pytest.raises(ConfigError, match="is finished: it stopped at L-BFGS iteration 3 \\(converged"):
        train(cfg, RunDir.open(tmp_path / "run"), resume=True)


def _fail_line_search(monkeypatch, when=lambda iteration, stage: True):
    """Coordinator.search as it is, but its step a failed line search wherever ``when(iteration, stage)``."""
    search = Coordinator.search

    def failing(self, iteration, rows, stage, new_batch, new_stage):
        step = search(self, iteration, rows, stage, new_batch, new_stage)
        if not when(iteration, stage):
            return step
        return dataclasses.replace(step, stop=failed_search(16.0, -1.0, 1.0, 9.4, [(1.0, 16.5), (0.1, 16.05)],
                                                                  self.eps))

    monkeypatch.setattr(Coordinator, "search", failing)


def test_a_greedy_stage_whose_line_search_failed_makes_the_cli_exit_1_though_the_last_stage_ran_its_steps(
        tmp_path, caplog, monkeypatch):
    """Stage 1 of 2 ends in a failed search at iteration 1, stage 2 takes iterations 4-6: the summary says stop
    "steps" (not converged) and only ``stops`` holds the failure; the CLI exited 0."""
    _fail_line_search(monkeypatch, lambda iteration, stage: stage == 1)
    argv = ["train", "--config", "cat-demo", "--runner", "simulated", "--steps", "6", "--no-report", "--set",
            "cluster.algorithm=sandblaster", "--set", "train.tensorboard=false", "--set", "analysis.no_faces_twin=false",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 1
    saved = json.loads((tmp_path / "run/sandblaster.json").read_text())
    assert saved["stop"]["reason"] == "steps" and [(s["stage"], s["reason"]) for s in saved["stops"]] == [(1, "line search")]
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith(f"{tmp_path / 'run'}: L-BFGS failed at iteration 1 (greedy stage 1): line search failed")


@pytest.mark.parametrize("batch", [0, 100])   # the whole data set; a new sample of 100 of the 300 each iteration
def test_a_crossfit_whose_folds_line_search_failed_writes_everything_then_exits_1(tmp_path, caplog, capsys, monkeypatch,
                                                                                  batch):
    """`downpour train` exits 1 when a line search failed for real; the cross-fit dropped the failure with the rest
    of its folds' summaries and exited 0. Now each fold's failures are in crossfit.json and the exit status is 1,
    once the pooled test and its report are written. Folds that sample batches are kept alike on the same command
    again (until 2026-12-05 they were resumed: trained on to train.steps, their failure gone from the record)."""
    _fail_line_search(monkeypatch)
    out = tmp_path / "cf"
    argv = ["crossfit", "--config", "tica-8x8", "--runner", "simulated", "--steps", "4", "--folds", "2", "--out", str(out),
            *[a for kv in ("cluster.algorithm=sandblaster", "train.tensorboard=false", "data.samples=300",
                           "model.name=rica-8x8", "model.hidden=16", "data.source=natural+faces", "analysis.bootstrap=200", "analysis.control_draws=1",
                           "analysis.random_filters=50", f"sandblaster.batch={batch}") for a in ("--set", kv)]]
    assert main(argv) == 1
    record = json.loads((out / "crossfit.json").read_text())
    assert list(out.glob("*.html"))                  # the report, written before the exit status
    for i, run in enumerate(record["runs"]):
        (line,) = run["line_search_failures"]
        assert line.startswith(f"{out / f'fold-{i}'}: L-BFGS failed at iteration 1: line search failed")
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and all("the model saved is its last accepted point" in e for e in errors)
    # the same command again (to add twins, or after a later fold was interrupted) keeps the folds that stopped: until
    # 2026-12-05 each was refused ("stopped at L-BFGS iteration 1 ... start a new run") and the command exited 2
    caplog.clear()
    assert main(argv) == 0                             # kept, as `train` keeps a finished run: said, and exit 1, then
    again = json.loads((out / "crossfit.json").read_text())
    assert [run["kept"] for run in again["runs"]] == [True, True]
    assert [json.loads((out / f"fold-{i}/sandblaster.json").read_text())["steps"] for i in range(2)] == [1, 1]
    assert [run["line_search_failures"] for run in again["runs"]] == [run["line_search_failures"] for run in record["runs"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "L-BFGS failed" in r.getMessage()]
    assert len(warnings) == 2 and not [r for r in caplog.records if r.levelname == "ERROR"]
    # `train --resume` of such a fold refuses alike with and without --dry-run, saying it is finished
    for dry in ([], ["--dry-run"]):
        capsys.readouterr()
        assert main(["train", "--resume", str(out / "fold-0"), *dry]) == 2
        assert "is finished: it stopped at L-BFGS iteration 1 (line search failed" in capsys.readouterr().err


def test_a_run_on_sampled_batches_that_stopped_is_finished_and_goes_on_only_with_more_steps(tmp_path, capsys, monkeypatch):
    """A stop on sampled batches is the run's end as it is on the whole data set: its rule already waited for a failed
    search to recur. Until 2026-12-05 `train --resume` of such a run went on to train.steps (exit 0, the stop gone from
    sandblaster.json) where the same run on the whole data set was refused as finished. Now it is refused, with
    --dry-run too, naming the resume that goes on anyway (more --steps), and that resume goes on, on new batches. The
    command pastes into a shell (it gave the folder as Python's repr: "...it's a $run", which the shell expands)."""
    _fail_line_search(monkeypatch, lambda iteration, stage: iteration == 1)   # the second iteration's
    out = tmp_path / "it's a $run"
    sets = [a for kv in ("cluster.algorithm=sandblaster", "train.tensorboard=false", "data.samples=300", "model.name=rica-8x8",
                         "model.hidden=16", "sandblaster.units=6", "sandblaster.batch=100", "analysis.no_faces_twin=false")
            for a in ("--set", kv)]
    assert main(["train", "--config", "tica-8x8", "--runner", "simulated", "--steps", "6", "--no-report", *sets,
                 "--out", str(out)]) == 1
    monkeypatch.undo()
    assert json.loads((out / "sandblaster.json").read_text())["samples_batches"]
    for dry in ([], ["--dry-run"]):
        capsys.readouterr()
        assert main(["train", "--resume", str(out), "--no-report", *dry]) == 2
        err = capsys.readouterr().err
        assert "is finished: it stopped at L-BFGS iteration 2 (line search failed" in err
        assert f"downpour train --resume {shlex.quote(str(out))} --steps M, M above its 6" in err
    saved = json.loads((out / "sandblaster.json").read_text())
    assert saved["steps"] == 2 and saved["stop"]["reason"] == "line search"
    assert RunDir.open(out).finished(6) and not RunDir.open(out).finished(8)
    assert main(["train", "--resume", str(out), "--steps", "8", "--no-report"]) == 0
    saved = json.loads((out / "sandblaster.json").read_text())
    assert saved["steps"] == 8 and saved["resumed_from"] == 2 and saved["stop"]["reason"] == "steps"


def _fail_armijo(monkeypatch, when):
    """Coordinator.search with no trial passing Armijo (c1 beyond reach) wherever ``when(iteration)``: a real failed
    search, counted and stopped by the coordinator's own rule."""
    search, c1 = Coordinator.search, lbfgs.C1

    def failing(self, iteration, rows, stage, new_batch, new_stage):
        monkeypatch.setattr(lbfgs, "C1", 1e30 if when(iteration) else c1)
        return search(self, iteration, rows, stage, new_batch, new_stage)

    monkeypatch.setattr(Coordinator, "search", failing)


def test_a_resume_past_a_stop_with_more_steps_starts_a_fresh_failure_count(tmp_path, monkeypatch):
    """Two failed searches in a row stop a run on sampled batches (iterations 2 and 3); `--resume --steps M` goes on
    anyway. Its count carried over (2), so the first failure after it ended the run at once, where its rule waits for
    a failure to recur: now the resume starts a fresh count, and one failure (iteration 4) is taken as in a new run."""
    _fail_armijo(monkeypatch, lambda iteration: iteration in (1, 2, 3))
    out = tmp_path / "run"
    sets = [a for kv in ("cluster.algorithm=sandblaster", "train.tensorboard=false", "data.samples=300", "model.name=rica-8x8",
                         "model.hidden=16", "sandblaster.units=6", "sandblaster.batch=100", "analysis.no_faces_twin=false")
            for a in ("--set", kv)]
    main(["train", "--config", "tica-8x8", "--runner", "simulated", "--steps", "6", "--no-report", *sets, "--out", str(out)])
    saved = json.loads((out / "sandblaster.json").read_text())
    assert saved["steps"] == 3 and saved["stop"]["reason"] != "steps"
    assert main(["train", "--resume", str(out), "--steps", "8", "--no-report"]) == 0
    saved = json.loads((out / "sandblaster.json").read_text())
    assert saved["steps"] == 8 and saved["resumed_from"] == 3 and saved["stop"]["reason"] == "steps"


def test_a_resume_past_a_stop_stopped_before_its_first_iteration_resumes_again(tmp_path, monkeypatch):
    """`--resume --steps 8` past a stop saves config.toml's 8 steps; stopped (Ctrl-C) in its first iteration, its
    checkpoint still carried the old stop, so the next `--resume` said the run "is finished ... M above its 8"; and
    `--resume --dry-run` said so until 2026-12-05 after that fix (it reads sandblaster.json, not the checkpoint)."""
    _fail_armijo(monkeypatch, lambda iteration: iteration in (1, 2))
    out = tmp_path / "run"
    sets = [a for kv in ("cluster.algorithm=sandblaster", "train.tensorboard=false", "data.samples=300", "model.name=rica-8x8",
                         "model.hidden=16", "sandblaster.units=6", "sandblaster.batch=100", "analysis.no_faces_twin=false")
            for a in ("--set", kv)]
    main(["train", "--config", "tica-8x8", "--runner", "simulated", "--steps", "6", "--no-report", *sets, "--out", str(out)])
    assert json.loads((out / "sandblaster.json").read_text())["steps"] == 3
    search = Coordinator.search

    def interrupted(self, iteration, *args):
        if iteration == 3:
            raise KeyboardInterrupt
        return search(self, iteration, *args)

    monkeypatch.setattr(Coordinator, "search", interrupted)
    assert main(["train", "--resume", str(out), "--steps", "8", "--no-report"]) == 130     # (interrupted)
    monkeypatch.setattr(Coordinator, "search", search)
    # the dry run agrees (it read sandblaster.json's stop at 3 against config.toml's 8 steps, and said "finished")
    assert main(["train", "--resume", str(out), "--dry-run"]) == 0 and not RunDir.open(out).finished(8)
    assert main(["train", "--resume", str(out), "--no-report"]) == 0
    saved = json.loads((out / "sandblaster.json").read_text())
    assert saved["steps"] == 8 and saved["stop"]["reason"] == "steps"


def test_a_resume_that_writes_the_model_of_a_run_stopped_for_good_says_why_naming_the_file(tmp_path, caplog,
                                                                                           monkeypatch):
    """A run stopped for good (a failed line search on the whole data set) whose model was not saved where it stopped:
    the resume wrote it from the checkpoint without a word, where the Downpour runners' resume says why."""
    _fail_line_search(monkeypatch)
    cfg = load_config("tica-8x8", ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "model.name=rica-8x8",
                                   "model.hidden=16", "data.samples=300", "train.tensorboard=false", "train.steps=4",
                                   "cluster.workers=2", "sandblaster.units=6"])
    train(cfg, RunDir.create(tmp_path / "run", cfg))
    monkeypatch.undo()
    (tmp_path / "run/model.safetensors").unlink()        # stopped between its last checkpoint and its model
    said = (f"{tmp_path / 'run'}: the run stopped for good at L-BFGS iteration 1 (its checkpoint) but the model was not "
            f"saved whole ('{tmp_path / 'run/model.safetensors'}' is missing)")
    with caplog.at_level(logging.WARNING):             # its --dry-run said nothing of it either
        assert main(["train", "--resume", str(tmp_path / "run"), "--dry-run"]) == 0
    assert f"{said}; the resume would save it from there" in caplog.text
    with caplog.at_level(logging.WARNING):
        train(cfg, RunDir.open(tmp_path / "run"), resume=True)
    assert f"{said}; saving it now" in caplog.text
    assert RunDir.open(tmp_path / "run").model_step() == 1


def test_a_kept_sandblaster_runs_summary_has_only_keys_a_trained_one_has(tmp_path):
    """A finished Sandblaster run kept as it is (a cross-fit's fold, a run whose twin is left) printed
    "line_search_failures", a key its freshly trained summary has not (it carries "stops", which the failures are read
    from); a cross-fit's record still gives the kept fold its recorded failures (none here)."""
    from downpour.crossfit import fold_summary
    from downpour.twins import train_kept

    cfg = load_config("tica-8x8", ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "model.name=rica-8x8",
                                   "model.hidden=16", "data.samples=300", "train.tensorboard=false", "train.steps=2",
                                   "cluster.workers=2", "sandblaster.units=4"])
    trained = train_kept(cfg, tmp_path / "run")
    kept = train_kept(cfg, tmp_path / "run")           # finished: kept
    assert kept["kept"] and "kept" not in trained
    assert set(kept) - {"kept"} <= set(trained), set(kept) - set(trained)
    assert fold_summary(kept)["line_search_failures"] == fold_summary(trained)["line_search_failures"] == []
