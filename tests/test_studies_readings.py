"""What a study reads out: the quick setting's warning, the verdict's words, the seeds an interval leaves out,
the figures a cell lacks, and study.html's and study.md's tables."""
import json
import math

import pytest

from downpour import studies
from downpour.config import ConfigError
from downpour.studies.base import Condition
from downpour.studies import study_class
from downpour.studies.run import run_study
from downpour.studies.holm import holm
from downpour.studies.stats import mean_ci, paired_difference
from planted_study import EveryCellDiverges, Planted, edit_cells, quick_warning, rename
from planted_study import planted  # noqa: F401 (a fixture)


def test_a_seed_left_out_of_an_interval_is_said(planted, tmp_path, monkeypatch):
    """A non-finite figure (a diverged run) leaves its seed out of the interval while n counts every seed."""
    plain = Planted.run_cell
    monkeypatch.setattr(Planted, "run_cell", lambda self, c, seed, ctx: {**plain(self, c, seed, ctx),
                                                                         **({"x": math.nan} if (c.name, seed) == ("b", 1) else {})})
    run_study("planted", tmp_path, quick=True, jobs=1)
    rows = {r["condition"]: r for r in json.loads((tmp_path / "study.json").read_text())["cells"]}
    assert rows["b"]["missing"] == {"x": 1} and "missing" not in rows["a"] and rows["b"]["n"] == 3
    assert "(1 of 3 seeds left out)" in (tmp_path / "study.html").read_text()


def test_the_quick_settings_warning_says_the_seeds_it_ran():
    """Every quick verdict said "2 seeds" (or "two") whatever --seeds gave (each quick study's test module checks
    its verdict holds this paragraph: tests/study_quick.py)."""
    name = "mechanisms"
    study = study_class(name)(quick=True)
    assert study.quick_paragraph([{"n": 4}, {"n": 4}]).endswith("(a few training steps, 4 seeds): a smoke test "
                                                                "of the machinery, not an answer.")
    assert study_class(name)(quick=False).quick_paragraph([{"n": 4}]) == ""


@pytest.mark.parametrize("name", list(studies.STUDIES))
def test_every_design_says_its_quick_setting_and_the_runner_puts_it_first_once(name, monkeypatch):
    """The quick setting's warning is the runner's, once, first (until 2026-12-05 each of the seven studies' verdict()
    inserted it itself, with its own words for the setting): a design says those words (``quick_what``), and the
    verdict the runner records holds the warning before the study's reading, once; none on the full setting."""
    from downpour.studies.run import verdict_text

    cls = study_class(name)
    assert isinstance(getattr(cls, "quick_what", None), str) and cls.quick_what.strip(), name
    monkeypatch.setattr(cls, "verdict", lambda self, rows: "The reading.\n\nIn short, nothing.")
    monkeypatch.setattr(cls, "claim", lambda self, rows: "")     # (its own rows' words: tests/test_studies_claims.py)
    rows = [{"condition": "a", "n": 3}]
    quick = verdict_text(cls(quick=True), rows, trained=True, lr_fixed=True).split("\n\n")
    warning = f"This is the quick setting ({cls.quick_what}, 3 seeds): a smoke test of the machinery, not an answer."
    assert quick == [warning, "The reading.", "In short, nothing."]
    assert verdict_text(cls(quick=False), rows, trained=True, lr_fixed=True) == "The reading.\n\nIn short, nothing."


def test_verdict_words():
    from downpour.studies import words
    assert words.percent(0.624) == "62%" and words.percent(float("nan")) == "–"
    assert words.percent_ci([0.62, 0.55, 0.69]) == "62% [55, 69]"
    assert words.percent_ci([1.0, float("nan"), float("nan")]) == "100%"
    assert words.points([0.031, -0.01, 0.07]) == "+3.1 [-1.0, +7.0]"
    assert words.points([0.031, -0.01, 0.07], 0, " points") == "+3 points [-1, +7]"
    assert words.signed([0.031, -0.01, 0.07]) == "+0.031 [-0.010, +0.070]"
    assert words.signed([0.7449, 0.6031, 0.886], ".3g") == "+0.745 [+0.603, +0.886]"
    # a difference no seed measured, and one with no interval: said, not printed as nan or inf
    assert words.signed([math.nan, math.nan, math.nan]) == "not measured"
    assert words.points([0.05, -math.inf, math.inf], 1, " points") == "+5.0 points (no interval: too few seeds to tell)"
    assert words.value_ci([0.4529, 0.45, 0.46]) == "0.4529 [0.45, 0.46]"


