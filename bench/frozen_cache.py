"""A greedy run's frozen stages from a per-row cache against running them every step.

    .venv/bin/python bench/frozen_cache.py                     # 5 interleaved repetitions, 1 thread
    .venv/bin/python bench/frozen_cache.py --reps 3 --threads 2
    .venv/bin/python bench/frozen_cache.py --reps 1 --steps 4     # a quick check that it runs (the figures mean little)

The main job (cat-demo, greedy) trains stage 1 for half its steps, then stage 2 on frozen stage 1's output;
without a cache each stage-2 step runs stage 1 on its batch again, though the in-memory data set's 2,180
crops are fixed (no augmentation) and recur every epoch. ``CatNet.frozen_cache``
(downpour/models/frozen.py) keeps each crop's stage-1 output and answers a batch from it once every row is
held. Two rows, each timed against ``frozen_cache = None`` (the old way) in the same run, interleaved
(bench/_protocol.py), as the local runner steps (``train_step`` and Adam at train.lr, batches from the run's
seed), on a freshly initialised main-job network each repetition (the cache starts empty, as in a run), after
an untimed warm-up of 100 steps each way (around the switch to stage 2; fewer under ``--steps``, the schedule's
length, default the main job's):

- ``stage2``: the stage-2 share of the main job's steps (750 of 1,500) alone;
- ``greedy``: the whole schedule, stage 1 then stage 2.

Each repetition's final weights are checked equal to the baseline's, bit for bit. ``ratio`` (wall) and
``cpu_ratio`` (this process's CPU seconds: the steadier figure on a shared machine) < 1: the cache is faster.
Prints one JSON line per row.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _protocol import at_least, emit, interleave, ratio, reps_and_threads, summary, thread_settings  # noqa: E402
from downpour.config import load_config  # noqa: E402
from downpour.data.pipeline import open_data  # noqa: E402
from downpour.models.registry import build  # noqa: E402
from downpour.train.setup import make_optimizer, stage_for_step  # noqa: E402
from downpour.train.step import train_step  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    parser = reps_and_threads(__doc__.split("\n")[0])
    parser.add_argument("--steps", type=at_least(2), help="the greedy schedule's steps, half of them stage 2's "
                                                           "(at least 2; default: the main job's train.steps)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config("main")
    data = open_data(cfg.data, cfg.seed)
    total = args.steps or cfg.train.steps
    warm = min(50, total // 2)
    weights: dict[str, dict[str, torch.Tensor]] = {}

    def train(cached: bool, steps: range) -> dict[str, Any]:
        torch.manual_seed(cfg.seed)
        model, objective = build(cfg, data.input_shape)
        if not cached:
            model.frozen_cache = None
        opt = make_optimizer(cfg.train, model.parameters())
        batches = data.batches(cfg.train.batch_size, torch.Generator().manual_seed(cfg.seed + 1))
        t0 = time.perf_counter()
        for step in steps:
            model.set_stage(stage_for_step(step, total, model.n_stages, cfg.train.schedule))
            train_step(model, objective, next(batches))
            opt.step()
        wall = time.perf_counter() - t0
        cache = model.frozen_cache
        weights["cached" if cached else "plain"] = model.state_dict()
        return {"ms_per_step": 1e3 * wall / len(steps),
                **({"hit_batches": cache.hits, "held_mib": round(cache.held / 2 ** 20, 1)} if cache else {})}

    for cached in (True, False):     # untimed: a process's first steps pay one-off costs (rep 0's stage2 read 1.00)
        train(cached, range(total // 2 - warm, total // 2 + warm))
    out = []
    for name, steps in (("stage2", range(total // 2, total)), ("greedy", range(total))):
        def rep(cached: bool, r: int) -> dict[str, Any]:
            figures = train(cached, steps)
            if not cached and not all(torch.equal(v, weights["cached"][k]) for k, v in weights["plain"].items()):
                raise SystemExit(f"{name}: the cached run's weights differ from the plain run's")
            return figures

        reps = interleave({"cached": lambda r: rep(True, r), "plain": lambda r: rep(False, r)}, reps=args.reps)
        row = {"bench": "frozen_cache", "row": name, "steps": len(steps), "crops": len(data),
               **summary(reps, "ms_per_step"), "ratio": ratio(reps, "ms_per_step", "cached", "plain"),
               "cpu_ratio": ratio(reps, "driver_cpu_s", "cached", "plain"),
               "hit_batches": reps[-1]["cached"]["hit_batches"], "held_mib": reps[-1]["cached"]["held_mib"],
               "threads": thread_settings()}
        emit(row, out)
    return out


if __name__ == "__main__":
    main()
