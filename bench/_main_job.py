"""What the analysis benches share: their flags and the main job's model, built as ``downpour train`` builds it
(seeded, eval mode), so each times the analysis of the network the main job trains."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import torch

from _protocol import reps_and_threads
from downpour.config import load_config
from downpour.data.build import sample_shape
from downpour.models.registry import build


def flags(description: str) -> argparse.ArgumentParser:
    """--reps, --threads and --run (a finished run of the main job, whose whole analysis is timed too)."""
    p = reps_and_threads(description)
    p.add_argument("--run", type=Path, help="a finished run of the main job: also time its whole analysis")
    return p


def main_model(threads: int) -> tuple[Any, Any]:
    """The main preset's config and its model (seed 0, eval mode), with torch on ``threads`` threads (analyze_run
    sets the run's own threads, and puts these back)."""
    torch.set_num_threads(threads)
    cfg = load_config("main")
    torch.manual_seed(0)
    return cfg, build(cfg, sample_shape(cfg.data))[0].eval()


def main_data(threads: int) -> tuple[Any, int, list[Any], torch.Tensor]:
    """The data benches' setup, with torch on ``threads`` threads: the main preset's data config, its seed, the
    configs of the run and of its no-faces twin, and the run's mixed set in the order the run shuffles it."""
    from downpour.data.build import _ORDER, _mixed, _rng

    torch.set_num_threads(threads)
    d, seed = (cfg := load_config("main")).data, cfg.seed
    x, *_ = _mixed(d, seed)
    return d, seed, [d, dataclasses.replace(d, train_faces=0)], x[_rng(seed, _ORDER).permutation(len(x))]


def lfw_sweep(description: str, argv: list[str] | None) -> tuple[Any, Any, dict[str, Any]]:
    """The invariance benches' setup: their parsed flags, the main job's model, and the sweep's inputs as the
    analysis makes them (``layer``, ``fill``, lfw's held-out ``faces`` and ``others`` at the model's
    input size, ``prepare``: one function, as :class:`~downpour.analysis.passes.Passes` binds to it)."""
    from downpour.analysis.labelled import load_labelled, prepare_images
    args = reps_and_threads(description).parse_args(argv)
    cfg, model = main_model(args.threads)
    shape = model.input_shape
    data = load_labelled("lfw", shape)
    faces, others = (data.pixels[torch.from_numpy(data.y == k)] for k in (1, 0))
    return args, model, {"layer": cfg.analysis.layer, "fill": cfg.analysis.invariance_fill,
                         "faces": faces, "others": others, "prepare": lambda t: prepare_images(t, shape, None)}
