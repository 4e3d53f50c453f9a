"""The studies' scatter of one figure against another (downpour/studies/plots.py)."""
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from downpour.studies.plots import curves_figure, scatter_figure


def test_the_legend_of_a_scatter_covers_no_point_and_no_label():
    """The costs study's 8 series fill the axes; matplotlib's "best" legend went to the upper right and hid
    less/pooled_l2=0.003 (Hoyer 0.63, gap 0.043) and its label in sparsity_vs_overfitting.png."""
    grid = [(x, y) for x in np.linspace(0.0, 1.0, 5) for y in np.linspace(0.0, 1.0, 5)]   # every corner, every edge
    points = {f"penalty {g}, less data": [(f"w={i}", (x + 0.01 * g, x - 0.02, x + 0.02), (y, y - 0.03, y + 0.03))
                                          for i, (x, y) in enumerate(grid[g::8])] for g in range(8)}
    fig = scatter_figure(points, "gap against sparsity", "Hoyer", "gap")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    every = [(x[0], y[0]) for items in points.values() for _, x, y in items]
    covered = [p for p in every if legend.contains(*ax.transData.transform(p))]
    assert covered == []
    labels = [t for t in ax.texts if legend.overlaps(t.get_window_extent())]
    assert [t.get_text() for t in labels] == []


def test_the_legend_of_curves_covers_no_point():
    """The flat-skipping study's net_time.png (6 curves over 6 thresholds) hid unwhitened padded at 0.01, x1.39."""
    ts = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
    rng = np.random.default_rng(0)
    series = {f"form {i} set {j}": (ts, list(rng.uniform(0.8, 3.3, len(ts)))) for i in range(2) for j in range(3)}
    series["low left"] = (ts, [0.85, 1.0, 1.4, 1.2, 1.1, 1.0])          # where the "best" legend went
    fig = curves_figure(series, "network time, gated / ungated", "variance threshold", "ratio", logx=True)
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    every = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys)]
    assert [p for p in every if legend.contains(*ax.transData.transform(p))] == []


def test_a_tradeoffs_title_says_what_its_bars_are(monkeypatch, tmp_path):
    """templates' params_vs_probe.png and architectures' flops_vs_probe.png drew error bars their titles did not
    explain, where the studies' other figures say "(95% intervals)"."""
    from downpour.studies import compare

    drawn = []
    monkeypatch.setattr(compare, "save", lambda fig, path, caption="": drawn.append(fig) or path)
    rows = [{"condition": "cat", "figures": {"flops_fwd": [1e6] * 3, "probe_digits": [0.9, 0.75, 1.0]}}]
    compare.tradeoff(rows, "flops_fwd", "probe_digits", tmp_path / "t.png", "FLOPs vs probe", "FLOPs", "accuracy")
    assert drawn[0].axes[0].get_title() == "FLOPs vs probe (95% intervals)"


def test_labels_of_points_at_the_same_place_do_not_overlap():
    """The quick costs study's none and l1=0.01 (and pooled_l2 beside them) sat near the same sparsity and gap:
    their labels printed one over the other in sparsity_vs_overfitting.png and sparsity_vs_probe.png."""
    same = ((0.5, 0.4, 0.6), (0.1, 0.05, 0.15))
    points = {"sparse, less data": [("none", *same), ("l1=0.01", *same)],
              "pooled, less data": [("none", *same), ("pooled_l2=0.003", (0.51, 0.4, 0.6), (0.1, 0.05, 0.15)),
                                    ("pooled_l2=0.03", (0.9, 0.8, 1.0), (0.3, 0.2, 0.4))]}
    fig = scatter_figure(points, "gap against sparsity", "Hoyer", "gap")
    FigureCanvasAgg(fig).draw()
    boxes = [Text.get_window_extent(t) for t in fig.axes[0].texts]       # the text's own box, not its leader line's
    assert len(boxes) == 4                              # "none" is one point of both series: labelled once
    assert [(i, j) for i in range(4) for j in range(i) if boxes[i].overlaps(boxes[j])] == []
    alone = fig.axes[0].texts[-1]                       # a label nothing else holds the place of stays at its point
    assert alone.get_text() == "pooled_l2=0.03" and alone.xyann == (4, 4) and alone.arrow_patch is None


