"""The Sandblaster L-BFGS runner: ``cluster.algorithm = "sandblaster"`` on the simulated or Ray runner.

    summary = run_sandblaster(cfg, RunDir.create(out, cfg))             # cfg.cluster.runner: simulated | ray
    summary = run_sandblaster(cfg, RunDir.open(out), resume=True)       # from checkpoints/sandblaster.*

``train.steps`` counts L-BFGS iterations. The run directory is the usual one (config.toml,
metrics.jsonl with one row per iteration, tb/, model.safetensors + model.json) plus
``checkpoints/sandblaster.{safetensors,json}`` (the shards' parameters, gradients and history, the
coordinator's scalars) and ``sandblaster.json`` (the summary, and one entry per distributed
evaluation: its time, units, backups and dropped duplicates).
"""
from __future__ import annotations

import copy

import logging
import time
from typing import Any

import torch

from downpour._names import pasted
from downpour.config import ConfigError, RunConfig
from downpour.data.opened import Opened
from downpour.errors import first_line
from downpour.ps.setup import ClusterSetup, set_up_cluster
from downpour.sandblaster.checks import check_examples, check_sandblaster
from downpour.sandblaster.history import HistoryShard
from downpour.sandblaster.lbfgs import Coordinator
from downpour.sandblaster.record import record_stopped, summary
from downpour.sandblaster.units import UnitCounts, batch_rows
from downpour.sandblaster.worker import DTYPES
from downpour.train.checkpoint import CheckpointError, load_state, save_state, verified_meta
from downpour.train.checkpoint_checks import check_finite
from downpour.train.config_record import splits_steps
from downpour.train.divergence import first_entry, first_trained
from downpour.train.flat import slice_words
from downpour.train.go_on import go_on
from downpour.train.rundir import RunDir
from downpour.train.run_begin import saving_words
from downpour.train.run_progress import ends_at_stop
from downpour.train.setup import stage_for_step
from downpour.train.signals import signals_held, stop_record
from downpour.train.start_weights import fingerprint
from downpour.train.telemetry import Telemetry

log = logging.getLogger(__name__)
CHECKPOINT = "sandblaster"   # stem under checkpoints/


def make_shards(setup: ClusterSetup) -> list[HistoryShard]:
    """One :class:`HistoryShard` per slice of ``setup.bounds``, holding the initial parameters in
    ``sandblaster.precision``."""
    cfg = setup.cfg
    init = setup.layout.params_to_vector(setup.model).to(DTYPES[cfg.sandblaster.precision])
    return [HistoryShard(j, init[a:b], cfg.sandblaster.history, start=a) for j, (a, b) in enumerate(setup.bounds)]


def _pool(setup: ClusterSetup, shards: list[HistoryShard], vtime: float) -> Any:
    if setup.cfg.cluster.runner == "simulated":
        from downpour.sandblaster.simulated import SimulatedPool

        return SimulatedPool(setup, shards, vtime)
    from downpour.sandblaster.on_ray import RayPool   # the only module of this package that imports ray

    return RayPool(setup, shards)


