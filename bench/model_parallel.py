"""Model parallelism at K = 1, 2, 4 partitions: time per step, bytes exchanged per step, weights per partition.

    .venv/bin/python bench/model_parallel.py                       # cat-demo untied, batch 32, 32x32
    .venv/bin/python bench/model_parallel.py --model cat-3stage --batch 8

One training step of one replica (forward, both stages' tied reconstructions, cost, backward) with
its stages split into K blocks (:mod:`downpour.parallel`), computed in this process: the time is
what the block-by-block computation costs against the whole layer (K = 1, the baseline, measured in
the same run, interleaved, median of ``--reps``). The bytes are what K partitions in K processes
would exchange with their replica per step, from the block geometry: forward, each partition
receives its input window and sends its codes block and its window's reconstruction (the tied
decoder of the codes it keeps); backward, it receives the gradients of both (each stage's input is
detached, so no gradient goes back out). ``weights_per_partition``: the largest partition's filters, which should fall ≈ 1/K.
One JSON line per K, with ``time_ratio`` and ``weights_ratio`` against K = 1.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from downpour.batch import Batch  # noqa: E402
from downpour.config import load_config  # noqa: E402
from downpour.models.registry import build, model_entry  # noqa: E402
from downpour.parallel import partition_model  # noqa: E402
from downpour.train.step import train_step  # noqa: E402


def exchanged_bytes(model, batch: int, itemsize: int = 4) -> int:
    """Bytes the partitions of ``model`` send and receive per training step (see module docstring)."""
    total = 0
    for stage in model.stages:
        f = stage.filter
        for b in f.blocks:
            window = batch * f.in_channels * b.in_size[0] * b.in_size[1]
            block = batch * f.maps * b.out_size[0] * b.out_size[1]
            # forward: the window in, the codes block out, the decoder's window reconstruction out (it
            # decodes the codes it keeps); backward: the gradients of that reconstruction and of the
            # codes in (a stage's input is detached: no gradient goes back out)
            total += (3 * window + 2 * block) * itemsize
    return total


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="cat-demo")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config("cat-untied", [f"model.name={args.model}", "model.tile=0"])
    torch.manual_seed(0)
    base, objective = build(cfg, model_entry(args.model).input_shape)   # the shape the model is designed for
    ks = sorted({1, *args.partitions})                # K = 1, the baseline, is always measured
    models = {k: partition_model(copy.deepcopy(base), k) for k in ks}
    x = torch.randn(args.batch, *base.input_shape)
    times: dict[int, list[float]] = {k: [] for k in models}
    for m in models.values():                         # one untimed step each: allocations, first-touch
        train_step(m, objective, Batch(x))
    for _ in range(args.reps):                        # interleaved: a busy moment hits every K alike
        for k, m in models.items():
            t0 = time.perf_counter()
            train_step(m, objective, Batch(x))
            times[k].append(1000 * (time.perf_counter() - t0))
    rows = []
    ref_time = statistics.median(times[1])
    ref_weights = max(sum(p.numel() for p in part.parameters()) * 4 for part in models[1].partitions)
    for k, m in models.items():
        per_part = [sum(p.numel() for p in part.parameters()) * 4 for part in m.partitions]
        row = {"bench": "model_parallel", "model": args.model, "batch": args.batch, "partitions": k,
               "ms_per_step": round(statistics.median(times[k]), 2),
               "ms_range": [round(min(times[k]), 2), round(max(times[k]), 2)],
               "time_ratio": round(statistics.median(times[k]) / ref_time, 3),
               "bytes_exchanged_per_step": exchanged_bytes(m, args.batch),
               "weights_per_partition": max(per_part), "weights_ratio": round(max(per_part) / ref_weights, 3),
               "threads": args.threads, "reps": args.reps}
        print(json.dumps(row))
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
