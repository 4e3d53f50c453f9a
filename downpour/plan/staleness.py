"""The staleness that N asynchronous replicas imply, for the schedule the simulator runs.

How :class:`~downpour.ps.simulated.SimulatedCluster` and :class:`~downpour.ps.coordinator.Coordinator`
schedule an async run (``cluster.consistency = "async"``): every step takes one unit of virtual
time; a worker runs cycles of p = ``n_push`` steps back to back (``begin_cycle`` lets it start the
next cycle as soon as the last one is computed, its push still travelling); it fetches before
every ``n_fetch`` = f-th step of its own; a push travels d (``cluster.delay``) before every shard
applies it. All N workers start at time 0, so they run in lockstep: round c of cycles is computed
in [c·p, (c+1)·p] and its N pushes land at (c+1)·p + d.

Staleness of a push = shard version at apply - version at the fetch its cycle started from = the
pushes applied in between. Its window opens at the fetch, a = (c·p mod f) steps before the cycle
starts, and closes at its own arrival: W = a + p + d. Pushes land at λ = N/p per unit time, so by
Little's law a push sees λ·W arrivals in its window, itself included:

    steady state:   s = N·(p + d + ā)/p − 1,   ā = (f − gcd(p, f))/2   (the mean of c·p mod f)

(N = 4, p = f = 1: d = 0 gives 3, the N − 1 of a non-pipelined cluster; every unit of delay adds
N·d/p for the pushes that land while one is in flight.) Two corrections make it exact for the
simulator (tests/test_plan_staleness.py; docs/plan.md has the measurements):

- start-up: no push lands before p + d, so early rounds see fewer. The prediction counts round by
  round, c = 0, 1, ... (the last one possibly partial), and averages over every push of the run.
- ties: with one constant delay a round's pushes land together, at the same instant as some
  fetches; the simulator's event order (time, then order of scheduling) decides who sees whom
  (:func:`predict_staleness`). Counted as bursts: a push sees every burst strictly inside its
  window, the workers before it in its own round and, when d <= 1, the pushes of the burst at its
  fetch that land after it (worker w: all but the first w + 1), half of each over a whole round; a
  partial last round (workers 0 .. n − 1) sees more of that burst. For integer d >= 2 that burst is
  already applied, so the steady state is N·d + (N − 1)/2 (p = f = 1), N/2 under Little's fluid count.

Random delays (uniform, exponential, straggler) never tie; their pushes are spread over the cycle
around their mean arrival (a fluid), and enter through the mean delay d̄: Little's law needs only
the mean window (within 4% of the simulator at 50 workers, docs/plan.md).

``bounded:K`` makes a worker wait for its own push before it starts the next cycle: λ = N/(p + d),
W = p + d, so s = N − 1; with K = 0 a round is a barrier and a push sees only its own round's
earlier pushes, (N − 1)/2. With random delays and a small K > 0 the gate holds some workers back
and the measured mean falls between the two (at N = 50, exponential:2: K = 1 gives 32, K = 2 gives
38, K = 8 gives 47, against the predicted 48): not modelled. ``sync`` applies a round at once: 0.
A ``warm_start`` phase (worker 0 alone) is counted as a run of one worker, then the others as a
fresh start. A greedy run of several stages (``train.schedule = "greedy"``) starts each stage only once
every push of the one before has landed (:class:`~downpour.ps.coordinator.Coordinator`): each stage is
counted as a fresh start too (:func:`greedy_switches`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from downpour.config import CONSISTENCY_FORMS, DELAY_FORMS
from downpour.settings import parse_spec

__all__ = ["StalenessPrediction", "greedy_switches", "mean_delay", "predict_staleness", "steady_staleness"]


@dataclass(frozen=True)
class StalenessPrediction:
    mean: float          # over every push of the run, warm-up included
    steady: float        # once every window is past the first arrivals
    pushes: int
    rounds: float        # pushes / workers
    window: float        # mean window p + d̄ + ā, in steps
    rate: float          # pushes per unit of virtual time (a step)

    def as_dict(self) -> dict[str, float]:
        return {"mean": round(self.mean, 3), "steady": round(self.steady, 3), "pushes": self.pushes,
                "rounds": round(self.rounds, 3), "window": round(self.window, 4), "rate": round(self.rate, 4)}


def mean_delay(delay: str, workers: int) -> float:
    """The mean push delay (steps) of ``cluster.delay`` over ``workers`` (equally busy under async)."""
    kind, args = parse_spec(delay, DELAY_FORMS, "cluster.delay")
    if kind == "uniform":
        return (args[0] + args[1]) / 2
    if kind == "straggler":            # the last worker's pushes take T·FACTOR, the others' T
        t, factor = args
        return t * (workers - 1 + factor) / workers
    return float(args[0])              # constant:T, exponential:MEAN


def _mean_age(p: int, f: int) -> float:
    return (f - math.gcd(p, f)) / 2


def steady_staleness(workers: int, n_push: int = 1, n_fetch: int = 1, delay: float = 0.0) -> float:
    """Little's law for async workers: N·(p + d + ā)/p − 1."""
    return workers * (n_push + delay + _mean_age(n_push, n_fetch)) / n_push - 1