def test_each_label_of_the_quick_costs_scatter_is_beside_its_own_point_and_overlaps_nothing():
    """The quick costs study's figures (2 seeds, 2026-12-06: `downpour study costs --quick --seeds 2 --jobs 1`) piled
    their labels in a column above the crowded points near Hoyer 0.1: "weight_l2=0.001, none, none, weight_l2=0.001,
    none, none", each "none" twice (one point in two series), none beside its point and no line back to it."""
    rows = {"less/none": ((0.087, 0.0, 0.483), (0.0039, -0.1769, 0.1847)),
            "less/l1=0.01": ((0.51, 0.0, 1.0), (-0.043, -0.4919, 0.406)),
            "less/weight_l2=0.001": ((0.017, 0.0, 0.043), (-0.0071, -0.2353, 0.221)),
            "more/none": ((0.112, 0.0, 0.446), (-0.0006, -0.0329, 0.0316)),
            "more/l1=0.01": ((0.228, 0.0, 1.0), (-0.0133, -0.0817, 0.0552)),
            "more/weight_l2=0.001": ((0.018, 0.001, 0.034), (-0.0019, -0.0434, 0.0397))}
    points = {f"{term}, {size} data": [(n.split("/")[1], *rows[n]) for n in (f"{size}/none", f"{size}/{term}")]
              for size in ("less", "more") for term in ("l1=0.01", "weight_l2=0.001")}
    fig = scatter_figure(points, "gap against sparsity", "Hoyer", "gap")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    texts = ax.texts
    assert sorted(t.get_text() for t in texts) == sorted(n.split("/")[1] for n in rows)     # one label a point
    boxes = [Text.get_window_extent(t) for t in texts]
    assert [(a.get_text(), b.get_text()) for i, (a, p) in enumerate(zip(texts, boxes))
            for b, q in zip(texts[:i], boxes) if p.overlaps(q)] == []
    at = [ax.transData.transform((x[0], y[0])) for x, y in rows.values()]
    radius = 2 * fig.dpi / 72                                                  # a marker of ms=4 points
    marks = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in at]
    assert [t.get_text() for t, b in zip(texts, boxes) if any(b.overlaps(m) for m in marks)] == []

    def gap(box, p):
        return np.hypot(max(box.x0 - p[0], 0, p[0] - box.x1), max(box.y0 - p[1], 0, p[1] - box.y1))

    # a label with no line back to its point is nearer its point than any other point
    stray = [t.get_text() for t, b in zip(texts, boxes) if t.arrow_patch is None
             and min(gap(b, p) for p in at) < gap(b, ax.transData.transform(t.xy))]
    assert stray == []


def test_curves_with_bands_keep_a_log_x_axis_on_the_thresholds_and_say_ratios_plainly():
    """net_time.png's shaded intervals ran its symlog x axis out to -0.01 (fill_between's margins, the scale set after
    them), and its log y axis read "4 x 10^0"."""
    ts = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
    fig = curves_figure({"a": (ts, [2.0, 1.8, 1.5, 1.2, 0.8, 0.7])}, "t", "x", "y", logx=True, logy=True,
                        bands={"a": ([1.5, 1.2, 0.0, 0.9, 0.3, 0.6], [3.0, 2.5, np.inf, 1.6, 2.0, 0.9])})
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    assert 0 < ax.get_xlim()[0] < 0.003 and ax.get_xlim()[1] > 1.0
    said = {t.get_text() for minor in (False, True) for t in ax.get_yticklabels(minor=minor)}
    assert said >= {"1", "2"} and not any("times" in t or "^" in t for t in said), said


