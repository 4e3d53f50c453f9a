"""The dashed line of a study's interval figures (compare.bar_reference): its probes against the same probe on the
input pixels, its face AUCs against chance, each said in the title."""
import math

import pytest

from downpour.studies import study_class


@pytest.mark.parametrize("name", ["templates", "architectures", "mechanisms"])
def test_a_probe_figure_draws_the_input_pixels_probe_the_verdict_quotes(name, monkeypatch, tmp_path):
    """templates' probe_digits.png (and architectures', mechanisms') drew every network's probe with no sign of the
    pixels' own, 0.956 [0.946, 0.965] in templates' verdict, above every network's: a reader saw conv32 on top."""
    module = __import__(f"downpour.studies.{name}", fromlist=["figures"])
    drawn = {}
    monkeypatch.setattr(module, "interval_bars", lambda names, triples, path, title, label, **k:
                        drawn.update({path.stem: (title, k.get("reference"))}))
    for other in ("tradeoff", "owed_figure"):
        monkeypatch.setattr(module, other, lambda *a, **k: None, raising=False)
    study = study_class(name)(quick=True)
    figures = {k: [0.9, 0.8, 1.0] for k in ("probe_digits", "probe_lfw", "face_auc_controls", "edge_fraction",
                                            "inv_scale_octaves", "inv_shift", "inv_rotation", "flops_fwd",
                                            "inv_scale_octaves_auc", "inv_shift_auc", "inv_rotation_auc")}
    figures.update(probe_digits_pixels=[0.956, 0.946, 0.965], probe_lfw_pixels=[0.93, 0.92, 0.94])
    rows = [{"condition": c.name, "n": 2, "figures": dict(figures), "extra": {}} for c in study.conditions()]
    study.figures(rows, {}, tmp_path)
    title, reference = drawn["probe_digits"]
    assert reference == 0.956 and title.endswith("(dashed: the same probe on the input pixels, 0.956)")
    if "face_auc_controls" in drawn:
        assert drawn["face_auc_controls"][1] == 0.5 and drawn["face_auc_controls"][0].endswith("(dashed: chance)")
    assert drawn["edge_fraction" if "edge_fraction" in drawn else "flops_fwd"][1] is None


def test_no_pixels_probe_no_line():
    from downpour.studies.compare import bar_reference

    assert bar_reference([{"figures": {"probe_digits_pixels": [math.nan] * 3}}], "probe_digits") == (None, "")
    assert bar_reference([{"figures": {}}], "probe_lfw") == (None, "")
