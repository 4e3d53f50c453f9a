"""Run the untied kernel's row ranges on worker threads, not on the caller's OpenMP team per op.

The untied kernel issues a few hundred mid-sized ops per step (a copy, a GEMM and a few adds per
chunk of output rows). With torch's usual intra-op parallelism each op is a fork/join of the
OpenMP team; on a machine where other processes hold the cores, every join waits for a descheduled
thread: on our shared 2-core box the median 2-thread step took 1.7-3.2 s, against 45-70 ms on 1. Splitting the output rows
into ``torch.get_num_threads()`` ranges, each processed start to finish by one worker thread (meant to be
single-threaded: see below), needs no synchronisation until the end: it scales on an idle machine
and degrades gracefully on a busy one.

Workers are daemon threads of a per-process pool (recreated after fork). Each sets its own torch
thread count to 1; that call also changes torch's process-wide default for threads not yet
started, so the caller's count is put back right after the pool starts. (As measured on 2026-12-05 the 1 does
not hold: torch sets a thread's count from that default on the thread's first query or op, by then the caller's
again, so a worker computes with the caller's count. Made to hold, by a query before the set, it made 15 of 16
loaded 30-step runs 2.5-70x slower, docs/benchmarks.md#split_threads: left as measured.) Under a Python dispatch mode
(FlopCounterMode, memory accounting) the work stays on the calling thread, which the mode watches.
Tasks run under the caller's grad / inference mode rules: no autograd (the kernels are the inside of autograd
Functions) and inference mode if the caller is in it.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = -1


def _start_pool(n: int) -> ThreadPoolExecutor:
    """A pool of n started workers, each set to 1 torch thread (which does not hold, module docstring); the
    caller's thread settings are kept."""
    caller_threads = torch.get_num_threads()
    ready = threading.Barrier(n + 1)

    def init() -> None:
        torch.set_num_threads(1)  # this worker's OpenMP / MKL setting (and, briefly, torch's default)
        try:
            ready.wait()
        except threading.BrokenBarrierError:   # the caller was stopped: this worker ends at the pool's shutdown
            pass

    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="downpour-lc", initializer=init)
    try:
        for _ in range(n):  # ThreadPoolExecutor starts a thread per submit until max_workers
            pool.submit(lambda: None)
        ready.wait()
    except BaseException:   # Ctrl-C / SIGTERM while they start: free them (they waited forever, the exit on them)
        ready.abort()
        pool.shutdown(wait=False)
        raise
    finally:
        torch.set_num_threads(caller_threads)
    return pool


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size, _pool_pid
    with _lock:
        if _pool is None or _pool_size < n or _pool_pid != os.getpid():
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=True)
            _pool = None   # a start that is stopped leaves no shut-down pool to be handed out
            _pool, _pool_size, _pool_pid = _start_pool(n), n, os.getpid()
        return _pool


def _mode_active() -> bool:
    """Whether the caller runs under a Python dispatch / function mode (FlopCounterMode, memory
    trackers, ...). Modes are per thread, so work on our workers would escape them: run inline."""
    try:
        from torch.utils._python_dispatch import _get_current_dispatch_mode
        dispatch = _get_current_dispatch_mode() is not None
    except ImportError:  # private API; without it, assume no mode
        dispatch = False
    return dispatch or torch._C._is_torch_function_mode_enabled()


def split_rows(n_rows: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges covering 0..n_rows-1 in at most ``parts`` near-equal pieces."""
    parts = max(1, min(parts, n_rows))
    edges = [round(i * n_rows / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def run_parts(fn: Callable[[T], R], parts: Sequence[T]) -> list[R]:
    """[fn(p) for p in parts], on worker threads when torch may use more than one thread, one part too: run
    on the caller's thread, the one row range of a layer too short for two (a model-parallel replica's
    blocks: cat-demo's 12- and 13-row blocks at k = 8) made 30 steps on a loaded 2-core machine 5-60x slower
    than the unsplit layer, whose two ranges ran here (docs/benchmarks.md, 2026-12-05)."""
    threads = torch.get_num_threads()
    if (threads <= 1 or not parts or threading.current_thread().name.startswith("downpour-lc")
            or _mode_active()):
        return [fn(p) for p in parts]
    inference = torch.is_inference_mode_enabled()

    def task(p: T) -> R:
        with torch.inference_mode(inference), torch.no_grad():
            return fn(p)

    pool = _get_pool(min(threads, len(parts)))
    return [f.result() for f in [pool.submit(task, p) for p in parts]]


def streams(out_rows: int, k: int) -> int:
    """How many row ranges to split the work into: torch's intra-op thread count, but each range at
    least k output rows long, as every range folds its own k - 1 rows of overlap (memory, work)."""
    return max(1, min(torch.get_num_threads(), out_rows // k))
