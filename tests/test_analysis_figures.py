"""Figures: every kind of filter bank draws, loss curves plot cost parts only, staleness bars draw."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from downpour.analysis import canvas, figures, training_plots
from downpour.config import ConfigError, load_config


@pytest.mark.parametrize("shape", [(30, 1, 8, 8), (5000, 1, 8, 8), (10, 2, 6, 6), (12, 3, 5, 5), (16, 1, 1, 8)])
def test_filter_grid_draws_any_bank(tmp_path, shape):
    path = figures.filter_grid(np.random.default_rng(0).standard_normal(shape), tmp_path / "f.png")
    with Image.open(path) as im:
        assert im.size[0] > 50 and im.size[1] > 50


def test_cost_parts_leave_out_bookkeeping():
    rows = [{"step": 5, "time": 0.1, "loss": 3.0, "stage1/reconstruction": 2.0, "kl_sparsity": 1.0, "worker": 0,
             "staleness": 4.0, "version": 5, "samples_per_s": 100.0, "metric/sparsity": 0.1, "vtime": 1.2}]
    assert training_plots.cost_parts(rows) == ["loss", "kl_sparsity", "metric/sparsity", "stage1/reconstruction"]


def test_loss_curves_average_workers_and_need_a_cost(tmp_path):
    rows = [{"step": s, "worker": w, "loss": 10.0 / s + w, "reconstruction": 1.0 / s} for s in (1, 2, 3) for w in (0, 1)]
    assert training_plots.loss_curves(rows, tmp_path / "loss.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no numeric cost"):
        training_plots.loss_curves([{"step": 1, "time": 0.0}], tmp_path / "none.png")


def test_loss_curves_show_a_run_with_one_logged_row(tmp_path, saved):
    """A run shorter than train.log_every logs one row; a line through one point draws nothing, so the
    panels were empty: few points are drawn as markers."""
    training_plots.loss_curves([{"step": 30, "loss": -2.9, "contrastive_divergence": -2.9}], tmp_path / "loss.png")
    for ax in saved[0].axes[:2]:
        (line,) = ax.get_lines()
        assert line.get_marker() not in (None, "None", "", " ")


def test_loss_curves_label_a_log_axis_in_plain_numbers(tmp_path, saved):
    """The log axes' default labels ("3 x 10^2") are mathtext, whose parsing took half of the figure's time in
    every analysis: the labels are plain numbers (300)."""
    rows = [{"step": s, "loss": 1000.0 / s, "reconstruction": 150.0 + 1.0 / s} for s in range(1, 50)]
    training_plots.loss_curves(rows, tmp_path / "loss.png")
    fig = saved[0]
    fig.canvas.draw()
    for ax in fig.axes[:2]:
        assert ax.get_yscale() == "log"
        labels = [t.get_text() for t in [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)] if t.get_text()]
        assert labels and not any("$" in t for t in labels), labels
    assert {"10", "100"} <= {t.get_text() for t in fig.axes[0].get_yticklabels()}


def test_a_log_axis_below_1_labels_each_tick_with_its_own_value(tmp_path, saved):
    """LogFormatter writes a value below 1 with one digit: on a cost part from 0.451 to 0.467 (ufldl-sae's
    reconstruction) every tick read "5e-01", and a weight decay from 0.00454 to 0.00483 "5e-03"."""
    rows = [{"step": s, "reconstruction": 0.467 - 0.016 * s / 10, "weight_l2": 0.00454 + 0.0003 * s / 10}
            for s in range(1, 11)]
    training_plots.loss_curves(rows, tmp_path / "loss.png")
    fig = saved[0]
    fig.canvas.draw()
    for ax in fig.axes[:2]:
        lo, hi = ax.get_ylim()
        shown = [(t.get_position()[1], t.get_text().replace("\u2212", "-"))
                 for t in [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)] if t.get_text()]
        inside = [(y, text) for y, text in shown if lo <= y <= hi]
        assert len(inside) >= 2, shown
        assert len({text for _, text in inside}) == len(inside), inside
        assert all(abs(float(text) - y) <= 0.01 * y for y, text in inside), inside


def test_a_log_axis_above_1000_labels_whole_numbers_in_one_style(tmp_path, saved):
    """LogFormatter's labels on a cost part from 12,000 to 2e6 read "1e4", "1e+05", "1e+06": two styles on
    one axis, neither a number as the log prints it."""
    training_plots.loss_curves([{"step": s, "reconstruction": 12000.0 * 1.7 ** s} for s in range(11)], tmp_path / "l.png")
    fig = saved[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    shown = [(t.get_position()[1], t.get_text()) for t in [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)]
             if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert {"100,000", "1,000,000"} <= {text for _, text in shown}, shown
    assert all(float(text.replace(",", "")) == y for y, text in shown), shown


def test_a_log_axis_within_a_decade_has_enough_labelled_ticks(tmp_path, saved):
    """cat-demo's total loss (stage 1 from 205 down to 110, stage 2 from 346 down to 108) read two labels, 200 and 300
    (the log locator's 100, 200, 300): a curve within a decade is ticked at round values, at least four labelled
    inside the panel, each its own value."""
    loss = [205.0 - 0.19 * s for s in range(0, 500, 10)] + [346.0 - 0.238 * s for s in range(0, 1000, 10)]
    training_plots.loss_curves([{"step": s, "loss": v} for s, v in enumerate(loss)], tmp_path / "l.png")
    fig = saved[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    shown = [(t.get_position()[1], t.get_text()) for t in [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)]
             if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert len(shown) >= 4, shown
    assert all(float(text) == y for y, text in shown), shown


@pytest.mark.parametrize("lo, hi", [(0.5, 4.0), (0.02, 0.15), (1.0, 1.0)])
def test_a_log_axis_within_a_decade_near_zero_draws_and_labels_only_positive_ticks(tmp_path, saved, lo, hi):
    """The round-value ticks of a curve within a decade reach 0 and below the axis's view, where the log labels' digits
    took log10 of 0 (a math domain error that stopped the analysis of a short run)."""
    training_plots.loss_curves([{"step": s, "loss": lo + (hi - lo) * s / 9} for s in range(10)], tmp_path / "l.png")
    fig = saved[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in saved[0].axes[0].get_yticklabels() if t.get_text()]
    assert labels and all(float(t) > 0 for t in labels), labels


@pytest.mark.parametrize("values", [[233.0, 205.0, 165.0, 180.0, 525.0, 460.0, 386.0], [133.8], [49.0, 36.0, 24.0, 9.0], [0.5, 4.0]])
def test_a_log_axis_within_a_decade_has_a_label_at_or_below_its_lowest_point(tmp_path, saved, values):
    """The axis runs from a labelled tick at or below the curve to one at or above it: else (cat-demo, 20 steps logged
    each) its total loss dips to 165 below the lowest label, 200, and a cost part logged once (133.8) sits under a
    lowest label of 200 on an axis running to about 70, and a reader takes the point for a value the labels bracket."""
    training_plots.loss_curves([{"step": s, "loss": v} for s, v in enumerate(values)], tmp_path / "l.png")
    fig = saved[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    shown = [t.get_position()[1] for t in [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)]
             if t.get_text() and lo * (1 - 1e-9) <= t.get_position()[1] <= hi * (1 + 1e-9)]
    assert shown and min(shown) <= min(values) and max(shown) >= max(values), (shown, lo, hi)

@pytest.mark.parametrize("low, high", [(0.9, 8.8), (10.5, 100.0), (1.01, 9.9), (104.0, 342.0), (11.8, 31.2)])
def test_a_log_axis_near_a_decade_has_labels_that_do_not_overlap(tmp_path, saved, low, high):
    """Round values a linear step apart bunch at the top of a log axis: a loss from 8.8 down to 0.9 was labelled 1, 2,
    ..., 9, and 7, 8 and 9 overlap. No two labels of the panel overlap, the ends still labelled."""
    values = list(np.geomspace(high, low, 30))
    training_plots.loss_curves([{"step": s, "loss": v} for s, v in enumerate(values)], tmp_path / "l.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(saved[0])
    canvas.draw()
    ax, renderer = saved[0].axes[0], canvas.get_renderer()
    lo, hi = ax.get_ylim()
    shown = sorted((t.get_window_extent(renderer) for t in ax.get_yticklabels()
                    if t.get_text() and lo * (1 - 1e-9) <= t.get_position()[1] <= hi * (1 + 1e-9)), key=lambda b: b.y0)
    assert len(shown) >= 4
    assert all(below.y1 <= above.y0 for below, above in zip(shown, shown[1:])), [(b.y0, b.y1) for b in shown]


def test_the_stimulus_panel_says_a_suppressing_stimulus_so(tmp_path, saved):
    """A unit the concept lowers is drawn beside its most suppressing stimulus, whose panel read "optimal stimulus"."""
    from downpour.analysis.report_notes import pictured_names

    figures.stimulus_and_top_images(np.zeros((1, 4, 4)), np.zeros((2, 1, 4, 4)), tmp_path / "s.png", "t", [1.0, 2.0],
                                    pictured_names(-1)[0])
    assert saved[0].axes[0].get_title() == "most suppressing stimulus"

def test_staleness_histogram(tmp_path):
    hist = {"overall": {0: 2, 1: 5, 4: 1}, "worker 0": {0: 1, 1: 3}, "worker 1": {1: 2, 4: 1}}
    assert training_plots.staleness_histogram(hist, tmp_path / "s.png").stat().st_size > 1000


def test_the_staleness_bars_say_each_series_mean_and_max_on_whole_number_ticks(tmp_path, saved):
    """A paper's paragraph quotes the mean: the legend named the series alone, and the ticks fell between the bars
    (-0.5, 0.5, 1.5, ...) of a whole-number quantity."""
    training_plots.staleness_histogram({"overall": {0: 2, 2: 600, 3: 198}, "worker 1": {1: 2, 3: 48}}, tmp_path / "s.png")
    ax = saved[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["overall: mean 2.24, max 3",
                                                                   "worker 1: mean 2.92, max 3"]
    saved[0].canvas.draw()
    assert all(float(t) == int(t) for t in ax.get_xticks())


def test_sixteen_workers_staleness_bars_have_colours_of_their_own_and_a_legend_beside_them(tmp_path, saved):
    """Past ten series matplotlib's colour cycle came round (worker 9 drawn in overall's colour), and the legend of 17
    entries stood over the bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    hist = {"overall": {15: 100, 16: 60}, **{f"worker {w}": {15 + w % 2: 10} for w in range(16)}}
    training_plots.staleness_histogram(hist, tmp_path / "s.png")
    ax = saved[0].axes[0]
    assert len({tuple(c.patches[0].get_facecolor()) for c in ax.containers}) == 17
    canvas = FigureCanvasAgg(saved[0])
    canvas.draw()
    renderer = canvas.get_renderer()
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


