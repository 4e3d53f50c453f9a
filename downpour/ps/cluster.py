"""Cluster runs: set up shards, workers and a coordinator from the config, run them with a driver
(the simulated cluster or Ray), and write the same run directory as the local runner.

    summary = run_cluster(cfg, RunDir.create(out, cfg))                # cfg.cluster.runner: simulated | ray
    summary = run_cluster(cfg, RunDir.open(out), resume=True)          # from checkpoints/server.*

The run directory gains ``staleness.json`` (histograms per worker and per shard), per-push
``worker`` / ``staleness`` / ``clock_gap`` / ``version`` fields in metrics.jsonl, and server
checkpoints ``checkpoints/server.{safetensors,json}``, and ``cluster.json`` (the summary: versions,
accepted/applied/rejected pushes, lost workers, on Ray the node of every actor).
"""
from __future__ import annotations

import logging
import time
from typing import Any

import torch

from downpour.config import ConfigError, RunConfig
from downpour.data.opened import Opened
from downpour.data.pipeline import (check_resumed_on, cut_patches, keep_cut, record_data, record_stopped, report_at,
                                    run_data_info, say_resumed_at)
from downpour.data.summary import summary_data
from downpour.errors import Diverged, DownpourError, RunError
from downpour.parallel.partition import merge_model, partition_layouts
from downpour.ps.checkpoint import SERVER, ShardState, load_server, next_seqs, restoring
from downpour.ps.compensation import make_compensation
from downpour.ps.coordinator import Coordinator
from downpour.ps.lost_shards import checkpoint_step, go_events, numbered, record_stop, shard_event, shard_events
from downpour.ps.recorder import Driver, Recorder, ShardLost, write_staleness
from downpour.ps.setup import ClusterSetup, batch_seed, make_shards, seeds_local_first, set_up_cluster
from downpour.ps.sim_state import saved_buffers
from downpour.train.checkpoint import CheckpointError
from downpour.train.divergence import first_entry
from downpour.train.rundir import RunDir
from downpour.train.setup import stages_of
from downpour.train.signals import Terminated, signals_held, stop_record

log = logging.getLogger(__name__)

# what a lost shard's stop writes (no checkpoint: the shards are gone), as the line of a Ctrl-C meanwhile names it
LOST_RECORD = "the lost shard's stop record (cluster.json, staleness.json)"


def _driver(runner: str) -> type:
    if runner == "simulated":
        from downpour.ps.simulated import SimulatedCluster

        return SimulatedCluster
    from downpour.ps.cluster_on_ray import RayCluster  # Ray only when it is asked for

    return RayCluster


