"""The report's figures of a recorded run, drawn the new way (each laid out once), the first 2026-12-06 way and the
old way, in turn.

    .venv/bin/python bench/report_figures.py --run RUN              # RUN: an analysed run (`downpour analyze RUN`)
    .venv/bin/python bench/report_figures.py --run RUN --reps 1     # a quick check that it runs

:func:`downpour.analysis.canvas.figure` lays each figure out once at the PNG's resolution on an Agg canvas of its
own and the save draws it once, uncropped (the layout already fills it). The old way, the code before 2026-12-06, is
put back here (``canvas.figure`` and ``canvas.save``): each figure of panels calls ``tight_layout`` (its labels
measured once to place the panels), then ``savefig(bbox_inches="tight")``, which draws it twice more (once to crop
it), each pass with a fresh renderer, so every label is measured anew. So is the first way of 2026-12-06
(``prev``: ``layout="tight"``, whose engine measures every panel twice, the spines included), whose PNGs the new
way's are compared with byte for byte (``pngs_same_as_prev``: the layout found more cheaply, not changed).

The six figures ``analyze`` draws, from the run's own inputs where it keeps them: the loss curves (metrics.jsonl),
the invariance plot (analysis.json), the first-layer filters (the model), the optimal stimulus (analysis.json) beside
random pictures of its shape as the top images, and the staleness bars (the run's, as the report reads them:
:func:`~downpour.analysis.report_training.staleness_histograms`; or two workers' made up where the run had no
parameter server), the response histogram of random responses. Both ways' PNGs are checked to
be within 5% of each other in each side first (the layout's margin, 1.08 font sizes, against the crop's 0.1 inch).
A fourth way, ``grid``, is the new way with every place of a grid of panels made and the unused ones turned off,
as the three others do (``whole_grid``), against :func:`downpour.analysis.canvas.panels`, which makes
only the places drawn: ``cpu_ratio_vs_grid``, and ``pngs_same_as_grid`` byte for byte. ``cpu_s_per_figure``: each
figure's CPU seconds per way. One row: ``cpu_ratio`` (this process's CPU, ``time.process_time``: the machine's load
moves it least) and ``ratio`` (wall), new / old, < 1 faster, and the same new / prev (``cpu_ratio_vs_prev``,
``ratio_vs_prev``). Prints one JSON line.
"""
from __future__ import annotations

import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from _protocol import emit, interleave, ratio, reps_and_threads, summary  # noqa: E402
from downpour.analysis import canvas, figures, training_plots  # noqa: E402
from downpour.analysis.options import open_run  # noqa: E402
from downpour.analysis.report_training import staleness_histograms  # noqa: E402

NEW = canvas.figure, canvas.save, canvas.panels
WAYS = ("new", "grid", "prev", "old")
_LAID_OUT: weakref.WeakSet = weakref.WeakSet()      # the old way's figures that called tight_layout before saving


def old_figure(width: float, height: float, laid_out: bool = True) -> Figure:
    fig = Figure(figsize=(width, height))
    if laid_out:
        _LAID_OUT.add(fig)
    return fig


def old_save(fig: Figure, path: Path) -> Path:
    if fig in _LAID_OUT:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def whole_grid(fig: Figure, rows: int, cols: int, places: list[tuple[int, int]]) -> list:
    """The panels as the ``grid`` way, and the old and prev ones, make them: every place of the grid made,
    those not in ``places`` turned off."""
    grid = fig.subplots(rows, cols, squeeze=False)
    for r, c in set(np.ndindex(rows, cols)) - set(places):
        grid[r, c].axis("off")
    return [grid[r, c] for r, c in places]


def prev_figure(width: float, height: float, laid_out: bool = True) -> Figure:
    """The first 2026-12-06 way: the tight layout engine as ``layout="tight"`` makes it, whose ``rect=(0, 0, 1, 1)``
    measures every panel twice (the second pass places nothing the first did not), the spines measured too."""
    fig = Figure(figsize=(width, height), dpi=canvas.DPI, layout="tight" if laid_out else None)
    FigureCanvasAgg(fig)
    return fig


def prev_save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine(None)
    fig.savefig(path, dpi=canvas.DPI, bbox_inches=None if engine is not None else "tight")
    return path