def test_a_grey_pyramids_three_levels_are_drawn_as_grey_tiles_not_as_colours(tmp_path):
    from downpour.models.registry import create_model

    pyramid = create_model("pyramid-rica", (1, 32, 32))            # 3 channels: the levels of a grey image
    bank = pyramid.first_layer_filters().numpy()
    assert bank.shape[1] == 3 and not figures.colour_filters(bank.shape, pyramid.input_shape)
    assert figures.colour_filters(bank.shape, (3, 32, 32)) and figures.colour_filters(bank.shape, (5, 3, 8, 8))
    with Image.open(figures.filter_grid(bank, tmp_path / "grey.png", colour=False)) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 1 and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= 1
    with Image.open(figures.filter_grid(bank, tmp_path / "rgb.png")) as im:   # the default: RGB, as before
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() > 30


def _invariance_result() -> dict:
    values = {"scale": [1 / 32, 1 / 4, 1.0, 4.0], "translation_x": [-8.0, 0.0, 8.0], "rotation": [-90.0, 0.0, 90.0]}
    curves = [{"transform": t, "values": v, "response": [0.5] * len(v), "sem": [0.1] * len(v), "auc": [0.7] * len(v),
               "auc_faces_only": [0.6] * len(v)} for t, v in values.items()]
    return {"curves": curves, "normalised_to": "untransformed response", "unit": 3, "layer": "stage2", "images": 30}


