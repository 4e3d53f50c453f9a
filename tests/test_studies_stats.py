"""The studies' statistics: Wilson and paired intervals, which test a paired difference takes, Holm's
correction and its paragraph."""
import math

import numpy as np
import pytest
from scipy import stats

from downpour.studies.holm import family_paragraph, holm
from downpour.studies.stats import (effect_words, flips, paired_difference, paired_p, paired_proportions, paired_test,
                                    proportion_words, record_test, wilson)


def test_wilson_known_values():
    p, lo, hi = wilson(8, 10)
    assert p == 0.8 and lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 160)[2] < 0.03


def test_paired_proportions_need_flips():
    same = paired_proportions([True, False] * 10, [True, False] * 10)
    assert same[0] == 0 and same[1] < 0 < same[2]               # no flips is not a zero-width interval
    gain = paired_proportions([False] * 40, [True] * 30 + [False] * 10)
    assert gain[0] == 0.75 and gain[1] > 0.5
    assert flips([False, True, True], [True, True, False]) == {"gained": 1, "lost": 1, "mcnemar_p": 1.0}
    # 4 of 4 seeds gained: the adjusted Wald interval leaves out 0, McNemar's exact p is 0.125: not "higher"
    four = paired_proportions([False] * 4, [True] * 4)
    assert four[1] > 0 and effect_words(*four, 0.1) == "higher"
    assert proportion_words(*four, 0.1, flips([False] * 4, [True] * 4)["mcnemar_p"]) == "inconclusive"
    assert proportion_words(*gain, 0.1, flips([False] * 40, [True] * 30 + [False] * 10)["mcnemar_p"]) == "higher"


def test_paired_difference_and_words():
    d = paired_difference([1.0, 2.0, 3.0, 4.0], [1.5, 2.4, 3.6, 4.5])
    assert d[0] == pytest.approx(0.5) and d[1] > 0
    assert math.isnan(paired_difference([float("nan")], [1.0])[0])
    assert effect_words(0.5, 0.1, 0.9, 0.1) == "higher"
    assert effect_words(-0.5, -0.9, -0.1, 0.1) == "lower"
    assert effect_words(0.0, -0.05, 0.05, 0.1) == "no detectable effect"


def test_a_difference_with_no_spread_needs_the_sign_tests_seeds():
    # a discrete figure (images right of 30) that moved by the same amount in every seed: the t
    # interval has zero width, and two seeds read "higher"
    two = paired_difference([0.5, 0.6], [0.55, 0.65])
    assert two[0] == pytest.approx(0.05) and two[1] == -math.inf and two[2] == math.inf
    assert effect_words(*two, resolution=0.01) == "inconclusive"
    assert paired_difference([0.0] * 5, [1.0] * 5)[1] == -math.inf      # 2 * 0.5**5 = 0.0625
    assert paired_difference([0.0] * 6, [1.0] * 6) == (1.0, 1.0, 1.0)    # 2 * 0.5**6 < 0.05
    assert paired_difference([1.0, 2.0], [1.0, 2.0]) == (0.0, -math.inf, math.inf)   # nothing moved, on 2 seeds
    assert paired_difference([1.0] * 6, [1.0] * 6) == (0.0, 0.0, 0.0)                 # nothing moved, on 6
    assert paired_difference([1.0, 2.0, 3.0], [1.1, 2.0, 3.3])[1] > -math.inf
    assert effect_words(0.0, -0.3, 0.3, 0.1) == "inconclusive"


def test_a_discrete_difference_with_a_little_spread_needs_the_sign_tests_seeds_too():
    # controls passed of 4, four seeds moved +1, +1, +1, +2: the t interval [0.45, 2.05] read "higher"
    # where every sign test says p = 0.125
    four = paired_difference([0.0, 1.0, 2.0, 1.0], [1.0, 2.0, 3.0, 3.0])
    assert four[0] == pytest.approx(1.25) and four == (four[0], -math.inf, math.inf)
    assert effect_words(*four, resolution=0.1) == "inconclusive"
    six = paired_difference([0.0, 1.0, 2.0, 1.0, 0.0, 1.0], [1.0, 2.0, 3.0, 3.0, 1.0, 2.0])
    assert six[1] > 0 and effect_words(*six, resolution=0.1) == "higher"           # 2 * 0.5**6 < 0.05
    assert paired_difference([0.1, 0.2, 0.3, 0.4], [0.5, 0.62, 0.69, 0.81])[1] > 0    # not whole numbers: t


