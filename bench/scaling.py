"""How cost grows toward the paper's shapes: cat stage and network vs input side, parameter-server
round trip vs model size, simulator vs number of workers. One JSON line per point, one ``fit`` per curve.

    taskset -c 1 .venv/bin/python bench/scaling.py                      # every curve (~10 minutes, ~6 GB)
    taskset -c 1 .venv/bin/python bench/scaling.py --curves stage       # one curve
    .venv/bin/python bench/scaling.py --quick                           # small points, no Ray: < 1 min idle, 2.5 beside a job
    .venv/bin/python bench/scaling.py --plot rows.jsonl docs/scaling.png  # the curves of a saved run

Curves (``what``):

- ``stage``: the paper's stage 1 (``downpour.plan.run_config.PAPER``: 3 channels, 18x18 untied fields,
  8 maps, stride 1, 5x5 L2 pooling step 1, 5x5 LCN, untied decoder) as a one-stage CatNet on
  ``side`` x ``side`` inputs, sides 32, 64, 128, 200;
- ``network``: the paper's three stages at the sides where they fit (at 32, stage 2's 18x18 field is
  larger than stage 1's 11x11 pooled output) and where the memory the arithmetic predicts fits
  ``--max-gb`` (at 200: 2.4 billion weights with the decoder, ~20 GB with gradients: a ``skipped`` row);
- ``ps_round_trip``: push a gradient through 2 shard actors and pull the parameters back, the path a
  co-located worker takes (``bench/parameter_server.py``'s ``Ours``, run through its own
  ``median_ms``), model sizes 1 to 256 MB, with a memcpy of the same bytes measured beside it;
- ``simulator``: ``downpour.ps.in_memory.simulate`` of the teacher-student task, 2,000 pushes, 1 to
  1,000 workers; ``ms`` is per push.

Stage and network points time one training step (forward, reconstruction + pooled-L2 cost,
backward; ``downpour.train.step.train_step``) at ``--batch`` (default 1: the batch the paper's stage
fits here at 200x200), best of ``--steps`` after a warm-up; ``ms`` is per example. Beside each point
``expected_gflop`` (training FLOPs per example) and ``expected_mb`` (weights + their gradients +
activations kept for backward, float32) come from the plan's analytic counts
(``downpour.plan.network.network_of``), and each ``fit`` row gives the measured exponent of time
and memory against the input area (or model size, or workers) beside the exponent of that arithmetic.

Same-run baselines beside each stage and network point: ``gemm_ms``, a dense float32 GEMM with the
point's training FLOPs per example (``vs_gemm`` = ms / gemm_ms: how far from compute-bound the step
runs), and ``copy_ms``, three copies of the weights' bytes, the weight traffic of a step at batch 1
(``vs_copy`` = ms x batch / copy_ms, the step's time over it: near 1, a step bound by moving its weights). Both are measured right after
the point, so they carry the same machine's load.

Peak memory (``peak_mb``): torch's CPU allocator is malloc, which tracemalloc does not see, so it is
the process's resident-set high-water mark over the point (model built, warm-up and timed steps)
minus the resident set just before it, after ``malloc_trim`` returned freed memory (VmHWM reset
through /proc/self/clear_refs). For the round trip it is the driver's side only (the gradient and
the pulled parameters); the shard actors hold their slices in other processes. Each stage, network
and simulator curve first runs its first point that measures (not a skipped one) once, unreported:
the process's one-time allocations (torch's and numpy's work buffers, the simulator's imports)
otherwise land in that point's peak.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from downpour.batch import Batch  # noqa: E402
from downpour.config import ConfigError, config_from_dict, load_config  # noqa: E402
from downpour.models.registry import resolve  # noqa: E402
from downpour.plan.network import network_of  # noqa: E402
from downpour.plan.run_config import PAPER  # noqa: E402
from downpour.ps.in_memory import simulate  # noqa: E402
from _protocol import at_least_1, emit, reps_and_threads  # noqa: E402
from downpour.ps.setup import build_replica  # noqa: E402
from downpour.train.step import train_step  # noqa: E402

CURVES = ("stage", "network", "ps_round_trip", "simulator")
FULL = {"stage": (32, 64, 128, 200), "network": (32, 64, 128, 200), "ps_round_trip": (1, 4, 16, 64, 256),
        "simulator": (1, 10, 100, 1000)}
QUICK = {"stage": (32, 40, 48), "network": (64, 68), "ps_round_trip": (1, 4), "simulator": (1, 10, 30)}
AXIS = {"stage": "side", "network": "side", "ps_round_trip": "size_mb", "simulator": "workers"}


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


class PeakMemory:
    """Resident-set growth over a block: VmHWM at the end minus VmRSS at the start, in MB (None
    where /proc/self/clear_refs cannot reset the high-water mark)."""

    def __enter__(self) -> "PeakMemory":
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.before = _status_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.ok = True
        except OSError:
            self.ok = False
        self.mb: float | None = None
        return self

    def __exit__(self, *exc) -> None:
        if self.ok:
            self.mb = round((_status_kib("VmHWM") - self.before) / 1024, 1)


def cat_config(stages: int, batch: int = 1):
    """The paper's cat network (its first ``stages`` stages) as a resolved run config, trained on ``batch`` examples
    a step (the plan divides a step's once-a-step work, normalising the filters, by it: at batch 1 the network's
    24.44 GFLOP per example, at 100 12.39)."""
    model = {key: (value[:stages] if isinstance(value, list) else value) for key, value in PAPER.items()}
    return resolve(config_from_dict({"model": model, "train": {"batch_size": batch}}))


def cat_point(what: str, side: int, batch: int, steps: int, max_gb: float) -> dict[str, Any]:
    cfg = cat_config(1 if what == "stage" else 3, batch)
    shape = (3, side, side)
    row: dict[str, Any] = {"bench": "scaling", "what": what, "side": side, "batch": batch}
    try:
        net = network_of(cfg, shape, paper=True)
    except ConfigError as err:     # the model's own shape checks: a stage's field larger than its input
        return {**row, "skipped": str(err)}
    params = net.params
    expected_mb = 4 * (2 * params + batch * sum(s.act_floats for s in net.stages)) / 2**20
    row.update(params=params, expected_gflop=round(sum(s.flops_fwd_bwd for s in net.stages) / 1e9, 4),
               expected_mb=round(expected_mb, 1))
    if expected_mb > 1024 * max_gb:
        return {**row, "skipped": f"the arithmetic predicts {expected_mb / 1024:.1f} GB, over --max-gb {max_gb:g}"}
    with PeakMemory() as mem:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, objective = build_replica(cfg, shape)
            x = Batch(torch.randn(batch, *shape), torch.zeros(batch, dtype=torch.int64))
        best = math.inf
        for i in range(steps + 1):                    # the first is a warm-up
            t0 = time.perf_counter()
            train_step(model, objective, x)
            if i:
                best = min(best, time.perf_counter() - t0)
    assert sum(p.numel() for p in model.parameters()) == params, "the plan and the built model disagree"
    del model, objective, x
    ms = 1e3 * best / batch
    gemm, copy = gemm_ms(row["expected_gflop"] * 1e9, steps), copy_ms(params, steps)
    return {**row, "ms": round(ms, 2), "peak_mb": mem.mb, "gemm_ms": round(gemm, 3), "vs_gemm": round(ms / gemm, 1),
            "copy_ms": round(copy, 3), "vs_copy": round(ms * batch / copy, 1)}     # a step's time: copy_ms is per step


def _best_ms(fn: Callable[[], Any], reps: int) -> float:
    fn()                                              # warm-up
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def gemm_ms(flops: float, reps: int) -> float:
    """This machine's time for ``flops`` of dense float32 GEMM, now: a square matmul near that size,
    scaled to exactly ``flops``. The step's time over it says how far from compute-bound the step runs."""
    n = max(64, round((flops / 2) ** (1 / 3)))
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    return _best_ms(lambda: torch.mm(a, b, out=out), reps) * flops / (2 * n ** 3)


