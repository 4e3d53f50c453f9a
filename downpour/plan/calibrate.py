"""This machine's speeds, measured in a few seconds, for the plan's step-time prediction.

- ``flops_per_core``: one forward and backward (input and weight gradients: three contractions of
  2·B·P·M·Q FLOPs) of :class:`~downpour.layers.LocallyConnected2d` at a stage-2 shape of the
  paper's network scaled down (8 input maps, 18x18 fields, 8 maps, 23x23 output positions, batch
  16: 1.05 GFLOP, 11 M weights), one torch thread, best of the repeats.
- ``apply_bytes_per_core``: gradient bytes per second one :class:`~downpour.ps.shard.Shard`
  takes in with the Adagrad rule (the finite check, h += g², w -= lr·g/(√h + ε)), 4 M values
  (16 MB) per push, one thread, median of the repeats.

The defaults, used without ``--calibrate``, were measured the same way on the project's shared
2-core Xeon (AVX-512, torch CPU): docs/benchmarks.md's ``locally_connected`` row, 1 thread (585
MFLOP in 34.3 ms: 17 GFLOP/s) and 1.2-1.9 GB/s for the Adagrad apply (docs/plan.md).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from downpour.layers import LocallyConnected2d
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard

__all__ = ["Rates", "DEFAULT_RATES", "calibrate"]


@dataclass(frozen=True)
class Rates:
    flops_per_core: float          # locally connected layer, forward + backward, FLOP/s on one core
    apply_bytes_per_core: float    # parameter-server apply with ``apply_rule``, gradient bytes/s on one core
    source: str                    # "defaults (...)" or "measured on this machine"
    apply_rule: str = "adagrad"    # the update rule the apply rate was measured with

    def as_dict(self) -> dict[str, float | str]:
        return {"flops_per_core": round(self.flops_per_core), "apply_bytes_per_core": round(self.apply_bytes_per_core),
                "source": self.source, "apply_rule": self.apply_rule}


DEFAULT_RATES = Rates(17e9, 1.5e9, "defaults (the project's 2-core Xeon, docs/benchmarks.md and docs/plan.md)")


def _times(fn: Callable[[], None], repeats: int) -> list[float]:
    fn()                           # warm: first-touch page faults, thread pools
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def layer_rate(repeats: int = 5, batch: int = 16, channels: int = 8, size: int = 40, kernel: int = 18,
               maps: int = 8) -> float:
    """FLOP/s of one LocallyConnected2d forward + backward (input and weight gradients) on one thread."""
    layer = LocallyConnected2d(channels, maps, size, kernel)
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    positions = layer.out_size[0] * layer.out_size[1]
    flops = 3 * 2 * batch * positions * maps * channels * kernel * kernel

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return flops / min(_times(step, repeats))


def apply_rate(repeats: int = 9, numel: int = 1 << 22, rule: str = "adagrad") -> float:
    """Gradient bytes/s of one shard's push with update ``rule`` (checks and update) on one thread."""
    shard = Shard(0, torch.zeros(numel), make_rule(rule, 0.01), workers=[0])
    grad = torch.randn(numel, generator=torch.Generator().manual_seed(0))
    seq = iter(range(repeats + 2))
    return 4 * numel / statistics.median(_times(lambda: shard.push(0, grad, shard.version, next(seq)), repeats))


def calibrate(rule: str = "adagrad") -> Rates:
    """Both rates, measured now on one torch thread (a few seconds), the apply with the run's update ``rule``
    (until 2026-12-04 always Adagrad's: Adam's apply is about 1.5x dearer, docs/benchmarks.md server_rules);
    the thread count is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Rates(layer_rate(), apply_rate(rule=rule), "measured on this machine (--calibrate, 1 thread)", rule)
    finally:
        torch.set_num_threads(threads)
