"""Where a whole ``downpour train`` spends its CPU, by phase: the driver under cProfile with a CPU clock (the
analysis, the report, the driver's side of training, the data builds, Ray's and the actors' start), and every
process it starts (Ray's own, the actors) sampled from /proc twice a second, each actor's start-up its CPU less the
in-run CPU its run's cluster.json records. CPU, not wall: on a shared machine a phase's wall time is mostly the
other jobs'. One JSON line per row; `make bench` skips it (a whole main job, minutes).

    python bench/main_job_phases.py --out /tmp/phases          # the README's quick start, Ray runner, main preset
    python bench/main_job_phases.py --out /tmp/p -- --steps 300 --set analysis.no_faces_twin=false
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from downpour.cli import main as downpour  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
# the driver's phases: (row, the function whose cumulative CPU it is)
DRIVER = [("analysis (measurements and figures)", "analysis/run.py", "analyze_run"),
          ("report rendering", "cli_analyze.py", "report_only"),
          ("training, the driver's loop", "ps/driving_on_ray.py", "run"),
          ("data builds (run and twin)", "data/build.py", "build_dataset"),
          ("the actors' start, the driver's side (Ray's start too where no twin shares it)", "ps/starting_on_ray.py",
           "_start"),
          ("Ray's start, the driver's side (a run and its twin share it)", "ps/connect_on_ray.py", "held")]


def descendants() -> dict[int, tuple[str, float]]:
    """Every process under this one: pid -> (its command line, its CPU seconds so far)."""
    stat = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = Path(f"/proc/{p}/stat").read_text()
            fields = text[text.rindex(")") + 2:].split()
            cmd = Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ").strip()
        except OSError:
            continue
        stat[int(p)] = (int(fields[1]), cmd, (int(fields[11]) + int(fields[12])) / TICK)
    mine, grew = {os.getpid()}, True
    while grew:
        new = {pid for pid, (parent, _, _) in stat.items() if parent in mine} - mine
        mine, grew = mine | new, bool(new)
    return {pid: stat[pid][1:] for pid in mine - {os.getpid()}}


def sample(seen: dict[int, list], stop: threading.Event) -> None:
    """Each descendant's last CPU reading and its last non-empty command line (a dying process reads empty)."""
    while not stop.wait(0.5):
        for pid, (cmd, cpu) in descendants().items():
            was = seen.setdefault(pid, ["", 0.0])
            seen[pid] = [cmd or was[0], max(cpu, was[1])]


def kind(cmd: str) -> str:
    for actor in ("ShardActor", "WorkerActor", "PartitionActor"):
        if actor in cmd:
            return actor
    words = [w.rsplit("/", 1)[-1] for w in cmd.split()]
    return next((w for w in words if w.endswith(".py") or w in ("gcs_server", "raylet")), cmd[:40] or "?")


def main_job(out: Path, extra: list[str]) -> None:
    seen: dict[int, list] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=sample, args=(seen, stop), daemon=True)
    watcher.start()
    profile, wall, cpu = cProfile.Profile(time.process_time), time.perf_counter(), time.process_time()
    profile.enable()
    code = downpour(["train", "--out", str(out), *extra])
    profile.disable()
    stop.set()
    watcher.join()
    if code:
        raise SystemExit(f"downpour train exited {code}: no phases to read")
    rows = [{"row": "driver, in all", "cpu_s": round(time.process_time() - cpu, 2),
             "wall_s": round(time.perf_counter() - wall, 1), "load": os.getloadavg()[0]}]
    stats = pstats.Stats(profile).stats
    for row, file, function in DRIVER:
        cpu = sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(f"downpour/{file}") and fn == function)
        rows.append({"row": f"driver: {row}", "cpu_s": round(cpu, 2)})
    actors: dict[str, list[float]] = {}
    for cmd, cpu in seen.values():
        actors.setdefault(kind(cmd), []).append(cpu)
    in_run = {"ShardActor": [], "WorkerActor": []}
    for run in (out, out / "no-faces"):
        if (run / "cluster.json").is_file():
            p = json.loads((run / "cluster.json").read_text())["profile"]
            in_run["ShardActor"] += [s["cpu_s"] for s in p["shards"]]
            in_run["WorkerActor"] += [w["cpu_s"] for w in p["workers"]]
    for name, cpus in sorted(actors.items()):
        row = {"row": f"process: {name}", "n": len(cpus), "cpu_s": round(sum(cpus), 2)}
        # less the in-run CPU cluster.json says (a process kept for the twin ran in both runs: each run's counted)
        if in_run.get(name) and len(in_run[name]) >= len(cpus):
            row["start_up_cpu_s"] = round(sum(cpus) - sum(in_run[name]), 2)
        rows.append(row)
    for row in rows:
        print(json.dumps(row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the run's folder (a new one)")
    ap.add_argument("extra", nargs="*", help="more `downpour train` flags, after --")
    args = ap.parse_args()
    main_job(args.out, args.extra)


if __name__ == "__main__":
    main()
