"""What a Sandblaster run keeps in ``sandblaster.json``: its summary, written whole where the command ends
(:func:`summary`), and, where an error or a stop ends it first, the same record so far (:func:`record_stopped`):
where each actor ran (Ray's ``placement``, ``node_ids``, ``node_addresses``, ``lost_workers``), how far it got (the
iterations, evaluations and units done) and ``stopped`` {step, steps, by}, as Downpour's cluster.json says a stopped
run's (:func:`~downpour.ps.lost_shards.record_stop`), so that which node ran what is not only in its error's text
(a shard's node removed on a 3-node Ray). A run that failed before 2026-12-07 has no sandblaster.json.

    summary(cfg, run, progress, start, last, info, examples, stop)    # the dict the runner returns and writes
    record_stopped(run, cfg, progress, start, pool, examples, err)    # best effort, never raises
"""
from __future__ import annotations

import logging
import math
from typing import Any

from downpour.config import RunConfig
from downpour.errors import stopped_entry
from downpour.train.rundir import RunDir

log = logging.getLogger(__name__)


def summary(cfg: RunConfig, run: RunDir, progress: Any, start: int, last: dict[str, Any] | None,
            info: dict[str, Any], examples: int, stop: dict[str, Any] | None) -> dict[str, Any]:
    """The run's summary (sandblaster.json less its ``batches``) from ``progress`` (the runner's ``_Progress``:
    iteration, counts, batches, stops, elapsed, vtime), ``start`` (the iteration this command began at), ``last`` (its
    last metrics row; None: the run's last), the pool's ``info`` (Ray's placement) and the data's ``examples``;
    ``stop``: why it ended (None for a run an error or a stop cut short: it did not end by L-BFGS's rule nor its
    steps; :func:`record_stopped` passes L-BFGS's own stop where the error came after it, in the last save)."""
    c, batches = progress.counts, progress.batches
    # train_steps: the train.steps it ran to, what a resume past a stop must ask more than (RunDir.stopped_for_good)
    out = {"steps": progress.iteration, "train_steps": cfg.train.steps, "resumed_from": start,
           "runner": cfg.cluster.runner, "algorithm": "sandblaster",
           "final_loss": last["loss"] if last else run.last_loss(), "converged": progress.converged,
           "stop": stop, "stops": progress.stops, "samples_batches": 0 < cfg.sandblaster.batch < examples,
           "evaluations": len(batches), "units_dispatched": c.dispatched, "backups": c.backups,
           "backups_won": c.backups_won, "duplicates_dropped": c.duplicates, "examples": c.examples,
           **c.per_worker_summary(cfg.cluster.workers),
           "batch_time_mean": _mean(b["span"] for b in batches), "batch_wall_mean": _mean(b["wall"] for b in batches),
           "time_unit": "steps (virtual)" if cfg.cluster.runner == "simulated" else "seconds",
           "seconds": round(progress.elapsed, 2),
           "seconds_this_go": round(progress.elapsed - progress.elapsed_before, 2), "run": str(run.path), **info}
    if cfg.cluster.runner == "simulated":
        out["vtime"] = round(progress.vtime, 6)
    return out


def record_stopped(run: RunDir, cfg: RunConfig, progress: Any, start: int, pool: Any, examples: int,
                   err: BaseException) -> None:
    """sandblaster.json for a command that ``err`` ended after its pool started (a lost shard, every worker lost,
    Ctrl-C): :func:`summary` at the last iteration done, with ``pool``'s info (Ray's placement), ``stopped`` saying
    at which of ``cfg.train.steps`` and by what (:func:`~downpour.errors.stopped_by`: the error's type and message).
    A resume that ends rewrites it whole. Never raises: the stop's own error is the one the user must see."""
    try:
        record = summary(cfg, run, progress, start, None, pool.info(), examples, progress.stop)
        stopped = stopped_entry(progress.iteration, cfg.train.steps, err)
        run.write_json("sandblaster.json", {**record, "stopped": stopped, "batches": progress.batches})
    except Exception as failure:  # noqa: BLE001 -- a full disk, say: said, not raised
        log.warning("the run's sandblaster.json could not be written on the way out (%s: %s)",
                    type(failure).__name__, failure)


def _mean(values: Any) -> float | None:
    values = list(values)
    return round(math.fsum(values) / len(values), 6) if values else None


def failed_searches(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The stops in a run's ``summary`` that were line searches failed for real (``reason`` "line search": a greedy
    stage's, or the run's end) in the command that wrote it: those at iterations past ``resumed_from``, and the end's
    when a resume only saved the model; [] for a run that is not Sandblaster's. (A stopped run's ``stop`` is None.)"""
    if summary.get("algorithm") != "sandblaster":
        return []
    ours = [s for s in summary["stops"] if s["reason"] == "line search" and s["iteration"] > summary["resumed_from"]]
    end = summary["stop"]
    return ours + [end] if end is not None and end["reason"] == "line search" and end not in ours else ours
