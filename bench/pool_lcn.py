"""L2 pooling and local contrast normalisation, forward and backward, against their baselines.

    .venv/bin/python bench/pool_lcn.py                   # the shapes below, best of 15 rounds
    .venv/bin/python bench/pool_lcn.py --reps 30 --threads 2
    .venv/bin/python bench/pool_lcn.py --unread-lcn --reps 40   # only: a step without its unread LCN, against before

Every cat stage ends with ``L2Pool2d`` then ``LocalContrastNorm2d`` (``downpour/layers``), on every
training step (LCN where a stage above reads it: ``unread_lcn`` below). Each is timed forward + backward (a squared-sum loss) against a baseline computed in
the same run, interleaved, on the same input:

- pooling against torch's own ``F.lp_pool2d(x, 2, k, stride)`` (the same sqrt of a window's sum of
  squares, without our eps floor); ``vs_torch`` = ours / torch's.
- LCN (``sums="auto"``, what a stage runs) and its banded products (``"banded"``) against the direct
  form (``"direct"``, the layer's only form before 2026-12-03): one ``(1, C, k, k)`` convolution of the
  2-D Gaussian over all channels per windowed sum, divided by the window's mass inside the map (another
  convolution); the banded form takes the channels' mean and multiplies it by a banded matrix on each
  side (``window_matrix``). ``lcn_vs_direct`` = auto / direct and ``banded_vs_direct`` (below 1: faster).
  Before timing, the two forms are checked to agree in float64 to 1e-12.
- the FLOP rate of pooling + LCN as greedy steps run them (a trained stage pools forward and backward, a frozen one
  below a step pools and normalises forward:
  ``downpour.plan.calibrate.pool_lcn_step``, the FLOPs as the plan counts them) against the locally connected
  layer's, the plan's filter rate (``layer_step``, the shape ``downpour plan --calibrate`` times): ``pool_lcn_gflops``,
  ``lc_gflops`` and ``pool_lcn_vs_lc`` (their ratio: the plan's default pooling + LCN rate is its default layer rate
  times the main job's stage 1 ratio, downpour/plan/calibrate.py).

Shapes: the main job's two stages as it builds them (batch 32; stage 1's 8 maps of 25x25 pooled 3x3
with step 2 to 12x12, stage 2's 8 of 8x8 pooled 3x3 to 6x6; LCN 5x5 on both), the paper's stage 1
(8 maps of 183x183, 5x5 pooling and LCN, batch 4), and one map of 804x804 (LCN on 800x800), where the
banded products lose and "auto" takes the direct form. ``share_of_step`` gives pooling + LCN's part of one whole training step of the
main job's model (forward, cost, backward), where that step is measured (the main rows).
Prints one JSON line per shape.

``unread_lcn`` rows (first, and alone with ``--unread-lcn``): a greedy step of the main job's stage 1 and stage 2
(``CatNet.forward_train``, which skips the LCN of the last stage a step runs: nothing reads it) against the step that
normalises every stage (as it did before 2026-12-06), checked equal first (loss and every gradient, torch.equal), then
interleaved (bench/_paired.py): ``ms_new`` and ``ms_old`` (best of each side's rounds), ``new_vs_old`` (their ratio) and
``paired_median`` (the rounds' ratios, each pair run back to back), in wall time and (``cpu_``) in this process's CPU
time, which other jobs on the machine disturb less.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _paired import paired, same  # noqa: E402
from _protocol import emit, load_1min, reps_and_threads, thread_settings  # noqa: E402
from downpour.layers import L2Pool2d, LocalContrastNorm2d  # noqa: E402
from downpour.plan.calibrate import best_seconds, layer_step, pool_lcn_step  # noqa: E402

# name: (batch, maps, side, pool kernel, pool stride, LCN window) of a stage's codes
SHAPES = {"main stage 1": (32, 8, 25, 3, 2, 5), "main stage 2": (32, 8, 8, 3, 1, 5),
          "paper stage 1": (4, 8, 183, 5, 1, 5), "one map of 804x804": (1, 1, 804, 5, 1, 5)}


def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x.grad = None
        fn(x).pow(2).sum().backward()
    return run


def best_ms(fns: dict[str, Callable[[], None]], reps: int) -> dict[str, float]:
    """Best of ``reps`` rounds per function (each round at least 20 ms of calls), the functions interleaved (the way
    ``downpour plan --calibrate`` times the layer and pooling + LCN: ``best_seconds``), in ms."""
    return {name: s * 1e3 for name, s in best_seconds(fns, reps).items()}


def main_step(stage: int | None = None, as_before: bool = False) -> Callable[[], tuple]:
    """One training step of the main job's model on a batch of 32 (as bench/step_check.py's plain step), training
    ``stage`` (None: all, joint; greedy stage 2 reads stage 1 from the frozen cache, as in a run); it returns the
    loss and the gradients. ``as_before``: every stage normalises, read or not (the step before 2026-12-06)."""
    from downpour.batch import Batch
    from downpour.config import load_config
    from downpour.data.build import sample_shape
    from downpour.models.registry import build

    cfg = load_config("main")
    shape = sample_shape(cfg.data)
    torch.manual_seed(0)
    model, objective = build(cfg, shape)
    model.set_stage(stage)
    batch = Batch(torch.randn(cfg.train.batch_size, *shape))
    for s in model.stages if as_before else ():
        s.forward = lambda x, weight=None, normalise=True, s=s: type(s).forward(s, x, weight)

    def step() -> tuple:
        model.zero_grad(set_to_none=True)
        total = objective(model.forward_train(batch))[0]
        total.backward()
        return total, [p.grad for p in model.parameters()]
    return step


def step_ms(reps: int) -> float:
    return best_ms({"step": main_step()}, reps)["step"]


def unread_lcn(stage: int, reps: int) -> dict:
    """A greedy training step of the main job's ``stage``, its unread LCN skipped, against the step
    that normalises the trained stage's pooled codes for no reader (``as_before``), interleaved; checked equal first."""
    new, old = main_step(stage), main_step(stage, as_before=True)
    if not same(new(), old()):
        raise SystemExit(f"pool_lcn: stage {stage}: the step without its unread LCN differs from the step before")
    # (the best of each side's rounds, as every other figure of this bench: best_ms)
    return {"bench": "pool_lcn", "row": "unread_lcn", "stage": stage, "equal": True, **paired(new, old, reps, pick=min)}


