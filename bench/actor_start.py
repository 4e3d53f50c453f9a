"""What a Ray actor process of a run spends before its work: a bare Ray worker, then torch, then downpour's actor modules.

    .venv/bin/python bench/actor_start.py            # 5 reps on a local Ray of 2 CPUs

One local Ray, started once. Each repetition starts, one after another, three probe actors (0 CPUs, each a fresh
Ray worker process) and reads, at the probe's first answer, its process's CPU seconds (user + system, getrusage):
``bare`` imports nothing more than a Ray worker does; ``torch`` imports torch; ``downpour`` imports the modules the
run's actor classes live in (``downpour.ps.on_ray``, ``downpour.ps.partitions_on_ray``, ``downpour.sandblaster.on_ray``:
what a shard, worker or partition actor's process imports before its ``__init__``). The three interleaved
(bench/_protocol.py); ``downpour_vs_torch`` (> 1: what downpour's own modules add to torch's) and ``torch_vs_bare``.
``writes_bytecode``: whether this process (and so Ray's workers) may write __pycache__ (PYTHONDONTWRITEBYTECODE
unset): where it may not, each actor compiles downpour's sources again. One JSON line.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _protocol import emit, interleave, ratio, reps_and_threads, summary  # noqa: E402

ACTOR_MODULES = {"bare": (), "torch": ("torch",),
                 "downpour": ("torch", "downpour.ps.on_ray", "downpour.ps.partitions_on_ray",
                              "downpour.sandblaster.on_ray")}


def main(argv: list[str] | None = None) -> list[dict]:
    args = reps_and_threads(__doc__.split("\n")[0], threads=None, reps=5).parse_args(argv)
    import ray

    @ray.remote(num_cpus=0)
    class Probe:
        def __init__(self, modules: tuple[str, ...]):
            import importlib
            for m in modules:
                importlib.import_module(m)

        def cpu_s(self) -> float:
            import resource
            r = resource.getrusage(resource.RUSAGE_SELF)
            return r.ru_utime + r.ru_stime

    def start(modules: tuple[str, ...]) -> dict[str, float]:
        probe = Probe.remote(modules)
        try:
            return {"actor_cpu_s": round(ray.get(probe.cpu_s.remote()), 3)}
        finally:
            ray.kill(probe)

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray.get(Probe.remote(()).cpu_s.remote())     # (Ray's first worker: not timed)
        reps = interleave({k: (lambda r, m=m: start(m)) for k, m in ACTOR_MODULES.items()}, args.reps)
    finally:
        ray.shutdown()
    row = {"bench": "actor_start", "writes_bytecode": not sys.flags.dont_write_bytecode,
           **summary(reps, "actor_cpu_s"),
           "downpour_vs_torch": ratio(reps, "actor_cpu_s", "downpour", "torch"),
           "torch_vs_bare": ratio(reps, "actor_cpu_s", "torch", "bare")}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
