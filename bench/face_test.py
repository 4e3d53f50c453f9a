"""The face test's inner loop: the ROC AUC of every unit (``choice.auc_scores``; in ``selectivity`` until
2026-12-04), on the shapes the analysis asks for, against the ranking it replaces (Mann-Whitney from ``scipy.stats.rankdata``,
ties averaged), whichever path ``auc_scores`` takes for the shape. Its AUCs are checked equal to the
ranking's bit for bit (both count the same half-integers), and to scikit-learn's ``roc_auc_score``
column by column (to 1e-12), before anything is timed; scikit-learn is not timed (two seconds for
512 columns: a loop of Python calls, not a baseline anyone would use here).

    .venv/bin/python bench/face_test.py                 # the shapes below, best of 7 rounds
    .venv/bin/python bench/face_test.py --reps 15

Shapes: a 30-image selection split (15 faces) of the main job's 512 ``stage2/codes`` units, which
the analysis scores for each of its 50 splits; the 140 lfw training images the face choice reads
(70 faces) over 512 units; and 200 images over 2,000 random filters (the random-filter baseline),
past the pairwise path's size limit, where ``auc_scores`` ranks. Prints one JSON line per shape:
``vs_rank`` = ours / the ranking's (below 1: ours is faster; 1.0 where ours ranks too).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy.stats import rankdata  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from _protocol import load_1min, reps_and_threads  # noqa: E402
from downpour.analysis.choice import PAIRWISE_LIMIT, auc_scores  # noqa: E402

SHAPES = {"selection split (30 x 512)": (30, 15, 512), "lfw training (140 x 512)": (140, 70, 512),
          "random filters (200 x 2000)": (200, 100, 2000)}


def by_rank(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney from ranks: the path ``auc_scores`` takes above its size limit, for every shape."""
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    ranks = rankdata(scores, axis=0)
    return (ranks[y].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def by_sklearn(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([roc_auc_score(y, scores[:, u]) for u in range(scores.shape[1])])


def best_ms(fn: Callable[[], object], reps: int) -> float:
    """Best of ``reps`` calls, in ms (at least 20 ms of calls each, for the small shapes)."""
    best = float("inf")
    for _ in range(reps):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            if time.perf_counter() - start > 0.02:
                break
        best = min(best, (time.perf_counter() - start) / n * 1e3)
    return best


def main(argv: list[str] | None = None) -> None:
    args = reps_and_threads(__doc__.splitlines()[0], threads=None, reps=7).parse_args(argv)   # numpy: no torch threads
    rng = np.random.default_rng(0)
    for name, (n, pos, units) in SHAPES.items():
        y = np.zeros(n, bool)
        y[:pos] = True
        scores = rng.standard_normal((n, units)).round(2)       # rounded: ties, which every variant must average
        ours = auc_scores(scores, y)
        if not np.array_equal(ours, by_rank(scores, y)):
            raise SystemExit(f"{name}: auc_scores differs from the ranking's AUCs")
        if not np.allclose(ours, by_sklearn(scores, y), rtol=0, atol=1e-12):
            raise SystemExit(f"{name}: auc_scores differs from scikit-learn's AUCs")
        load = load_1min()
        ms = {label: best_ms(fn, args.reps) for label, fn in (("ours", lambda: auc_scores(scores, y)),
                                                               ("rank", lambda: by_rank(scores, y)))}
        path = "pairs" if pos * (n - pos) * units <= PAIRWISE_LIMIT else "ranks"
        print(json.dumps({"bench": "face_test", "shape": name, "path": path,
                          "ms": {k: round(v, 3) for k, v in ms.items()}, "vs_rank": round(ms["ours"] / ms["rank"], 3),
                          "load_1min": [load, load_1min()]}), flush=True)


if __name__ == "__main__":
    main()
