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


@pytest.mark.parametrize("name", ["templates", "architectures"])
def test_a_condition_has_one_colour_in_every_figure_of_its_study(name, monkeypatch, tmp_path):
    """templates' tile2 was orange in params_vs_probe.png and blue in probe_digits.png, where every condition was blue
    (until 2026-12-06); and a condition left out of a tradeoff (no finite value) shifted the colours after it."""
    from matplotlib.colors import to_hex

    from downpour.studies import compare, figures as study_figures

    drawn = {}
    for module in (compare, study_figures):
        monkeypatch.setattr(module, "save", lambda fig, path, caption="": drawn.update({path.stem: fig}) or path)
    study = study_class(name)(quick=True)
    keys = ("probe_digits", "probe_lfw", "face_auc_controls", "edge_fraction", "seconds_per_step", "face_owed_controls")
    rows = [{"condition": c.name, "n": 2, "extra": {}, "params": {},
             "figures": {**{k: [0.5 + 0.01 * i, 0.4, 0.9] for k in keys}, "params": [1e3 * (i + 1)] * 3,
                         "flops_fwd": [1e5 * (i + 1)] * 3}} for i, c in enumerate(study.conditions())]
    rows[0]["figures"]["probe_digits"] = [math.nan] * 3           # (left out of the tradeoff, drawn nowhere)
    study.figures(rows, {}, tmp_path)
    tradeoff = drawn["params_vs_probe" if name == "templates" else "flops_vs_probe"].axes[0]
    said = {t.get_text(): to_hex(t.get_color()) for t in tradeoff.texts}
    assert len(said) == len(rows) - 1
    for stem in ("probe_digits", "face_auc_controls", "face_owed_controls"):
        ax = drawn[stem].axes[0]
        names = [t.get_text() for t in ax.get_xticklabels()]
        bars = {names[round(c.lines[0].get_xdata()[0])]: to_hex(c.lines[0].get_color()) for c in ax.containers}
        assert {n: bars[n] for n in said} == said, stem
        assert len(set(bars.values())) == min(len(rows), 10), stem
