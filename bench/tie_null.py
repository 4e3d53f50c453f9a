"""A tie's chance range (``choice.chance_spread``): what one tied set costs the face test, its units'
AUCs over bootstrap replicates by ranks (``controls.ranked_aucs``), against the rule before it (the tied units' test
AUCs, ``controls.tied_aucs``, against as many independent units' range, ``tie_spread_limit`` of bench/_tie_rules.py: a formula) and
against the same replicates by pairs (``controls.weighted_auc`` of ``comparisons``). The ranks' replicate AUCs are
checked equal to the pairs' (to 1e-12) before anything is timed.

    .venv/bin/python bench/tie_null.py                 # the shapes below, best of 7 rounds
    .venv/bin/python bench/tie_null.py --reps 3

Shapes: tied units x (test faces + negatives), with :data:`~downpour.analysis.controls.TIE_REPLICATES` replicates:
2 units on 60 + 60 images; 20, 80 and 137 on 100 + 100 (the largest tie of a main-job run's face test, 137 units).
Prints one JSON line per shape: ``vs_old`` = the new rule / the old one per tie (both scoring the tied units' test
AUCs), ``ranks_vs_pairs`` = ranks / pairs for the replicates.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from _protocol import load_1min, reps_and_threads  # noqa: E402
from face_test import best_ms  # noqa: E402
from _tie_rules import tie_spread_limit  # noqa: E402
from downpour.analysis.choice import chance_spread  # noqa: E402
from downpour.analysis.controls import (TIE_REPLICATES, bootstrap_weights, comparisons, ranked_aucs,  # noqa: E402
                                        tied_aucs, weighted_auc)

SHAPES = {"2 units, 60 + 60": (2, 60, 60), "20 units, 100 + 100": (20, 100, 100),
          "80 units, 100 + 100": (80, 100, 100), "137 units, 100 + 100": (137, 100, 100)}


def main(argv: list[str] | None = None) -> None:
    args = reps_and_threads(__doc__.splitlines()[0], threads=None, reps=7).parse_args(argv)
    rng = np.random.default_rng(0)
    for name, (t, p, q) in SHAPES.items():
        y = np.r_[np.ones(p), np.zeros(q)].astype(bool)
        scores = (rng.standard_normal(p + q)[:, None] + 0.3 * rng.standard_normal((p + q, t)) + y[:, None]).round(2)
        units, signs, faces, rows = np.arange(t), np.ones(t), np.flatnonzero(y), np.flatnonzero(~y)
        w = bootstrap_weights(y, TIE_REPLICATES, rng)
        pos, neg = scores[faces].T, scores[rows].T
        if not np.allclose(ranked_aucs(pos, neg, w[:, y], w[:, ~y]),
                           weighted_auc(comparisons(pos, neg), w[:, y], w[:, ~y]), rtol=0, atol=1e-12):
            raise SystemExit(f"{name}: ranked_aucs differs from the pairs' replicate AUCs")

        def old() -> bool:
            return bool(np.ptp(tied_aucs(scores, units, signs, faces, rows)) > tie_spread_limit(t, 0.1))

        def new() -> bool:
            a = tied_aucs(scores, units, signs, faces, rows)
            return bool(np.ptp(a) > chance_spread(ranked_aucs(pos, neg, w[:, y], w[:, ~y]), a))

        load = load_1min()
        ms = {label: best_ms(fn, args.reps) for label, fn in (
            ("old", old), ("new", new), ("ranks", lambda: ranked_aucs(pos, neg, w[:, y], w[:, ~y])),
            ("pairs", lambda: weighted_auc(comparisons(pos, neg), w[:, y], w[:, ~y])))}
        print(json.dumps({"bench": "tie_null", "shape": name, "replicates": TIE_REPLICATES,
                          "ms": {k: round(v, 2) for k, v in ms.items()}, "vs_old": round(ms["new"] / ms["old"], 1),
                          "ranks_vs_pairs": round(ms["ranks"] / ms["pairs"], 2),
                          "load_1min": [load, load_1min()]}), flush=True)


if __name__ == "__main__":
    main()
