"""Every check a run's config can fail, run before its directory is made: a typo costs nothing.

Sits beside the CLI, above every layer it checks (data, models, objectives, train, ps, analysis).
Besides each section's own value checks it builds the model for the input shape the data config
implies and runs its cost once on a zero batch, so a shape that does not fit, a cost term the
model cannot feed, or a model option out of range fails here, not after the data is built.
"""
from __future__ import annotations

import math

import torch

from downpour.analysis.run import analysis_options
from downpour.config import ConfigError, RunConfig, config_to_dict
from downpour.data.build import check_config as check_data
from downpour.data.build import sample_shape
from downpour.batch import Batch
from downpour.models.registry import build, check_model_spec

def check_run_config(cfg: RunConfig) -> None:
    """Raise ConfigError naming the first bad value of ``cfg``. Resolves ``cfg`` in place as the
    runners do (every model field and cost term written out), where the input shape is known."""
    check_data(cfg.data)
    if cfg.seed < 0:
        raise ConfigError(f"seed must be >= 0, got {cfg.seed}")
    device = _check_train(cfg)
    _check_cluster(cfg, device)
    analysis_options(cfg, {})
    shape = sample_shape(cfg.data)
    if shape is None:
        check_model_spec(cfg)      # the options and cost terms, without a shape to build for
    else:
        _dry_run(cfg, shape)


def _check_train(cfg: RunConfig) -> torch.device:
    from downpour.train.setup import OPTIMIZERS, SCHEDULES, resolve_device

    t = cfg.train
    for key in ("steps", "batch_size", "log_every"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {getattr(t, key)}")
    for key in ("threads", "checkpoint_every"):
        if getattr(t, key) < 0:
            raise ConfigError(f"train.{key} must be >= 0, got {getattr(t, key)}")
    if t.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {t.optimizer!r}")
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise ConfigError(f"train.lr must be a finite number > 0, got {t.lr}")
    if t.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {t.schedule!r}")
    return resolve_device(t.device)


def _check_cluster(cfg: RunConfig, device: torch.device) -> None:
    runner = cfg.cluster.runner
    if runner not in ("local", "simulated", "ray"):
        raise ConfigError(f"cluster.runner must be local, simulated or ray, got {runner!r}")
    if runner == "local":
        return
    from downpour.ps.job import check_cluster_config

    check_cluster_config(cfg)
    if device.type != "cpu":
        raise ConfigError(f"train.device={cfg.train.device!r}: the {runner} runner's workers compute on CPU; "
                          "use the local runner for a GPU")
    if cfg.train.checkpoint_every:
        raise ConfigError("train.checkpoint_every is the local runner's (in steps); a cluster run checkpoints its "
                          "server every cluster.checkpoint_every pushes")


def _dry_run(cfg: RunConfig, shape: tuple[int, int, int]) -> None:
    """Build the model for ``shape`` and evaluate its cost once on zeros (seeded RNG left untouched)."""
    where = f"model {cfg.model.name!r} on {'x'.join(map(str, shape))} samples (data.size = {cfg.data.size})"
    try:
        with torch.random.fork_rng(devices=[]):
            model, objective = build(cfg, shape)       # resolves cfg, as the runner will again
            objective(model.forward_train(Batch(torch.zeros(2, *shape), torch.zeros(2, dtype=torch.int64))))
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError, IndexError) as err:
        reason = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"{where}: {reason}") from None


# What a resumed run may change: how long it goes on, how it reports, where it runs. Everything
# else (model, cost, data, seed, optimizer, cluster shape) would make it a different run.
RESUMABLE = {"train.steps", "train.log_every", "train.checkpoint_every", "train.tensorboard", "train.threads",
             "train.device", "cluster.restarts", "cluster.checkpoint_every", "cluster.address"}


def check_resume(saved: RunConfig, new: RunConfig) -> None:
    """Refuse overrides on ``--resume`` that would change what the run is, naming the key."""
    before, after = _flat(config_to_dict(saved)), _flat(config_to_dict(new))
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key) and key not in RESUMABLE and not key.startswith("analysis."):
            raise ConfigError(f"cannot resume with {key} = {after.get(key)!r}: the run was trained with "
                              f"{before.get(key)!r}; start a new run (--config RUN/config.toml --set ...) instead")
    if saved.train.steps != new.train.steps and new.train.schedule == "greedy":
        from downpour.models.registry import create_model

        if len(getattr(create_model(new.model.name, **new.model.options), "stages", ())) > 1:
            raise ConfigError("cannot change train.steps when resuming a greedy run: its split of the steps between "
                              "stages depends on train.steps")


def _flat(table: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; the objective stays one value (its terms are tables)."""
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "objective":
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out
