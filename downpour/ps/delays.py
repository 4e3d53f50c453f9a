"""Delay models for the simulated cluster: how long (virtual time) a worker's push is on its way.

Virtual time is counted in training steps: every step takes one unit of compute. The delay is
what comes on top for a push, between the end of the worker's computation and the moment the
shards apply it (network, queueing, a slow machine). Under async the worker goes on computing
meanwhile, as DistBelief's workers did, so a longer delay means more updates it has not seen:
larger staleness. (Scaling every worker's compute time alike would not change staleness at all:
in a non-pipelined cluster the mean staleness is N - 1 whatever the speeds, by Little's law.)

``cluster.delay`` is one of

- ``constant:T``            every push takes T (0: applied the moment it is computed)
- ``uniform:A:B``           uniform in [A, B]
- ``exponential:MEAN``      long-tailed: exponential with that mean
- ``straggler:T:FACTOR``    every worker's pushes take T, except the last worker's, which take T·FACTOR

Each worker draws from its own NumPy generator seeded from (run seed, worker id), so a run is
reproducible bit for bit and adding a worker does not change the others' draws.
"""
from __future__ import annotations

import numpy as np

from downpour.config import DELAY_FORMS, ConfigError
from downpour.settings import Spec, parse_spec


class DelayModel:
    """Base class: :meth:`sample` returns one push delay (>= 0, in steps) from ``rng``."""

    def sample(self, rng: np.random.Generator) -> float:
        raise NotImplementedError


class Constant(DelayModel):
    def __init__(self, t: float):
        self.t = t

    def sample(self, rng: np.random.Generator) -> float:
        return self.t


class Uniform(DelayModel):
    def __init__(self, a: float, b: float):
        self.a, self.b = a, b

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.a, self.b))


class Exponential(DelayModel):
    def __init__(self, mean: float):
        self.mean = mean

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.exponential(self.mean))


def make_delays(spec: str | Spec, workers: int) -> list[DelayModel]:
    """One delay model per worker, from ``cluster.delay`` (a string, or its parsed :class:`Spec`)."""
    kind, args = parse_spec(spec, DELAY_FORMS, "cluster.delay") if isinstance(spec, str) else spec
    if kind == "uniform":
        a, b = args
        if b < a:
            raise ConfigError(f"cluster.delay 'uniform:{a:g}:{b:g}': uniform:A:B needs A <= B", key="cluster.delay")
        return [Uniform(a, b) for _ in range(workers)]
    if kind == "exponential":
        return [Exponential(*args) for _ in range(workers)]
    if kind == "straggler":
        t, factor = args
        return [Constant(t * factor if w == workers - 1 else t) for w in range(workers)]
    return [Constant(*args) for _ in range(workers)]


def delay_rngs(seed: int, workers: int) -> list[np.random.Generator]:
    """Independent, reproducible generators, one per worker."""
    return [np.random.default_rng([seed, 7919, w]) for w in range(workers)]
