"""The simulator's per-worker torch RNG (downpour/ps/sim_rng.py): a step with its worker's state swapped in and out
against the same step without, in the same run.

    .venv/bin/python bench/sim_rng.py                          # main, 200 steps, 2 workers, 5 repetitions, 1 thread
    .venv/bin/python bench/sim_rng.py --config rbm-digits      # a network that draws (Gibbs samples)

The simulated runner steps each worker inside ``WorkerRngs.drawing(w)``, so that no worker draws on from torch's one
global state (as every worker did before 2026-12-05). Here the preset's network takes ``--steps`` steps as the local
runner does (``train_step`` and the preset's optimiser, the same batches each way), ``--workers`` workers' states
swapped in turn around the steps (``swapped``) or not at all (``plain``), interleaved (bench/_protocol.py); each
repetition starts from the same freshly initialised network. ``ratio``: swapped / plain per step (1.0: the swap costs
nothing you can see beside a step); ``cpu_ratio`` the same of this process's CPU seconds. ``swap_us``: one swap in and
out around an empty block (the median of ``--reps`` means of 2,000), the figure the swap adds to every simulated step
whatever its network, and ``swap_cpu_us`` the same in this process's CPU time (the steadier figure on a shared machine).
One JSON line.
"""
from __future__ import annotations

import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _protocol import at_least_1, emit, interleave, ratio, reps_and_threads, summary, thread_settings  # noqa: E402
from downpour.config import load_config  # noqa: E402
from downpour.data.pipeline import open_data  # noqa: E402
from downpour.models.registry import build  # noqa: E402
from downpour.ps.sim_rng import WorkerRngs  # noqa: E402
from downpour.train.setup import make_optimizer, stage_for_step  # noqa: E402
from downpour.train.step import train_step  # noqa: E402

SWAPS = 2000


def main(argv: list[str] | None = None) -> list[dict]:
    p = reps_and_threads(__doc__.split("\n")[0])
    p.add_argument("--config", default="main", help="preset or file (default: main)")
    p.add_argument("--steps", type=at_least_1, default=200, help="training steps timed per repetition (default 200)")
    p.add_argument("--workers", type=at_least_1, default=2,
                   help="simulated workers whose states take turns (default 2)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    data = open_data(cfg.data, cfg.seed)
    total = cfg.train.steps

    def rngs() -> WorkerRngs:
        return WorkerRngs(torch.get_rng_state(), cfg.seed, args.workers, 0, gpu=False)

    def train(swapped: bool) -> dict[str, Any]:
        torch.manual_seed(cfg.seed)
        model, objective = build(cfg, data.input_shape)
        opt = make_optimizer(cfg.train, model.parameters())
        batches = data.batches(cfg.train.batch_size, torch.Generator().manual_seed(cfg.seed + 1))
        states = rngs()
        t0 = time.perf_counter()
        for step in range(args.steps):
            with states.drawing(step % args.workers) if swapped else nullcontext():
                model.set_stage(stage_for_step(step, total, model.n_stages, cfg.train.schedule))
                train_step(model, objective, next(batches))
                opt.step()
        return {"ms_per_step": 1e3 * (time.perf_counter() - t0) / args.steps}

    def swaps() -> tuple[float, float]:
        states = rngs()
        t0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(SWAPS):
            with states.drawing(i % args.workers):
                pass
        return 1e6 * (time.perf_counter() - t0) / SWAPS, 1e6 * (time.process_time() - cpu0) / SWAPS

    train(True), train(False)       # untimed: a process's first steps pay one-off costs
    swap_us = []
    reps = interleave({"swapped": lambda r: train(True), "plain": lambda r: train(False)}, reps=args.reps,
                      report=lambda r, rep: swap_us.append(swaps()))
    row = {"bench": "sim_rng", "config": args.config, "steps": args.steps, "workers": args.workers,
           **summary(reps, "ms_per_step"), "ratio": ratio(reps, "ms_per_step", "swapped", "plain"),
           "cpu_ratio": ratio(reps, "driver_cpu_s", "swapped", "plain"),
           "swap_us": round(statistics.median(w for w, _ in swap_us), 2),
           "swap_cpu_us": round(statistics.median(c for _, c in swap_us), 2), "threads": thread_settings()}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
