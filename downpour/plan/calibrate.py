"""This machine's speeds, measured in a few seconds, for the plan's step-time prediction.

- ``flops_per_core``: one forward and backward (input and weight gradients: three contractions of
  2·B·P·M·Q FLOPs) of :class:`~downpour.layers.LocallyConnected2d` at a stage-2 shape of the
  paper's network scaled down (8 input maps, 18x18 fields, 8 maps, 23x23 output positions, batch
  16: 1.05 GFLOP, 11 M weights), one torch thread, best of the repeats, taking turns with pooling + LCN
  (``best_seconds``).
- ``pool_lcn_flops_per_core``: the main job's stage 1 as its two greedy steps run it (:func:`pool_lcn_step`: stage 1's
  :class:`~downpour.layers.L2Pool2d` forward and backward, its LCN skipped; stage 2's pass through stage 1, pooling and
  :class:`~downpour.layers.LocalContrastNorm2d` forward without autograd; batch 32 of 8 maps of 25x25 codes
  pooled 3x3 with step 2, LCN 5x5), their FLOPs as the plan counts them
  (:func:`~downpour.plan.cat_formulas.pool_lcn_flops`), one torch thread, best of the repeats, taking turns with the
  layer. This element-wise work
  runs at half the layer's rate or less (0.12-0.52 of it at the main job's and the paper's shapes, bench/pool_lcn.py),
  so timing it at ``flops_per_core`` would overstate its speed.
- ``apply_bytes_per_core``: gradient bytes per second one :class:`~downpour.ps.shard.Shard`
  takes in with the Adagrad rule (the finite check, h += g², w -= lr·g/(√h + ε)), 4 M values
  (16 MB) per push, one thread, median of the repeats.
- ``apply_fixed_s``: seconds of that shard's push of 1 value with the run's rule, all of it the apply's own cost beside
  its bytes (:data:`~downpour.plan.calls.APPLY_S`, measured the same way by bench/shard_apply.py:
  :func:`apply_fixed_seconds`), one thread, median of 9 rounds of at least 20 ms of calls.

The defaults, used without ``--calibrate``, were measured the same way on the project's shared
2-core Xeon (AVX-512, torch CPU): docs/benchmarks.md's ``locally_connected`` row, 1 thread (585
MFLOP in 34.3 ms: 17 GFLOP/s) and 1.2-1.9 GB/s for the Adagrad apply (docs/plan.md); the pooling and LCN rate is the
layer's default times the two's ratio measured side by side at the main job's stage 1 (``POOL_LCN_RATIO``:
``bench/pool_lcn.py``'s ``pool_lcn_vs_lc``, docs/benchmarks.md, 2026-12-06); the apply's own cost is the rule's
``APPLY_S``.
"""
from __future__ import annotations

import itertools
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from downpour.layers import L2Pool2d, LocalContrastNorm2d, LocallyConnected2d
from downpour.plan.calls import APPLY_S
from downpour.plan.cat_formulas import pool_lcn_flops
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard

__all__ = ["Rates", "DEFAULT_RATES", "SHARE_QUIET", "measure_rates", "best_seconds", "round_seconds", "filter_rounds",
           "filter_rates", "layer_rate", "layer_step", "pool_lcn_rate", "pool_lcn_step", "push_step",
           "apply_fixed_seconds"]

# pooling + LCN's FLOP rate over the layer's, measured side by side at the main job's stage 1 (bench/pool_lcn.py's
# pool_lcn_vs_lc, the median of 0.25-0.52 in four runs on the 2-core AMD EPYC VM under load 15-20, 2026-12-06; timed
# as pooling forward and backward then LCN forward, without a frozen pass; re-checked the same day with pool_lcn_step's
# frozen pass at load 10-28, 0.23-0.52 in four runs, and kept: docs/plan.md, "Pooling and LCN's own rate")
POOL_LCN_RATIO = 0.32

