"""Training throughput: samples/s of the Ray runner vs the plain local loop on the same model and batch.

    .venv/bin/python bench/training_throughput.py [--config cat-demo] [--steps 300] [--set KEY=VALUE ...]

Three runs of the same config: ``local`` (the local runner, torch's default threads), ``ray1`` (one Ray
worker, 1 shard) and ``ray2`` (two Ray workers, 2 shards, async). Throughput is read from each
run's metrics.jsonl between the first logged tenth of the run and the end, so start-up (Ray,
actor processes, data) is left out and only steady-state training is compared.

The protocol a shared machine cannot fool (issue 16): the three configurations run interleaved,
``--reps`` times (local, ray1, ray2, local, ray1, ray2, ...), so a busy moment hits all three
alike; each figure is the median with its range, and every repetition records the machine's
1-minute load average before it and the CPU seconds the driver process used (the local loop's
whole run; on Ray the driver's share only: Ray's actors are not this process's children). The ratios are the ratios of the medians, plus the median of the
per-repetition ratios (each from runs made back to back).

One JSON line per repetition (``"rep"``), then one summary line: medians, ranges, load, and
``one_worker_vs_local`` (ray1 / local, target >= 0.95) and ``two_vs_one`` (ray2 / ray1, target >= 1.7
on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
from pathlib import Path

from downpour.config import load_config
from downpour.runners import train
from downpour.train.rundir import RunDir


def steady_samples_per_s(run: RunDir, batch_size: int) -> float:
    rows = run.metrics()
    first, last = rows[len(rows) // 10], rows[-1]
    return (last["step"] - first["step"]) * batch_size / (last["time"] - first["time"])


def _cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def measure(name: str, overrides: list[str], args: argparse.Namespace, root: Path) -> dict:
    cfg = load_config(args.config, [f"train.steps={args.steps}", "train.log_every=5", "train.tensorboard=false",
                                    *args.set, *overrides])
    run = RunDir.create(root / name, cfg)
    load, cpu0 = os.getloadavg()[0], _cpu_seconds()
    train(cfg, run)
    return {"samples_per_s": steady_samples_per_s(run, cfg.train.batch_size), "load_1min": round(load, 2),
            "driver_cpu_s": round(_cpu_seconds() - cpu0, 2)}


CONFIGS = {"local": ["cluster.runner=local"],
           "ray1": ["cluster.runner=ray", "cluster.workers=1", "cluster.shards=1"],
           "ray2": ["cluster.runner=ray", "cluster.workers=2", "cluster.shards=2"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="cat-demo")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions of the three runs")
    args = parser.parse_args()
    reps: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.reps):
            rep = {name: measure(f"{name}-{r}", overrides, args, Path(tmp)) for name, overrides in CONFIGS.items()}
            print(json.dumps({"rep": r, **rep}), flush=True)
            reps.append(rep)
    rates = {name: [rep[name]["samples_per_s"] for rep in reps] for name in CONFIGS}
    med = {name: statistics.median(v) for name, v in rates.items()}
    print(json.dumps({
        "config": args.config, "steps": args.steps, "reps": args.reps, "settings": args.set,
        **{f"{name}_samples_per_s": round(med[name], 1) for name in CONFIGS},
        **{f"{name}_range": [round(min(v), 1), round(max(v), 1)] for name, v in rates.items()},
        "load_1min_range": [min(rep[n]["load_1min"] for rep in reps for n in CONFIGS),
                            max(rep[n]["load_1min"] for rep in reps for n in CONFIGS)],
        "one_worker_vs_local": round(med["ray1"] / med["local"], 3), "two_vs_one": round(med["ray2"] / med["ray1"], 3),
        "one_worker_vs_local_paired": round(statistics.median(r["ray1"]["samples_per_s"] / r["local"]["samples_per_s"]
                                                              for r in reps), 3),
        "two_vs_one_paired": round(statistics.median(r["ray2"]["samples_per_s"] / r["ray1"]["samples_per_s"]
                                                     for r in reps), 3)}))


if __name__ == "__main__":
    main()
