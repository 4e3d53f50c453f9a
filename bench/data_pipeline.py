"""Streamed data at scale: the driver's and a worker's peak memory as the folder grows, and the images per
second the pipeline delivers vs what cat-demo's training step consumes at the same crop size.

    .venv/bin/python bench/data_pipeline.py [--images 5000 50000] [--workers 2] [--set data.loader_workers=2]

For each size it writes a folder of that many 200x200 RGB JPEGs (smooth random scenes with fine
noise, ~15 KB each; 500 distinct images, each written as every 500th file, in sub-folders of 1,000)
into a temporary directory, removed at the end, then, each in a fresh process (spawned, so every
peak RSS starts from a clean interpreter):

- ``driver``: ``open_data`` with cat-demo's data settings on the folder (``data.pipeline = "stream"``):
  list the files, fit the normalisation and spectral whitening on ``data.fit_sample`` images, cut the
  list into ``--workers`` shards; what it would send each worker is measured as pickled bytes;
- ``worker``: receives shard 0 through a pipe (as a Ray worker receives it), streams one whole pass
  over its files as fast as it can take them (``images_per_s``, after two warm-up batches), then
  times cat-demo's full training step (both stages, Adam, batch 32, 1 torch thread: a Ray worker's
  share of this 2-core machine) on in-memory batches (``train_images_per_s``) and on the stream's
  batches (``streamed_train_images_per_s``). Its peak RSS and its DataLoader processes' peak RSS.
  Also in CPU time, which other jobs on a shared machine disturb less than wall time:
  ``pipeline_cpu_ms`` per image of that pass (the loader processes' and this process's CPU) and
  ``train_cpu_ms`` per image of the training step.
- ``memory`` (smallest size only): the in-memory path, ``build_dataset`` on the same folder, for scale;
- ``npy``: the same number of images already cropped to 32x32, as rows of one memory-mapped ``.npy``
  (``data.source = "array"``): worker 0's pass without any decoding.

The protocol (bench/_protocol.py): ``driver`` and ``memory`` run once per size (they record memory and the
opening's seconds); ``worker`` and ``npy`` run ``--reps`` times interleaved (worker, npy, worker, ...), each in
a fresh process, and their rows give each timed figure (``TIMED``) as the median over the repetitions, with its
range under ``ranges``, the 1-minute load over the runs and ``pipeline_vs_train``: the worker's images/s over
its training step's, per repetition (the two measured back to back in one process), median and range.

One JSON line per role and size, then a summary line: the driver's and the worker's peak RSS growth
from the smallest to the largest size (target <= 1.3) and the pipeline's images/s over the training
step's (the lowest of the sizes' paired medians; target >= 1.5). Record results in docs/benchmarks.md with the command.
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import pickle
import queue
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from _protocol import at_least_1, available_cpus, interleave, reps_and_threads, spread  # noqa: E402

SIDE = 200


DISTINCT = 500
# the figures a repeated role's row gives as medians over the repetitions (with their ranges)
TIMED = ("images_per_s", "train_images_per_s", "streamed_train_images_per_s", "pipeline_cpu_ms", "train_cpu_ms")


def _jpeg(i: int) -> bytes:
    """A smooth random scene (7x7 colours upsampled) plus fine noise, as JPEG bytes (quality 90)."""
    from PIL import Image

    rng = np.random.default_rng(i)
    small = Image.fromarray(rng.integers(0, 256, (7, 7, 3), dtype=np.uint8))
    scene = np.asarray(small.resize((SIDE, SIDE), Image.BICUBIC), dtype=np.int16)
    scene = np.clip(scene + rng.integers(-12, 13, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(scene).save(out, format="JPEG", quality=90)
    return out.getvalue()


def make_folder(folder: Path, n: int) -> float:
    """n image files into folder (sub-folders of 1,000, as a real set would be laid out); returns the seconds."""
    t0 = time.perf_counter()
    encoded = [_jpeg(i) for i in range(DISTINCT)]
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir()
        (sub / f"img{i:06d}.jpg").write_bytes(encoded[i % DISTINCT])
    return time.perf_counter() - t0


def _peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def _data_cfg(folder: str, pipeline: str, overrides: list[str]):
    from downpour.config import load_config

    return load_config("cat-demo", ["data.source=folder", f"data.path={folder}", f"data.pipeline={pipeline}",
                                    "train.threads=1", *overrides])


def driver(folder: str, workers: int, overrides: list[str], out: mp.Queue) -> None:
    from downpour.data.pipeline import open_data

    cfg = _data_cfg(folder, "stream", overrides)
    t0 = time.perf_counter()
    data = open_data(cfg.data, cfg.seed)
    shards = [data.shard(w, workers) for w in range(workers)]
    seconds = time.perf_counter() - t0
    sent = [pickle.dumps(s) for s in shards]             # what Ray would ship each worker: bytes
    out.put({"role": "driver", "peak_rss_mb": _peak_mb(), "open_s": round(seconds, 2), "items": len(data),
             "sent_kb_per_worker": round(max(map(len, sent)) / 1024, 1), "fit_items": data.info["fit_sample"]["items"],
             "shard": sent[0]})


def _like_a_ray_worker() -> None:
    """This process was spawned (a clean interpreter for its peak RSS); its DataLoader forks its
    processes, as it does in a Ray worker (a spawned one would re-import torch: ~3 s of CPU)."""
    mp.set_start_method("fork", force=True)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _train_rate(cfg, batches, steps: int) -> tuple[float, float]:
    """(images/s, CPU ms per image) of cat-demo's full step (every stage), Adam, on ``batches``, after 3 warm-up steps."""
    import torch

    from downpour.models.registry import build
    from downpour.train.setup import make_optimizer
    from downpour.train.step import train_step

    model, objective = build(cfg, (1, cfg.data.size, cfg.data.size))
    opt = make_optimizer(cfg.train, model.parameters())
    model.set_stage(None)
    for i in range(steps + 3):
        if i == 3:
            t0, c0 = time.perf_counter(), time.process_time()
        train_step(model, objective, next(batches))
        opt.step()
    images = steps * cfg.train.batch_size
    return images / (time.perf_counter() - t0), 1000 * (time.process_time() - c0) / images


