"""A supervised network trained on lfw's face labels (the cnn-faces preset): its face unit is the target it was
trained to answer, so the report says so where it reads that unit, and does not ask for a twin trained without a
face (for a classifier of faces, a network trained on one class)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from downpour.analysis.report_guide import in_short
from downpour.analysis.report_notes import owed_note
from downpour.analysis.run import _trained_on
from downpour.cli_analyze import headline
from downpour.config import load_config

SUPERVISED, UNSUPERVISED = SimpleNamespace(supervised=True), SimpleNamespace(supervised=False)
FACES = ["model.name=cnn-faces", "data.source=faces", "data.size=25"]     # the cnn-faces preset's model and data


@pytest.mark.parametrize("preset, sets, model, said", [
    ("cnn-faces", [], SUPERVISED, {"trained_on": "labels"}),
    ("cnn-digits", [*FACES, "data.lfw_heldout=fold:2:5"], SUPERVISED, {"trained_on": "labels"}),
    ("cat-demo", [], UNSUPERVISED, {}),                         # faces seen without a label: the paper's question
    ("cnn-digits", [], SUPERVISED, {}),                         # trained on digit labels, never on a face's
])
def test_the_face_unit_of_a_network_trained_on_the_face_labels_is_marked_so(preset, sets, model, said):
    assert _trained_on(load_config(preset, sets), model, "lfw") == said


def test_the_face_test_tells_a_face_classifier_what_its_unit_is_not_to_train_a_no_faces_twin():
    note = owed_note("", "labels")
    assert "trained on these labels" in note and "Classifier accuracy" in note
    assert "no_faces_twin" not in note and "crossfit --control no-faces" not in note
    assert "no_faces_twin = true" in owed_note("")             # an unsupervised network that saw faces keeps it


def test_the_page_and_the_terminal_say_it_beside_the_face_test_s_summary(tmp_path):
    verdict = {"sentences": ["On 2 of 4 low-level-matched controls the learned unit meets the criterion."]}
    said = "The network was trained on the face labels: its unit answers what it was trained to"
    for trained_on, shown in (("labels", True), (None, False)):
        a = {"face_neuron": {"controls_verdict": verdict, **({"trained_on": trained_on} if trained_on else {})}}
        assert (said in in_short(a, "face test")) == shown
        (tmp_path / "analysis.json").write_text(json.dumps(a))
        line = headline(tmp_path)
        assert line.startswith("downpour: face test: On 2 of 4") and (said in line) == shown


def test_a_supervised_faces_run_s_no_faces_twin_is_refused_by_name():
    """Its twin (data.train_faces = 0) would train a classifier on one class: every label non-face."""
    from downpour.config import ConfigError
    from downpour.twins import no_faces_config

    cfg = load_config("cnn-digits", FACES)
    with pytest.raises(ConfigError, match="model 'cnn-faces' is supervised, .* one class to learn"):
        no_faces_config(cfg)
    assert no_faces_config(load_config("cat-demo")).data.train_faces == 0      # an unsupervised network keeps it
