"""The studies' rules for a paired difference that the sign test stands in for (downpour/studies/stats.py), and how a
verdict says them (words.py): seeds that all agree, and discrete figures once enough seeds moved."""
import math

import pytest
from scipy import stats

from downpour.studies import words
from downpour.studies.stats import SIGN_TEST_N, effect_words, paired_difference, paired_p, paired_test


def test_two_seeds_on_which_the_arms_did_not_differ_do_not_read_no_detectable_effect():
    """The quick setting's 2 seeds, each the same in both arms (a probe right on the same 27 of 30 images): the
    difference [0, 0] read "no detectable effect", as sure as a thousand seeds. Two seeds agreeing say nothing a
    sign test could: below 6 seeds the interval is unbounded, "inconclusive", and the words say no seed differed."""
    row = {"condition": "b"}
    d, reading = paired_test(row, "d_probe_digits", [0.9, 0.8], [0.9, 0.8], resolution=0.05)
    assert d == [0.0, -math.inf, math.inf] and reading == "inconclusive"
    assert row["tests"]["d_probe_digits"] == {"reading": "inconclusive", "p": 1.0}
    assert words.signed(d) == "0.000 (no seed differed: too few seeds to tell)"
    assert words.points(d, 1, " points") == "0.0 points (no seed differed: too few seeds to tell)"
    # one seed short of the sign test, still unbounded; from 6 seeds on, the sign test's interval of the median: 0
    assert paired_difference([0.5] * (SIGN_TEST_N - 1), [0.5] * (SIGN_TEST_N - 1))[1] == -math.inf
    six = paired_difference([0.5] * SIGN_TEST_N, [0.5] * SIGN_TEST_N)
    assert six == (0.0, 0.0, 0.0) and effect_words(*six, resolution=0.05) == "no detectable effect"
    assert words.signed(six) == "0.000 [0.000, 0.000]"
    # a difference of 0 with no interval for another reason keeps its own words (costs' ρ of the means: nan ends)
    assert words.signed([0.0, math.nan, math.nan]) == "0.000 (no interval)"


def test_from_six_seeds_that_moved_a_discrete_figure_takes_students_t_whatever_its_signs():
    """The documented rule (docs/studies.md, Intervals): the sign test stands in only while fewer than 6 differences
    are nonzero; from 6 on, Student's t decides, even where the signs disagree and a sign test would not tell
    (+5, +5, +5, +5, +5, -1: t's p = 0.010, the sign test's 1 of 6 p = 0.22). Pinned so that a change of the rule
    is a decision, not an accident."""
    before, after = [0.0] * 6, [5.0, 5.0, 5.0, 5.0, 5.0, -1.0]
    m, low, high = paired_difference(before, after)
    t = stats.ttest_1samp([5, 5, 5, 5, 5, -1], 0.0)
    assert m == 4.0 and low == pytest.approx(4.0 - stats.t.ppf(0.975, 5) * stats.tstd([5, 5, 5, 5, 5, -1]) / math.sqrt(6))
    assert effect_words(m, low, high, resolution=0.1) == "higher"
    assert paired_p(before, after) == pytest.approx(t.pvalue) and t.pvalue < 0.05
    assert stats.binomtest(1, 6, 0.5).pvalue > 0.05                      # what the sign test alone would say
    # five of them, the sixth seed still: unbounded (the sign test of 5 cannot tell), p 1
    five = paired_difference(before, [5.0, 5.0, 5.0, 5.0, -1.0, 0.0])
    assert five[1:] == (-math.inf, math.inf) and paired_p(before, [5.0, 5.0, 5.0, 5.0, -1.0, 0.0]) == 1.0
    # a figure neither named discrete nor in whole numbers keeps Student's t on any number of seeds
    assert math.isfinite(paired_difference([0.1, 0.2], [0.35, 0.41])[1])


def test_a_verdicts_sentence_says_the_arms_did_not_differ_on_two_quick_seeds():
    """The sentence a study's verdict prints (compare.difference_sentence, Q2, Q4 and Q7) for an arm equal to its
    reference on each of 2 seeds: it read "digits probe 0.000 [0.000, 0.000], no detectable effect"."""
    from downpour.studies import study_class
    from downpour.studies.base import Condition
    from downpour.studies.compare import difference_sentence

    conds = [Condition("untied", {"vs": ""}), Condition("same", {"vs": "untied"})]
    cells = {(name, s): {"probe_digits": 0.8 + 0.1 * s, "face_auc_controls": 0.6, "face_auc_lfw": 0.7,
                         "edge_fraction": 0.3, "seconds_per_step": 0.05} for name in ("untied", "same") for s in (0, 1)}
    row = {r["condition"]: r for r in study_class("templates")(quick=True).summarise(conds, cells, [0, 1])}["same"]
    said = difference_sentence(row, "probe_digits", "digits probe")
    assert said == "digits probe 0.000 (no seed differed: too few seeds to tell), inconclusive", said


