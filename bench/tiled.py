"""The tiled LocallyConnected2d: its two ways of running, on the shapes that decide between them.

    .venv/bin/python bench/tiled.py                       # the shapes below, 1 thread, 5 interleaved reps
    .venv/bin/python bench/tiled.py --shapes main         # the main job's two stages only
    .venv/bin/python bench/tiled.py --threads 2 --reps 9
    .venv/bin/python bench/tiled.py --inference           # the forward alone, without gradients
    .venv/bin/python bench/tiled.py --sweep               # the rule's batch threshold: 11 shapes x 6 batches
    .venv/bin/python bench/tiled.py --network             # cat-demo's whole training step per model.tile

A tiled layer (tile t: t x t banks of filters repeating over the output) runs either as one strided
convolution per bank (``banked``) or with its banks expanded to one per position for the untied
kernel (``expanded``); :func:`downpour.layers.locally_connected.runs_banked` picks one from the
number of banks, the positions, the filter length, the batch and whether the weights need a
gradient. Each shape times one training step as the cat stages take it: forward, the tied adjoint
(the decoder, W^T W x), a squared cost on both, and backward (``--inference``: the forward alone
under ``torch.no_grad``, as the analysis and a greedy run's frozen stages call it); both paths on
the same layer and input, interleaved, after checking they agree. Prints one
JSON line per shape: ``banked_ms`` and ``expanded_ms`` (best of ``--reps``), ``chosen`` (the path
the layer takes), ``chosen_vs_best`` (1.0 when the rule picked the faster path) and the paired
per-repetition ratio banked / expanded; then a summary line (how often the rule picked the faster
path, and the worst ``chosen_vs_best``).

``--sweep``: the points the rule's batch threshold was fitted to: 11 layer shapes (1-8 channels, 24-128
px, tile 2 or 4) at batch 1, 2, 4, 8, 16 and 32, one training step each way (best of 3 rounds of 2); one
JSON line per point with the paired ratio and the path the rule takes, then how many points the rule
puts within 1.2x of the faster path (a fit's check on its own data, not a test of it: see the shapes).

``--network``: one training step of cat-demo's whole network (batch 32, the mean of a stage-1 and a
stage-2 step of its greedy schedule) for each ``model.tile`` of the templates study (0 untied, 4, 2,
1 convolution), on the layer's own path and with every tiled layer forced onto the banked one (the
rule before 2026-12-02), interleaved; one JSON line per tiling with both times and each one's ratio
to the untied network's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _protocol import at_least_1, load_1min, reps_and_threads, spread  # noqa: E402

from downpour.layers import LocallyConnected2d  # noqa: E402
from downpour.layers import locally_connected as lc  # noqa: E402

# (name, channels, maps, size, kernel, batch, tile, stride)
MAIN = [("main stage 1", 1, 8, 32, 8, 32, 2, 1), ("main stage 2", 8, 8, 12, 5, 32, 2, 1)]
SHAPES = MAIN + [
    ("1ch, batch 128", 1, 8, 32, 8, 128, 2, 1),
    ("1ch 64px t2", 1, 8, 64, 8, 32, 2, 1),
    ("1ch 64px t3", 1, 8, 64, 8, 32, 3, 1),
    ("1ch t8 (64 banks)", 1, 8, 32, 8, 32, 8, 1),
    ("3ch 64px t2", 3, 8, 64, 9, 16, 2, 1),
    ("3ch 64px t4", 3, 8, 64, 9, 16, 4, 1),
    ("3ch 64px t2 s2", 3, 8, 64, 9, 16, 2, 2),
    ("3ch 48px t2", 3, 8, 48, 9, 16, 2, 1),
    ("3ch 80px t4", 3, 8, 80, 9, 8, 4, 1),
    ("3ch 100px t3", 3, 8, 100, 9, 8, 3, 1),
    ("8ch 24px t3", 8, 16, 24, 5, 32, 3, 1),
    ("16ch 20px t2", 16, 16, 20, 5, 32, 2, 1),
    ("8ch 24px t2", 8, 8, 24, 5, 32, 2, 1),
    # small batches on larger images: the expansion's bytes are paid per call, whatever the batch
    ("1ch 192px, batch 1", 1, 8, 192, 8, 1, 2, 1),
    ("1ch 96px, batch 4", 1, 8, 96, 8, 4, 2, 1),
    ("1ch 128px, batch 16", 1, 8, 128, 8, 16, 2, 1),
    ("1ch 64px t4, batch 2", 1, 8, 64, 8, 2, 4, 1),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = reps_and_threads(__doc__.split("\n")[0])
    p.add_argument("--shapes", choices=("all", "main"), default="all")
    p.add_argument("--steps", type=at_least_1, default=5, help="training steps per repetition")
    p.add_argument("--inference", action="store_true", help="time the forward alone, without gradients")
    p.add_argument("--sweep", action="store_true", help="the batch threshold's grid of shapes and batches")
    p.add_argument("--network", action="store_true", help="cat-demo's whole step per model.tile instead of the layer")
    return p.parse_args(argv)


def _step(layer: LocallyConnected2d, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        y = layer(x)
        (y.square().sum() + layer.adjoint(y).square().sum()).backward()
        layer.weight.grad = x.grad = None
    return step


@contextmanager
def forced(banked: bool | None) -> Iterator[None]:
    """Every tiled layer takes one path inside (``runs_banked`` answers ``banked``; None: the rule's own)."""
    original = lc.runs_banked
    if banked is not None:
        lc.runs_banked = lambda *_, **__: banked
    try:
        yield
    finally:
        lc.runs_banked = original


def _outputs(layer: LocallyConnected2d, x: torch.Tensor, banked: bool) -> list[torch.Tensor]:
    with forced(banked):
        y = layer(x)
        cost = y.square().sum() + layer.adjoint(y).square().sum()
        return [y.detach(), *torch.autograd.grad(cost, (layer.weight, x))]


def _forward(layer: LocallyConnected2d, x: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            layer(x)
    return forward


def measure(shape: tuple, reps: int, steps: int, inference: bool = False) -> dict:
    name, c, m, size, k, batch, tile, stride = shape
    torch.manual_seed(0)
    layer = LocallyConnected2d(c, m, size, k, stride=stride, tile=tile)
    x = torch.randn(batch, c, size, size, requires_grad=True)
    for a, b in zip(_outputs(layer, x, True), _outputs(layer, x, False)):
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max())):
            raise SystemExit(f"bench/tiled.py: the banked and expanded paths disagree at {name!r}")
    step = _forward(layer, x) if inference else _step(layer, x)
    times: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(reps + 1):                  # the first round warms up
        for banked in (True, False):
            with forced(banked):
                t = time.perf_counter()
                for _ in range(steps):
                    step()
            if rep:
                times[banked].append((time.perf_counter() - t) / steps * 1e3)
    banked_ms, expanded_ms = min(times[True]), min(times[False])
    with torch.set_grad_enabled(not inference):
        chosen = "expanded" if layer._expanded(layer.weight, batch) else "banked"
    best = min(banked_ms, expanded_ms)
    return {"bench": "tiled", "shape": name, "channels": c, "maps": m, "size": size, "kernel": k, "batch": batch,
            "tile": tile, "stride": stride, "timed": "forward" if inference else "training step", "banks": layer._n_classes(),
            "positions_per_bank": layer.out_size[0] * layer.out_size[1] // layer._n_classes(),
            "banked_ms": round(banked_ms, 2), "expanded_ms": round(expanded_ms, 2), "chosen": chosen,
            "chosen_vs_best": round((expanded_ms if chosen == "expanded" else banked_ms) / best, 2),
            "banked_vs_expanded": spread([b / e for b, e in zip(times[True], times[False])])}


