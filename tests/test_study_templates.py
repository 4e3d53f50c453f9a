"""The templates study (Q2): the quick study end to end, its measured footprint against hand counts,
the edge measure on planted first layers, and how its rows read paired differences."""
import math

import pytest

from downpour.studies import study_class
from downpour.studies.base import Condition

from study_quick import check_every_condition_may_diverge, check_owed, check_written, run_quick

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return run_quick("templates", tmp_path_factory)


def test_quick_study_writes_study_json_html_and_figures(quick):
    folder, result = quick
    check_written(folder, result, "templates")
    check_owed(folder, result)
    assert "untied" in result["verdict"] and "tile2" in result["verdict"]


def test_parameters_and_optimiser_state_are_the_hand_counted_ones(quick):
    """cat-demo on 32x32: stage 1 is 25x25 positions of 8 maps of 8x8 filters, stage 2 (on the 12x12 pooled
    maps) 8x8 positions of 8 maps of 8x5x5. Untied: every position its own bank; tile 2: 4 banks; a
    convolution with 32 stage-1 maps has tile 2's count. Adam keeps two floats per parameter."""
    rows = {r["condition"]: r["figures"] for r in quick[1]["cells"]}
    untied = 25 * 25 * 8 * 64 + 8 * 8 * 8 * 8 * 25
    tile2 = 4 * 8 * 64 + 4 * 8 * 8 * 25
    conv32 = 32 * 64 + 8 * 32 * 25
    assert (untied, tile2, conv32) == (422_400, 8_448, 8_448)
    for name, count in (("untied", untied), ("tile2", tile2), ("conv32", conv32)):
        assert rows[name]["params"][0] == count, name
        assert rows[name]["opt_bytes"][0] == pytest.approx(2 * 4 * count, rel=1e-3), name
    # tiling changes memory, not arithmetic; more maps change both
    assert rows["untied"]["flops_fwd"][0] == rows["tile2"]["flops_fwd"][0] < rows["conv32"]["flops_fwd"][0]
    assert rows["untied"]["act_bytes"][0] == rows["tile2"]["act_bytes"][0] < rows["conv32"]["act_bytes"][0]
    # the paired difference is against the condition each row names
    assert rows["conv32"]["params"][0] == rows["tile2"]["params"][0]
    assert "d_probe_digits" in rows["tile2"] and "d_probe_digits" not in rows["untied"]


@pytest.mark.parametrize("kind, low, high", [("gabor", 0.9, 1.0), ("random", 0.0, 0.1)])
def test_edge_fraction_reads_the_trained_first_layer(kind, low, high):
    """A planted first layer (a frozen Gabor bank, or frozen random filters) gives the edge fraction the
    analysis's calibration says: Gabors pass, noise does not."""
    study = study_class("templates")(quick=True)
    # joint: a greedy first step would train only the frozen stage 1, which has nothing to train
    planted = Condition(f"planted-{kind}", {"vs": ""}, (("model.tile", 1), ("model.first_layer", kind),
                                                         ("train.schedule", "joint"), ("train.steps", 2)))
    figures = study.run_cell(planted, 0, {})
    assert low <= figures["edge_fraction"] <= high
    assert math.isfinite(figures["probe_digits"]) and 0.0 <= figures["face_auc_controls"] <= 1.0


def test_rows_read_a_planted_difference_and_a_planted_tie():
    """Cells made up: 'same' equals the reference on every seed, 'better' is 0.1 above it."""
    study = study_class("templates")(quick=True)
    conds = [Condition("untied", {"vs": ""}), Condition("same", {"vs": "untied"}), Condition("better", {"vs": "untied"})]
    seeds = list(range(6))
    base = {s: 0.8 + 0.01 * s for s in seeds}
    cells = {}
    for s in seeds:
        for name, shift in (("untied", 0.0), ("same", 0.0), ("better", 0.1)):
            cells[(name, s)] = {"probe_digits": base[s] + shift, "face_auc_controls": 0.6, "face_auc_lfw": 0.7,
                                "edge_fraction": 0.3, "seconds_per_step": 0.05}
    rows = {r["condition"]: r for r in study.summarise(conds, cells, seeds)}
    assert rows["same"]["extra"]["d_probe_digits"] == "no detectable effect"
    assert rows["better"]["extra"]["d_probe_digits"] == "higher"
    assert rows["better"]["figures"]["d_probe_digits"] == pytest.approx([0.1, 0.1, 0.1])
    assert rows["untied"]["figures"]["probe_digits"][0] == pytest.approx(0.825)


def test_a_condition_diverged_in_every_seed_is_named_not_a_crash(quick, tmp_path):
    check_every_condition_may_diverge(quick[0], "templates", tmp_path)
