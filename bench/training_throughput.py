"""Training throughput: samples/s of the Ray runner vs the plain local loop on the same model and batch.

    .venv/bin/python bench/training_throughput.py [--config cat-demo] [--steps 300] [--reps 5] [--threads 1] [--set KEY=VALUE ...]

Three runs of the same config: ``local`` (the local runner), ``ray1`` (one Ray worker, 1 shard) and
``ray2`` (two Ray workers, 2 shards, async), all with ``--threads`` torch threads per process (the
local loop, each worker; shards always use 1), and the server's update rule set to the local
loop's optimiser (cat-demo: Adam on both sides). Throughput is read from each run's
metrics.jsonl between the first logged tenth of the run and the end, so start-up (Ray, actor
processes, data) is left out and only steady-state training is compared. Under 100 steps
(``MEANINGFUL_STEPS``) that window is too short for the ratios to mean much: the bench warns.

The protocol (``bench/_protocol.py``, issue 16): the three configurations run interleaved
``--reps`` times (local, ray1, ray2, local, ...); each figure is a median with its range; every run
records the 1-minute load average before and after it, the CPU seconds of the driver, of every Ray
actor (their own ``process_time``) and of Ray's other processes (raylet, GCS). Prints

- one ``"rep"`` line per repetition,
- one ``"breakdown"`` line per Ray configuration: per training step (ms, medians over the
  repetitions) where a worker's time goes (``fetch_read``, ``fetch_load``, ``compute``,
  ``grad_flatten``, ``push_copy``, ``between_cycles``), the shards' apply and the driver's phases,
  and the CPU each kind of process spent per step; ``cpu_ms_per_step`` summed over every process
  is what the machine's cores must supply for one step;
- one summary line: medians, ranges, load, ``one_worker_vs_local`` (ray1 / local, target >= 0.95)
  and ``two_vs_one`` (ray2 / ray1, target >= 1.7), each as the ratio of the medians and as the
  median of the back-to-back (paired) ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _protocol import (ChildCPU, at_least, interleave, ratio, reps_and_threads, spread, summary,  # noqa: E402
                       thread_settings)

from downpour.config import load_config  # noqa: E402
from downpour.runners import train  # noqa: E402
from downpour.train.rundir import RunDir  # noqa: E402

CONFIGS = {"local": ["cluster.runner=local"],
           "ray1": ["cluster.runner=ray", "cluster.workers=1", "cluster.shards=1"],
           "ray2": ["cluster.runner=ray", "cluster.workers=2", "cluster.shards=2"]}
WORKER_PHASES = ("fetch_read", "fetch_load", "compute", "grad_flatten", "push_copy", "between_cycles")
DRIVER_PHASES = ("wait", "get_meta", "push_apply", "dispatch", "record")
# below this many steps the window after the first logged tenth is a few dozen steps, the Ray runs' first
# steps (actors starting, first fetches) weigh in it and the ratios to the local loop mean little; every figure
# in docs/benchmarks.md is from 300 steps. A judgement, not a measured threshold; --steps 10 stays allowed (a
# quick check that the bench runs), with this warning.
MEANINGFUL_STEPS = 100


def short_run_warning(steps: int) -> str | None:
    """The warning a run of ``steps`` steps prints (on stderr and in its summary line), or None."""
    if steps >= MEANINGFUL_STEPS:
        return None
    return (f"--steps {steps} is under {MEANINGFUL_STEPS}: the Ray runs' start-up (actors, first fetches) weighs in "
            f"the short steady window, so the ratios to the local loop mean little; measure with --steps 300")


def steady_samples_per_s(run: RunDir, batch_size: int) -> float:
    rows = run.metrics()
    first, last = rows[len(rows) // 10], rows[-1]
    return (last["step"] - first["step"]) * batch_size / (last["time"] - first["time"])


def per_step(profile: dict[str, Any], children: ChildCPU, steps: int) -> dict[str, float]:
    """A Ray run's profile (``cluster.json``) as milliseconds per training step: each worker phase
    (per step of that worker), the shards' apply (per push), the driver's phases and the CPU of
    each kind of process (per step of the whole run: workers from their first cycle, the driver from
    the start of its loop, Ray's own processes over the workers' first to last cycle)."""
    workers, shards, driver = profile["workers"], profile["shards"], profile["driver"]
    t0, t1 = min(w["since"] for w in workers), max(w["until"] for w in workers)
    by_name, span = children.by_name(t0, t1)
    worker_steps = sum(w["counts"].get("steps", 0) for w in workers) or 1
    pushes = max(sum(s["counts"].get("pushes", 0) for s in shards) / len(shards), 1)

    def total(rows: list[dict[str, Any]], phase: str) -> float:
        return sum(r["seconds"].get(phase, 0.0) for r in rows)

    ms = {f"worker.{p}": 1e3 * total(workers, p) / worker_steps for p in WORKER_PHASES if p != "compute"}
    ms["worker.compute"] = 1e3 * (total(workers, "step") - total(workers, "grad_flatten")) / worker_steps
    ms["shard.apply_per_push"] = 1e3 * total(shards, "apply") / pushes   # every shard applies its part of each push
    ms.update({f"driver.{p}": 1e3 * driver["seconds"].get(p, 0.0) / steps for p in DRIVER_PHASES})
    actors = {"workers": sum(w["cpu_s"] for w in workers), "shards": sum(s["cpu_s"] for s in shards),
              "driver": driver["cpu_s"]}
    # Ray's own processes: every descendant of this process that is not one of the actors above,
    # over the sampled window scaled to the workers' (t0, t1)
    ours = ("ray::WorkerActo", "ray::ShardActor")
    actors["ray_system"] = sum(v for k, v in by_name.items() if not k.startswith(ours)) * (t1 - t0) / max(span, 1e-9)
    ms.update({f"cpu.{k}": 1e3 * v / steps for k, v in actors.items()})
    ms["cpu_ms_per_step"] = sum(ms[f"cpu.{k}"] for k in actors)
    return ms


def measure(name: str, rep: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    base = load_config(args.config, list(args.set))
    rule = [] if name == "local" else [f"cluster.rule={base.train.optimizer}"]
    cfg = load_config(args.config, [f"train.steps={args.steps}", "train.log_every=5", "train.tensorboard=false",
                                    f"train.threads={args.threads}", *rule, *args.set, *CONFIGS[name]])
    run = RunDir.create(root / f"{name}-{rep}", cfg)
    with ChildCPU() as children:
        result = train(cfg, run)
    row: dict[str, Any] = {"samples_per_s": round(steady_samples_per_s(run, cfg.train.batch_size), 1)}
    profile = json.loads((run.path / "cluster.json").read_text()).get("profile") if name != "local" else None
    if profile:
        row["per_step_ms"] = {k: round(v, 3) for k, v in per_step(profile, children, args.steps).items()}
        row["children_cpu_s"] = children.by_name()[0]
    return row


def breakdown(reps: list[dict[str, dict]], name: str, batch_size: int) -> dict[str, Any]:
    """Per-step milliseconds of configuration ``name``: the median over the repetitions of each entry."""
    keys = reps[0][name]["per_step_ms"]
    return {"breakdown": name, "ms_per_step": round(1e3 * batch_size / statistics.median(r[name]["samples_per_s"]
                                                                                        for r in reps), 3),
            **{k: spread([r[name]["per_step_ms"][k] for r in reps])["median"] for k in keys}}


def main(argv: list[str] | None = None) -> None:
    parser = reps_and_threads(__doc__.split("\n")[0], threads_floor=0)   # of the local loop and of each worker
    parser.add_argument("--config", default="cat-demo")
    # steps are logged every 5: the steady rate needs two rows after the first tenth (the flag says "at least 10"
    # and refuses 1-9 while parsing)
    parser.add_argument("--steps", type=at_least(10), default=300, help="steps per run (at least 10: two logged rows)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    resolved = load_config(args.config, [f"train.threads={args.threads}", *args.set]).train   # a --set wins, as in the runs
    batch_size, threads = resolved.batch_size, resolved.threads
    warning = short_run_warning(args.steps)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: (lambda r, name=name: measure(name, r, args, Path(tmp))) for name in CONFIGS}
        reps = interleave(runs, args.reps, lambda r, rep: print(json.dumps({"rep": r, **rep}), flush=True))
    for name in ("ray1", "ray2"):
        print(json.dumps(breakdown(reps, name, batch_size)), flush=True)
    one, two = ratio(reps, "samples_per_s", "ray1", "local"), ratio(reps, "samples_per_s", "ray2", "ray1")
    print(json.dumps({"config": args.config, "steps": args.steps, "settings": args.set,
                      "threads": {**thread_settings(), "local": threads, "worker": threads, "shard": 1},
                      **summary(reps, "samples_per_s"),
                      "one_worker_vs_local": one["of_medians"], "one_worker_vs_local_paired": one["paired"],
                      "two_vs_one": two["of_medians"], "two_vs_one_paired": two["paired"],
                      **({"warning": warning} if warning else {})}), flush=True)


if __name__ == "__main__":
    main()
