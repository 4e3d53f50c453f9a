"""Cluster runs: set up shards, workers and a coordinator from the config, run them on the
simulated cluster or on Ray, and write the same run directory as the local runner.

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
from typing import Any, Callable

import torch

from downpour.config import ConfigError, RunConfig
from downpour.errors import RunError
from downpour.ps.checkpoint import ShardState, load_server, next_seqs, save_server
from downpour.ps.consistency import make_consistency
from downpour.ps.coordinator import Coordinator
from downpour.ps.job import Job, make_shards, prepare
from downpour.ps.staleness import StalenessLog, staleness_report
from downpour.ps.worker import Push
from downpour.train.setup import stage_for_step
from downpour.train.rundir import RunDir
from downpour.train.telemetry import PartsMean, Telemetry

log = logging.getLogger(__name__)
SERVER = "server"  # checkpoint stem under checkpoints/


class ClusterTelemetry(Telemetry):
    """The local telemetry, with server updates/s and mean staleness on the progress line."""

    OWN = ("updates_per_s", "mean_staleness", "staleness_max", "clock_gap", "vtime", "accepted")

    def print_progress(self, row: dict[str, Any], extra: str = "") -> None:
        extra = f"  {row.get('updates_per_s', 0.0):.1f} updates/s  staleness {row.get('mean_staleness', 0.0):.2f}{extra}"
        super().print_progress({k: v for k, v in row.items() if k not in self.OWN}, extra)


class Recorder:
    """Turns pushes into metrics lines (every ``train.log_every`` steps) and server checkpoints."""

    def __init__(self, cfg: RunConfig, run: RunDir, coord: Coordinator, elapsed: float = 0.0):
        self.cfg, self.run, self.coord = cfg, run, coord
        self.telemetry = ClusterTelemetry(run, cfg.train.steps, tensorboard=cfg.train.tensorboard, time_offset=elapsed,
                                          start_step=coord.done)
        self.elapsed0 = elapsed
        self.t0 = time.perf_counter()
        self.snapshot: Callable[[], list[ShardState]] | None = None   # set by the runner
        self._saved_on_failure = False
        self.extra_meta: Callable[[], dict[str, Any]] = dict
        self.pushes = 0              # pushes this process recorded
        self.finite_pushes = 0       # ... that carried a finite gradient some shard accepted
        self.steps = self.skipped = 0   # worker steps in those pushes, and those with a NaN/Inf cost
        self._since_ckpt = 0
        self._stale_sum = 0.0
        self._mean = PartsMean()     # the pushes' parts and samples since the last log line
        self._last_step = coord.done
        self._last_time = self.t0
        self._last_pushes = 0

    def mark_started(self) -> None:
        """The runner's processes are up: rates and times count from here, as the local runner's do."""
        now = time.perf_counter()
        self.t0 = self._last_time = self.telemetry.start = self.telemetry.last_time = now

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def on_push(self, push: Push, record: dict[str, Any]) -> None:
        self.pushes += 1
        self._since_ckpt += 1
        self._stale_sum += record["staleness"]
        self.steps += push.steps
        self.skipped += push.skipped
        if push.skipped < push.steps:     # a push whose every step was skipped has no parts to average
            if record["accepted"]:
                self.finite_pushes += 1
            self._mean.add(push.parts)
        self._mean.samples += push.samples
        step, every = self.coord.done, self.cfg.train.log_every
        due = step // every > self._last_step // every or step >= self.cfg.train.steps
        if due and self._mean.steps:
            now = time.perf_counter()
            rate = (self.pushes - self._last_pushes) / max(now - self._last_time, 1e-9)
            parts, samples = self._mean.pop()
            self.telemetry.log(step, parts, samples, worker=push.worker, staleness=record["staleness"],
                               staleness_max=record["staleness_max"], clock_gap=record["clock_gap"],
                               version=record["version"], accepted=record["accepted"],
                               updates_per_s=round(rate, 2), mean_staleness=round(self._stale_sum / self.pushes, 4),
                               **({"vtime": record["vtime"]} if "vtime" in record else {}))
            self._last_step, self._last_time, self._last_pushes = step, now, self.pushes
        every_ckpt = self.cfg.cluster.checkpoint_every
        if every_ckpt and self._since_ckpt >= every_ckpt and step < self.cfg.train.steps and self.snapshot:
            self._since_ckpt = 0
            self.checkpoint(self.snapshot())

    def checkpoint(self, states: list[ShardState]) -> None:
        meta = {"step": self.coord.done, "clocks": {str(w): c for w, c in self.coord.clocks().items()},
                "max_clock_gap": self.coord.max_gap,
                "elapsed": round(self.elapsed(), 3), "events": self.coord.events, **self.extra_meta()}
        save_server(self.run.checkpoints / SERVER, states, meta)
        write_staleness(self.run, self.cfg, states, self.coord)

    def save_on_failure(self) -> None:
        """Best effort, on an error or Ctrl-C: checkpoint the server as it is, so ``--resume`` loses
        only the pushes in flight. Once per run; the runner calls it while its shards are still up."""
        if self.snapshot is None or self._saved_on_failure:
            return
        self._saved_on_failure = True
        try:
            self.checkpoint(self.snapshot())
            log.warning("stopped at step %d; the server checkpoint was saved: --resume %s goes on from it",
                        self.coord.done, self.run.path)
        except Exception as err:  # noqa: BLE001  (the shards may be gone with the failure)
            log.warning("stopped at step %d; could not checkpoint the server (%s: %s)", self.coord.done,
                        type(err).__name__, err)

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


def run_cluster(cfg: RunConfig, run: RunDir, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` on the simulated cluster or on Ray; returns a summary dict."""
    job = prepare(cfg)
    init = job.layout.params_to_vector(job.model)
    c = cfg.cluster
    restored, meta = None, {"step": 0, "clocks": {}, "elapsed": 0.0, "events": []}
    if resume:
        try:
            restored, meta = load_server(run.checkpoints / SERVER, meta_keys=("step", "clocks", "elapsed", "events"))
        except FileNotFoundError as err:
            raise ConfigError(f"cannot resume {str(run.path)!r}: {err}") from None
        if len(restored) != c.shards:
            raise ConfigError(f"cannot resume {str(run.path)!r} with cluster.shards={c.shards}: it was run with {len(restored)}")
        log.info("resuming %s at step %d", run.path, meta["step"])
    start = meta["step"]
    if start >= cfg.train.steps:
        raise ConfigError(f"the run in {str(run.path)!r} already reached step {start}; raise train.steps (--steps) to go on")
    # only now, with the checkpoint loaded and the step checked: a mistyped resume leaves the run as it was
    run.save_config(cfg)  # fully resolved
    run.save_preprocess(job.data.preprocess)
    if resume:
        run.truncate_metrics(start)   # rows logged after the server checkpoint are logged again
    coord = Coordinator(make_consistency(c.consistency), c.workers, cfg.train.steps, c.n_push, start_step=start,
                        warm_start=c.warm_start, clocks={int(w): v for w, v in meta["clocks"].items()},
                        depth=2 if c.runner == "ray" else 1)
    coord.events = list(meta["events"])
    coord.max_gap = meta.get("max_clock_gap", 0)
    shards = make_shards(cfg, init, job.bounds, coord.live)
    if restored:
        for s, (tensors, m) in zip(shards, restored):
            s.load_state_dict(tensors, m)
    seqs = next_seqs(restored) if restored else {}

    def stage_of(step: int) -> int | None:
        return stage_for_step(step, cfg.train.steps, job.n_stages, cfg.train.schedule)

    recorder = Recorder(cfg, run, coord, meta["elapsed"])
    try:
        if c.runner == "simulated":
            from downpour.ps.simulated import SimulatedCluster

            sim = SimulatedCluster(job, shards, coord, stage_of, start, seqs, meta.get("vtime", 0.0))
            recorder.snapshot = lambda: [s.state_dict() for s in shards]
            recorder.extra_meta = lambda: {"vtime": sim.now}
            sim.run(recorder.on_push)
            states, info = [s.state_dict() for s in shards], {"virtual_time": round(sim.now, 6)}
        else:
            from downpour.ps.on_ray import run_ray  # the only module that imports ray

            states, info = run_ray(job, shards, coord, recorder, stage_of, start, seqs)
    except BaseException:
        recorder.save_on_failure()   # the simulator's shards are here; run_ray saved before its teardown
        raise
    finally:
        recorder.close()
    recorder.checkpoint(states)
    return _finish(job, run, states, coord, recorder, start, info)


