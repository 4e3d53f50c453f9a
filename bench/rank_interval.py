"""Which 95% interval for the costs study's rank correlation is honest with 6 seeds? A simulation.

    python bench/rank_interval.py studies/costs/cells.jsonl [--draws 1000]

The costs study (docs/studies.md Q6) reports Spearman's ρ between the conditions' mean Hoyer sparsity
and mean over-fitting gap, at each data size, with an interval over the seeds. Here the truth is
planted: each data size's measured condition means are taken as the true means, and each simulated
seed adds Gaussian noise with the measured covariance over the seeds (every condition's Hoyer and gap
together, so the seed-to-seed correlations between conditions are kept). The estimand is ρ of the true
means. Scenarios, each at both data sizes:

- ``planted``: the measured means as they are (ρ of the true means: the measured ρ);
- ``null-flat``: every condition's true gap is the same (no relation at all; any "went with" is false);
- ``null-shuffled``: the measured gaps given to the conditions in the order whose ρ with Hoyer is
  nearest 0 (a relation of ρ ≈ 0, same spread of gaps).

Candidates: the percentile bootstrap over seeds (what the study printed before 2026-12-04), the basic
(reverse percentile) bootstrap, the bias-corrected percentile (BC), BCa, and the per-seed ρ (ρ across
conditions within one seed) with a Student t interval over the seeds: a different estimand (the
within-seed correlation, attenuated by each seed's noise), scored here only on its sign claims. For
each: coverage of the true ρ (where defined), the rate of "went with" claims (the interval leaves
out 0; under a null every one is false) and the median width. Prints one JSON line per scenario and
method; with ``--study`` the study's own interval (:func:`downpour.studies.costs.rank_correlation`) too,
scored alike. The numbers in docs/studies.md Q6 are ``--draws 1000 --study`` on the 2026-12-04 re-run's
cells (about 3 minutes on 2 loaded cores).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from _protocol import at_least_1  # noqa: E402
from downpour.studies.costs import rank_correlation  # noqa: E402

SEEDS = 6
RESAMPLES = 2000
WITHIN = ("per-seed t", "study")        # intervals of the mean within-seed ρ, scored against it


def rho_of_means(a: np.ndarray, b: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """ρ of the condition means for each row of seed indices ``draws`` (R, n); ``a``, ``b``: (C, n)."""
    ma, mb = a[:, draws].mean(-1), b[:, draws].mean(-1)                  # (C, R)
    ra, rb = stats.rankdata(ma, axis=0), stats.rankdata(mb, axis=0)
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(0) / np.sqrt((ra ** 2).sum(0) * (rb ** 2).sum(0))


def intervals(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    n = a.shape[1]
    rho = float(rho_of_means(a, b, np.arange(n)[None])[0])
    boot = rho_of_means(a, b, rng.integers(0, n, size=(RESAMPLES, n)))
    boot = boot[np.isfinite(boot)]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    out = {"percentile": (lo, hi), "basic": (2 * rho - hi, 2 * rho - lo)}
    # BC and BCa (Efron 1987): shift the percentiles by the bootstrap's median bias z0 (and the jackknife's skew a)
    z0 = stats.norm.ppf(np.clip((np.sum(boot < rho) + 0.5 * np.sum(boot == rho)) / len(boot), 1e-6, 1 - 1e-6))
    jack = rho_of_means(a, b, np.array([np.delete(np.arange(n), i) for i in range(n)]))
    d = jack.mean() - jack
    acc = float((d ** 3).sum() / (6 * ((d ** 2).sum()) ** 1.5)) if np.all(np.isfinite(d)) and (d ** 2).sum() > 0 else 0.0
    for name, accel in (("BC", 0.0), ("BCa", acc)):
        z = z0 + np.array([-1, 1]) * stats.norm.ppf(0.975)
        q = stats.norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
        out[name] = tuple(np.quantile(boot, q))
    # the jackknife's t interval: its bias-corrected estimate ± t(n-1) × its standard error
    jack_se = math.sqrt((n - 1) / n * ((jack - jack.mean()) ** 2).sum())
    t = stats.t.ppf(0.975, n - 1)
    centre = n * rho - (n - 1) * jack.mean()
    out["jackknife t"] = (centre - t * jack_se, centre + t * jack_se)
    out["jackknife t (at ρ)"] = (rho - t * jack_se, rho + t * jack_se)
    per_seed = np.array([stats.spearmanr(a[:, s], b[:, s])[0] for s in range(n)])
    m = per_seed.mean()
    half = stats.t.ppf(0.975, n - 1) * per_seed.std(ddof=1) / math.sqrt(n)
    out["per-seed t"] = (m - half, m + half)
    return out


def scenarios(cells: list[dict], size: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """name -> (true Hoyer means (C,), true gap means (C,), residual Hoyer (n, C), residual gap (n, C))."""
    by = defaultdict(dict)
    for c in cells:
        if c["condition"].startswith(size + "/"):
            by[c["condition"]][c["seed"]] = c["figures"]
    names = sorted(by)
    seeds = sorted(set.intersection(*(set(v) for v in by.values())))
    h = np.array([[by[k][s]["hoyer"] for k in names] for s in seeds])       # (n, C)
    g = np.array([[by[k][s]["gap"] for k in names] for s in seeds])
    mh, mg = h.mean(0), g.mean(0)
    flat = np.full_like(mg, mg.mean())
    rng = np.random.default_rng(1)
    perms = np.array([rng.permutation(len(mg)) for _ in range(20000)])          # (P, C)
    rh_, rg_ = stats.rankdata(mh) - (len(mh) + 1) / 2, stats.rankdata(mg)[perms] - (len(mh) + 1) / 2
    best = perms[np.argmin(np.abs(rg_ @ rh_))]                                # ρ nearest 0
    return {"planted": (mh, mg, h - mh, g - mg), "null-flat": (mh, flat, h - mh, g - mg),
            "null-shuffled": (mh, mg[best], h - mh, g - mg)}


def simulate(truth, draws: int, rng: np.random.Generator, study: bool) -> dict[str, dict]:
    mh, mg, rh, rg = truth
    n0 = rh.shape[0]
    true_rho = stats.spearmanr(mh, mg)[0] if np.ptp(mg) > 0 else math.nan
    # the per-seed ρ's own estimand, its mean over seeds, by Monte Carlo over 20,000 simulated seeds
    w = rng.standard_normal((20000, n0)) / math.sqrt(n0 - 1)
    within = float(np.nanmean(rho_of_means((mh[None] + w @ rh).T, (mg[None] + w @ rg).T, np.arange(20000)[:, None])))
    res = defaultdict(lambda: {"cover": 0, "claims": 0, "widths": [], "lo_pos": 0, "hi_neg": 0})
    for _ in range(draws):
        w = rng.standard_normal((SEEDS, n0)) / math.sqrt(n0 - 1)            # noise with the measured covariance
        a = (mh[None] + w @ rh).T                                           # (C, seeds)
        b = (mg[None] + w @ rg).T
        got = intervals(a, b, rng)
        if study:
            cells = {(f"c{k}", s): {"x": a[k, s], "y": b[k, s]} for k in range(a.shape[0]) for s in range(SEEDS)}
            got["study"] = rank_correlation(cells, [f"c{k}" for k in range(a.shape[0])], list(range(SEEDS)), "x", "y")[2:]
        for name, (lo, hi) in got.items():
            r = res[name]
            r["cover"] += bool(lo <= (within if name in WITHIN else true_rho) <= hi)
            r["lo_pos"] += bool(lo > 0)
            r["hi_neg"] += bool(hi < 0)
            r["widths"].append(hi - lo)
    return {name: {"estimand": "mean within-seed ρ" if name in WITHIN else "ρ of the true means",
                   "true": round(within, 3) if name in WITHIN else None if math.isnan(true_rho) else round(float(true_rho), 3),
                   "coverage": None if math.isnan(true_rho) and name not in WITHIN else round(r["cover"] / draws, 3),
                   "claims_more": round(r["lo_pos"] / draws, 3), "claims_less": round(r["hi_neg"] / draws, 3),
                   "median_width": round(float(np.median(r["widths"])), 3)} for name, r in res.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cells", help="a costs study's cells.jsonl (the full setting)")
    # simulated studies, not a bench's timed repetitions (bench/_protocol.py --reps), so not called --reps
    ap.add_argument("--draws", type=at_least_1, default=1000, help="simulated studies per scenario and data size "
                    "(default: %(default)s)")
    ap.add_argument("--study", action="store_true", help="score the study's own rank_correlation too (slower)")
    args = ap.parse_args(argv)
    lines = [json.loads(line) for line in open(args.cells)]
    cells = [c for c in lines if "condition" in c and "figures" in c]
    rng = np.random.default_rng(0)
    for size in ("less", "more"):
        for scenario, truth in scenarios(cells, size).items():
            for method, row in simulate(truth, args.draws, rng, args.study).items():
                print(json.dumps({"size": size, "scenario": scenario, "method": method, "seeds": SEEDS,
                                  "draws": args.draws, **row}), flush=True)


if __name__ == "__main__":
    main()
