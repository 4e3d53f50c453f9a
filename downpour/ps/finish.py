"""How a cluster run's go ends, what it leaves in the run directory: the model the shards hold saved (model.json's
``versions``, ``first_trained``), ``staleness.json``, ``data.json`` and ``cluster.json`` (the summary: versions,
accepted/applied/rejected pushes, refused pushes, lost workers, shard events), and the errors a run ends with (every
worker lost, no finite push). :func:`finish` ends a go that trained; :func:`save_at_end` a resume that finds its run
stopped after its last push, before its model was saved. Called by :func:`~downpour.ps.cluster.run_cluster`.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from downpour.config import RunConfig
from downpour.data.telemetry import record_data, report_at, run_data_info
from downpour.data.summary import summary_data
from downpour.errors import Diverged, RunError
from downpour.parallel.partition import merge_model
from downpour.ps.checkpoint import ShardState
from downpour.ps.compensation import make_compensation
from downpour.ps.coordinator import Coordinator
from downpour.ps.lost_shards import shard_events
from downpour.ps.recorder import Recorder, write_staleness
from downpour.ps.seeds import batch_seed, seeds_local_first
from downpour.ps.setup import ClusterSetup
from downpour.ps.sim_state import saved_buffers
from downpour.train.divergence import first_entry
from downpour.train.rundir import RunDir

log = logging.getLogger("downpour.ps.cluster")   # run_cluster's logger: its records go where run_cluster's do


def save_at_end(setup: ClusterSetup, run: RunDir, shards: list[Any], coord: Coordinator, start: int,
                 meta: dict[str, Any]) -> dict[str, Any]:
    """A run stopped after its last push, before its model was saved: the model, staleness.json, cluster.json
    and data.json from its checkpoint (``meta``), a sync round still open there applied first (as the run's end would
    have). Its ``streams``: the simulator's workers' stream positions there (a Ray resume starts them afresh), seeded
    as :func:`~downpour.ps.seeds.seeds_local_first` reads the checkpoint."""
    streams, local_first = meta.get("streams"), seeds_local_first(meta)
    for s in shards:
        s.flush()
    states = [s.state_dict() for s in shards]
    cfg, n = setup.cfg, setup.cfg.cluster.workers
    data_info = run_data_info(setup.data.info, [
        report_at(setup.data.shard(w, n), cfg.train.batch_size, batch_seed(cfg.seed, w, s["seed_step"], local_first), s["position"])
        for w, s in enumerate(streams or [])], n)
    record_data(run, cfg.data, data_info)
    tally = meta.get("recorder") or {}       # the run's push counts at its checkpoint, its last push's
    report = _save_model(setup, run, states, coord, start, data_info, saved_buffers(meta), tally.get("first_trained"))
    summary = {"steps": start, "resumed_from": start, "runner": setup.cfg.cluster.runner, "final_loss": run.last_loss(),
               **_counts(states, report), **_refused(tally), "seconds": round(meta["elapsed"], 2),
               "seconds_this_go": 0.0, "run": str(run.path)}      # (nothing trained: the model from its checkpoint)
    run.write_json("cluster.json", {**summary, **_partition_shards(setup)})
    # (a run none of whose pushes was finite fails here, as its uninterrupted end does)
    _none_finite(setup.cfg, run, tally, report)
    return summary


def _partition_shards(setup: ClusterSetup) -> dict[str, Any]:
    """cluster.json's ``partition_shards`` for a model-parallel run (each partition's shards, ``setup.shards_of``:
    the report's per-partition staleness reads it), {} otherwise; cluster.json only, not the printed summary."""
    return {"partition_shards": setup.shards_of} if setup.cfg.cluster.partitions > 1 else {}