@pytest.mark.parametrize("draw", [
    lambda d: training_plots.loss_curves([{"step": s, "loss": 300.0 / s, "stage1/reconstruction": 2.0 / s,
                                    "stage1/pooled_l2": 150.0 + s} for s in range(1, 40)], d / "loss.png"),
    lambda d: figures.invariance_plot(_invariance_result(), d / "invariance.png"),
    lambda d: training_plots.staleness_histogram({"overall": {0: 3, 1: 9}, **{f"worker {w}": {w % 2: 6} for w in range(12)}},
                                          d / "staleness.png"),
    lambda d: figures.response_histogram([1.0, 2.0, 2.5], [0.0, 0.5], 1.2, d / "responses.png"),
], ids=["loss", "invariance", "staleness", "responses"])
def test_a_figure_of_panels_is_drawn_once_at_its_size_with_every_label_inside_it(tmp_path, monkeypatch, draw):
    """Laid out once, a figure is drawn once, at its size, and no label is cut off: tight_layout measuring every label,
    then savefig(bbox_inches="tight") drawing the figure twice (once to crop it), each with a fresh renderer, made the
    figures 8% of the main job."""
    from matplotlib.figure import Figure

    drawn = []
    real = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda fig, renderer: drawn.append((fig, renderer)) or real(fig, renderer))
    path = draw(tmp_path)
    assert len(drawn) == 1
    fig, renderer = drawn[0]
    with Image.open(path) as im:
        width, height = im.size
    assert (width, height) == tuple(round(x * 110) for x in fig.get_size_inches())
    drew = fig.get_tightbbox(renderer)          # (inches) what the figure drew: every label, title and legend
    assert drew.x0 >= 0 and drew.y0 >= 0 and drew.x1 <= width / 110 and drew.y1 <= height / 110, drew


