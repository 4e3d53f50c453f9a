"""The untied layer's forward keeping its receptive fields for the weight gradient, against the backward copying them.

    .venv/bin/python bench/kept_fields.py                  # 30 rounds, 1 torch thread
    .venv/bin/python bench/kept_fields.py --reps 40 --threads 2

The untied kernel copies x's receptive fields chunk by chunk into its GEMMs' layout (``_lc_kernels._windows``) in the
forward, and again in the backward for the weight gradient. A training forward keeps them, (P, Q, B), where they take
at most ``_lc_kernels.KEEP_BYTES`` (``keeps_fields``); the old path is the same code with ``KEEP_BYTES = 0`` (nothing
kept: each chunk's fields copied into a chunk-sized buffer, twice a step, as before 2026-12-07).

Rows, each checked equal first (``torch.equal``: the same fields feed the same GEMMs), then timed interleaved
(``round_seconds``: rounds of at least 20 ms, the two taking turns), by wall clock and by this process's CPU time
(``cpu_``): ``kernel`` rows, the layer's forward and weight-gradient backward (``untied_apply``, the input not
needing a gradient, as in a greedy step) at the main job's two stage shapes, its stage 1 at batch 64 and 128 (10.2
and 20.5 MB of fields) and bench/locally_connected.py's 16 x 3x64x64, k=9 (49 MB): the last three over the budget,
kept here to see whether they would pay (``kept_by_default``: whether the budget keeps them); ``step`` rows, a greedy
training step of the main job's model (``bench/pool_lcn.py``'s ``main_step``: forward, cost, backward), loss and every
gradient equal. ``new_vs_old``: the medians' ratio; ``paired_median`` and ``paired_range``: the rounds' ratios, each
pair run back to back. ``kept_mb``: the fields held from the forward to the backward. Prints one JSON line per row.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _paired import paired, same  # noqa: E402
from _protocol import emit, load_1min, reps_and_threads, swapped, thread_settings  # noqa: E402
from downpour.layers import _lc_kernels as K  # noqa: E402
from pool_lcn import main_step  # noqa: E402

# name: (x (B, C, H, W); the banks (Ho, Wo, M, C, k, k))
SHAPES = {"main stage 1": ((32, 1, 32, 32), (25, 25, 8, 1, 8, 8)),
          "main stage 2": ((32, 8, 12, 12), (8, 8, 8, 8, 5, 5)),
          "main stage 1, batch 64": ((64, 1, 32, 32), (25, 25, 8, 1, 8, 8)),
          "main stage 1, batch 128": ((128, 1, 32, 32), (25, 25, 8, 1, 8, 8)),
          "16 x 3x64x64, k=9": ((16, 3, 64, 64), (56, 56, 8, 3, 9, 9))}


def with_budget(fn: Callable[[], tuple], budget: int) -> Callable[[], tuple]:
    """``fn`` with ``KEEP_BYTES`` set to ``budget`` for the call (0: the old path, nothing kept)."""
    def run() -> tuple:
        with swapped(K, "KEEP_BYTES", budget):
            return fn()
    return run


def layer_step(name: str) -> Callable[[], tuple]:
    """The layer's forward and backward at ``name``'s shape (random x, banks and output gradient): (y, dw)."""
    x_shape, w_shape = SHAPES[name]
    torch.manual_seed(0)
    x = torch.randn(x_shape)
    w = K.new_banks(*w_shape[:4], w_shape[-1]).copy_(torch.randn(w_shape)).requires_grad_(True)
    g = torch.randn(x_shape[0], w_shape[2], *w_shape[:2])

    def step() -> tuple:
        w.grad = None
        y = K.untied_apply(x, w, 1, keep_fields=True)
        y.backward(g)
        return y, w.grad
    return step


def fields_mb(name: str) -> float:
    (b, c, _, _), (ho, wo, _, _, k, _) = SHAPES[name]
    return ho * wo * c * k * k * b * 4 / 1e6


def main(argv: list[str] | None = None) -> None:
    args = reps_and_threads(__doc__.splitlines()[0], reps=30).parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [("kernel", name, layer_step(name), fields_mb(name)) for name in SHAPES]
    rows += [("step", f"main stage {stage}", main_step(stage), fields_mb(f"main stage {stage}")) for stage in (1, 2)]
    out: list[dict] = []
    for kind, name, step, mb in rows:
        new, old = with_budget(step, max(K.KEEP_BYTES, 1 << 30)), with_budget(step, 0)
        if not same(new(), old()):
            raise SystemExit(f"kept_fields: {kind} at {name}: kept fields give other results than copied ones")
        load = load_1min()
        emit({"bench": "kept_fields", "row": kind, "shape": name, "equal": True, "kept_mb": round(mb, 2),
              "kept_by_default": mb * 1e6 <= K.KEEP_BYTES, **paired(new, old, args.reps),
              "threads": thread_settings(), "load_1min": [load, load_1min()]}, out)


if __name__ == "__main__":
    main()
