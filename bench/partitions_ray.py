"""Model parallelism on Ray: a replica split over partition actors against the whole replica, in the same run.

    .venv/bin/python bench/partitions_ray.py                       # main, K = 2, 30 steps, 1 thread, 3 reps
    .venv/bin/python bench/partitions_ray.py --steps 10 --reps 1   # a quick look (about 2 minutes on 2 loaded cores)

Each configuration is one ``downpour train --config C --runner ray --set cluster.partitions=K --set train.threads=T
--steps S --no-report`` in a fresh process (its own local Ray; no no-faces twin), ``whole`` at K = 1 and ``split`` at
``--partitions``; the figure is the run's ``seconds`` (its training, not Ray's start), the two interleaved
(bench/_protocol.py). A split replica's worker sends each stage's input windows to its K partition actors and gets
their codes and reconstructions back every step (downpour/ps/partitions_on_ray.py), so on one machine a partition
adds processes and round trips, not cores: ``split_vs_whole`` (seconds, > 1 slower) is what that costs. ``child_cpu_s``:
the CPU seconds of the run's process and of the descendants reaped by its end, Ray's start among them (so no ratio of
it is printed: at a few steps the start is most of it). One JSON line.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _protocol import at_least, at_least_1, emit, interleave, ratio, reps_and_threads, summary  # noqa: E402
from split_threads import train  # noqa: E402

NO_TWIN = ("analysis.no_faces_twin=false",)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = reps_and_threads(__doc__.split("\n")[0], reps=3)
    parser.add_argument("--config", default="main", help="preset or file (default: main)")
    parser.add_argument("--steps", type=at_least_1, default=30, help="training steps per run (default 30)")
    parser.add_argument("--partitions", type=at_least(2), default=2, help="K of the split replica (default 2)")
    args = parser.parse_args(argv)
    # ("now": split_threads' child runs downpour's CLI as it is, none of the kernel's old rule put back)
    configs = {name: (lambda r, k=k: train("now", args.config, k, args.threads, args.steps, "ray", NO_TWIN))
               for name, k in (("whole", 1), ("split", args.partitions))}
    reps = interleave(configs, args.reps)
    row = {"bench": "partitions_ray", "config": args.config, "partitions": args.partitions, "threads": args.threads,
           "steps": args.steps, **summary(reps, "seconds"),
           "child_cpu_s": summary(reps, "child_cpu_s")["child_cpu_s"],
           "split_vs_whole": ratio(reps, "seconds", "split", "whole")}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
