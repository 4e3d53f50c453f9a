"""A small local run trained to its end, shared by the modules that damage copies of a run folder: ufldl-sae, 4 steps,
a checkpoint at step 4. `trained` is made once per module; `run` is a fresh copy of it for each test."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from downpour.config import load_config
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir

SAE = ["data.samples=500", "train.batch_size=20", "train.tensorboard=false", "train.threads=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A small run trained to its end (4 steps, a checkpoint at step 4); each test works on a copy."""
    path = tmp_path_factory.mktemp("small") / "run"
    cfg = load_config("ufldl-sae", [*SAE, "train.steps=4", "train.checkpoint_every=4"])
    run_local(cfg, RunDir.create(path, cfg))
    return path


@pytest.fixture
def run(trained, tmp_path) -> Path:
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"