def copy_ms(params: int, reps: int) -> float:
    """This machine's time to read the weights twice and write their gradient once (the traffic of a
    step whose weights do not fit any cache, its floor at batch 1), as three float32 copies of
    ``params`` numbers' worth: one read and one write each, so an upper bound of that floor."""
    src, dst = torch.ones(params), torch.empty(params)
    return _best_ms(lambda: [dst.copy_(src) for _ in range(3)], reps)


def ps_points(sizes: tuple[float, ...], repeats: int) -> Iterator[dict[str, Any]]:
    import ray
    from parameter_server import Ours, median_ms, start_ray  # bench/parameter_server.py: its round trip, its Ray

    start_ray()
    try:
        for size in sizes:
            n = int(size * 2**20) // 4
            with PeakMemory() as mem:
                g = np.random.default_rng(0).standard_normal(n).astype(np.float32)
                ours = Ours(n, 2, True, f"scaling{size:g}")
                try:
                    ms = median_ms(lambda: ours.round_trip(g), repeats)
                finally:
                    ours.close()
            a, b = np.empty_like(g), np.ones_like(g)
            memcpy = median_ms(lambda: (np.copyto(a, g), np.copyto(b, g)), repeats)   # push's + pull's bytes
            yield {"bench": "scaling", "what": "ps_round_trip", "size_mb": size, "ms": round(ms, 3), "peak_mb": mem.mb,
                   "memcpy_ms": round(memcpy, 3), "vs_memcpy": round(memcpy / ms, 3), "expected_mb_moved": 2 * size}
    finally:
        ray.shutdown()


