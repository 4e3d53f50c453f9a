"""Parameter-server round trip: push a gradient through the shards and pull the parameters back.

    .venv/bin/python bench/parameter_server.py [--sizes 4 64] [--shards 2] [--repeats 20] [--reps 5]

For each model size (MB of float32) the round-trip time (median of ``--repeats`` round trips) of

- ``memcpy``: the baseline, a single-threaded copy of the same bytes (push bytes + pull bytes),
- ``example``: Ray's parameter-server example pattern, one actor holding a NumPy vector:
  ``ray.get(ps.push.remote(g))`` then ``ray.get(ps.pull.remote())``,
- ``ours``: downpour's shard actors (SGD rule) with the path a co-located worker and driver take
  (shared-memory lanes: gradient into the shard's inbox, the shards told to apply it by
  ``ShardPush``, the driver's helper: a doorbell ring each, no actor call; pull by memcpy),
- ``ours_store``: the same shards through the object store, the path workers on another node take,

and the ratios ``vs_memcpy`` (memcpy time / ours: the fraction of memory-copy speed reached),
``vs_example`` (example time / ours: the speed-up), ``example_vs_memcpy``, ``store_vs_memcpy``.

The protocol (``bench/_protocol.py``, issue 16): every (variant, size) runs once per repetition,
interleaved, ``--reps`` times; one ``"rep"`` line each, then per size one line with each variant's
median and range over the repetitions, the 1-minute load average, the driver's and the actors' CPU
seconds, and each ratio as the ratio of the medians and the median of the per-repetition ratios.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from _protocol import at_least_1, interleave, ratio, reps_and_threads, summary, thread_settings  # noqa: E402

from downpour.ps.on_ray import ShardActor, ShardLink, ShardPush  # noqa: E402
from downpour.ps.ray_chatter import quiet_start  # noqa: E402
from downpour.ps.rules import make_rule  # noqa: E402
from downpour.ps.shard import Shard, shard_bounds  # noqa: E402


def start_ray() -> None:
    """A local Ray of our own (not a running one), 2 CPUs, without Ray's start-up lines (a run's filter: else a token
    warning and "Started a local Ray instance" come between the command and its JSON lines)."""
    quiet_start()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


def median_ms(fn: Callable[[], None], repeats: int) -> float:
    fn()
    fn()  # warm: first-touch page faults, actor method caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


@ray.remote
class ExamplePS:
    """Ray's parameter-server example, reduced to its data movement: one actor, one NumPy vector."""

    def __init__(self, n: int):
        self.w = np.zeros(n, dtype=np.float32)

    def push(self, g: np.ndarray) -> None:
        self.w -= 0.01 * g

    def pull(self) -> np.ndarray:
        return self.w

    def cpu(self) -> float:
        return time.process_time()


class Ours:
    """A client of ``shards`` shard actors, as a worker sees them (``lanes=False``: object store only)."""

    def __init__(self, n: int, shards: int, lanes: bool, tag: str):
        self.bounds = shard_bounds(n, shards)
        self.actors = [ShardActor.remote(Shard(j, torch.zeros(b - a), make_rule("sgd", 0.01), workers=[0], start=a),
                                         f"/dev/shm/downpour-bench-{tag}" if lanes else "", 1)
                       for j, (a, b) in enumerate(self.bounds)]
        routes = ray.get([a.lanes.remote() for a in self.actors])
        self.links = [ShardLink(a, r, 0, b - s) for a, r, (s, b) in zip(self.actors, routes, self.bounds)]
        self.pusher = ShardPush(self.actors, routes)   # as the driver has the shards apply a push
        self.versions = [0] * shards
        self.seq = 0
        self.out = np.empty(n, dtype=np.float32)

    def round_trip(self, g: np.ndarray) -> None:
        staged = [link.stage(g[a:b], self.seq, v) for link, (a, b), v in zip(self.links, self.bounds, self.versions)]
        acks = self.pusher.results(self.pusher.apply(0, self.seq, self.versions, staged, [s is None for s in staged]))
        assert all(r["accepted"] for r in acks), acks
        self.seq += 1
        answers = [link.pull_into(self.out[a:b]) for link, (a, b) in zip(self.links, self.bounds)]
        remote = [i for i, x in enumerate(answers) if not isinstance(x, int)]
        for i, (params, version) in zip(remote, ray.get([answers[i] for i in remote])):
            answers[i] = version   # the zero-copy view is what a worker reads from; no extra copy here
        self.versions = answers

    def cpu(self) -> float:
        """CPU seconds the shard actors used so far."""
        return sum(p["cpu_s"] for p in ray.get([a.profile.remote() for a in self.actors]))

    def close(self) -> None:
        self.pusher.close()
        ray.get([a.close.remote() for a in self.actors])
        for a in self.actors:
            ray.kill(a)


