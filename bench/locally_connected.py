"""Speed and memory of the untied LocallyConnected2d against the obvious unfold+einsum layer.

    .venv/bin/python bench/locally_connected.py                 # 16 x 3x64x64, k=9, 8 maps, stride 1, 1 thread
    .venv/bin/python bench/locally_connected.py --size 32 --kernel 5 --maps 16 --batch 32
    .venv/bin/python bench/locally_connected.py --device cuda --batch 32 --size 200 --kernel 18   # on a GPU

One run times forward+backward of (a) our layer, (b) ``locally_connected_reference`` (F.unfold +
einsum, autograd backward) and (c) F.conv2d with the same FLOPs, interleaved, on the same inputs,
after checking that (a) and (b) agree on the output and on both gradients. Prints one JSON line:
``speedup`` = naive / ours wall time (best of ``--reps``), ``speedup_median``, and ``speedup_cpu``
from process CPU time (all threads), which other processes on the machine disturb less.

Threads: every variant runs with ``--threads`` intra-op threads (ours: that many worker threads,
see downpour/layers/_lc_threads.py; naive and conv2d: OpenMP). Other processes on the machine skew
every figure; the JSON records the 1-minute load average, and ``cpu_ms`` (process CPU time) next to
wall time. One thread by default: with 2 on a 2-core machine another job's load fell mostly on the
naive layer's OpenMP threads (naive 29 ms at one thread, 127-362 ms at two: a "speedup" of 12-46 where
one thread measured 4.8).

Peak memory: torch's CPU allocator is malloc, which tracemalloc does not see, so each variant runs
once more in a fresh subprocess that reads the kernel's resident-set high-water mark (VmHWM, reset
through /proc/self/clear_refs just before the measured step; MALLOC_MMAP_THRESHOLD_ makes every
big buffer its own mapping, returned on free). Peak = high-water mark - resident set before the step
+ the tensors that were already resident (weight, input, output gradient). It is compared with
``base`` = weight + input + output and their gradients, the memory any implementation must hold.

``--device cuda``: the same comparison on the GPU (the untied kernel's batched schedule, see
``_lc_kernels``), timed with synchronisation; peak memory is ``torch.cuda.max_memory_allocated``
over one step. The step must move at least the weights twice and their gradient once, and the
input, output and their gradients (``floor_bytes``); ``achieved_gbs`` = floor_bytes / our time
and ``roofline_fraction`` = that / ``--roofline-gbs`` (the device's memory bandwidth; default
4800 GB/s, an H200's HBM3e): an untied layer at a small batch is bound by that traffic, not by
its FLOPs. (Not measured in this repository yet: no session has been lent a GPU.)
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _protocol import at_least_1, load_1min, reps_and_threads, spread  # noqa: E402

from downpour.layers import LocallyConnected2d, locally_connected_reference  # noqa: E402

VARIANTS = ("ours", "naive", "conv2d")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = reps_and_threads(__doc__.split("\n")[0], reps=9)
    p.add_argument("--batch", type=at_least_1, default=16)
    p.add_argument("--channels", type=at_least_1, default=3)
    p.add_argument("--size", type=at_least_1, default=64, help="input height = width")
    p.add_argument("--kernel", type=at_least_1, default=9)
    p.add_argument("--maps", type=at_least_1, default=8)
    p.add_argument("--stride", type=at_least_1, default=1)
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory subprocesses")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--roofline-gbs", type=float, default=4800.0, help="the device's memory bandwidth, GB/s (cuda)")
    p.add_argument("--measure-memory", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: child mode
    return p.parse_args(argv)


def setup(a: argparse.Namespace, seed: int = 0):
    """The layer, an input that needs a gradient, and a fixed output gradient."""
    torch.manual_seed(seed)
    dev = getattr(a, "device", "cpu")
    layer = LocallyConnected2d(a.channels, a.maps, a.size, a.kernel, stride=a.stride).to(dev)
    x = torch.randn(a.batch, a.channels, a.size, a.size, device=dev, requires_grad=True)
    gy = torch.randn(a.batch, a.maps, *layer.out_size, device=dev)
    return layer, x, gy


def _sync(t: torch.Tensor) -> None:
    if t.device.type == "cuda":
        torch.cuda.synchronize()


def step_fn(variant: str, layer: LocallyConnected2d, x: torch.Tensor, gy: torch.Tensor):
    """One forward+backward of a variant; gradients land in .grad."""
    w = layer.weight
    if variant == "conv2d":  # same FLOPs as the untied layer, one shared bank
        w = torch.nn.Parameter(layer.weight[0, 0].detach().clone())
        return lambda: F.conv2d(x, w, stride=layer.stride).backward(gy), (w,)
    if variant == "naive":  # its own contiguous parameter, as the obvious layer would hold it
        w = torch.nn.Parameter(layer.weight.detach().contiguous())
        return lambda: locally_connected_reference(x, w, layer.stride).backward(gy), (w,)
    return lambda: layer(x).backward(gy), (w,)


def clear(x: torch.Tensor, params) -> None:
    x.grad = None
    for p in params:
        p.grad = None


def check_agreement(layer, x, gy) -> dict[str, float]:
    """Max |ours - naive| over output, input gradient and weight gradient (relative to scale)."""
    errs = {}
    outs = {}
    for v in ("ours", "naive"):
        clear(x, (layer.weight,))
        y = layer(x) if v == "ours" else locally_connected_reference(x, layer.weight, layer.stride)
        y.backward(gy)
        outs[v] = (y.detach(), x.grad.clone(), layer.weight.grad.clone())
    for name, a, b in zip(("output", "grad_input", "grad_weight"), outs["ours"], outs["naive"]):
        errs[name] = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max())):
            raise SystemExit(f"bench/locally_connected.py: {name} of ours and naive disagree (rel err {errs[name]:.2e})")
    clear(x, (layer.weight,))
    return errs


def time_variants(a, layer, x, gy) -> dict[str, dict[str, float]]:
    fns = {v: step_fn(v, layer, x, gy) for v in VARIANTS}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for v, (fn, params) in fns.items():  # warm-up
        fn()
        clear(x, params)
    for _ in range(a.reps):
        for v, (fn, params) in fns.items():  # interleaved, so load changes hit all variants alike
            _sync(x)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(x)
            times[v].append((time.perf_counter() - t0) * 1e3)
            cpu[v].append((time.process_time() - c0) * 1e3)   # all threads' CPU time: less load-sensitive
            clear(x, params)
    out: dict[str, Any] = {v: {"min": min(t), "median": statistics.median(t), "cpu": min(cpu[v])} for v, t in times.items()}
    out["paired"] = spread([n / o for n, o in zip(times["naive"], times["ours"])])   # per-repetition naive/ours
    return out


def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def measure_memory_child(a: argparse.Namespace) -> None:
    """Child mode: one variant's peak memory for one forward+backward, printed as JSON."""
    layer, x, gy = setup(a)
    fn, params = step_fn(a.measure_memory, layer, x, gy)
    fn()                      # warm-up: thread pools, MKL buffers
    clear(x, params)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    fn()
    peak_extra = (_rss_kib("VmHWM") - before) * 1024
    resident = sum(t.numel() * t.element_size() for t in (*params, x, gy))
    print(json.dumps({"peak_bytes": peak_extra + resident}))


