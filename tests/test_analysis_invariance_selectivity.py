"""The selectivity curve beside the response curve: the unit's AUC of the warped concept images against the others."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from downpour.analysis.invariance import invariance_curves, invariance_summary, selectivity_summary, sweep
from downpour.analysis.invariance_widths import tied_summary
from downpour.analysis.report_invariance import invariance_rows, selectivity_rows
from downpour.models.base import FeatureModel
from test_analysis_invariance_sweep import OLD_SWEEP


class _Units(FeatureModel):
    """Unit 0 answers any bright blob: the brightest 3x3 mean anywhere. Unit 1 answers the bright 8x8 square at the
    centre: the mean of the central 8x8 pixels, which a texture of any grain keeps at its own mean."""

    def __init__(self):
        super().__init__()
        self.input_shape = (1, 16, 16)

    def forward(self, x):
        blob = F.conv2d(x, torch.ones(1, 1, 3, 3) / 9).amax(dim=(1, 2, 3))
        return torch.stack([blob, x[:, 0, 4:12, 4:12].mean(dim=(1, 2))], 1)


def _images(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces: an 8x8 square at the centre, 0.8 bright; non-faces: a checkerboard of 2x2 cells of 0 and 1, which
    zoomed in turns to blobs brighter than the faces."""
    torch.manual_seed(0)
    faces = torch.zeros(n, 1, 16, 16)
    faces[:, 0, 4:12, 4:12] = 0.8
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    others = torch.stack([((i // 2 + j // 2 + k) % 2).float()[None] for k in range(n)])
    return faces + 0.02 * torch.rand_like(faces), others + 0.02 * torch.rand_like(others)


def test_a_unit_that_answers_any_blob_keeps_its_response_but_not_its_auc_as_the_images_zoom_in():
    """The response range could not tell a blob detector from a face detector: unit 0 keeps its whole response up to
    a 4x zoom (a blob is a blob), but the zoomed checkerboards become blobs too, so its AUC falls to chance."""
    faces, others = _images()
    model = _Units()
    # (edges repeated, the fill these ranges were measured with: the mean fill greys the zoomed-out faces' surround)
    blob, square = sweep(model, faces, [0, 1], [1, 1], [float(model(others)[:, u].mean()) for u in (0, 1)],
                         negatives=others, fill="border", scales=OLD_SWEEP["scales"])   # (the pre-2026-12-05 0.25x-4x)
    assert invariance_summary(blob)["ranges"]["scale"] == [0.5, 4.0]       # the response: 3 octaves, to the end
    sel = selectivity_summary(blob)
    assert sel["auc"]["scale"] == 1.0
    assert sel["ranges"]["scale"] == [1.0, 1.25] and sel["censored"]["scale"] is False
    scale = next(c for c in blob["curves"] if c["transform"] == "scale")
    assert max(scale["auc"][-3:]) < 0.5                                     # 2x to 4x: the checks outshine the faces
    # the unit at the centre's square keeps both up to 4x: the zoomed texture still averages 0.5 there
    assert invariance_summary(square)["ranges"]["scale"] == [1.0, 4.0]
    assert selectivity_summary(square)["ranges"]["scale"] == [0.875, 4.0]
    # the faces alone warped, the non-faces untouched (the paper's way): the blob unit looked invariant there too
    assert selectivity_summary(blob, "auc_faces_only")["ranges"]["scale"] == [0.5, 4.0]


def test_a_unit_at_chance_has_no_selectivity_range_and_the_report_says_why():
    faces, others = _images()
    model = _Units()
    inv = invariance_curves(model, faces, 1, negatives=faces.flip(0))     # its "non-faces" are faces: AUC 0.5ish
    sel = selectivity_summary(inv)
    inv.update(summary={"ranges": {"scale": [1.0, 1.0]}}, selectivity={**sel, "ranges": {"scale": None},
                                                                       "auc": {"scale": 0.5}})
    assert selectivity_rows(inv) == ["none: AUC 0.500 untransformed, no lead over chance to keep"]
    at_chance = {"curves": [{"transform": "scale", "values": [0.5, 1.0, 2.0], "auc": [0.9, 0.5, 0.9]}]}
    assert selectivity_summary(at_chance)["ranges"]["scale"] is None


def test_the_level_is_halfway_from_chance_to_the_untransformed_auc_and_ranges_at_the_end_are_flagged():
    curve = {"transform": "rotation", "values": [-90.0, -45.0, 0.0, 45.0, 90.0], "auc": [0.6, 0.76, 0.9, 0.69, 0.71]}
    sel = selectivity_summary({"curves": [curve]})                     # level 0.7: 0.69 breaks it, 0.6 does not count
    assert (sel["ranges"]["rotation"], sel["censored"]["rotation"]) == ([-45.0, 0.0], False)
    curve["auc"][3] = 0.7
    sel = selectivity_summary({"curves": [curve]})
    assert (sel["ranges"]["rotation"], sel["censored"]["rotation"]) == ([-45.0, 90.0], True)
    inv = {"summary": {"ranges": {"rotation": [0.0, 0.0], "out_of_plane_rotation": None}}, "curves": [curve],
           "selectivity": sel}
    assert selectivity_rows(inv) == ["-45 … 90 degrees (AUC ≥ 0.700) (to the sweep's end: at least this far)", "–"]


def test_the_tied_summary_has_the_auc_widths_when_the_sweep_had_the_non_faces():
    faces, others = _images()
    model = _Units()
    base = [float(model(others)[:, u].mean()) for u in (0, 1)]
    tied = tied_summary(sweep(model, faces, [0, 1], [1, 1], base, negatives=others))
    assert tied["widths"]["scale"]["measured"] == 2
    assert tied["selectivity"]["widths"]["scale"]["max"] > tied["selectivity"]["widths"]["scale"]["min"]
    assert "selectivity" not in tied_summary(sweep(model, faces, [0, 1], [1, 1], base))


def test_the_reports_table_gives_the_tied_sets_auc_widths_beside_the_response_widths():
    """analysis.json had the tied set's AUC widths (invariance.tied.selectivity) and the report showed only the
    response widths (until 2026-12-05)."""
    from html import escape as html_escape
    from downpour.analysis.report import _invariance
    faces, others = _images()
    model = _Units()
    base = [float(model(others)[:, u].mean()) for u in (0, 1)]
    inv = invariance_curves(model, faces, 0, baseline=base[0], negatives=others, fill="border")
    inv.update(summary=invariance_summary(inv), selectivity=selectivity_summary(inv),
               tied=tied_summary(sweep(model, faces, [0, 1], [1, 1], base, negatives=others, fill="border")))
    html = _invariance({"invariance": inv})
    assert html_escape("the AUC range's width over the 2 tied units") in html and "the last two columns say" in html
    w = inv["tied"]["selectivity"]["widths"]["scale"]       # the blob unit 0.32 octaves, the square's 2.19 to 4x
    assert w["censored"] == 1 and w["min"] < 0.5 < 2 < w["max"]
    assert html_escape(f"{w['mean']:.3g} ± {w['std']:.2g} octaves, median {w['median']:.3g} ({w['min']:.3g}–"
                       f"{w['max']:.3g}), over all 2, 1 of them to the sweep's end: the mean is at least this") in html
    response = inv["tied"]["widths"]["scale"]
    assert html_escape(f"{response['mean']:.3g} ± {response['std']:.2g} octaves") in html   # the response's too


def test_a_sweep_without_the_identity_has_no_untransformed_auc_and_no_range_and_the_report_says_why():
    """The untransformed AUC was read at the value nearest the identity (argmin) and the range needed it exactly
    (isclose): a sweep of 0.5x, 0.9x and 2x gave 0.9x's AUC, 0.95, as the untransformed one beside no range, and the
    studies counted the unit as above chance (inv_auc_ranged). Since 2026-12-05 one rule: exactly the identity."""
    curve = {"transform": "scale", "values": [0.5, 0.9, 2.0], "auc": [0.6, 0.95, 0.7], "response": [0.4, 0.9, 0.8]}
    sel = selectivity_summary({"curves": [curve]})
    assert sel["auc"]["scale"] is None and sel["ranges"]["scale"] is None and sel["censored"]["scale"] is None
    inv = {"summary": invariance_summary({"curves": [curve]}), "curves": [curve], "selectivity": sel}
    said = "none: the sweep has no untransformed point (scale 1), so nothing untransformed to keep"
    assert selectivity_rows(inv) == [said]
    assert invariance_rows(inv) == [["scale", said]]            # the response column too (it read "–")
    # with the identity swept, the same rule reads it
    curve.update(values=[0.5, 1.0, 2.0])
    assert selectivity_summary({"curves": [curve]})["auc"]["scale"] == 0.95


class _Lfw:
    """lfw's held-out part as measure._invariance reads it: 2 faces and 2 non-faces (the sweep is planted)."""
    y = np.array([1, 1, 0, 0])
    x = pixels = torch.zeros(4, 1, 16, 16)


def test_the_studies_do_not_count_a_unit_without_an_untransformed_auc_as_above_chance(monkeypatch):
    from downpour.studies import measure
    curve = {"transform": "scale", "values": [0.5, 0.9, 2.0], "auc": [0.6, 0.95, 0.7], "response": [0.4, 0.9, 0.8]}
    shape = (1, 16, 16)
    monkeypatch.setattr(measure, "load_labelled", lambda *a, **k: _Lfw())
    monkeypatch.setattr(measure, "unit_responses", lambda *a, **k: np.zeros((4, 2)))
    monkeypatch.setattr(measure, "sweep", lambda *a, **k: [{"curves": [curve], "normalised_to": "untransformed"}] * 2)
    out = measure._invariance(None, "layer", shape, None, {"fold": 0, "tied_units": [0, 1], "tied_signs": [1, 1]})
    assert out["inv_auc_ranged"] == 0.0          # was 2.0: 0.9x's AUC 0.95 read as the untransformed one
    assert math.isnan(out["inv_scale_octaves_auc"])


def test_a_folder_concepts_invariance_auc_is_against_its_other_classes_not_non_faces(monkeypatch, tmp_path):
    """A folder's concept (cat images against the folder's other photos) had its AUC range headed "non-faces warped
    alike" in the report and its figure's panels labelled "faces vs non-faces" (until 2026-12-05)."""
    from downpour.analysis import canvas, figures
    from downpour.analysis.report import _invariance
    faces, others = _images()
    model = _Units()
    inv = invariance_curves(model, faces, 0, baseline=float(model(others)[:, 0].mean()), negatives=others)
    inv.update(summary=invariance_summary(inv), selectivity=selectivity_summary(inv))
    concept = {"invariance": inv, "options": {"dataset": "shapes", "positive": 0},
               "face_neuron": {"positive_class": "cat"}}
    html = _invariance(concept)
    assert "the other classes warped alike" in html and "non-faces" not in html
    assert "non-faces warped alike" in _invariance({**concept, "options": {"dataset": "lfw", "positive": 1}})
    drawn = []
    monkeypatch.setattr(canvas, "save", lambda fig, path: drawn.append(fig) or path)
    figures.invariance_plot(inv, tmp_path / "inv.png", ("cat", "the other classes"))
    ax = drawn[0].axes[len(inv["curves"])]                  # the first AUC panel
    assert ax.get_ylabel() == "AUC, cat vs the other classes"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["the other classes warped too", "cat alone"]
