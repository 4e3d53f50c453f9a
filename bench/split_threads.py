"""A model-parallel replica on the simulated runner against the whole replica, with the untied kernel's one
row range on its worker threads (``now``) and on the caller's thread (``before``: the rule before 2026-12-05).

    .venv/bin/python bench/split_threads.py                        # cat-untied, 30 steps, 2 threads, K = 2
    .venv/bin/python bench/split_threads.py --config main --reps 5

Each configuration is one ``downpour train --config C --runner simulated --set cluster.partitions=K
--set train.threads=T --steps S --no-report`` in a fresh process; the figure is its ``seconds`` (the run's
training, not the process's start-up) and the CPU seconds the process used (``child_cpu_s``, all its threads:
threads that spin while they wait show here). ``before`` runs the same code with the kernel's old rule put
back: a layer (or a split replica's block) too short for two row ranges runs its one range on the caller's
thread (cat-demo's 12- and 13-row blocks at k = 8; the whole 25-row layer gets two ranges, on the workers).
The four configurations run interleaved (bench/_protocol.py); the ratios are ``split / whole`` under ``now`` and
under ``before``, and ``split now / split before``. The gap needs a busy machine: on an idle one the four agree.
One JSON line.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _protocol import at_least, at_least_1, emit, interleave, ratio, reps_and_threads, summary  # noqa: E402

# the child: downpour's CLI, with the kernel's rule before 2026-12-05 when asked ("before")
CHILD = """
import sys
if sys.argv[1] == "before":
    from downpour.layers import _lc_kernels
    from downpour.layers._lc_threads import run_parts
    _lc_kernels._run = lambda part, spans, threaded: (run_parts(part, spans) if threaded and len(spans) > 1
                                                      else [part(span) for span in spans])
from downpour.cli import main
sys.exit(main(sys.argv[2:]))
"""


def train(rule: str, config: str, partitions: int, threads: int, steps: int, runner: str = "simulated",
          sets: tuple[str, ...] = ()) -> dict[str, float]:
    """One run in a fresh process (``runner``'s, ``sets`` more overrides; bench/partitions_ray.py runs Ray's): its
    training seconds and the CPU seconds of the process and of the descendants reaped by the time it ended."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-c", CHILD, rule, "train", "--config", config, "--runner", runner,
                               "--set", f"cluster.partitions={partitions}", "--set", f"train.threads={threads}",
                               *(arg for kv in sets for arg in ("--set", kv)),
                               "--steps", str(steps), "--no-report", "--out", out],
                              cwd=ROOT, capture_output=True, text=True)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"the {rule} {runner} run of {config} with cluster.partitions={partitions} failed:\n"
                         f"{done.stderr[-2000:]}")
    result = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    return {"seconds": result["seconds"], "final_loss": result["final_loss"],
            "child_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2)}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = reps_and_threads(__doc__.split("\n")[0], threads=2, reps=3)
    parser.add_argument("--config", default="cat-untied")
    parser.add_argument("--steps", type=at_least_1, default=30)
    parser.add_argument("--partitions", type=at_least(2), default=2)
    args = parser.parse_args(argv)
    configs = {f"{shape}_{rule}": (lambda r, rule=rule, k=k: train(rule, args.config, k, args.threads, args.steps))
               for rule in ("now", "before") for shape, k in (("whole", 1), ("split", args.partitions))}
    reps = interleave(configs, args.reps)
    row = {"bench": "split_threads", "config": args.config, "partitions": args.partitions, "threads": args.threads,
           "steps": args.steps, **summary(reps, "seconds"),
           "child_cpu_s": summary(reps, "child_cpu_s")["child_cpu_s"],
           "split_vs_whole_now": ratio(reps, "seconds", "split_now", "whole_now"),
           "split_vs_whole_before": ratio(reps, "seconds", "split_before", "whole_before"),
           "split_now_vs_before": ratio(reps, "seconds", "split_now", "split_before"),
           "final_losses": sorted({round(rep[n]["final_loss"], 3) for rep in reps for n in configs})}   # one: the same steps
    return [emit(row, [])]


if __name__ == "__main__":
    main()