# the share of a core (CPU over wall time) at which a calibration's one thread measured the hardware, not the load it
# shared the machine with: the rates line says which (docs/plan.md, "Calibration", has the shares read quiet and loaded)
SHARE_QUIET = 0.9


@dataclass(frozen=True)
class Rates:
    flops_per_core: float          # locally connected layer, forward + backward, FLOP/s on one core
    apply_bytes_per_core: float    # parameter-server apply with ``apply_rule``, gradient bytes/s on one core
    source: str                    # "defaults (...)" or "measured on this machine"
    apply_rule: str = "adagrad"    # the update rule the apply rate was measured with
    # L2 pooling + LCN as a step runs them, FLOP/s on one core; None: the layer's times POOL_LCN_RATIO
    pool_lcn_flops_per_core: float | None = None
    # a shard's apply of a push with ``apply_rule``, its own cost beside the bytes, seconds; None: the rule's APPLY_S
    apply_fixed_s: float | None = None
    # how loaded the machine was while it measured (None: not measured): the 1-minute load average, the cores, and
    # the share of a core its one thread got (CPU over wall time). The rates are wall-clock rates, so at a share of
    # 0.40 they are 0.40 of what the core does alone (load 12 on 2 cores: 4.1 GFLOP/s for the layer, 10.4 quiet)
    load_1min: float | None = None
    cores: int | None = None
    core_share: float | None = None
    # the layer's FLOP/s in each of the calibration's rounds, of which flops_per_core is the best: how far apart they
    # are says how steady the machine was (None: not measured)
    layer_rounds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.pool_lcn_flops_per_core is None and isinstance(self.flops_per_core, (int, float)):
            object.__setattr__(self, "pool_lcn_flops_per_core", self.flops_per_core * POOL_LCN_RATIO)
        for name in ("flops_per_core", "apply_bytes_per_core", "pool_lcn_flops_per_core", "apply_fixed_s"):
            value = getattr(self, name)
            if name == "apply_fixed_s" and value is None:
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"Rates: {name} must be a positive finite rate, got {value!r} ({self.source})")

    def measured_apply(self, rule: str) -> bool:
        """Whether the apply's own cost with ``rule`` was measured (with ``rule``), not the rule's ``APPLY_S``."""
        return self.apply_fixed_s is not None and rule == self.apply_rule

    def apply_fixed(self, rule: str) -> float:
        """Seconds of a shard's apply of one push with ``rule`` beside its bytes: the measured one where it was
        measured with ``rule``, else the rule's ``APPLY_S``."""
        return self.apply_fixed_s if self.measured_apply(rule) else APPLY_S[rule]

    def as_dict(self, rule: str) -> dict[str, float | str]:
        """The rates as ``--json`` has them, the apply's own cost the plan's ``rule``'s, and ``apply_fixed_from``
        whether that figure is measured or the rule's ``APPLY_S``: an Adam plan on rates measured with Adagrad takes
        Adam's constant, not the measured Adagrad cost."""
        return {"flops_per_core": round(self.flops_per_core),
                "pool_lcn_flops_per_core": round(self.pool_lcn_flops_per_core),
                "apply_bytes_per_core": round(self.apply_bytes_per_core), "source": self.source,
                "apply_rule": self.apply_rule, "apply_fixed_rule": rule, "apply_fixed_s": self.apply_fixed(rule),
                "apply_fixed_from": "measured" if self.measured_apply(rule) else "APPLY_S (downpour/plan/calls.py)",
                "load_1min": self.load_1min, "cores": self.cores, "core_share": self.core_share,
                "layer_rounds": None if self.layer_rounds is None else [round(r) for r in self.layer_rounds]}


DEFAULT_RATES = Rates(17e9, 1.5e9, "defaults (the project's 2-core Xeon, docs/benchmarks.md and docs/plan.md; "
                      f"pooling + LCN: the layer's times their ratio measured side by side, {POOL_LCN_RATIO}: "
                      "docs/benchmarks.md pool_lcn)")


