"""Why an L-BFGS stage stopped (:class:`Stop`), and what a line search that found no step says about it.

The coordinator (:mod:`~downpour.sandblaster.lbfgs`) stops a stage converged once |g| <= 1e-8 |g0|, or when a line
search fails along -g: :func:`failed_search` then tells the run's precision ("precision", converged) from a real
failure ("line search"), reading the trials' own slope along d (:func:`trial_slope`) against the gradient's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

# a line search that ends a stage failed at the run's precision (eps: its dtype's machine epsilon), not for real,
# when (a) the decrease the quadratic through f, g.d and its first trial promises along d (exact on a quadratic;
# at most a quarter of -t0 g.d when that trial did not lower f) is within RESOLUTION eps |f| (eps |f|: one to two
# ulps of f), so the cost cannot resolve it, or (b) |g| <= sqrt(eps) |g0|: the quadratic model's decrease left,
# ~|g|^2 / 2 lambda, is then eps of the stage's first, ~|g0|^2 / 2 lambda (the gradient itself need not be rounding
# there: float32's error in the least squares' below is 1.4e-8 |g0|, 0.5% of |g| at 3e-6 |g0|, 43% at 2.9e-8 |g0|).
# Measured in float32: RICA-16 on 300 patches ended (iterations 582-583) at f 4.3e-4 above the float64 run's end,
# |g| = 1.1e-4 |g0|, its last search promising 9.1e-8 at eps |f| = 1.9e-6 (-t0 g.d: 1.2e-6, so -t0 g.d against
# eps |f| alone would be marginal: 5.6e-6 against 6.0e-6 with 8 codes on 60 patches); a planted least squares
# (40 unknowns, condition 30) at |g| = 3e-6 |g0|, f - f* = 1.5e-6 (f* = 0.47), where a unit step raised f by
# 2.4e-3 though g.d said -2.7e-5 (promised 7.6e-8, eps |f| 5.7e-8); the same with no residual at |g| = 2.9e-8 |g0|,
# f - f* 6.9e-11 (promised 3.5e-12, far above eps |f|: there (b) says it). Any other failed search (a gradient
# that does not match the cost, NaN, too few evaluations) is a failure, said as one.
RESOLUTION = 4.0


@dataclass(frozen=True)
class Stop:
    """Why a stage's L-BFGS ended before its iterations ran out. ``reason``: "gradient" (|g| <= 1e-8 |g0|),
    "precision" (a failed line search whose predicted decrease is within the cost's rounding: converged as far
    as the run's dtype can tell) or "line search" (a failure: the search found no decrease it should have found);
    ``message`` says it with the numbers, ``numbers`` holds them."""

    reason: str
    message: str
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.reason in ("gradient", "precision")

    def as_dict(self) -> dict[str, Any]:
        """For JSON (sandblaster.json, the checkpoint): a number that is not finite is None."""
        numbers = {k: v if math.isfinite(v) else None for k, v in self.numbers.items()}
        return {"reason": self.reason, "converged": self.converged, "message": self.message, **numbers}


def failed_search(f: float, gd: float, grad: float, g0: float, trials: Sequence[tuple[float, float]],
                  eps: float, w_norm: float = 0.0) -> Stop:
    """Why a line search from cost ``f`` along d (slope ``gd`` < 0; |g| = ``grad``, ``g0`` the stage's first)
    found no step among ``trials`` (t, cost), in a dtype of machine epsilon ``eps`` (``w_norm``: |w|, the point's
    own rounding): "precision" when no trial was non-finite, the trials' own slope along d agrees with g.d
    (:func:`trial_slope`), and either the decrease the quadratic through f, g.d and the first trial promises is within
    :data:`RESOLUTION` eps |f| or |g| <= sqrt(eps) |g0|; else "line search"."""
    floor = RESOLUTION * eps * abs(f)
    slope = trial_slope(f, gd, trials, floor + eps * grad * w_norm / 2)
    (t0, f1), t_last = trials[0], trials[-1][0]
    gain, ratio = -t0 * gd, grad / g0 if g0 else math.inf
    promised = gd * gd * t0 * t0 / (4.0 * (f1 - f - gd * t0)) if math.isfinite(f1) else math.inf   # (> 0: Armijo failed)
    bad = sum(1 for _, cost in trials if not math.isfinite(cost))
    rises = [cost - f for _, cost in trials if math.isfinite(cost)]
    numbers = {"loss": f, "predicted_decrease": gain, "promised_decrease": promised, "resolution": floor,
               "grad_norm": grad, "grad_ratio": ratio, "evaluations": len(trials), "t_last": t_last}
    dtype = {2.0 ** -23: "float32", 2.0 ** -52: "float64"}.get(eps, f"eps {eps:g}")
    if slope is not None and bad == 0:       # (a NaN trial is said as one)
        s, unc, ta, tb = slope
        numbers.update(trial_slope=s, trial_slope_rounding=unc)
        return Stop("line search", f"line search failed after {len(trials)} evaluations: the gradient does not match "
                    f"the cost: along d the cost's own slope, from its trials at t = {ta:.3g} and {tb:.3g}, is {s:+.3g} "
                    f"(+- {unc:.2g} for rounding) where the gradient said g.d = {gd:+.3g} (|g| = {grad:.3g} = {ratio:.2g} "
                    f"|g0|; f = {f:.8g}); or the cost is not smooth along d (an exact L1 term's kink)", numbers)
    if bad == 0 and (promised <= floor or ratio <= math.sqrt(eps)):
        why = (f"the most a step along its direction could lower it, {promised:.2g}, is within {RESOLUTION:g} eps |f| = "
               f"{floor:.2g}" if promised <= floor else f"|g| = {ratio:.2g} |g0| <= sqrt(eps) |g0|: what a quadratic "
               "model has left to gain is within eps of the stage's first decrease")
        return Stop("precision", f"converged to {dtype} precision: no step lowered the cost f = {f:.8g} in "
                    f"{len(trials)} evaluations, and {why} (the trials moved f by {min(rises):+.2g} to {max(rises):+.2g}; "
                    f"|g| = {grad:.3g})", numbers)
    if bad:
        cause = (f"the cost or its gradient was not finite at {bad} of its {len(trials)} trial points; check the data "
                 "and the model's cost terms")
    else:
        cause = (f"the smallest step tried, t = {t_last:.3g}, changed the cost by {rises[-1]:+.3g} where its gradient "
                 f"predicted {t_last * gd:+.3g} (the cost's rounding here: {floor:.2g}): the gradient does not match the "
                 f"cost, the cost is not smooth along d (an exact L1 term's kink), or sandblaster.line_search ({len(trials)}) allows too few evaluations")
    numbers["non_finite"] = bad
    could = f"a step along its direction could lower f = {f:.8g} by up to {promised:.3g}; " if math.isfinite(promised) else ""
    return Stop("line search", f"line search failed after {len(trials)} evaluations, not at the cost's rounding ({could}"
                f"|g| = {grad:.3g} = {ratio:.2g} |g0|): {cause}", numbers)


def trial_slope(f: float, gd: float, trials: Sequence[tuple[float, float]],
                rounding: float) -> tuple[float, float, float, float] | None:
    """The cost's own slope along d where it says the gradient is wrong: (slope, its rounding, t_a, t_b), or None.

    The quadratic through f and two trials (t_a > t_b, rises r_a, r_b) has slope s = (r_b t_a² - r_a t_b²) /
    (t_a t_b (t_a - t_b)) at 0, exact on a quadratic and with no use of g; each cost is known to ``rounding`` (eps
    |f| and the trial point's own rounding, eps |w| / 2 times |g|), so s to 2 rounding t_a / (t_b (t_a - t_b)). The
    smallest pair of trials that resolves s to a quarter of |g.d| is read: the gradient is wrong when s exceeds g.d by
    half of |g.d| (a float32 gradient's own rounding, 43% of |g| at its least, stays within it) and the rounding.
    Measured: a float32 least squares whose gradient carries a constant error of 1e-5 |g0| ended "converged to
    float32 precision" (|g| = 2.3e-6 |g0| <= sqrt(eps) |g0|) at f - f* = 1.8e-5, its trials' slope +1.1e-6 +- 3.3e-6
    where g.d said -1.5e-5; with 1e-3 |g0|, f - f* = 0.18 (slope +0.049 +- 0.032, g.d -0.19). The same runs without
    the error: their smallest trials do not move f (rises 0: nothing resolved), so they stay converged; so do float32
    RICA-8 on 60 patches and RICA-16 on 300 (iterations 349 and 605, by the 4 eps |f| test)."""
    rises = [(t, cost - f) for t, cost in trials if math.isfinite(cost)]
    for (ta, ra), (tb, rb) in reversed(list(zip(rises, rises[1:]))):
        if not ta > tb > 0 or ra == 0 or rb == 0:      # (a trial that did not move f resolves nothing)
            continue
        unc = 2 * rounding * ta / (tb * (ta - tb))
        if unc > 0.25 * abs(gd):
            continue
        s = (rb * ta * ta - ra * tb * tb) / (ta * tb * (ta - tb))
        return (s, unc, ta, tb) if s - gd > 0.5 * abs(gd) + unc else None
    return None
