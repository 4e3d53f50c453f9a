"""Where `downpour analyze` spends its CPU, part by part, without a profiler: each measurement (``Kept.part``: the
splits, the face test, the optimal stimulus, the invariance sweeps, each probe), each figure and the report, timed by
this process's CPU (``time.process_time``), on a copy of an analysed run (the run itself is left as it is).

    .venv/bin/python bench/analysis_parts.py --run RUN        # RUN: a finished run, e.g. `downpour train --out RUN`

cProfile's cost per Python call inflates matplotlib and scikit-learn's checks 2-5 fold, so their shares here are the
ones to read. torch, scikit-learn (and scipy.stats with it) and matplotlib are imported before the clock starts: a
main job imports them once, whatever the analysis does. Each part's seconds include what it calls (the figures are not
inside the parts; the report is outside ``analyze_run``). Within the figures (the report's verdict figure too), the
tight layouts (``TightLayoutEngine.execute``: every panel's ticks made and its labels measured) and the draws
(``FigureCanvasAgg.draw``: a PNG's rendering pass; the crop of a picture's figure, ``bbox_inches="tight"``, measures it
in a pass of its own, counted in neither); and Python's garbage collector (``gc.callbacks``: its collections by
generation, whatever part they fall in). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import functools
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402,F401  (imported before the clock, as the module docstring says)
import sklearn.linear_model  # noqa: E402,F401
import sklearn.model_selection  # noqa: E402,F401
import torch  # noqa: E402,F401
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.layout_engine import TightLayoutEngine  # noqa: E402

import downpour.cli_analyze as cli_analyze  # noqa: E402
from _protocol import emit, load_1min  # noqa: E402
from downpour.analysis import figures, partial  # noqa: E402
from downpour.analysis import run as analysis_run  # noqa: E402
from downpour.cli import main as cli  # noqa: E402

FIGURES = ("response_histogram", "stimulus_and_top_images", "invariance_plot", "filter_grid")


def clocked(cpu: dict[str, float], name: str, fn: Callable) -> Callable:
    """``fn``, adding the CPU seconds of each call to ``cpu[name]``."""
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - start
    return timed


def collections(cpu: dict[str, float]) -> Callable[[str, dict], None]:
    """A ``gc.callbacks`` entry adding each collection's CPU seconds to ``cpu``, by generation."""
    started = [0.0]

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            name = f"garbage collection, generation {info['generation']}"
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - started[0]
    return timed


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a finished run (copied; the copy is analysed)")
    args = p.parse_args(argv)
    cpu: dict[str, float] = {}
    part = partial.Kept.part
    partial.Kept.part = lambda self, name, fn, **kw: part(self, name, clocked(cpu, name, fn), **kw)
    for name in FIGURES:
        setattr(figures, name, clocked(cpu, f"figure: {name}", getattr(figures, name)))
    analysis_run.training_figures = clocked(cpu, "figures: training", analysis_run.training_figures)
    cli_analyze.report_only = clocked(cpu, "report.html", cli_analyze.report_only)
    analysis_run.analyze_run = clocked(cpu, "analysis, in all", analysis_run.analyze_run)
    TightLayoutEngine.execute = clocked(cpu, "within the figures: tight layouts", TightLayoutEngine.execute)
    FigureCanvasAgg.draw = clocked(cpu, "within the figures: draws", FigureCanvasAgg.draw)
    gc.callbacks.append(collections(cpu))
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / args.run.name
        shutil.copytree(args.run, copy)
        load0, start = load_1min(), time.process_time()
        if cli(["analyze", str(copy)]):
            raise SystemExit(f"downpour analyze {copy} failed")
        total = time.process_time() - start
    whole = cpu["analysis, in all"]
    row = {"bench": "analysis_parts", "run": str(args.run), "load_1min": [load0, load_1min()],
           "cpu_s": round(total, 2),
           "parts": {k: {"cpu_s": round(v, 2), "share_of_analysis": round(v / whole, 3)}
                     for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])}}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
