"""Cluster runs: set up shards, workers and a coordinator from the config, run them with a driver
(the simulated cluster or Ray), and write the same run directory as the local runner.

    summary = run_cluster(cfg, RunDir.create(out, cfg))                # cfg.cluster.runner: simulated | ray
    summary = run_cluster(cfg, RunDir.open(out), resume=True)          # from checkpoints/server.*

The run directory gains ``staleness.json`` (histograms per worker and per shard), per-push
``worker`` / ``staleness`` / ``clock_gap`` / ``version`` fields in metrics.jsonl, and server
checkpoints ``checkpoints/server.{safetensors,json}``, and ``cluster.json`` (the summary: versions,
accepted/applied/rejected pushes, lost workers, on Ray the node of every actor), written at a go's end
(:mod:`downpour.ps.finish`).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from downpour.config import ConfigError, RunConfig
from downpour.data.opened import Opened
from downpour.data.pipeline import check_resumed_on, keep_cut
from downpour.data.resumed import cut_patches, files_listed_at_start, say_resumed_at
from downpour.data.telemetry import record_stopped
from downpour.errors import DownpourError, RunError, Terminated, stopped_by
from downpour.parallel.partition import partition_layouts
from downpour.ps.checkpoint import SERVER, load_server, next_seqs, restoring
from downpour.ps.coordinator import Coordinator
from downpour.ps.finish import finish, save_at_end
from downpour.ps.lost_shards import checkpoint_step, go_events, numbered, record_stop, shard_event
from downpour.ps.recorder import Driver, Recorder, ShardLost
from downpour.ps.setup import make_shards, set_up_cluster
from downpour.train.checkpoint import CheckpointError
from downpour.train.rundir import RunDir
from downpour.train.setup import stages_of
from downpour.train.signals import signals_held, stop_record
from downpour.train.start_weights import fingerprint

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
    resumed_from: list[int] = []               # the step the user's own run or resume began at (the first go's)
    lost: ShardLost | None = None              # the loss a restart is for
    restarted: dict[str, Any] | None = None    # its shards-restarted event, once appended
    up: list[dict[str, Any]] = []              # each go whose driver started: which Ray it ran on (_run_once)

    def recorded(err: ShardLost, restarts: int, **how: Any) -> str:
        """The loss's stop (record_stop), on the last started go's Ray (a failed restart's: the go before it)."""
        return record_stop(run, cfg, events, err, restarts, resumed_from[0] if resumed_from else 0,
                           up[-1] if up else None, **how)

    for attempt in range(cfg.cluster.shard_restarts + 1):
        tried = len(up)                        # (more after _run_once: this go's driver started)
        try:
            if lost is not None:   # (in the try: a stop or an error while it is prepared is the restart's, below)
                resume, restarted = _restart_from(run, events, lost)
            return _run_once(cfg, run, resume, events, resumed_from, up, opened)
        except ShardLost as err:
            lost, restarted = err, None
            if attempt == cfg.cluster.shard_restarts:
                with stop_record(LOST_RECORD):    # (a Ctrl-C meanwhile waits: it must not cut the record)
                    why = recorded(err, attempt)
                raise RunError(why) from None
        except DownpourError as err:
            # a restart that cannot start (the head of a joined cluster gone: it cannot rejoin; a ConfigError: a GPU
            # node gone, too few GPUs; its data or checkpoint unreadable) stops the run as the loss would have,
            # recorded, the restart that never started neither among its events nor counted (a ConfigError,
            # DataError or CheckpointError alike: none ends the run unrecorded). A
            # started go's own error (every worker lost, Diverged) is itself.
            if lost is None or len(up) > tried:
                raise
            with stop_record(LOST_RECORD):
                _unstarted(events, restarted)
                why = recorded(lost, attempt - 1, failed=str(err) or type(err).__name__)
            raise RunError(why) from None
        except KeyboardInterrupt as interrupt:
            # (and SIGTERM) a stop while the shards restart (their go not started), or while the go a lost shard
            # ended winds up, is recorded as a failed restart is (its shard's loss recorded with it); the
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
    dropped); a ``shards-restarted`` event appended to ``events``, its ``step`` the step restarted from (as the
    ``resumed`` after it) and ``lost_at`` the loss's, which the reason alone said (``"step": 0`` read as a loss at 0).
    Returns whether the go resumes, and the event."""
    resume = (run.checkpoints / f"{SERVER}.json").is_file()
    if not resume:
        run.truncate_metrics(0)        # no checkpoint yet: start again from step 0
    step = checkpoint_step(run) or 0
    log.warning("%s; restarting every shard from %s", lost,
                f"the checkpoint at step {step}" if resume else "the start (no checkpoint yet)")
    events.append(restarted := shard_event(events, "shards-restarted", step, str(lost), lost_at=lost.step,
                                           **lost.placed))
    return resume, restarted


def _unstarted(events: list[dict[str, Any]], restarted: dict[str, Any] | None) -> None:
    """A restart whose go never started: its ``shards-restarted`` event (if appended yet) taken off ``events``."""
    if restarted in events:
        events.remove(restarted)


def _how(stop: KeyboardInterrupt) -> str:
    """What stopped the run, for its ``shards-lost`` event: a :class:`Terminated` worded as the stop records word it
    (:func:`~downpour.errors.stopped_by`); Ray re-raises a SIGTERM as a bare KeyboardInterrupt while a driver waits for
    its actors to start."""
    return stopped_by(stop) if isinstance(stop, Terminated) else "interrupted (Ctrl-C or SIGTERM)"


def _loss_under(stop: BaseException) -> ShardLost | None:
    """The lost shard whose go's wrap-up (its checkpoint, its driver's close) ``stop`` interrupted, if any."""
    cause = stop.__context__
    while cause is not None and not isinstance(cause, ShardLost):
        cause = cause.__context__
    return cause


def _run_once(cfg: RunConfig, run: RunDir, resume: bool, go_log: list[dict[str, Any]] | None = None,
              resumed_from: list[int] | None = None, up: list[dict[str, Any]] | None = None,
              opened: Opened | None = None) -> dict[str, Any]:
    """One go at the run; ``go_log``: the run's go events before it (:mod:`downpour.ps.lost_shards`: restarts, a
    stop, resumes; the checkpoint it resumes from may predate them), its own ``resumed`` appended; ``resumed_from``: the
    first go's start step, noted by it (a restart resumes from a checkpoint itself, and the summary's
    ``resumed_from`` is the user's); ``up``: appended to once the go's driver has started (an error before it: the go
    could not start), with which Ray it ran on (its ``ray_info``, cluster.json's ``ray``; {} off Ray); ``opened``:
    the run's data read already (the first go takes it)."""
    go_log, resumed_from = go_log if go_log is not None else [], resumed_from if resumed_from is not None else []
    # (a run trained again at a --resume keeps its workers; its refusal says a list shrunk since its last start)
    at_start = files_listed_at_start(run.path) if resume or run.again else None
    setup = set_up_cluster(cfg, resume or run.again, opened, at_start)
    start_weights = None if resume else fingerprint(setup.model)     # the driver's copy, as built: the run's start
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
    resumed_from[:] = resumed_from or [start]
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
        return save_at_end(setup, run, shards, coord, start, meta)
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
    if resume:      # said by every cluster runner alike, the simulator too; kept with the go events, so a go a
        # lost shard stops before its next checkpoint keeps it; said once its driver is up, so that a shard restart
        # whose driver failed does not say "resuming"
        log.info("resuming %s at step %d", run.path, start)
        go_log.append(coord.resumed(n=numbered(go_log, ("resumed",))))
    try:
        run.begin(cfg, setup.data.preprocess, start, resume, setup.data.info.get("classes"), driver.nodes,
                  start_weights)
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
        with signals_held():      # the last push's checkpoint first: a stop in the wrap-up after it would lose the run
            states, info = driver.snapshot(), driver.info()
            info["start_seconds"] = round(recorder.t0 - asked, 2)   # the driver's start-up, recorded
            recorder.checkpoint(states)
    except BaseException as err:
        with stop_record():              # (a second Ctrl-C waits for it: it must not cut the checkpoint)
            recorder.save_on_failure(err)   # while the driver's shards are still up
            record_stopped(run, cfg.data, setup.data.info, driver.data_reports, coord.done, coord.total, err,
                           cfg.cluster.workers)
        raise
    finally:
        try:
            driver.close()
        finally:
            recorder.close()   # (even where the driver's close raised)
    return finish(setup, run, states, coord, recorder, resumed_from[0], info)
