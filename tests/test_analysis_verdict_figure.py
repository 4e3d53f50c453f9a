"""The face test's verdict figure: drawn from analysis.json's controls rows (dots at their AUCs, bars at their
intervals), put beside the verdict on the report's page with a caption of the same numbers; and the top images framed
by whether each is one of the concept's."""
from __future__ import annotations

import re

import numpy as np
import pytest

from downpour.analysis import figures
from downpour.analysis.face_verdict import GRADIENT, LEARNED, NO_FACES, PIXEL, PROBE, TWIN
from downpour.analysis.report_controls import controls
from downpour.analysis.verdict_figure import verdict_caption, verdict_figure

PLANTED = {   # (negative set, method): (AUC, its 95% interval), none of them round or shared
    ("lfw_nonfaces", LEARNED): (0.83, (0.71, 0.92)), ("lfw_nonfaces", TWIN): (0.61, (0.48, 0.73)),
    ("lfw_nonfaces", NO_FACES): (0.57, (0.44, 0.69)), ("lfw_nonfaces", PIXEL): (0.66, (0.55, 0.77)),
    ("lfw_nonfaces", GRADIENT): (0.52, (0.40, 0.64)), ("lfw_nonfaces", PROBE): (0.90, (0.85, 0.95)),
    ("phase_scrambled", LEARNED): (0.47, (0.35, 0.58)), ("phase_scrambled", TWIN): (0.74, (0.63, 0.84)),
    ("phase_scrambled", PIXEL): (0.39, (0.28, 0.51)), ("phase_scrambled", GRADIENT): (0.88, (0.80, 0.94)),
}
LABELS = {"lfw_nonfaces": "lfw non-faces", "phase_scrambled": "phase-scrambled faces"}


def _rows() -> list[dict]:
    return [{"negatives": n, "method": m, "auc": a, "auc_ci": list(ci)} for (n, m), (a, ci) in PLANTED.items()]


def _drawn(ax) -> dict[str, tuple[float, float, float]]:
    """Each method drawn on a panel (by its tick label): (its dot's AUC, its bar's two ends)."""
    names = {round(t.get_position()[1]): t.get_text() for t in ax.figure.axes[0].get_yticklabels()}
    bars, _, dots = ax.collections      # (verdict_figure.marks: the bars, their caps, the dots)
    out = {}
    for ((low, y), (high, _)), (auc, y_dot) in zip(bars.get_segments(), dots.get_offsets()):
        assert y == y_dot
        out[names[round(y)]] = (float(auc), float(low), float(high))
    return out


def test_the_verdict_figure_puts_each_method_at_its_rows_auc_and_interval(tmp_path, saved):
    verdict_figure(_rows(), tmp_path / "v.png", LABELS)
    fig = saved[0]
    assert [ax.get_title() for ax in fig.axes] == ["lfw non-faces", "phase-scrambled faces"]
    short = {LEARNED: "learned unit", TWIN: "random twin", NO_FACES: "no-faces twin", PIXEL: "best pixel",
             GRADIENT: "gradient energy"}
    for ax, name in zip(fig.axes, ["lfw_nonfaces", "phase_scrambled"]):
        want = {short[m]: (a, *ci) for (n, m), (a, ci) in PLANTED.items() if n == name and m in short}
        assert _drawn(ax).keys() == want.keys()      # (the probe is no baseline of the verdict's: left out)
        assert [_drawn(ax)[k] for k in want] == [pytest.approx(v) for v in want.values()]
        assert any(list(line.get_xdata()) == [0.5, 0.5] for line in ax.lines), "chance is marked"


def test_the_caption_says_the_planted_numbers_set_by_set():
    text = verdict_caption(_rows(), LABELS)
    assert "lfw non-faces: learned unit 0.830 [0.710, 0.920], above chance; the highest of the others drawn, " \
           "best pixel, 0.660 [0.550, 0.770]: the intervals overlap" in text
    assert "phase-scrambled faces: learned unit 0.470 [0.350, 0.580], its interval holds 0.5; the highest of the " \
           "others drawn, gradient energy, 0.880 [0.800, 0.940]: the intervals do not overlap" in text


def test_the_report_shows_the_figure_and_its_caption_beside_the_verdict():
    rows = [{**r, "splits": 1, "candidates": 1, "accuracy_mean": 0.7, "accuracy_std": 0.0, "test_positives": 20}
            for r in _rows()]
    verdict = {"rule": "the rule", "criterion": "the criterion", "sentences": ["the verdict sentence"]}
    html = controls({"face_neuron": {"controls": rows, "controls_verdict": verdict,
                                     "controls_setup": {"negatives": {k: {"label": v} for k, v in LABELS.items()}}}})
    after = html[html.index("the verdict sentence"):]
    assert re.match(r'the verdict sentence</li></ul><figure id="face-verdict"><img src="data:image/png;base64,'
                    r'[A-Za-z0-9+/=]{1000,}"', after)
    assert "learned unit 0.830 [0.710, 0.920]" in after


def test_the_top_images_are_framed_by_whether_they_are_the_concepts(tmp_path, saved):
    figures.stimulus_and_top_images(np.zeros((1, 4, 4)), np.zeros((4, 1, 4, 4)), tmp_path / "s.png", "t",
                                    [4.0, 3.0, 2.0, 1.0], in_concept=[True, False, True, True], concept="face")
    tops = saved[0].axes[1:]
    colours = [tuple(ax.spines["top"].get_edgecolor()) for ax in tops]
    assert colours[0] == colours[2] == colours[3] != colours[1]
    legend = saved[0].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["face (3)", "other (1)"]
