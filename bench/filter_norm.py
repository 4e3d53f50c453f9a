"""What a fixed filter norm costs a training step: LocallyConnected2d(norm=r) against norm=None.

    .venv/bin/python bench/filter_norm.py                    # cat-demo stage 1: 32 x 1x32x32, k=8, 8 maps
    .venv/bin/python bench/filter_norm.py --tile 0           # the same, fully untied (cat-untied)

The cat stages use every filter at a fixed L2 norm (``model.filter_norm``): each forward computes
r·V/‖V‖ from the parameter V, and autograd carries the gradient back through it. One step here is
what a cat stage does per batch: forward, the tied reconstruction WᵀWx (``adjoint``), a squared
error, backward. Both variants run interleaved on the same inputs, best and median of ``--reps``.
Prints one JSON line: ``ratio`` = normalised / plain wall time, best of each (1.0 = free);
``ratio_median`` the ratio of the two medians; ``ratio_paired`` the median of the back-to-back
per-repetition ratios.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from downpour.layers import LocallyConnected2d  # noqa: E402
from _protocol import at_least_1, reps_and_threads  # noqa: E402


def step(layer: LocallyConnected2d, x: torch.Tensor) -> float:
    """One stage-like step (forward, tied reconstruction, backward), as a cat stage runs it (the
    filters normalised once, shared by both); returns its wall time in ms."""
    layer.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    w = layer.effective_weight()                      # the parameter itself when norm is None
    loss = 0.5 * (layer.adjoint(layer(x, w), w) - x).pow(2).sum()
    loss.backward()
    return 1000 * (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    p = reps_and_threads(__doc__.split("\n")[0], reps=30)
    p.add_argument("--batch", type=at_least_1, default=32)
    p.add_argument("--size", type=at_least_1, default=32)
    p.add_argument("--kernel", type=at_least_1, default=8)
    p.add_argument("--maps", type=at_least_1, default=8)
    p.add_argument("--tile", type=int, default=2, help="0 = untied")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tile = args.tile or None
    try:
        plain = LocallyConnected2d(1, args.maps, args.size, args.kernel, tile=tile)
        normed = LocallyConnected2d(1, args.maps, args.size, args.kernel, tile=tile, norm=(1 / args.maps) ** 0.5)
    except ValueError as err:      # a kernel larger than the image, a tile that does not divide it
        p.error(str(err))
    with torch.no_grad():
        normed.weight.copy_(plain.weight)
    x = torch.randn(args.batch, 1, args.size, args.size)
    times: dict[str, list[float]] = {"plain": [], "normed": []}
    for _ in range(3):                                   # warm-up
        step(plain, x), step(normed, x)
    for _ in range(args.reps):
        times["plain"].append(step(plain, x))
        times["normed"].append(step(normed, x))
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {"bench": "filter_norm", "shape": f"{args.batch}x1x{args.size}x{args.size}", "kernel": args.kernel,
              "maps": args.maps, "tile": args.tile, "threads": args.threads,
              "plain_ms": round(best["plain"], 3), "normed_ms": round(best["normed"], 3),
              "ratio": round(best["normed"] / best["plain"], 3),
              "ratio_median": round(median["normed"] / median["plain"], 3),    # the ratio of the medians
              "ratio_paired": round(statistics.median(n / p for n, p in zip(times["normed"], times["plain"])), 3),
              "load_1min": round(os.getloadavg()[0], 2)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