def _pass_rate(shard, b: int) -> tuple[float, float]:
    """(images/s, CPU ms per image) of one pass over ``shard`` taken as fast as it comes, after 2 warm-up batches."""
    import torch

    stream = shard.batches(b, torch.Generator().manual_seed(1))
    next(stream), next(stream)                           # warm-up: the loader's process starts
    loaders = [w.pid for w in getattr(stream._it, "_workers", [])]
    passes = max(1, len(shard) // b - 2)                 # the rest of one pass over this worker's files
    t0, c0, l0 = time.perf_counter(), time.process_time(), sum(map(_cpu_s, loaders))
    for _ in range(passes):
        next(stream)
    rate = passes * b / (time.perf_counter() - t0)
    # the loader keeps data.prefetch items ahead at both ends, so its CPU over the pass is the pass's
    cpu = time.process_time() - c0 + sum(map(_cpu_s, loaders)) - l0
    stream.close()                                       # joins the loader's processes: their peak RSS counts
    return rate, 1000 * cpu / (passes * b)


def npy_worker(path: str, workers: int, overrides: list[str], out: mp.Queue) -> None:
    """The same images already cropped, as rows of a memory-mapped .npy (uint8 (N, 1, 32, 32)): no decoding."""
    import torch

    from downpour.data.pipeline import open_data

    _like_a_ray_worker()
    torch.set_num_threads(1)
    cfg = _data_cfg(path, "stream", ["data.source=array", *overrides])
    shard = open_data(cfg.data, cfg.seed).shard(0, workers)
    rate, cpu_ms = _pass_rate(shard, cfg.train.batch_size)
    out.put({"role": "npy", "peak_rss_mb": _peak_mb(), "items": len(shard), "images_per_s": round(rate, 1),
             "pipeline_cpu_ms": round(cpu_ms, 3)})


def worker(folder: str, sent: bytes, overrides: list[str], steps: int, out: mp.Queue) -> None:
    import torch

    from downpour.batch import Batch
    from downpour.models.registry import resolve

    _like_a_ray_worker()
    torch.set_num_threads(1)
    shard = pickle.loads(sent)
    cfg = resolve(_data_cfg(folder, "stream", overrides))
    b = cfg.train.batch_size
    load = os.getloadavg()[0]
    rate, cpu_ms = _pass_rate(shard, b)
    fixed = Batch(torch.randn(b, 1, cfg.data.size, cfg.data.size))
    train, train_ms = _train_rate(cfg, iter(lambda: fixed, None), steps)
    stream = shard.batches(b, torch.Generator().manual_seed(2))
    streamed, _ = _train_rate(cfg, stream, steps)
    stream.close()
    out.put({"role": "worker", "peak_rss_mb": _peak_mb(), "loader_peak_rss_mb": _peak_mb(resource.RUSAGE_CHILDREN),
             "items": len(shard), "images_per_s": round(rate, 1), "train_images_per_s": round(train, 1),
             "streamed_train_images_per_s": round(streamed, 1), "pipeline_cpu_ms": round(cpu_ms, 3),
             "train_cpu_ms": round(train_ms, 3), "load_1min": round(load, 2), "loader_workers": cfg.data.loader_workers,
             "prefetch": cfg.data.prefetch})


def memory(folder: str, overrides: list[str], out: mp.Queue) -> None:
    from downpour.data.pipeline import open_data

    cfg = _data_cfg(folder, "memory", overrides)
    t0 = time.perf_counter()
    data = open_data(cfg.data, cfg.seed)
    out.put({"role": "memory", "peak_rss_mb": _peak_mb(), "open_s": round(time.perf_counter() - t0, 2),
             "items": len(data)})


def _in_child(target, *args) -> dict:
    """``target``'s one result, run in a fresh process (its peak memory its own). A child that dies before it
    answers (a bad --set, an empty folder: its traceback above) stops the bench instead of hanging it."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, out))
    p.start()
    while True:
        try:
            result = out.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive() and out.empty():
                raise SystemExit(f"data_pipeline: {target.__name__} failed in its process (exit code {p.exitcode}); "
                                 "its error is printed above")
    p.join()
    return result


def repeated(runs: list[dict]) -> dict:
    """One row for a role run once per repetition (:func:`interleave`'s runs of it): its first run's row with each
    ``TIMED`` figure the median over the runs, their ranges, the load over them and, for the worker, the paired
    ``pipeline_vs_train``."""
    timed = [k for k in TIMED if k in runs[0]]
    loads = [run[k] for run in runs for k in ("load_before", "load_after")]
    row = {k: v for k, v in runs[0].items() if k not in ("load_before", "load_after", "wall_s", "driver_cpu_s")}
    row.update({k: spread([run[k] for run in runs])["median"] for k in timed})
    row.update({"reps": len(runs), "ranges": {k: spread([run[k] for run in runs])["range"] for k in timed},
                "load_1min": spread(loads)})
    if "train_images_per_s" in row:
        row["pipeline_vs_train"] = spread([run["images_per_s"] / run["train_images_per_s"] for run in runs])
    return row


def main(argv: list[str] | None = None) -> None:
    ap = reps_and_threads(__doc__.split("\n")[0], threads=None, reps=3)
    ap.add_argument("--images", type=at_least_1, nargs="+", default=[5000, 50000], help="folder sizes (default 5000 50000)")
    ap.add_argument("--workers", type=at_least_1, default=2, help="shards the driver cuts (default 2)")
    ap.add_argument("--steps", type=at_least_1, default=60, help="training steps timed per measurement (default 60)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides (cat-demo's)")
    args = ap.parse_args(argv)
    lines = []
    with tempfile.TemporaryDirectory(prefix="downpour-bench-data-") as tmp:
        for n in sorted(args.images):
            folder = Path(tmp) / f"images-{n}"
            folder.mkdir()
            made = make_folder(folder, n)
            base = {"bench": "data_pipeline", "images": n, "images_per_s": None, "train_images_per_s": None}
            d = _in_child(driver, str(folder), args.workers, args.set)
            shard = d.pop("shard")
            lines.append({**base, **d, "generate_s": round(made, 1)})
            if n == min(args.images):
                lines.append({**base, **_in_child(memory, str(folder), args.set)})
            rows = Path(tmp) / f"crops-{n}.npy"
            np.save(rows, np.random.default_rng(0).integers(0, 256, (n, 1, 32, 32), dtype=np.uint8))
            reps = interleave({"worker": lambda r: _in_child(worker, str(folder), shard, args.set, args.steps),
                               "npy": lambda r: _in_child(npy_worker, str(rows), args.workers, args.set)}, args.reps)
            lines += [{**base, **repeated([rep[role] for rep in reps])} for role in ("worker", "npy")]
            shutil.rmtree(folder)                        # free the disk before the next size
            rows.unlink()
            for line in lines[-4 if n == min(args.images) else -3:]:
                print(json.dumps(line), flush=True)
    small, large = min(args.images), max(args.images)
    pick = {(ln["role"], ln["images"]): ln for ln in lines}
    workers = [ln for ln in lines if ln["role"] == "worker"]
    summary = {"bench": "data_pipeline", "role": "summary", "images": sorted(args.images),
               "driver_rss_growth": round(pick["driver", large]["peak_rss_mb"] / pick["driver", small]["peak_rss_mb"], 3),
               "worker_rss_growth": round(pick["worker", large]["peak_rss_mb"] / pick["worker", small]["peak_rss_mb"], 3),
               "loader_rss_growth": round(pick["worker", large]["loader_peak_rss_mb"]
                                          / pick["worker", small]["loader_peak_rss_mb"], 3),
               "pipeline_vs_train": round(min(w["pipeline_vs_train"]["median"] for w in workers), 2),
               "pipeline_vs_train_cpu": round(min(w["train_cpu_ms"] / w["pipeline_cpu_ms"] for w in workers), 2),
               "targets": {"rss_growth": "<= 1.3", "pipeline_vs_train": ">= 1.5"}, "cpus": available_cpus()}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