def _save_model(setup: ClusterSetup, run: RunDir, states: list[ShardState], coord: Coordinator, step: int,
                data_info: dict[str, Any], buffers: dict[str, torch.Tensor] | None = None,
                first: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model the shards' ``states`` hold, saved at ``step``, and staleness.json; returns the staleness report.
    ``buffers``: a worker's replica's (the driver's ``info()["model_buffers"]``: an RBM's persistent chains), saved
    in the driver's copy's stead (a run saved from its checkpoint: the simulator's whole state's, ``saved_buffers``);
    none (no live worker, a checkpoint that keeps no worker's: Ray's) leaves the driver's. ``first``: the run's first
    accepted push alone (:attr:`~downpour.ps.recorder.Recorder.first`), model.json's ``first_trained``."""
    setup.layout.vector_to_params(torch.cat([t["params"] for t, _ in states]), setup.model)
    with torch.no_grad():
        for name, b in setup.model.named_buffers():
            if name in (buffers or {}):
                b.copy_(buffers[name])
    setup.model.set_stage(None)
    report = write_staleness(run, setup.cfg, states, coord)
    run.save_model(merge_model(setup.model), step, {"runner": setup.cfg.cluster.runner, "data": data_info,
                                                    "versions": [m["version"] for _, m in states],
                                                    **first_entry(first)})
    return report


def _none_finite(cfg: RunConfig, run: RunDir, tally: dict[str, int], report: dict[str, Any]) -> None:
    """:class:`~downpour.errors.Diverged` where some of a run's pushes were made and none carried a finite gradient a
    shard accepted (``tally``: :meth:`~downpour.ps.recorder.Recorder.tally`'s counts, a missing one 0; ``report``:
    staleness.json's)."""
    pushes, skipped, steps = (tally.get(k, 0) for k in ("pushes", "skipped", "steps"))
    if not pushes or tally.get("finite_pushes", 0):
        return
    lr_key = "cluster.lr" if cfg.cluster.lr else "train.lr"     # the server's rate (a preset may set cluster.lr)
    rejected = ", ".join(f"{n} {reason}" for reason, n in report["rejected"].items()) or "none"
    raise Diverged(f"none of the {pushes} pushes of this run carried a finite gradient a shard accepted: "
                   f"{skipped} of their {steps} worker steps had a non-finite cost or gradient "
                   f"(shard rejections: {rejected}); lower {lr_key} or check the data; "
                   f"the run is saved in {str(run.path)!r}")


def _counts(states: list[ShardState], report: dict[str, Any]) -> dict[str, Any]:
    """The summary's push counts and staleness. Every push goes to every shard, which accepts or rejects it: one
    shard's count is the pushes workers made (the largest, should a push have reached only some shards as its
    worker was lost). A slice a killed writer staged late (``fenced``: ``ShardServer.new_inbox``) is no push."""
    return {"pushes": max(m["accepted"] + sum(n for why, n in m["rejected"].items() if why != "fenced")
                          for _, m in states),
            "versions": [m["version"] for _, m in states], "accepted": [m["accepted"] for _, m in states],
            "applied": [m["applied"] for _, m in states], "rejected": report["rejected"],
            **({"uncorrected": [m["uncorrected"] for _, m in states]} if "uncorrected" in states[0][1] else {}),
            "mean_staleness": report["overall"]["mean"], "max_staleness": report["overall"]["max"]}


def _refused(tally: dict[str, int]) -> dict[str, Any]:
    """``{"refused_pushes": {"refused": N, "of": M}}`` where most of a run's pushes (``tally``: as :func:`_none_finite`)
    carried no finite gradient a shard accepted (it diverged: ``runners.train``'s one warning says so, read from
    cluster.json by :func:`~downpour.train.divergence.recorded`), else nothing. In cluster.json and the summary alike,
    a resume's too that finds the run's pushes all made (:func:`save_at_end`)."""
    pushes = tally.get("pushes", 0)
    refused = pushes - tally.get("finite_pushes", 0)
    return {"refused_pushes": {"refused": refused, "of": pushes}} if refused * 2 > pushes else {}


def _idle_compensation(cfg: RunConfig, max_staleness: int, pushes: int) -> str | None:
    """Why cluster.compensation changed none of the run's ``pushes`` (warned, and kept in cluster.json), or None.
    Known only once the run is over: its staleness comes of the delays and the workers' speeds."""
    c = cfg.cluster
    why = make_compensation(c.compensation, c.dc_lambda).idle_at(max_staleness) if pushes else None
    if why:
        log.warning("cluster.compensation = %r changed none of this run's %d pushes: %s; it trained as with "
                    "cluster.compensation = 'none'", c.compensation, pushes, why)
    return why


def finish(setup: ClusterSetup, run: RunDir, states: list[ShardState], coord: Coordinator, recorder: Recorder,
           start: int, info: dict[str, Any]) -> dict[str, Any]:
    """The end of a go that trained (``states``: the shards' final ones; ``start``: the step the user's run or resume
    began at; ``info``: the driver's ``info()``): the model, data.json, staleness.json and cluster.json saved; returns
    the summary, or raises :class:`~downpour.errors.RunError` where every worker was lost before the last step."""
    cfg = setup.cfg
    data_info = run_data_info(setup.data.info, info.pop("data_workers", []), cfg.cluster.workers)
    stopped = {"stopped": {"step": coord.done, "steps": coord.total, "by": "every worker was lost"}} \
        if coord.done < coord.total and not coord.live else {}     # (the error below says so; the file too)
    if record_data(run, cfg.data, {**data_info, **stopped}):   # files: each worker's reads (streamed), the skipped ones
        info["data"] = summary_data(data_info)
    report = _save_model(setup, run, states, coord, coord.done, data_info, info.pop("model_buffers", {}),
                         recorder.first)
    for e in _final_losses(coord) if coord.live else ():     # (with none left, the error below names every loss)
        log.warning("worker %d was lost at step %d%s (%s); the run went on without it", e["worker"], e["step"],
                    _on(e), e["reason"])
    counts = _counts(states, report)
    idle = _idle_compensation(cfg, report["overall"]["max"], counts["pushes"])
    tally, elapsed = recorder.tally(), recorder.elapsed()
    summary = {"steps": coord.done, "resumed_from": start, "runner": cfg.cluster.runner,
            "final_loss": run.last_loss(), **counts, "lost_workers": list(coord.lost), "seconds": round(elapsed, 2),
            "seconds_this_go": round(elapsed - recorder.elapsed0, 2), "run": str(run.path),
            "checkpoints": recorder.checkpoints, "checkpoint_seconds": round(recorder.checkpoint_seconds, 3),
            **({"compensation_idle": idle} if idle else {}), **_refused(tally), **shard_events(coord.events),
            **info}
    # placement, counts, lost workers; and where every worker was lost, the stop, as data.json says it (the runner's
    # summary says how its run ended, whatever its data)
    run.write_json("cluster.json", {**summary, **stopped, **_partition_shards(setup)})
    summary.pop("profile", None)             # per-phase timers: cluster.json only, not the printed summary
    if stopped:
        raise RunError(f"every worker was lost ({', '.join(_loss_reasons(coord))}) after {coord.done} of {coord.total} steps; "
                       f"what was done is saved in {str(run.path)!r} ({_no_worker_left(cfg)})")
    _none_finite(cfg, run, tally, report)
    return summary


def _no_worker_left(cfg: RunConfig) -> str:
    """What a run every worker was lost from can do. On the simulator its --resume goes on with them lost (its
    cluster.faults lost them, and a resume keeps its config, cluster.restarts too), so it is not told to resume, which
    would stop again at once."""
    if cfg.cluster.runner == "simulated":
        return ("a --resume goes on without them: to train past this step, start a new run with fewer worker losses in "
                "cluster.faults, or cluster.restarts to restart them")
    return "resume with --resume, or set cluster.restarts"


def _final_losses(coord: Coordinator) -> list[dict[str, Any]]:
    """The last ``worker-lost`` event of each worker lost for good (in ``coord.lost``): a worker lost again has
    earlier ones, each restarted, which are not said: else "worker 1 was lost at step 12 (...); the run went on
    without it" would be said of one restarted at step 22 and lost again at step 30 (cluster.faults)."""
    last = {e["worker"]: e for e in coord.events if e["event"] == "worker-lost"}
    return [e for e in coord.events if e["event"] == "worker-lost" and last[e["worker"]] is e
            and e["worker"] in coord.lost]   # (in step order)


def _loss_reasons(coord: Coordinator) -> list[str]:
    return [f"worker {e['worker']} at step {e['step']}{_on(e)}: {e['reason']}" for e in _final_losses(coord)]


def _on(lost: dict[str, Any]) -> str:
    """Where a ``worker-lost`` event's worker ran, " on node abcd1234 at 10.0.0.5" (Ray's; "" on the simulator)."""
    return f" on {lost['where']}" if lost.get("where") else ""
