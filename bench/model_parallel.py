"""Model parallelism at K = 1, 2, 4 partitions: time per step, bytes exchanged per step, weights per partition.

    .venv/bin/python bench/model_parallel.py                       # cat-demo untied, batch 32, 32x32
    .venv/bin/python bench/model_parallel.py --model cat-3stage --batch 8
    .venv/bin/python bench/model_parallel.py --tiles 0 1 2 4 --partitions 2   # tiled stages: shared banks

One training step of one replica (forward, both stages' tied reconstructions, cost, backward) with
its stages split into K blocks (:mod:`downpour.parallel`), computed in this process: the time is
what the block-by-block computation costs against the whole layer (K = 1, the baseline, measured in
the same run, interleaved, ``--steps`` steps timed together, median of ``--reps``; ``time_ratio``: the
ratio of the medians and the median of the per-repetition ratios, bench/_protocol.py). Every K's first
step is checked to compute K = 1's loss and gradient norm before anything is timed. The bytes are what K partitions in K processes
would exchange with their replica per step, from the block geometry: forward, each partition
receives its input window and sends its codes block and its window's reconstruction (the tied
decoder of the codes it keeps); backward, it receives the gradients of both (each stage's input is
detached, so no gradient goes back out). ``weights_per_partition``: the largest partition's filters, which should fall ≈ 1/K.
One JSON line per K, with ``time_ratio`` and ``weights_ratio`` against K = 1. ``--tiles``: the stages'
``model.tile`` (0: untied, the default; t: t x t shared banks, which no partition owns: ``weights_ratio``
is then null), one group of K per tile, each against its own K = 1, all interleaved in one run.
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from downpour.batch import Batch  # noqa: E402
from downpour.config import ConfigError, load_config  # noqa: E402
from downpour.models.registry import build, model_entry  # noqa: E402
from downpour.parallel import partition_model  # noqa: E402
from downpour.train.step import train_step  # noqa: E402
from _protocol import at_least_1, emit, interleave, ratio, reps_and_threads, summary  # noqa: E402


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


def same_step(models: dict[int, torch.nn.Module], objective, x: torch.Tensor) -> dict[int, float]:
    """One step of every K on ``x``: the loss and the gradients' squared norm must equal K = 1's (the blocks
    partition the same weights), or the bench stops; returns each K's loss."""
    figures = {}
    for k, m in models.items():
        loss = train_step(m, objective, Batch(x)).loss
        grad = sum(float(p.grad.double().square().sum()) for p in m.parameters() if p.grad is not None)
        figures[k] = (loss, grad)
    ref = figures[1]
    for k, (loss, grad) in figures.items():
        if abs(loss - ref[0]) > 1e-4 * abs(ref[0]) or abs(grad - ref[1]) > 1e-3 * abs(ref[1]):
            raise SystemExit(f"model_parallel: K = {k} computes loss {loss:.6g}, |grad|² {grad:.6g} against K = 1's "
                             f"{ref[0]:.6g}, {ref[1]:.6g}: not the same step, nothing to time")
    return {k: loss for k, (loss, _) in figures.items()}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = reps_and_threads(__doc__.split("\n")[0], reps=7)
    parser.add_argument("--model", default="cat-demo")
    parser.add_argument("--batch", type=at_least_1, default=32)
    parser.add_argument("--steps", type=at_least_1, default=5, help="training steps timed together per repetition")
    parser.add_argument("--partitions", type=at_least_1, nargs="+", default=[1, 2, 4])
    parser.add_argument("--tiles", type=int, nargs="+", default=[0], help="model.tile values (0: untied)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ks = sorted({1, *args.partitions})                    # K = 1, the baseline, is always measured
    models, losses, objectives = {}, {}, {}
    x = None
    for tile in args.tiles:
        try:
            cfg = load_config("cat-untied", [f"model.name={args.model}", f"model.tile={tile}"])
            torch.manual_seed(0)
            base, objectives[tile] = build(cfg, model_entry(args.model).input_shape)   # the shape the model is designed for
            group = {k: partition_model(copy.deepcopy(base), k) for k in ks}
        except (ConfigError, ValueError) as err:          # a model or K the partitioner refuses: one line
            parser.error(str(err))
        if x is None:
            x = torch.randn(args.batch, *base.input_shape)
        for k, loss in same_step(group, objectives[tile], x).items():   # also the untimed first step
            models[tile, k], losses[tile, k] = group[k], loss

    def timed(m, objective):
        def run(_rep: int) -> dict[str, float]:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                train_step(m, objective, Batch(x))
            return {"ms_per_step": 1000 * (time.perf_counter() - t0) / args.steps}
        return run

    # interleaved (bench/_protocol.py): a busy moment hits every K alike; ratios paired per repetition
    key = {tk: f"t{tk[0]}k{tk[1]}" for tk in models}
    reps = interleave({key[tk]: timed(m, objectives[tk[0]]) for tk, m in models.items()}, args.reps)
    times = summary(reps, "ms_per_step")
    rows = []
    for (tile, k), m in models.items():
        per_part = [sum(p.numel() for p in part.parameters()) * 4 for part in m.partitions]
        ref_weights = max(sum(p.numel() for p in part.parameters()) * 4 for part in models[tile, 1].partitions)
        t = times["ms_per_step"][key[tile, k]]
        row = {"bench": "model_parallel", "model": args.model, "tile": tile, "batch": args.batch, "partitions": k,
               "ms_per_step": t["median"], "ms_range": t["range"],
               "time_ratio": ratio(reps, "ms_per_step", key[tile, k], key[tile, 1]),
               "loss": round(losses[tile, k], 4), "same_as_k1": True,
               "bytes_exchanged_per_step": exchanged_bytes(m, args.batch), "weights_per_partition": max(per_part),
               "weights_ratio": round(max(per_part) / ref_weights, 3) if ref_weights else None,
               "threads": args.threads, "reps": args.reps, "steps_per_rep": args.steps, "load_1min": times["load_1min"]}
        emit(row, rows)
    return rows


if __name__ == "__main__":
    main()