class Bench:
    """The four variants of one size, set up once (actors started, buffers touched) for every repetition."""

    VARIANTS = ("memcpy", "example", "ours", "ours_store")

    def __init__(self, size_mb: float, shards: int):
        n = int(size_mb * 2**20) // 4
        self.g = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        self.a, self.b, self.c = np.empty_like(self.g), np.empty_like(self.g), np.ones_like(self.g)
        self.example = ExamplePS.remote(n)
        self.ours, self.store = Ours(n, shards, True, f"lanes{size_mb:g}"), Ours(n, shards, False, f"store{size_mb:g}")

    def memcpy(self) -> None:
        np.copyto(self.a, self.g)   # the push's bytes
        np.copyto(self.b, self.c)   # the pull's bytes

    def example_round_trip(self) -> None:
        ray.get(self.example.push.remote(self.g))
        ray.get(self.example.pull.remote())

    def run(self, variant: str, repeats: int) -> dict[str, Any]:
        """The variant's median round trip (ms) and the CPU seconds its actors used meanwhile."""
        fn, cpu = {"memcpy": (self.memcpy, lambda: 0.0),
                   "example": (self.example_round_trip, lambda: ray.get(self.example.cpu.remote())),
                   "ours": (lambda: self.ours.round_trip(self.g), self.ours.cpu),
                   "ours_store": (lambda: self.store.round_trip(self.g), self.store.cpu)}[variant]
        cpu0 = cpu()
        ms = median_ms(fn, repeats)
        return {"ms": round(ms, 3), "actor_cpu_s": round(cpu() - cpu0, 3)}

    def close(self) -> None:
        self.ours.close()
        self.store.close()
        ray.kill(self.example)


def size_row(reps: list[dict[str, dict]], size: float, shards: int) -> dict[str, Any]:
    """One size's medians, ranges, load and ratios from the interleaved repetitions."""
    names = {v: f"{v}@{size:g}" for v in Bench.VARIANTS}
    mine = [{v: rep[k] for v, k in names.items()} for rep in reps]
    row: dict[str, Any] = {"size_mb": size, "shards": shards, **summary(mine, "ms"),
                           "actor_cpu_s": {v: statistics.median(r[v]["actor_cpu_s"] for r in mine) for v in names}}
    for key, num, den in (("vs_memcpy", "memcpy", "ours"), ("vs_example", "example", "ours"),
                          ("example_vs_memcpy", "memcpy", "example"), ("store_vs_memcpy", "memcpy", "ours_store")):
        r = ratio(mine, "ms", num, den)
        row[key], row[f"{key}_paired"] = r["of_medians"], r["paired"]
    return row


def main(argv: list[str] | None = None) -> None:
    parser = reps_and_threads(__doc__.split("\n")[0], threads=None)   # numpy and Ray actors: no torch threads
    parser.add_argument("--sizes", type=float, nargs="+", default=[4, 64], help="model sizes, MB")
    parser.add_argument("--shards", type=at_least_1, default=2)
    parser.add_argument("--repeats", type=at_least_1, default=20, help="round trips per measurement (their median)")
    args = parser.parse_args(argv)
    start_ray()
    benches: dict[float, Bench] = {}
    try:
        for size in args.sizes:
            benches[size] = Bench(size, args.shards)
        runs = {f"{v}@{size:g}": (lambda r, b=b, v=v: b.run(v, args.repeats))
                for size, b in benches.items() for v in Bench.VARIANTS}
        reps = interleave(runs, args.reps, lambda r, rep: print(json.dumps({"rep": r, **rep}), flush=True))
        for size in args.sizes:
            print(json.dumps({**size_row(reps, size, args.shards), "threads": thread_settings()}), flush=True)
    finally:
        for b in benches.values():
            b.close()
        ray.shutdown()


if __name__ == "__main__":
    main()
