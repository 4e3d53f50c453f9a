"""A simulated cluster run held in memory: the same shards, workers, coordinator, delays and update
rules as ``downpour train --runner simulated``, with no run directory, so a study can afford
thousands of small runs.

    result = simulate(resolve(cfg))     # cfg.cluster.runner is ignored: always the simulator
    result.model, result.mean_staleness, result.final_loss

Same config and seed, same bits as the run-directory runner: both drive
:class:`~downpour.ps.simulated.SimulatedCluster` from :func:`~downpour.ps.setup.set_up_cluster`
(``tests/test_studies_staleness.py`` checks it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from downpour.config import ConfigError, RunConfig
from downpour.data.dataset import Dataset
from downpour.models.base import FeatureModel
from downpour.parallel.partition import merge_model
from downpour.ps.coordinator import Coordinator
from downpour.ps.setup import make_shards, set_up_cluster
from downpour.ps.simulated import SimulatedCluster
from downpour.ps.worker import Push
from downpour.train.setup import stages_of


@dataclass
class Simulation:
    model: FeatureModel        # the final model (the shards' parameters)
    data: Dataset              # what the workers trained on (all of it)
    pushes: int                # pushes the shards received
    rejected: int              # of which a shard refused (non-finite gradient, ...)
    mean_staleness: float      # over the pushes the shards applied, in server versions (as staleness.json)
    max_staleness: float
    final_loss: float          # mean training loss of the last 10% of pushes (NaN if none was finite)
    virtual_time: float
    staleness: list[float]     # of every push the shards applied, in order of arrival


def simulate(cfg: RunConfig) -> Simulation:
    """Train resolved ``cfg`` for ``train.steps`` on the simulated cluster; nothing is written."""
    if cfg.cluster.algorithm != "downpour":
        raise ConfigError(f"simulate() runs Downpour; cluster.algorithm = {cfg.cluster.algorithm!r} trains through "
                          f"downpour.runners.train")
    setup = set_up_cluster(cfg)
    c = cfg.cluster
    stage_of = stages_of(cfg, setup.model.n_stages)
    coord = Coordinator(setup.gate, c.workers, cfg.train.steps, c.n_push, warm_start=c.warm_start, stage_of=stage_of)
    shards = make_shards(setup, setup.layout.params_to_vector(setup.model), coord.live)
    cluster = SimulatedCluster(setup, shards, coord, stage_of)
    staleness: list[float] = []
    losses: list[float] = []
    rejected = 0

    def on_push(push: Push, record: dict) -> None:
        nonlocal rejected
        if record["accepted"]:     # a rejected push (a diverged worker's: no gradient) moved no version
            staleness.append(record["staleness"])
        losses.append(push.loss)
        rejected += record["accepted"] < len(shards)

    cluster.run(on_push, hold_signals=False)    # no checkpoint to keep whole
    setup.layout.vector_to_params(torch.cat([s.params for s in shards]), setup.model)
    setup.model.set_stage(None)
    tail = torch.tensor(losses[-max(1, len(losses) // 10):], dtype=torch.float64)
    tail = tail[torch.isfinite(tail)]
    return Simulation(merge_model(setup.model), setup.data, len(losses), rejected,
                      sum(staleness) / max(1, len(staleness)), max(staleness, default=0.0),
                      float(tail.mean()) if len(tail) else float("nan"), cluster.now, staleness)
