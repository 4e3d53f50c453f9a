"""Predicted against measured staleness: run the simulated cluster, then compare with the plan.

    result = check_simulated(workers=1000, shards=100, steps=10000)   # trains, then compares
    result = compare_run("runs/sim-a")                                # any simulated run, finished or stopped

The default recipe is ufldl-sae (3,289 parameters, 10,000 8x8 patches: 10 per worker at 1,000
workers, so a batch of 10) with one torch thread: the cluster's bookkeeping, not the model, is
what 1,000 workers and 100 shards exercise.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from downpour.config import ConfigError, FlagValue, Override, RunConfig, load_config, parse_override
from downpour._names import pasted, whole_flag
from downpour.data.build import sample_shape
from downpour.models.registry import create_model, resolve
from downpour.plan.staleness import greedy_switches, predict_staleness
from downpour.ps.cluster import run_cluster
from downpour.scratch_names import prefix
from downpour.train.folders import RunExistsError
from downpour.train.lock import FolderBusy, training_in
from downpour.train.rundir import RunDir

__all__ = ["check_simulated", "compare_run", "passed", "CHECK_RECIPE", "MAX_ERROR", "MAX_REJECTED"]

# what the check sets on top of its preset (later --set values win)
CHECK_RECIPE: tuple[Override, ...] = (("cluster.runner", "simulated"), ("train.batch_size", 10), ("train.threads", 1),
                                      ("train.tensorboard", False), ("train.log_every", 1000))


MAX_ERROR = 0.25       # relative error of the predicted mean staleness
MAX_REJECTED = 0.05    # share of shard pushes refused


def compare_run(path: str | Path) -> dict[str, Any]:
    """The plan's staleness for a simulated run's config against its staleness.json, over the steps it did
    (``steps_done``: ``train.steps`` once it finished; fewer when it was stopped and not resumed).

    ``rejected_share``: the shard pushes the shards refused (a diverged worker's NaN pushes above all),
    of all pushed. The prediction assumes every push is applied; the measured staleness is over the
    applied ones, so a run with many refused pushes is not a test of the prediction (see
    :func:`passed`)."""
    run = RunDir.open(path)
    cfg, c = run.config, run.config.cluster
    if c.algorithm != "downpour":
        raise ConfigError(f"{str(run.path)!r} is a {c.algorithm} run: it has no stale pushes to compare "
                          "(the staleness prediction is for Downpour's workers)")
    if c.runner != "simulated":
        why = ("on Ray staleness comes from the machines' real timing" if c.runner == "ray" else
               "the local runner has one worker and no parameter server: no push is ever stale")
        raise ConfigError(f"{str(run.path)!r} ran on the {c.runner!r} runner; the prediction is for the simulated one "
                          f"({why})")
    report = run.read_json("staleness.json")
    extended = [e for e in report.get("events", []) if e["event"] == "extended"]
    if extended:      # its workers drained at the first end and started again: two schedules, not one
        raise ConfigError(f"{str(run.path)!r} finished at step {extended[0]['step']} and was resumed past its end: its "
                          "staleness mixes two runs' schedules, and the prediction is for one run (an interrupted run "
                          "resumed is compared as the run it finished)")
    # a run stopped and not resumed did fewer steps than train.steps: its staleness.json is of those (written with the
    # server checkpoint that records them); predicting train.steps read a stop at 2,894 of 100,000 as "+51% off"
    done = max((s for s in (run.reached(), run.model_step()) if s is not None), default=cfg.train.steps)
    if done == 0:
        raise ConfigError(f"{str(run.path)!r} stopped at step 0 of {cfg.train.steps}: no push landed, so there is no "
                          f"staleness to compare; --resume it, or check a run that trained")
    pred = predict_staleness(c.workers, done, c.n_push, c.n_fetch, c.delay, c.consistency, c.warm_start,
                             switches := _stage_switches(cfg))
    measured = report["overall"]
    rejected = report.get("rejected") or {}      # reason -> shard pushes; the prediction assumes every push applied
    share = sum(rejected.values()) / max(1, sum(rejected.values()) + measured["pushes"])
    rel = (pred.mean - measured["mean"]) / measured["mean"] if measured["mean"] else float(pred.mean != 0)
    return {"run": str(run.path), "workers": c.workers, "shards": c.shards, "steps": cfg.train.steps, "steps_done": done,
            "n_push": c.n_push, "n_fetch": c.n_fetch, "delay": c.delay, "consistency": c.consistency,
            "stage_switches": [j for j in switches if j < done],
            "predicted": pred.as_dict(), "measured": {"mean": measured["mean"], "max": measured["max"],
                                                      "pushes": measured["pushes"], "rejected": rejected},
            "rejected_share": round(share, 4), "relative_error": round(rel, 4)}


def _stage_switches(cfg: RunConfig) -> list[int]:
    """The steps where a greedy run of several stages waits for every push before it (each stage starts afresh:
    a 2-stage greedy run of 400 steps on 20 workers logged 35.10 where one schedule of 400 steps predicts 37.05)."""
    if cfg.train.schedule != "greedy":
        return []
    stages = create_model(cfg.model.name, sample_shape(cfg.data), **cfg.model.options).n_stages
    return greedy_switches(cfg.train.steps, stages, cfg.cluster.n_push)


def passed(result: dict[str, Any]) -> bool:
    """Whether a comparison confirms the prediction: within ``MAX_ERROR`` of the measured mean, on a
    run whose shards refused at most ``MAX_REJECTED`` of its pushes."""
    return abs(result["relative_error"]) <= MAX_ERROR and result["rejected_share"] <= MAX_REJECTED


def check_simulated(config: str = "ufldl-sae", workers: int = 1000, shards: int = 100, steps: int = 10000,
                    sets: list[Override] | tuple[Override, ...] = (), out: str | Path | None = None,
                    check: Callable[[RunConfig], RunConfig] = resolve) -> dict[str, Any]:
    """Train ``config`` on the simulated cluster (``workers``, ``shards``, ``steps``; ``sets`` on top),
    then :func:`compare_run`; adds the wall time of the whole run and of its event loop. ``check``: the
    config's check (the CLI's refuses what ``downpour train`` refuses); resolves it."""
    owned = {"cluster.workers": "--replicas", "cluster.shards": "--shards", "train.steps": "--steps"}
    for path, value in map(parse_override, sets):
        key = ".".join(path)
        if key in owned:   # the --set comes last and wins: --replicas 50 with --set cluster.workers=5 runs 5 workers
            # (the flag with the value set, not a bare "--replicas (N); give that instead")
            raise ConfigError(f"--set {key}: the check sets it from {owned[key]}; give "
                              f"{whole_flag(owned[key], value)} instead")
    overrides = [*CHECK_RECIPE, FlagValue("cluster.workers", workers, f"--replicas {workers}"),
                 FlagValue("cluster.shards", shards, f"--shards {shards}"), FlagValue("train.steps", steps, f"--steps {steps}"),
                 *sets]
    cfg = check(load_config(config, overrides))
    for key, value, wanted in (("cluster.algorithm", cfg.cluster.algorithm, "downpour"),
                               ("cluster.runner", cfg.cluster.runner, "simulated")):
        if value != wanted:
            raise ConfigError(f"{key} = {value!r}: the staleness check runs Downpour on the simulated runner "
                              f"({key} = {wanted!r})", key=key)
    if out and (Path(out) / "config.toml").is_file() and not RunDir(out).never_started():   # (not "--resume it")
        raise RunExistsError(f"--out {str(out)!r} already holds a run: pick another --out (a finished simulated run "
                             f"there is compared by `downpour plan --check-run {pasted(out)}`)")
    with tempfile.TemporaryDirectory(prefix=prefix("plan")) as tmp:    # (swept by a study once this process is gone)
        path = Path(out) if out else Path(tmp) / "run"
        t0 = time.perf_counter()
        # (an --out named: locked before it is taken over, and a `downpour train --resume` of it refused while it trains)
        try:
            with training_in(path, lambda: RunDir.create(path, cfg)) as run:
                summary = run_cluster(cfg, run)
        except FolderBusy as busy:   # (its words name `downpour train --resume`: wrong for the same check again, and
            # for a folder being analysed, not trained)
            who = ("the same check started from another terminal, or a `downpour train`" if busy.doing == "trained"
                   else "a `downpour analyze`, `report` or `crossfit` reading it")
            raise RunExistsError(f"--out {str(out)!r} is being {busy.doing} now by another downpour process ({who}): "
                                 "pick another --out; once it "
                                 f"ends, `downpour plan --check-run {pasted(out)}` compares a simulated run there") from None
        wall = time.perf_counter() - t0
        result = compare_run(path)
    result.update({"config": config, "seconds": round(wall, 1), "event_loop_seconds": summary["seconds"],
                   "setup_seconds": round(wall - summary["seconds"], 1)})
    if not out:
        result["run"] = None       # the temporary directory is gone
    return result
