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

from downpour.config import ConfigError


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


def _numbers(spec: str, parts: list[str], n: int) -> list[float]:
    if len(parts) != n:
        raise ConfigError(f"cluster.delay {spec!r}: '{parts and spec.split(':')[0]}' takes {n} number(s)")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"cluster.delay {spec!r}: not a number in {':'.join(parts)!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"cluster.delay {spec!r}: every number must be >= 0")
    return values


def make_delays(spec: str, workers: int) -> list[DelayModel]:
    """One delay model per worker, from a ``cluster.delay`` string."""
    kind, *parts = spec.split(":")
    if kind == "constant":
        (t,) = _numbers(spec, parts, 1)
        return [Constant(t) for _ in range(workers)]
    if kind == "uniform":
        a, b = _numbers(spec, parts, 2)
        if b < a:
            raise ConfigError(f"cluster.delay {spec!r}: uniform:A:B needs A <= B")
        return [Uniform(a, b) for _ in range(workers)]
    if kind == "exponential":
        (mean,) = _numbers(spec, parts, 1)
        return [Exponential(mean) for _ in range(workers)]
    if kind == "straggler":
        t, factor = _numbers(spec, parts, 2)
        return [Constant(t * factor if w == workers - 1 else t) for w in range(workers)]
    raise ConfigError(f"cluster.delay {spec!r}: unknown model {kind!r}; use constant:T | uniform:A:B | "
                      "exponential:MEAN | straggler:T:FACTOR")


def delay_rngs(seed: int, workers: int) -> list[np.random.Generator]:
    """Independent, reproducible generators, one per worker."""
    return [np.random.default_rng([seed, 7919, w]) for w in range(workers)]
