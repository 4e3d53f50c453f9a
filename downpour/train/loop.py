"""The local runner: one process, the shared training step, torch's optimiser (train/optimisers.py). Resumable.

    summary = run_local(cfg, RunDir.create(out, cfg))          # a new run
    summary = run_local(cfg, RunDir.open(out), resume=True)    # continue it to cfg.train.steps
"""
from __future__ import annotations

import logging
import time
from typing import Any

import torch

from downpour.config import RunConfig
from downpour.data.opened import Opened, open_data_once
from downpour.data.pipeline import check_resumed_on, keep_cut
from downpour.data.resumed import say_resumed_at
from downpour.data.telemetry import (batch_position, close_stream, data_report, loader_died, record_data,
                                     record_stopped, report_at, run_data_info)
from downpour.data.summary import summary_data
from downpour.errors import Diverged
from downpour.models.registry import build
from downpour.train.checkpoint import CheckpointError, load_state, save_state
from downpour.train.checkpoint_checks import check_counts, check_dtypes, check_finite, check_streams
from downpour.train.divergence import first_entry, first_trained
from downpour.train.go_on import go_on
from downpour.train.opt_layouts import optimizer_layouts
from downpour.train.optimizer_state import load_optimizer_state, optimizer_state
from downpour.train.rundir import RunDir
from downpour.train.setup import make_optimizer, resolve_device, set_up_torch, stage_for_step
from downpour.train.signals import signals_held, stop_record
from downpour.train.start_weights import fingerprint
from downpour.train.step import NonFiniteLoss, train_step
from downpour.train.telemetry import PartsMean, Telemetry

log = logging.getLogger(__name__)


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """torch's RNG states a step draws from: the CPU's, and the device's where it runs on a GPU (dropout, an
    RBM's samples and a denoising cost's noise are drawn there; ``manual_seed`` at start-up resets it)."""
    state = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["rng.cuda"] = torch.cuda.get_rng_state(device)
    return state


def _save_checkpoint(run: RunDir, model, opt, step: int, skipped: int, elapsed: float, rng: dict[str, torch.Tensor],
                     data: dict[str, int] | None = None, row: PartsMean | None = None,
                     first: dict[str, Any] | None = None) -> None:
    """``checkpoints/local``: model, optimiser and RNG state after ``step`` steps (``rng``: :func:`_rng_state`
    right after it; ``data``: where a streamed batch iterator stands; ``row``: the metrics row being
    gathered, so a resumed run's next row is the uninterrupted one's; ``first``: the run's first trained step,
    model.json's ``first_trained``)."""
    tensors, meta = optimizer_state(opt)
    tensors.update({f"model.{k}": v for k, v in model.state_dict().items()})
    tensors.update(rng)
    extra = (({} if data is None else {"data": data}) | ({} if row is None else {"row": row.state()})
             | first_entry(first))
    save_state(run.checkpoints / "local", tensors,
               run.stamped({**meta, "step": step, "skipped": skipped, "elapsed": elapsed, **extra}),
               {f"model.{k}": v for k, v in model.tensor_layouts().items()}
               | optimizer_layouts(opt, {id(p): f"model.{k}" for k, p in model.named_parameters()})
               | {k: f"(bytes {v.numel()}): torch's {'CPU' if k == 'rng.torch' else 'GPU'} random generator state "
                  "after the step (torch.set_rng_state)" for k, v in rng.items()})


