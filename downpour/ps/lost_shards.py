"""A lost parameter-server shard, as the run folder keeps it.

``run_cluster`` restarts every shard from the last server checkpoint, up to ``cluster.shard_restarts`` times.
Each restart, and the stop once they are spent, is a *shard event* (``shards-restarted``, ``shards-lost``) in
staleness.json's events. A go's events are gathered from the checkpoint it resumes from, from staleness.json
(the commands before a ``--resume``) and from the command's own list, and the copies are told apart by comparing
events whole; so each shard event is numbered in the run (``n``: 1, 2, ... over every command that trained it).
Every shard event has ``lost_at``, the step the shard was lost at (a restart's ``step`` is the step it restarted
from, a stop's the loss's).
Unnumbered, two restarts alike in step and reason (a shard that dies at the same step from the same checkpoint,
before a ``--resume`` and after it) would be taken for one, and staleness.json would keep the first.

A go's ``resumed`` (every go but a new run's first: a ``--resume``, a shard restart) is kept with them, numbered
among the run's resumes (``n``): a go stopped by a lost shard before its next checkpoint would lose it with the
go's other events, and a restart followed by a stop would read as no worker started again (the shards restarted
from the checkpoint of step 16, stopped at step 18: staleness.json would hold the two shard events alone).
"""
from __future__ import annotations

from typing import Any

from downpour._names import plural
from downpour.config import RunConfig
from downpour.errors import CheckpointError, NotARunError, stopped_entry
from downpour.ps.checkpoint import SERVER, load_server
from downpour.ps.recorder import ShardLost
from downpour.train.go_on import go_on
from downpour.train.rundir import RunDir

SHARD_EVENTS = ("shards-restarted", "shards-lost")
GO_EVENTS = (*SHARD_EVENTS, "resumed")     # what a go's stop keeps: its shard events and where each go resumed


def staleness(run: RunDir) -> dict[str, Any]:
    """The run's staleness.json ({} where it has none, or a damaged one)."""
    try:
        report = run.read_json("staleness.json")
    except NotARunError:
        return {}
    return report if isinstance(report, dict) else {}


def go_events(run: RunDir) -> list[dict[str, Any]]:
    """The shard events and resumes the run's staleness.json holds (a resumed run's: of the commands before), in order."""
    events = staleness(run).get("events")
    return [e for e in events if isinstance(e, dict) and e.get("event") in GO_EVENTS] if isinstance(events, list) else []


def numbered(events: list[dict[str, Any]], kinds: tuple[str, ...]) -> int:
    """The number of the next event of ``kinds`` after ``events`` (the run's go events so far)."""
    return sum(1 for e in events if e.get("event") in kinds) + 1


def shard_event(events: list[dict[str, Any]], event: str, step: int | None, reason: str, **more: Any) -> dict[str, Any]:
    """A new shard event, numbered after the shard events of ``events`` (the run's go events so far)."""
    return {"event": event, "step": step, "reason": reason, "n": numbered(events, SHARD_EVENTS), **more}


def shard_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """cluster.json's ``shard_events``: the run's shard restarts and its stop, each with where the go it ended had
    placed its actors, in the words cluster.json's own ``nodes``, ``placement``, ``node_ids`` and ``node_addresses``
    say the last go's, and which shards were lost (``lost_shards``): on Ray, where else a restarted run's
    cluster.json would hold the last go's placement alone, the lost node named only in the reason. {} where there
    are none (a whole run's list is written only then; a stop's always has its own event)."""
    kept = [e for e in events if e.get("event") in SHARD_EVENTS]
    return {"shard_events": kept} if kept else {}


def checkpoint_step(run: RunDir) -> int | None:
    """The step of the run's server checkpoint (None: it has none)."""
    if not (run.checkpoints / f"{SERVER}.json").is_file():
        return None
    return load_server(run.checkpoints / SERVER, meta_keys=("step",))[1]["step"]


def _kept_step(run: RunDir) -> tuple[int | None, str | None]:
    """The step of the run's server checkpoint (None: none, or unreadable) and, where it is damaged, why (the error,
    naming the file): the stop of a restart that failed reading it is recorded all the same (the record must not
    fail the same way, stopping the run with the loss unrecorded)."""
    try:
        return checkpoint_step(run), None
    except CheckpointError as err:
        return None, str(err)


def record_stop(run: RunDir, cfg: RunConfig, events: list[dict[str, Any]], err: ShardLost, restarts: int,
                resumed_from: int, ray: dict[str, Any] | None = None, failed: str | None = None,
                how: str | None = None) -> str:
    """A lost shard stopped the run at ``err.step``, ``cluster.shard_restarts`` spent (``restarts`` of them, by this
    command) or its restart failed or interrupted: a ``shards-lost`` event after the run's go events (``events``,
    appended to) in staleness.json, and cluster.json saying where and why it stopped and what a resume goes on from
    (``resumed_from``: the step this command began at), and on which Ray (``ray``: the last go's, as a whole run's
    cluster.json has it; none off Ray; a stop's has it too, a lost head's included); returns the stop's
    message. ``failed``: why the next restart could not start (its event's ``restart_failed``); ``how``: the stop
    (Ctrl-C, SIGTERM) that interrupted it, before its go started or while the lost go wound up (its event's
    ``restart_interrupted``). (The shards are gone: neither file can be written from them; staleness.json is the last
    checkpoint's, which may predate the restarts since.) Both files, not the log alone, nor staleness.json without a
    cluster.json."""
    step, (kept, unreadable) = err.step, _kept_step(run)
    more = ({"restart_failed": failed} if failed is not None else {"restart_interrupted": how} if how else {}) | (
        {"checkpoint_unreadable": unreadable} if unreadable else {})
    events.append(shard_event(events, "shards-lost", step, str(err), lost_at=step, restarts=restarts, checkpoint=kept,
                              **more, **err.placed))
    report = staleness(run)
    had = report.get("events") if isinstance(report.get("events"), list) else []
    report["events"] = [*had, *(e for e in events if e not in had)]
    run.write_json("staleness.json", report)
    run.write_json("cluster.json", {"runner": cfg.cluster.runner, **({"ray": ray} if ray else {}),
                                    "resumed_from": resumed_from,
                                    "stopped": stopped_entry(step, cfg.train.steps, err),
                                    "checkpoint": kept, "shard_restarts": restarts,
                                    **shard_events(events),
                                    "run": str(run.path)})
    said = "" if unreadable == failed else f" ({unreadable})"      # (the restart's own error: said once)
    resume = (f"its server checkpoint is unreadable{said}: {go_on(run.path)} cannot go on from it"
              if unreadable else
              f"{go_on(run.path)} goes on from its last server checkpoint, at step {kept}" if kept is not None
              else f"it has no server checkpoint: {go_on(run.path)} trains it again from step 0")
    why = (f"restarting the shards failed ({failed})" if failed is not None else
           f"the shards' restart was {how}" if how else
           "shard restarts are off (cluster.shard_restarts = 0)" if cfg.cluster.shard_restarts == 0 else
           f"the shards were already restarted {plural(restarts, 'time')} (cluster.shard_restarts)")
    return f"{err}, and {why}: the run stopped; {resume} (its cluster.json and staleness.json say what happened)"
