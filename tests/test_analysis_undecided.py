"""Whether a tie at the top of the choice is undecided does not depend on how many units tied: alike units' test AUCs
spread more the more of them there are, so the spread is told against as many alike units' 95% range, and the limit
it was told against is stored beside the flag (``tie_spread_limit``) and said in the report."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from downpour.analysis.choice import undecided
from downpour.analysis.controls import score_controls
from downpour.analysis.report_notes import chosen_among
from downpour.analysis.selectivity import best_unit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _tie_rules import Z95, tie_spread_limit  # noqa: E402

WIDTH = 0.1     # one unit's 95% AUC interval


def test_alike_units_are_called_undecided_equally_often_whatever_their_number():
    """Ties of alike units (each test AUC one draw of the same normal, its 95% interval WIDTH wide) are undecided in 5%
    of ties of any size; told against WIDTH itself, in 0.6% of 2-unit ties, 4.4% of 5 and 38% of 20."""
    rates = {}
    for tied in (2, 5, 20):
        draws = 0.8 + WIDTH / (2 * Z95) * np.random.default_rng(tied).normal(size=(4000, tied))
        rates[tied] = np.mean([undecided(a, tie_spread_limit(tied, WIDTH)) for a in draws])
    assert all(0.04 < r < 0.06 for r in rates.values()), rates


def test_a_tie_whose_units_test_far_apart_is_undecided_at_any_number_and_one_alone_is_decided():
    for tied in (2, 5, 20, 929):
        far = np.r_[0.95, np.full(tied - 1, 0.6)]             # the chosen unit far above the rest
        limit = tie_spread_limit(tied, WIDTH)
        assert undecided(far, limit) and not undecided(np.full(tied, 0.8), limit)
    assert tie_spread_limit(1, WIDTH) == 0.0 and not undecided([0.9], tie_spread_limit(1, WIDTH))
    assert math.isclose(tie_spread_limit(2, WIDTH), WIDTH / math.sqrt(2))      # 2 units: 1.96 x sqrt(2) errors
    assert math.isnan(tie_spread_limit(3, float("nan"))) and not undecided([0.6, 0.9, 0.7], tie_spread_limit(3, math.nan))


def _tie(tied: int, faint: np.ndarray, seed: int = 0):
    """y (80,), one split (the first 20 of each class select), (80, tied + 30) responses: the first ``tied`` rank every
    selection face on top; on test each carries ``faint`` (tied,) of the face signal over noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], 40)
    select, test = np.r_[0:20, 40:60], np.r_[20:40, 60:80]
    scores = rng.normal(size=(80, tied + 30))
    scores[select, :tied] = np.where(y[select] == 1, 3.0, -3.0)[:, None] + rng.uniform(-1, 1, (40, tied))
    scores[test, :tied] += np.asarray(faint) * np.where(y[test] == 1, 1.0, -1.0)[:, None]
    return y, select, test, scores


def test_the_table_stores_the_limit_it_told_the_spread_against():
    y, select, test, scores = _tie(12, np.linspace(0.0, 3.0, 12))
    row = best_unit(scores, y, select, test)
    t = row["tied_auc"]
    assert row["tied"] == 12 and row["undecided"] is True and row["tie_rule"] == "pooled bootstrap range"
    assert row["tie_spread_limit"] == best_unit(scores, y, select, test)["tie_spread_limit"]      # seeded
    assert 0 < row["tie_spread_limit"] < t["max"] - t["min"]
    words = chosen_among(row)
    assert f"wider than chance would in 95% of resamplings of the test images, {row['tie_spread_limit']:.3f}," in words
    y, select, test, scores = _tie(1, [3.0])
    alone = best_unit(scores, y, select, test)
    assert alone["tied"] == 1 and alone["undecided"] is False and alone["tie_spread_limit"] == 0.0


def test_the_face_test_stores_the_limit_it_told_the_spread_against():
    y, select, test, scores = _tie(12, np.linspace(0.0, 3.0, 12))
    row, = score_controls({"learned unit": scores}, y, {"others": np.flatnonzero(y == 0)}, np.arange(80),
                          [(select, test)], replicates=50)
    t = row["tied_auc"]
    again, = score_controls({"learned unit": scores}, y, {"others": np.flatnonzero(y == 0)}, np.arange(80),
                            [(select, test)], replicates=50)
    assert row["tied"] == 12 and row["undecided"] is True and row["undecided_splits"] == 1
    assert row["tie_rule"] == "pooled bootstrap range"
    assert row["tie_spread_limit"] == again["tie_spread_limit"]   # seeded
    assert 0 < row["tie_spread_limit"] < t["max"] - t["min"]


def test_a_row_from_before_the_limit_is_said_against_the_rule_it_was_flagged_by():
    """An analysis.json written before 2026-12-05 flags a tie whose spread passes one unit's interval: the
    report, drawn again from it, says that rule, not the alike units' range the row has no limit of."""
    from downpour.analysis.controls import ties_once
    from downpour.analysis.report_controls import controls

    y, select, test, scores = _tie(12, np.linspace(0.0, 3.0, 12))
    row = best_unit(scores, y, select, test)
    studentized = {k: v for k, v in row.items() if k != "tie_rule"}     # (earlier on 2026-12-05: no tie_rule)
    assert f"wider than 12 alike units' would in 95% of ties, {row['tie_spread_limit']:.3f}, given" in chosen_among(
        studentized)
    own = {**row, "tie_rule": "bootstrap range"}     # (earlier on 2026-12-05: each unit at its own error, said alike)
    assert (f"wider than chance would in 95% of resamplings of the test images, {row['tie_spread_limit']:.3f},"
            in chosen_among(own))
    old = {k: v for k, v in row.items() if k not in ("tie_spread_limit", "tie_rule")}
    words = chosen_among(old)
    assert "wider than this one's 95% interval, so the selection split cannot tell them apart" in words
    assert "alike" not in words
    rows = score_controls({"learned unit": scores}, y, {"others": np.flatnonzero(y == 0)}, np.arange(80),
                          [(select, test)], replicates=50)
    rows, _ = ties_once(rows)
    old = [{k: v for k, v in r.items() if k not in ("tie_spread_limit", "tie_rule")} for r in rows]
    verdict = {"rule": "", "criterion": "", "sentences": []}
    setup = {"select": "train", "faces": 20, "negatives": {"others": {"label": "the others"}}}
    html = controls({"face_neuron": {"controls": old, "controls_verdict": verdict, "controls_setup": setup}})
    ci = old[0]["auc_ci"]
    assert f"wider than its 95% interval [{ci[0]:.3f}, {ci[1]:.3f}]: the selection images cannot tell" in html
    assert "alike" not in html
    html = controls({"face_neuron": {"controls": [{**r, "splits": 3} for r in old], "controls_verdict": verdict,
                                     "controls_setup": {**setup, "select": "crossfit"}}})
    assert "wider than its 95% interval on that fold: the selection images cannot tell" in html and "alike" not in html
