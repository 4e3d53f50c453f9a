"""The intervals every study reports, and the words a verdict uses for them.

- a proportion (P(success) over seeds): Wilson's 95% interval;
- a paired difference of proportions (condition − baseline on the same seeds): Bonett & Price's
  adjusted Wald interval, with the flip counts (seeds where only one of the two succeeds) and
  McNemar's exact p-value, which must agree before it reads "higher" or "lower";
- a paired difference of a continuous figure, and a mean: Student's t interval (a paired
  difference with no spread: the sign test's, see :func:`paired_difference`);
- a paired ratio (a figure over its reference, per seed): the same on the ratios' logs (:func:`paired_ratio`).

Every comparison a verdict reads is also recorded with its p-value (:func:`paired_test`,
:func:`record_test`: the test its interval inverts, so p < 0.05 exactly when the interval leaves out
0; for a paired proportion McNemar's exact p, which the reading needs as well as the interval), for
:mod:`downpour.studies.holm` to adjust a study's comparisons together and say which readings hold.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from downpour.analysis.intervals import Z95, mean_ci, wilson   # (below the studies, shared with the analysis)
from downpour.analysis.invariance import DEFAULT_ANGLES, DEFAULT_SCALES, DEFAULT_SHIFTS

SIGN_TEST_N = 6    # the fewest paired seeds whose common sign a two-sided 95% sign test can tell


def paired_difference(baseline: Sequence[float], other: Sequence[float],
                      discrete: bool = False) -> tuple[float, float, float]:
    """(mean of other − baseline, low, high): Student's t interval of the paired differences; non-finite
    pairs are dropped.

    Differences with no spread (a discrete figure, steps to a cost or images right, that moved by
    the same amount in every seed) would give the t interval zero width however few the seeds, and
    two seeds would read "higher". Then the sign test's interval is given instead: the difference
    itself from :data:`SIGN_TEST_N` seeds on (all on one side by chance: 2 * 0.5**n < 0.05),
    unbounded below that. A discrete figure's differences with a little spread whose nonzero ones are
    fewer than :data:`SIGN_TEST_N` (+1, +1, +1, +2; or 0, +1, +1, +1, +1, +2: a seed that did not move
    tells the sign test nothing) are unbounded too: the t interval would leave out 0 where no test of
    their signs could. A discrete figure: ``discrete`` (a fraction of a count, :func:`is_discrete`: by t an edge
    fraction moving +1/16, +1/16, +1/16, +2/16 would read "higher", p = 0.015), or
    differences that are all whole numbers. Differences that are all 0 have no spread either: [0, 0] from
    :data:`SIGN_TEST_N` seeds on (the sign test's interval of their median), unbounded below that ([0, 0] on any
    number of seeds would let two quick seeds that happen to agree read "no detectable effect");
    :func:`~downpour.studies.words.difference` says such a one "no seed differed: too few seeds to tell".

    From :data:`SIGN_TEST_N` nonzero differences on, a discrete figure's differences with a spread take Student's t
    whatever their signs (+5, +5, +5, +5, +5, -1 reads "higher" on t, p = 0.010, where the sign test's 1 of 6 says
    0.22): the sign test only stands in where t has no honest interval at all, it is not a second test to pass."""
    a, b = np.asarray(baseline, dtype=np.float64), np.asarray(other, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    d = (b - a)[keep]
    m, low, high = mean_ci(list(d))
    if len(d) >= 2 and high - low <= 1e-9 * abs(m):    # no spread, up to rounding (all 0 too)
        return (m, m, m) if len(d) >= SIGN_TEST_N else (m, float("-inf"), float("inf"))
    if _too_few_signs(d, discrete):
        return m, float("-inf"), float("inf")
    return m, low, high


def paired_ratio(ratios: Sequence[float]) -> tuple[float, float, float]:
    """(geometric mean, low, high) of per-seed ratios, each a figure over its reference on the same seed (gated /
    ungated time): :func:`paired_difference` of their logs against 0, taken back out of logs, so the interval is a
    ratio's own (x2 and x0.5 lie as far from x1). A ratio's plain mean with Student's t would run below 0 and be cut
    there (the quick flat-skipping study's network time x8.93 [0, 98.3] on 2 seeds). Ratios not above 0 or not finite
    are dropped, as non-finite pairs are."""
    r = np.asarray(ratios, dtype=np.float64)
    logs = np.log(np.where(r > 0, r, np.nan))
    m, low, high = paired_difference(np.zeros(len(logs)), logs)
    return math.exp(m), math.exp(low), math.exp(high)          # (exp(-inf) = 0, exp(inf) = inf: unbounded stays so)


def ratio_words(triple: Sequence[float], resolution: float) -> str:
    """How a :func:`paired_ratio` reads (:func:`effect_words` on its distance from x1): 'higher' / 'lower' when its
    interval leaves out x1; 'no detectable effect' when it lies within x(1 ± ``resolution``), x0.9-x1.1 at 0.1 as the
    verdict says it; else 'inconclusive'. (Not read on logs, where the low end would be x1/1.1 = x0.909 and [0.905,
    1.05] 'inconclusive'.) An unbounded end (0 or inf, too few seeds) reads 'inconclusive'."""
    m, low, high = triple
    return effect_words(m - 1, low - 1, high - 1, resolution)


# Figures that are a fraction of a small count (filters, seeds): their differences move in steps of one of it, so they
# take the whole numbers' rule (:func:`paired_difference`) though they are not whole numbers. By the name's start, as
# :data:`IN_UNIT`; a "d_" or "delta_" before it is its paired difference.
DISCRETE = ("edge_fraction", "p_success", "p_diverged", "reached_cost")


def is_discrete(name: str) -> bool:
    """Whether figure ``name`` (or its paired difference, "d_" / "delta_" before it) is one of :data:`DISCRETE`."""
    if name.startswith(("d_", "delta_")):
        name = name.split("_", 1)[1]
    return name.startswith(DISCRETE)


def _too_few_signs(d: np.ndarray, discrete: bool) -> bool:
    """Whether differences ``d`` of a discrete figure (``discrete``, or all whole numbers) that moved hold fewer
    nonzero ones than :data:`SIGN_TEST_N`: no sign test could tell them from 0, so no interval may. (Differences
    whose mean is 0 keep Student's t: centred on 0, it cannot read "higher" or "lower". Zero up to rounding: a
    fraction of 1,352 filters moving +1 and -1 in two seeds has a mean of -7e-20, and without this would read
    "inconclusive" where the same moves of a fraction of 16 read "no detectable effect".)"""
    moved = int(np.count_nonzero(d))
    if not 0 < moved < SIGN_TEST_N:      # (and no mean of no differences: numpy warned "Mean of empty slice")
        return False
    centred = abs(float(d.mean())) <= 1e-9 * float(np.abs(d).max())
    return not centred and (discrete or bool(np.all(d == np.round(d))))


# What a figure can be, by its name's start ("d_" or "delta_" before a [0, 1] figure: its paired difference, in
# [-1, 1]). Student's t over few seeds runs past it (a probe accuracy of 0.867 [0.231, 1.502] on 2 seeds, an
# edge-like fraction of 83% [-16, 182]); cut there, the interval still holds the figure whenever the uncut one did.
IN_UNIT = ("probe", "face_auc", "edge_fraction", "skipped", "active", "hoyer", "reached_cost", "p_success", "p_diverged",
           "inv_rotation_disc_auc")     # (an AUC, not a width: not 0 to infinity as other inv_ figures)
SIGNED_UNIT = ("face_owed_",)            # an AUC minus an AUC, per seed
NON_NEGATIVE = ("seconds", "train_seconds", "inv_", "mean_staleness", "steps_to_cost")   # and every "*_ratio"


# the invariance widths (:func:`~downpour.studies.measure.range_widths`) span at most the default sweep
SWEEP_WIDTH = {"inv_scale_octaves": math.log2(max(DEFAULT_SCALES) / min(DEFAULT_SCALES)),
               "inv_shift": max(DEFAULT_SHIFTS) - min(DEFAULT_SHIFTS), "inv_rotation": max(DEFAULT_ANGLES) - min(DEFAULT_ANGLES)}
SWEEP_WIDTH["inv_scale_up_octaves"] = math.log2(max(DEFAULT_SCALES))         # the upper end alone
SWEEP_WIDTH.update({key + "_auc": width for key, width in SWEEP_WIDTH.items()})   # the AUC ranges'


# the suffix of a width's companion figure: the share of a cell's units whose range ran to the sweep's end, where the
# width is only a lower bound (:func:`~downpour.studies.measure.censored_widths`)
CENSORED = "_censored"


def figure_range(key: str) -> tuple[float, float] | None:
    """The values figure ``key`` can take, or None where its name does not say (a loss, a difference of costs)."""
    difference = key.startswith(("d_", "delta_"))
    name = key.split("_", 1)[1] if difference else key
    if name.endswith(CENSORED):
        return (-1.0, 1.0) if difference else (0.0, 1.0)
    if name in SWEEP_WIDTH:
        return (-SWEEP_WIDTH[name], SWEEP_WIDTH[name]) if difference else (0.0, SWEEP_WIDTH[name])
    if name.startswith(IN_UNIT):
        return (-1.0, 1.0) if difference else (0.0, 1.0)
    if difference:
        return None
    if name.startswith(SIGNED_UNIT):
        return -1.0, 1.0
    if name.startswith(NON_NEGATIVE) or name.endswith("_ratio"):
        return 0.0, math.inf
    return None


def within_range(rows: Sequence[dict[str, Any]]) -> None:
    """Cut every row's finite interval ends at what its figure can be (:func:`figure_range`); an unbounded end
    (fewer seeds than the sign test needs) stays unbounded, and no reading changes (0 is inside every range)."""
    for row in rows:
        for key, value in row.get("figures", {}).items():
            bounds = figure_range(key)
            if bounds is None or not (isinstance(value, list) and len(value) == 3):
                continue
            m, low, high = value
            row["figures"][key] = [m, max(low, bounds[0]) if math.isfinite(low) else low,
                                   min(high, bounds[1]) if math.isfinite(high) else high]


def note_left_out(row: dict[str, Any], figure: str, *columns: Sequence[float]) -> None:
    """Record in ``row["missing"][figure]`` how many seeds its interval left out: those where any of
    ``columns`` (the figure's own values, or a paired difference's two sides) is not finite. The
    study page then says "k of n seeds left out" beside it, so ``n`` does not overstate it."""
    values = np.asarray(columns, dtype=np.float64)                     # (columns, seeds)
    left = int((~np.isfinite(values).all(axis=0)).sum())
    if left:
        row.setdefault("missing", {})[figure] = left


def paired_proportions(baseline: Sequence[bool], other: Sequence[bool]) -> tuple[float, float, float]:
    """(P(other) − P(baseline), low, high) on paired yes/no outcomes: Bonett & Price's (2012) adjusted
    Wald interval, which stays honest with few seeds and with 0 or n successes (a bootstrap would
    give [0, 0] when no seed flips)."""
    n = len(baseline)
    if n == 0:
        return float("nan"), -1.0, 1.0
    gained = sum(1 for a, b in zip(baseline, other) if b and not a)
    lost = sum(1 for a, b in zip(baseline, other) if a and not b)
    p_gain, p_lost = (gained + 1) / (n + 2), (lost + 1) / (n + 2)
    d = p_gain - p_lost
    half = Z95 * math.sqrt(max(p_gain + p_lost - d * d, 0.0) / (n + 2))
    return (gained - lost) / n, max(-1.0, d - half), min(1.0, d + half)


def flips(baseline: Sequence[bool], other: Sequence[bool]) -> dict[str, Any]:
    """Paired successes: seeds where only ``other`` succeeds (``gained``), only ``baseline`` does
    (``lost``), and McNemar's exact two-sided p-value for gained vs lost."""
    gained = sum(1 for a, b in zip(baseline, other) if b and not a)
    lost = sum(1 for a, b in zip(baseline, other) if a and not b)
    from scipy import stats

    p = float(stats.binomtest(min(gained, lost), gained + lost, 0.5).pvalue) if gained + lost else 1.0
    return {"gained": gained, "lost": lost, "mcnemar_p": round(p, 6)}


def effect_words(diff: float, low: float, high: float, resolution: float) -> str:
    """How an interval reads: 'higher' / 'lower' when it excludes 0; 'no detectable effect' when it
    holds 0 and is narrower than ±``resolution``; else 'inconclusive'."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "no detectable effect" if max(-low, high) <= resolution else "inconclusive"


def proportion_words(diff: float, low: float, high: float, resolution: float, mcnemar_p: float) -> str:
    """:func:`effect_words` for a paired difference of proportions, read "higher" / "lower" only when
    McNemar's exact test agrees (p < 0.05): with few flips (4 of 4 seeds gained: p = 0.125) the
    adjusted Wald interval can leave out 0 where the exact test cannot tell."""
    reading = effect_words(diff, low, high, resolution)
    return "inconclusive" if reading in ("higher", "lower") and not mcnemar_p < 0.05 else reading


def paired_p(baseline: Sequence[float], other: Sequence[float], discrete: bool = False) -> float:
    """The two-sided p-value of :func:`paired_difference`'s interval: Student's t on the finite paired
    differences; with no spread, the sign test's (2 · 0.5ⁿ from :data:`SIGN_TEST_N` seeds, else 1);
    a discrete figure (``discrete``, or whole numbers) with spread and fewer than :data:`SIGN_TEST_N` nonzero
    differences, 1 (its interval is unbounded);
    nothing moved, or one pair, 1; no finite pair at all, NaN: not measured, so not in
    :func:`~downpour.studies.holm.holm`'s family (a p of 1 there made every other comparison's adjusted p larger)."""
    a, b = np.asarray(baseline, dtype=np.float64), np.asarray(other, dtype=np.float64)
    d = (b - a)[np.isfinite(a) & np.isfinite(b)]
    if len(d) == 0:
        return math.nan
    if len(d) < 2 or not np.any(d):
        return 1.0
    m, low, high = mean_ci(list(d))
    if high - low <= 1e-9 * abs(m):
        return min(1.0, 2 * 0.5 ** len(d)) if len(d) >= SIGN_TEST_N else 1.0
    if _too_few_signs(d, discrete):
        return 1.0
    from scipy import stats

    return float(stats.ttest_1samp(d, 0.0).pvalue)


def record_test(row: dict[str, Any], name: str, reading: str, p: float, correlation: bool = False,
                against: str = "") -> None:
    """Record one comparison a verdict reads, ``row["tests"][name]``, for :func:`~downpour.studies.holm.holm` (a
    non-finite ``p``: not measured, whatever the interval's words). ``correlation``: the reading is a correlation's sign
    (above or below 0), not a condition against its reference (:func:`~downpour.studies.holm.family_paragraph` says
    which is which). ``against``: what the condition is compared with (its reference condition, or "its no-faces twin"),
    which the comparisons table and :func:`~downpour.studies.holm.family_paragraph` name: one figure compared two ways
    (templates' "what the faces gave the face unit", against the no-faces twin and against the reference condition) read
    as two identical lines without it."""
    test = {"reading": reading if math.isfinite(p) else "not measured", "p": p}
    row.setdefault("tests", {})[name] = (test | ({"correlation": True} if correlation else {})
                                         | ({"against": against} if against else {}))


def paired_test(row: dict[str, Any], name: str, baseline: Sequence[float], other: Sequence[float],
                resolution: float, against: str = "") -> tuple[list[float], str]:
    """:func:`paired_difference` of ``other`` − ``baseline`` and how it reads (:func:`effect_words`),
    recorded in ``row`` under ``name`` with its p-value and what ``baseline`` is (``against``, the reference
    condition's name); returns both. A figure :func:`is_discrete` names takes the whole numbers' rule."""
    d = paired_difference(baseline, other, is_discrete(name))
    reading = effect_words(*d, resolution=resolution)
    record_test(row, name, reading, paired_p(baseline, other, is_discrete(name)), against=against)
    return list(d), reading


DIVERGED = "diverged"     # a measured cell whose run diverged: {"diverged": 1.0}, beside its design's figures alone


def diverged_paragraph(rows: Sequence[dict[str, Any]]) -> str:
    """Which conditions had seeds whose run diverged (``row["diverged"]``, left out of every interval): every step
    non-finite, or the loss run away with finite numbers (``runners.train``'s summary)."""
    said = [f"{r['condition']} ({r['diverged']} of {r['n']} seeds)" for r in rows if r.get("diverged")]
    return ("Diverged (every step non-finite, or the loss ran away: left out of every trained figure's interval "
            "above): " + "; ".join(said) + ".") if said else ""


def nothing_trained(rows: Sequence[dict[str, Any]], lr_settable: bool = True) -> str:
    """The verdict of a study whose every cell diverged (its rows hold the design's figures alone): there is
    nothing to compare, and the study's own verdict would read figures no cell has. ``lr_settable``: whether
    the study takes a --set of train.lr (one whose conditions set it refuses it: not advised there)."""
    cells = sum(r["n"] for r in rows)
    rerun = ("with a smaller learning rate (--set train.lr=...) or without the --set overrides that made the runs "
             "diverge" if lr_settable else "without the --set overrides that made the runs diverge (its conditions "
             "set their own learning rates)")
    return (f"Every one of the {cells} cells diverged (every step non-finite, or the loss ran away), so no condition trained and this "
            "study concludes nothing about them: its table gives only what needs no training (parameters, FLOPs, "
            f"activation memory). Rerun it {rerun}, in a fresh --out.")