_EPS = 1e-9


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


@dataclass(frozen=True)
class _Rounds:
    """The lockstep schedule: round c's cycles start at c·cycle, its pushes land at c·cycle + p + d.

    ``cycle``: p under async, p + d when a worker waits for its own push. ``bursts``: every push has
    the same delay, so a round's pushes land together; counted as bursts, with the simulator's
    order within a tie (see :func:`predict_staleness`), else spread over the cycle around their
    mean arrival (a fluid).
    """

    workers: int
    p: int
    f: int
    d: float
    cycle: float
    bursts: bool
    # the burst landing at the fetch instant interleaves with the fetches, worker by worker (False: it lands first)
    interleaved: bool = True

    @property
    def reach(self) -> int:            # rounds whose pushes can land in one window
        return math.ceil((self.p + self.d + self.f) / self.cycle) + 2

    @property
    def period(self) -> int:           # the fetch age c·p mod f repeats every f / gcd(p, f) rounds
        return self.f // math.gcd(self.p, self.f)

    def seen(self, c: int, size: Callable[[int], int]) -> float:
        """Mean staleness of round c's pushes; ``size(k)``: pushes in round k (0 outside the run)."""
        start, end = c * self.cycle - (c * self.p % self.f), c * self.cycle + self.p + self.d
        near = range(max(0, c - self.reach), c + self.reach + 1)
        if not self.bursts:
            half = self.cycle / 2
            seen = sum(size(k) * _overlap(start, end, self._lands(k) - half, self._lands(k) + half) for k in near)
            return max(0.0, seen / self.cycle - 1)
        seen = 0.0
        for k in near:
            t = self._lands(k)
            if start + _EPS < t < end - _EPS:
                seen += size(k)
            elif abs(t - end) <= _EPS:
                seen += max(0, size(k) - 1) / 2      # its own round: on average half of the others land first
            elif abs(t - start) <= _EPS and self.interleaved:
                # worker w fetches after that burst's first w + 1 pushes, and round c holds workers 0 .. size(c) - 1:
                # half the burst for a whole round, more for a partial one (a run of 1,025 steps on 50 workers:
                # its last round of 25 read half, and the prediction was 0.3% under the simulator)
                seen += max(0.0, size(k) - 1 - (size(c) - 1) / 2)
        return seen

    def _lands(self, k: int) -> float:
        return k * self.cycle + self.p + self.d

    def steady(self) -> float:
        """Mean staleness once the windows are past the first arrivals (an endless run, full rounds)."""
        c0 = self.reach + 2
        return sum(self.seen(c0 + j, lambda k: self.workers) for j in range(self.period)) / self.period

    def mean(self, pushes: int) -> float:
        """Mean over a run of ``pushes`` (the last round possibly partial), start-up included."""
        if pushes <= 0:
            return 0.0
        n = self.workers
        rounds = math.ceil(pushes / n)

        def size(k: int) -> int:
            return min(n, pushes - k * n) if 0 <= k < rounds else 0

        warm = min(rounds, self.reach + 2)
        tail = max(warm, rounds - self.reach - 1)
        total = sum(size(c) * self.seen(c, size) for c in [*range(warm), *range(tail, rounds)])
        middle = tail - warm          # full rounds in the steady state: one period stands for all
        if middle:
            total += n * middle * sum(self.seen(warm + j, size) for j in range(self.period)) / self.period
        return total / pushes


