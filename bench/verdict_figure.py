"""The face test's verdict figure, drawn as every `downpour report` draws it: its marks as three artists a panel (new)
against an ``errorbar`` a method (old, before 2026-12-06: 25 for 5 negative sets), in turn.

    .venv/bin/python bench/verdict_figure.py --run RUN              # RUN: an analysed run (its face_neuron.controls)
    .venv/bin/python bench/verdict_figure.py --run RUN --reps 1     # a quick check that it runs

The old way is put back here (``verdict_figure.marks``), as it was; the rest of the figure (panels, titles, layout, the
save) is the same code. Both ways' PNGs are checked to be the same size. One row: ``cpu_ratio`` (this process's CPU,
``time.process_time``: the machine's load moves it least) and ``ratio`` (wall), new / old, < 1 faster. The first draw
of the process (matplotlib's fonts loaded) is made before the timed ones. Prints one JSON line.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from _protocol import emit, interleave, ratio, reps_and_threads, summary  # noqa: E402
from downpour.analysis import verdict_figure  # noqa: E402
from downpour.analysis.face_verdict import LEARNED  # noqa: E402
from downpour.analysis.report_controls import set_labels  # noqa: E402
from downpour.train.rundir import RunDir  # noqa: E402

NEW = verdict_figure.marks


def old_marks(ax: Any, drawn: list[tuple[int, str, dict[str, Any]]]) -> None:
    """The marks before 2026-12-06: one errorbar a method (a dot line, a bar collection, two cap lines)."""
    for y, m, r in drawn:
        low, high = r["auc_ci"]
        ax.errorbar([r["auc"]], [y], xerr=[[r["auc"] - low], [high - r["auc"]]], fmt="o",
                    color=verdict_figure.COLOURS[m], ms=5 if m == LEARNED else 4, lw=2.2 if m == LEARNED else 1.2,
                    capsize=2)


def draw(rows: list[dict[str, Any]], labels: dict[str, str], way: str) -> bytes:
    verdict_figure.marks = NEW if way == "new" else old_marks
    try:
        return verdict_figure.verdict_png(rows, labels)
    finally:
        verdict_figure.marks = NEW


def main(argv: list[str] | None = None) -> list[dict]:
    p = reps_and_threads(__doc__.split("\n\n")[0], threads=None, reps=7)
    p.add_argument("--run", type=Path, required=True, help="an analysed run (its analysis.json read)")
    args = p.parse_args(argv)
    a = RunDir.open(args.run).read_json("analysis.json")
    rows, labels = a["face_neuron"]["controls"], set_labels(a["face_neuron"]["controls_setup"])
    sizes = {way: Image.open(io.BytesIO(draw(rows, labels, way))).size for way in ("new", "old")}
    if sizes["new"] != sizes["old"]:
        raise SystemExit(f"the new way's PNG is {sizes['new']} pixels, the old way's {sizes['old']}")
    reps = interleave({way: (lambda r, way=way: {"png_bytes": len(draw(rows, labels, way))}) for way in ("new", "old")},
                      reps=args.reps)
    row = {"bench": "verdict_figure", "run": str(args.run), "sets": len(verdict_figure.verdict_sets(rows)),
           "size": sizes["new"], **summary(reps, "wall_s"), "ratio": ratio(reps, "wall_s", "new", "old"),
           "cpu_ratio": ratio(reps, "driver_cpu_s", "new", "old")}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