def test_a_tradeoffs_labels_are_all_there_in_their_points_colours_and_overlap_none():
    """architectures' flops_vs_probe.png (8 seeds, 2026-12-05) printed rbm's and conv-ae's labels as "rbmconv-ae"
    and sae-288's over cat's point: each label sat 5 points up and right of its point, in black."""
    from downpour.studies.compare import tradeoff_figure

    at = {"cat": (1.02e6, 0.917), "conv-ae": (1.73e5, 0.954), "rbm": (1.31e5, 0.954), "rnn": (3.95e6, 0.815),
          "sae": (5.1e4, 0.563), "rbm-288": (5.9e5, 0.971), "rnn-288": (1.79e7, 0.847), "sae-288": (5.9e5, 0.919)}
    rows = [{"condition": c, "figures": {"flops_fwd": [x, x, x], "probe_digits": [y, y - 0.01, y + 0.01]}}
            for c, (x, y) in at.items()]
    fig = tradeoff_figure(rows, "flops_fwd", "probe_digits", "FLOPs vs probe", "FLOPs", "accuracy")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    texts = ax.texts
    assert sorted(t.get_text() for t in texts) == sorted(at)
    boxes = [Text.get_window_extent(t) for t in texts]
    assert [(a.get_text(), b.get_text()) for i, (a, p) in enumerate(zip(texts, boxes))
            for b, q in zip(texts[:i], boxes) if p.overlaps(q)] == []
    points = {tuple(np.round(line.get_xydata()[0], 6)): line.get_color()
              for line in ax.lines if line.get_marker() == "o"}
    assert [t.get_text() for t in texts if t.get_color() != points[tuple(np.round(t.xy, 6))]] == []
    assert len(set(points.values())) == len(at)
    assert min(t.get_fontsize() for t in texts) >= 8
    rows[0]["figures"]["probe_digits_pixels"] = [0.958, 0.951, 0.965]     # the verdict's reference, drawn as the bars'
    fig = tradeoff_figure(rows, "flops_fwd", "probe_digits", "FLOPs vs probe", "FLOPs", "accuracy")
    assert fig.axes[0].get_title().endswith("(dashed: the same probe on the input pixels, 0.958)")
    assert [tuple(line.get_ydata()) for line in fig.axes[0].lines if line.get_linestyle() == "--"] == [(0.958, 0.958)]


def test_a_tradeoffs_unbounded_interval_runs_off_the_axes():
    """An interval of too few seeds (high end inf) drew a bar np.nan_to_num made 1.8e308 long, and the y axis ran out
    to it: every other point sat on one line at the bottom."""
    from downpour.studies.compare import tradeoff_figure

    rows = [{"condition": "a", "figures": {"p": [10.0] * 3, "y": [0.5, 0.4, np.inf]}},
            {"condition": "b", "figures": {"p": [100.0] * 3, "y": [0.6, 0.55, 0.65]}}]
    fig = tradeoff_figure(rows, "p", "y", "t", "x", "y")
    bar = [c for c in fig.axes[0].collections if len(c.get_segments())][0].get_segments()[0]   # a's, drawn first
    top = fig.axes[0].get_ylim()[1]
    assert 0.65 < top < 1 and max(bar[:, 1]) > top


def test_a_phase_diagrams_blank_cell_says_not_run(monkeypatch, tmp_path):
    """The staleness study's phase.png left lr 0.5's delay4, delay8 and random4 white, with nothing to say the
    design does not run them (every other cell prints its rate)."""
    from downpour.studies import figures

    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, path, caption="": drawn.append(fig) or path)
    figures.phase_diagram(np.array([[0.83, 0.0], [0.8, np.nan]]), ["lr 0.125", "lr 0.5"], ["sync", "delay4"],
                          tmp_path / "phase.png", "P(global optimum)", "P(global optimum)")
    assert [t.get_text() for t in drawn[0].axes[0].texts] == ["0.83", "0.00", "0.80", "not run"]


