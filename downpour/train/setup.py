"""What every runner sets up the same way, below any runner: the seed and threads, the device, the
local optimiser, and which stage a greedy schedule trains at a step.

The local loop, the parameter-server runners, preflight and the scikit-learn wrapper import these
from here, so none of them needs the local loop itself.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Iterable

import torch

from downpour.config import ConfigError, RunConfig, TrainConfig
from downpour.train.optimisers import SGD, Adagrad, Adam, Optimiser

# train.optimizer's choices (declared in config/sections.py) -> torch's optimiser, stepped without torch.optim's
# classes (train/optimisers.py: they import torch._dynamo, 1.2-3 s of every local training process's start)
OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}


def make_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> Optimiser:
    params = [p for p in params if p.requires_grad]
    extra = {"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}
    return OPTIMIZERS[cfg.optimizer](params, lr=cfg.lr, **extra)


def stage_for_step(step: int, total: int, n_stages: int, schedule: str) -> int | None:
    """Greedy training gives each stage an equal share of the steps, bottom first; joint (or a
    one-stage model) trains all (None). ``schedule`` is train.schedule: joint | greedy."""
    if schedule == "joint" or n_stages <= 1:
        return None
    return min(n_stages, 1 + step * n_stages // max(total, 1))


def stages_of(cfg: RunConfig, n_stages: int) -> Callable[[int], int | None]:
    """Step index -> the stage a run of ``cfg`` (its model: ``n_stages``) trains at it (:func:`stage_for_step`)."""
    return partial(stage_for_step, total=cfg.train.steps, n_stages=n_stages, schedule=cfg.train.schedule)


def resolve_device(name: str) -> torch.device:
    """``train.device``: cpu | cuda | auto (cuda when this torch build sees a GPU, else cpu)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device='cuda' but torch {torch.__version__} sees no GPU; use 'cpu' or 'auto'")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def set_up_torch(cfg: RunConfig) -> None:
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
