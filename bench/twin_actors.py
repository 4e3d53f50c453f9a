"""A run and its no-faces twin on Ray, the twin on the run's kept actors (``kept``: ``downpour.twins.shared_ray``,
:mod:`downpour.ps.keeping_on_ray`) against the twin on actors started anew (``anew``: one Ray shared, no keeping, the
code before 2026-12-07), interleaved. Figures: the CPU seconds of every process Ray started (its own, the actors),
the actor processes started, the twin's start (cluster.json's ``start_seconds``: joining Ray, every actor up) and
the command's wall; and whether the twin's model.safetensors is the same file both ways (sync, train.threads=1:
a deterministic run).

    python bench/twin_actors.py --reps 3 --out /tmp/twin_actors
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _protocol  # noqa: E402
from _protocol import ChildCPU, interleave, ratio, summary  # noqa: E402

from downpour import twins  # noqa: E402
from downpour.cli import main as downpour  # noqa: E402

RUN = ["--config", "cat-demo", "--runner", "ray", "--workers", "2", "--shards", "2", "--seed", "0", "--no-report",
       "--set", "analysis.no_faces_twin=true", "--set", "cluster.consistency=sync", "--set", "train.threads=1",
       "--set", "train.tensorboard=false"]
ACTORS = ("ray::ShardActo", "ray::WorkerActo")   # as /proc/PID/stat names them (15 characters)


def anew(cfg, runs: int) -> contextlib.AbstractContextManager:
    """``shared_ray`` without the keeping (the code before 2026-12-07): one Ray for the runs, each run's actors
    started anew."""
    if cfg.cluster.runner != "ray" or runs < 2:
        return contextlib.nullcontext()
    from downpour.ps.connect_on_ray import held

    return held(cfg.cluster.address)


def one(out: Path, steps: int, shared) -> dict:
    """The run and its twin into ``out`` with ``shared`` as ``twins.shared_ray``; its figures."""
    shutil.rmtree(out, ignore_errors=True)
    kept, twins.shared_ray = twins.shared_ray, shared
    try:
        with ChildCPU() as child:
            code = downpour(["train", *RUN, "--steps", str(steps), "--out", str(out)])
    finally:
        twins.shared_ray = kept
    if code:
        raise SystemExit(f"downpour train exited {code}")
    cpu, _ = child.by_name()
    twin = out / "no-faces"
    return {"ray_cpu_s": round(sum(cpu.values()), 2),
            "actor_processes": _actor_processes(child),
            "run_start_s": json.loads((out / "cluster.json").read_text())["start_seconds"],
            "twin_start_s": json.loads((twin / "cluster.json").read_text())["start_seconds"],
            "twin_model": hashlib.sha256((twin / "model.safetensors").read_bytes()).hexdigest()[:16]}


def _actor_processes(child: ChildCPU) -> int:
    """How many actor processes the block saw (a Ray worker names itself ray::ShardActor once it holds one)."""
    pids = {pid for _, procs in child.samples for pid, (name, _) in procs.items() if any(a in name for a in ACTORS)}
    return len(pids)


def main() -> None:
    ap = _protocol.reps_and_threads(__doc__.splitlines()[0], threads=None, reps=3)
    ap.add_argument("--steps", type=int, default=40, help="train.steps of the run and of its twin")
    ap.add_argument("--out", type=Path, required=True, help="a scratch folder (runs are made and removed there)")
    args = ap.parse_args()
    configs = {"anew": lambda r: one(args.out / f"anew-{r}", args.steps, anew),
               "kept": lambda r: one(args.out / f"kept-{r}", args.steps, twins.shared_ray)}
    reps = interleave(configs, args.reps, report=lambda r, rep: print(json.dumps({"rep": r, **rep})))
    same = len({run["twin_model"] for rep in reps for run in rep.values()}) == 1
    print(json.dumps({**summary(reps, "ray_cpu_s"), "twin_start_s": summary(reps, "twin_start_s")["twin_start_s"],
                      "wall_s": summary(reps, "wall_s")["wall_s"],
                      "ray_cpu_kept_vs_anew": ratio(reps, "ray_cpu_s", "kept", "anew"),
                      "twin_start_kept_vs_anew": ratio(reps, "twin_start_s", "kept", "anew"),
                      "wall_kept_vs_anew": ratio(reps, "wall_s", "kept", "anew"),
                      "twin_models_identical": same, "load": _protocol.load_1min()}))


if __name__ == "__main__":
    main()