def test_curves_on_a_log_x_axis_tick_each_threshold():
    """The quick flat-skipping study's skipped.png, net_flops.png and net_time.png drew thresholds 0.03 and 0.3 either
    side of a lone "10^-1" tick: which point was which threshold was left to the reader."""
    fig = curves_figure({"lfw": ([0.03, 0.3], [0.2, 0.5]), "digits": ([0.03, 0.3], [0.1, 0.8])}, "t", "threshold", "y",
                        logx=True)
    FigureCanvasAgg(fig).draw()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.03", "0.3"]


def test_a_scatters_labels_and_legend_are_at_least_8_points():
    """The costs study's sparsity_vs_overfitting.png labelled its points at 6 points and its legend at 7 (2026-12-06):
    below what a page shows legibly at the figure's own width."""
    points = {"L1, less data": [("none", (0.1, 0.0, 0.2), (0.0, -0.1, 0.1)),
                                ("l1=0.01", (0.5, 0.0, 1.0), (0.0, -0.4, 0.4))]}
    fig = scatter_figure(points, "gap against sparsity", "Hoyer", "gap")
    ax = fig.axes[0]
    assert min(t.get_fontsize() for t in ax.texts + ax.get_legend().get_texts()) >= 8


def test_a_tradeoffs_points_at_one_x_are_drawn_apart():
    """templates' params_vs_probe.png: tile2 and conv32 (8,448 parameters each) drew one bar over the other."""
    from downpour.studies.compare import tradeoff_figure

    rows = [{"condition": c, "figures": {"params": [p] * 3, "y": [y, y - 0.1, y + 0.1]}}
            for c, p, y in (("untied", 422_400, 0.89), ("tile2", 8_448, 0.91), ("conv32", 8_448, 0.93))]
    fig = tradeoff_figure(rows, "params", "y", "t", "parameters", "y")
    xs = {t.get_text(): t.xy[0] for t in fig.axes[0].texts}
    assert xs["untied"] == 422_400 and xs["tile2"] < 8_448 < xs["conv32"] < 8_448 * 1.1 and xs["tile2"] > 8_448 / 1.1


def test_a_tradeoff_with_no_finite_point_draws_empty_axes():
    """tradeoff_figure with every condition's x unmeasured (NaN): an empty figure, as before 2026-12-06, not a
    ValueError from finite_limits() of no arrays."""
    from downpour.studies.compare import tradeoff_figure

    rows = [{"condition": "a", "figures": {"p": [np.nan] * 3, "y": [0.5, 0.4, 0.6]}}]
    fig = tradeoff_figure(rows, "p", "y", "t", "x", "y")
    assert not fig.axes[0].lines


def test_a_tradeoffs_labels_keep_off_its_dashed_reference_line():
    """The label placer avoided the points and the other labels but not the dashed reference: a label at its first
    corner sat on the line, struck through. Planted: points just under and over the pixels' 0.90, each label's first
    corner (up or down and right) across it; every label's box must lie wholly above or below the line."""
    from downpour.studies.compare import tradeoff_figure

    at = {"a": (1e3, 0.895), "b": (1e4, 0.905), "c": (1e5, 0.898), "d": (1e6, 0.902), "e": (1e7, 0.7)}
    rows = [{"condition": c, "figures": {"p": [x] * 3, "probe_y": [y, y - 0.002, y + 0.002]}} for c, (x, y) in at.items()]
    rows[0]["figures"]["probe_y_pixels"] = [0.9, 0.89, 0.91]
    fig = tradeoff_figure(rows, "p", "probe_y", "t", "x", "accuracy")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    (dashed,) = [line for line in ax.lines if line.get_linestyle() == "--"]
    y = ax.transData.transform((1.0, dashed.get_ydata()[0]))[1]                # the line's height in pixels
    boxes = {t.get_text(): Text.get_window_extent(t) for t in ax.texts}
    assert sorted(boxes) == sorted(at)
    assert [name for name, box in boxes.items() if box.y0 < y < box.y1] == []
