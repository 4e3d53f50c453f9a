"""What each comparison a verdict reads is against: the comparisons table of study.html / study.md and Holm's
paragraph name it (studies/table.py, studies/stats.py)."""
from downpour.studies.base import Condition
from downpour.studies.compare import compare_rows
from downpour.studies import html
from downpour.studies.markdown import write_markdown
from downpour.studies.holm import family_paragraph, holm
from downpour.studies.stats import record_test
from downpour.studies.table import MARKDOWN, comparisons


def _templates_like():
    """Two arms, each with its face unit's gain from the faces (against its no-faces twin) and that gain compared with
    the reference arm's (d_face_owed_controls): templates' and architectures' "what the faces gave the face unit"
    twice per arm."""
    conditions = [Condition("untied", {"vs": ""}), Condition("tile2", {"vs": "untied"})]
    owed = {"untied": [0.01, 0.02, 0.00, 0.01], "tile2": [0.20, 0.25, 0.22, 0.21]}
    cells = {(c, s): {"face_owed_controls": v, "probe_digits": 0.9 + 0.01 * s} for c, vs in owed.items()
             for s, v in enumerate(vs)}
    rows = compare_rows(conditions, cells, [0, 1, 2, 3], {"face_owed_controls": 0.05, "probe_digits": 0.02})
    holm(rows)
    return rows


def test_one_figure_compared_two_ways_reads_as_two_comparisons_in_the_table():
    """The quick templates study's table said "tile2 | what the faces gave the face unit" on two lines, one against its
    no-faces twin (+0.009) and one against untied (+0.050): nothing on the page told them apart."""
    head, body = comparisons(_templates_like(), MARKDOWN)
    assert head[:3] == ["condition", "against", "comparison"]
    tile2 = [line[:3] for line in body if line[0] == "tile2"]
    assert ["tile2", "its no-faces twin", "what the faces gave the face unit"] in tile2
    assert ["tile2", "untied", "what the faces gave the face unit"] in tile2
    assert len(set(map(tuple, tile2))) == len(tile2)            # no two lines alike
    assert "<td class=l>untied</td>" in html.tests_table(_templates_like())      # a name: set as text


def test_holms_paragraph_names_what_each_reading_it_keeps_is_against():
    """Architectures' quick verdict listed "rbm: what the faces gave the face unit higher" twice among its leads."""
    said = family_paragraph(_templates_like())
    assert "tile2 against its no-faces twin: what the faces gave the face unit higher" in said
    assert "tile2 against untied: what the faces gave the face unit higher" in said


def test_a_correlations_reading_is_against_0_and_holms_paragraph_says_its_sign_alone():
    rows = [{"condition": "less/none", "params": {"vs": ""}}]
    record_test(rows[0], "hoyer_gap_rank_correlation", "lower", 0.001, correlation=True)
    holm(rows)
    assert comparisons(rows, MARKDOWN)[1][0][1] == "0 (its sign)"
    assert "less/none: rank correlation of Hoyer sparsity and the gap negative" in family_paragraph(rows)


def test_one_of_several_readings_kept_by_holm_holds_in_the_singular():
    """"1 of the 4 readings higher or lower hold": the quick costs study's Holm paragraph."""
    rows = [{"condition": c, "params": {}} for c in "abc"]
    for row, p in zip(rows, (0.001, 0.2, 0.3)):
        record_test(row, "d_probe", "higher", p, against="ref")
    holm(rows)
    assert "1 of the 3 readings higher or lower holds (family-wise 5%): a against ref: probe accuracy higher." in \
        family_paragraph(rows)


def test_a_study_json_written_before_against_still_renders_with_an_empty_against(tmp_path):
    """Cells cached and study.json files written before each test recorded "against" have none: the page still renders,
    the column empty, and Holm's paragraph names the condition alone."""
    old = {"reading": "higher", "p": 0.001, "p_holm": 0.002}
    rows = [{"condition": "a", "params": {"vs": "ref"}, "n": 3, "figures": {}, "tests": {"d_probe": old}}]
    result = {"study": "x", "question": "Q?", "quick": False, "seeds": [0, 1, 2], "seconds": 1.0, "cells_run": 3,
              "jobs": 1, "command": "downpour study x", "verdict": "One.", "cells": rows, "figures": []}
    assert "| a |  | probe accuracy | higher |" in write_markdown(result, tmp_path / "study.md").read_text()
    assert "<td class=l>a</td><td class=l></td><td class=l>probe accuracy</td>" in html.tests_table(rows)
    assert "holds (family-wise 5%): a: probe accuracy higher." in family_paragraph(rows)


def test_the_table_holms_paragraph_and_the_verdicts_lead_mark_read_each_comparison_alike():
    """The table's "under Holm" column and :func:`~downpour.studies.holm.lead` (each verdict's mark) decided the same
    thing by two copies of one rule: both ask :func:`~downpour.studies.holm.under_holm` now. Holm p 0.02 holds, 0.05
    (at the level) and NaN do not; a reading neither higher nor lower is neither."""
    from downpour.studies.holm import lead, under_holm

    tests = {"kept": ("higher", 0.02), "at_level": ("lower", 0.05), "nan": ("higher", float("nan")),
             "open": ("inconclusive", 0.001)}
    row = {"condition": "a", "tests": {n: {"reading": r, "p": p, "p_holm": p} for n, (r, p) in tests.items()}}
    column = {line[2]: line[-1] for line in comparisons([row], MARKDOWN)[1]}
    assert column == {"kept": "holds", "at level": "a lead", "nan": "a lead", "open": ""}
    assert [under_holm(row["tests"][n]) for n in tests] == ["holds", "a lead", "a lead", ""]
    assert [lead(row, n) for n in tests] == [False, True, True, False]
    said = family_paragraph([row])
    assert "holds (family-wise 5%): a: kept higher." in said
    assert "not findings: a: at level lower; a: nan higher" in said
