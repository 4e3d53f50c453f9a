"""Training throughput: samples/s of the Ray runner vs the plain local loop on the same model and batch.

    .venv/bin/python bench/training_throughput.py [--config cat-demo] [--steps 300] [--set KEY=VALUE ...]

Three runs of the same config: ``local`` (the local runner, torch's default threads), ``ray1`` (one Ray
worker, 1 shard) and ``ray2`` (two Ray workers, 2 shards, async). Throughput is read from each
run's metrics.jsonl between the first logged tenth of the run and the end, so start-up (Ray,
actor processes, data) is left out and only steady-state training is compared.

One JSON line: the three samples/s figures, ``one_worker_vs_local`` (ray1 / local, target >= 0.95)
and ``two_vs_one`` (ray2 / ray1, target >= 1.7 on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from downpour.config import load_config
from downpour.runners import train
from downpour.train.rundir import RunDir


def steady_samples_per_s(run: RunDir, batch_size: int) -> float:
    rows = run.metrics()
    first, last = rows[len(rows) // 10], rows[-1]
    return (last["step"] - first["step"]) * batch_size / (last["time"] - first["time"])


def measure(name: str, overrides: list[str], args: argparse.Namespace, root: Path) -> float:
    cfg = load_config(args.config, [f"train.steps={args.steps}", "train.log_every=5", "train.tensorboard=false",
                                    *args.set, *overrides])
    run = RunDir.create(root / name, cfg)
    train(cfg, run)
    return steady_samples_per_s(run, cfg.train.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="cat-demo")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        local = measure("local", ["cluster.runner=local"], args, root)
        ray1 = measure("ray1", ["cluster.runner=ray", "cluster.workers=1", "cluster.shards=1"], args, root)
        ray2 = measure("ray2", ["cluster.runner=ray", "cluster.workers=2", "cluster.shards=2"], args, root)
    print(json.dumps({"config": args.config, "steps": args.steps, "local_samples_per_s": round(local, 1),
                      "ray1_samples_per_s": round(ray1, 1), "ray2_samples_per_s": round(ray2, 1),
                      "one_worker_vs_local": round(ray1 / local, 3), "two_vs_one": round(ray2 / ray1, 3)}))


if __name__ == "__main__":
    main()
