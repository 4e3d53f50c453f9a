"""Seconds from a node's crash to its worker's replacement rejoining the run, on a two-node Ray built as
tests/two_nodes.py builds it (a head and one added node, 1 CPU each, on this machine) but with Ray's default health
checks, which list a crashed node alive for some 14 s after its actors' loss shows (2-3 s).

    .venv/bin/python bench/replacement_seconds.py --reps 3

Each repetition starts its own cluster per configuration, its added node added anew until it sorts first (worker 0's
place in the round-robin; the shard's, index 1, is the head), and runs ``downpour train --address`` on it: ufldl-sae,
60 steps, one worker, one shard, ``cluster.restarts = 1``; the driver crashes the added node
(``remove_node(allow_graceful=False)``) as it grants the first cycle past step 20, and waits ``PACE_S`` before each
cycle it grants after it until the worker's loss shows (unpaced, the crashed node's worker trained the run's last 40
tiny steps before it died, 1 run in 6: no loss). ``asked``: the driver as it is, which
asks the lost worker's node's raylet before it pins the replacement there
(:func:`downpour.ps.placing_on_ray.unanswered`); ``pinned_back``: that question answered "it answers" (the driver
before it), so the replacement is pinned to the crashed node, dies coming up once Ray has it dead, and is placed
again. The two interleaved (bench/_protocol.py); ``rejoined_s``: from the crash to the replacement rejoining;
``asked_vs_pinned_back`` < 1: the replacement is back sooner. One JSON line, with each run's events.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _protocol import emit, interleave, ratio, reps_and_threads, summary, swapped  # noqa: E402

STORE = 100 * 2 ** 20
STEPS, LOST_AT, PACE_S = 60, 20, 0.2


def main(argv: list[str] | None = None) -> list[dict]:
    import ray
    from ray import cluster_utils

    from downpour.cli import main as downpour
    from downpour.ps import placing_on_ray
    from downpour.ps.cluster_on_ray import RayCluster
    from downpour.train.rundir import RunDir

    args = reps_and_threads(__doc__.split("\n")[0], reps=3).parse_args(argv)
    flags = ["--config", "ufldl-sae", "--runner", "ray", "--no-report", "--steps", str(STEPS), "--workers", "1",
             "--shards", "1", *[a for o in ["data.samples=256", "train.batch_size=16", "train.tensorboard=false",
                                            f"train.threads={args.threads}", "cluster.restarts=1"]
                                for a in ("--set", o)]]

    def run(asked: bool) -> dict:
        cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "object_store_memory": STORE})
        t: dict[str, float] = {}
        dispatch, restarted = RayCluster._dispatch, RayCluster._restarted

        def crashing(self, w):
            if "crash" not in t and self.coord.done >= LOST_AT:
                t["crash"] = time.monotonic()
                cluster.remove_node(node, allow_graceful=False)     # its processes killed, the worker with them
            if "crash" in t and not any(e["event"] == "worker-lost" for e in self.coord.events):
                time.sleep(PACE_S)
            dispatch(self, w)

        def rejoining(self, w, ref):
            restarted(self, w, ref)
            if w in self.coord.live:
                t.setdefault("rejoined", time.monotonic())

        try:
            while True:
                node = cluster.add_node(num_cpus=1, object_store_memory=STORE)
                cluster.wait_for_nodes()
                if sorted(n.node_id for n in cluster.list_all_nodes()).index(node.node_id) == 0:
                    break
                cluster.remove_node(node)
            RayCluster._dispatch, RayCluster._restarted = crashing, rejoining
            with tempfile.TemporaryDirectory() as tmp, \
                    swapped(placing_on_ray, "unanswered", placing_on_ray.unanswered if asked else
                            lambda node, nodes, silent: False):
                code = downpour(["train", *flags, "--address", cluster.address, "--out", f"{tmp}/r"])
                events = [e["event"] for e in RunDir.open(f"{tmp}/r").read_json("staleness.json")["events"]]
        finally:
            RayCluster._dispatch, RayCluster._restarted = dispatch, restarted
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
        if code != 0 or "rejoined" not in t:
            raise RuntimeError(f"the run ended {code} with events {events}: no replacement rejoined")
        return {"rejoined_s": round(t["rejoined"] - t["crash"], 2), "events": events}

    reps = interleave({"pinned_back": lambda r: run(False), "asked": lambda r: run(True)}, args.reps)
    row = {"bench": "replacement_seconds", "steps": STEPS, "lost_at": LOST_AT, **summary(reps, "rejoined_s"),
           "events": {n: [rep[n]["events"] for rep in reps] for n in reps[0]},
           "asked_vs_pinned_back": ratio(reps, "rejoined_s", "asked", "pinned_back")}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
