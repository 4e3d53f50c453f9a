"""report_guide: what a reader new to downpour gets around the report's numbers — a line for each
method the face tables name, the findings first with links to their sections, and pointers to docs that exist."""
from __future__ import annotations

import re

import numpy as np

from downpour.analysis import baselines
from downpour.analysis.face_verdict import GRADIENT, LEARNED, NO_FACES, PIXEL, PROBE, TWIN
from downpour.analysis.report_guide import (CONCEPT, DOCS, FACE_TEST, READING, contents, edge_caveat, in_short,
                                            method_name, methods_glossary, two_learned_units)
from test_docs_links import ROOT, _anchors

# the best-neuron table's own labels (selectivity.py), beside the face test's (face_verdict.py, baselines.py)
BEST_NEURON = ["chance (majority class)", "linear probe on raw pixels (logistic regression)",
               "best of 2000 random linear filters"]
PAPER = "learned unit, paper style (unit and threshold chosen by accuracy on the same images it is scored on)"


def _glossary(names: list[str], paper: str = PAPER) -> dict[str, str]:
    html = methods_glossary({"face_neuron": {"rows": [{"method": n} for n in names], "paper_style": {"method": paper}}})
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", html))


def test_every_method_the_face_tables_can_name_is_said_what_it_is():
    """"random weights, same architecture" and "gradient energy" each get a line, not bare labels a student meets."""
    statistics = list(baselines.statistics(np.random.default_rng(0).random((4, 1, 25, 25))))
    names = [LEARNED, TWIN, NO_FACES, PIXEL, GRADIENT, PROBE, *statistics, *BEST_NEURON]
    said = _glossary(names)
    assert [n for n in [*names, PAPER] if not said.get(method_name(n))] == []
    assert "never trained" in said[TWIN] and "data.train_faces = 0" in said[NO_FACES]
    assert "same images" not in said[LEARNED] and "very images it is scored on" in said[PAPER]


def test_logistic_regression_is_named_one_way_in_both_tables_and_the_glossary():
    """The accuracy table and the face test name the raw-pixel probe alike (not "linear probe on raw pixels (logistic
    regression)" in one, "logistic regression on raw pixels" in the other); analysis.json keeps the row's own name,
    which over_splits is keyed by."""
    from downpour.analysis.report import _face_neuron

    old = BEST_NEURON[1]
    fn = {"rows": [{"method": old, "test_accuracy": 0.9}], "over_splits": [{"method": old, "mean": 0.8, "std": 0.01}],
          "paper_style": {"method": PAPER, "unit": 1, "test_accuracy": 0.5}, "positive_class": "face",
          "dataset": "lfw", "split": {"selection": 10, "test": 10, "seed": 0, "positives_in_test": 5}}
    html = _face_neuron({"layer": "l1", "face_neuron": fn})
    assert f"<td>{PROBE}</td>" in html and old not in html
    assert "80.0% ± 1.0%" in html                   # its over-splits summary still found by the stored name
    assert list(_glossary([old, PROBE])) == [PROBE, PAPER]


def test_a_method_without_a_line_is_left_out_not_guessed():
    assert _glossary(["some new baseline"], paper="another") == {}
    assert methods_glossary({}) == ""


def test_the_findings_come_first_with_links_to_their_sections():
    a = {"filters": {"edge_fraction": 0.531, "count": 32},
         "face_neuron": {"controls_verdict": {"sentences": ["On 1 of 4 controls <it> meets the criterion.", "more"]}}}
    html = in_short(a, "Controls for cats & dogs")
    assert '<a href="#filters">First-layer filters</a>: 53% edge-like.' in html
    assert ('<a href="#face-test">Controls for cats &amp; dogs</a>: On 1 of 4 controls &lt;it&gt; meets the '
            "criterion.</li>") in html and "more" not in html
    assert in_short({"filters": {"edge_fraction": None}}, "x") == ""
    # the summary leans on "the criterion", which the page would otherwise define only half-way down (a new user's read)
    a["face_neuron"]["controls_verdict"]["criterion"] = "AUC above <the twin> interval"
    assert "<li>The criterion, on each control: the learned unit's AUC above &lt;the twin&gt; interval.</li>" in (
        in_short(a, "x"))


def test_the_contents_link_every_section_and_name_doc_headings_that_exist():
    body = '<h2 id="training">Training curves</h2><p>..</p><h2 id="face-test">The face test</h2>'
    nav = contents(body)
    assert re.findall(r'href="#([^"]+)"', nav) == ["training", "face-test"]
    anchors = _anchors(ROOT / DOCS)
    assert READING[1] in anchors and FACE_TEST[1] in anchors and CONCEPT[1] in anchors
    text = (ROOT / DOCS).read_text()
    assert all(f"## {heading}\n" in text for heading, _ in (READING, FACE_TEST, CONCEPT))


def test_two_different_learned_units_are_said_to_be_chosen_on_different_images():
    """The main job's best-neuron table named unit 482 and the face test and pictures unit 452, with no word why."""
    fn = {"rows": [{"method": "learned unit", "unit": 482}], "split": {"selection": 30},
          "pictured": {"unit": 452, "chosen_by": "the face test (its learned unit)"},
          "controls_setup": {"selection": "the 140 images of lfw's training part (70 faces), once"}}
    note = two_learned_units({"face_neuron": fn})
    assert "learned unit (482) is not the face test's below (452" in note
    assert "selection split of 30 images, the face test on the 140 images of lfw&#x27;s training part (70 faces):" in note
    same = {**fn, "pictured": {**fn["pictured"], "unit": 482}}
    by_table = {**fn, "pictured": {"unit": 452, "chosen_by": "the best single neuron of the first split"}}
    assert two_learned_units({"face_neuron": same}) == two_learned_units({"face_neuron": by_table}) == ""