def run_cluster(cfg: RunConfig, run: RunDir, resume: bool = False, opened: Opened | None = None) -> dict[str, Any]:
    """Train ``cfg`` on the simulated cluster or on Ray; returns a summary dict.

    A lost shard (:class:`ShardLost`) does not end the run: every shard is restarted from the last
    server checkpoint (``cluster.checkpoint_seconds`` apart on Ray), losing at most the updates since,
    up to ``cluster.shard_restarts`` times."""
    # the run's go events: a resumed run's (staleness.json), then this command's resumes, restarts and stop
    events = go_events(run) if resume else []
    began: list[int] = []                      # the step the user's own run or resume began at (the first go's)
    lost: ShardLost | None = None              # the loss a restart is for
    restarted: dict[str, Any] | None = None    # its shards-restarted event, once appended
    up: list[dict[str, Any]] = []              # each go whose driver started: which Ray it ran on (_run_once)

    def recorded(err: ShardLost, restarts: int, **how: Any) -> str:
        """The loss's stop (record_stop), on the last started go's Ray (a failed restart's: the go before it)."""
        return record_stop(run, cfg, events, err, restarts, began[0] if began else 0, up[-1] if up else None, **how)

    for attempt in range(cfg.cluster.shard_restarts + 1):
        tried = len(up)                        # (more after _run_once: this go's driver started)
        try:
            if lost is not None:   # (in the try: a stop or an error while it is prepared is the restart's, below)
                resume, restarted = _restart_from(run, events, lost)
            return _run_once(cfg, run, resume, events, began, up, opened)
        except ShardLost as err:
            lost, restarted = err, None
            if attempt == cfg.cluster.shard_restarts:
                with stop_record(LOST_RECORD):    # (a Ctrl-C meanwhile waits: until 2026-12-06 it cut the record)
                    why = recorded(err, attempt)
                raise RunError(why) from None
        except DownpourError as err:
            # a restart that cannot start (the head of a joined cluster gone: it cannot rejoin; a ConfigError: a GPU
            # node gone, too few GPUs; its data or checkpoint unreadable) stops the run as the loss would have,
            # recorded, the restart that never started neither among its events nor counted (until 2026-12-05 such
            # an error ended the run unrecorded, a ConfigError, DataError or CheckpointError until 2026-12-06). A
            # started go's own error (every worker lost, Diverged) is itself.
            if lost is None or len(up) > tried:
                raise
            with stop_record(LOST_RECORD):
                _unstarted(events, restarted)
                why = recorded(lost, attempt - 1, failed=str(err) or type(err).__name__)
            raise RunError(why) from None
        except KeyboardInterrupt as interrupt:
            # (and SIGTERM) a stop while the shards restart (their go not started), or while the go a lost shard
            # ended winds up, is recorded as a failed restart is (until 2026-12-06 the loss went unrecorded); the
            # interrupt itself goes on (the CLI's exit status, 130 or 143, as for any stop)
            with stop_record(LOST_RECORD):
                if len(up) == tried and lost is not None:
                    _unstarted(events, restarted)
                    log.warning("%s", recorded(lost, attempt - 1, how=_how(interrupt)))
                elif len(up) > tried and (gone := _loss_under(interrupt)) is not None:
                    # the go a lost shard ended, winding up: its restart interrupted (none left: the stop the loss was)
                    how = None if attempt == cfg.cluster.shard_restarts else _how(interrupt)
                    log.warning("%s", recorded(gone, attempt, how=how))
            raise
    raise AssertionError("unreachable")


def _restart_from(run: RunDir, events: list[dict[str, Any]], lost: ShardLost) -> tuple[bool, dict[str, Any]]:
    """Every shard restarted after ``lost``: from the server checkpoint, or from step 0 where there is none (the metrics
    dropped); a ``shards-restarted`` event appended to ``events``. Returns whether the go resumes, and the event."""
    resume = (run.checkpoints / f"{SERVER}.json").is_file()
    if not resume:
        run.truncate_metrics(0)        # no checkpoint yet: start again from step 0
    step = checkpoint_step(run) or 0
    log.warning("%s; restarting every shard from %s", lost,
                f"the checkpoint at step {step}" if resume else "the start (no checkpoint yet)")
    events.append(restarted := shard_event(events, "shards-restarted", step, str(lost), **lost.placed))
    return resume, restarted


def _unstarted(events: list[dict[str, Any]], restarted: dict[str, Any] | None) -> None:
    """A restart whose go never started: its ``shards-restarted`` event (if appended yet) taken off ``events``."""
    if restarted in events:
        events.remove(restarted)


def _how(stop: KeyboardInterrupt) -> str:
    """What stopped the run, for its ``shards-lost`` event (Ray re-raises a SIGTERM as a bare KeyboardInterrupt while
    a driver waits for its actors to start)."""
    return "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted (Ctrl-C or SIGTERM)"


def _loss_under(stop: BaseException) -> ShardLost | None:
    """The lost shard whose go's wrap-up (its checkpoint, its driver's close) ``stop`` interrupted, if any."""
    cause = stop.__context__
    while cause is not None and not isinstance(cause, ShardLost):
        cause = cause.__context__
    return cause


