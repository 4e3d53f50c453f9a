"""The loss figure's log axes' ticks and labels (:func:`~downpour.analysis.training_plots.loss_curves`): which round
values a log axis labels and how each label is written. A module of its own, apart from
:mod:`downpour.analysis.figures`, which would otherwise pass 400 lines.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.ticker import FixedLocator, LogFormatter, MaxNLocator, NullLocator


LABELS_PER_AXIS = 11     # a tick label is about a 12th of a 2.6-inch panel high: at most 11 fit, a label's height apart

# The coefficients a log axis labels between its powers of 10, densest first: LogFormatter labels 2, 3, 4 and 6 of every
# decade on an axis with up to two powers of 10 in view, which overlapped from about 1.4 decades up (3 and 4; a loss
# from 300 down to 3 reads 3, 4, 6, 10, 20, 30, 40, ..., with 3 on 4 and 30 on 40 there).
_BETWEEN_DECADES = ((2, 3, 4, 6), (2, 3), (3,), ())


def _coefficients(decades: float) -> tuple[int, ...]:
    """The densest of :data:`_BETWEEN_DECADES` whose labels stand a label's height apart on an axis of ``decades``."""
    for coeffs in _BETWEEN_DECADES:
        steps = np.diff(np.log10([1, *coeffs, 10]))
        if steps.min() >= decades / LABELS_PER_AXIS:
            return coeffs
    return ()


class PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of which ticks to label, each with the digits that tell it from its neighbours:
    LogFormatter writes a value below 1 or above 10,000 with one (every tick of a curve from 0.451 to 0.467
    read "5e-01"), and one axis mixed "1e4" with "1e+05"; from 1,000 up the labels are whole numbers with
    thousands separators (100,000), on an axis that stays below 10 million; on one that reaches it (or falls below
    1e-4), every label a power of ten (1e9, 1e1): in plain numbers a run that diverged
    to 3e31 would write 1,000,000,000,000,000,019,884,624,838,656, a label that squeezes its panel to a sliver.
    Between the powers of ten, only the coefficients that do not overlap (:func:`_coefficients`)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if x <= 0:      # (a linear locator's tick below a log axis's view, :func:`few_ticks`: no value there)
            return ""
        text = super().__call__(x, pos)
        lo, hi = self.axis.get_view_interval()
        coeff = round(x / 10.0 ** math.floor(math.log10(x) + 1e-9))
        if text and coeff != 1 and not math.isinf(self.minor_thresholds[0]) and lo > 0 \
                and coeff not in _coefficients(math.log10(hi / lo)):
            return ""
        # one style per axis: powers of ten for every label of an axis that reaches 10 million or falls below 1e-4,
        # where plain numbers grow too long (one style, not matplotlib's mix: one reaching 2e7 "10", "1e3", "1e5",
        # "1e7", one from 1e-7 to 0.1 "1e-7", "1e-5", "0.001", "0.1"); plain numbers on any other
        powers = max(lo, hi) >= 1e7 or min(lo, hi) < 1e-4        # (an inverted axis has lo > hi)
        if not text or (1 <= x < 1000 and not powers):
            return text
        digits = 2 + max(0, math.ceil(math.log10(x / max(abs(hi - lo), x * 1e-6))))
        while digits < 15 and abs(float(f"{x:.{digits}g}") - x) > 1e-9 * x:   # (a round tick of few_ticks: 1750
            digits += 1                                                         # reads "1,750", not "1,800")
        if powers:                                     # (the mantissa's digits as "g" keeps them: 1e6, 2.5e-5)
            mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")                # ("1.50" -> "1.5", "1.0" -> "1"; "1" stays)
            return self.fix_minus(f"{mantissa}e{int(exponent)}")     # (1e-6, not "1e-06")
        if x >= 1000:
            return f"{float(f'{x:.{digits}g}'):,.0f}"
        return self.fix_minus(f"{x:.{digits}g}")


def _spaced(ticks: list[float], bottom: float, top: float) -> list[float]:
    """The round ``ticks`` of a log axis from ``bottom`` to ``top`` (both kept), each at least an 11th of the axis above
    the one below: near a decade the linear steps bunch at the top (0.9 to 8.8 ticked 1, 2, ..., 9 has 7, 8 and 9
    overlapping)."""
    if top <= bottom:
        return [bottom]
    least = math.log10(top / bottom) / LABELS_PER_AXIS
    kept = [bottom]
    for t in ticks:
        if bottom < t < top and math.log10(t / kept[-1]) >= least and math.log10(top / t) >= least:
            kept.append(t)
    return kept + [top]


def few_ticks(ax: Any, low: float, high: float) -> None:
    """A log axis whose curve (from ``low`` to ``high``) spans less than a decade, ticked as a linear one (round values,
    each labelled): the log locator's 100, 200, 300 leaves cat-demo's total loss, 108 to 346, with two labels, 200 and
    300. The axis runs from the round value at or below ``low`` to the one at or above ``high``, so a label brackets
    every point (otherwise cat-demo's loss dips to 165 under a lowest label of 200, and a part logged once, 133.8, sits
    under 200 on an axis running down to 70)."""
    locator = MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10])
    if high <= low:                    # (one value: round values either side of it)
        low, high = low / 1.5, high * 1.5
    ticks = [float(t) for t in locator.tick_values(low, high) if t > 0]
    if not any(t <= low for t in ticks):     # (the round values' step is above ``low``: 9 to 49 ticked 0, 10, ...)
        ticks.insert(0, max(n * 10.0 ** math.floor(math.log10(low)) for n in (1, 2, 2.5, 5)
                            if n * 10.0 ** math.floor(math.log10(low)) <= low))
    bottom, top = max(t for t in ticks if t <= low), min((t for t in ticks if t >= high), default=high)
    ax.set_ylim(bottom, top)
    ax.yaxis.set_major_locator(FixedLocator(_spaced(ticks, bottom, top)))
    ax.yaxis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(math.inf, math.inf)))
    ax.yaxis.set_minor_locator(NullLocator())
