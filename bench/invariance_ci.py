"""What the invariance ranges' bootstrap intervals cost (2026-12-06), against the sweep they are read from.

    .venv/bin/python bench/invariance_ci.py                # 5 interleaved repetitions, 1 thread

``downpour analyze`` gives each of the pictured unit's invariance ranges a 95% bootstrap interval over
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

from _main_job import lfw_sweep  # noqa: E402
from _protocol import emit, interleave, ratio, summary, thread_settings  # noqa: E402
from downpour.analysis.invariance import invariance_curves  # noqa: E402
from downpour.analysis.invariance_ci import RANGE_REPLICATES, range_intervals  # noqa: E402
from downpour.analysis.passes import Passes  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    args, model, s = lfw_sweep(__doc__.split("\n")[0], argv)
    faces = s["faces"]
    made: dict = {}

    def sweep() -> dict:
        made["passes"] = Passes([0])
        made["inv"] = invariance_curves(model, faces, 0, layer=s["layer"], prepare=s["prepare"], negatives=s["others"],
                                        fill=s["fill"], passes=made["passes"])
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