def _run_once(cfg: RunConfig, run: RunDir, resume: bool, go_log: list[dict[str, Any]] | None = None,
              began: list[int] | None = None, up: list[dict[str, Any]] | None = None,
              opened: Opened | None = None) -> dict[str, Any]:
    """One go at the run; ``go_log``: the run's go events before it (:mod:`downpour.ps.lost_shards`: restarts, a
    stop, resumes; the checkpoint it resumes from may predate them), its own ``resumed`` appended; ``began``: the
    first go's start step, noted by it (a restart resumes from a checkpoint itself, and the summary's
    ``resumed_from`` is the user's); ``up``: appended to once the go's driver has started (an error before it: the go
    could not start), with which Ray it ran on (its ``ray_info``, cluster.json's ``ray``; {} off Ray); ``opened``:
    the run's data read already (the first go takes it)."""
    go_log, began = go_log if go_log is not None else [], began if began is not None else []
    setup = set_up_cluster(cfg, resume or run.again, opened)   # (a run trained again at a --resume keeps its workers)
    init, c = setup.layout.params_to_vector(setup.model), cfg.cluster
    restored, meta = None, {"step": 0, "clocks": {}, "elapsed": 0.0, "events": []}
    if resume:
        try:
            restored, meta = load_server(run.checkpoints / SERVER, meta_keys=("step", "clocks", "elapsed", "events"))
        except CheckpointError as err:
            raise CheckpointError(f"cannot resume {str(run.path)!r}: {err}") from None
        if len(restored) != c.shards:
            raise ConfigError(f"cannot resume {str(run.path)!r} with cluster.shards={c.shards}: it was run with {len(restored)}")
        if c.runner == "simulated" and run.config.data.pipeline == "auto":   # recorded before the choice was
            check_resumed_on(setup.data, bool(meta.get("streams")), run.path / "config.toml")
        saved = [{"patches": meta["patches_per_image"]}] if "patches_per_image" in meta else []   # (Ray: all there is)
        streams = [s and s["position"] for s in meta.get("streams") or []]
        setup.data = keep_cut(setup.data, streams + saved, cfg.data, cfg.seed, run.path,
                              run.checkpoints / f"{SERVER}.json")
        say_resumed_at(setup.data, streams, meta["step"], c.workers)
    start = meta["step"]
    began[:] = began or [start]
    stage_of = stages_of(cfg, setup.model.n_stages)
    coord = Coordinator(setup.gate, c.workers, cfg.train.steps, c.n_push, start_step=start,
                        warm_start=c.warm_start, clocks={int(w): v for w, v in meta["clocks"].items()},
                        depth=(c.queue_depth or 2) if c.runner == "ray" else 1, stage_of=stage_of)
    coord.events = list(meta["events"]) + [e for e in go_log if e not in meta["events"]]
    coord.max_gap = meta.get("max_clock_gap", 0)
    if resume and c.runner == "ray":    # the steps a Ray stop left unapplied: handed out first (the simulator's
        with restoring(run.checkpoints / SERVER):   # are in its whole state); a damaged range or count: named
            coord.restore_unapplied(meta, run.checkpoints / f"{SERVER}.json")
    shards = make_shards(setup, init, coord.live)
    if restored:
        with restoring(run.checkpoints / SERVER):
            for s, (tensors, m) in zip(shards, restored):
                s.load_state_dict(tensors, m)
    if run.unsaved_at_end(cfg, start, resume):
        return _save_at_end(setup, run, shards, coord, start, meta)
    # a finished run goes on (--steps): its model was saved at its own last step (read before begin() saves
    # the new steps; a run stopped when every worker was lost saved its model at the checkpoint too)
    if resume and run.model_step() == start == run.config.train.steps:
        coord.events.append({"event": "extended", "step": start})
    # the driver first: if Ray cannot start or join, nothing is written: a new run's folder stays one that never
    # started (the same command, fixed, takes it over), a resumed one as it was (its config, metrics and analysis;
    # begin() wrote them first, and an unreachable --address went into its config.toml)
    asked = time.perf_counter()     # the start's cost: joining Ray, every actor up (the run's seconds count after)
    try:
        driver: Driver = _driver(c.runner)(setup, shards, coord, stage_of, start,
                                           next_seqs(restored) if restored else {}, meta if resume else None)
    except CheckpointError as err:      # the simulator's own part of the checkpoint, damaged
        raise CheckpointError(f"cannot resume {str(run.path)!r}: {err}") from None
    if up is not None:
        up.append(getattr(driver, "ray_info", None) or {})
    if resume:      # said by every cluster runner alike (the simulator said nothing until 2026-12-05); kept with the
        # go events, so a go a lost shard stops before its next checkpoint keeps it (it lost it until 2026-12-05);
        # said once its driver is up: a shard restart whose driver failed said "resuming" too (until 2026-12-06)
        log.info("resuming %s at step %d", run.path, start)
        go_log.append(coord.resumed(n=numbered(go_log, ("resumed",))))
    try:
        run.begin(cfg, setup.data.preprocess, start, resume, setup.data.info.get("classes"), driver.nodes)
        if driver.nodes is not None:    # Ray's: a restarted actor's node or install, rewritten (RayCluster._came_up)
            driver.on_nodes = run.record_nodes
        with restoring(run.checkpoints / SERVER):
            recorder = Recorder(cfg, run, coord, meta["elapsed"], meta.get("recorder"), cut_patches(setup.data),
                                whole=resume and "sim" in meta, params=setup.layout,
                                words=partition_layouts(setup.model))
    except BaseException:
        driver.close()
        raise
    try:
        recorder.driver = driver
        recorder.mark_started()   # every process is up: rates and times count from here
        driver.run(recorder.on_push)
        with signals_held():      # the last push's checkpoint first: a stop in the wrap-up after it lost the run
            states, info = driver.snapshot(), driver.info()
            info["start_seconds"] = round(recorder.t0 - asked, 2)   # (until 2026-12-06 not recorded)
            recorder.checkpoint(states)
    except BaseException as err:
        with stop_record():              # (a second Ctrl-C waits for it: until 2026-12-06 it cut the checkpoint)
            recorder.save_on_failure(err)   # while the driver's shards are still up
            record_stopped(run.write_json, cfg.data, setup.data.info, driver.data_reports, coord.done, coord.total, err,
                           cfg.cluster.workers)
        raise
    finally:
        try:
            driver.close()
        finally:
            recorder.close()   # (until 2026-12-06 a driver's close that raised left the recorder open)
    return _finish(setup, run, states, coord, recorder, began[0], info)