def simulator_point(workers: int, pushes: int) -> dict[str, Any]:
    # lr 0.001: the preset's 0.25 diverges within 2,000 stale pushes (NaN from push ~250 with one worker),
    # and a diverged worker's pushes carry no gradient (rejected: the shard's version stands still), so
    # the point would time NaN steps and report the staleness of the few pushes applied
    cfg = resolve(load_config("teacher-student", [("train.steps", pushes), ("cluster.workers", workers),
                                                  ("cluster.delay", "constant:2"), ("data.samples", 2000),
                                                  ("train.lr", 0.001)]))
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        sim = simulate(cfg)
        dt = time.perf_counter() - t0
    return {"bench": "scaling", "what": "simulator", "workers": workers, "pushes": sim.pushes,
            "ms": round(1e3 * dt / max(1, sim.pushes), 3), "peak_mb": mem.mb, "mean_staleness": round(sim.mean_staleness, 2)}


def exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two usable points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    return round(float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0]), 3)


def fit_row(what: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if "ms" in r]
    axis = AXIS[what]
    if what in ("stage", "network"):      # against the input area
        xs = [r["side"] ** 2 for r in done]
        expected = {"expected_exponent": exponent(xs, [r["expected_gflop"] for r in done]),
                    "expected_memory_exponent": exponent(xs, [r["expected_mb"] for r in done])}
        against = "input area (side²)"
    else:
        xs = [r[axis] for r in done]
        # a round trip moves 2x the model's bytes; a push costs the same whatever the number of workers
        expected = {"expected_exponent": 1.0 if what == "ps_round_trip" else 0.0}
        if what == "ps_round_trip":
            expected["memcpy_exponent"] = exponent(xs, [r["memcpy_ms"] for r in done])
        against = axis
    return {"bench": "scaling", "what": "fit", "curve": what, "against": against, "points": len(done),
            "exponent": exponent(xs, [r["ms"] for r in done]),
            "memory_exponent": exponent(xs, [r["peak_mb"] or 0 for r in done]), **expected}


