"""Compensation for stale gradients, applied by a shard just before its update rule.

A push computed from version ``v_base`` and applied at version ``v_now`` has staleness
``s = v_now - v_base`` (updates the worker did not see).

- ``none``: the gradient as pushed.
- ``staleness-lr``: learning rate divided by ``max(1, s)`` (Zhang et al., IJCAI 2016).
- ``dc-asgd``: g + λ·g⊙g⊙(w_now − w_stale), a first-order Taylor correction of the gradient
  towards the current parameters (Zheng et al., ICML 2017). ``w_stale`` is the copy of the
  parameters the worker fetched, kept by the shard per worker (the paper's "backup" weights).
"""
from __future__ import annotations

from torch import Tensor

from downpour._names import nearest, plural
from downpour.config import ConfigError


class Compensation:
    """Base class: the identity. ``needs_backup`` asks the shard to keep each worker's fetched copy."""

    name = "none"
    needs_backup = False

    def idle_at(self, max_staleness: int) -> str | None:
        """Why this compensation changed no push of a run whose pushes were at most ``max_staleness`` stale
        (the run's cluster.json says so and the run warns), or None where it may have changed some."""
        return None

    def adjust(self, g: Tensor, staleness: int, w_now: Tensor, w_stale: Tensor | None) -> tuple[Tensor, float]:
        """Gradient (n,) to apply and the learning-rate factor to apply it with."""
        return g, 1.0


class StalenessLR(Compensation):
    name = "staleness-lr"

    def idle_at(self, max_staleness: int) -> str | None:
        # 1 / max(1, s) is 1 at s = 0 and at s = 1: two simulated workers without delay push at staleness <= 1
        # (and bounded:0 with two workers always does), and there the run was bit for bit the uncompensated one
        if max_staleness <= 1:
            return (f"no push was more than {plural(max_staleness, 'update')} stale, and "
                    "staleness-lr divides the learning rate by max(1, staleness), which is 1 there")
        return None

    def adjust(self, g: Tensor, staleness: int, w_now: Tensor, w_stale: Tensor | None) -> tuple[Tensor, float]:
        return g, 1.0 / max(1, staleness)


class DCASGD(Compensation):
    name = "dc-asgd"
    needs_backup = True

    def __init__(self, lam: float):
        self.lam = float(lam)   # cluster.dc_lambda, >= 0 (checked with the config)

    def idle_at(self, max_staleness: int) -> str | None:
        if self.lam == 0:
            return "cluster.dc_lambda = 0 makes the correction 0"
        if max_staleness == 0:
            return "every push was computed from the version it was applied to (staleness 0): there is nothing to correct"
        return None

    def adjust(self, g: Tensor, staleness: int, w_now: Tensor, w_stale: Tensor | None) -> tuple[Tensor, float]:
        if w_stale is None or staleness == 0 or self.lam == 0:
            return g, 1.0  # nothing moved since the fetch: the gradient is exact
        return g + self.lam * g * g * (w_now - w_stale), 1.0


COMPENSATIONS: dict[str, type[Compensation]] = {c.name: c for c in (Compensation, StalenessLR, DCASGD)}


def make_compensation(name: str, dc_lambda: float = 0.04) -> Compensation:
    """The compensation called ``name`` (cluster.compensation; its choices are declared in config/sections.py)."""
    if name not in COMPENSATIONS:
        raise ConfigError(f"cluster.compensation: unknown {name!r}{nearest(name, COMPENSATIONS)}; choose from {', '.join(COMPENSATIONS)}")
    return DCASGD(dc_lambda) if name == "dc-asgd" else COMPENSATIONS[name]()