def _save_at_end(setup: ClusterSetup, run: RunDir, shards: list[Any], coord: Coordinator, start: int,
                 meta: dict[str, Any]) -> dict[str, Any]:
    """A run stopped after its last push, before its model was saved: the model, staleness.json, cluster.json
    and data.json from its checkpoint (``meta``), a sync round still open there applied first (as the run's end would
    have). Its ``streams``: the simulator's workers' stream positions there (a Ray resume starts them afresh), seeded
    as :func:`~downpour.ps.setup.seeds_local_first` reads the checkpoint."""
    streams, local_first = meta.get("streams"), seeds_local_first(meta)
    for s in shards:
        s.flush()
    states = [s.state_dict() for s in shards]
    cfg, n = setup.cfg, setup.cfg.cluster.workers
    data_info = run_data_info(setup.data.info, [
        report_at(setup.data.shard(w, n), cfg.train.batch_size, batch_seed(cfg.seed, w, s["seed_step"], local_first), s["position"])
        for w, s in enumerate(streams or [])], n)
    record_data(run.write_json, cfg.data, data_info)
    tally = meta.get("recorder") or {}       # the run's push counts at its checkpoint, its last push's
    report = _save_model(setup, run, states, coord, start, data_info, saved_buffers(meta), tally.get("first_trained"))
    summary = {"steps": start, "resumed_from": start, "runner": setup.cfg.cluster.runner, "final_loss": run.last_loss(),
               **_counts(states, report), **_refused(tally), "seconds": round(meta["elapsed"], 2), "run": str(run.path)}
    run.write_json("cluster.json", {**summary, **_partition_shards(setup)})
    # (a run none of whose pushes was finite fails here as its uninterrupted end does: until 2026-12-06 it was saved)
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
    cluster.json by :func:`~downpour.train.divergence.recorded`), else nothing. In cluster.json and the summary alike
    since 2026-12-06: until then it was in the printed summary alone, and not in a resume's that found the run's
    pushes all made (``_save_at_end``)."""
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


def _finish(setup: ClusterSetup, run: RunDir, states: list[ShardState], coord: Coordinator, recorder: Recorder,
            start: int, info: dict[str, Any]) -> dict[str, Any]:
    cfg = setup.cfg
    data_info = run_data_info(setup.data.info, info.pop("data_workers", []), cfg.cluster.workers)
    stopped = {"stopped": {"step": coord.done, "steps": coord.total, "by": "every worker was lost"}} \
        if coord.done < coord.total and not coord.live else {}     # (the error below says so; the file too)
    if record_data(run.write_json, cfg.data, {**data_info, **stopped}):   # files: each worker's reads (streamed), the skipped ones
        info["data"] = summary_data(data_info)
    report = _save_model(setup, run, states, coord, coord.done, data_info, info.pop("model_buffers", {}),
                         recorder.first)
    for e in _final_losses(coord) if coord.live else ():     # (with none left, the error below names every loss)
        log.warning("worker %d was lost at step %d%s (%s); the run went on without it", e["worker"], e["step"],
                    _on(e), e["reason"])
    counts = _counts(states, report)
    idle = _idle_compensation(cfg, report["overall"]["max"], counts["pushes"])
    tally = recorder.tally()
    summary = {"steps": coord.done, "resumed_from": start, "runner": cfg.cluster.runner,
            "final_loss": run.last_loss(), **counts, "lost_workers": list(coord.lost), "seconds": round(recorder.elapsed(), 2), "run": str(run.path),
            "checkpoints": recorder.checkpoints, "checkpoint_seconds": round(recorder.checkpoint_seconds, 3),
            **({"compensation_idle": idle} if idle else {}), **_refused(tally), **shard_events(coord.events),
            **info}
    run.write_json("cluster.json", {**summary, **_partition_shards(setup)})  # placement, counts, lost workers
    summary.pop("profile", None)             # per-phase timers: cluster.json only, not the printed summary
    if coord.done < coord.total and not coord.live:
        raise RunError(f"every worker was lost ({', '.join(_loss_reasons(coord))}) after {coord.done} of {coord.total} steps; "
                       f"what was done is saved in {str(run.path)!r} ({_no_worker_left(cfg)})")
    _none_finite(cfg, run, tally, report)
    return summary


def _no_worker_left(cfg: RunConfig) -> str:
    """What a run every worker was lost from can do. On the simulator its --resume goes on with them lost (its
    cluster.faults lost them, and a resume keeps its config, cluster.restarts too): until 2026-12-06 it was told to
    resume, and stopped again at once."""
    if cfg.cluster.runner == "simulated":
        return ("a --resume goes on without them: to train past this step, start a new run with fewer worker losses in "
                "cluster.faults, or cluster.restarts to restart them")
    return "resume with --resume, or set cluster.restarts"


def _final_losses(coord: Coordinator) -> list[dict[str, Any]]:
    """The last ``worker-lost`` event of each worker lost for good (in ``coord.lost``): a worker lost again has
    earlier ones, each restarted. Until 2026-12-06 each of its losses was said: "worker 1 was lost at step 12 (...);
    the run went on without it" of one restarted at step 22 and lost again at step 30 (cluster.faults)."""
    last = {e["worker"]: e for e in coord.events if e["event"] == "worker-lost"}
    return [e for e in coord.events if e["event"] == "worker-lost" and last[e["worker"]] is e
            and e["worker"] in coord.lost]   # (in step order)


def _loss_reasons(coord: Coordinator) -> list[str]:
    return [f"worker {e['worker']} at step {e['step']}{_on(e)}: {e['reason']}" for e in _final_losses(coord)]


def _on(lost: dict[str, Any]) -> str:
    """Where a ``worker-lost`` event's worker ran, " on node abcd1234 at 10.0.0.5" (Ray's; "" on the simulator)."""
    return f" on {lost['where']}" if lost.get("where") else ""
