"""A Ray run's end: the seconds after its last step (snapshot, checkpoint, close, model and cluster.json saved).

    .venv/bin/python bench/ray_close.py                  # tica-8x8, 20 steps, 2 workers, 2 shards, 3 reps
    .venv/bin/python bench/ray_close.py --config ufldl-sae --steps 5 --reps 5

Each repetition is a whole ``run_cluster`` of ``--config`` (no no-faces twin, no TensorBoard) that starts its own
local Ray, as ``downpour train --runner ray`` does, so its close shuts that Ray down. Its figures: ``after_s``, from
the driver's ``run`` returning (the last step applied) to ``run_cluster`` returning, and ``close_s``, the
driver's ``close`` within it. ``shut_down`` is the driver as it is (:mod:`downpour.ps.shutdown_on_ray`: the
autoscaler's monitor killed before ``ray.shutdown()``); ``ray_shutdown`` calls ``ray.shutdown()`` alone, whose
monitor waits out its one-second SIGTERM grace. The two interleaved (bench/_protocol.py); ``shut_down_vs_ray_shutdown``
< 1: the end is shorter. One JSON line.
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
    parser.add_argument("--config", default="tica-8x8", help="preset or file (default: tica-8x8)")
    parser.add_argument("--steps", type=at_least_1, default=20, help="train.steps (default 20)")
    parser.add_argument("--workers", type=at_least_1, default=2, help="cluster.workers (default 2)")
    parser.add_argument("--shards", type=at_least_1, default=2, help="cluster.shards (default 2)")
    args = parser.parse_args(argv)
    timed: dict[str, float] = {}
    drive, close, shut_down = driver.RayCluster.run, driver.RayCluster.close, driver.shut_down

    def timed_run(self, *a, **k):
        try:
            return drive(self, *a, **k)
        finally:
            timed["last_step"] = time.perf_counter()

    def timed_close(self):
        t = time.perf_counter()
        try:
            close(self)
        finally:
            timed["close_s"] = timed.get("close_s", 0.0) + time.perf_counter() - t

    def run(plain: bool) -> dict[str, float]:
        driver.RayCluster.run, driver.RayCluster.close = timed_run, timed_close
        driver.shut_down = ray.shutdown if plain else shut_down
        timed.clear()
        cfg = load_config(args.config, ["cluster.runner=ray", f"train.steps={args.steps}",
                                        f"cluster.workers={args.workers}", f"cluster.shards={args.shards}",
                                        f"train.threads={args.threads}", "train.tensorboard=false",
                                        "analysis.no_faces_twin=false"])
        with tempfile.TemporaryDirectory() as tmp:
            run_cluster(cfg, RunDir.create(Path(tmp) / "r", cfg))
            after = time.perf_counter() - timed["last_step"]
        if ray.is_initialized():   # (the driver started this Ray, and its close shut it down)
            raise RuntimeError("a Ray is still up after the run: the bench measured no shutdown")
        return {"after_s": round(after, 3), "close_s": round(timed["close_s"], 3)}

    try:
        reps = interleave({"ray_shutdown": lambda r: run(True), "shut_down": lambda r: run(False)}, args.reps)
    finally:
        driver.RayCluster.run, driver.RayCluster.close, driver.shut_down = drive, close, shut_down
    row = {"bench": "ray_close", "config": args.config, "steps": args.steps, "workers": args.workers,
           "shards": args.shards, **summary(reps, "after_s"),
           "close_s": {n: summary(reps, "close_s")["close_s"][n] for n in reps[0]},
           "shut_down_vs_ray_shutdown": ratio(reps, "after_s", "shut_down", "ray_shutdown")}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
