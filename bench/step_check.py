"""What the gradient check costs a training step: ``train_step`` (forward, cost, backward, then one
finiteness test over every gradient) against the same step without the test.

    .venv/bin/python bench/step_check.py                       # the main job's network and ufldl-sae, batch 32
    .venv/bin/python bench/step_check.py --config cat-untied --batch 64

A finite cost can have a non-finite gradient (the square root of an exactly zero pooled energy with
eps = 0), or one whose square overflows the optimiser's state; ``train_step`` refuses that step as it
refuses a non-finite cost, testing each gradient's squared norm (``downpour.train.finite.applicable``,
the shards' test: one ``vector_norm`` per parameter tensor; a fused ``_foreach_norm`` cost 3x as much
as a sum on a small model). Both variants run interleaved on the same batch, median of
``--reps`` blocks of 10 steps. Prints one JSON line per config: ``ratio`` = checked / plain (1.0 = free).
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

from downpour.batch import Batch  # noqa: E402
from downpour.config import ConfigError, load_config  # noqa: E402
from _protocol import at_least_1, reps_and_threads  # noqa: E402
from downpour.data.build import sample_shape  # noqa: E402
from downpour.models.registry import build  # noqa: E402
from downpour.train.step import train_step  # noqa: E402


def plain_step(model, objective, batch: Batch) -> None:
    """``train_step`` without the gradient check (the same forward, cost, item() calls and backward)."""
    model.train()
    model.zero_grad(set_to_none=True)
    total, parts = objective(model.forward_train(batch))
    total.item(), {name: v.item() for name, v in parts.items()}
    total.backward()


def measure(config: str, batch: int, reps: int) -> dict:
    cfg = load_config(config)
    shape = sample_shape(cfg.data)                                      # what the preset's data gives the model
    model, objective = build(cfg, shape)
    b = Batch(torch.randn(batch, *shape))
    times: dict[str, list[float]] = {"plain": [], "checked": []}
    for fn in (plain_step, train_step):                                  # warm-up
        fn(model, objective, b)
    for _ in range(reps):
        for label, fn in (("plain", plain_step), ("checked", train_step)):
            t0 = time.perf_counter()
            for _ in range(10):
                fn(model, objective, b)
            times[label].append(100 * (time.perf_counter() - t0))    # ms per step
    median = {k: statistics.median(v) for k, v in times.items()}
    return {"bench": "step_check", "config": config, "batch": batch,
            "params": sum(p.numel() for p in model.parameters()),
            "plain_ms": round(median["plain"], 3), "checked_ms": round(median["checked"], 3),
            "ratio": round(median["checked"] / median["plain"], 3), "load_1min": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> list[dict]:
    p = reps_and_threads(__doc__.split("\n")[0], reps=9)
    p.add_argument("--config", action="append", help="preset(s) (default: main and ufldl-sae)")
    p.add_argument("--batch", type=at_least_1, default=32)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        out = [measure(c, args.batch, args.reps) for c in args.config or ["main", "ufldl-sae"]]
    except ConfigError as err:     # an unknown preset, a config that does not build
        p.error(str(err))
    for row in out:
        print(json.dumps(row))
    return out


if __name__ == "__main__":
    main()