def _finish(job: Job, run: RunDir, states: list[ShardState], coord: Coordinator, recorder: Recorder,
            start: int, info: dict[str, Any]) -> dict[str, Any]:
    cfg = job.cfg
    vec = torch.cat([t["params"] for t, _ in states])
    job.layout.vector_to_params(vec, job.model)
    job.model.set_stage(None)
    report = write_staleness(run, cfg, states, coord)
    run.save_model(job.model, coord.done, {"runner": cfg.cluster.runner, "data": job.data.info,
                                           "versions": [m["version"] for _, m in states]})
    for e in coord.events:
        if e["event"] == "worker-lost" and e["worker"] in coord.lost:   # (not restarted)
            log.warning("worker %d was lost at step %d (%s); the run went on without it", e["worker"], e["step"], e["reason"])
    metrics = run.metrics()
    # every push goes to every shard, which accepts or rejects it: one shard's count is the pushes workers
    # made (the largest, should a push have reached only some shards as its worker was lost)
    pushes = max(m["accepted"] + sum(m["rejected"].values()) for _, m in states)
    summary = {"steps": coord.done, "resumed_from": start, "runner": cfg.cluster.runner,
            "final_loss": metrics[-1]["loss"] if metrics else None, "pushes": pushes,
            "versions": [m["version"] for _, m in states], "accepted": [m["accepted"] for _, m in states],
            "applied": [m["applied"] for _, m in states], "rejected": report["rejected"],
            "mean_staleness": report["overall"]["mean"], "max_staleness": report["overall"]["max"],
            "lost_workers": list(coord.lost), "seconds": round(recorder.elapsed(), 2), "run": str(run.path), **info}
    run.write_json("cluster.json", summary)  # placement, counts, lost workers: what happened to the cluster
    if coord.done < coord.total and not coord.live:
        raise RunError(f"every worker was lost ({', '.join(_loss_reasons(coord))}) after {coord.done} of {coord.total} steps; "
                       f"what was done is saved in {str(run.path)!r} (resume with --resume, or set cluster.restarts)")
    if recorder.pushes and not recorder.finite_pushes:
        rejected = ", ".join(f"{n} {reason}" for reason, n in report["rejected"].items()) or "none"
        raise RunError(f"none of the {recorder.pushes} pushes of this run carried a finite gradient a shard accepted: "
                       f"{recorder.skipped} of their {recorder.steps} worker steps had a non-finite cost "
                       f"(shard rejections: {rejected}); lower train.lr or check the data; "
                       f"the run is saved in {str(run.path)!r}")
    return summary


def _loss_reasons(coord: Coordinator) -> list[str]:
    return [f"worker {e['worker']} at step {e['step']}: {e['reason']}" for e in coord.events if e["event"] == "worker-lost"]
