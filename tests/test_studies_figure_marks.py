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
    kept: dict = {}
    monkeypatch.setattr(study_figures, "save", lambda fig, path: kept.update({path.stem: fig}) or path)
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
