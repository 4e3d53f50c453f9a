"""Delay models for the simulated cluster: how long (virtual time) one worker step takes.

``cluster.delay`` is one of

- ``constant:T``            every step takes T
- ``uniform:A:B``           uniform in [A, B]
- ``exponential:MEAN``      long-tailed: exponential with that mean (plus nothing else)
- ``straggler:T:FACTOR``    every worker takes T, except the last one, which takes T·FACTOR

Each worker draws from its own NumPy generator seeded from (run seed, worker id), so a run is
reproducible bit for bit and adding a worker does not change the others' draws.
"""
from __future__ import annotations

import numpy as np

from downpour.config import ConfigError


class DelayModel:
    """Base class: :meth:`sample` returns one step duration (> 0) from ``rng``."""

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
        # a floor keeps two events of one worker from landing on the same instant
        return max(float(rng.exponential(self.mean)), 1e-9)


def _numbers(spec: str, parts: list[str], n: int) -> list[float]:
    if len(parts) != n:
        raise ConfigError(f"cluster.delay {spec!r}: '{parts and spec.split(':')[0]}' takes {n} number(s)")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"cluster.delay {spec!r}: not a number in {':'.join(parts)!r}") from None
    if any(v <= 0 for v in values):
        raise ConfigError(f"cluster.delay {spec!r}: every number must be > 0")
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