# (channels, maps, size, kernel, tile) x SWEEP_BATCHES: where the expansion starts to pay
SWEEP = [(1, 8, 32, 8, 2), (1, 8, 48, 8, 2), (1, 8, 64, 8, 2), (1, 8, 96, 8, 2), (1, 8, 128, 8, 2), (1, 8, 64, 8, 4),
         (1, 8, 32, 8, 4), (2, 8, 64, 8, 2), (8, 8, 24, 5, 2), (1, 16, 64, 8, 2), (1, 8, 64, 6, 2)]
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32)


def sweep() -> Iterator[dict]:
    """The ``--sweep`` grid (see the docstring): one row per (shape, batch), then the summary."""
    within = total = 0
    for c, m, size, k, tile in SWEEP:
        for batch in SWEEP_BATCHES:
            row = measure((f"{c}x{size}x{size} k{k} t{tile} {m} maps", c, m, size, k, batch, tile, 1), reps=3, steps=2)
            best = min(row["banked_ms"], row["expanded_ms"])
            chosen_ms = row["expanded_ms"] if row["chosen"] == "expanded" else row["banked_ms"]
            within += chosen_ms <= 1.2 * best
            total += 1
            yield row
    yield {"bench": "tiled", "sweep": True, "points": total, "rule_within_1.2x": within}


