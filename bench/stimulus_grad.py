"""The optimal stimulus of an analysed run's pictured unit, as `downpour analyze` finds it: its 302 input gradients
(analysis.stimulus_steps 300, the redraw check's and the receptive field's) with the untied kernel's weight gradients
left out (``layers.input_gradients_only``, what the analysis does) against computed and dropped (the plain
``autograd.grad`` path), in turn.

    .venv/bin/python bench/stimulus_grad.py --run RUN              # RUN: an analysed run (its analysis.json read)
    .venv/bin/python bench/stimulus_grad.py --run RUN --reps 1     # a quick check that it runs

Both ways run ``optimal_stimulus`` with the analysis's arguments (unit, sign, norm, steps, restarts, seed) and torch's
threads as the analysis sets them (the run's ``train.threads``); each way's image, restarts and trace are checked equal,
bit for bit, to the other's and to the run's analysis.json. One row: ``cpu_ratio`` (this process's CPU,
``time.process_time``: the machine's load moves it least) and ``ratio`` (wall), new / old, < 1 faster. Prints one JSON
line.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _protocol import emit, interleave, ratio, reps_and_threads, summary  # noqa: E402
from downpour.analysis import stimulus  # noqa: E402
from downpour.analysis.options import open_run  # noqa: E402

NEW = stimulus.input_gradients_only


def find(model: Any, shape: tuple[int, ...], opts: Any, seed: int, saved: dict[str, Any], way: str) -> dict[str, Any]:
    """The stimulus one way; a SystemExit unless it is the run's own, bit for bit."""
    stimulus.input_gradients_only = NEW if way == "new" else contextlib.nullcontext
    try:
        s = stimulus.optimal_stimulus(model, saved["unit"], layer=saved["layer"], norm=saved["norm"],
                                      sign=saved["sign"], steps=opts.stimulus_steps, restarts=opts.stimulus_restarts,
                                      seed=seed, input_shape=shape)
    finally:
        stimulus.input_gradients_only = NEW
    if (s.image.tolist(), s.restarts, s.trace) != (saved["image"], saved["restarts"], saved["trace"]):
        raise SystemExit(f"the {way} way's stimulus is not the run's analysis.json's")
    return {"activation": s.activation}


def main(argv: list[str] | None = None) -> list[dict]:
    p = reps_and_threads(__doc__.split("\n\n")[0], threads=None, reps=5)
    p.add_argument("--run", type=Path, required=True, help="an analysed run (its analysis.json read)")
    args = p.parse_args(argv)
    run, model = open_run(args.run)
    a = run.read_json("analysis.json")
    saved = {**a["optimal_stimulus"], "layer": a["layer"]}
    opts = run.config.analysis      # (an analysis run with other steps or restarts: the check below says so)
    shape = tuple(run.read_json("model.json")["input_shape"])
    if run.config.train.threads:        # as analyze_run sets them: the sums, and so the bits, depend on it
        torch.set_num_threads(run.config.train.threads)
    reps = interleave({way: (lambda r, way=way: find(model, shape, opts, run.config.seed, saved, way))
                       for way in ("new", "old")}, reps=args.reps)
    row = {"bench": "stimulus_grad", "run": str(args.run), "steps": opts.stimulus_steps,
           "restarts": opts.stimulus_restarts, "torch_threads": torch.get_num_threads(), "same_as_run": True,
           **summary(reps, "wall_s"), "ratio": ratio(reps, "wall_s", "new", "old"),
           "cpu_ratio": ratio(reps, "driver_cpu_s", "new", "old")}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
