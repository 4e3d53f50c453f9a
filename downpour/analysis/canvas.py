"""What every figure of a run's report is drawn on: a figure at the PNG's resolution on an Agg canvas of its own, its
panels, its width in the report's column, and its save as a PNG, whole or not at all.

Drawn with matplotlib's object API (``Figure`` + Agg canvas, never ``pyplot``), so nothing depends on a display or on
global backend state. The figures call these through the module (``canvas.save(...)``), so that a test or a benchmark
that puts another in its place (``monkeypatch.setattr(canvas, "save", ...)``, bench/report_figures.py) reaches them all.

Each figure is drawn once (:func:`figure`): a figure of panels lays itself out (matplotlib's tight
layout engine) as it is drawn at the PNG's resolution on its own Agg canvas, and is saved at its size, not placed
by ``tight_layout`` (its labels drawn once) and cropped by ``savefig(bbox_inches="tight")`` (twice more), each time
with a fresh renderer measuring every label anew. Only a figure of pictures, which an aspect ratio
keeps from filling its size, is cropped to what it drew.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import TightLayoutEngine

from downpour.train.model_file import replace_bytes


DPI = 110       # the PNGs' resolution
# The report's column (report_parts.STYLE: body max-width 1100 px less 2 x 1em = 32 px of padding) is 1068 CSS
# pixels, 9.7 inches at DPI. A PNG up to it is shown a PNG pixel to a CSS pixel, so a 7-point label reads
# 7 x 110/72 = 10.7 px, 8 points; a wider one is shrunk to fit, and so is its text: an invariance figure of 1408 px or a
# loss figure of 1320 px reads 5-6 points on a laptop. Every figure of panels is drawn at most this wide,
# its text at least 7 points.
SHOWN_WIDTH = 9.6


def figure(width: float, height: float, laid_out: bool = True) -> Figure:
    """A ``width`` x ``height`` inch figure at the PNG's resolution, on an Agg canvas of its own, so that laying it
    out and saving it share one renderer and its cache of label sizes. ``laid_out``: its panels placed by the tight
    layout engine when it is drawn (a figure of panels); else :func:`save` crops it to what it drew (pictures)."""
    # rect=None, as tight_layout() passes: the engine layout="tight" makes has rect=(0, 0, 1, 1), which measures every
    # panel twice (the second pass keeps the first's margins and finds the same gaps: the same PNGs, byte for byte)
    fig = Figure(figsize=(width, height), dpi=DPI, layout=TightLayoutEngine(rect=None) if laid_out else None)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path | BinaryIO) -> Path | BinaryIO:
    """``fig`` as a PNG at ``path``, or into a binary file object (the report's figures drawn as it writes the page)."""
    if isinstance(path, (str, Path)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = fig.get_layout_engine()
    if engine is not None:          # laid out once, here; then no engine, so savefig draws the figure once, as laid out
        # The spines left out of the layout: each spine's extent works out its axis's ticks again (4 per panel), to add
        # the axes' edge and the ticks (3.5 points out), which the tick labels beyond them already cover: the same
        # layout (the report's PNGs byte for byte; at most a frame line a pixel over, where a spine's extent passed the
        # axes' edge by 1e-13 pixels), in 0.61 of layout="tight"'s CPU with rect=None (docs/benchmarks.md).
        spines = [s for ax in fig.axes for s in ax.spines.values() if s.get_in_layout()]
        for s in spines:
            s.set_in_layout(False)
        engine.execute(fig)
        for s in spines:
            s.set_in_layout(True)
        fig.set_layout_engine(None)
    png = io.BytesIO() if isinstance(path, Path) else path
    fig.savefig(png, format="png", dpi=DPI, bbox_inches=None if engine is not None else "tight")
    if isinstance(path, Path):      # whole or not at all: a kill mid-save left a torn PNG in the report
        replace_bytes(path, png.getvalue())
    return path


def panels(fig: Figure, rows: int, cols: int, places: list[tuple[int, int]]) -> list[Any]:
    """A panel at each (row, column) of ``places`` in a ``rows`` x ``cols`` grid, in that order. The places left over
    are not made: panels turned off (``axis("off")``) would each be an axes built, measured by the layout and drawn
    for nothing (the loss figure's 5 cost parts: 6 panels); the tight layout finds the same margins
    without them (an axes turned off adds none): the same PNGs, byte for byte (bench/report_figures.py)."""
    grid = fig.add_gridspec(rows, cols)
    return [fig.add_subplot(grid[r, c]) for r, c in places]