def _labels_overlap_or_squeeze(fig) -> list:
    """Pairs of a panel's tick labels (major and minor, inside its view) whose boxes overlap, and labels wider than half
    their panel, as drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer, bad = canvas.get_renderer(), []
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)]
                 if t.get_text() and lo * (1 - 1e-9) <= t.get_position()[1] <= hi * (1 + 1e-9)]
        bad += [(a, b) for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1:] if box.overlaps(other)]
        bad += [text for text, box in boxes if box.width > ax.bbox.width / 2]
    return bad


@pytest.mark.parametrize("low, high", [(3.0, 303.0), (0.9, 30.9), (1.1, 999.0), (1e-7, 1e-5), (0.27, 3.2)])
def test_a_log_axis_over_one_to_three_decades_labels_no_two_ticks_on_each_other(tmp_path, saved, low, high):
    """LogFormatter labels 2, 3, 4 and 6 of every decade on an axis with up to two powers of 10 in view: a loss from 303
    down to 3 reads 3, 4, 6, 10, 20, 30, 40, 60, ..., 3 on 4 and 30 on 40."""
    training_plots.loss_curves([{"step": s, "loss": low + (high - low) * np.exp(-s / 10)} for s in range(100)], tmp_path / "l.png")
    assert not _labels_overlap_or_squeeze(saved[0])
    between = sum(1 for t in saved[0].axes[0].get_yticklabels(minor=True) if t.get_text())
    assert between >= 1 or high / low >= 100, between      # (still some between the powers of 10, below 2 decades)


def test_a_diverged_loss_is_labelled_in_powers_of_ten_not_in_thirty_digits(tmp_path, saved):
    """teacher-student on 3 simulated workers ran away to 3e31: its labels were whole numbers with thousands separators,
    1,000,000,000,000,000,019,884,624,838,656 among them, which squeezed the panel to a sliver."""
    training_plots.loss_curves([{"step": s, "loss": 2.0 * 10 ** (s / 3)} for s in range(1, 100)], tmp_path / "l.png")
    assert not _labels_overlap_or_squeeze(saved[0])
    assert {"1e6", "1e12"} <= {t.get_text() for t in saved[0].axes[0].get_yticklabels()}


def test_a_loss_falling_below_1e_minus_4_is_labelled_in_the_style_of_one_above_1e7(tmp_path, saved):
    """A loss from 1 down to 1e-6 read "1e\u221206" beside "0.0001": the exponent's 0, which "1e6" drops, kept."""
    training_plots.loss_curves([{"step": s, "loss": 10.0 ** -s} for s in range(7)], tmp_path / "l.png")
    saved[0].canvas.draw()
    labels = {t.get_text().replace("\u2212", "-") for t in saved[0].axes[0].get_yticklabels()}
    assert "1e-6" in labels and not any("e-0" in t for t in labels), labels


