"""The shard's update rules (downpour/ps/rules.py) against torch.optim's, on one flat slice.

    .venv/bin/python bench/server_rules.py                    # 512 K floats (a 2 MB slice), 1 thread
    .venv/bin/python bench/server_rules.py --numel 65536 --threads 2

Each rule applies one pushed gradient in place on a shard's slice; its baseline is the torch
optimizer that does the same arithmetic on a parameter of the same size (SGD, SGD with momentum,
Adagrad, Adam; single-tensor, as a shard holds one slice), timed interleaved with it, best of
``--reps`` rounds of ``--applies`` applies. Adam is timed three ways: every element trained (a dense
gradient), a quarter held (a frozen stage's tensor, pushed as zeros, which the shard's Adam leaves alone:
it applies to the other three quarters, as ``Shard`` does for a push that did not train that stage;
torch's Adam gets the same gradient and moves them), and mixed step counts among the trained elements
(the per-element bias-correction path). Prints one JSON line per row: ``ours_ms``, ``torch_ms``
and ``ratio`` = ours / torch (per apply), with the paired per-round ratios' median and range.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _protocol import at_least_1, load_1min, reps_and_threads, spread  # noqa: E402

from downpour.ps.rules import apply_live, make_rule  # noqa: E402

LR = 0.005


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = reps_and_threads(__doc__.split("\n")[0], reps=7)
    p.add_argument("--numel", type=at_least_1, default=512 * 1024)
    p.add_argument("--applies", type=at_least_1, default=10, help="applies per timed round")
    return p.parse_args(argv)


def _ours(rule: str, g: torch.Tensor, mixed_steps: bool = False, held: int = 0) -> Callable[[], None]:
    r = make_rule(rule, LR)
    w, state = torch.randn(g.numel()), r.init_state(g.numel())
    if mixed_steps:   # the trained elements have counted different numbers of steps
        state["step"][::2] = 100.0
    live = [(held, g.numel())] if held else None      # [0, held): a stage the push did not train (Shard.live_ranges)
    return lambda: apply_live(r, w, g, state, live=live)


def _torch(rule: str, g: torch.Tensor) -> Callable[[], None]:
    p = torch.nn.Parameter(torch.randn(g.numel()))
    p.grad = g.clone()
    opt = {"sgd": lambda: torch.optim.SGD([p], lr=LR, foreach=False),
           "momentum": lambda: torch.optim.SGD([p], lr=LR, momentum=0.9, foreach=False),
           "adagrad": lambda: torch.optim.Adagrad([p], lr=LR, foreach=False),
           "adam": lambda: torch.optim.Adam([p], lr=LR, foreach=False)}[rule]()
    return opt.step


def _time(fns: dict[str, Callable[[], None]], reps: int, applies: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in fns}
    for rep in range(reps + 1):              # round 0 warms up
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(applies):
                fn()
            if rep:
                out[name].append((time.perf_counter() - t) / applies * 1e3)
    return out


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dense = torch.randn(a.numel)
    frozen = dense.clone()
    frozen[: a.numel // 4] = 0.0
    quarter = a.numel // 4
    rows = [("sgd", "dense", dense, False, 0), ("momentum", "dense", dense, False, 0),
            ("adagrad", "dense", dense, False, 0), ("adam", "dense", dense, False, 0),
            ("adam", "a quarter frozen (exact zeros)", frozen, False, quarter), ("adam", "mixed step counts", dense, True, 0)]
    load = load_1min()
    for rule, case, g, mixed, held in rows:
        t = _time({"ours": _ours(rule, g, mixed, held), "torch": _torch(rule, g)}, a.reps, a.applies)
        ours, base = min(t["ours"]), min(t["torch"])
        print(json.dumps({"bench": "server_rules", "rule": rule, "case": case, "numel": a.numel, "threads": a.threads,
                          "ours_ms": round(ours, 3), "torch_ms": round(base, 3), "ratio": round(ours / base, 2),
                          "ratio_paired": spread([o / b for o, b in zip(t["ours"], t["torch"])]),
                          "load_1min": [load, load_1min()]}), flush=True)


if __name__ == "__main__":
    main()
