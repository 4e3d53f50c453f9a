"""A run trained on the simulated cluster, as the modules that read a cluster run's folder (its staleness.json, its
report) make it once each."""
from __future__ import annotations

from pathlib import Path

from downpour.config import load_config
from downpour.ps.cluster import run_cluster
from downpour.train.rundir import RunDir


def simulated_run(path: Path, preset: str, sets: list[str]) -> Path:
    """``preset`` with ``sets`` (``--set`` overrides) trained on the simulated cluster into the new run folder
    ``path``, without TensorBoard events: ``path``."""
    cfg = load_config(preset, ['cluster.runner="simulated"', "train.tensorboard=false", *sets])
    run_cluster(cfg, RunDir.create(path, cfg))
    return path
