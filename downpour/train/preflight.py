"""Every check a run's config can fail, run before its directory is made: a typo costs nothing."""
from __future__ import annotations

from downpour.config import ConfigError, RunConfig
from downpour.data.build import check_config as check_data
from downpour.models.registry import check_model_spec
from downpour.train.loop import OPTIMIZERS, resolve_device

RUNNERS = ("local", "simulated", "ray")


def check_run_config(cfg: RunConfig) -> None:
    """Raise ConfigError naming the first bad value of ``cfg`` (data, model, objective, train, cluster)."""
    check_data(cfg.data)
    check_model_spec(cfg)
    t = cfg.train
    for key in ("steps", "batch_size", "log_every"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {getattr(t, key)}")
    if t.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {t.optimizer!r}")
    if not t.lr > 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")
    if cfg.cluster.runner not in RUNNERS:
        raise ConfigError(f"cluster.runner must be one of {', '.join(RUNNERS)}, got {cfg.cluster.runner!r}")
    if t.schedule not in ("joint", "greedy"):
        raise ConfigError(f"train.schedule must be 'joint' or 'greedy', got {t.schedule!r}")
    device = resolve_device(t.device)
    if cfg.cluster.runner != "local" and device.type != "cpu":
        raise ConfigError(f"train.device={t.device!r}: the {cfg.cluster.runner} runner's workers compute on CPU; "
                          "use the local runner for a GPU")
    if cfg.cluster.runner != "local":
        from downpour.ps.job import check_cluster_config

        check_cluster_config(cfg)