def curve(what: str, points: tuple, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    if what == "ps_round_trip":
        yield from ps_points(points, args.repeats)
        return
    def point(p: Any) -> dict[str, Any]:
        return (simulator_point(p, args.pushes) if what == "simulator"
                else cat_point(what, p, args.batch, args.steps, args.max_gb))

    # a warm-up, not reported: the curve's first point paid the process's one-time allocations (peak MB 28.8
    # against 0.4 on its repeats, simulator at 1 worker); on the first point that measures (network's 32 is skipped)
    for p in points:
        if "skipped" not in point(p):
            break
    for p in points:
        yield point(p)


def plot(rows_file: str, out: str) -> None:
    """Each measured curve on log-log axes, with the arithmetic's growth drawn through its first point."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(rows_file).read_text().splitlines() if line.strip()]
    # 2 x 2, not 1 x 4 (16 inches wide): shown at a docs page's width its 8-point legends read as 4
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.4))
    for ax, what in zip(axes.ravel(), CURVES):
        done = [r for r in rows if r.get("what") == what and "ms" in r]
        if not done:
            continue
        axis = AXIS[what]
        xs = [r[axis] ** 2 if axis == "side" else r[axis] for r in done]
        ax.loglog(xs, [r["ms"] for r in done], "o-", label="measured")
        if what in ("stage", "network"):
            ref = [done[0]["ms"] * r["expected_gflop"] / done[0]["expected_gflop"] for r in done]
            ax.loglog(xs, ref, "--", label="∝ training FLOPs (plan)")
            ax.set_xlabel("input area (side²)")
        elif what == "ps_round_trip":
            ax.loglog(xs, [r["memcpy_ms"] for r in done], "s--", label="memcpy of the same bytes")
            ax.set_xlabel("model size (MB)")
        else:
            ax.loglog(xs, [done[0]["ms"]] * len(xs), "--", label="constant per push")
            ax.set_xlabel("workers")
        ax.set_title(what + (" (ms per example)" if axis == "side" else " (ms per push)" if what == "simulator"
                             else " (ms)"))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = reps_and_threads(__doc__.split("\n")[0], reps=None)   # each curve has its own counts (--steps, --repeats)
    ap.add_argument("--curves", nargs="+", choices=CURVES, default=None, help="which curves (default: all; "
                    "--quick: all but ps_round_trip, which starts Ray)")
    ap.add_argument("--quick", action="store_true", help="small points of each curve (a smoke test: under a minute on an idle machine, minutes beside other jobs)")
    ap.add_argument("--batch", type=at_least_1, default=1, help="examples per training step (stage, network)")
    ap.add_argument("--steps", type=at_least_1, default=None, help="timed training steps per point (their best; "
                    "default 3, --quick 1)")
    ap.add_argument("--max-gb", type=float, default=8.0, help="skip a cat point whose predicted memory is larger")
    ap.add_argument("--repeats", type=at_least_1, default=None, help="round trips per parameter-server point (their "
                    "median; default 10, --quick 3)")
    ap.add_argument("--pushes", type=at_least_1, default=None, help="pushes per simulator point (default 2000, --quick 200)")
    ap.add_argument("--plot", nargs=2, metavar=("ROWS", "PNG"), help="plot a saved run's rows instead of measuring")
    args = ap.parse_args(argv)
    if args.plot:
        plot(*args.plot)
        return
    # --quick sets the small defaults; a count given beside it is kept (--quick --steps 7 ran 1 step)
    for key, (full, quick) in {"steps": (3, 1), "pushes": (2000, 200), "repeats": (10, 3)}.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    curves = args.curves or [c for c in CURVES if not (args.quick and c == "ps_round_trip")]
    torch.set_num_threads(args.threads)
    print(json.dumps({"bench": "scaling", "what": "machine", "load_avg": os.getloadavg(), "threads": args.threads,
                      "cpus": len(os.sched_getaffinity(0)), "torch": torch.__version__}), flush=True)
    table = QUICK if args.quick else FULL
    for what in curves:
        rows = []
        for row in curve(what, table[what], args):
            emit(row, rows)
        print(json.dumps(fit_row(what, rows)), flush=True)


if __name__ == "__main__":
    main()