def measure_memory(a: argparse.Namespace, variant: str) -> int:
    cmd = [sys.executable, __file__, "--measure-memory", variant, "--batch", str(a.batch), "--channels", str(a.channels),
           "--size", str(a.size), "--kernel", str(a.kernel), "--maps", str(a.maps), "--stride", str(a.stride),
           "--threads", str(a.threads)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"bench/locally_connected.py: --device cuda, but torch {torch.__version__} sees no GPU")
    torch.set_num_threads(a.threads)
    if a.measure_memory:
        measure_memory_child(a)
        return
    layer, x, gy = setup(a)
    errs = check_agreement(layer, x, gy)
    load_before = load_1min()
    ms = time_variants(a, layer, x, gy)
    paired = ms.pop("paired")
    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    base = 2 * (nbytes(layer.weight) + nbytes(x) + nbytes(gy))  # weight, input, output + their grads
    result = {
        "bench": "locally_connected",
        "shape": {"batch": a.batch, "channels": a.channels, "size": a.size, "kernel": a.kernel, "maps": a.maps,
                  "stride": a.stride, "out": list(layer.out_size)},
        "threads": a.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load_avg_1min": round(os.getloadavg()[0], 2),   # other processes on the machine skew every figure
        "load_1min": [load_before, load_1min()],           # before and after the timed repetitions (bench/_protocol.py)
        "ours_ms": round(ms["ours"]["min"], 2),
        "naive_ms": round(ms["naive"]["min"], 2),
        "conv2d_ms": round(ms["conv2d"]["min"], 2),
        "median_ms": {v: round(m["median"], 2) for v, m in ms.items()},
        "speedup": round(ms["naive"]["min"] / ms["ours"]["min"], 2),
        "speedup_median": round(ms["naive"]["median"] / ms["ours"]["median"], 2),
        "speedup_paired": paired,          # median and range of the back-to-back ratios
        "vs_conv2d": round(ms["ours"]["min"] / ms["conv2d"]["min"], 2),
        "cpu_ms": {v: round(m["cpu"], 2) for v, m in ms.items()},
        "speedup_cpu": round(ms["naive"]["cpu"] / ms["ours"]["cpu"], 2),
        "base_mem_mb": round(base / 2**20, 2),
        "rel_err": {k: float(f"{v:.2e}") for k, v in errs.items()},
    }
    if a.device == "cuda":
        floor = 3 * nbytes(layer.weight) + 3 * nbytes(x) + 3 * nbytes(gy)   # w twice + dw; x twice + dx; dy twice + y
        gbs = floor / (ms["ours"]["min"] / 1e3) / 1e9
        torch.cuda.reset_peak_memory_stats()
        step_fn("ours", layer, x, gy)[0]()
        result.update(device=torch.cuda.get_device_name(), floor_bytes=floor, achieved_gbs=round(gbs, 1),
                      roofline_gbs=a.roofline_gbs, roofline_fraction=round(gbs / a.roofline_gbs, 3),
                      peak_mem_mb={"ours": round(torch.cuda.max_memory_allocated() / 2**20, 2)})
    elif not a.no_memory:
        peaks = {v: measure_memory(a, v) for v in ("ours", "naive")}
        result["peak_mem_mb"] = {v: round(p / 2**20, 2) for v, p in peaks.items()}
        result["peak_mem_ratio"] = round(peaks["ours"] / base, 3)
        result["naive_peak_mem_ratio"] = round(peaks["naive"] / base, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
