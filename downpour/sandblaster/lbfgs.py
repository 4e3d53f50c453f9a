"""Sandblaster's coordinator: L-BFGS over sharded vectors, seeing only scalars.

One iteration, on a batch of B examples (Nocedal & Wright, Algorithms 7.4 and 3.1 with a
safeguarded quadratic backtrack; every vector operation runs on the shards, see
:mod:`~downpour.sandblaster.history`; every cost and gradient is a distributed evaluation, see
:class:`Pool`):

1. On a new batch (or a new greedy stage; the history is then dropped), evaluate f and g at w.
2. Direction d = -H g by the two-loop recursion over the stored pairs (s_i, y_i), with
   H0 = gamma I, gamma = s.y / y.y of the newest pair: one round trip to the shards per pair and
   loop, each sending a coefficient and receiving a partial dot product. No pairs: d = -g.
   If g.d >= 0 (rounding), the history is dropped and d = -g.
3. Line search from t = 1 (no pairs: t = min(1, 1/|g|)): evaluate f and its gradient at w + t d;
   accept at the first t with f(w + t d) - f <= c1 t g.d (Armijo, c1 = 1e-4); else
   t <- the minimiser of the quadratic through f, g.d and f(w + t d), kept in [0.1 t, 0.5 t]
   (0.1 t for a non-finite cost). At most ``sandblaster.line_search`` evaluations.
4. Accepted: s = t d, y = g(w + t d) - g(w) on the same batch; the pair is kept if s.y > eps (-g.s),
   eps = 2.2e-16 (L-BFGS-B's test: relative to the predicted decrease, so it does not change with the cost's scale)
   (else H would lose positive definiteness), the oldest dropped beyond ``sandblaster.history``;
   w <- w + t d, g <- the new gradient (the line search already computed it). Not accepted: w stays,
   the history is dropped; if that happens along -g on the same batch (or twice in a row on sampled
   ones), the stage stops: :func:`~downpour.sandblaster.stop.failed_search` says whether the run's precision stopped it (converged)
   or the search failed for real. It also stops, converged, once |g| <= 1e-8 |g0| (g0: the gradient at the
   stage's first point). Why it stopped is a :class:`~downpour.sandblaster.stop.Stop`.

The coordinator holds only scalars: f, the step sizes, rho_i = 1 / s_i.y_i and gamma.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from torch import Tensor

from downpour.errors import RunError
from downpour.sandblaster.history import Op
from downpour.sandblaster.stop import Stop, failed_search
from downpour.sandblaster.units import UnitCounts

C1 = 1e-4            # Armijo's sufficient decrease
# a pair is kept only if s.y > CURVATURE * (-g.s), both sides in the cost's units (L-BFGS-B's test, machine
# epsilon). It was s.y > 1e-10: a cost 1e-8 times smaller (other units) kept no pair at all, and a planted
# quadratic so scaled made no progress in 400 iterations (30 to converge now); at scale 1 its steps' s.y fell
# below 1e-10 near the minimum and the history froze (the tests' planted quadratic: 66 iterations, 47 now)
CURVATURE = 2.220446049250313e-16
# converged once |g| <= GRADIENT_RTOL |g0|, g0 the gradient at the stage's first point: relative, as L-BFGS's steps
# are (its iterates for c·f are f's, after the first step's length). It was |g| <= 1e-12 in the cost's units: a planted
# quadratic times 1e-6 stopped in 45 iterations at |w - w*| 4.9e-7, times 1 and 1e6 never got there and ended in a
# failed line search (54-56 iterations, 76-83 evaluations); now 50-52 iterations at each scale, ended by this test at
# |w - w*| <= 1e-7 (the failed search's floor: 5e-8). Not scipy's pgtol (absolute too) nor its factr (a relative
# decrease of f, which f's constant term moves; the Armijo difference already ends a run at f's rounding floor).
GRADIENT_RTOL = 1e-8


class ShardGroup(Protocol):
    """The shards as the coordinator sees them (the simulator's :class:`LocalShards`, Ray's actors)."""

    def run(self, ops: Sequence[Op]) -> list[float]:
        """Every shard runs ``ops``; their dot products' shares, summed over the shards."""

    def call(self, method: str, *args: Any) -> list[Any]:
        """Every shard's ``method(*args)`` (begin, stage_pair, accept, take_gradient, reset): their answers."""