@pytest.mark.parametrize("low, high", [(5.0, 2e7), (0.5, 3e7), (1e-3, 1e8), (1e-7, 0.1), (3.0, 4e9)])
def test_a_log_axis_reaching_1e7_or_below_1e_minus_4_labels_every_tick_as_a_power_of_ten(tmp_path, saved, low, high):
    """One style per axis: else a loss from 5 up to 2e7 reads "10", "1e3", "1e5", "1e7", and one from 1e-7 to 0.1 reads
    "1e-7", "1e-5", "0.001", "0.1"."""
    training_plots.loss_curves([{"step": s, "loss": low * (high / low) ** (s / 50)} for s in range(51)], tmp_path / "l.png")
    saved[0].canvas.draw()
    ax = saved[0].axes[0]
    lo, hi = ax.get_ylim()
    shown = [(t.get_position()[1], t.get_text().replace("\u2212", "-"))
             for t in [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)] if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert len(shown) >= 3, shown
    assert all(re.fullmatch(r"[1-9](\.\d+)?e-?[1-9]?\d", text) for _, text in shown), shown
    assert all(abs(float(text) - y) <= 1e-6 * y for y, text in shown), shown


@pytest.mark.parametrize("values, scale, labelled", [([float("nan"), 300.0, 30.0, 3.0], "log", "100"),
                                                      ([300.0, 250.0, float("inf"), 200.0], "log", "240")])
def test_a_non_finite_row_changes_neither_a_loss_axis_scale_nor_its_ticks(tmp_path, saved, values, scale, labelled):
    """A NaN row first made a loss from 300 to 3 a linear axis (min() of a list starting with NaN is NaN); an inf row
    ticked a loss from 300 to 200 as one spanning decades, with no label between 200 and 300."""
    training_plots.loss_curves([{"step": 10 * (i + 1), "loss": v} for i, v in enumerate(values)], tmp_path / "l.png")
    ax = saved[0].axes[0]
    saved[0].canvas.draw()
    assert ax.get_yscale() == scale
    assert labelled in {t.get_text() for t in [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)]}