def _restore(run: RunDir, model, opt, device: torch.device) -> tuple[int, int, float, dict[str, int] | None, PartsMean,
                                                                     dict[str, Any] | None]:
    """Load ``checkpoints/local`` into ``model``, ``opt`` and torch's RNG; returns (step, skipped, elapsed,
    the streamed data's position or None, the metrics row it was gathering, the run's first trained step or None)."""
    stem = run.checkpoints / "local"
    tensors, meta = load_state(stem, meta_keys=("step", "skipped", "elapsed", "param_groups"), tensor_keys=("rng.torch",))
    check_counts(meta, ("step", "skipped"), stem)
    check_streams(meta, stem)          # (a stream's position: "data")
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    check_dtypes(model.state_dict(), weights, str(stem) + ".safetensors")
    check_finite({k: v for k, v in tensors.items() if k.startswith("model.")}, str(stem) + ".safetensors")
    try:
        model.load_state_dict(weights)
        load_optimizer_state(opt, tensors, meta, trained=meta["step"] > meta["skipped"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and device.type == "cuda":     # dropout, RBM samples, noise drawn on the device
            torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {str(stem)!r} does not fit this run's model and optimiser: {err}") from None
    try:
        row, elapsed = PartsMean.from_state(meta.get("row")), float(meta["elapsed"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:   # a hand-edited file
        raise CheckpointError(f"checkpoint file {str(stem) + '.json'!r}: its row or elapsed time cannot be read "
                              f"({type(err).__name__}: {err})") from None
    first = meta.get("first_trained")      # (a checkpoint from before 2026-12-06 has none)
    return meta["step"], meta["skipped"], elapsed, meta.get("data"), row, first if isinstance(first, dict) else None


def run_local(cfg: RunConfig, run: RunDir, resume: bool = False, opened: Opened | None = None) -> dict[str, Any]:
    """Train ``cfg`` in this process; writes metrics, TensorBoard events, checkpoints and the model.

    On an exception or Ctrl-C in the loop the last completed step is checkpointed before it propagates,
    so ``resume=True`` goes on from there. Raises :class:`Diverged` when every step of this process
    had a non-finite cost (what there is is saved first).
    """
    set_up_torch(cfg)
    data = open_data_once(cfg.data, cfg.seed, opened=opened)     # (read before its folder was made: taken)
    device = resolve_device(cfg.train.device)
    model, objective = build(cfg, data.input_shape)
    start_weights = None if resume else fingerprint(model)     # (on the CPU, as the analysis rebuilds it)
    model.to(device)
    opt = make_optimizer(cfg.train, model.parameters())
    start, skipped, elapsed, position, mean, first = 0, 0, 0.0, None, PartsMean(), None
    if resume:
        start, skipped, elapsed, position, mean, first = _restore(run, model, opt, device)
        if run.config.data.pipeline == "auto":   # recorded before the choice was (config.toml, not yet rewritten)
            check_resumed_on(data, position is not None, run.path / "config.toml")
        data = keep_cut(data, [position], cfg.data, cfg.seed, run.path, run.checkpoints / "local.json")
        say_resumed_at(data, [position], start)
        log.info("resuming %s at step %d", run.path, start)
    total, before = cfg.train.steps, elapsed     # (before: the training seconds of the goes before this one)
    if run.unsaved_at_end(cfg, start, resume):   # its data record too: the stream's, from the checkpoint
        model.set_stage(None)
        data_info = run_data_info(data.info, [report_at(data, cfg.train.batch_size, cfg.seed + 1, position)])
        record_data(run, cfg.data, data_info)
        run.save_model(model, start, {"skipped_steps": skipped, "data": data_info, **first_entry(first)})
        return _summary(run, start, start, skipped, elapsed, elapsed, run.last_loss())
    run.begin(cfg, data.preprocess, start, resume, data.info.get("classes"), start_weights=start_weights)

    generator = torch.Generator().manual_seed(cfg.seed + 1)
    if position is not None:   # streamed: continue where the stream stood, reading nothing twice
        batches = data.batches(cfg.train.batch_size, generator, position=position)
    else:
        batches = data.batches(cfg.train.batch_size, generator)
        for _ in range(start):  # replay the batch order, so a resumed run sees what an uninterrupted one would
            next(batches)
    telemetry = Telemetry(run, total, tensorboard=cfg.train.tensorboard, time_offset=elapsed, start_step=start)
    n_stages = model.n_stages
    last_row, last_skip = None, ""
    done, rng = start, _rng_state(device)      # the last completed step, and the RNG state right after it
    carried = mean.samples                      # samples of a resumed row taken before: not this process's rate
    at = batch_position(batches)                # and where the data stream stood (streamed data only)
    saved, t0 = False, time.perf_counter()      # (saved: the last step's checkpoint is written)
    try:
        for step in range(start, total):
            model.set_stage(stage_for_step(step, total, n_stages, cfg.train.schedule))
            batch = next(batches).to(device)
            try:
                result = train_step(model, objective, batch)
            except NonFiniteLoss as err:
                result = None
                skipped += 1
                last_skip = f"step {step + 1}: {err}"
                log.warning("step %d skipped: %s", step + 1, err)
            # the update, its count and its row together: a checkpoint never holds step k+1 labelled k, and a
            # signal in a log step's update never comes before its row (a resume would merge it into the next)
            with signals_held():
                if result is not None:
                    opt.step()
                    mean.add(result.parts, result.samples, result.loss)
                    # its own row for the divergence check: a run shorter than log_every logs one (divergence.py)
                    first = first or first_trained(step + 1, result.loss, result.parts)
                done, rng, at = step + 1, _rng_state(device), batch_position(batches)
                if (done % cfg.train.log_every == 0 or done == total) and mean.steps:
                    parts, samples, loss = mean.pop()
                    last_row, carried = telemetry.log(done, parts, samples - carried, loss), 0
            if cfg.train.checkpoint_every and done % cfg.train.checkpoint_every == 0 and done < total:
                _save_checkpoint(run, model, opt, done, skipped, elapsed + time.perf_counter() - t0, rng, at, mean,
                                 first)
        with signals_held():   # the last step's checkpoint, before anything else (a signal in close() lost the run)
            elapsed += time.perf_counter() - t0
            model.set_stage(None)
            _save_checkpoint(run, model, opt, total, skipped, elapsed, rng, at, first=first)
            saved = True
    except BaseException as err:   # Ctrl-C or a failure: keep the steps done so far, then let it propagate
        # a second Ctrl-C waits for what is written (not cutting the checkpoint), its line naming just that
        checkpoint = done > start and not saved
        with stop_record("the run's checkpoint and stop record" if checkpoint else "the run's stop record"):
            died = close_stream(batches)   # first: torch's handler raises again while a dead loader process is known
            stop = loader_died(died, cfg.data, err) if died else err
            if checkpoint:
                _save_checkpoint(run, model, opt, done, skipped, elapsed + time.perf_counter() - t0, rng, at, mean,
                                 first)
                log.warning("stopped after step %d; checkpoint saved, continue with %s", done, go_on(run.path))
            # and what the data did so far (the files skipped): the stream's live report, its reads ahead included
            record_stopped(run, cfg.data, data.info, lambda: [data_report(batches)], done, total, stop)
        if stop is not err:
            raise stop from None
        raise
    finally:
        telemetry.close()
        batches.close()                         # streamed: stops the loader's processes (a generator: nothing)
    data_info = run_data_info(data.info, [data_report(batches)])
    recorded = record_data(run, cfg.data, data_info)
    run.save_model(model, total, {"skipped_steps": skipped, "data": data_info, **first_entry(first)})
    if skipped >= total:   # no step of the run had a finite cost (a resume's own steps alone: the run trained)
        raise Diverged(f"every one of the {total} steps 1..{total} had a non-finite cost or gradient and was skipped "
                       f"(last, {last_skip}); nothing was applied. Lower train.lr or check the data; the run is saved "
                       f"in {str(run.path)!r}")
    # final_loss is the last logged row's: the mean over its log_every steps, as the cluster runner reports
    summary = _summary(run, total, start, skipped, elapsed, before, last_row["loss"] if last_row else run.last_loss())
    if recorded:    # files read: their sums, the files skipped among them, as the cluster runners print them
        summary["data"] = summary_data(data_info)
    return summary


def _summary(run: RunDir, total: int, start: int, skipped: int, elapsed: float, before: float,
             loss: float | None) -> dict[str, Any]:
    """``seconds``: the training's over every go (``elapsed``); ``seconds_this_go``: this go's own, less the
    ``before`` its checkpoint carried (a resume of 29 s reads 411 in ``seconds``, its first go's 382 counted in)."""
    return {"steps": total, "resumed_from": start, "final_loss": loss, "skipped_steps": skipped,
            "seconds": round(elapsed, 2), "seconds_this_go": round(elapsed - before, 2), "run": str(run.path)}