@dataclass
class Evaluation:
    """The cost (mean over the batch), its parts, and how the units went; the gradient is in the shards' ``acc``."""

    loss: float
    parts: dict[str, float]
    span: float                  # time the evaluation took: virtual (simulator) or wall seconds (Ray)
    wall: float                  # wall seconds
    counts: UnitCounts


class Pool(Protocol):
    """The workers: the simulator's :class:`~downpour.sandblaster.simulated.SimulatedPool` or Ray's
    :class:`~downpour.sandblaster.on_ray.RayPool`. Either also has ``group`` (its shards, a
    :class:`ShardGroup`), ``clock()`` (virtual time, or wall seconds since its actors were up),
    ``info()`` (fields for the run's summary) and ``close()``."""

    def evaluate(self, evaluation: int, rows: Tensor, t: float, stage: int | None) -> Evaluation:
        """Cost and gradient at the shards' ``w + t d`` on the examples ``rows`` (B,), as work units; the
        shards' ``acc`` holds the gradient afterwards (they were told to ``begin(evaluation)``)."""


class LocalShards:
    """:class:`ShardGroup` over shards held in this process."""

    def __init__(self, shards: list[Any]):
        self.shards = shards

    def run(self, ops: Sequence[Op]) -> list[float]:
        return [sum(parts) for parts in zip(*(s.run(ops) for s in self.shards))]

    def call(self, method: str, *args: Any) -> list[Any]:
        return [getattr(s, method)(*args) for s in self.shards]


@dataclass
class Iteration:
    """What one L-BFGS iteration did (one metrics row)."""

    loss: float                  # f at the new w, on the iteration's batch
    parts: dict[str, float]
    t: float                     # the step size taken (0: none)
    evaluations: int             # distributed evaluations (line search, and the new batch's first one)
    grad_norm: float             # |g| at the start of the iteration
    pairs: int                   # pairs stored after it
    span: float                  # summed evaluation time (virtual on the simulator)
    counts: UnitCounts = field(default_factory=UnitCounts)
    stop: Stop | None = None     # set: the stage ends here (converged, or a line search that failed for real)
    move: str = "none"           # what :meth:`Coordinator.commit` does: "step" (to w + t d), "fail" (drop the history), "none"
    curvature: tuple[float, float] = (0.0, 0.0)   # the staged pair's s.y and y.y (a "step")
    keep: bool = False           # whether the staged pair passes the curvature test (a "step")

    @property
    def converged(self) -> bool:
        return self.stop is not None and self.stop.converged


