"""The benchmark protocol a shared machine cannot fool (issue 16), shared by the bench scripts.

    reps = interleave({"local": run_local, "ray1": run_ray1}, reps=5)   # local, ray1, local, ray1, ...
    row = {**summary(reps, "samples_per_s"), "one_worker_vs_local": ratio(reps, "samples_per_s", "ray1", "local")}

- The named configurations run interleaved, ``reps`` times, so a busy moment on the machine hits
  all of them alike instead of one configuration's whole series.
- Each run is a function of the repetition number returning a dict of figures;
  :func:`measured` adds the machine's load beside them: the 1-minute load average
  (/proc/loadavg) before and after, the wall seconds, and this process's CPU seconds
  (``time.process_time``: all its threads). Processes the run starts report their own CPU (the
  Ray actors, through the run's profile); :class:`ChildCPU` adds what Ray's own processes
  (raylet, GCS, idle workers) used.
- A figure is reported as its median and range (min, max) over the repetitions; a ratio both
  as the ratio of the medians and as the median of the per-repetition ratios (each from runs
  made back to back, so a slow stretch of the machine cancels).

Plain Python; each bench script imports it as ``_protocol`` (scripts run as ``python bench/x.py``
have ``bench/`` on their path).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

Rep = dict[str, dict[str, Any]]     # one repetition: configuration name -> its figures


def at_least(low: int) -> Callable[[str], int]:
    """argparse ``type`` for a count of at least ``low``: an int >= low, else argparse's one-line usage error
    naming the option (the help and the check say the same floor)."""
    def count(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    count.__name__ = f"at_least_{low}"       # (argparse names a type by it: "invalid at_least_1 value: 'x'")
    return count


# a count (repetitions, applies, elements, a batch): a 0 crashed the benches in min() of nothing, or divided by 0
at_least_1 = at_least(1)


REPS_HELP = "timed repetitions of each measurement (default: %(default)s; the bench's docstring says how they are combined)"
THREADS_HELP = "torch intra-op threads of the timed work (default: %(default)s{zero})"   # zero: what 0 means, if allowed


def reps_and_threads(description: str, threads: int | None = 1, reps: int | None = 5,
                     threads_floor: int = 1) -> argparse.ArgumentParser:
    """A bench's parser with the two flags most benches read: ``--reps`` (timed repetitions, interleaved where the
    bench compares configurations) and ``--threads`` (torch's, for the timed process), each at its default here; a
    bench adds its own flags. ``None`` leaves a flag out (a bench without repetitions, or with no torch to thread);
    ``threads_floor`` 0 lets ``--threads 0`` mean torch's default (train.threads = 0)."""
    p = argparse.ArgumentParser(description=description)
    if reps is not None:
        p.add_argument("--reps", type=at_least_1, default=reps, help=REPS_HELP)
    if threads is not None:
        p.add_argument("--threads", type=at_least(threads_floor), default=threads,
                       help=THREADS_HELP.format(zero="; 0: torch's default" if threads_floor == 0 else ""))
    return p


def emit(row: dict[str, Any], out: list[dict[str, Any]]) -> dict[str, Any]:
    """Print a bench's ``row`` as one JSON line (flushed, so a long bench shows each row as it comes) and add it
    to ``out``, the rows the bench returns."""
    print(json.dumps(row), flush=True)
    out.append(row)
    return row


def load_1min() -> float:
    """The machine's 1-minute load average (runnable + uninterruptible tasks, all users)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def available_cpus() -> int:
    """The cores this process may run on (``taskset``, a container's cpuset), not the machine's: a bench pinned
    to one core recorded 2."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_settings() -> dict[str, Any]:
    """The thread knobs a CPU figure depends on: torch's intra-op threads in this process and the
    environment variables BLAS libraries read."""
    import torch

    return {"torch_threads": torch.get_num_threads(), "cpus": available_cpus(),
            **{k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}}


class ChildCPU:
    """CPU seconds of this process's descendants (Ray's raylet, GCS and worker processes), by name,
    sampled from /proc every ``every`` seconds on a daemon thread while in the ``with`` block:
    processes Ray starts are not waited for by this process, so ``getrusage`` never sees them.
    :meth:`by_name` sums a window of the samples (e.g. the steady part of a run)."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, every: float = 0.5):    # a sample reads every /proc/*/stat: ~4 ms of CPU
        self.every = every
        self.samples: list[tuple[float, dict[int, tuple[str, float]]]] = []   # (perf_counter, pid -> (name, CPU s))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        stats: dict[int, tuple[int, str, float]] = {}     # every process: pid -> (parent, name, CPU seconds)
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    raw = f.read()
            except OSError:      # ended since the listing
                continue
            name, rest = raw[raw.index("(") + 1:raw.rindex(")")], raw[raw.rindex(")") + 2:].split()
            stats[int(entry)] = int(rest[1]), name, (int(rest[11]) + int(rest[12])) / self.TICK
        mine, changed = {os.getpid()}, True
        while changed:                       # the descendants: children of anything already ours
            changed = False
            for pid, (ppid, _, _) in stats.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    changed = True
        mine.discard(os.getpid())
        self.samples.append((time.perf_counter(), {pid: stats[pid][1:] for pid in mine}))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> "ChildCPU":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def by_name(self, t0: float = float("-inf"), t1: float = float("inf")) -> tuple[dict[str, float], float]:
        """CPU seconds used between the last sample at or before ``t0`` and the first at or after
        ``t1`` (``perf_counter`` readings; default the whole block), summed per process name
        (``raylet``, ``gcs_server``, ...), and the seconds that window spans."""
        first = max((i for i, (t, _) in enumerate(self.samples) if t <= t0), default=0)
        last = min((i for i, (t, _) in enumerate(self.samples) if t >= t1), default=len(self.samples) - 1)
        start, end = self.samples[first][1], {}
        for _, procs in self.samples[first:last + 1]:   # a process that ended keeps its last reading
            end.update(procs)
        out: dict[str, float] = {}
        for pid, (name, cpu) in end.items():
            before = start[pid][1] if pid in start else 0.0   # born inside the window: all of its CPU counts
            out[name] = round(out.get(name, 0.0) + cpu - before, 3)
        return out, self.samples[last][0] - self.samples[first][0]


@contextmanager
def swapped(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name`` (a module's or a class's own attribute) set to ``value`` inside the block, put back after as it
    was stored: a class's staticmethod as one, not the bare function ``getattr`` gives (the old path of a bench's pair:
    a budget set to 0, a function swapped for the code it replaced; a step's parts wrapped in timers)."""
    was = vars(owner)[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, was)


def measured(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s figures with the load beside them: ``load_before`` / ``load_after`` (1-minute load
    average), ``wall_s`` and ``driver_cpu_s`` (this process, all threads)."""
    load0, cpu0, t0 = load_1min(), time.process_time(), time.perf_counter()
    figures = run()
    return {**figures, "load_before": load0, "load_after": load_1min(),
            "wall_s": _round(time.perf_counter() - t0), "driver_cpu_s": _round(time.process_time() - cpu0)}


def interleave(configs: Mapping[str, Callable[[int], dict[str, Any]]], reps: int,
               report: Callable[[int, Rep], None] | None = None) -> list[Rep]:
    """Run every configuration once per repetition, in order, ``reps`` times; ``report(r, rep)`` after each."""
    out: list[Rep] = []
    for r in range(reps):
        rep = {name: measured(lambda: run(r)) for name, run in configs.items()}
        if report is not None:
            report(r, rep)
        out.append(rep)
    return out


def _round(x: float) -> float:
    """3 decimals (1 from 100 up); under 0.1, 3 significant digits: so a figure of microseconds in seconds does not
    print 0.0 (checkpoint_save's digests of the main job's model)."""
    if 0 < abs(x) < 0.1:
        return float(f"{x:.3g}")
    return round(x, 3 if abs(x) < 100 else 1)


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median and range (min, max) of ``values``."""
    return {"median": _round(statistics.median(values)), "range": [_round(min(values)), _round(max(values))]}


def summary(reps: Sequence[Rep], key: str) -> dict[str, Any]:
    """Per configuration the median and range of figure ``key``, and the load over all runs:
    the range of the 1-minute load average (before and after each run)."""
    names = list(reps[0])
    loads = [run[k] for rep in reps for run in rep.values() for k in ("load_before", "load_after")]
    return {"reps": len(reps), key: {n: spread([rep[n][key] for rep in reps]) for n in names},
            "load_1min": {"median": round(statistics.median(loads), 2), "range": [min(loads), max(loads)]},
            "driver_cpu_s": {n: spread([rep[n]["driver_cpu_s"] for rep in reps]) for n in names}}


def ratio(reps: Sequence[Rep], key: str, num: str, den: str) -> dict[str, Any]:
    """``num`` over ``den`` of figure ``key``: the ratio of the medians (``of_medians``), and the median
    and range of the per-repetition ratios (``paired``)."""
    pairs = [rep[num][key] / rep[den][key] for rep in reps]
    medians = statistics.median(rep[num][key] for rep in reps) / statistics.median(rep[den][key] for rep in reps)
    return {"of_medians": _round(medians), "paired": spread(pairs)}     # (round(, 3): 0.0 under 0.0005)