def test_a_difference_that_rounds_to_zero_is_said_unsigned_but_an_interval_end_below_zero_keeps_its_sign():
    """The costs verdict printed "probe 93.2% (Δ -0.0 points [-0.8, +0.8], ...)" and templates' "-0.000 [-0.010,
    +0.010]": a sign the rounding had emptied. An end that rounds to 0 keeps its side: "[-2.1, -0.0], lower". Since
    2026-12-06 an end near zero first takes up to 2 more decimals (as the run report's, auc_words.off_zero), and so does
    the difference where its interval is on one side of 0: only one that still rounds to 0 is said so, unsigned for a
    value, signed for an end."""
    from downpour.studies import words
    # (the difference itself takes more decimals only where its interval is on one side of 0: else its sign is noise,
    # and the costs verdict's probe read "-0.03 points [-0.8, +0.8]" for a while on 2026-12-06)
    assert words.points([-0.0003, -0.008, 0.008], 1, " points") == "0.0 points [-0.8, +0.8]"
    assert words.signed([-0.0001, -0.01, 0.01]) == "0.000 [-0.010, +0.010]"
    assert words.signed([0.0002, -0.01, 0.01], ".3f") == "0.000 [-0.010, +0.010]"
    assert words.signed([-0.0002, -0.01, -0.0001]) == "-0.0002 [-0.010, -0.0001]"   # one side of 0: off zero
    assert words.points([0.0, 0.0, 0.0]) == "0.0 [0.0, 0.0]"                       # nothing moved in any seed
    assert words.points([-0.011, -0.021, -0.0004]) == "-1.1 [-2.1, -0.04]"
    assert words.points([-0.011, -0.021, -1e-7]) == "-1.1 [-2.1, -0.0]"            # 0 to 3 decimals: keeps its side
    assert words.difference([-1e-9, -0.1, 0.2], "{:+.3g}") == "-1e-09 [-0.1, +0.2]"    # not zero to .3g
    assert words.signed([-1e-7, -math.inf, math.inf]) == "0.000 (no interval: too few seeds to tell)"


def test_seeds_a_paired_difference_leaves_out_for_its_baseline_are_said():
    """The baseline's NaN dropped two of four pairs from d_probe_digits, and nothing said so."""
    from downpour.studies.base import Condition
    from downpour.studies.compare import compare_rows
    from downpour.studies.html import rows_table
    from downpour.studies.run import note_missing

    conditions = [Condition("ref", {"vs": ""}), Condition("arm", {"vs": "ref"})]
    ref, arm = [0.90, math.nan, math.nan, 0.91], [0.80, 0.95, 0.96, 0.82]
    cells = {**{("ref", s): {"probe_digits": v} for s, v in enumerate(ref)},
             **{("arm", s): {"probe_digits": v} for s, v in enumerate(arm)}}
    rows = compare_rows(conditions, cells, [0, 1, 2, 3], {"probe_digits": 0.02})
    note_missing(rows, cells, [0, 1, 2, 3])
    assert rows[1]["missing"] == {"d_probe_digits": 2} and rows[0]["missing"] == {"probe_digits": 2}
    assert "2 of 4 seeds left out" in rows_table(rows).split("<tr>")[-1]