class _Progress:
    """What a run carries from one iteration to the next, and into its checkpoint."""

    def __init__(self, meta: dict[str, Any] | None = None):
        meta = meta or {}
        self.iteration = meta.get("iteration", 0)
        self.stage = meta.get("stage", -1)                  # -1: no stage trained yet
        self.vtime = meta.get("vtime", 0.0)
        self.elapsed = meta.get("elapsed", 0.0)
        self.elapsed_before = self.elapsed                  # the goes before this one's (a resume's summary says both)
        self.stop: dict[str, Any] | None = meta.get("stop")  # why it ended (Stop.as_dict); None: it did not
        # a checkpoint from before 2026-12-04 said only "converged" (its summary said "steps", not converged)
        if self.stop is None and meta.get("converged", False):
            self.stop = {"iteration": self.iteration, "reason": "unrecorded", "converged": True,
                         "message": "converged, as its older checkpoint says: its gradient fell to 1e-8 "
                                    "of its first, or a line search found no step (the two were not told apart then)"}
        self.stops: list[dict[str, Any]] = list(meta.get("stops", []))   # every stage's early end, in order
        self.counts = UnitCounts()
        for key, value in meta.get("counts", {}).items():
            setattr(self.counts, key, value)
        self.counts.per_worker.update({int(w): n for w, n in meta.get("per_worker", {}).items()})
        self.counts.won.update({int(w): n for w, n in meta.get("won", {}).items()})
        self.batches: list[dict[str, Any]] = list(meta.get("batches", []))
        # the cost at the point the first iteration started from (model.json's first_trained, step 0): a row is the
        # cost where an iteration ended (a checkpoint from before 2026-12-06 has none)
        self.first: dict[str, Any] | None = meta.get("first_trained")

    @property
    def converged(self) -> bool:
        """The run ended at a stage's end that converged (its :attr:`stop` says so)."""
        return self.stop is not None and bool(self.stop["converged"])

    def meta(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "stage": self.stage, "vtime": self.vtime, "elapsed": self.elapsed,
                "converged": self.converged, "stop": self.stop, "stops": self.stops, "counts": self.counts.as_dict(),
                "per_worker": {str(w): n for w, n in self.counts.per_worker.items()},
                "won": {str(w): n for w, n in self.counts.won.items()}, "batches": self.batches,
                **first_entry(self.first)}


def _boundary(pool: Any, coord: Coordinator) -> dict[str, Any]:
    """What an iteration's evaluations move besides the shards, as it stood at the last iteration's end:
    the simulator's clock, generators and copies, the coordinator's counters and its evaluation log's
    length. A checkpoint written mid-iteration saves these, so the resume, which redoes that iteration
    from its start, redoes it in the same virtual time and with the same evaluation numbers."""
    return {"pool": copy.deepcopy(pool.state()), "coordinator": copy.deepcopy(coord.state()), "log": len(coord.log)}


def _layouts(setup: ClusterSetup) -> dict[str, str]:
    """The checkpoint's shard tensors in words (its safetensors metadata, for a reader without downpour): shard j's
    slice of the parameters, of their gradient and of L-BFGS's pairs, in ``sandblaster.precision``."""
    out = {}
    for j, (a, b) in enumerate(setup.bounds):
        n = b - a
        out[f"shard{j}.w"] = slice_words(a, b, setup.layout)
        out[f"shard{j}.g"] = f"(elements {n}): the batch-mean gradient at shard{j}.w, element for element"
        for i in range(setup.cfg.sandblaster.history):
            pair = f"L-BFGS's stored pair {i} (oldest first), element for element with shard{j}.w: "
            out[f"shard{j}.s{i}"] = f"(elements {n}): {pair}s = the step taken in w"
            out[f"shard{j}.y{i}"] = f"(elements {n}): {pair}y = the change in the gradient over that step"
    return out


def _save(run: RunDir, pool: Any, coord: Coordinator, progress: _Progress,
          boundary: dict[str, Any] | None = None, layouts: dict[str, str] | None = None) -> None:
    """Checkpoint the shards and the run's progress; ``boundary`` (:func:`_boundary`): for a stop
    mid-iteration, the pool's and coordinator's state at the last iteration's end; ``layouts``: :func:`_layouts`."""
    states = pool.group.call("state_dict")
    tensors = {f"shard{j}.{k}": v for j, state in enumerate(states) for k, v in state.items()}
    at = boundary or _boundary(pool, coord)
    meta = {**progress.meta(), "batches": progress.batches[:at["log"]], "coordinator": at["coordinator"],
            "shards": len(states), "pool": at["pool"]}              # the simulator's clock, generators, copies
    save_state(run.checkpoints / CHECKPOINT, tensors, run.stamped(meta), layouts)