def greedy_switches(total: int, n_stages: int, n_push: int = 1) -> list[int]:
    """The step indices where a greedy run of ``n_stages`` over ``total`` steps (train.steps) waits for every push
    before it: the first cycle (cycles start every ``n_push`` steps) whose first step is in a later stage than the
    previous cycle's (``Coordinator._before_stage_switch``; stage s starts at step ⌈(s − 1)·total/n_stages⌉)."""
    starts = {math.ceil(math.ceil(s * total / n_stages) / n_push) * n_push for s in range(1, n_stages)}
    return sorted(j for j in starts if 0 < j < total)


def predict_staleness(workers: int, steps: int, n_push: int = 1, n_fetch: int = 1, delay: str | float = "constant:1",
                      consistency: str = "async", warm_start: int = 0,
                      switches: Sequence[int] = ()) -> StalenessPrediction:
    """The mean staleness a simulated run of ``steps`` (train.steps: over all workers) should log.

    Ties: with one constant delay d the pushes of a round land at the same instant, and whether a
    worker's fetch at that instant sees them depends on the simulator's event order (time, then
    order of scheduling). A push landing at t was scheduled at t − d, a step (and its fetch) at
    t − 1; so for d > 1 every landing push is applied before the fetch, and none of that burst counts
    against the push that fetched then; for d <= 1 they interleave worker by worker and half do.
    At the window's end half the burst lands before the push itself (workers in order). With
    p = f = 1 that gives N·d + (N − 1)/2 in the steady state for integer d >= 2 instead of Little's
    N·(1 + d) − 1: the fluid count is off by N/2 when arrivals and fetches coincide.

    ``switches``: step indices where every push before has landed when the next cycle starts (a greedy run's stage
    switches, :func:`greedy_switches`); the workers start again together there, so each part is a fresh start (a
    2-stage greedy run of 400 steps on 20 workers logs 35.10, two runs of 200 steps, where one run of 400 gives
    37.05). With ``n_fetch`` > 1 too: a worker fetches at its first step of a new stage (``Worker.fetch_due``:
    a run whose first stage-2 steps read a stage-1 copy measured 53.58 against 48.15).
    """
    kind, args = parse_spec(consistency, CONSISTENCY_FORMS, "cluster.consistency")
    d = mean_delay(delay, workers) if isinstance(delay, str) else float(delay)
    bursts = isinstance(delay, (int, float)) or parse_spec(delay, DELAY_FORMS, "cluster.delay").kind == "constant"
    p, f = n_push, n_fetch
    pushes = math.ceil(steps / p)
    if kind == "sync":
        return StalenessPrediction(0.0, 0.0, pushes, pushes / workers, float(p), workers / p)
    if kind == "bounded":
        # a worker waits for its own push, then fetches as it lands (interleaved with the others': half
        # of a burst counts), except under K = 0, a barrier: nobody starts before the whole round landed
        cycle, window, interleaved = p + d, p + d, bool(args[0])
        bursts = bursts or not args[0]
        f = p        # a gated worker fetches at the start of every push cycle, whatever n_fetch: age 0
    else:
        cycle, window, interleaved = float(p), p + d + _mean_age(p, f), d <= 1
    warm = min(pushes, math.ceil(warm_start / p)) if workers > 1 else 0
    # the warm start's lone worker: gated, it waits for its own push too (staleness 0); async, it pipelines
    alone = _Rounds(1, p, f, d, cycle, bursts, d <= 1)
    crowd = _Rounds(workers, p, f, d, cycle, bursts, interleaved)
    total = 0.0
    edges = [0, *(j for j in switches if 0 < j < steps), steps]
    for a, b in zip(edges, edges[1:]):       # each part a fresh start; the lone worker's pushes come first
        part = math.ceil((b - a) / p)
        lone, warm = min(part, warm), warm - min(part, warm)
        total += alone.mean(lone) * lone + crowd.mean(part - lone) * (part - lone)
    return StalenessPrediction(total / max(pushes, 1), crowd.steady(), pushes, pushes / workers, window, workers / cycle)
