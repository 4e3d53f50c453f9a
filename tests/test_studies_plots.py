"""The studies' scatter of one figure against another (downpour/studies/plots.py)."""
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from downpour.studies.plots import scatter_figure


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