def _restore(run: RunDir, shards: list[HistoryShard]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the checkpoint into ``shards``; (progress meta, coordinator meta)."""
    try:
        tensors, meta = load_state(run.checkpoints / CHECKPOINT, meta_keys=("iteration", "coordinator", "shards"))
    except CheckpointError as err:
        raise CheckpointError(f"cannot resume {str(run.path)!r}: {err}") from None
    check_finite({k: v for k, v in tensors.items() if k.startswith("shard")}, f"{run.checkpoints / CHECKPOINT}.safetensors")
    if meta["shards"] != len(shards):
        raise ConfigError(f"cannot resume {str(run.path)!r} with cluster.shards={len(shards)}: it was run with {meta['shards']}")
    for j, shard in enumerate(shards):
        prefix = f"shard{j}."
        try:
            shard.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"checkpoint of {str(run.path)!r} does not fit shard {j}: {err}") from None
    return meta, meta["coordinator"]


def run_sandblaster(cfg: RunConfig, run: RunDir, resume: bool = False, opened: Opened | None = None) -> dict[str, Any]:
    """Train ``cfg`` with Sandblaster L-BFGS on the simulated cluster or on Ray; returns the summary."""
    check_sandblaster(cfg, resume)
    setup = set_up_cluster(cfg, resume or run.again, opened)   # (a run trained again at a --resume keeps its workers)
    start_weights = None if resume else fingerprint(setup.model)     # the driver's copy, as built: the run's start
    n = len(setup.data)
    check_examples(cfg, n, resume)
    shards = make_shards(setup)
    progress, coord_meta, pool_meta = _Progress(), None, {}
    if resume:
        meta, coord_meta = _restore(run, shards)
        pool_meta = meta.get("pool", {})
        progress = _Progress(meta)
    start, total, s = progress.iteration, cfg.train.steps, cfg.sandblaster
    if run.unsaved_at_end(cfg, start, resume):
        return _finish(setup, run, [shard.params() for shard in shards], progress, start, None, {})
    new_batch = 0 < s.batch < n           # a fresh sample of examples every iteration
    # a stop is the run's end unless more steps on sampled batches go on (ends_at_stop: RunDir.stopped_for_good's rule)
    if resume and ends_at_stop(progress.stop, new_batch, total, run.config.train.steps):
        if run.model_step() != start:         # stopped between its last checkpoint and its model: finish it
            log.warning("%s", saving_words(run.unsaved_words(stopped_at(start))))
            return _finish(setup, run, [shard.params() for shard in shards], progress, start, None, {})
        raise ConfigError(stopped_words(run, start, progress.stop["message"], new_batch))
    pool = _pool(setup, shards, progress.vtime)   # first: a Ray pool's nodes go into environment.json
    try:
        run.begin(cfg, setup.data.preprocess, start, resume, setup.data.info.get("classes"), pool.nodes, start_weights)
    except BaseException:
        pool.close()
        raise
    if pool_meta:
        pool.load_state(pool_meta)
    coord = Coordinator(pool.group, pool, s.history, s.line_search, torch.finfo(DTYPES[s.precision]).eps)
    if coord_meta is not None:
        coord.load_state(coord_meta)
        if progress.stop is not None:   # going on past a stop (more --steps, sampled batches): the failures that stopped
            coord.failures = 0          # it are spent; carried, the first failure ends the run, not one that recurs
            progress.stop = None        # (and it is gone: a checkpoint saved by a stop before the next iteration's end
                                        # would say the run stopped there, its config.toml's steps already the new ones)
        coord.log = progress.batches
        _resume_history(run, coord, pool.group.call("stats")[0]["pairs"], progress.iteration, s.history)
    progress.batches = coord.log
    telemetry = Telemetry(run, total, tensorboard=cfg.train.tensorboard, time_offset=progress.elapsed, start_step=start)
    n_stages, t0, elapsed0 = setup.model.n_stages, time.perf_counter(), progress.elapsed
    layouts = _layouts(setup)
    last = None
    it = start
    boundary = _boundary(pool, coord)        # (updated at the end of every iteration)
    try:
        while it < total:
            stage = stage_for_step(it, total, n_stages, cfg.train.schedule)
            new_stage = progress.stage != -1 and stage != progress.stage
            step = coord.search(it, batch_rows(n, s.batch, cfg.seed, it), stage, new_batch, new_stage)
            with signals_held():      # the step, the bookkeeping and the boundary: a stop saves all or none
                # (before commit: coord.f is still the cost where this iteration began, at step 0 the initial model's)
                progress.first = progress.first or first_trained(it, coord.f, coord.parts)
                coord.commit(step)
                progress.iteration, progress.stage = it + 1, stage
                progress.counts.add(step.counts)
                progress.elapsed = elapsed0 + time.perf_counter() - t0
                progress.vtime = pool.clock()
                c = step.counts
                last = telemetry.log(it + 1, step.parts, c.examples, t=step.t, evaluations=step.evaluations,
                                     grad_norm=step.grad_norm, pairs=step.pairs, units=c.dispatched, backups=c.backups,
                                     backups_won=c.backups_won, duplicates=c.duplicates, examples=progress.counts.examples,
                                     **({"vtime": round(progress.vtime, 6)} if cfg.cluster.runner == "simulated" else {}))
                it += 1
                later = _next_stage(it - 1, total, n_stages, cfg.train.schedule) if step.stop else None
                stop = step.stop is not None and later is None
                # (a resumed run that steps on has not converged, nor stopped)
                ended = {"iteration": it, "stage": stage, **step.stop.as_dict()} if step.stop is not None else None
                progress.stop = ended if stop else None
                if ended is not None:
                    progress.stops.append(ended)
                    say = log.info if step.converged else log.warning   # (a failed search is not a convergence)
                    if stop:
                        say("L-BFGS stopped after %d iterations: %s", it, step.stop.message)
                    else:
                        # a greedy stage that ended hands its remaining iterations to nothing: the next starts now
                        say("L-BFGS: stage %s ended after iteration %d (%s); stage %s starts at iteration %d", stage, it,
                            step.stop.message, stage_for_step(later, total, n_stages, cfg.train.schedule), later + 1)
                        it = progress.iteration = later
                boundary = _boundary(pool, coord)
                if cfg.cluster.checkpoint_every and progress.iteration % cfg.cluster.checkpoint_every == 0:
                    _save(run, pool, coord, progress, boundary, layouts)
            if stop:
                break
        _save(run, pool, coord, progress, boundary, layouts)
        params = [p.cpu() for p in pool.group.call("params")]
        info = pool.info()
    except BaseException as stopped:
        # a second Ctrl-C waits for both: the checkpoint, and sandblaster.json (where each actor ran, how far it got)
        with stop_record("the run's checkpoint and sandblaster.json"):
            try:   # keep the iterations done (the shards still hold the last accepted point)
                _save(run, pool, coord, progress, boundary, layouts)
                log.warning("stopped after L-BFGS iteration %d; checkpoint saved: %s goes on", progress.iteration,
                            go_on(run.path))
            except Exception as err:  # noqa: BLE001  (the shards may be gone with the failure)
                log.warning("could not checkpoint the shards (%s: %s); %s", type(err).__name__, first_line(err),
                            _kept(run, cfg))
            record_stopped(run, cfg, progress, start, pool, n, stopped)
        raise
    finally:
        pool.close()
        telemetry.close()
    return _finish(setup, run, params, progress, start, last, info)


def _kept(run: RunDir, cfg: RunConfig) -> str:
    """What a run whose stop could not be checkpointed keeps: the last checkpoint, which ``--resume`` goes on from, or
    none, said too (a shard's node lost at iteration 10 leaves no checkpoint, and the log says so)."""
    try:
        meta = verified_meta(run.checkpoints / CHECKPOINT)
    except CheckpointError:
        every = cfg.cluster.checkpoint_every
        often = {0: "one at the end only", 1: "one every iteration"}.get(every, f"one every {every} iterations")
        return f"there is no checkpoint to resume from (cluster.checkpoint_every = {every}: {often})"
    return f"the checkpoint of L-BFGS iteration {meta.get('iteration')} is kept: {go_on(run.path)} goes on from it"


def _resume_history(run: RunDir, coord: Coordinator, pairs: int, iteration: int, history: int) -> None:
    """Say where the resume goes on and with which L-BFGS history (whether the curvature pairs were kept, not only
    the iteration); drop it, saying so, where the shards' ``pairs`` and the coordinator's
    disagree (a checkpoint saved between the shards' step and the coordinator's: its next step is steepest descent)."""
    if pairs == len(coord.rho):
        log.info("resuming %s at L-BFGS iteration %d with its history: %d of sandblaster.history = %d curvature "
                 "pairs", run.path, iteration, pairs, history)
        return
    log.warning("resuming %s at L-BFGS iteration %d without its history: its checkpoint's shards hold %d curvature "
                "pairs and its coordinator %d (saved inside a step), so the history starts again empty, as after a "
                "failed line search", run.path, iteration, pairs, len(coord.rho))
    coord.forget()


def stopped_at(iteration: int) -> str:
    """Where the resume of a run stopped for good, its model not saved there, writes it from (:meth:`RunDir.unsaved_words`)."""
    return f"the run stopped for good at L-BFGS iteration {iteration} (its checkpoint)"


def unsaved_stop(run: RunDir, steps: int) -> int | None:
    """The iteration a resume to ``steps`` writes the model at instead of training: its checkpoint a stop for good
    (:func:`~downpour.train.run_progress.ends_at_stop`), the model not saved there (:func:`run_sandblaster`'s test, found
    from the checkpoint's JSON for ``--dry-run``); None otherwise, or without a checkpoint."""
    if not (run.checkpoints / f"{CHECKPOINT}.json").is_file():
        return None
    progress = _Progress(verified_meta(run.checkpoints / CHECKPOINT))
    ends = ends_at_stop(progress.stop, run.samples_batches(), steps, run.config.train.steps)
    return progress.iteration if ends and run.model_step() != progress.iteration else None


def stopped_words(run: RunDir, iteration: int, why: str, sampled: bool = False) -> str:
    """Why a resume of a run that stopped for good (:meth:`RunDir.stopped_for_good`) has nothing to train; ``sampled``:
    it samples batches, so more iterations (a resume with a larger ``--steps``) would search on new ones."""
    said = f"the run in {str(run.path)!r} is finished: it stopped at L-BFGS iteration {iteration} ({why}); "
    if not sampled:
        return said + ("a resume would search again from the same point and end the same way; start a new run (or "
                       "sample batches: sandblaster.batch)")
    cfg = run.config
    if splits_steps(cfg):
        return said + ("it samples batches, and its greedy stages split train.steps: going on means a new run with "
                       f"more steps (downpour train --config {pasted(run.path / 'config.toml')} --steps M --out NEW)")
    return said + ("it samples batches, and its rule stops only where a failed search recurs (twice in a row) or the "
                   f"gradient vanishes; to go on anyway, on new batches: downpour train --resume {pasted(run.path)} "
                   f"--steps M, M above its {cfg.train.steps}")


def _next_stage(it: int, total: int, n_stages: int, schedule: str) -> int | None:
    """The first iteration after ``it`` that trains a later greedy stage; None when there is none."""
    stage = stage_for_step(it, total, n_stages, schedule)
    if stage is None:
        return None
    return next((j for j in range(it + 1, total) if stage_for_step(j, total, n_stages, schedule) != stage), None)


def _finish(setup: ClusterSetup, run: RunDir, params: list[torch.Tensor], progress: _Progress, start: int,
            last: dict[str, Any] | None, info: dict[str, Any]) -> dict[str, Any]:
    cfg = setup.cfg
    setup.layout.vector_to_params(torch.cat(params).to(torch.float32), setup.model)
    setup.model.set_stage(None)
    run.save_model(setup.model, progress.iteration, {"runner": cfg.cluster.runner, "algorithm": "sandblaster",
                                                     "data": setup.data.info, **first_entry(progress.first)})
    ended = progress.stop or {"reason": "steps", "converged": False,
                              "message": f"train.steps: {progress.iteration} L-BFGS iterations done"}
    out = summary(cfg, run, progress, start, last, info, len(setup.data), ended)
    run.write_json("sandblaster.json", {**out, "batches": progress.batches})
    return out