def drawings(run_path: Path) -> dict[str, Callable[[Path], Path]]:
    """Each figure of the run, as a function of the folder it is drawn into."""
    run, model = open_run(run_path)
    analysis = run.read_json("analysis.json")
    metrics = run.metrics()
    rng = np.random.default_rng(0)
    stimulus = np.asarray(analysis["optimal_stimulus"]["image"], dtype=np.float64)
    top = analysis["top_images"]["responses"]
    filters = model.first_layer_filters()
    # drawn once, so that every way draws the same pictures (the PNGs are compared)
    pictures = rng.random((len(top), *stimulus.shape))
    responses = rng.normal(1, 1, 300).tolist(), rng.normal(0, 1, 300).tolist()
    made_up = {"overall": {0: 40, 1: 90, 2: 50, 4: 9},       # (a run without a parameter server has none)
               **{f"worker {w}": {0: 20, 1: 45 + w, 2: 25, 4: 4} for w in range(2)}}
    # read as the report reads them (whole-number keys): analysis.json's copy has JSON's string keys
    staleness = staleness_histograms(run, metrics) or made_up
    out = {
        "loss": lambda d: training_plots.loss_curves(metrics, d / "loss.png"),
        "invariance": lambda d: figures.invariance_plot(analysis["invariance"], d / "invariance.png"),
        "stimulus": lambda d: figures.stimulus_and_top_images(stimulus, pictures,
                                                              d / "optimal_stimulus.png", "unit 0: top images", top),
        "staleness": lambda d: training_plots.staleness_histogram(staleness, d / "staleness.png"),
        "responses": lambda d: figures.response_histogram(*responses, 0.5, d / "face_neuron_responses.png"),
    }
    if filters is not None:
        out["filters"] = lambda d: figures.filter_grid(filters.numpy(), d / "filters.png")
    return out


def draw_all(draw: dict[str, Callable[[Path], Path]], folder: Path, way: str, cpu: dict | None = None
             ) -> dict[str, tuple[int, int]]:
    """Every figure drawn into ``folder``, the ``way`` of :data:`WAYS`; their sizes in pixels. ``cpu``: each figure's
    CPU seconds (this process's) put in it, as ``cpu_s_NAME``."""
    canvas.figure, canvas.save, canvas.panels = {
        "new": NEW, "grid": (*NEW[:2], whole_grid),
        "prev": (prev_figure, prev_save, whole_grid), "old": (old_figure, old_save, whole_grid)}[way]
    try:
        sizes = {}
        for name, f in draw.items():
            start = time.process_time()
            with Image.open(f(folder)) as im:
                sizes[name] = im.size
            if cpu is not None:
                cpu[f"cpu_s_{name}"] = time.process_time() - start
        return sizes
    finally:
        canvas.figure, canvas.save, canvas.panels = NEW


def timed(draw: dict[str, Callable[[Path], Path]], folder: Path, way: str) -> dict[str, float]:
    """:func:`draw_all`'s figures: how many, and each one's CPU seconds."""
    cpu: dict[str, float] = {}
    return {"figures": len(draw_all(draw, folder, way, cpu)), **cpu}


def main(argv: list[str] | None = None) -> list[dict]:
    p = reps_and_threads(__doc__.split("\n\n")[0], threads=None)
    p.add_argument("--run", type=Path, required=True, help="an analysed run (its analysis.json read)")
    args = p.parse_args(argv)
    if not (args.run / "analysis.json").is_file():
        raise SystemExit(f"{args.run}: no analysis.json (run `downpour analyze {args.run}` first)")
    draw = drawings(args.run)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {way: Path(tmp) / way for way in WAYS}
        sizes = {way: draw_all(draw, folder, way) for way, folder in folders.items()}
        for name, size in sizes["new"].items():
            if any(abs(a - b) > 0.05 * b for a, b in zip(size, sizes["old"][name])):
                raise SystemExit(f"{name}: {size} pixels the new way, {sizes['old'][name]} the old way")
        # the new way's PNGs against the first 2026-12-06 way's, byte for byte (the same layout, measured once)
        same_as_prev = {f.name: f.read_bytes() == (folders["prev"] / f.name).read_bytes()
                        for f in sorted(folders["new"].iterdir())}
        same_as_grid = {f.name: f.read_bytes() == (folders["grid"] / f.name).read_bytes()
                        for f in sorted(folders["new"].iterdir())}
        reps = interleave({way: (lambda r, way=way: timed(draw, folders[way], way)) for way in WAYS}, reps=args.reps)
    row = {"bench": "report_figures", "run": str(args.run), "figures": sorted(draw), "sizes": sizes,
           **summary(reps, "wall_s"), "ratio": ratio(reps, "wall_s", "new", "old"),
           "cpu_ratio": ratio(reps, "driver_cpu_s", "new", "old"),
           "ratio_vs_prev": ratio(reps, "wall_s", "new", "prev"),
           "cpu_ratio_vs_prev": ratio(reps, "driver_cpu_s", "new", "prev"),
           "pngs_same_as_prev": same_as_prev,
           # the panels made only where drawn (canvas.panels), against the whole grid made (every other part new)
           "cpu_ratio_vs_grid": ratio(reps, "driver_cpu_s", "new", "grid"),
           "cpu_s_per_figure": {name: summary(reps, f"cpu_s_{name}")[f"cpu_s_{name}"] for name in draw},
           "pngs_same_as_grid": same_as_grid}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
