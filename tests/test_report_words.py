"""What the report's sections say of an analysis given them: the first layer's filters (copies, one orientation, a
designed or Gabor-started layer, an untied layer's note), a layer not measured, the data notes, the best-neuron
table and the top images."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings and analyses run in this process)


def test_the_report_says_when_the_edge_like_filters_are_copies_of_a_few():
    from downpour.analysis.report import _filters

    base = {"available": True, "count": 100, "shape": [1, 8, 8], "edge_fraction": 1.0, "edge_fraction_noise": 0.0,
            "coherence_mean": 0.78, "coherence_noise": 0.16, "criteria": {}}
    collapsed = _filters({**base, "edge_distinct_fraction": 0.01, "edge_mean_abs_cosine": 0.95})
    assert "1.0% are distinct" in collapsed and "collapsed onto 1 distinct filter," in collapsed
    varied = _filters({**base, "edge_distinct_fraction": 0.9, "edge_mean_abs_cosine": 0.12})
    assert "90.0% are distinct" in varied and "collapsed" not in varied
    assert "distinct" not in _filters(base)                  # an analysis.json from before the measure


def test_the_report_says_when_the_edge_like_filters_all_share_one_orientation():
    """rbm-digits after 500 steps: 77% edge-like whole-digit templates, orientation agreement 0.99; the report says
    they are one vertical structure, not only '77.0% are edge-like' and that they are 12 distinct."""
    from downpour.analysis.report import _filters

    base = {"available": True, "count": 100, "shape": [1, 8, 8], "edge_fraction": 0.77, "edge_fraction_noise": 0.0,
            "coherence_mean": 0.71, "coherence_noise": 0.16, "criteria": {}}
    assert "share one orientation (agreement 0.99" in _filters({**base, "edge_orientation_agreement": 0.99})
    assert "share one orientation" not in _filters({**base, "edge_orientation_agreement": 0.12})   # cat-demo: 0.08
    assert "share one orientation" not in _filters({**base, "edge_fraction": 0.05, "edge_orientation_agreement": 1.0})
    assert "share one orientation" not in _filters(base)            # an analysis.json from before the measure


def test_a_designed_first_layer_is_said_so_and_its_repeats_are_not_called_a_collapse():
    """cat-demo with model.first_layer = "gabor" puts the same 8-filter bank at each of its 4 tiled banks: the
    report says the filters are designed, not learned, and does not call that "collapsed onto 8 distinct filter(s)"."""
    from downpour.analysis.report import _filters
    from downpour.analysis.filter_stats import filter_stats
    from downpour.models.registry import create_model

    model = create_model("cat-demo", (1, 32, 32), first_layer="gabor")
    stats, _ = filter_stats(model, model.first_layer_filters().numpy(), 0)
    assert stats["first_layer"] == "gabor"
    said = _filters(stats)
    assert "collapsed" not in said and "not learned" in said and "by construction" in said
    learned = create_model("cat-demo", (1, 32, 32))
    assert filter_stats(learned, learned.first_layer_filters().numpy(), 0)[0]["first_layer"] == "learned"
    assert "not learned" not in _filters({**stats, "first_layer": "learned"})


def test_a_gabor_started_first_layer_is_said_to_be_learned_and_its_edge_share_trainings():
    """model.first_layer = "gabor-init" starts from the Gabor bank and learns: the report calls it learned, not an
    edge-like share that "says what the layer was given, not what training found", nor its copies "by construction".
    cat-demo with it, 300 steps: 0.0% edge-like, from a bank whose every filter passes."""
    from downpour.analysis.report import _filters
    from downpour.analysis.filter_stats import filter_stats
    from downpour.models.registry import create_model

    model = create_model("cat-demo", (1, 32, 32), first_layer="gabor-init")
    start, _ = filter_stats(model, model.first_layer_filters().numpy(), 0)
    assert start["first_layer"] == "gabor-init" and start["edge_fraction"] == 1.0 and start["edge_distinct_fraction"] < 0.5
    said = _filters(start)
    assert "what training made of that start" in said and "not what training found" not in said
    assert "by construction" not in said and "collapsed" not in said and "training has not moved them apart" in said
    trained = _filters({**start, "edge_fraction": 0.0, "edge_distinct_fraction": None})
    assert "not learned" not in trained and "what the layer was given, not what training found" not in trained


def test_a_layer_not_measured_says_why_escaped_once():
    from downpour.analysis.report_controls import controls_by_layer as _controls_by_layer

    html = _controls_by_layer([{"layer": "a", "negatives": [{"negatives": "upside_down", "auc": 0.5, "auc_ci": [0.4, 0.6],
                                                            "passes": False}]},
                               {"layer": "s", "negatives": [], "not_measured": "no unit of 's' <is> finite"}], {})
    assert "no unit of &#x27;s&#x27; &lt;is&gt; finite" in html and "&amp;" not in html


def test_the_report_says_the_symbolic_links_the_listing_did_not_follow():
    """data.json's loops (links to a folder holding them, not followed) are said in the report, not in the log
    alone."""
    from downpour.analysis.report_notes import data_note

    data = {"loops": [{"link": "/d/sub/up", "to": "/d"}, {"link": "/d/b/up", "to": "/d"}]}
    assert data_note(data) == ('<p class="note">Data: 2 symbolic links to a folder holding them not followed, the '
                               'files there read once (first: /d/sub/up -&gt; /d); data.json names every one.</p>')


def test_a_skipped_files_reason_is_said_by_its_first_line_of_text():
    """A reason kept with a blank line before it (a message that opens on a newline, then its traceback) read
    "(first: a.jpg: )": its first line, "", where the report's other notes take errors.first_line's (past blank
    lines)."""
    from downpour.analysis.report_notes import data_note

    data = {"n_skipped": 1, "skipped": [{"file": "a.jpg", "reason": "\ncannot identify image file\nTraceback ..."}]}
    assert "(first: a.jpg: cannot identify image file)" in data_note(data)


def test_an_untied_layers_note_gives_the_runs_own_samples_and_claims_nothing_it_did_not_measure():
    """lcn-digits (untied 3x3 filters, 1,797 digits) is given its own samples, not "the ~1,250 images that ship
    offline" and "far too little data per filter": cat-untied's numbers, measured on another model and other data."""
    from downpour.analysis.report import _filters

    lcn = {"available": True, "count": 576, "shape": [1, 3, 3], "edge_fraction": 0.0, "edge_fraction_noise": 0.0,
           "coherence_mean": 0.4, "coherence_noise": 0.3, "criteria": {},
           "sharing": {"kind": "untied", "banks": 36, "positions": 36}}
    said = _filters(lcn, 1797)
    assert "36 positions" in said and "the run's 1,797 training samples" in said and "cat-untied" in said
    assert "ship offline" not in said and "far too little" not in said
    assert "each training image" in _filters(lcn) and "untied" not in _filters({**lcn, "sharing": {"kind": "tiled"}}, 1797)


