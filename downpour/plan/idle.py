"""The machines a chosen layout leaves idle, and why.

More shards never slow a plan, but past the cycle's own bound they add nothing either: every replica's push reaches
every shard, so a shard applies R pushes a cycle however many shards share the parameters
(:data:`~downpour.plan.calls.APPLY_S`), and once a shard's link carries its 1/S of the pushes inside the cycle, more
shards only shrink terms that do not bind. Filling the machines left, the main job on 1,000 machines would be 105
replicas + 895 shards, its cycle bound by the worker's step, where 10 shards give the same samples/s: a reader costing
the plan would buy 885 parameter servers that add nothing. So unset shards are the fewest within
:data:`SHARDS_TOLERANCE` of the samples/s the machines left give, unless those give more samples/s a machine used
(:func:`fewest_shards`), and the plan says the machines it leaves idle and why (:func:`idle_why`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from downpour._names import listed, plural
from downpour.plan.units import human, seconds

__all__ = ["REPLICAS_TOLERANCE", "SHARDS_TOLERANCE", "Timed", "fewest_shards", "idle_why"]

REPLICAS_TOLERANCE = 0.05  # the samples/s that fewer replicas may give up, of the fastest layout's (predict)
SHARDS_TOLERANCE = 0.01    # the samples/s that fewer shards may give up, of what the machines left give


def fewest_shards(rate: Callable[[int], float], used: Callable[[int], int], least: int, most: int) -> int:
    """The shards of a layout whose replicas are chosen: among ``least`` .. ``most`` (the machines left) those whose
    samples/s (``rate`` of a shard count) are within :data:`SHARDS_TOLERANCE` of ``most``'s, the fewest, unless
    ``most`` gives more samples/s a machine used (``used`` of a shard count). A layout whose shards' link
    binds its cycle keeps them: its samples/s grow with S as fast as its machines (the paper's network on 1,000
    machines keeps its 472 shards, where 1% fewer would give up 1% of its samples/s)."""
    top = rate(most)
    floor = (1 - SHARDS_TOLERANCE) * top
    lo, hi = least, most            # (samples/s never fall as shards are added: the fewest within floor, bisected)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if rate(mid) >= floor else (mid + 1, hi)
    # (the two ends, not every count between: scanning them all takes minutes at --machines 100000)
    return most if top / used(most) > rate(lo) / used(lo) else lo


@dataclass(frozen=True)
class Timed:
    """A layout's replicas and shards, and its timing as :func:`~downpour.plan.predict.predict` times it (its
    ``samples_per_s``, ``bottleneck`` and ``times_s``)."""
    replicas: int
    shards: int
    timing: dict[str, Any]

    @property
    def samples_per_s(self) -> float:
        return self.timing["samples_per_s"]


def idle_why(machines: int, used: int, planned: Timed, filled: Timed, fastest: Timed, rule: str) -> str:
    """Why ``used`` of ``machines`` are used by the ``planned`` layout: the shards the machines left would make (its
    replicas so ``filled``) add so many samples/s, more replicas at most the ``fastest`` layout's, and where a shard's
    applies bind that one, the cap (its own cost, :data:`~downpour.plan.calls.APPLY_S` of ``rule`` or the measured
    one) and what lifts it. "" where every machine is used."""
    if used >= machines:
        return ""
    gained, top_r = filled.samples_per_s / planned.samples_per_s - 1, fastest.replicas
    said = [f"uses {used:,} of {machines:,} machines: {filled.shards:,} shards (the machines left) would add "
            + ("under 0.1%" if gained < 1e-3 else f"{gained:.1%}") + " samples/s"]
    if top_r > planned.replicas:
        said.append(f"more replicas at most {fastest.samples_per_s / filled.samples_per_s - 1:.1%} (the fastest "
                    f"layout: {plural(top_r, 'replica')}; the fewest within {REPLICAS_TOLERANCE:.0%} of it are "
                    "planned, the least staleness)")
    if fastest.timing["bottleneck"] == "shard apply":
        fixed = fastest.timing["times_s"]["apply_fixed"]
        said.append(f"past {plural(top_r, 'replica')} a shard's applies bind ({human(1 / fixed)} pushes a second, "
                    f"{rule}'s own {seconds(fixed)} an apply, each replica's push applied alone); more machines add "
                    "nothing at this n_push, batch and rule: " + listed(
                        ["a push every n_push steps (--set cluster.n_push)", "larger batches (--set train.batch_size)",
                         *([] if rule == "sgd" else ["a cheaper rule (--set cluster.rule=sgd)"])], "or")
                    + " lift it (docs/plan.md, 'A shard's own apply cost')")
    return "; ".join(said)
