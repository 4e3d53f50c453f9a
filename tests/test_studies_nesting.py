"""No parenthesis inside another in the sentences the studies share: the checker itself (tests/nesting.py, which
every quick study's test runs over its verdict and page: study_quick.check_written), Holm's count, what the faces
gave and the page's setting."""
import math

from downpour.studies.compare import owed_paragraph
from downpour.studies.headline import headline
from downpour.studies.holm import holm
from downpour.studies.table import setting
from nesting import nested


def test_the_checker_finds_a_parenthesis_inside_another():
    assert nested("a (Δ -0.44 (no interval: too few seeds to tell)) b") == [
        "a (Δ -0.44 (no interval: too few seeds to tell)) b"]
    assert nested("a (Δ -0.44 [-0.5, -0.3], lower) (without a face: 0.7 [0.6, 0.8])") == []
    assert nested("a (b\n\n(c) d") == []                 # (a paragraph left open does not reach the next)


def test_holms_count_says_a_difference_with_no_interval_in_one_parenthesis():
    rows = [{"condition": "b", "figures": {"delta_gap": [-0.44, -math.inf, math.inf]},
             "tests": {"delta_gap": {"reading": "lower", "p": 0.04, "against": "a"}}}]
    holm(rows)
    assert headline(rows).endswith("b against a: over-fitting gap lower (Δ -0.44, no interval: too few seeds to tell), "
                                   "holds (Holm p 0.04).")


def test_what_the_faces_gave_marks_a_lead_inside_no_parenthesis():
    """"higher (a lead: not after Holm's correction) (without a face: ...)" read as one parenthesis inside another."""
    def row(name, owed, p):
        return {"condition": name, "figures": {"face_owed_controls": owed, "face_auc_controls": [0.8] * 3,
                                               "face_auc_controls_no_faces": [0.7, 0.65, 0.75]},
                "tests": {"face_owed_controls": {"reading": "higher", "p": p}}}

    rows = [row("a", [0.10, 0.04, 0.16], 0.04), row("b", [0.10, 0.04, 0.16], 0.04),
            row("c", [0.10, -math.inf, math.inf], math.nan)]
    holm(rows)
    text = owed_paragraph(rows)
    assert "a +0.100 [+0.040, +0.160], higher, a lead (without a face: 0.700 [0.650, 0.750])" in text
    assert "c +0.100 (no interval: too few seeds to tell)" in text
    assert nested(text) == [] and "(a lead: not after Holm's correction) (" not in text


def test_a_quick_pages_setting_holds_the_helps_time_in_no_parenthesis():
    """"quick setting (a smoke test: ...; ... about 6 min (17 min beside other jobs) on 2 cores)"."""
    said = setting({"quick": True, "study": "templates"})
    assert "about 6 min (17 min beside other jobs) on 2 cores" in said and nested(said) == []