def test_a_cell_that_ran_without_a_figure_its_seeds_hold_is_refused_by_name_not_left_out():
    """A cell measured before a figure was recorded read it as NaN: its seed left out of the figure and of the
    paired difference without a word (2 of 4 pairs here). A diverged cell (its design's figures alone) stays."""
    from downpour.studies.base import Condition
    from downpour.studies.compare import FigureMissing, compare_rows

    conditions = [Condition("ref", {"vs": ""}), Condition("arm", {"vs": "ref"})]
    cells = {**{("ref", s): {"probe": 0.9 + 0.01 * s, "params": 5.0} for s in range(4)},
             **{("arm", s): {"probe": 0.8 + 0.01 * s, "params": 6.0} for s in range(4)}}
    cells[("ref", 3)] = {"diverged": 1.0, "params": 5.0}
    assert compare_rows(conditions, cells, [0, 1, 2, 3], {"probe": 0.02})[1]["figures"]["d_probe"]
    cells[("arm", 1)] = cells[("arm", 2)] = {"params": 6.0}             # ran before "probe" was recorded
    with pytest.raises(FigureMissing, match=r"'arm' seed 1, 'arm' seed 2 ran but lack figure 'probe'.*run the "
                                            "study again") as err:
        compare_rows(conditions, cells, [0, 1, 2, 3], {"probe": 0.02})
    assert err.value.args[0] == "probe" and err.value.cells == [("arm", 1), ("arm", 2)]


class ComparedWithADivergedSeed(EveryCellDiverges):
    """compare_rows' study whose cells run, but a's seed 0, which diverged."""

    def run_cell(self, condition, seed, context):
        return ({"diverged": 1.0, "params": 5.0} if (condition.name, seed) == ("a", 0) else
                {"x": float(seed), "params": 5.0 + (condition.name == "b")})


