"""What the invariance sweep's widening cost (2026-12-05): one unit's sweep under the old sweep and the new.

    .venv/bin/python bench/invariance_sweep.py                # 5 interleaved repetitions, 1 thread

The sweeps run to where the face is gone (``downpour/analysis/invariance.py``: shifts to the whole side, scales
1/32x to 8x, turns to 180 degrees; 83 warps): at 0.375 of the side, 0.25x to 4x and 90 degrees (47 warps, the sweep
before 2026-12-05) most of the glimpse fronts' ranges in the mechanisms study ran to an end. Row ``sweep``:
:func:`~downpour.analysis.invariance.sweep` of one unit as the studies' cell measure makes it (its faces and the
non-faces warped, prepared, the AUC curves too), on lfw's held-out 30 faces and 30 non-faces at the main job's 32x32,
through the main job's network freshly initialised; ``new`` the default sweep, ``old`` the one before, interleaved
(bench/_protocol.py); ``warps`` each one's count. ``ratio``: new / old. Prints one JSON line.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _main_job import lfw_sweep  # noqa: E402
from _protocol import emit, interleave, ratio, summary, thread_settings  # noqa: E402
from downpour.analysis.invariance import DEFAULT_ANGLES, DEFAULT_SCALES, DEFAULT_SHIFTS, sweep  # noqa: E402

OLD = {"scales": (0.25, 0.3536, 0.5, 0.625, 0.75, 0.875, 1.0, 1.125, 1.25, 1.5, 1.75, 2.0, 2.828, 4.0),
       "angles": (-90.0, -67.5, -45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0, 67.5, 90.0),
       "shifts": (-0.375, -0.25, -0.1875, -0.125, -0.0625, 0.0, 0.0625, 0.125, 0.1875, 0.25, 0.375)}
NEW = {"scales": DEFAULT_SCALES, "angles": DEFAULT_ANGLES, "shifts": DEFAULT_SHIFTS}


def warps(values: dict) -> int:
    """The sweep's warps: each scale, each shift on both axes, each angle."""
    return len(values["scales"]) + 2 * len(values["shifts"]) + len(values["angles"])


def main(argv: list[str] | None = None) -> list[dict]:
    args, model, s = lfw_sweep(__doc__.split("\n")[0], argv)
    faces, others = s["faces"], s["others"]

    def run(values: dict) -> dict:
        sweep(model, faces, [0], [1], [0.0], layer=s["layer"], prepare=s["prepare"], negatives=others, fill=s["fill"],
              **values)
        return {"warps": warps(values)}

    reps = interleave({"new": lambda r: run(NEW), "old": lambda r: run(OLD)}, reps=args.reps)
    row = {"bench": "invariance_sweep", "row": "sweep", "faces": int(len(faces)), "others": int(len(others)),
           "warps": {"new": warps(NEW), "old": warps(OLD)}, **summary(reps, "wall_s"),
           "ratio": ratio(reps, "wall_s", "new", "old"), "threads": thread_settings()}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
