"""Whether Ray's ``RAY_preload_python_modules`` makes a local Ray's actors answer sooner: ray.init, then N actors.

    .venv/bin/python bench/actor_preload.py              # N = 2 and 4, 3 reps, on a local Ray of 2 CPUs

Each measurement is a fresh driver process (this script with ``--one``): it sets the variable (or not) in its
environment, so the raylet and the workers it starts inherit it, starts a local Ray as downpour's run does
(``ray.init(address="local", num_cpus=2)``: Ray prestarts 2 idle workers, which import the listed modules before
taking work), then starts N probe actors (0 CPUs, each a Ray worker process) whose ``__init__`` imports what a run's
actor imports before its own (torch and the modules the actor classes live in, as bench/actor_start.py's
``downpour``), and waits for each one's first answer. Arms: ``off`` (the variable unset), ``torch``
(``RAY_preload_python_modules=torch``) and ``downpour`` (torch and the actor modules). Figures: ``answer_wall_s``
from before ``ray.init`` to the last answer; ``preloaded``, how many of the N found torch already imported (a
worker that preloaded); ``cpu_s``, the CPU seconds (user + system) of the driver and every process under it
(Ray's own, its workers) at that moment; ``cpu_settled_s``, the same 5 s later (a preload into a prestarted worker
no actor took, or into a worker Ray starts after, is counted there). The arms interleaved
(bench/_protocol.py); ratios ``<arm>_vs_off`` of each figure, > 1: more. One JSON line per N.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _protocol import at_least_1, emit, interleave, ratio, reps_and_threads, summary  # noqa: E402

ACTOR_MODULES = ("torch", "downpour.ps.on_ray", "downpour.ps.partitions_on_ray", "downpour.sandblaster.on_ray")
ARMS = {"off": None, "torch": "torch", "downpour": ",".join(ACTOR_MODULES)}
SETTLE_S = 5.0


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and every live process under it, read from /proc."""
    parent, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    mine, grown = {root}, True
    while grown:
        more = {p for p, pp in parent.items() if pp in mine} - mine
        mine |= more
        grown = bool(more)
    return sum(ticks.get(p, 0) for p in mine) / os.sysconf("SC_CLK_TCK")


def one(n: int) -> dict[str, float]:
    """This process as one measurement's driver (the arm is in its environment)."""
    t0 = time.perf_counter()
    import ray

    @ray.remote(num_cpus=0)
    class Probe:
        def __init__(self, modules: tuple[str, ...]):
            import importlib
            self.had = "torch" in sys.modules     # (before this __init__ imported anything)
            for m in modules:
                importlib.import_module(m)

        def ready(self) -> bool:
            return self.had

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        probes = [Probe.remote(ACTOR_MODULES) for _ in range(n)]
        had = sum(ray.get([p.ready.remote() for p in probes]))
        wall = time.perf_counter() - t0
        cpu = tree_cpu_s(os.getpid())
        time.sleep(SETTLE_S)
        settled = tree_cpu_s(os.getpid())
    finally:
        ray.shutdown()
    return {"answer_wall_s": round(wall, 3), "preloaded": had, "cpu_s": round(cpu, 2),
            "cpu_settled_s": round(settled, 2)}


def measure(arm: str, n: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_preload_python_modules"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    if ARMS[arm]:
        env["RAY_preload_python_modules"] = ARMS[arm]
    out = subprocess.run([sys.executable, __file__, "--one", str(n)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = reps_and_threads(__doc__.split("\n")[0], threads=None, reps=3)
    parser.add_argument("--actors", type=at_least_1, nargs="+", default=[2, 4], help="the N to measure (default 2 4)")
    parser.add_argument("--one", type=at_least_1, help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return []
    rows = []
    for n in args.actors:
        reps = interleave({arm: (lambda r, arm=arm: measure(arm, n)) for arm in ARMS}, args.reps)
        row = {"bench": "actor_preload", "actors": n, "writes_bytecode": not sys.flags.dont_write_bytecode}
        for key in ("answer_wall_s", "cpu_s", "cpu_settled_s", "preloaded"):
            row[key] = summary(reps, key)
            for arm in ("torch", "downpour") if key != "preloaded" else ():
                row[f"{arm}_vs_off_{key}"] = ratio(reps, key, arm, "off")
        rows.append(emit(row, []))
    return rows


def argparse_hidden() -> str:
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
