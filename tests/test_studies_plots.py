"""The studies' scatter of one figure against another (downpour/studies/plots.py)."""
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

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
    monkeypatch.setattr(compare, "save", lambda fig, path: drawn.append(fig) or path)
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
    boxes = [t.get_window_extent() for t in fig.axes[0].texts]
    assert len(boxes) == 5
    assert [(i, j) for i in range(5) for j in range(i) if boxes[i].overlaps(boxes[j])] == []
    alone = fig.axes[0].texts[-1]                       # a label nothing else holds the place of stays at its point
    assert alone.get_text() == "pooled_l2=0.03" and alone.xyann == (3, 3)