def test_a_difference_with_no_finite_pair_warns_nothing():
    """Every pair non-finite (a condition diverged in every seed) is not measured, quietly: the discrete-figure check
    took the mean of no differences and numpy printed "Mean of empty slice" under the study's output."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = paired_difference([math.nan] * 3, [1.0, 2.0, 3.0], discrete=True)
    assert all(math.isnan(x) for x in d)


def test_a_fraction_of_a_count_takes_the_whole_numbers_rule():
    """An edge fraction (of 16 filters) moving +1/16, +1/16, +1/16, +2/16 over 4 seeds had a t interval: by hand,
    mean 5/64, sd 1/32, t = 5 on 3 degrees of freedom, p = 0.015, [0.028, 0.128]: "higher", where the sign test of
    4 seeds gives 0.125."""
    before, after = [0.25, 0.5, 0.5, 0.25], [0.3125, 0.5625, 0.5625, 0.375]
    row = {"condition": "gabor"}
    d, reading = paired_test(row, "delta_edge_fraction", before, after, 0.01)
    assert d == [pytest.approx(5 / 64), -math.inf, math.inf] and reading == "inconclusive"
    assert row["tests"]["delta_edge_fraction"]["p"] == 1.0
    d, reading = paired_test(row, "d_edge_fraction", before, after, 0.01)          # compare.py's name for it
    assert d[1] == -math.inf and reading == "inconclusive"
    # a figure not named discrete keeps Student's t (the same numbers as a probe accuracy)
    d, reading = paired_test(row, "d_probe_digits", before, after, 0.01)
    assert d[1] == pytest.approx(5 / 64 - stats.t.ppf(0.975, 3) / 64) and reading == "higher"
    assert row["tests"]["d_probe_digits"]["p"] == pytest.approx(stats.ttest_1samp([1, 1, 1, 2], 0).pvalue)


def test_a_seed_that_did_not_move_tells_the_sign_test_nothing():
    """Whole numbers 0, +1, +1, +1, +1, +2 over 6 seeds had a t interval (by hand: mean 1, sd sqrt(0.4), t = 3.87 on 5
    degrees of freedom, p = 0.012): "higher", where the sign test has 5 nonzero differences, p = 2 * 0.5**5 = 0.0625."""
    before, after = [0.0] * 6, [0.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    assert paired_difference(before, after) == (1.0, -math.inf, math.inf)
    assert paired_p(before, after) == 1.0
    seven = paired_difference([0.0] * 7, [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0])     # 6 moved: t again
    assert seven[1] > 0 and paired_p([0.0] * 7, [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]) < 0.05


def test_a_fraction_whose_moves_cancel_keeps_students_t_whatever_the_rounding():
    """One filter more in one seed and one fewer in another, the other 4 seeds still: the mean is 0 and Student's t
    (by hand: sd sqrt(2 s**2 / 5), s one filter's share, half-width 2.571 sd / sqrt(6) = 1.05 s) reads "no detectable
    effect" within 0.10. Of 1,352 filters the differences' float mean was -7e-20, not 0, and the pattern read
    "inconclusive" (the under-6-seed rule's unbounded interval) where the same moves of 16 filters did not."""
    for n, (k, j) in ((16, (3, 7)), (1352, (3, 7))):
        before = [k / n, j / n, 0.25, 0.25, 0.5, 0.5]
        after = [(k + 1) / n, (j - 1) / n, 0.25, 0.25, 0.5, 0.5]
        m, low, high = paired_difference(before, after, discrete=True)
        assert high == pytest.approx(stats.t.ppf(0.975, 5) * math.sqrt(2 / 5) / n / math.sqrt(6)), n
        assert effect_words(m, low, high, resolution=0.10) == "no detectable effect"
        assert paired_p(before, after, discrete=True) == pytest.approx(1.0)


def test_each_comparisons_p_is_the_test_its_interval_inverts():
    rng = np.random.default_rng(0)
    for n in (3, 6, 12):
        for shift in (0.0, 0.3, 0.6, 1.0):
            a = rng.normal(size=n)
            b = a + shift + rng.normal(size=n)
            _, low, high = paired_difference(a, b)
            p = paired_p(a, b)
            assert p == pytest.approx(stats.ttest_rel(b, a).pvalue)
            assert (p < 0.05) == (low > 0 or high < 0)
    # the special cases of paired_difference: no spread (the sign test from 6 seeds), whole numbers
    # with a little spread under 6 seeds, nothing moved, one pair
    assert paired_p([0.0] * 6, [1.0] * 6) == pytest.approx(2 * 0.5 ** 6)
    assert paired_p([0.0] * 5, [1.0] * 5) == 1.0
    assert paired_p([0.0, 1.0, 2.0, 1.0], [1.0, 2.0, 3.0, 3.0]) == 1.0
    assert paired_p([1.0, 2.0], [1.0, 2.0]) == 1.0 and paired_p([1.0], [3.0]) == 1.0
    assert math.isnan(paired_p([math.nan, 1.0], [2.0, math.nan]))      # not measured: not in Holm's family
    assert paired_p([1.0, math.nan, 2.0, 3.0], [2.0, 5.0, 3.1, 3.9]) == pytest.approx(
        stats.ttest_rel([2.0, 3.1, 3.9], [1.0, 2.0, 3.0]).pvalue)


def test_holm_adjusts_the_whole_study_and_says_which_readings_hold():
    rows = [{"condition": "a", "tests": {}}, {"condition": "b", "tests": {}}]
    record_test(rows[0], "d_probe", "higher", 0.01)
    record_test(rows[0], "d_auc", "lower", 0.04)
    record_test(rows[1], "d_probe", "higher", 0.03)
    record_test(rows[1], "d_auc", "inconclusive", 0.5)
    record_test(rows[1], "d_edge", "inconclusive", math.nan)       # not measured: not in the family
    assert holm(rows) == 4
    # by hand: sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 = 0.04, 0.09, 0.08, 0.5, each at least the one before
    got = [rows[0]["tests"]["d_probe"], rows[1]["tests"]["d_probe"], rows[0]["tests"]["d_auc"], rows[1]["tests"]["d_auc"]]
    assert [t["p_holm"] for t in got] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert math.isnan(rows[1]["tests"]["d_edge"]["p_holm"])
    said = family_paragraph(rows)
    # (what the count is over: a study's own count in an earlier paragraph, over one kind of comparison, read as
    # contradicting it: "Over 2 comparisons ..." then "Holm's correction over the 9 paired comparisons")
    assert said.startswith("Holm's correction over all 4 paired comparisons this verdict reads (every figure it "
                           "compares between a condition and its reference, in all its paragraphs): 1 of the 3 readings")
    assert "holds (family-wise 5%): a: probe accuracy higher." in said     # (the key was printed: "a: d_probe higher")
    assert "These are leads to recheck with more seeds, not findings: a: auc lower; b: probe accuracy higher." in said
    d, reading = paired_test(rows[1], "d_new", [0.0] * 6, [1.0] * 6, 0.1)
    assert (d, reading) == ([1.0, 1.0, 1.0], "higher") and rows[1]["tests"]["d_new"]["p"] == pytest.approx(0.03125)
    assert family_paragraph([{"condition": "a"}]) == ""
    rows = [{"condition": "a", "tests": {"d": {"reading": "inconclusive", "p": 0.2}}}]
    holm(rows)
    assert family_paragraph(rows).endswith("none reads higher or lower, so there is nothing for it to take back.")


def test_holms_paragraph_says_which_of_its_family_are_correlations_and_reads_their_sign():
    """The costs study's rank correlations joined the family (2026-12-05), and the paragraph still called every
    member "a figure it compares between a condition and its reference" and listed a lead as "higher"."""
    rows = [{"condition": "less/none", "tests": {}}, {"condition": "less/l1", "tests": {}}]
    record_test(rows[0], "rho", "higher", 0.012, correlation=True)
    record_test(rows[1], "d_gap", "lower", 0.001)
    record_test(rows[1], "d_probe", "inconclusive", 0.4)
    holm(rows)          # by hand: 0.001 x 3 = 0.003 holds; 0.012 x 2 = 0.024 holds
    said = family_paragraph(rows)
    assert said.startswith("Holm's correction over all 3 readings this verdict reads (2 figures compared between a "
                           "condition and its reference and 1 rank correlation, each read for its sign, in all its "
                           "paragraphs): 2 of the 2 readings higher or lower hold")
    assert "less/none: rho positive" in said and "less/l1: over-fitting gap lower" in said
    record_test(rows[0], "rho", "lower", 0.2, correlation=True)
    holm(rows)
    assert family_paragraph(rows).endswith("This is a lead to recheck with more seeds, not a finding: less/none: rho "
                                           "negative.")
    alone = [{"condition": "less/none", "tests": {}}]
    record_test(alone[0], "rho", "higher", 0.01, correlation=True)
    holm(alone)
    assert family_paragraph(alone).startswith("Holm's correction over the 1 reading this verdict reads (the rank "
                                              "correlation it reads for its sign, in all its paragraphs)")


def test_a_reading_holms_correction_does_not_keep_is_called_a_lead_where_the_verdict_says_it():
    """The mechanisms and architectures verdicts said "higher for pooled" in their summary lines, and Holm's
    paragraph below called the same reading a lead."""
    from downpour.studies.compare import difference_sentence, tally
    rows = []
    for name, p in (("kept", 0.001), ("lead", 0.04)):
        row = {"condition": name, "figures": {"d_probe": [0.1, 0.02, 0.18]}, "extra": {"d_probe": "higher"}}
        record_test(row, "d_probe", "higher", p)
        rows.append(row)
    holm(rows)                                                     # 0.002 and 0.04 * 1: both kept
    assert "lead" not in difference_sentence(rows[1], "probe", "probe accuracy")
    record_test(rows[0], "d_other", "inconclusive", 0.9)
    record_test(rows[1], "d_other", "inconclusive", 0.02)
    holm(rows)                                                     # 4 tests: 0.004, 0.06, 0.08, 0.9
    assert difference_sentence(rows[0], "probe", "probe accuracy").endswith(", higher")
    assert difference_sentence(rows[1], "probe", "probe accuracy").endswith(", higher (a lead: not after Holm's correction)")
    assert tally(rows, "probe")["higher"] == ["kept", "lead (a lead)"]


def test_a_percent_interval_never_reads_minus_zero():
    from downpour.studies.words import percent_ci

    assert percent_ci((0.08, -0.003, 0.16)) == "8% [0, 16]"          # it read "8% [-0, 16]"
    assert percent_ci((0.5, 0.25, 0.75)) == "50% [25, 75]" and percent_ci((0.5, float("-inf"), float("inf"))) == "50%"


def test_holms_paragraph_says_a_count_of_one_or_none_in_english():
    """"over all 0 paired comparisons" and "1 of the 1 readings higher or lower hold": a family of none, a single
    reading."""
    one = [{"condition": "a", "tests": {"d": {"reading": "higher", "p": 0.01}}}]
    holm(one)
    assert family_paragraph(one).startswith("Holm's correction over the 1 paired comparison this verdict reads (")
    assert family_paragraph(one).endswith("): the one reading higher or lower holds (family-wise 5%): a: d higher.")
    lead = [{"condition": "a", "tests": {"d": {"reading": "lower", "p": 0.04}, "e": {"reading": "inconclusive", "p": 0.5}}}]
    holm(lead)
    assert (": the one reading higher or lower does not hold (family-wise 5%). This is a lead to recheck with more "
            "seeds, not a finding: a: d lower.") in family_paragraph(lead)
    none = [{"condition": "a", "tests": {"d": {"reading": "not measured", "p": math.nan}}}]
    holm(none)
    assert family_paragraph(none).startswith("Holm's correction over the 0 paired comparisons this verdict reads (")