def test_a_cached_cell_lacking_a_compared_figure_is_named_with_what_to_do_not_a_diverged_one(monkeypatch, tmp_path):
    """compare_rows read b's seed 1 without x as a seed left out; the study wrote its summary with 2 of 3 pairs."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:ComparedWithADivergedSeed")
    run_study("planted", tmp_path, quick=True, jobs=1)
    edit_cells(tmp_path, lambda row: row["figures"].pop("x") if (row["condition"], row["seed"]) == ("b", 1) else None)
    with pytest.raises(ConfigError, match=r"cells.jsonl': the cell\(s\) b seed 1 lack figure 'x', which the study's "
                                          r"summary reads \(measured before the figure was recorded.*delete those "
                                          "lines and run again"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_cells_measured_by_two_versions_are_not_told_to_run_again_into_the_same_refusal():
    """Seeds 0-1 measured when the figure was "probe_old", seed 2 since it became "probe": the refusal named seed 2 as
    lacking "probe_old" and told to run it again, which records "probe" again, refused again. It says both sides."""
    from downpour.studies.base import Condition
    from downpour.studies.compare import FigureMissing, compare_rows

    cells = {("ref", 0): {"params": 5.0, "probe_old": 0.9}, ("ref", 1): {"params": 5.0, "probe_old": 0.8},
             ("ref", 2): {"params": 5.0, "probe": 0.85}}
    with pytest.raises(FigureMissing, match=r"'ref' seed 2 ran but lack figure 'probe_old' and hold 'probe', which the "
                                            r"condition's seeds holding 'probe_old' lack: .*measured by two versions of "
                                            r"the study .*delete the older version's lines") as err:
        compare_rows([Condition("ref", {"vs": ""})], cells, [0, 1, 2], {})
    assert err.value.instead == ["probe"]


def test_a_study_whose_cells_two_versions_measured_names_both_figures(monkeypatch, tmp_path):
    """run.py's refusal of the same: b's seeds 0 and 1 hold x under its old name, seed 2 under its new one."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:ComparedWithADivergedSeed")
    run_study("planted", tmp_path, quick=True, jobs=1)
    edit_cells(tmp_path, lambda row: rename(row, "x", "x_old") if row["condition"] == "b" and row["seed"] < 2 else None)
    with pytest.raises(ConfigError, match=r"cells.jsonl': the cell\(s\) b seed 2 lack figure 'x_old' and hold 'x', "
                                          r"which the cells holding 'x_old' lack: .*measured by two versions of the study "
                                          r".*delete the older version's lines"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_a_figure_the_same_in_every_seed_is_shown_as_such_not_as_a_zero_width_interval():
    """A probe right on 27 of 30 images in both seeds read 0.900 [0.900, 0.900] on the page: as certain as a
    thousand seeds. Student's t has nothing to say without spread; the page says what it is."""
    from downpour.studies.html import rows_table
    rows = [{"condition": "a", "params": {}, "n": 2, "figures": {"probe": list(mean_ci([0.9, 0.9])),
                                                                 "loss": list(mean_ci([1.0, 2.0]))}}]
    cells = rows_table(rows).split("<tr>")[-1]
    same = "(the same in every seed: a degenerate measure, drawn ◇ in its figure)"
    assert f"0.9 <small>{same}</small>" in cells and "[0.9, 0.9]" not in cells
    assert "1.5 <small>[" in cells                                  # spread: the interval as t gives it
    rows[0]["n"], rows[0]["missing"] = 3, {"probe": 1}                # a third seed not measured: not "every seed"
    assert ("(the same in every seed measured: a degenerate measure, drawn ◇ in its figure)</small> <small>(1 of 3 "
            "seeds left out)") in rows_table(rows)


def test_a_comparison_never_measured_is_not_in_holms_family_and_a_diverged_first_seed_is_counted():
    """An all-NaN figure's paired comparison was recorded as "inconclusive" with p = 1: in Holm's family,
    it doubled the other comparison's adjusted p. And a first seed whose cell holds no figure (a diverged
    run) hid every other figure's missing seeds."""
    from downpour.studies.base import Condition
    from downpour.studies.compare import compare_rows
    from downpour.studies.run import note_missing
    from downpour.studies.holm import holm

    conditions = [Condition("ref", {"vs": ""}), Condition("arm", {"vs": "ref"})]
    seeds = [0, 1, 2, 3, 4, 5]
    cells = {("ref", s): {"x": math.nan, "y": 0.5 + 0.01 * s} for s in seeds}
    cells.update({("arm", s): {"x": math.nan, "y": 0.7 + 0.012 * s} for s in seeds})
    rows = compare_rows(conditions, cells, seeds, {"x": 0.02, "y": 0.02})
    assert holm(rows) == 1
    tests = rows[1]["tests"]
    assert tests["d_x"]["reading"] == "not measured" and math.isnan(tests["d_x"]["p_holm"])
    assert tests["d_y"]["reading"] == "higher" and tests["d_y"]["p_holm"] == tests["d_y"]["p"]
    cells[("arm", 0)] = {"diverged": 1.0}
    rows = compare_rows(conditions, cells, seeds, {"y": 0.02})
    note_missing(rows, cells, seeds)
    assert rows[1]["missing"]["y"] == 1


def test_a_table_cell_holding_a_record_reads_as_words_not_a_python_dict():
    from downpour.studies.table import plain as _plain

    shown = _plain({"seeds": [0, 1, 4], "delta": [0.0, -0.4619679414498926, 0.1], "reading": "inconclusive"})
    assert shown == "seeds 0, 1, 4; delta 0, -0.462, 0.1; reading inconclusive"


def test_an_interval_never_runs_past_what_its_figure_can_be(planted, tmp_path, monkeypatch):
    """Student's t on 2 seeds printed a probe accuracy of 0.867 [0.231, 1.502], an edge-like fraction of 83%
    [-16, 182] and a time per step below 0; cut at the figure's range, in study.json, the verdict and the page."""
    values = {"probe_digits": (0.5, 1.0), "edge_fraction": (0.9, 0.7), "face_owed_controls": (-0.9, 0.8),
              "seconds_per_step": (0.001, 0.05), "final_loss": (-3.0, 9.0), "inv_shift": (1.9, 1.5),
              "inv_rotation": (350.0, 300.0)}

    def summarise(self, conditions, cells, seeds):
        figures = {k: list(mean_ci(v)) for k, v in values.items()}
        figures["d_probe_digits"] = list(paired_difference([0.0, 1.0], [1.0, 0.0]))     # -1, +1: t on 2 seeds
        figures["d_edge_fraction"] = list(paired_difference([0.0, 0.0], [0.5, 0.5]))   # no spread: unbounded
        return [{"condition": "a", "group": "", "params": {}, "n": 2, "figures": figures}]

    monkeypatch.setattr(Planted, "summarise", summarise)
    monkeypatch.setattr(Planted, "verdict", lambda self, rows: f"probe {rows[0]['figures']['probe_digits']}")
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    got = result["cells"][0]["figures"]
    assert mean_ci([0.5, 1.0])[1] < 0 and got["probe_digits"] == [0.75, 0.0, 1.0]       # t: [-2.43, +3.93]
    assert got["edge_fraction"] == [pytest.approx(0.8), 0.0, 1.0]
    assert got["face_owed_controls"][1:] == [-1.0, 1.0]
    assert got["seconds_per_step"][1] == 0.0 and got["seconds_per_step"][2] > 0.05
    assert got["final_loss"] == list(mean_ci((-3.0, 9.0)))          # a name that says no range: as t gives it
    assert got["inv_shift"][2] == 2.0 and got["inv_rotation"][2] == 360.0     # the widest the sweep can see (±1.0, ±180)
    assert got["d_probe_digits"] == [0.0, -1.0, 1.0]
    assert got["d_edge_fraction"] == [0.5, -math.inf, math.inf]     # unbounded (under 6 seeds) stays unbounded
    assert result["verdict"].startswith(f"{quick_warning(2)}\n\nprobe [0.75, ") and "1.0]" in result["verdict"]


def test_the_pages_footnote_counts_its_own_comparisons_and_says_intervals_are_cut(tmp_path):
    """study.html's footnote said "35 comparisons ... about 1.75 times" whatever the study read (the quick staleness
    study reads 11), and that a bounded figure's interval "can reach past 0 or 1 ...: it is shown as computed",
    which stopped being so when `stats.within_range` began cutting intervals at their figure's range (2026-12-04)."""
    from downpour.studies.html import write_html

    test = {"reading": "inconclusive", "p": 1.0, "p_holm": 1.0}
    rows = [{"condition": f"c{i}", "params": {}, "n": 2, "figures": {"d_probe": [0.1, -0.2, 0.4]},
             "tests": {"d_probe": test, "d_auc": test}} for i in range(5)]
    result = {"study": "planted", "question": "q", "command": "c", "quick": True, "seeds": [0, 1], "verdict": "v",
              "cells": rows, "seconds": 1.0, "figures": []}
    page = write_html(result, tmp_path / "study.html").read_text()
    assert "its 10 comparisons at 95% would leave 0 out about 0.5 times (at least once in 40% of studies" in page
    assert "35 comparisons" not in page and "shown as computed" not in page
    assert "cut at what its figure can be" in page
    one = dict(result, cells=[dict(rows[0], tests={"d_probe": test})])     # ("its 1 comparisons")
    assert "its 1 comparison at 95% would" in write_html(one, tmp_path / "one.html").read_text()


def test_a_mean_with_no_spread_up_to_rounding_reads_the_same_in_every_seed():
    """The quick mechanisms study's pyramid3 lfw probe, 0.9 in both seeds, was stored as 0.8999999999999999
    [0.8999999999999989, 0.9000000000000009] and shown as "0.9 [0.9, 0.9]", as certain as a thousand seeds."""
    from downpour.studies.html import rows_table

    row = {"condition": "pyramid3", "params": {}, "n": 2,
           "figures": {"probe_lfw": [0.8999999999999999, 0.8999999999999989, 0.9000000000000009],
                       "probe_digits": [0.918, 0.886, 0.95]}}
    table = rows_table([row])
    assert "0.9 <small>(the same in every seed: a degenerate measure, drawn ◇ in its figure)</small>" in table
    assert "0.918 <small>[0.886, 0.95]</small>" in table


def test_a_reading_named_as_its_figure_has_a_column_of_its_own_name():
    """The mechanisms study keeps each paired difference's reading in `extra` under the figure's own name: the
    page's table had two columns headed d_probe_digits, one the interval and one "lower"."""
    from downpour.studies.html import rows_table

    row = {"condition": "glimpse", "params": {}, "n": 2, "figures": {"d_probe_digits": [-0.44, -0.567, -0.313]},
           "extra": {"d_probe_digits": "lower", "steps": 30}}
    table = rows_table([row])
    # (headed in words since 2026-12-07, each key its heading's title)
    assert table.count('<th><span title="d_probe_digits">Δ digits probe accuracy</span></th>') == 1
    assert '<th><span title="d_probe_digits reading">Δ digits probe accuracy reading</span></th>' in table
    assert "<th>steps</th>" in table


def test_a_verdicts_mean_with_no_spread_reads_the_same_in_every_seed():
    """The quick first-layer verdict said "learned 0% [0, 0]" on 2 seeds (and flat-skipping "skipped lfw 22% [22, 22]")
    where study.html's table says "(the same in every seed)": a zero-width t interval is no certainty."""
    from downpour.studies import words

    assert words.percent_ci([0.0, 0.0, 0.0]) == "0% (the same in every seed)"
    assert words.percent_ci([0.2171875, 0.21718749999999998, 0.2171875000000001]) == "22% (the same in every seed)"
    assert words.percent_ci([0.0975, 0.0969, 0.0982]) == "10% [10, 10]"        # a real spread, rounded, stays
    assert words.value_ci([180.6, 180.6, 180.6]) == "180.6 (the same in every seed)"
    assert words.value_ci([0.4529, 0.45, 0.46]) == "0.4529 [0.45, 0.46]"


def test_study_md_has_study_htmls_cells_in_markdown(tmp_path):
    """study.md (2026-12-06): the conditions table's cells are study.html's, a "|" in a name escaped so the row keeps
    its columns, a study's own HTML cell (staleness's 4 × 0.125) as text, asides in plain brackets."""
    from downpour.studies.markdown import write_markdown

    rows = [{"condition": "a|b", "params": {"lr": 0.5}, "n": 3, "figures": {"probe": [0.9, 0.8, 1.0],
             "d_probe": [0.0, -math.inf, math.inf]}, "missing": {"probe": 1}, "tests": {}}]
    result = {"study": "x", "question": "Q?", "quick": False, "seeds": [0, 1, 2], "seconds": 1.0, "cells_run": 3,
              "jobs": 1, "command": "downpour study x --out D", "verdict": "One.\n\nTwo.", "cells": rows,
              "figures": ["figures/f.png"]}
    page = write_markdown(result, tmp_path / "study.md", lambda row, key: "0.5 (4 &times; 0.125)" if key == "lr"
                          else None).read_text()
    assert "| a\\|b | 0.5 (4 × 0.125) | 3 | 0.9 [0.8, 1] (1 of 3 seeds left out) | 0 (no seed differed: " in page
    assert "> One.\n>\n> Two." in page and "![f](figures/f.png)" in page and "<small>" not in page


def test_study_md_comparisons_align_as_study_htmls(tmp_path):
    """study.md's comparisons table sets its text columns left as study.html does: "under Holm" ("holds", "a lead") is
    text (right-aligned as a number in study.md until 2026-12-06)."""
    from downpour.studies.html import tests_table
    from downpour.studies.markdown import write_markdown

    rows = [{"condition": "a", "params": {}, "n": 3, "figures": {}, "tests": {"probe": {"reading": "higher", "p": 0.01,
                                                                                       "p_holm": 0.02}}}]
    result = {"study": "x", "question": "Q?", "quick": False, "seeds": [0, 1, 2], "seconds": 1.0, "cells_run": 3,
              "jobs": 1, "command": "downpour study x", "verdict": "One.", "cells": rows, "figures": []}
    page = write_markdown(result, tmp_path / "study.md").read_text()
    assert ("| condition | against | comparison | reading | p | Holm p | under Holm |\n"
            "| --- | --- | --- | --- | ---: | ---: | --- |") in page
    assert "| a |  | probe accuracy | higher |" in page       # the verdict's words for the figure, not its key "probe"
    assert tests_table(rows).endswith("<td>0.01</td><td>0.02</td><td class=l>holds</td></tr></table>")
    assert "<td class=l>probe accuracy</td>" in tests_table(rows)
