"""A change timed against its old path, shared by the bench scripts that pair them (adjoint_backward, kept_fields,
pool_lcn's unread_lcn rows): the two checked to give the same tensors (:func:`same`), then timed in rounds taking
turns (:func:`rounds_ms`), each side's rounds summed up and each round's pair compared (:func:`paired`).

    if not same(new(), old()):
        raise SystemExit("...: the new path differs from the old")
    row = {"equal": True, **paired(new, old, reps)}            # ms_new, ms_old, new_vs_old, paired_median, ...

Each script runs as ``python bench/x.py``, with ``bench/`` on its path: it imports this module as ``_paired``.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from downpour.plan.calibrate import round_seconds


def rounds_ms(fns: dict[str, Callable[[], object]], reps: int,
              clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """ms per call of each function in each of ``reps`` rounds (:func:`~downpour.plan.calibrate.round_seconds`, by
    ``clock``: wall, or ``time.process_time``, this process's CPU in all its threads)."""
    return {name: [t * 1e3 for t in ts] for name, ts in round_seconds(fns, reps, clock=clock).items()}


def tensors(out: tuple) -> list[torch.Tensor | None]:
    """A path's results as a flat list: (dy, dw) of a kernel, (loss, [every gradient]) of a step."""
    return [t for part in out for t in (part if isinstance(part, list) else [part])]


def same(a: tuple, b: tuple) -> bool:
    """Whether two paths' results are the same tensors to the bit (``torch.equal``; a gradient None in both, and a
    gradient None in one of them is a difference, not torch.equal's TypeError)."""
    ta, tb = tensors(a), tensors(b)
    return len(ta) == len(tb) and all(x is y if x is None or y is None else torch.equal(x, y) for x, y in zip(ta, tb))


def median(values: Sequence[float]) -> float:
    """The upper median (an even count's larger middle value: a round's figure, never an average of two)."""
    return sorted(values)[len(values) // 2]


def paired(new: Callable[[], object], old: Callable[[], object], reps: int,
           pick: Callable[[Sequence[float]], float] = median) -> dict:
    """``new`` against ``old`` in ``reps`` rounds taking turns, by wall clock and (``cpu_`` keys) by this process's CPU
    time, which other jobs on a shared machine move least: ``ms_new`` and ``ms_old``, ``pick`` of each side's rounds
    (the median; ``min``: the best), ``new_vs_old`` their ratio, ``paired_median`` and ``paired_range`` the rounds'
    own ratios (each pair run back to back, so a slow stretch of the machine cancels)."""
    row: dict = {}
    for clock, key in ((time.perf_counter, ""), (time.process_time, "cpu_")):
        ms = rounds_ms({"new": new, "old": old}, reps, clock)
        ratios = sorted(n / o for n, o in zip(ms["new"], ms["old"]))
        ms_new, ms_old = pick(ms["new"]), pick(ms["old"])
        row |= {f"{key}ms_new": round(ms_new, 3), f"{key}ms_old": round(ms_old, 3),
                f"{key}new_vs_old": round(ms_new / ms_old, 3),
                f"{key}paired_median": round(median(ratios), 3),
                f"{key}paired_range": [round(ratios[0], 3), round(ratios[-1], 3)]}
    return row
