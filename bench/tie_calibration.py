"""How often the tie rule and its alternatives call a tie undecided: alike units (calibration) and a planted difference.

The rate for ties of *alike* units (one true AUC; target 5%) and of units with a small planted difference (power),
under the tie rule (``choice.chance_spread``, the pooled bootstrap range) and the alternatives, per true AUC, tie
size T and test set (faces + others). A tie's units share an image factor (correlation ``--rho`` of their scores
within a class) and an equal-variance normal shift d = sqrt(2) Phi^-1(AUC); under "power" the first unit's d is
lowered by ``--delta``. Seeded; one JSON line per cell.

    PYTHONPATH=. .venv/bin/python bench/tie_calibration.py --ties 200               # alike: the rate called undecided
    PYTHONPATH=. .venv/bin/python bench/tie_calibration.py --ties 200 --delta 0.4   # a planted difference: power

Rules: ``pooled`` the tie rule, the bootstrap range of the units' centred replicates each scaled to the tied set's
median replicate sd; ``boot`` the bootstrap range at each unit's own error (200 replicates, as
the table draws them; the rule before ``pooled``, on 2026-12-05, ``own_range_spread`` of bench/_tie_rules.py);
``delong``
DeLong's covariance of the T AUCs and the 95% point of the range of 4,000 seeded multivariate-normal draws with it;
``logit`` the bootstrap range on the logit scale (AUCs clipped half a pair from 0 and 1); ``asin`` and
``asin_pooled`` the bootstrap range and the pooled one on the arcsine-square-root scale (``asin_scale`` of
bench/_tie_rules.py); ``mean_range`` the pooled deviations' mean range times a normal range's 95% point over its
mean at the units' effective number (``mean_range_spread``) and ``half_pair`` the pooled range with each unit's
margin pair half lost in every replicate (``half_pair_spread``), candidates for the pooled range's residuals
(2026-12-05, not adopted). ``--seed`` draws other ties (each cell's seed moved by 1,000 x it). Beside the rates:
``boot/true`` and ``delong/true``, the first and last units' AUC difference's variance by each over its variance over
the ties; ``spread_q95``, the 95% point of the tie's spread over the ties (the limit a rule that knew the truth would
draw), ``boot_limit_mean`` and ``corr_spread_limit``, the ``boot`` limit's mean and its correlation with the spread
over the ties.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from scipy.special import logit  # noqa: E402
from scipy.stats import norm  # noqa: E402

from downpour.analysis.choice import ALIKE, auc_scores, chance_spread  # noqa: E402
from downpour.analysis.controls import TIE_REPLICATES, bootstrap_weights, comparisons, ranked_aucs  # noqa: E402
from _tie_rules import asin_scale, half_pair_spread, margin_half_pair, mean_range_spread, own_range_spread  # noqa: E402


def delong_cov(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """(T, T) DeLong covariance of T units' AUCs from (T, p) / (T, q) scores."""
    h = comparisons(pos, neg)                                   # (T, p, q)
    v10, v01 = h.mean(axis=2), h.mean(axis=1)                   # (T, p), (T, q)
    return np.atleast_2d(np.cov(v10)) / pos.shape[1] + np.atleast_2d(np.cov(v01)) / neg.shape[1]


def delong_limit(cov: np.ndarray, rng: np.random.Generator, draws: int = 4000) -> float:
    t = len(cov)
    vals, vecs = np.linalg.eigh(cov)
    z = rng.standard_normal((draws, t)) @ (vecs * np.sqrt(np.clip(vals, 0, None))).T
    return float(np.quantile(np.ptp(z, axis=1), ALIKE))