def _times(fn: Callable[[], None], repeats: int) -> list[float]:
    fn()                           # warm: first-touch page faults, thread pools
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def round_seconds(steps: dict[str, Callable[[], None]], repeats: int, round_s: float = 0.02,
                  clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds per call of each of ``steps`` in each of ``repeats`` rounds, the steps taking turns (the first first in
    even rounds, last in odd ones) and each round at least ``round_s`` of calls by ``clock`` (a call that takes
    longer: one), each step warmed once first. Taking turns, a load that comes and goes reaches them alike."""
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()
    for r in range(repeats):
        for name, step in (list(steps.items()) if r % 2 == 0 else list(steps.items())[::-1]):
            calls, start = 0, clock()
            while calls == 0 or clock() - start < round_s:
                step()
                calls += 1
            rounds[name].append((clock() - start) / calls)
    return rounds


def best_seconds(steps: dict[str, Callable[[], None]], repeats: int, round_s: float = 0.02) -> dict[str, float]:
    """The best of :func:`round_seconds`' rounds per step, the steps taking turns: 5 single calls of the layer,
    then 5 of pooling + LCN, let the short calls' best find quiet moments that the layer's 0.1-0.3 s calls do not
    (their ratio read 0.58-0.85 beside bench/pool_lcn.py's 0.29-0.37 in the same minutes under a load of 10)."""
    return {name: min(s) for name, s in round_seconds(steps, repeats, round_s).items()}


def layer_step(batch: int = 16, channels: int = 8, size: int = 40, kernel: int = 18,
               maps: int = 8) -> tuple[Callable[[], None], float]:
    """One LocallyConnected2d forward + backward (input and weight gradients), and its FLOPs."""
    layer = LocallyConnected2d(channels, maps, size, kernel)
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    positions = layer.out_size[0] * layer.out_size[1]
    flops = 3 * 2 * batch * positions * maps * channels * kernel * kernel

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return step, flops


def layer_rate(repeats: int = 5, **shape: int) -> float:
    """FLOP/s of :func:`layer_step` (``shape``: its keywords) on the current threads, best of ``repeats``."""
    step, flops = layer_step(**shape)
    return flops / best_seconds({"layer": step}, repeats)["layer"]


def pool_lcn_step(batch: int = 32, maps: int = 8, side: int = 25, pool: int = 3, stride: int = 2,
                  window: int = 5) -> tuple[Callable[[], None], float]:
    """A cat stage's pooling and LCN as a greedy schedule's steps run them, on ``batch`` x ``maps`` codes of ``side`` x
    ``side``: the step that trains it, L2 pooling forward and backward (its LCN, whose output feeds nothing, skipped:
    ``CatNet.forward_train``), and a step above it, pooling and LCN forward without autograd (a frozen stage); and
    their FLOPs as the plan counts them (3 poolings and an LCN). ``POOL_LCN_RATIO`` was measured with pooling forward
    and backward then LCN forward (2 poolings and an LCN), a trained stage counted with the LCN a step skips, and
    re-checked with this step (its comment)."""
    l2, lcn = L2Pool2d(pool, stride=stride), LocalContrastNorm2d(maps, kernel_size=window)
    x = torch.randn(batch, maps, side, side, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grad = torch.ones(l2(x).shape)
    pool_f, lcn_f = pool_lcn_flops(maps, (side, side), pool, stride, window)

    def step() -> None:
        x.grad = None
        l2(x).backward(grad)                # the trained stage's
        with torch.no_grad():               # the frozen stage's, below a step's trained one
            lcn(l2(x))

    return step, batch * (3 * pool_f + lcn_f)


def pool_lcn_rate(repeats: int = 5, **shape: int) -> float:
    """FLOP/s of :func:`pool_lcn_step` (``shape``: its keywords) on the current threads, best of ``repeats``."""
    step, flops = pool_lcn_step(**shape)
    return flops / best_seconds({"pool_lcn": step}, repeats)["pool_lcn"]


def filter_rounds(repeats: int = 5) -> dict[str, list[float]]:
    """FLOP/s of each of ``repeats`` rounds of :func:`layer_step` (``"layer"``) and :func:`pool_lcn_step`
    (``"pool_lcn"``) at their defaults, on the current threads, timed taking turns (:func:`round_seconds`)."""
    (layer, layer_flops), (pool, pool_flops) = layer_step(), pool_lcn_step()
    rounds = round_seconds({"layer": layer, "pool_lcn": pool}, repeats)
    return {"layer": [layer_flops / s for s in rounds["layer"]],
            "pool_lcn": [pool_flops / s for s in rounds["pool_lcn"]]}


def filter_rates(repeats: int = 5) -> tuple[float, float]:
    """(the layer's, pooling + LCN's) FLOP/s of :func:`layer_step` and :func:`pool_lcn_step` at their defaults, on
    the current threads, the best of :func:`filter_rounds`' rounds (:func:`best_seconds`' choice): their ratio is what
    the plan's split of a step rests on."""
    rounds = filter_rounds(repeats)
    return max(rounds["layer"]), max(rounds["pool_lcn"])


def push_step(rule: str, grad: torch.Tensor, lr: float = 0.01) -> Callable[[], None]:
    """One :meth:`~downpour.ps.shard.Shard.push` of ``grad`` with update ``rule`` (the checks, the finite test, the
    rule, the push's record), to a shard of as many values: what the Ray runner's shard times as its apply."""
    shard = Shard(0, torch.randn(grad.numel(), generator=torch.Generator().manual_seed(1)), make_rule(rule, lr),
                  workers=[0])
    seq = itertools.count()
    return lambda: shard.push(0, grad, shard.version, next(seq))


def apply_rate(repeats: int = 9, numel: int = 1 << 22, rule: str = "adagrad") -> float:
    """Gradient bytes/s of one shard's push with update ``rule`` (checks and update) on one thread."""
    grad = torch.randn(numel, generator=torch.Generator().manual_seed(0))
    return 4 * numel / statistics.median(_times(push_step(rule, grad), repeats))


def apply_fixed_seconds(rule: str = "adagrad", repeats: int = 9, round_s: float = 0.02) -> float:
    """Seconds of one shard's push of 1 value with update ``rule`` on the current threads, the median of ``repeats``
    rounds of at least ``round_s`` of calls (:func:`round_seconds`): all of it the apply's own cost beside its bytes,
    the plan's ``APPLY_S`` (bench/shard_apply.py's ``fixed_us``, timed there taking turns with the rule alone and
    torch's optimiser)."""
    return statistics.median(round_seconds({"shard": push_step(rule, torch.ones(1))}, repeats, round_s)["shard"])


def measure_rates(rule: str = "adagrad") -> Rates:
    """The three rates and the apply's own cost, measured now on one torch thread (a few seconds), the apply with
    the run's update ``rule`` (Adam's apply is about 1.5x dearer than Adagrad's, docs/benchmarks.md server_rules),
    with how loaded the machine was meanwhile (its load average, cores, and the share of a core the thread got);
    the thread count is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        rounds = filter_rounds()
        apply, fixed = apply_rate(rule=rule), apply_fixed_seconds(rule)
    finally:
        torch.set_num_threads(threads)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    source = ("measured on this machine (--calibrate, 1 thread: the layer and pooling + LCN at the main job's stage 1 "
              "taking turns, the apply and its own cost; a call's own cost, the links (--bandwidth) and one machine's "
              "copies are the plan's constants, not measured)")
    return Rates(max(rounds["layer"]), apply, source, rule, pool_lcn_flops_per_core=max(rounds["pool_lcn"]),
                 apply_fixed_s=fixed, load_1min=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                 cores=os.cpu_count(), core_share=min(cpu / wall, 1.0) if wall > 0 else None,
                 layer_rounds=tuple(rounds["layer"]))
