"""The recorder of a cluster run: turns pushes into metrics lines, server checkpoints and
``staleness.json``, whichever driver (simulator, Ray) produced them.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from torch import Tensor

from downpour.config import RunConfig
from downpour.errors import RunError, first_line
from downpour.ps.checkpoint import SERVER, ShardState, load_server, save_server
from downpour.ps.coordinator import Coordinator
from downpour.ps.staleness import StalenessLog, staleness_report
from downpour.ps.worker import OnPush, Push
from downpour.train.checkpoint import CheckpointError
from downpour.train.divergence import first_entry, first_trained
from downpour.train.flat import ParamLayout
from downpour.train.go_on import go_on
from downpour.train.rundir import RunDir
from downpour.train.telemetry import PartsMean, Telemetry

log = logging.getLogger(__name__)

# what Recorder.save_on_failure says (its docstring says why), by what became of the stop's checkpoint ("stands": the
# whole state's of this step, "saved", "failed", "gone": the driver knows its shard is gone) and whether a shard was
# lost. None: nothing said (run_cluster's next line names the checkpoint the shards restart from; where the shard is
# gone, "stopped at step 15" read false before its "restarting every shard from the start"). A stop that could not
# be checkpointed says where the last checkpoint is (Recorder._kept): "could not checkpoint" alone reads as if
# nothing was kept
_FAILURE_WORDS: dict[tuple[str, bool], str | None] = {
    ("stands", False): "stopped at step {step}; the server checkpoint of that step stands: {go_on} goes on from it",
    ("stands", True): None,
    ("saved", False): "stopped at step {step}; the server checkpoint was saved: {go_on} goes on from it",
    ("saved", True): "the server was checkpointed at step {step}",
    ("failed", False): "stopped at step {step}; could not checkpoint the server {why}; {kept}",
    ("failed", True): "could not checkpoint the server at step {step} {why}",
    ("gone", True): None}


class ShardLost(RunError):
    """A server shard died at ``step``: the run can go on from the last server checkpoint (``run_cluster``
    restarts every shard from it, up to ``cluster.shard_restarts`` times). ``placed``: where the lost go's actors
    ran, in cluster.json's words (Ray's ``nodes``, ``placement``, ``node_ids``, ``node_addresses``, ``lost_shards``),
    kept in its shard event; {} where unknown (the simulator, a head gone)."""

    def __init__(self, message: str, step: int | None = None, placed: dict[str, Any] | None = None):
        super().__init__(message)
        self.step, self.placed = step, placed or {}


class Driver(Protocol):
    """How a cluster runner runs the coordinator's budget of steps on its shards. The simulator
    (:class:`~downpour.ps.simulated.SimulatedCluster`) and Ray (:class:`~downpour.ps.cluster_on_ray.RayCluster`)
    implement it; both are built as ``Driver(setup, shards, coord, stage_of, start_step, seqs, saved)``, ``saved``
    being a resumed run's checkpoint meta (what :meth:`state` wrote, among the counters)."""

    # environment.json's nodes (Ray: node_environments; a Ray driver's on_nodes rewrites them after a restart that
    # brought another node or install); None: none
    nodes: dict[str, dict[str, Any]] | None

    def run(self, on_push: OnPush) -> None:
        """Until the coordinator's budget is done, calling ``on_push`` for every push the shards applied."""

    def snapshot(self) -> list[ShardState]:
        """The shards' states now; after :meth:`run` the final ones."""

    def settle(self, on_push: OnPush) -> None:
        """On a stop, before the checkpoint: give ``on_push`` every push the shards applied that it has not
        seen yet (Ray: answers not read), starting nothing new. The simulator has none (its events are whole)."""

    def state(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """What a server checkpoint keeps of the driver, JSON and tensors (the simulator's virtual clock, its
        workers' streams, and at a push the whole state of its run); given back as ``saved`` on resume."""

    def info(self) -> dict[str, Any]:
        """Driver fields of the run's summary (virtual time; Ray's nodes and placement)."""

    def data_reports(self) -> list[dict[str, Any] | None]:
        """On a stop: each worker's data report that can be had now (Ray: the live workers' that answer soon)."""

    def close(self) -> None:
        """Stop whatever it started; safe after a failure and twice."""


class ClusterTelemetry(Telemetry):
    """The local telemetry, with server updates/s and mean staleness on the progress line."""

    OWN = ("updates_per_s", "mean_staleness", "staleness_max", "clock_gap", "vtime", "accepted")

    def print_progress(self, row: dict[str, Any], extra: str = "") -> None:
        extra = f"  {row.get('updates_per_s', 0.0):.1f} updates/s  staleness {row.get('mean_staleness', 0.0):.2f}{extra}"
        super().print_progress({k: v for k, v in row.items() if k not in self.OWN}, extra)


class Recorder:
    """Turns pushes into metrics lines (every ``train.log_every`` steps) and server checkpoints."""

    def __init__(self, cfg: RunConfig, run: RunDir, coord: Coordinator, elapsed: float = 0.0,
                 saved: dict[str, Any] | None = None, patches: int | None = None, whole: bool = False,
                 params: ParamLayout | None = None, words: dict[str, str] | None = None):
        """``saved``: a resumed run's counters and the metrics row it was gathering (its checkpoint's ``recorder``);
        ``whole``: that checkpoint holds the driver's whole state (the simulator's, taken as a push was recorded);
        ``patches``: the patches per image a streamed patch run cuts, which each checkpoint records (a Ray
        run's streams start afresh on resume, and the count computed then can differ: ``pipeline.keep_cut``);
        ``params``: the shards' flat layout, which each checkpoint's metadata lists (names, shapes, order), and
        ``words``: what some of those parameters are (a partitioned model's blocks)."""
        self.cfg, self.run, self.coord, self.patches = cfg, run, coord, patches
        self.params, self.words = params, words
        self.telemetry = ClusterTelemetry(run, cfg.train.steps, tensorboard=cfg.train.tensorboard, time_offset=elapsed,
                                          start_step=coord.done)
        self.elapsed0 = elapsed       # the training seconds of the goes before this one (the summary says both)
        self.t0 = time.perf_counter()
        self.driver: Driver | None = None   # set by the runner once the driver is up
        self._saved_on_failure = False
        self.pushes = 0              # pushes of the run recorded (a resumed run's: from its checkpoint on)
        self.finite_pushes = 0       # ... that carried a finite gradient some shard accepted
        self.steps = self.skipped = 0   # worker steps in those pushes, and those with a NaN/Inf cost
        self._since_ckpt = 0
        self._whole = whole           # the checkpoint on disk holds the driver's whole state (see save_on_failure)
        self._last_ckpt = time.perf_counter()
        self.checkpoints = 0          # written in the run (a resumed run's too), and the seconds they took
        self.checkpoint_seconds = 0.0
        self._stale_sum, self._stale_n = 0.0, 0   # over the pushes a shard applied, as staleness.json counts
        self._mean = PartsMean()     # the pushes' parts and samples since the last log line
        self.first: dict[str, Any] | None = None   # the first push a shard accepted, alone: model.json's first_trained
        if saved:                    # the whole run's counts and running mean, the row in progress
            self.pushes, self.finite_pushes = saved["pushes"], saved["finite_pushes"]
            self.steps, self.skipped, self._stale_sum = saved["steps"], saved["skipped"], saved["stale_sum"]
            self._stale_n = saved.get("stale_n", self.pushes)     # (a checkpoint written before 2026-12-02 has none)
            self._mean = PartsMean.from_state(saved["row"])
            self.first = saved.get("first_trained")      # (a checkpoint written before 2026-12-06 has none)
            self.checkpoints, self.checkpoint_seconds = saved["checkpoints"], saved["checkpoint_seconds"]
        self._carried = self._mean.samples   # samples of a resumed row taken before: not this process's rate
        # the step of the last row written: behind the checkpoint's step when a log mark was crossed by pushes
        # whose every step was non-finite (no row then: the next push writes it; from coord.done it was lost)
        self._last_step = saved.get("last_step", coord.done) if saved else coord.done
        self._last_time = self.t0
        self._last_pushes = self.pushes

    def mark_started(self) -> None:
        """The runner's processes are up: rates and times count from here, as the local runner's do."""
        now = time.perf_counter()
        self.t0 = self._last_time = self.telemetry.start = self.telemetry.last_time = now

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def on_push(self, push: Push, record: dict[str, Any]) -> None:
        self.pushes += 1
        self._since_ckpt += 1
        if record["accepted"]:            # a rejected push (NaN, a duplicate) changed no parameter
            self._stale_sum += record["staleness"]
            self._stale_n += 1
        self.steps += push.steps
        self.skipped += push.skipped
        if push.skipped < push.steps:     # a push whose every step was skipped has no parts to average
            if record["accepted"]:
                self.finite_pushes += 1
                # its own row for the divergence check: a run shorter than log_every logs one (train/divergence.py)
                self.first = self.first or first_trained(self.coord.done, push.loss, push.parts)
            self._mean.add(push.parts, loss=push.loss)   # its steps' mean total: a push across a greedy
                                                          # switch summed two stages' part means (788 for ~345)
        self._mean.samples += push.samples
        step, every = self.coord.done, self.cfg.train.log_every
        due = step // every > self._last_step // every or step >= self.cfg.train.steps
        if due and self._mean.steps:
            now = time.perf_counter()
            rate = (self.pushes - self._last_pushes) / max(now - self._last_time, 1e-9)
            parts, samples, loss = self._mean.pop()
            samples, self._carried = samples - self._carried, 0
            self.telemetry.log(step, parts, samples, loss, worker=push.worker, staleness=record["staleness"],
                               staleness_max=record["staleness_max"], clock_gap=record["clock_gap"],
                               version=record["version"], accepted=record["accepted"],
                               updates_per_s=round(rate, 2), mean_staleness=round(self._stale_sum / max(self._stale_n, 1), 4),
                               **({"vtime": record["vtime"]} if "vtime" in record else {}))
            self._last_step, self._last_time, self._last_pushes = step, now, self.pushes
        c = self.cfg.cluster
        # by wall time on Ray only: the simulator's checkpoints, like its runs,
        # must not depend on the clock
        due = ((c.checkpoint_every and self._since_ckpt >= c.checkpoint_every)
               or (c.runner == "ray" and c.checkpoint_seconds
                   and time.perf_counter() - self._last_ckpt >= c.checkpoint_seconds))
        if due and step < self.cfg.train.steps and self.driver:
            self.checkpoint()

    def checkpoint(self, states: list[ShardState] | None = None) -> None:
        """Save the server (``states``, or the driver's snapshot now) as checkpoints/server.*."""
        t0 = time.perf_counter()
        if states is None:
            assert self.driver is not None
            states = self.driver.snapshot()
        self._write_checkpoint(states)
        now = time.perf_counter()
        self._since_ckpt, self._last_ckpt = 0, now
        self.checkpoints += 1
        self.checkpoint_seconds += now - t0

    def tally(self) -> dict[str, int]:
        """The run's push counts (a resumed run's from its start), as its checkpoint's ``recorder`` keeps them: its
        pushes, those that carried a finite gradient some shard accepted, their worker steps and the non-finite ones."""
        return {"pushes": self.pushes, "finite_pushes": self.finite_pushes, "steps": self.steps,
                "skipped": self.skipped}

    def _write_checkpoint(self, states: list[ShardState]) -> None:
        driver, tensors = self.driver.state() if self.driver else ({}, {})
        meta = {"step": self.coord.done, "clocks": {str(w): c for w, c in self.coord.clocks().items()},
                "max_clock_gap": self.coord.max_gap,
                "elapsed": round(self.elapsed(), 3), "events": self.coord.events,
                "recorder": {**self.tally(), "stale_sum": self._stale_sum, "stale_n": self._stale_n,
                             "row": self._mean.state(), "last_step": self._last_step,
                             **first_entry(self.first),
                             "checkpoints": self.checkpoints + 1, "checkpoint_seconds": self.checkpoint_seconds},
                **({"patches_per_image": self.patches} if self.patches else {}), **driver}
        save_server(self.run.checkpoints / SERVER, states, self.run.stamped(meta), tensors, self.params,
                    self.words)
        self._whole = "sim" in driver
        write_staleness(self.run, self.cfg, states, self.coord)

    def save_on_failure(self, err: BaseException | None = None) -> None:
        """Best effort, on an error or Ctrl-C (``err``): checkpoint the server as it is, so ``--resume`` loses
        only the pushes in flight. Once per run; the runner calls it while its driver is still up. A lost shard
        (:class:`ShardLost`) leaves what follows to ``run_cluster``, which knows it: the shards restarted (from the
        checkpoint, or from the start where there is none) or the run's stop, with what ``--resume`` does. So on a
        lost shard its warning says neither "stopped" (the run may restart its shards itself and finish) nor what
        ``--resume`` goes on from, and where the driver's snapshot says the shard is lost (the simulator's: its lost
        shard is gone for good) it says nothing. Its step is the loss's, as the stop's records give it (the pushes
        answered but not read yet are not counted)."""
        if self.driver is None or self._saved_on_failure:
            return
        self._saved_on_failure = True
        lost, why = isinstance(err, ShardLost), ""
        if self._whole and not self._since_ckpt:
            # no push recorded since a checkpoint of the whole state (the simulator's, cluster.checkpoint_every):
            # it stands. Saved again mid-event (an error inside a push: some shards may have applied it) it would
            # lose the workers' state and the resume go on from a restart, off the uninterrupted run
            became = "stands"
        else:
            try:
                # a lost shard: the pushes whose answers are in hand are not recorded. No checkpoint holds them (the
                # snapshot needs every shard), and its stop is recorded at the step it was found lost (ShardLost.step:
                # the error, cluster.json, staleness.json), which they would take this line and data.json past (a
                # shard's node removed on a 2-node Ray: "lost at step 22", and this line "stopped at step 24")
                if not lost:
                    self.driver.settle(self.on_push)
                self.checkpoint()
                became = "saved"
            except Exception as failed:  # noqa: BLE001  (the shards may be gone with the failure)
                # one line: Ray's ActorDiedError runs to 5 lines of its own. A lost shard on Ray (silent 10 s, or its
                # head gone: it may answer the snapshot still) is tried; one the driver knows is gone (the
                # simulator's snapshot raises ShardLost) is not said at all
                why = f"({type(failed).__name__}: {first_line(failed)})"
                became = "gone" if lost and isinstance(failed, ShardLost) else "failed"
        words = _FAILURE_WORDS[became, lost]
        if words:
            log.warning("%s", words.format(step=self.coord.done, go_on=go_on(self.run.path), why=why,
                                           kept=self._kept() if "{kept}" in words else ""))

    def _kept(self) -> str:
        """What ``--resume`` goes on from where the stop could not be checkpointed: the last checkpoint, or none."""
        try:
            step = load_server(self.run.checkpoints / SERVER, meta_keys=("step",))[1]["step"]
        except (CheckpointError, OSError):
            return "there is no server checkpoint to resume from"
        return f"{go_on(self.run.path)} goes on from the last checkpoint, at step {step}"

    def close(self) -> None:
        self.telemetry.close()


def write_staleness(run: RunDir, cfg: RunConfig, states: list[ShardState], coord: Coordinator) -> dict[str, Any]:
    logs = [StalenessLog.from_tensor(t["log"]) for t, _ in states]
    rejected: dict[str, int] = {}
    for _, m in states:
        for k, v in m["rejected"].items():
            rejected[k] = rejected.get(k, 0) + v
    report = staleness_report(logs, consistency=cfg.cluster.consistency, workers=cfg.cluster.workers,
                              shards=cfg.cluster.shards, delay=cfg.cluster.delay if cfg.cluster.runner == "simulated" else None,
                              rejected=rejected, events=coord.events,
                              max_clock_gap=coord.max_gap,
                              accepted=[m["accepted"] for _, m in states], applied=[m["applied"] for _, m in states])
    run.write_json("staleness.json", {k: v for k, v in report.items() if v is not None})
    return report
