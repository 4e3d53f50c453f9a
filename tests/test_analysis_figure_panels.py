"""Figures of panels make a panel only where they draw one, each in its place (canvas.panels)."""
from __future__ import annotations

from downpour.analysis import figures, training_plots


def _place(ax) -> tuple[int, int]:
    spec = ax.get_subplotspec()
    return spec.rowspan.start, spec.colspan.start


def test_the_loss_figure_makes_a_panel_per_cost_part_row_by_row_and_none_empty(tmp_path, saved):
    """cat-demo logs 5 cost parts: 2 rows of 3 places, 5 panels (not a 6th, turned off, built, measured by the layout
    and drawn for nothing)."""
    parts = ["loss", "stage1/pooled_l2", "stage1/reconstruction", "stage2/pooled_l2", "stage2/reconstruction"]
    training_plots.loss_curves([{"step": s, **{p: 10.0 + i + s for i, p in enumerate(parts)}} for s in range(1, 9)],
                        tmp_path / "loss.png")
    axes = saved[0].axes
    assert [ax.get_title().removesuffix(" (log axis)") for ax in axes] == parts
    assert [_place(ax) for ax in axes] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert all(ax.axison for ax in axes)


def test_the_invariance_figure_makes_each_transforms_two_panels_in_its_block_and_none_empty(tmp_path, saved):
    """5 transforms: blocks of 3 and 2, each transform's response panel above its AUC panel; the second block's third
    column has no panels (not two, turned off)."""
    transforms = ["scale", "translation_x", "translation_y", "rotation", "out_of_plane_rotation"]
    v = [-1.0, 0.0, 1.0]
    curves = [{"transform": t, "values": v, "response": [0.5] * 3, "sem": [0.1] * 3, "auc": [0.7] * 3,
               "auc_faces_only": [0.6] * 3} for t in transforms]
    figures.invariance_plot({"curves": curves, "normalised_to": "untransformed response", "unit": 3, "layer": "l",
                             "images": 30}, tmp_path / "invariance.png")
    axes = saved[0].axes
    assert len(axes) == 10 and all(ax.axison for ax in axes)
    response = {ax.get_xlabel(): _place(ax) for ax in axes if ax.get_ylim() != (0.0, 1.0)}
    auc = {ax.get_xlabel(): _place(ax) for ax in axes if ax.get_ylim() == (0.0, 1.0)}
    columns = {"scale factor": (0, 0), "horizontal shift (pixels)": (0, 1), "vertical shift (pixels)": (0, 2),
               "in-plane rotation (degrees)": (2, 0), "out-of-plane rotation (degrees)": (2, 1)}
    assert response == columns
    assert auc == {label: (row + 1, col) for label, (row, col) in columns.items()}