class Coordinator:
    """L-BFGS with memory ``history`` over ``shards``, evaluating on ``pool``; ``line_search`` is the
    most evaluations one line search may take; ``eps``: the machine epsilon of the cost's dtype (the
    precision a failed line search is measured against). :meth:`iterate` runs one iteration."""

    def __init__(self, shards: ShardGroup, pool: Pool, history: int, line_search: int, eps: float = 2.220446049250313e-16):
        self.shards, self.pool = shards, pool
        self.history, self.line_search, self.eps = history, line_search, eps
        self.rho: list[float] = []       # 1 / s_i.y_i, oldest first (the shards hold s_i, y_i)
        self.gamma = 1.0                 # s.y / y.y of the newest pair: H0's scale
        self.f: float | None = None      # cost at w on the current batch (None: not evaluated yet)
        self.parts: dict[str, float] = {}
        self.evaluations = 0             # evaluation ids, over the run
        self.failures = 0                # line searches in a row that found no step
        self.g0: float | None = None     # |g| at the stage's first point: the scale of the convergence test
        self.log: list[dict[str, Any]] = []   # one entry per evaluation: time, units, backups

    # -- evaluations ----------------------------------------------------------------------------
    def _evaluate(self, rows: Tensor, t: float, stage: int | None, iteration: int) -> Evaluation:
        self.evaluations += 1
        self.shards.call("begin", self.evaluations)
        ev = self.pool.evaluate(self.evaluations, rows, t, stage)
        self.log.append({"iteration": iteration, "evaluation": self.evaluations, "t": t, "loss": ev.loss,
                         "span": round(ev.span, 6), "wall": round(ev.wall, 6), **ev.counts.as_dict()})
        return ev

    # -- the two-loop recursion, on the shards ---------------------------------------------------
    def _direction(self, gg: float) -> float:
        """d <- -H g on the shards; returns g.d."""
        k = len(self.rho)
        if k == 0:
            return self.shards.run([("copy", "g", "d", -1.0), ("dot", "g", "d")])[0]
        alpha = [0.0] * k
        pending: list[Op] = [("copy", "g", "q", 1.0)]
        for i in reversed(range(k)):
            (sq,) = self.shards.run([*pending, ("dot", ("s", i), "q")])
            alpha[i] = self.rho[i] * sq
            pending = [("axpy", -alpha[i], ("y", i), "q")]
        pending.append(("scale", "q", self.gamma))
        for i in range(k):
            (yq,) = self.shards.run([*pending, ("dot", ("y", i), "q")])
            beta = self.rho[i] * yq
            pending = [("axpy", alpha[i] - beta, ("s", i), "q")]
        (gd,) = self.shards.run([*pending, ("copy", "q", "d", -1.0), ("dot", "g", "d")])
        if not gd < 0:     # not a descent direction (rounding): start again along -g
            self.forget()
            return self._direction(gg)
        return gd

    def forget(self) -> None:
        """Drop the L-BFGS history (on the shards too)."""
        self.shards.call("reset")
        self.rho, self.gamma = [], 1.0

    # -- one iteration -----------------------------------------------------------------------------
    def iterate(self, iteration: int, rows: Tensor, stage: int | None, new_batch: bool, new_stage: bool) -> Iteration:
        """One L-BFGS iteration on the examples ``rows`` (B,): :meth:`search`, then :meth:`commit`."""
        step = self.search(iteration, rows, stage, new_batch, new_stage)
        self.commit(step)
        return step

    def search(self, iteration: int, rows: Tensor, stage: int | None, new_batch: bool, new_stage: bool) -> Iteration:
        """An iteration up to its decision, on the examples ``rows`` (B,). ``new_batch``: rows differ from the
        last iteration's (f and g are evaluated at w first); ``new_stage``: a greedy stage begins (history
        dropped too). It moves only what redoing the iteration from its start moves the same way (the
        evaluations, a new batch's gradient at w, a history dropped) and what a checkpoint of the last
        iteration's end restores (the evaluation count and log); the step itself is :meth:`commit`'s, so a
        caller can keep a stop from cutting it in two (and from its own bookkeeping)."""
        counts, span, n_evals = UnitCounts(), 0.0, 0
        if new_stage:          # another cost: the last stage's failed searches (and gradient scale) say nothing of this one's
            self.forget()
            self.failures, self.g0 = 0, None
        if new_batch or new_stage or self.f is None:
            ev = self._evaluate(rows, 0.0, stage, iteration)
            counts.add(ev.counts)
            span, n_evals = span + ev.span, n_evals + 1
            if not math.isfinite(ev.loss):
                raise RunError(f"L-BFGS iteration {iteration + 1}: the cost at the current parameters, or its gradient, "
                               f"is not finite (cost {ev.loss}); check the data and the model's cost terms")
            self.shards.call("take_gradient")
            self.f, self.parts = ev.loss, ev.parts
        assert self.f is not None
        (gg,) = self.shards.run([("dot", "g", "g")])
        if not math.isfinite(gg):      # (a NaN gradient compares as neither small nor large: it read "converged")
            raise RunError(f"L-BFGS iteration {iteration + 1}: the gradient at the current parameters is not finite; "
                           "check the data and the model's cost terms")
        norm = math.sqrt(gg)           # |g|
        if self.g0 is None:
            self.g0 = norm
        if norm <= GRADIENT_RTOL * self.g0:
            ratio = norm / self.g0 if self.g0 else 0.0      # (g0 = 0: it started at a stationary point)
            stop = Stop("gradient", f"converged: |g| = {norm:.3g} = {ratio:.2g} |g0| <= {GRADIENT_RTOL:g} |g0| "
                        f"(|g0| = {self.g0:.3g})", {"grad_norm": norm, "grad_ratio": ratio})
            return Iteration(self.f, self.parts, 0.0, n_evals, norm, len(self.rho), span, counts, stop)
        gd = self._direction(gg)
        t = 1.0 if self.rho else min(1.0, 1.0 / norm)
        accepted: Evaluation | None = None
        trials: list[tuple[float, float]] = []     # (t, cost; inf when it or its gradient was not finite)
        for _ in range(self.line_search):
            ev = self._evaluate(rows, t, stage, iteration)
            counts.add(ev.counts)
            span, n_evals = span + ev.span, n_evals + 1
            trials.append((t, ev.loss if math.isfinite(ev.loss) else math.inf))
            # Armijo as a difference: f + c1 t g.d rounds to f once the predicted decrease is below f's last
            # bit, and then a trial that changed nothing (f(w + t d) == f) passed: at the cost's rounding floor
            # every iteration took 10 evaluations to accept t = 1e-9 and the run never converged
            if math.isfinite(ev.loss) and ev.loss - self.f <= C1 * t * gd:
                sy, yy = (sum(v) for v in zip(*self.shards.call("stage_pair", t)))
                if math.isfinite(sy) and math.isfinite(yy):
                    accepted = ev
                    break
                # a finite cost whose gradient is not: taken, it became the next iteration's g (an error,
                # after the step and a checkpoint); a failed trial, as a non-finite cost is
                trials[-1] = (t, math.inf)
                t = backtrack(t, self.f, gd, math.inf)
                continue
            t = backtrack(t, self.f, gd, ev.loss)
        if accepted is None:
            # along -g twice in a row, or once on a batch the next iteration evaluates again (the whole
            # data set): the same search from the same point would fail the same way
            stop = None
            if not self.rho and (self.failures + 1 >= 2 or not new_batch):
                (ww,) = self.shards.run([("dot", "w", "w")])     # (|w|: how finely a trial point rounds)
                stop = failed_search(self.f, gd, norm, self.g0, trials, self.eps, math.sqrt(ww))
            return Iteration(self.f, self.parts, 0.0, n_evals, norm, 0, span, counts, stop, "fail")
        keep = sy > CURVATURE * (-t * gd)     # (-g.s = -t g.d > 0: the decrease the step predicts)
        pairs = min(len(self.rho) + 1, self.history) if keep else len(self.rho)
        return Iteration(accepted.loss, accepted.parts, t, n_evals, norm, pairs, span, counts,
                         move="step", curvature=(sy, yy), keep=keep)

    def commit(self, step: Iteration) -> None:
        """Take ``step``'s decision (:meth:`search`): move the shards to w + t d and keep its pair, or
        drop the history after a failed line search."""
        if step.move == "fail":
            self.forget()
            self.failures += 1
        elif step.move == "step":
            sy, yy = step.curvature
            keep = step.keep
            self.shards.call("accept", step.t, keep)
            if keep:
                self.rho = [*self.rho, 1.0 / sy][-self.history:]
                self.gamma = sy / yy
            self.f, self.parts, self.failures = step.loss, step.parts, 0

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"rho": self.rho, "gamma": self.gamma, "f": self.f, "parts": self.parts,
                "evaluations": self.evaluations, "failures": self.failures, "g0": self.g0}

    def load_state(self, meta: dict[str, Any]) -> None:
        self.rho, self.gamma, self.f = list(meta["rho"]), meta["gamma"], meta["f"]
        self.parts, self.evaluations, self.failures = dict(meta["parts"]), meta["evaluations"], meta["failures"]
        self.g0 = meta.get("g0")      # (a checkpoint from before 2026-12-04 has none: the resume's first |g| sets it)


def backtrack(t: float, f0: float, gd: float, ft: float) -> float:
    """The next trial step after ``t`` failed Armijo: the minimiser of the quadratic with value ``f0``
    and slope ``gd`` (< 0) at 0 and value ``ft`` at ``t``, kept within [0.1 t, 0.5 t]."""
    if not math.isfinite(ft):
        return 0.1 * t
    curvature = ft - f0 - gd * t      # > 0 whenever Armijo failed
    step = -gd * t * t / (2.0 * curvature) if curvature > 0 else 0.5 * t
    return min(max(step, 0.1 * t), 0.5 * t)