def test_the_best_neuron_tables_plus_minus_is_said_to_be_the_std_across_splits():
    """The table's "68.3% ± 7.8%" and "0.692 ± 0.094" were said to average over the splits, the ± not said at all
    (a standard deviation across splits, not an error of the mean or an interval)."""
    from downpour.analysis.report import _face_neuron

    row = {"method": "learned unit", "unit": 7, "selection_auc": 0.8, "selection_accuracy": 0.8, "test_accuracy": 0.7,
           "test_auc": 0.75}
    fn = {"rows": [row], "over_splits": [{"method": "learned unit", "mean": 0.68, "std": 0.08, "auc_mean": 0.69,
                                          "auc_std": 0.09}],
          "paper_style": {"method": "learned unit, paper style", "unit": 3, "test_accuracy": 0.85},
          "split": {"selection": 30, "test": 30, "seed": 0, "positives_in_test": 15}, "split_seeds": list(range(50)),
          "positive_class": "face", "dataset": "lfw", "choice": {}}
    html = _face_neuron({"face_neuron": fn, "layer": "stage2"})
    assert "over 50 seeded splits, mean ± std across the splits" in html


def test_the_top_images_words_say_what_the_number_above_each_image_is():
    """The figure puts a number above each top image (0.426, 0.812, ...), and the words say it is the unit's
    response."""
    from downpour.analysis.report_notes import top_words

    top = {"indices": [1, 2, 3], "positive_in_top": 2, "pool": 60, "positive_in_pool": 30, "drawn_from": "60 held-out images"}
    assert "the number above each is the unit's response to it" in top_words(top, sign=-1)


def test_the_top_images_count_says_how_often_chance_draws_as_many():
    """"6 of them from the concept's class, against 4.5 expected by chance" comes with its chance: alone, a reader
    cannot tell 6 of 9 from a finding. A random 9 of 60 images, 30 of the concept, hold 6 or more with probability
    sum_x C(30, x) C(30, 9 - x) / C(60, 9) over x >= 6."""
    from math import comb

    from downpour.analysis.report_notes import top_words

    top = {"indices": list(range(9)), "positive_in_top": 6, "pool": 60, "positive_in_pool": 30, "drawn_from": "them"}
    p = sum(comb(30, x) * comb(30, 9 - x) for x in range(6, 10)) / comb(60, 9)
    assert f"(the class is 50.0% of those images: a random 9 of them hold 6 or more in {100 * p:.1f}% of draws;" in (
        top_words(top, sign=-1))
    none = {**top, "positive_in_top": 0}            # 0 or more: every draw, not worth a clause
    assert "of draws" not in top_words(none) and "(the class is 50.0% of those images; the number" in top_words(none)