def check_lcn(maps: int, side: int, window: int) -> float:
    """Largest difference of the banded and the direct form in float64 (outputs are O(1))."""
    banded, direct = (LocalContrastNorm2d(maps, kernel_size=window, sums=s).double() for s in ("banded", "direct"))
    x = torch.randn(2, maps, min(side, 40), min(side, 40), dtype=torch.float64) * 3 + 1
    return float((banded(x) - direct(x)).abs().max())


def measure(name: str, reps: int, step: float | None) -> dict:
    batch, maps, side, pool, stride, window = SHAPES[name]
    error = check_lcn(maps, side, window)
    if error > 1e-12:
        raise SystemExit(f"pool_lcn: {name}: the separable LCN differs from the direct form by {error:.3g}")
    torch.manual_seed(0)
    x = torch.randn(batch, maps, side, side, requires_grad=True)
    l2 = L2Pool2d(pool, stride=stride)
    y = l2(x).detach().requires_grad_()                      # what LCN reads in a stage: the pooled codes
    lcn = {s: LocalContrastNorm2d(maps, kernel_size=window, sums=s) for s in ("auto", "banded", "direct")}
    (as_run, flops), (lc, lc_flops) = pool_lcn_step(batch, maps, side, pool, stride, window), layer_step()
    ms = best_ms({"pool": fwd_bwd(l2, x), "pool_torch": fwd_bwd(lambda t: F.lp_pool2d(t, 2, pool, stride), x),
                  "lcn": fwd_bwd(lcn["auto"], y), "lcn_banded": fwd_bwd(lcn["banded"], y),
                  "lcn_direct": fwd_bwd(lcn["direct"], y), "pool_lcn_as_run": as_run, "lc_layer": lc}, reps)
    rate, lc_rate = flops / ms["pool_lcn_as_run"] / 1e6, lc_flops / ms["lc_layer"] / 1e6     # GFLOP/s
    row = {"bench": "pool_lcn", "shape": name, "input": [batch, maps, side, side], "pool": [pool, stride],
           "lcn_window": window, "ms": {k: round(v, 4) for k, v in ms.items()},
           "pool_vs_torch": round(ms["pool"] / ms["pool_torch"], 3),
           "lcn_vs_direct": round(ms["lcn"] / ms["lcn_direct"], 3),
           "banded_vs_direct": round(ms["lcn_banded"] / ms["lcn_direct"], 3), "lcn_max_error_f64": error,
           "pool_lcn_gflops": round(rate, 3), "lc_gflops": round(lc_rate, 3),
           "pool_lcn_vs_lc": round(rate / lc_rate, 3)}
    if step is not None:
        row["step_ms"] = round(step, 3)
        row["share_of_step"] = round((ms["pool"] + ms["lcn"]) / step, 3)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    p = reps_and_threads(__doc__.split("\n")[0], reps=15)
    p.add_argument("--shape", choices=sorted(SHAPES), action="append", help="one shape (default: all)")
    p.add_argument("--unread-lcn", action="store_true", help="only the unread_lcn rows (a step without its unread LCN)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = load_1min()
    rows = []
    for stage in (1, 2) if args.unread_lcn or not args.shape else ():
        emit({**unread_lcn(stage, args.reps), "threads": thread_settings(), "load_1min": [load, load_1min()]}, rows)
    if args.unread_lcn:
        return rows
    step = step_ms(args.reps)
    for name in args.shape or SHAPES:
        row = measure(name, args.reps, step if name.startswith("main") else None)
        row.update(threads=thread_settings(), load_1min=[load, load_1min()])
        emit(row, rows)
    return rows


if __name__ == "__main__":
    main()
