"""What the invariance ranges' bootstrap intervals cost (2026-12-06), against the sweep they are read from.

    .venv/bin/python bench/invariance_ci.py                # 5 interleaved repetitions, 1 thread

Since 2026-12-06 ``downpour analyze`` gives each of the pictured unit's invariance ranges a 95% bootstrap interval over
its test images (``downpour/analysis/invariance_ci.py``: 500 replicates recomputed from the sweep's kept per-image
responses, no forward pass). Row ``intervals``: ``sweep``, :func:`~downpour.analysis.invariance.invariance_curves` of
one unit as the analysis makes it (lfw's held-out faces, the non-faces for the AUC curves, the main job's network
freshly initialised, prepared at its 32x32); ``bootstrap``, :func:`~downpour.analysis.invariance_ci.range_intervals`
on that sweep's passes. ``ratio``: bootstrap / sweep. Prints one JSON line.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _main_job import main_model  # noqa: E402
from _protocol import emit, interleave, ratio, reps_and_threads, summary, thread_settings  # noqa: E402
from downpour.analysis.invariance import invariance_curves  # noqa: E402
from downpour.analysis.invariance_ci import RANGE_REPLICATES, range_intervals  # noqa: E402
from downpour.analysis.labelled import load_labelled, prepare_images  # noqa: E402
from downpour.analysis.passes import Passes  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    args = reps_and_threads(__doc__.split("\n")[0]).parse_args(argv)
    cfg, model = main_model(args.threads)
    shape, layer, fill = model.input_shape, cfg.analysis.layer, cfg.analysis.invariance_fill
    data = load_labelled("lfw", shape)
    faces, others = (data.pixels[torch.from_numpy(data.y == k)] for k in (1, 0))
    see = lambda t: prepare_images(t, shape, None)      # noqa: E731  (one function: Passes binds to it)
    made: dict = {}

    def sweep() -> dict:
        made["passes"] = Passes([0])
        made["inv"] = invariance_curves(model, faces, 0, layer=layer, prepare=see, negatives=others, fill=fill,
                                        passes=made["passes"])
        return {}

    def bootstrap() -> dict:
        ci = range_intervals(made["inv"], made["passes"], seed=0)
        return {"with_interval": sum(c is not None and c["width"] is not None for c in ci.values())}

    reps = interleave({"sweep": lambda r: sweep(), "bootstrap": lambda r: bootstrap()}, reps=args.reps)
    row = {"bench": "invariance_ci", "row": "intervals", "faces": int(len(faces)), "replicates": RANGE_REPLICATES,
           "with_interval": reps[-1]["bootstrap"]["with_interval"], **summary(reps, "wall_s"),
           "ratio": ratio(reps, "wall_s", "bootstrap", "sweep"), "threads": thread_settings()}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
