"""Parameter-server round trip: push a gradient through the shards and pull the parameters back.

    .venv/bin/python bench/parameter_server.py [--sizes 4 64] [--shards 2] [--repeats 20]

For each model size (MB of float32) one JSON line with the median round-trip time of

- ``memcpy``: the baseline, a single-threaded copy of the same bytes (push bytes + pull bytes),
- ``example``: Ray's parameter-server example pattern, one actor holding a NumPy vector:
  ``ray.get(ps.push.remote(g))`` then ``ray.get(ps.pull.remote())``,
- ``ours``: downpour's shard actors (SGD rule) with the path a co-located worker and driver take
  (shared-memory lanes: gradient into the shard's inbox, the shards told to apply it by
  ``ShardPush``, the driver's helper: a doorbell ring each, no actor call; pull by memcpy),
- ``ours_store``: the same shards through the object store, the path workers on another node take,

and the ratios ``vs_memcpy`` (memcpy time / ours: the fraction of memory-copy speed reached),
``vs_example`` (example time / ours: the speed-up), ``example_vs_memcpy``, ``store_vs_memcpy``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import numpy as np
import ray
import torch

from downpour.ps.on_ray import ShardActor, ShardLink, ShardPush
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard, shard_bounds


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

    def close(self) -> None:
        self.pusher.close()
        ray.get([a.close.remote() for a in self.actors])
        for a in self.actors:
            ray.kill(a)


def bench(size_mb: float, shards: int, repeats: int) -> dict:
    n = int(size_mb * 2**20) // 4
    g = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    a, b, c = np.empty_like(g), np.empty_like(g), np.ones_like(g)

    def memcpy() -> None:
        np.copyto(a, g)   # the push's bytes
        np.copyto(b, c)   # the pull's bytes

    example = ExamplePS.remote(n)

    def example_round_trip() -> None:
        ray.get(example.push.remote(g))
        ray.get(example.pull.remote())

    ours, store = Ours(n, shards, True, "lanes"), Ours(n, shards, False, "store")
    row = {"size_mb": size_mb, "shards": shards,
           "memcpy_ms": median_ms(memcpy, repeats),
           "example_ms": median_ms(example_round_trip, repeats),
           "ours_ms": median_ms(lambda: ours.round_trip(g), repeats),
           "ours_store_ms": median_ms(lambda: store.round_trip(g), repeats)}
    ours.close()
    store.close()
    ray.kill(example)
    row["vs_memcpy"] = row["memcpy_ms"] / row["ours_ms"]
    row["vs_example"] = row["example_ms"] / row["ours_ms"]
    row["example_vs_memcpy"] = row["memcpy_ms"] / row["example_ms"]
    row["store_vs_memcpy"] = row["memcpy_ms"] / row["ours_store_ms"]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[4, 64], help="model sizes, MB")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for size in args.sizes:
            print(json.dumps(bench(size, args.shards, args.repeats)), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