def test_a_log_axis_within_a_decade_labels_each_round_tick_with_its_value(tmp_path, saved):
    """cat-demo on 3 simulated workers at train.lr = 0.5, its stage2/reconstruction from 2,250 down to 297: ticked every
    250, the ticks at 1,250 and 1,750 read "1,250" and "1,750" (else "1,200" and "1,800": two digits)."""
    values = [1774.0, 2243.0, 703.0, 356.0, 297.0]
    training_plots.loss_curves([{"step": 60 + 10 * i, "loss": v} for i, v in enumerate(values)], tmp_path / "l.png")
    fig = saved[0]
    fig.canvas.draw()
    shown = [(t.get_position()[1], t.get_text()) for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert len(shown) >= 4 and all(float(text.replace(",", "")) == y for y, text in shown), shown


def test_the_response_histogram_says_what_it_counts(tmp_path, saved):
    """Its y-axis, the number of images in each bin, had no label."""
    figures.response_histogram([1.0, 2.0, 2.5], [0.0, 0.5], 1.2, tmp_path / "r.png")
    assert saved[0].axes[0].get_ylabel() == "images"


def test_the_response_histogram_gives_each_class_its_n_and_whole_counts(tmp_path, saved):
    """The legend gives each class's count (not "face" and "other" alone), and the axis ticks whole images (not 0.5,
    1.5, 2.5)."""
    figures.response_histogram([1.0, 2.0, 2.5], [0.0, 0.5], 1.2, tmp_path / "r.png", ("face", "other"))
    ax = saved[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["face (n = 3)", "other (n = 2)"]
    saved[0].canvas.draw()
    assert all(float(t) == int(t) for t in ax.get_yticks())


def test_the_invariance_legend_stands_above_the_auc_panel_not_on_its_curves(tmp_path, saved):
    """Placed "best", the legend covered the ends of tica-8x8's AUC curves on its scale panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figures.invariance_plot(_invariance_result(), tmp_path / "invariance.png")
    canvas = FigureCanvasAgg(saved[0])
    canvas.draw()
    ax = [a for a in saved[0].axes if a.get_legend()][0]
    assert ax.get_legend().get_window_extent(canvas.get_renderer()).y0 >= ax.get_window_extent().y1 - 0.5


@pytest.mark.parametrize("last, expected", [(1_000_000, {"0", "0.2M", "1M"}), (60_000, {"0", "20k", "60k"}),
                                            (2_000, {"0", "500", "2000"})])
def test_a_step_axis_labels_steps_not_a_fraction_under_an_offset(tmp_path, saved, last, expected):
    """A run of a million steps read 0.0, 0.2, ..., 1.0 under an offset of "1e6": its steps are labelled 0.2M ... 1M."""
    training_plots.loss_curves([{"step": s, "loss": 3.0 - s / last} for s in range(0, last + 1, last // 50)], tmp_path / "l.png")
    fig = saved[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    shown = {t.get_text() for t in ax.get_xticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi}
    assert expected <= shown and not ax.xaxis.get_offset_text().get_text(), shown
    assert not _labels_overlap_or_squeeze(fig)


@pytest.mark.parametrize("k", [9, 10, 17, 7, 3])
def test_the_top_images_fill_rows_of_even_length(tmp_path, saved, k):
    """The default 9 top images were drawn 8 in a row and 1 alone below them: they fill about a square, 3 by 3, no image alone in a row, under a title wrapped to their width."""
    title = "unit 181 of stage2 (the concept lowers it): most suppressing stimulus and the 9 of 60 images it answers least"
    figures.stimulus_and_top_images(np.zeros((1, 4, 4)), np.zeros((k, 1, 4, 4)), tmp_path / "s.png", title, [1.0] * k)
    saved[0].canvas.draw()
    assert max(t.get_window_extent().width for t in saved[0].texts) <= saved[0].bbox.width   # (the title, wrapped)
    rows = [a.get_subplotspec().rowspan.start for a in saved[0].axes[1:]]
    lengths = [rows.count(r) for r in sorted(set(rows))]
    assert sum(lengths) == k and set(lengths[:-1]) <= {max(lengths)} and len(lengths) <= max(lengths), lengths
    assert lengths[-1] >= 2, lengths                   # (no image alone in its row)
    assert k != 9 or lengths == [3, 3, 3]


def test_a_greedy_runs_loss_panel_marks_where_the_next_stage_starts(tmp_path, saved):
    """cat-demo, 100 greedy steps: its loss went 167 -> 425 at step 60, stage 1's cost then stage 2's, drawn as one
    curve with nothing to say the jump was a new stage, not a divergence."""
    rows = [{"step": s, "loss": 200.0 - s, "stage1/reconstruction": 200.0 - s} for s in (10, 20, 30)]
    rows += [{"step": s, "loss": 500.0 - s, "stage2/reconstruction": 500.0 - s} for s in (40, 50, 60)]
    training_plots.loss_curves(rows, tmp_path / "l.png")
    ax = saved[0].axes[0]
    assert [line.get_xdata()[0] for line in ax.get_lines()[1:]] == [30]
    assert [t.get_text() for t in ax.texts] == ["stage2 \u2192 "]
    training_plots.loss_curves([{"step": s, "loss": 9.0 - s} for s in (1, 2)], tmp_path / "one.png")   # (one stage: none)
    assert len(saved[1].axes[0].get_lines()) == 1 and not saved[1].axes[0].texts


def test_the_invariance_panels_draw_the_levels_the_reports_ranges_are_read_at(tmp_path, saved):
    """The table gives "-90 ... 157.5 degrees" with response >= 0.5 and "AUC >= 0.647", and the panels draw those levels
    beside lines at 1, 0 and 0.5 (chance): a reader cannot find the ranges' ends on the curves unless they are drawn. An
    AUC at chance untransformed keeps no level, so none is drawn (scale here)."""
    result = {**_invariance_result(), "summary": {"floor": 0.5},
              "selectivity": {"keep": 0.5, "auc": {"scale": 0.5, "translation_x": 0.8, "rotation": 0.9}}}
    figures.invariance_plot(result, tmp_path / "invariance.png")

    def levels(ax) -> set[float]:
        return {round(line.get_ydata()[0], 6) for line in ax.get_lines() if line.get_linestyle() == "-."}

    top, bottom = saved[0].axes[:3], saved[0].axes[3:]
    assert [levels(ax) for ax in top] == [{0.5}] * 3
    assert [levels(ax) for ax in bottom] == [set(), {0.65}, {0.7}]
    figures.invariance_plot(_invariance_result(), tmp_path / "old.png")      # an analysis without them: none drawn
    assert all(levels(ax) == set() for ax in saved[1].axes)


def test_a_loss_panel_on_a_log_axis_says_so_in_its_title(tmp_path, saved):
    """A log axis is named: cat-demo's stage-2 reconstruction falls from 300 to 10, and read as linear, a 30-fold drop
    looks like a third."""
    training_plots.loss_curves([{"step": s, "loss": 300.0 / s, "contrastive_divergence": 1.0 - s / 10} for s in range(1, 20)],
                        tmp_path / "loss.png")
    assert [ax.get_title() for ax in saved[0].axes[:2]] == ["loss (log axis)", "contrastive_divergence"]


def test_the_top_images_responses_share_one_format(tmp_path, saved):
    """no-faces-unit.png printed 2.7 beside 2.11 and 1.5 beside 1.48 (``.3g``): one number of decimals over them all."""
    responses = [2.7, 2.11, 1.5, 1.48, 1.35, 1.1, 1.19, 0.999, 0.829]
    figures.stimulus_and_top_images(np.zeros((1, 4, 4)), np.zeros((9, 1, 4, 4)), tmp_path / "s.png", "t", responses)
    assert [a.get_title() for a in saved[0].axes[1:]] == ["2.70", "2.11", "1.50", "1.48", "1.35", "1.10", "1.19",
                                                          "1.00", "0.83"]
    assert figures.same_decimals([-3.13, -0.829]) == ["-3.13", "-0.83"]
    assert figures.same_decimals([123.4, 5.0]) == ["123", "5"]


@pytest.mark.parametrize("k", [30, 31, 35, 36])
def test_up_to_36_top_images_fit_the_reports_width(tmp_path, saved, k):
    """31-35 top images were laid out 7 columns wide, 10.8 in: past SHOWN_WIDTH, shrunk in the report with their
    labels. Every count analysis.top_k takes fits it, each image in its own cell inside the figure, none overlapping."""
    figures.stimulus_and_top_images(np.zeros((1, 4, 4)), np.zeros((k, 1, 4, 4)), tmp_path / "s.png", "t", [1.0] * k)
    fig = saved[0]
    assert fig.get_size_inches()[0] <= canvas.SHOWN_WIDTH + 1e-9
    fig.canvas.draw()
    boxes = [a.get_window_extent() for a in fig.axes[1:]]
    assert len(boxes) == k and all(0 <= b.x0 and b.x1 <= fig.bbox.width and 0 <= b.y0 for b in boxes)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_more_top_images_than_the_figure_lays_out_are_refused_naming_the_key():
    """analysis.top_k = 100 was taken and drawn 10 x 10, 14.4 in wide (1,000 would have been 100 x 100)."""
    assert load_config("ufldl-sae", ["analysis.top_k=36"]).analysis.top_k == 36
    with pytest.raises(ConfigError, match=r"analysis.top_k must be in \[1, 36\], got 37"):
        load_config("ufldl-sae", ["analysis.top_k=37"])
