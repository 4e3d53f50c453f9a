"""What ``edges.edge_like`` costs beside the four tests alone, on Gaussian noise filters.

    .venv/bin/python bench/edge_metric.py                    # 20,000 noise filters, 8x8
    .venv/bin/python bench/edge_metric.py --filters 5000 --size 16

``edge_like`` adds to the four tests (``_decide(edge_scores(f))``) the mean's share, which is free, and the
pixel-scale bars: every filter peaking past ``FREQ_MAX`` (half of all noise filters) is demodulated by two carriers.
Three configurations, interleaved ``--reps`` times on the same filters: ``four_tests``; ``edge_like``, which sends
to the FFT only the demodulated filters that pass spread and coherence; ``unfiltered``, the same rule scoring every
demodulated filter in full (the first version). Prints one JSON line: wall and CPU seconds per configuration,
the ratios of CPU seconds to ``four_tests`` (a shared machine's load moves wall time more), and whether
``edge_like`` and ``unfiltered`` decide alike (they must: the cheap tests are two of the four).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from downpour.analysis import edges  # noqa: E402
from _protocol import at_least, at_least_1, interleave, ratio, reps_and_threads, summary  # noqa: E402


def unfiltered(f: np.ndarray) -> np.ndarray:
    """``edge_like`` with every demodulated filter past ``FREQ_MAX`` scored in full, no cheap tests first."""
    s = edges.edge_scores(f)
    y, x = np.mgrid[0:f.shape[1], 0:f.shape[2]]
    near = s["peak_frequency"] > edges.FREQ_MAX
    bars = np.zeros(len(f), dtype=bool)
    for carrier, axis in (((-1.0) ** x, 0.0), ((-1.0) ** y, 90.0)):
        bar = edges.edge_scores(f[near] * carrier)
        gap = np.abs((bar["orientation"] - axis + 90.0) % 180.0 - 90.0)
        bars[near] |= edges._decide(bar, x.size) & (gap <= edges.NYQUIST_ALIGN_DEGREES)
    return (s["mean_share"] <= edges.MEAN_SHARE_MAX) & (edges._decide(s, x.size) | bars)


def main(argv: list[str] | None = None) -> dict:
    p = reps_and_threads(__doc__.split("\n")[0], threads=None, reps=3)
    p.add_argument("--filters", type=at_least_1, default=20000)
    p.add_argument("--size", type=at_least(3), default=8)
    args = p.parse_args(argv)
    f = np.random.default_rng(0).standard_normal((args.filters, args.size, args.size))
    decided: dict[str, np.ndarray] = {}
    rules = {"four_tests": lambda: edges._decide(edges.edge_scores(f), args.size ** 2),
             "edge_like": lambda: edges.edge_like(f), "unfiltered": lambda: unfiltered(f)}

    def run(name):
        def once(_r: int) -> dict:
            decided[name] = rules[name]()
            return {"edge_fraction": float(decided[name].mean())}
        return once

    reps = interleave({name: run(name) for name in rules}, args.reps)
    row = {"filters": args.filters, "size": args.size, **summary(reps, "wall_s"),
           "edge_like_vs_four_tests": ratio(reps, "driver_cpu_s", "edge_like", "four_tests"),
           "unfiltered_vs_four_tests": ratio(reps, "driver_cpu_s", "unfiltered", "four_tests"),
           "same_decisions": bool(np.array_equal(decided["edge_like"], decided["unfiltered"]))}
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    main()
