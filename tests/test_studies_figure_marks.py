"""What a study's figure must mark that it once left for the reader to guess (the audit of 2026-12-06): whose
intervals, an axis cut short, a median under a condition's points, a bar it cannot bound, a reference ratio."""
import numpy as np
import pytest
from matplotlib.colors import to_hex

from downpour.studies import figures as study_figures
from downpour.studies import study_class


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """The study figures a test draws, by file stem, unsaved."""
    from downpour.studies import plots

    kept: dict = {}
    for module in (study_figures, plots):
        monkeypatch.setattr(module, "save", lambda fig, path, caption="": kept.update({path.stem: fig}) or path)
    return kept


def _staleness_figures(drawn: dict, tmp_path) -> None:
    study = study_class("staleness")(quick=True)
    rows = [{"condition": c.name, "n": 2, "figures": {"p_success": [0.5, 0.3, 0.7]}} for c in study.conditions()]
    cells = {(c, s): {"final_cost": 1.0 + 0.1 * s} for c in ("sae/serial", "sae/async4", "sae/sync4") for s in (0, 1)}
    study.figures(rows, cells, tmp_path)


def test_staleness_sae_costs_medians_are_no_conditions_colour(drawn, tmp_path):
    """sae_cost.png drew its box medians in matplotlib's orange (C1), on top of async4's orange points."""
    _staleness_figures(drawn, tmp_path)
    ax = drawn["sae_cost"].axes[0]
    points = {to_hex(line.get_color()) for line in ax.get_lines() if line.get_linestyle() == "None"}
    medians = [line for line in ax.get_lines() if line.get_linestyle() != "None" and len(line.get_xdata()) == 2
               and line.get_ydata()[0] == line.get_ydata()[1]
               and to_hex(line.get_color()) in points]
    assert len(points) == 3 and not medians


def test_staleness_controls_say_wilson_and_show_the_whole_probability_axis(drawn, tmp_path):
    """controls.png said "95% intervals" of a proportion's Wilson intervals, on an axis cut at 0.15-0.95 unmarked."""
    _staleness_figures(drawn, tmp_path)
    ax = drawn["controls"].axes[0]
    low, high = ax.get_ylim()
    assert "Wilson 95% intervals" in ax.get_title() and low <= 0 and high >= 1 and high - low < 1.1


def test_a_scatters_unbounded_interval_is_marked_so():
    """probe_cost.png drew a probe change it could not bound (one seed) as a bar the axes' full height, no mark: as
    measured as its neighbours'. An arrow where it leaves the axes, and the word, in its point's colour."""
    from downpour.studies.plots import scatter_figure

    points = {"a": [("0.1", (0.2, 0.1, 0.3), (0.01, -np.inf, np.inf)), ("0.3", (0.5, 0.4, 0.6), (0.0, -0.01, 0.01))],
              "b": [("0.1", (0.3, 0.2, 0.4), (-0.02, -0.03, -0.01))]}
    ax = scatter_figure(points, "t", "x", "y").axes[0]
    said = [t for t in ax.texts if t.get_text() == "unbounded"]
    assert len(said) == 2 and {to_hex(t.get_color()) for t in said} == {to_hex("C0")}
    arrows = [line.get_marker() for line in ax.get_lines() if line.get_marker() in ("^", "v")]
    assert sorted(arrows) == ["^", "v"]


def test_a_time_ratios_curves_draw_the_line_of_no_change(drawn, tmp_path):
    """net_time.png had no line at x1: a reader could not see which thresholds made the network slower."""
    study = study_class("flat-skipping")(quick=True)
    ratio = [1.4, 1.2, 1.6]
    figures = {"skipped": [0.3, 0.2, 0.4], "net_flops_ratio": [0.8, 0.7, 0.9], "net_time_ratio": ratio,
               "delta_probe": [0.0, -0.01, 0.01]}
    rows = [{"condition": f"{c.name}/{t:g}/{n}", "n": 2, "figures": figures}
            for c in study.conditions() for t in study.thresholds() for n in ("lfw", "padded", "digits")]
    study.figures(rows, {}, tmp_path)
    ax = drawn["net_time"].axes[0]
    ones = [line for line in ax.get_lines() if list(line.get_ydata()) == [1, 1] and line.get_linestyle() == "--"]
    assert len(ones) == 1 and ax.get_ylim()[0] < 1 and "1 (no change)" in [t.get_text() for t in
                                                                          ax.get_legend().get_texts()]


def _diamonds(ax) -> list[tuple[float, float]]:
    return [(float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in ax.get_lines()
            if line.get_marker() == study_figures.SAME_MARK]


def test_a_probe_the_same_in_every_seed_is_drawn_as_such_in_interval_bars(drawn, tmp_path):
    """The quick first-layer study's probes.png drew a probe every seed read alike (t's interval of no width) as a
    point measured exactly: it is an open diamond, and the title says what that means; a measured point is not."""
    from downpour.studies.stats import mean_ci

    triples = [list(mean_ci([0.9, 0.9])), list(mean_ci([0.8, 0.9])), list(mean_ci([0.5, 0.5, 0.5]))]
    study_figures.interval_bars(["a", "b", "c"], triples, tmp_path / "probes.png", "probe accuracy", "accuracy")
    ax = drawn["probes"].axes[0]
    assert _diamonds(ax) == [(0.0, 0.9), (2.0, 0.5)]
    assert study_figures.SAME_SAID in ax.get_title()
    study_figures.interval_bars(["b"], triples[1:2], tmp_path / "spread.png", "probe accuracy", "accuracy")
    assert not _diamonds(drawn["spread"].axes[0]) and "◇" not in drawn["spread"].axes[0].get_title()


def test_a_point_with_a_figure_the_same_in_every_seed_is_drawn_as_such_in_a_scatter(drawn, tmp_path):
    from downpour.studies import plots

    points = {"l1": [("l1=0.1", (0.3, 0.2, 0.4), (0.7, 0.7, 0.7)), ("l1=1", (0.5, 0.4, 0.6), (0.6, 0.5, 0.7))],
              "none": [("none", (0.2, 0.2, 0.2), (0.4, 0.3, 0.5))]}
    plots.scatter_intervals(points, tmp_path / "tradeoff.png", "sparsity and probe", "Hoyer", "probe")
    ax = drawn["tradeoff"].axes[0]
    assert sorted(_diamonds(ax)) == [(0.2, 0.4), (0.3, 0.7)] and plots.SAME_SAID in ax.get_title()


def test_a_scatters_series_keeps_its_colour_after_a_point_the_same_in_every_seed():
    """probe_cost.png drew 5 of its 6 series, and their legend, in a later series' colour: each open diamond took a
    colour from the cycle, so the next series' line and its legend entry no longer matched its labels and diamonds."""
    from downpour.studies.plots import scatter_figure

    points = {"a": [("0.1", (0.2, 0.2, 0.2), (0.01, 0.0, 0.02)), ("0.3", (0.5, 0.5, 0.5), (0.0, -0.01, 0.01))],
              "b": [("0.1", (0.3, 0.2, 0.4), (-0.02, -0.03, -0.01))], "c": [("0.1", (0.4, 0.3, 0.5), (0.1, 0.0, 0.2))]}
    ax = scatter_figure(points, "t", "x", "y").axes[0]
    handles, names = ax.get_legend_handles_labels()          # (the legend's entries: each series' error bars)
    assert names == ["a", "b", "c"]
    assert [to_hex(h.lines[0].get_color()) for h in handles] == [to_hex(f"C{i}") for i in range(3)]
    assert len(_diamonds(ax)) == 2
