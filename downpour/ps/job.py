"""What every cluster runner sets up from a run config: the data, the initial model, the shard
layout, the shards themselves and the workers. Shared by the simulator and the Ray runner, so
both train exactly the same thing.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from downpour.config import ConfigError, RunConfig
from downpour.data import build_dataset
from downpour.data.dataset import Dataset
from downpour.models.base import FeatureModel
from downpour.models.registry import build
from downpour.objectives import Objective
from downpour.ps.compensation import make_compensation
from downpour.ps.consistency import make_consistency
from downpour.ps.delays import make_delays
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard, shard_bounds
from downpour.ps.worker import Worker
from downpour.train.flat import ParamLayout
from downpour.train.setup import set_up_torch


def check_cluster_config(cfg: RunConfig) -> None:
    """Every cluster.* value is parsed here, before any data is built, so a typo fails at once."""
    c = cfg.cluster
    for key in ("workers", "shards", "n_fetch", "n_push"):
        if getattr(c, key) < 1:
            raise ConfigError(f"cluster.{key} must be >= 1, got {getattr(c, key)}")
    if c.warm_start < 0 or c.checkpoint_every < 0:
        raise ConfigError("cluster.warm_start and cluster.checkpoint_every must be >= 0")
    if c.runner not in ("simulated", "ray"):
        raise ConfigError(f"cluster.runner must be 'simulated' or 'ray' for a cluster run, got {c.runner!r}")
    make_consistency(c.consistency)
    make_compensation(c.compensation, c.dc_lambda)
    make_rule(c.rule, cfg.train.lr)
    make_delays(c.delay, c.workers)
    if cfg.train.steps < 1:
        raise ConfigError(f"train.steps must be >= 1, got {cfg.train.steps}")


@dataclass
class Job:
    cfg: RunConfig
    data: Dataset
    model: FeatureModel            # the driver's copy: initial parameters, and the final model
    layout: ParamLayout
    bounds: list[tuple[int, int]]  # [start, stop) of each shard in the flat vector

    @property
    def n_stages(self) -> int:
        return len(getattr(self.model, "stages", ())) or 1


def prepare(cfg: RunConfig) -> Job:
    """Seeded data and initial model; resolves ``cfg`` in place (like the local runner)."""
    check_cluster_config(cfg)
    set_up_torch(cfg)   # the seed, and train.threads for the simulator (Ray workers set their own)
    data = build_dataset(cfg.data, cfg.seed)
    if len(data) < cfg.cluster.workers:
        raise ConfigError(f"cluster.workers={cfg.cluster.workers} but the data has only {len(data)} samples")
    model, _ = build(cfg, data.input_shape)
    layout = ParamLayout(model)
    try:
        bounds = shard_bounds(layout.numel, cfg.cluster.shards)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return Job(cfg, data, model, layout, bounds)


def make_shards(cfg: RunConfig, init: torch.Tensor, bounds: list[tuple[int, int]], live: set[int]) -> list[Shard]:
    """One :class:`Shard` per ``bounds`` entry, holding its slice of ``init`` (numel,)."""
    c = cfg.cluster
    sync = make_consistency(c.consistency).sync
    return [Shard(j, init[a:b], make_rule(c.rule, cfg.train.lr), make_compensation(c.compensation, c.dc_lambda),
                  live, sync=sync, start=a) for j, (a, b) in enumerate(bounds)]


def batch_seed(seed: int, wid: int, start_step: int) -> int:
    """A worker's batch-order seed; a resumed run reseeds from the step it resumes at."""
    return seed * 1_000_003 + 7919 * (wid + 1) + start_step


def make_worker(cfg: RunConfig, wid: int, data: Dataset, bounds: list[tuple[int, int]],
                start_step: int = 0, seq: int = 0) -> Worker:
    """Worker ``wid`` on ``data`` (its own shard of the dataset); its replica is filled by its first fetch."""
    cfg = copy.deepcopy(cfg)  # build() resolves its config in place
    model, objective = build(cfg, data.input_shape)
    generator = torch.Generator().manual_seed(batch_seed(cfg.seed, wid, start_step))
    c = cfg.cluster
    return Worker(wid, model, objective, data.batches(cfg.train.batch_size, generator), bounds,
                  c.n_fetch, c.n_push, cfg.train.lr, sync=make_consistency(c.consistency).sync, seq=seq)
