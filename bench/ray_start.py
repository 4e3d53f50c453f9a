"""The Ray run's start: every actor at once (shards, workers, partitions) against the shards first, then the workers.

    .venv/bin/python bench/ray_start.py                  # ufldl-sae, 2 workers, 2 shards, 3 reps
    .venv/bin/python bench/ray_start.py --config main --reps 5

One local Ray (``--cpus``, 2 by default) started once; each configuration is a 1-step ``run_cluster`` of ``--config``
(no no-faces twin, no TensorBoard), and its figure ``start_s`` the driver's ``RayCluster._start`` less Ray's join:
the actors' start up to every first answer, each actor a fresh process importing torch. ``together`` is the
driver as it is; ``serial`` waits for the shards' first answers before it starts a worker, as the start did until
2026-12-06. The two interleaved (bench/_protocol.py); ``together_vs_serial`` < 1: the start is shorter. One JSON
line.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _protocol import at_least_1, emit, interleave, ratio, reps_and_threads, summary  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    import ray

    import downpour.ps.cluster_on_ray as driver
    from downpour.config import load_config
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    parser = reps_and_threads(__doc__.split("\n")[0], reps=3)
    parser.add_argument("--config", default="ufldl-sae", help="preset or file (default: ufldl-sae)")
    parser.add_argument("--workers", type=at_least_1, default=2, help="cluster.workers (default 2)")
    parser.add_argument("--shards", type=at_least_1, default=2, help="cluster.shards (default 2)")
    parser.add_argument("--cpus", type=at_least_1, default=2, help="the local Ray's CPUs (default 2)")
    args = parser.parse_args(argv)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    timed: dict[str, float] = {}
    start, spawn = driver.RayCluster._start, driver.RayCluster._spawn

    def timed_start(self, *a, **k):
        t = time.perf_counter()
        start(self, *a, **k)
        timed["start_s"] = time.perf_counter() - t

    def serial_spawn(self, *a, **k):     # the shards' first answers before any worker starts (a no-op once answered)
        ray.get([x for x in self.lanes if isinstance(x, ray.ObjectRef)])
        return spawn(self, *a, **k)

    def run(serial: bool) -> dict[str, float]:
        driver.RayCluster._start = timed_start
        driver.RayCluster._spawn = serial_spawn if serial else spawn
        cfg = load_config(args.config, ["cluster.runner=ray", "train.steps=1", f"cluster.workers={args.workers}",
                                        f"cluster.shards={args.shards}", f"train.threads={args.threads}",
                                        "train.tensorboard=false", "analysis.no_faces_twin=false"])
        with tempfile.TemporaryDirectory() as tmp:
            run_cluster(cfg, RunDir.create(Path(tmp) / "r", cfg))
        return {"start_s": round(timed["start_s"], 3)}

    try:
        reps = interleave({"serial": lambda r: run(True), "together": lambda r: run(False)}, args.reps)
    finally:
        driver.RayCluster._start, driver.RayCluster._spawn = start, spawn
        ray.shutdown()
    row = {"bench": "ray_start", "config": args.config, "workers": args.workers, "shards": args.shards,
           "cpus": args.cpus, **summary(reps, "start_s"),
           "together_vs_serial": ratio(reps, "start_s", "together", "serial")}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
