"""The page around every downpour HTML report (report_parts.page) and the width its figures are drawn for."""
from __future__ import annotations

import re

import numpy as np

from downpour.analysis import canvas, figures, training_plots
from downpour.analysis.face_verdict import GRADIENT, LEARNED, NO_FACES, PIXEL, TWIN
from downpour.analysis.report_parts import STYLE, page
from downpour.analysis.verdict_figure import verdict_figure


def test_the_page_is_laid_out_at_a_phones_width_not_shrunk_from_a_desktops():
    """The report has a viewport line: without one a phone draws it 980 pixels wide, shrunk to its screen."""
    head = page("run", "<p>x</p>").split("</head>")[0]
    assert re.search(r'<meta name="viewport" content="width=device-width, initial-scale=1">', head)


# ---- every figure the report embeds, drawn for the width it is shown at ------------------------------------------

SMALLEST = 8      # points, as a laptop shows the page (a CSS pixel is 3/4 of a point)


def _column_px() -> float:
    """The report's column in CSS pixels, read from its style: body max-width less its padding either side (1em)."""
    body = re.search(r"body \{([^}]*)\}", STYLE).group(1)
    width = float(re.search(r"max-width: (\d+)px", body).group(1))
    pad = re.search(r"padding: 0 ([\d.]+)em", body)
    return width - 2 * 16 * float(pad.group(1))


def _invariance(transforms: list[str]) -> dict:
    v = [-2.0, -1.0, 0.0, 1.0, 2.0]
    curve = {"values": v, "response": [0.2, 0.8, 1.0, 0.7, 0.1], "sem": [0.05] * 5, "auc": [0.6, 0.7, 0.8, 0.7, 0.6],
             "auc_faces_only": [0.7] * 5}
    return {"curves": [{**curve, "transform": t} for t in transforms], "normalised_to": "untransformed response",
            "unit": 3, "layer": "codes", "images": 30}


def _draw_all(tmp_path) -> None:
    rng = np.random.default_rng(0)
    parts = ["stage1/reconstruction", "stage1/pooled_l2", "stage2/reconstruction", "stage2/pooled_l2"]
    metrics = [{"step": s, "loss": 100.0 / s, **{p: 50.0 / s for p in parts}} for s in range(1, 30)]
    training_plots.loss_curves(metrics, tmp_path / "loss.png")
    figures.invariance_plot(_invariance(["scale", "translation_x", "translation_y", "rotation"]), tmp_path / "i.png")
    figures.invariance_plot(_invariance(["scale", "translation_x", "translation_y", "rotation",
                                         "out_of_plane_rotation"]), tmp_path / "i5.png")
    sets = ["lfw non-faces", "phase-scrambled faces", "upside-down faces", "block-shuffled faces",
            "spectrum-matched crops of photos"]
    verdict_figure([{"negatives": n, "method": m, "auc": 0.7, "auc_ci": [0.6, 0.8]} for n in sets
                    for m in (LEARNED, TWIN, NO_FACES, PIXEL, GRADIENT)], tmp_path / "v.png")
    training_plots.staleness_histogram({"overall": {0: 5, 1: 3}, "worker 0": {0: 2, 1: 1}}, tmp_path / "s.png")
    figures.response_histogram(list(rng.random(20)), list(rng.random(20)), 0.5, tmp_path / "r.png")
    figures.stimulus_and_top_images(rng.random((1, 8, 8)), rng.random((9, 1, 8, 8)), tmp_path / "t.png", "unit 3",
                                    top_responses=list(rng.random(9)), in_concept=[True] * 5 + [False] * 4)
    figures.filter_grid(rng.standard_normal((100, 1, 8, 8)), tmp_path / "f.png")


def test_every_figure_the_report_embeds_is_shown_at_its_own_size_with_text_of_8_points_or_more(tmp_path, saved):
    """Each figure fits the report's 1068-pixel column: the invariance (1408 px) and loss (1320 px) figures, and the
    verdict's with 5 negative sets (1232 px), shrunk to fit, would have labels of 5-7 points on a laptop. A PNG pixel
    shown as a CSS pixel (3/4 of a point), each label's points at DPI are what a reader sees."""
    _draw_all(tmp_path)
    column = _column_px()
    assert len(saved) == 8
    for fig in saved:
        fig.canvas.draw()
        width = fig.get_figwidth() * canvas.DPI
        shown = min(1.0, column / width)            # the page's img { max-width: 100% }
        texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
                 if t.get_visible() and t.get_text().strip()]
        points = [t.get_fontsize() * canvas.DPI / 72 * shown * 0.75 for t in texts]
        assert width <= column, (fig._suptitle and fig._suptitle.get_text(), width)
        assert min(points) >= SMALLEST - 0.05, [(t.get_text(), p) for t, p in zip(texts, points) if p < SMALLEST - 0.05]


def test_each_loss_panel_says_what_it_plots_and_its_scale(tmp_path, saved):
    """The loss panels have a y label: else per-sample or per-batch, log or linear?"""
    metrics = [{"step": s, "loss": 10.0 / s, "reconstruction": 5.0 - s, "metric/recon_error": 1.0 / s}
               for s in range(1, 20)]
    training_plots.loss_curves(metrics, tmp_path / "loss.png")
    labels = {ax.get_title(): ax.get_ylabel() for ax in saved[0].axes if ax.get_title()}
    assert labels == {"loss (log axis)": "total cost per sample\n(batch mean, log scale)",
                      "metric/recon_error (log axis)": "logged value, not a cost\n(batch mean, log scale)",
                      "reconstruction": "weighted cost per sample\n(batch mean, linear scale)"}
