"""The driver loops' wait for the first ready of their futures in list order, against a plain ``ray.wait``.

    .venv/bin/python bench/wait_order.py             # 5 interleaved repetitions of 500 calls per case
    .venv/bin/python bench/wait_order.py --calls 200 --reps 3

``ray.wait(refs, num_returns=1)`` answers with some ready ref, not the first in the list's order, which the task
loop and Sandblaster's pool need (downpour/ps/restarts_on_ray.first_ready; tests/test_ray_wait_order.py). Timed per
call, on a local Ray of 2 CPUs, over fixed lists of refs (pending ones: calls of actors that sleep; ready ones:
answers already got), each case with the first ready at a given place:

- ``plain``: the baseline, ``ray.wait(refs, num_returns=1, timeout)`` (fast, but not in order),
- ``look_all``: a look at them all (``num_returns=len(refs), timeout=0``), the wait only where none is ready
  (first_ready before 2026-12-06),
- ``look_all_nofetch``: the same with ``fetch_local=False``,
- ``wait_then_prefix``: the plain wait first, then a look (``timeout=0``) only at the refs
  before the one it gave (none where it gave the first): first_ready's way,
- ``futures``: each ref's ``future()`` made once and kept (dropped with its ref), the first one done taken.

Each variant is checked to give the first ready before it is timed; ``futures_make_us``: what making the future of a
ready ref costs, once per ref. Cases run interleaved (bench/_protocol.py), ``--reps`` times; one JSON line per case:
each variant's median and range of microseconds per call and its ratio to ``plain`` (> 1 slower).
"""
from __future__ import annotations

import concurrent.futures
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402
from _protocol import at_least_1, emit, interleave, ratio, reps_and_threads, summary  # noqa: E402
from parameter_server import start_ray  # noqa: E402

from downpour.ps.restarts_on_ray import first_ready  # noqa: E402


@ray.remote(num_cpus=0)
class Sleeper:
    def cycle(self, seconds: float) -> int:
        time.sleep(seconds)
        return 1


@ray.remote          # (1 CPU: two workers reused, not a worker a call, which Ray warns of on stdout)
def answer() -> dict:
    return {"steps": 1}


def plain(refs: list, timeout: float | None) -> list:
    return ray.wait(refs, num_returns=1, timeout=timeout)[0]


def look_all(refs: list, timeout: float | None, fetch: bool = True) -> list:
    if not refs:
        return []
    ready = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=fetch)[0]
    if not ready:
        ready = ray.wait(refs, num_returns=1, timeout=timeout)[0]
    return ready[:1]


class Futures:
    """Each ref's future, made once and kept while the ref is in the lists asked about."""

    def __init__(self) -> None:
        self.of: dict[Any, concurrent.futures.Future] = {}

    def __call__(self, refs: list, timeout: float | None) -> list:
        for r in refs:
            if r not in self.of:
                self.of[r] = r.future()
        futures = [self.of[r] for r in refs]
        if len(self.of) > 2 * len(refs):                            # drop the refs no longer asked about
            keep = set(refs)
            self.of = {r: f for r, f in self.of.items() if r in keep}
        for ref, fut in zip(refs, futures):
            if fut.done():
                return [ref]
        done, _ = concurrent.futures.wait(futures, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        return [next(r for r, f in zip(refs, futures) if f.done())] if done else []


VARIANTS: dict[str, Callable[[list, float | None], list]] = {
    "plain": plain, "look_all": look_all, "look_all_nofetch": lambda refs, t: look_all(refs, t, fetch=False),
    "wait_then_prefix": first_ready, "futures": Futures()}


def cases(n: int) -> tuple[dict[str, tuple[list, Any, float | None]], list]:
    """name -> (refs, the first ready of them or None, timeout); and the sleeper to kill."""
    actor = Sleeper.remote()
    never = [actor.cycle.remote(3600) for _ in range(n)]      # the first sleeps, the others wait their turn
    ready = [answer.remote() for _ in range(n)]
    ray.get(ready)
    return ({f"{n} refs, first ready at 0 of {n}": ([ready[0], *never[1:]], ready[0], None),
             f"{n} refs, first ready at {n // 2}, {n // 2} ready":
                 ([*never[:n // 2], *ready[n // 2:]], ready[n // 2], None),
             f"{n} refs, only the last ready": ([*never[:-1], ready[0]], ready[0], None),
             f"{n} refs, none ready (timeout 0)": (never, None, 0)}, actor)


def futures_make_us(count: int) -> float:
    refs = [answer.remote() for _ in range(count)]
    ray.get(refs)
    t0 = time.perf_counter()
    futs = [r.future() for r in refs]
    concurrent.futures.wait(futs)
    return 1e6 * (time.perf_counter() - t0) / count


def main(argv: list[str] | None = None) -> list[dict]:
    parser = reps_and_threads(__doc__.split("\n")[0], threads=None)
    parser.add_argument("--calls", type=at_least_1, default=500, help="calls per timing (their mean)")
    parser.add_argument("--refs", type=at_least_1, default=8, help="refs per list (at least 2)")
    args = parser.parse_args(argv)
    start_ray()
    out = []
    try:
        table, actor = cases(max(args.refs, 2))
        for name, (refs, first, timeout) in table.items():
            for v, fn in VARIANTS.items():
                got = fn(refs, timeout)
                if v != "plain" and got != ([first] if first is not None else []):
                    raise SystemExit(f"{v} gave {got} for {name!r}, not the first ready")

        def timed(fn, refs, timeout) -> dict[str, float]:
            t0 = time.perf_counter()
            for _ in range(args.calls):
                fn(refs, timeout)
            return {"us": 1e6 * (time.perf_counter() - t0) / args.calls}

        runs = {f"{v}|{name}": (lambda r, fn=fn, c=c: timed(fn, c[0], c[2]))
                for name, c in table.items() for v, fn in VARIANTS.items()}
        reps = interleave(runs, args.reps)
        for name in table:
            mine = [{v: rep[f"{v}|{name}"] for v in VARIANTS} for rep in reps]
            emit({"bench": "wait_order", "case": name, "calls": args.calls, **summary(mine, "us"),
                  "vs_plain": {v: ratio(mine, "us", v, "plain") for v in VARIANTS if v != "plain"}}, out)
        emit({"bench": "wait_order", "futures_make_us": round(statistics.median(
            futures_make_us(args.calls) for _ in range(args.reps)), 1)}, out)
        ray.kill(actor)
    finally:
        ray.shutdown()
    return out


if __name__ == "__main__":
    main()
