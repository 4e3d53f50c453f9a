"""The tied decoder's backward from one copy of its receptive fields, against the two passes it made before.

    .venv/bin/python bench/adjoint_backward.py                  # 30 rounds, 1 torch thread
    .venv/bin/python bench/adjoint_backward.py --reps 40 --threads 2

A cat stage with a tied decoder reconstructs its input as ``adjoint(apply(x, w), w)``. The adjoint's backward needs
the layer applied to the reconstruction's gradient g (the codes' gradient) and the weight gradient with g as the
input: both read g's receptive fields, which the untied kernel copies chunk by chunk into its GEMM layout
(``_lc_kernels._windows``; a cat stage's k·k-fold copy of its input, as costly as the GEMMs that read it). Until
2026-12-07 the two were computed by two passes (``lc_apply``, then ``lc_backward``), each copying the fields;
``lc_apply_and_weight_grad`` does both in one. A step makes four such copies (the forward, the adjoint's backward
twice, the weight gradient of the forward), now three.

Rows, each checked equal first (``torch.equal``: the same chunks feed the same GEMMs), then timed interleaved
(``round_seconds``: rounds of at least 20 ms, the two taking turns), by wall clock and by this process's CPU time
(``cpu_``: what other jobs on a shared machine move least): ``kernel`` rows, the adjoint's backward alone at the main
job's two stage shapes (its expanded tiled banks, batch 32); ``step`` rows, a greedy training step of the main job's
model (``bench/pool_lcn.py``'s ``main_step``: forward, cost, backward) with the one pass against the step whose
adjoint backward makes the two (``as_before``), loss and every gradient equal. ``new_vs_old``: the medians' ratio;
``paired_median`` and ``paired_range``: the rounds' ratios, each pair run back to back. Prints one JSON line per row.
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

# stage: (g: the reconstruction's gradient (B, C, H, W); the expanded banks (Ho, Wo, M, C, k, k)) of the main job
SHAPES = {1: ((32, 1, 32, 32), (25, 25, 8, 1, 8, 8)), 2: ((32, 8, 12, 12), (8, 8, 8, 8, 5, 5))}


def two_passes(g: torch.Tensor, w: torch.Tensor, y: torch.Tensor, stride: int, chunk_bytes: int = K.CHUNK_BYTES,
               grad_maps_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``_Adjoint.backward`` computed before: the layer on g, then the weight gradient, each its own pass."""
    dy = K._Apply.apply(g, w, stride, chunk_bytes, False)
    dw = K.lc_backward(y, stride, w.shape[-1], tuple(g.shape[2:]), x=g, chunk_bytes=chunk_bytes,
                       grad_maps_last=grad_maps_last)[1]
    return dy, dw


def as_before(fn: Callable[[], tuple]) -> Callable[[], tuple]:
    """``fn`` with the adjoint's backward in two passes (the kernel's module function swapped for the call)."""
    def run() -> tuple:
        with swapped(K, "lc_apply_and_weight_grad", two_passes):
            return fn()
    return run


def kernel_pair(stage: int) -> tuple[Callable[[], tuple], Callable[[], tuple]]:
    """The adjoint's backward at the main job's ``stage`` shape (random g, banks and codes): one pass, two passes."""
    g_shape, w_shape = SHAPES[stage]
    torch.manual_seed(stage)
    g, w = torch.randn(g_shape), torch.randn(w_shape)
    y = torch.randn(g_shape[0], w_shape[2], *w_shape[:2])                 # the codes (B, M, Ho, Wo)
    layout = K.maps_last(w)
    return (lambda: K.lc_apply_and_weight_grad(g, w, y, 1, grad_maps_last=layout),
            lambda: two_passes(g, w, y, 1, grad_maps_last=layout))


def main(argv: list[str] | None = None) -> None:
    args = reps_and_threads(__doc__.splitlines()[0], reps=30).parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [("kernel", stage, *kernel_pair(stage)) for stage in SHAPES]
    rows += [("step", stage, step, as_before(step)) for stage in SHAPES for step in [main_step(stage)]]
    out: list[dict] = []
    for kind, stage, new, old in rows:
        if not same(new(), old()):
            raise SystemExit(f"adjoint_backward: {kind} of stage {stage}: the one pass differs from the two")
        load = load_1min()
        emit({"bench": "adjoint_backward", "row": kind, "stage": stage, "equal": True, **paired(new, old, args.reps),
              "threads": thread_settings(), "load_1min": [load, load_1min()]}, out)


if __name__ == "__main__":
    main()
