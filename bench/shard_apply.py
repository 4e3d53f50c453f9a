"""A shard's apply of one push: a fixed cost beside its bytes at the apply rate (the plan's ``APPLY_S``).

    .venv/bin/python bench/shard_apply.py                                   # 1, 4,224 and 1 M values, 1 thread
    .venv/bin/python bench/shard_apply.py --sizes 1 4224 1048576 --reps 9

For each update rule and each gradient size, three ways of applying one push, taking turns round by round
(``downpour.plan.calibrate.round_seconds``: each round at least ``--round-s`` of calls, the order reversed every
other round, so a load that comes and goes reaches them alike):

- ``shard``: :meth:`~downpour.ps.shard.Shard.push`, what the Ray runner's shard times as its ``apply`` (the checks,
  the finite test, the rule, the push's record; ``downpour.plan.calibrate.push_step``), and what ``--calibrate``
  times at 4 M values (the apply rate) and at 1 value (the apply's own cost: ``apply_fixed_seconds``, alone);
- ``rule``: the rule's arithmetic alone (``apply_live``), so ``shard`` less ``rule`` is the shard's bookkeeping;
- ``torch``: the baseline, torch's optimiser of the same rule stepping a parameter of the same size (single-tensor,
  ``foreach=False``, as bench/server_rules.py builds it): torch's own cost per step.

Each figure is the median of the rounds, in µs per apply, with its range. Per rule one JSON line: the three at each
size, ``shard_vs_torch`` at each; ``fixed_us``, the shard's apply of the smallest size (a push of 1 value: all of it
the fixed cost, the plan's ``APPLY_S``); ``bytes_per_s``, the slope between the smallest and the largest sizes; and
``model_check``: at each size between them, the fixed cost plus its bytes at that slope against the time measured
(the plan's model of an apply, checked on sizes it was not fitted to).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _protocol import at_least_1, load_1min, reps_and_threads, spread  # noqa: E402
from server_rules import LR, _torch  # noqa: E402

from downpour.plan.calibrate import push_step, round_seconds  # noqa: E402
from downpour.ps.rules import apply_live, make_rule  # noqa: E402

RULES = ("sgd", "momentum", "adagrad", "adam")
CAT_DEMO_SLICE = 4_224      # cat-demo's 8,448 parameters over 2 shards: each shard's push


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = reps_and_threads(__doc__.split("\n")[0], reps=9)
    p.add_argument("--sizes", type=at_least_1, nargs="+", default=[1, CAT_DEMO_SLICE, 1 << 20],
                   help="gradient values a push (default: %(default)s); the smallest gives the fixed cost, the "
                        "largest the bytes' rate with it, the rest check the two")
    p.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    p.add_argument("--round-s", type=float, default=0.02, help="seconds of calls a round (default: %(default)s)")
    a = p.parse_args(argv)
    if len(set(a.sizes)) < 2:
        p.error(f"--sizes needs two different sizes at least (the fixed cost and the rate), got {a.sizes}")
    if not a.round_s > 0:
        p.error(f"--round-s must be > 0, got {a.round_s}")
    return a


def _rule(rule: str, g: torch.Tensor) -> Callable[[], None]:
    r = make_rule(rule, LR)
    w, state = torch.randn(g.numel()), r.init_state(g.numel())
    return lambda: apply_live(r, w, g, state)


def measure(rule: str, sizes: list[int], reps: int, round_s: float) -> dict[str, Any]:
    """One rule's row (module docstring)."""
    us: dict[int, dict[str, dict[str, Any]]] = {}
    for n in sizes:
        g = torch.randn(n, generator=torch.Generator().manual_seed(n))
        rounds = round_seconds({"shard": push_step(rule, g, LR), "rule": _rule(rule, g), "torch": _torch(rule, g)},
                               reps, round_s)
        us[n] = {name: spread([s * 1e6 for s in times]) for name, times in rounds.items()}
    small, large = min(sizes), max(sizes)
    fixed = us[small]["shard"]["median"]
    # bytes/s of the shard's apply past its fixed cost: the slope between the smallest and the largest push
    # (sizes too close for the load's noise can give the larger push the shorter time: no rate, said as null)
    past = us[large]["shard"]["median"] - fixed
    rate = 4 * (large - small) / (past * 1e-6) if past > 0 else None

    def model(n: int) -> float:
        return fixed + 4 * (n - small) / rate * 1e6

    check = {str(n): {"model_us": round(model(n), 2), "measured_us": us[n]["shard"]["median"],
                      "model_vs_measured": round(model(n) / us[n]["shard"]["median"], 2)}
             for n in sorted(sizes) if small < n < large} if rate else None
    return {"bench": "shard_apply", "rule": rule, "us": {str(n): v for n, v in us.items()},
            "shard_vs_torch": {str(n): round(v["shard"]["median"] / v["torch"]["median"], 2) for n, v in us.items()},
            "fixed_us": fixed, "bytes_per_s": round(rate) if rate else None, "model_check": check}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = []
    for rule in a.rules:
        before = load_1min()
        row = {**measure(rule, sorted(set(a.sizes)), a.reps, a.round_s), "threads": a.threads, "reps": a.reps,
               "load_1min": [before, load_1min()]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(json.dumps({"bench": "shard_apply", "fixed_us": {r["rule"]: r["fixed_us"] for r in rows}}), flush=True)
    return rows


if __name__ == "__main__":
    main()