def network(reps: int, steps: int) -> list[dict]:
    """cat-demo's training step per model.tile, on the rule's path and forced banked (see the docstring)."""
    from downpour.batch import Batch
    from downpour.config import load_config
    from downpour.models.registry import resolve
    from downpour.ps.setup import build_replica
    from downpour.train.step import train_step

    times: dict[tuple[int, bool], list[float]] = {}
    nets = {}
    for tile in (0, 4, 2, 1):
        torch.manual_seed(0)
        nets[tile] = build_replica(resolve(load_config("cat-demo", [f"model.tile={tile}"])), (1, 32, 32))
    x = Batch(torch.randn(32, 1, 32, 32), torch.zeros(32, dtype=torch.int64))
    for rep in range(reps + 1):                  # the first round warms up
        for tile, (model, objective) in nets.items():
            for banked in (False, True):
                per_stage = []
                with forced(True if banked else None):
                    for stage in (1, 2):
                        model.set_stage(stage)
                        t = time.perf_counter()
                        for _ in range(steps):
                            train_step(model, objective, x)
                        per_stage.append((time.perf_counter() - t) / steps * 1e3)
                if rep:
                    times.setdefault((tile, banked), []).append(sum(per_stage) / 2)
    best = {k: min(v) for k, v in times.items()}
    return [{"bench": "tiled", "network": "cat-demo", "tile": tile, "step_ms": round(best[tile, False], 2),
             "banked_step_ms": round(best[tile, True], 2), "vs_untied": round(best[tile, False] / best[0, False], 2),
             "banked_vs_untied": round(best[tile, True] / best[0, True], 2)} for tile in nets]


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.network or a.sweep:
        for row in (network(a.reps, a.steps) if a.network else sweep()):
            print(json.dumps(row), flush=True)
        return
    load = [load_1min()]
    rows = [measure(s, a.reps, a.steps, a.inference) for s in (MAIN if a.shapes == "main" else SHAPES)]
    for r in rows:
        print(json.dumps(r), flush=True)
    load.append(load_1min())
    print(json.dumps({"bench": "tiled", "summary": True, "inference": a.inference, "threads": a.threads, "shapes": len(rows),
                      "rule_picked_faster": sum(r["chosen_vs_best"] == 1.0 for r in rows),
                      "expanded_faster": sum(r["expanded_ms"] < r["banked_ms"] for r in rows),
                      "worst_chosen_vs_best": max(r["chosen_vs_best"] for r in rows), "load_1min": load}))


if __name__ == "__main__":
    main()