def test_the_edge_share_first_on_the_page_carries_the_filter_sections_warnings():
    """rbm-digits after 30 steps: "100% edge-like" opens the page, and the filters section says they are copies of one
    filter, all of one orientation: the opening line says so too."""
    rbm = {"count": 100, "edge_fraction": 1.0, "edge_distinct_fraction": 0.01, "edge_mean_abs_cosine": 0.92,
           "edge_orientation_agreement": 1.0}
    said = in_short({"filters": rbm}, "x")
    assert "100% edge-like (but most of them copies of a few and all of one orientation: not a bank of edge" in said
    bank = {**rbm, "edge_fraction": 0.53, "edge_distinct_fraction": 1.0, "edge_orientation_agreement": 0.1}
    assert ": 53% edge-like.</li>" in in_short({"filters": bank}, "x")


def test_analyzes_headline_says_the_same_caveat(tmp_path):
    import json

    from downpour.cli_analyze import headline

    rbm = {"count": 100, "edge_fraction": 1.0, "edge_distinct_fraction": 0.01, "edge_mean_abs_cosine": 0.92,
           "edge_orientation_agreement": 1.0}
    (tmp_path / "analysis.json").write_text(json.dumps({"filters": rbm}))
    assert headline(tmp_path) == ("downpour: first-layer filters edge-like: 100% (but most of them copies of a few and all "
                                  "of one orientation: not a bank of edge detectors) (analysis.json filters.edge_fraction)\n")
    # its interval, as the report's filters section says it (filters.edge_fraction_ci)
    (tmp_path / "analysis.json").write_text(json.dumps({"filters": {**rbm, "edge_fraction_ci": [0.93, 1.0]}}))
    assert headline(tmp_path).startswith("downpour: first-layer filters edge-like: 100%, 95% interval 93%–100% (but ")
    assert headline(tmp_path).endswith(" (analysis.json filters.edge_fraction and edge_fraction_ci)\n")
    bank = {"count": 8, "edge_fraction": 0.53, "edge_fraction_ci": [0.31, 0.72]}
    assert ": 53% edge-like, 95% interval 31%–72%.</li>" in in_short({"filters": bank}, "x")


def test_a_tables_id_holds_no_whitespace():
    """A probe on a folder with a space in its name makes an id without whitespace (not id="probe-table-/data/my
    cats")."""
    from downpour.analysis.report_parts import table

    assert table([[1]], ["a"], "probe-table-/data/my cats & dogs").startswith(
        '<table id="probe-table-/data/my-cats-&amp;-dogs">')


def _verdict(passes: list[bool]) -> dict:
    per = [{"negatives": f"set{i}", "level": "low-level matched", "passes": p} for i, p in enumerate(passes)]
    return {"per_negatives": [{"negatives": "lfw non-faces", "level": "natural", "passes": True}, *per],
            "passes_low_level": bool(per) and all(passes), "sentences": ["On 1 of 4 low-level-matched controls ..."]}


def test_the_opening_says_plainly_whether_the_face_test_passed():
    """The main job's unit meets the criterion on 1 of 4 controls, and the opening says plainly that this is a fail:
    "On 1 of 4 low-level-matched controls the learned unit meets the criterion (upside-down faces), which compares
    point AUCs; ..." alone gives no word of it."""
    failed = in_short({"face_neuron": {"controls_verdict": _verdict([False, True, False, False])}}, "The face test")
    assert ('The face test</a>: Not passed (passing needs the criterion met on every low-level-matched control). '
            "On 1 of 4 low-level-matched controls ...</li>") in failed
    passed = in_short({"face_neuron": {"controls_verdict": _verdict([True] * 4)}}, "The face test")
    assert "</a>: Passed (the criterion is met on every low-level-matched control). On 1" in passed
    unrun = {"sentences": ["No controls: the face test needs analysis.dataset = lfw"], "passes_low_level": None}
    assert "</a>: No controls:" in in_short({"face_neuron": {"controls_verdict": unrun}}, "The face test")


def test_analyzes_headline_says_whether_the_face_test_passed(tmp_path):
    import json

    from downpour.cli_analyze import headline

    (tmp_path / "analysis.json").write_text(json.dumps({"face_neuron": {"controls_verdict": _verdict([False, True])}}))
    assert headline(tmp_path) == ("downpour: face test: Not passed (passing needs the criterion met on every "
                                  "low-level-matched control). On 1 of 4 low-level-matched controls ...\n")


def test_a_designed_banks_copies_are_not_called_a_collapse_in_the_opening():
    """The copies caveat reads the same measured rule as the filters section's collapse note (fewer than half the
    edge-like filters distinct, in a learned layer): a frozen Gabor bank repeated at every position is no collapse."""
    copied = {"count": 100, "edge_fraction": 1.0, "edge_distinct_fraction": 0.3, "edge_mean_abs_cosine": 0.5,
              "edge_orientation_agreement": 0.1}
    assert edge_caveat(copied) == " (but most of them copies of a few: not a bank of edge detectors)"
    assert edge_caveat({**copied, "first_layer": "gabor"}) == edge_caveat({**copied, "edge_distinct_fraction": 0.5}) == ""