def cell(auc: float, t: int, n: int, rho: float, delta: float, ties: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n), np.zeros(n)].astype(bool)
    d = np.full(t, np.sqrt(2) * norm.ppf(auc))
    d[0] -= delta
    calls = {"boot": [], "delong": [], "logit": [], "pooled": [], "asin": [], "asin_pooled": [], "mean_range": [],
             "half_pair": []}
    diffs, var_boot, var_dl, ranges, limits = [], [], [], [], []
    eps = 0.5 / (n * n)
    for _ in range(ties):
        common = rng.standard_normal(2 * n)
        v = np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.standard_normal((t, 2 * n)) + d[:, None] * y
        a = auc_scores(v.T, y)
        pos, neg = v[:, y], v[:, ~y]
        w = bootstrap_weights(y, TIE_REPLICATES, rng)
        reps = ranked_aucs(pos, neg, w[:, y], w[:, ~y])
        spread = np.ptp(a)
        ranges.append(spread)
        limits.append(own_range_spread(reps, a))
        calls["boot"].append(spread > limits[-1])
        cov = delong_cov(pos, neg)
        calls["delong"].append(spread > delong_limit(cov, np.random.default_rng(0)))
        la, lr = logit(np.clip(a, eps, 1 - eps)), logit(np.clip(reps, eps, 1 - eps))
        calls["logit"].append(np.ptp(la) > own_range_spread(lr, la))
        calls["pooled"].append(spread > chance_spread(reps, a))
        ga, gr = asin_scale(a, n * n), asin_scale(reps, n * n)
        calls["asin"].append(np.ptp(ga) > own_range_spread(gr, ga))
        calls["asin_pooled"].append(np.ptp(ga) > chance_spread(gr, ga))
        calls["mean_range"].append(spread > mean_range_spread(reps, a))
        calls["half_pair"].append(spread > half_pair_spread(reps, a, margin_half_pair(pos, neg, w[:, y], w[:, ~y])))
        diffs.append(a[0] - a[-1])
        var_boot.append(np.var(reps[0] - reps[-1]))
        var_dl.append(cov[0, 0] + cov[-1, -1] - 2 * cov[0, -1])
    return {"auc": auc, "T": t, "n": f"{n}+{n}", "rho": rho, "delta": delta, "ties": ties,
            **{k: round(float(np.mean(c)), 3) for k, c in calls.items()},
            # the first and last units' difference: its variance by the bootstrap and DeLong over its variance over ties
            "boot/true": round(float(np.mean(var_boot) / np.var(diffs)), 2),
            "delong/true": round(float(np.mean(var_dl) / np.var(diffs)), 2),
            # the bootstrap limit's mean against the spread's own 95% point over the ties, and how the two move together
            "spread_q95": round(float(np.quantile(ranges, ALIKE)), 4),
            "boot_limit_mean": round(float(np.mean(limits)), 4),
            "corr_spread_limit": round(float(np.corrcoef(ranges, limits)[0, 1]), 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ties", type=int, default=200, help="simulated ties per cell (default: 200)")
    ap.add_argument("--rho", type=float, default=0.5, help="correlation of a tie's units' scores (default: 0.5)")
    ap.add_argument("--delta", type=float, default=0.0, help="the first unit's d lowered by this (default: 0, alike)")
    ap.add_argument("--aucs", default="0.7,0.85,0.97,0.99", help="true AUCs (default: 0.7,0.85,0.97,0.99)")
    ap.add_argument("--sizes", default="2,5,20,50", help="tie sizes T (default: 2,5,20,50)")
    ap.add_argument("--images", default="30,100", help="test faces = test others, per set (default: 30,100)")
    ap.add_argument("--seed", type=int, default=0, help="another draw of every cell's ties (default: 0)")
    args = ap.parse_args(argv)
    seed = 1000 * args.seed    # the cells' seeds are 1, 2, ... (past 1,000 x --seed) in this order: a cell's figures
    #                            depend on those before it
    for n in map(int, args.images.split(",")):
        for auc in map(float, args.aucs.split(",")):
            for t in map(int, args.sizes.split(",")):
                seed += 1
                print(json.dumps(cell(auc, t, n, args.rho, args.delta, args.ties, seed)), flush=True)


if __name__ == "__main__":
    main()