def test_a_difference_near_zero_is_kept_off_zero_as_the_run_reports_are():
    """The studies' words take up to 2 more decimals to keep a Δ off zero, as the run report's paired differences do
    (auc_words.off_zero): a Δ of 0.0002 would read "0.000 [+0.000, +0.001]"."""
    assert words.signed([0.0002, 0.0001, 0.0009]) == "+0.0002 [+0.0001, +0.001]"
    assert words.points([0.0003, -0.01, 0.02], 1, " points") == "0.0 points [-1.0, +2.0]"    # (0 inside: sign is noise)
    assert words.signed([0.031, -0.01, 0.07]) == "+0.031 [-0.010, +0.070]"      # (not near zero: as it is)


def test_study_html_says_an_unbounded_interval_in_the_verdicts_words():
    """study.html's table says a difference 0 in every one of 2 seeds, and a figure of one seed, as the verdict does
    (not "0 [−∞, ∞]" and "0.3 [−∞, ∞]")."""
    from downpour.studies.html import rows_table

    inf = math.inf
    row = {"condition": "a", "params": {}, "n": 2, "figures": {"d_x": [0.0, -inf, inf], "y": [0.3, -inf, inf]}}
    table = rows_table([row])
    assert "∞" not in table
    assert "0 <small>(no seed differed: too few seeds to tell)</small>" in table
    assert "0.3 <small>(no interval)</small>" in table


def test_a_difference_whose_interval_holds_zero_keeps_its_figures_decimals():
    """The costs verdict's probe must not read "Δ -0.03 points [-0.8, +0.8]" (docs/studies.md quotes "0.0 points"): a
    sign and two decimals its interval does not support. Only a difference whose interval is
    on one side of 0 is kept off zero, in the studies' words and the run report's paired differences alike."""
    from downpour.analysis.auc_words import paired_words

    assert words.points([-0.0003, -0.008, 0.008], 1, " points") == "0.0 points [-0.8, +0.8]"
    assert words.signed([0.0004, 0.0001, 0.0009]) == "+0.0004 [+0.0001, +0.001]"
    said = paired_words({"twin": {"delta": 0.003, "ci": [-0.05, 0.06]}}, ("twin",))
    assert "twin's +0.00 [-0.05, +0.06]" in said, said


def test_a_ratio_takes_its_interval_on_logs_and_reads_against_x1():
    """Gated / ungated times per seed: their plain mean with Student's t ran below 0 and was cut there ("x8.93
    [0, 98.3]"), and x2 and x0.5 averaged to x1.25. On logs: the geometric mean, an interval a ratio's own."""
    from downpour.studies.stats import paired_ratio, ratio_words

    m, low, high = paired_ratio([2.0, 0.5])
    assert m == pytest.approx(1.0) and 0 < low < 1 < high < math.inf          # (plain mean 1.25, [-8.3, 10.8])
    assert ratio_words((m, low, high), 0.1) == "inconclusive"
    assert ratio_words(paired_ratio([1.0, 1.005]), 0.1) == "no detectable effect"    # within x0.9-x1.1
    assert ratio_words((1.0, 0.905, 1.05), 0.1) == "no detectable effect"   # x0.9 is the low end, not x1/1.1
    assert ratio_words((1.0, 0.85, 1.05), 0.1) == ratio_words((1.5, 0.0, math.inf), 0.1) == "inconclusive"
    faster = paired_ratio([0.5, 0.52, 0.48, 0.51, 0.49, 0.5])
    assert faster[2] < 1 and ratio_words(faster, 0.1) == "lower"
    assert paired_ratio([3.0, 3.0]) == (pytest.approx(3.0), 0.0, math.inf)   # no spread, 2 seeds: unbounded
    assert words.ratio(paired_ratio([3.0, 3.0])) == "x3.00 (no interval: too few seeds to tell)"
    assert words.ratio([2.21, 1.95, 2.5]) == "x2.21 [1.95, 2.5]"
    assert paired_ratio([2.0, 0.0, math.nan, 8.0])[0] == pytest.approx(4.0)  # a ratio not above 0 is left out


def test_the_interval_note_says_how_a_time_ratios_interval_is_made_in_the_page_and_the_docs_alike():
    """Every study page's "Intervals are 95%: ..." note names the time ratios' interval too (the flat-skipping study's:
    Student's t on the seeds' log ratios, stats.paired_ratio), not only Wilson, Bonett & Price and Student's t, and
    docs/studies.md says it in the same words. One text, table.INTERVAL_KINDS: the page opens its note with it, the docs
    quote it."""
    from pathlib import Path

    from downpour.studies.table import INTERVAL_KINDS, intervals_note

    assert "ratio" in INTERVAL_KINDS and "logs" in INTERVAL_KINDS
    assert intervals_note([]).startswith(INTERVAL_KINDS + " ")
    docs = (Path(__file__).resolve().parents[1] / "docs" / "studies.md").read_text()
    bullet = docs.split("- **Intervals.**", 1)[1].split("\n- **", 1)[0]
    assert f'"{INTERVAL_KINDS}"' in " ".join(bullet.split())
