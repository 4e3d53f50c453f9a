"""The walk out from the identity along a swept curve, round the circle where the sweep is the whole turn.

A rotation sweep from -180 to +180 degrees has no ends: -180 and +180 are one angle, the same image. The walk out from 0
that :func:`~downpour.analysis.invariance.invariance_summary` reads a range from goes on past one end at the other
(skipping the duplicate end point) until the curve falls below the floor or the walk meets itself (the whole turn).
Stopped at +-180, it would read such a range as a bound: a unit high everywhere but -67.5 to -30 degrees would read -15
… 180 (195 degrees, "at least this"), where it holds over 285 degrees, measured.

A range that went round is written as it was walked, so that it still holds the identity and its width is hi - lo: past
+180 its upper end is above 180 (-15 … 270: 270 is the angle -90), past -180 its lower end is below -180.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

TURN = 360.0     # degrees: -180 and +180 are one angle, the same image (bit for bit, in the disc or not)


def covers_turn(transform: str, values: Sequence[float]) -> bool:
    """Whether ``values``, a sweep of ``transform``, is a rotation sweep whose last angle is its first a whole turn on
    (-180 … 180): the one kind of sweep the walk goes round."""
    return transform == "rotation" and len(values) > 2 and bool(np.isclose(values[-1] - values[0], TURN))


def walk(ys: np.ndarray, at: int, level: float, round_: bool) -> tuple[int, int]:
    """The positions (lo, hi) the walk out from index ``at`` reaches while ``ys`` stays >= ``level``. Without
    ``round_`` they are indices of ``ys``, between 0 and its last. With it (``ys`` a whole turn, :func:`covers_turn`)
    they go on past either end: position p is the point p mod n, n = len(ys) - 1 the distinct angles, and a position at
    a multiple of n is the one angle -180 = +180, read as the lower of its two points from either side (the same image
    measured twice: were they to differ, it holds only where both do); the walk stops when it meets itself, hi - lo = n
    (:func:`angle_at` gives a position's angle). Read as +180's point going up and -180's going down, that angle
    would hold from one side, not the other, where the two points lie a hair apart about the floor."""
    last = len(ys) - 1
    if round_:
        ys = np.asarray(ys).copy()
        ys[0] = ys[last] = min(ys[0], ys[last])

    def high(p: int) -> bool:
        return bool(ys[p % last] >= level) if round_ else bool(0 <= p <= last and ys[p] >= level)

    lo = hi = at
    while (not round_ or hi - lo < last) and high(hi + 1):
        hi += 1
    while (not round_ or hi - lo < last) and high(lo - 1):
        lo -= 1
    return lo, hi


def angle_at(values: Sequence[float], p: int) -> float:
    """The value at position ``p`` of :func:`walk`: ``values[p]`` within the sweep, and round the turn past it a
    whole turn more (above the last value) or less (below the first)."""
    last = len(values) - 1
    if 0 <= p <= last:
        return float(values[p])
    return float(values[p % last]) + TURN * (p // last)


def walked_range(values: Sequence[float], lo: int, hi: int, round_: bool) -> tuple[list[float], bool]:
    """The range of ``values`` that :func:`walk`'s positions ``lo`` and ``hi`` span, and whether it ran to an end of
    the sweep (round the turn: it met itself, every angle, -180 … 180)."""
    last = len(values) - 1
    if round_ and hi - lo >= last:       # it met itself: every angle
        return [float(values[0]), float(values[-1])], True
    return [angle_at(values, lo), angle_at(values, hi)], bool(not round_ and (lo == 0 or hi == last))


def went_round(transform: str, r: list[float] | None) -> bool:
    """Whether ``r``, a range of ``transform``, went round past +-180 degrees (:func:`walk`): an end beyond it."""
    return transform == "rotation" and r is not None and (r[0] < -TURN / 2 - 1e-9 or r[1] > TURN / 2 + 1e-9)


def round_through(a: float, b: float) -> str:
    """An arc of angles that crosses +-180, from ``a`` up through 180 to ``b`` (both within +-180), in words, not
    "[157.5, -135] (round ±180)" or "-180 … -90 and -15 … 180 degrees (... round ±180 ...)", brackets a student reads as
    an interval from 157.5 down to -135."""
    return f"from {a:g} round through 180 to {b:g}"


def walks(ys: np.ndarray, at: int, levels: np.ndarray, round_: bool) -> tuple[np.ndarray, np.ndarray]:
    """:func:`walk` of B curves at once: ys (B, V), levels (B,) (NaN: a walk that holds nowhere); (B,) lo and hi,
    position for position what :func:`walk` gives each row (its ``ys[at]`` is the caller's to check). Walked one
    by one, the bootstrap intervals of a tie's mean widths (500 resamples x 8 curves x every tied unit) take about
    0.6 s of CPU a unit (20 s for a tie of 34)."""
    ys, levels = np.asarray(ys, dtype=float), np.asarray(levels, dtype=float)
    last = ys.shape[1] - 1
    if round_:
        ys = ys.copy()
        ys[:, 0] = ys[:, last] = np.minimum(ys[:, 0], ys[:, last])
    high = ys >= levels[:, None]

    def run(order: np.ndarray) -> np.ndarray:     # (B,): how many of ``high`` at the positions ``order`` hold in a row
        return np.cumprod(high[:, order], axis=1).sum(axis=1) if len(order) else np.zeros(len(ys), dtype=int)

    if not round_:
        return at - run(np.arange(at - 1, -1, -1)), at + run(np.arange(at + 1, last + 1))
    up = run((at + 1 + np.arange(last)) % last)                      # at most the whole turn
    down = np.minimum(run((at - 1 - np.arange(last)) % last), last - up)
    return at - down, at + up
