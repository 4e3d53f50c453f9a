"""The honest face test: chosen once on selection, scored on test against each negative set, with intervals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import Tensor, nn

from downpour.analysis.controls import (bootstrap_weights, comparisons, score_controls, weighted_accuracy,
                                       weighted_auc)
from downpour.analysis.face_controls import GRADIENT, LEARNED, NO_FACES, PIXEL, TWIN, controls_verdict, face_controls
from downpour.analysis.headroom import headroom
from downpour.analysis.labelled import LabelledSet
from downpour.analysis.choice import auc_scores, ranking
from downpour.analysis.selectivity import split
from downpour.data import lfw_split
from downpour.models.base import FeatureModel
from test_analysis_planted import PlantedModel, planted_face_model

FAST = dict(seeds=list(range(5)), replicates=500, n_random_filters=200)


def _sources(n_per_class: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y (2n,) faces first; one split (selection, test) of it."""
    y = np.repeat([1, 0], n_per_class)
    select, test = split(y, 0.5, seed=0)
    return y, select, test


def _rows(rows: list[dict], negatives: str) -> dict:
    return {r["method"]: r for r in rows if r["negatives"] == negatives}


@pytest.mark.parametrize("localizer", [(), ("controls",)])
def test_a_unit_perfect_only_on_the_selection_half_scores_chance_on_test(localizer):
    y, select, test = _sources(200)
    n = len(y)
    faces = np.flatnonzero(y == 1)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(faces))                   # controls stored in another order than their faces
    source = np.concatenate([np.arange(n), faces[order]])
    scores = rng.standard_normal((len(source), 6))
    is_face = np.r_[y, np.zeros(len(faces))].astype(bool)           # controls are negatives
    in_select, in_test = np.isin(source, select), np.isin(source, test)
    # Unit 0: faces +5 / negatives -5 on the selection half only; unit 1: the same on the test half only.
    scores[in_select, 0] = np.where(is_face[in_select], 5.0, -5.0)
    scores[in_test, 1] = np.where(is_face[in_test], 5.0, -5.0)
    negatives = {"non-faces": np.flatnonzero(y == 0), "controls": np.arange(n, len(source))}
    rows = score_controls({"planted": scores}, y, negatives, source, [(select, test)], replicates=300,
                          localizer=localizer)
    for r in rows:
        assert r["unit"] == 0 and r["selection_auc"] == 1.0         # chosen on the selection half...
        assert abs(r["auc"] - 0.5) < 0.15                           # ...where it does not carry over
        assert r["auc_ci"][0] < 0.5 < r["auc_ci"][1]
        assert r["test_positives"] == 100 and r["test_negatives"] == 100


def test_the_sign_chosen_on_selection_is_carried_to_every_test_set():
    y, select, test = _sources(20)
    faces = np.flatnonzero(y == 1)
    source = np.concatenate([np.arange(len(y)), faces])
    scores = np.r_[np.where(y == 1, -1.0, 1.0), np.ones(len(faces))][:, None]   # fires *against* faces
    scores += np.random.default_rng(0).uniform(0, 0.5, scores.shape)
    negatives = {"non-faces": np.flatnonzero(y == 0), "controls": np.arange(len(y), len(source))}
    rows = score_controls({"inhibited": scores}, y, negatives, source, [(select, test)], replicates=100)
    for r in rows:
        assert r["sign"] == -1 and r["auc"] == 1.0 and r["accuracy_mean"] == 1.0 and r["auc_ci"] == [1.0, 1.0]
        assert -0.5 < r["threshold"] < 1.0                            # between the faces and the non-faces


def test_a_control_counts_only_when_its_own_face_is_in_the_test_split():
    y, select, test = _sources(20)
    faces = np.flatnonzero(y == 1)
    order = np.random.default_rng(1).permutation(len(faces))
    source = np.concatenate([np.arange(len(y)), faces[order]])
    face_score = np.random.default_rng(2).uniform(1, 2, len(y))
    scores = np.where(y == 1, face_score, -face_score)
    # Controls of selection faces score above every face, controls of test faces below every face.
    controls = np.where(np.isin(faces[order], select), 10.0, -10.0)
    scores = np.r_[scores, controls][:, None]
    rows = score_controls({"unit": scores}, y, {"controls": np.arange(len(y), len(source))}, source,
                          [(select, test)], replicates=200)
    assert rows[0]["auc"] == 1.0 and rows[0]["auc_ci"] == [1.0, 1.0] and rows[0]["test_negatives"] == 10


def test_a_control_carries_its_faces_bootstrap_weight():
    y, select, test = _sources(20)
    faces = np.flatnonzero(y == 1)
    order = np.random.default_rng(1).permutation(len(faces))
    source = np.concatenate([np.arange(len(y)), faces[order]])
    # Face i scores i; its control scores i + 0.5: above its own face, below every higher face. A control
    # shares its face's weight w_i, and a face's pairs with its own controls weigh w_i (one per copy), so with
    # X = W^2 - sum w_i^2, AUC = (X / 2) / (X + W); sum w_i^2 >= W^2 / p: no replicate can exceed the unweighted
    # AUC (0.5 - 1/2p). (Controls drawn apart from their faces could.)
    scores = np.r_[np.where(y == 1, np.arange(len(y)), -100.0), faces[order] + 0.5][:, None]
    (row,) = score_controls({"unit": scores}, y, {"controls": np.arange(len(y), len(source))}, source,
                            [(select, test)], replicates=500)
    assert row["auc"] == pytest.approx(0.5 - 1 / (2 * 10))
    assert row["auc_ci"][1] <= row["auc"] + 1e-12 and row["auc_ci"][0] < row["auc"] - 0.005


def test_a_face_and_its_own_controls_count_once_per_copy_in_a_replicate():
    """A face drawn k times brings its controls k times: the replicate's AUC is that of k distinct faces, each
    compared with its own controls once and with every other face's (not k * k own pairs)."""
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 5, 6).astype(float)
    owner = np.array([0, 0, 1, 2, 2, 2, 4, 5])                   # control -> its face
    neg = pos[owner] + rng.integers(-2, 3, len(owner))          # ties included
    w_pos = rng.integers(0, 3, (4, 6)).astype(float)
    w_pos[:, 0] += 1
    w_neg = w_pos[:, owner]
    own = owner[None, :] == np.arange(6)[:, None]               # (p, q)
    got = weighted_auc(comparisons(pos, neg)[None], w_pos, w_neg, own)[0]
    for b in range(4):
        copies = [(i, c) for i in range(6) for c in range(int(w_pos[b, i]))]     # (face, copy)
        pairs = [(pos[i], neg[j]) for i, c in copies for j in range(len(owner))
                 for d in range(int(w_neg[b, j])) if owner[j] != i or d == c]
        brute = np.mean([1.0 if a > q else 0.5 if a == q else 0.0 for a, q in pairs])
        assert got[b] == pytest.approx(brute)


def test_the_interval_is_centred_on_the_auc_when_each_control_sits_above_its_own_face():
    """Each control 0.5 above its face: a face never beats its own control, 43% of the others. The replicates
    weigh a face's own pairs w, not w * w (about 2 on average, 1 for any other pair): the interval around an AUC of
    0.342 is [0.311, 0.363] and over 200 such samples holds the AUC's mean 97.5% of the time (weighed w * w it is
    [0.296, 0.346], centred 0.020 below it, and holds the mean 76% of the time)."""
    rng = np.random.default_rng(0)
    y = (np.arange(200) < 100).astype(int)
    owner = np.repeat(np.flatnonzero(y == 1), 5)                 # 5 controls per face
    raw = rng.normal(size=200) + 0.01 * y
    scores = np.concatenate([raw, raw[owner] + 0.5])[:, None]
    splits = [(np.flatnonzero(np.arange(200) % 5 != i), np.flatnonzero(np.arange(200) % 5 == i)) for i in range(5)]
    (row,) = score_controls({"unit": scores}, y, {"controls": np.arange(200, 200 + len(owner))},
                            np.concatenate([np.arange(200), owner]), splits, replicates=2000, seed=1)
    assert abs(sum(row["auc_ci"]) / 2 - row["auc"]) < 0.006


def test_weighted_auc_is_the_auc_of_the_resampled_images():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 7).astype(float), rng.integers(0, 5, 9).astype(float)    # ties included
    w_pos, w_neg = rng.integers(0, 3, (4, 7)).astype(float), rng.integers(0, 3, (4, 9)).astype(float)
    w_pos[:, 0] += 1
    w_neg[:, 0] += 1
    got = weighted_auc(comparisons(pos, neg)[None], w_pos, w_neg)[0]
    for b in range(4):
        p, q = np.repeat(pos, w_pos[b].astype(int)), np.repeat(neg, w_neg[b].astype(int))
        brute = np.mean([1.0 if a > c else 0.5 if a == c else 0.0 for a in p for c in q])
        assert got[b] == pytest.approx(brute)


def test_bootstrap_keeps_each_class_size():
    y = np.repeat([1, 0], [7, 5])
    w = bootstrap_weights(y, 50, np.random.default_rng(0))
    assert w.shape == (50, 12) and (w[:, y == 1].sum(axis=1) == 7).all() and (w[:, y == 0].sum(axis=1) == 5).all()


def _interval(n_per_class: int, seed: int, shift: float) -> tuple[float, float]:
    """AUC interval of one Gaussian unit, faces N(shift, 1) vs non-faces N(0, 1), over 4 splits."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], n_per_class)
    scores = (rng.standard_normal(len(y)) + shift * y)[:, None]
    splits = [split(y, 0.5, s) for s in range(4)]
    row = score_controls({"unit": scores}, y, {"non-faces": np.flatnonzero(y == 0)}, np.arange(len(y)), splits,
                         replicates=400, seed=seed)[0]
    return tuple(row["auc_ci"])


def test_the_interval_covers_a_known_auc_and_shrinks_with_more_images():
    shift = 1.0
    truth = norm.cdf(shift / np.sqrt(2))                       # P(face > non-face) = 0.760
    small = [_interval(40, seed, shift) for seed in range(20)]
    assert sum(lo <= truth <= hi for lo, hi in small) >= 16
    large = [_interval(320, seed, shift) for seed in range(5)]
    assert np.mean([hi - lo for lo, hi in large]) < 0.6 * np.mean([hi - lo for lo, hi in small])


class BrightnessModel(FeatureModel):
    """One unit: the image's mean value, summed in sorted order (so rearranged pixels tie exactly)."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 25, 25)):
        super().__init__()
        self.input_shape = input_shape
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        return (x.reshape(len(x), -1).double().sort(dim=1).values.mean(dim=1, keepdim=True) * self.scale).float()


@pytest.fixture(scope="module")
def brightness() -> dict:
    model = BrightnessModel()
    return face_controls(model, BrightnessModel(), layer=None, input_shape=(1, 25, 25), prepare=None, **FAST)


def test_the_bootstrap_record_names_the_seed_and_stream_its_replicates_are_drawn_from(brightness):
    """analysis.json says from which seed the face test's intervals drew their replicates, not only how many."""
    got = brightness["bootstrap"]
    assert got["replicates"] == FAST["replicates"] and got["seed"] == 0
    assert got["stream"] == "numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(3)[1])"


def test_a_report_of_an_older_analysis_says_once_where_its_units_were_chosen(brightness):
    """analysis.json files written from 2026-11-30 to 2026-12-03 end the selection with ", once", which the report
    says itself: "picks its unit and sign once, on the 140 images ... (70 faces), once (faces vs non-faces)"."""
    from downpour.analysis.report import _controls

    setup = {k: brightness.get(k) for k in ("negatives", "faces", "representation", "bootstrap", "select", "selection",
                                            "choice")}
    today = _controls({"face_neuron": {"controls": brightness["rows"], "controls_verdict": brightness["verdict"],
                                       "controls_by_layer": brightness["by_layer"], "controls_setup": setup}})
    older = _controls({"face_neuron": {"controls": brightness["rows"], "controls_verdict": brightness["verdict"],
                                       "controls_by_layer": brightness["by_layer"],
                                       "controls_setup": {**setup, "selection": setup["selection"] + ", once"}}})
    assert "), once (" not in older and older == today


def test_a_brightness_unit_passes_lfw_but_not_the_matched_controls(brightness):
    rows = brightness["rows"]
    assert _rows(rows, "lfw_nonfaces")[LEARNED]["auc"] > 0.6
    for name in ("upside_down", "block_shuffled"):                   # the same pixels: exact ties
        assert _rows(rows, name)[LEARNED]["auc"] == 0.5
    for name in ("phase_scrambled", "spectrum_matched_crops"):       # the same mean up to float rounding
        assert abs(_rows(rows, name)[LEARNED]["auc"] - 0.5) < 0.05
    assert not brightness["verdict"]["passes_low_level"]
    # The unit sees the raw images here, so it is the mean-intensity baseline itself.
    for name in ("lfw_nonfaces", "phase_scrambled", "upside_down", "block_shuffled", "spectrum_matched_crops"):
        assert _rows(rows, name)[LEARNED]["auc"] == pytest.approx(_rows(rows, name)["mean intensity"]["auc"], abs=0.02)


def test_a_face_template_unit_beats_brightness_on_upside_down_faces(brightness):
    train = lfw_split(size=25)["train"]
    model = planted_face_model(LabelledSet("lfw-train", train.x, train.y.numpy(), ["non-face", "face"]), unit=3)
    template = face_controls(model, PlantedModel((1, 25, 25), seed=5), layer=None, input_shape=(1, 25, 25),
                             prepare=None, **FAST)
    upright = _rows(template["rows"], "upside_down")[LEARNED]
    assert upright["unit"] == 3 and upright["unit_share"] == 1.0
    assert upright["auc_ci"][0] > _rows(brightness["rows"], "upside_down")[LEARNED]["auc_ci"][1]


def test_baselines_see_the_fixed_images_whatever_the_run_prepared():
    model, twin = PlantedModel((1, 16, 16)), PlantedModel((1, 16, 16), seed=3)
    a = face_controls(model, twin, layer=None, input_shape=(1, 16, 16), prepare=None, **FAST)
    b = face_controls(model, twin, layer=None, input_shape=(1, 16, 16), prepare=lambda x: torch.flip(x, dims=[3]), **FAST)
    for ra, rb in zip(a["rows"], b["rows"]):
        assert ra["method"] == rb["method"]
        if ra["method"] in (LEARNED, TWIN):
            continue
        assert ra == rb, ra["method"]
    learned = [(ra["auc"], rb["auc"]) for ra, rb in zip(a["rows"], b["rows"]) if ra["method"] == LEARNED]
    assert any(x != y for x, y in learned)                # the units did see the prepared (flipped) input


def test_the_verdict_follows_the_intervals():
    def row(method, auc, ci, negatives="upside_down"):
        return {"negatives": negatives, "level": "low-level matched", "method": method, "auc": auc, "auc_ci": list(ci)}

    rows = [row(LEARNED, 0.80, (0.74, 0.86)), row(TWIN, 0.60, (0.50, 0.70)), row(PIXEL, 0.78, (0.70, 0.85)),
            row(GRADIENT, 0.95, (0.92, 0.97)), row("mean intensity", 0.5, (0.5, 0.5))]
    v = controls_verdict(rows)
    (per,) = v["per_negatives"]
    assert per["beats"] == [TWIN, "mean intensity"] and per["not_separated"] == [PIXEL] and per["loses_to"] == [GRADIENT]
    assert per["passes"] is False and v["passes_low_level"] is False     # gradient energy's AUC is above the unit's
    rows[3] = row(GRADIENT, 0.70, (0.60, 0.79))
    v = controls_verdict(rows)
    assert v["per_negatives"][0]["passes"] and v["passes_low_level"]
    assert "On 1 of 1 low-level-matched controls" in v["sentences"][0] and "upside-down faces" in v["sentences"][1]
    rows[1] = row(TWIN, 0.60, (0.50, 0.81))                  # the unit is inside the twin's interval: not a pass
    assert not controls_verdict(rows)["per_negatives"][0]["passes"]


def test_the_criterion_lists_three_baselines_as_a_sentence_does():
    """With a third baseline to beat on AUC the criterion joins the baselines with commas (else "above the
    AUCs of best single pixel and gradient energy and mean intensity")."""
    aucs = ((LEARNED, 0.8), (TWIN, 0.6), (PIXEL, 0.6), (GRADIENT, 0.6), ("mean intensity", 0.5))
    rows = [{"negatives": "upside_down", "level": "low-level matched", "method": m, "auc": auc,
             "auc_ci": [auc - 0.05, auc + 0.05]} for m, auc in aucs]
    v = controls_verdict(rows, above_auc=(PIXEL, GRADIENT, "mean intensity"))
    assert f"above the AUCs of {PIXEL}, {GRADIENT} and mean intensity, and its own interval" in v["criterion"]
    assert f"above the random-weights twin, {PIXEL}, {GRADIENT} and mean intensity there." in v["sentences"][0]



def test_a_beaten_baseline_below_chance_is_said_to_be_no_sign_of_faces():
    """The main job (20 steps) read "beats gradient energy (0.015 [0.001, 0.037])" of a unit at 0.424 [0.311, 0.529]
    against block-shuffled faces: gradient energy ranks those images above the faces, so being above it is no finding."""
    def row(method, auc, ci, paired=None):
        return {"negatives": "block_shuffled", "level": "low-level matched", "method": method, "auc": auc,
                "auc_ci": list(ci), **({"paired": paired} if paired else {})}

    rows = [row(LEARNED, 0.424, (0.311, 0.529), {GRADIENT: {"delta": 0.41, "ci": [0.29, 0.52]},
                                                  "contrast (std)": {"delta": 0.2, "ci": [0.05, 0.3]}}),
            row(GRADIENT, 0.015, (0.001, 0.037)), row("contrast (std)", 0.3, (0.2, 0.52))]
    (per,) = controls_verdict(rows)["per_negatives"]
    assert per["beats"] == [GRADIENT, "contrast (std)"]
    assert ("(gradient energy is below chance here, ranking these images above the concept's: beating it alone does "
            "not show the unit tells the two apart)") in per["sentence"]
    assert "contrast (std) is below" not in per["sentence"]         # its interval reaches 0.52: not below chance
    rows[1] = row(GRADIENT, 0.3, (0.2, 0.45))
    rows[2] = row("contrast (std)", 0.3, (0.2, 0.49))
    assert "(gradient energy and contrast (std) are below chance here" in controls_verdict(rows)["per_negatives"][0][
        "sentence"]


def test_beats_reads_the_paired_difference_not_the_baselines_interval_alone():
    """A unit at chance, 0.508 [0.486, 0.546], does not "beat" mean intensity fixed at 0.500 [0.500, 0.500] on
    upside-down faces (rbm-digits), in a sentence that gives the paired difference +0.01 [-0.01, +0.05]."""
    def row(method, auc, ci, paired=None):
        r = {"negatives": "upside_down", "level": "low-level matched", "method": method, "auc": auc, "auc_ci": list(ci)}
        return {**r, "paired": paired} if paired else r

    paired = {"mean intensity": {"delta": 0.008, "ci": [-0.014, 0.046]}, TWIN: {"delta": 0.2, "ci": [0.12, 0.28]},
              PIXEL: {"delta": -0.1, "ci": [-0.17, -0.03]}}
    rows = [row(LEARNED, 0.508, (0.486, 0.546), paired), row("mean intensity", 0.5, (0.5, 0.5)),
            row(TWIN, 0.308, (0.25, 0.36)), row(PIXEL, 0.608, (0.55, 0.66))]
    (per,) = controls_verdict(rows)["per_negatives"]
    assert per["not_separated"] == ["mean intensity"] and per["beats"] == [TWIN] and per["loses_to"] == [PIXEL]
    assert per["above_interval_of"] == ["mean intensity", TWIN]        # the one-sided reading, kept apart
    unpaired = controls_verdict([row(LEARNED, 0.508, (0.486, 0.546)), row("mean intensity", 0.5, (0.5, 0.5))])
    assert unpaired["per_negatives"][0]["not_separated"] == ["mean intensity"]   # 0.500 inside the unit's interval


def test_a_unit_that_beats_no_baseline_is_said_by_what_it_is():
    """Each clause is said where it names a baseline: else a unit inside mean intensity's interval opens "beats no
    baseline; is not separated from mean intensity ...", and one with no baseline row says only "beats no baseline"."""
    def row(method, auc, ci):
        return {"negatives": "upside_down", "level": "low-level matched", "method": method, "auc": auc, "auc_ci": list(ci)}

    (said,) = controls_verdict([row(LEARNED, 0.508, (0.486, 0.546)), row("mean intensity", 0.5, (0.5, 0.5))])["sentences"][1:]
    assert "the learned unit (AUC 0.508 [0.486, 0.546]) is not separated from mean intensity (0.500 [0.500, 0.500])." in said
    assert "beats" not in said
    (alone,) = controls_verdict([row(LEARNED, 0.508, (0.486, 0.546))])["sentences"][1:]
    assert "the learned unit (AUC 0.508 [0.486, 0.546]) has no baseline row to compare with." in alone

def test_a_paired_interval_beside_beats_never_reads_as_touching_zero():
    """A run's spectrum-matched row "beats gradient energy" with the paired difference +0.12 [+0.00, +0.23] (its lower
    end 0.0028, rounded to two decimals): the words said above 0, the numbers seemed to say it reached 0."""
    rows = [{"negatives": "spectrum_matched_crops", "level": "low-level matched", "method": LEARNED, "auc": 0.595,
             "auc_ci": [0.49, 0.698], "paired": {GRADIENT: {"delta": 0.1202, "ci": [0.0028, 0.2302]},
                                                 TWIN: {"delta": 0.0784, "ci": [-0.0226, 0.0004]}}},
            {"negatives": "spectrum_matched_crops", "level": "low-level matched", "method": GRADIENT, "auc": 0.475,
             "auc_ci": [0.427, 0.515]},
            {"negatives": "spectrum_matched_crops", "level": "low-level matched", "method": TWIN, "auc": 0.516,
             "auc_ci": [0.408, 0.622]}]
    verdict = controls_verdict(rows)
    (per,) = verdict["per_negatives"]
    assert per["beats"] == [GRADIENT] and per["not_separated"] == [TWIN]
    sentence = verdict["sentences"][-1]
    assert "minus gradient energy's +0.12 [+0.003, +0.23]" in sentence
    assert f"minus {TWIN}'s +0.08 [-0.02, +0.0004]" in sentence


def test_a_paired_difference_near_zero_is_kept_off_zero_as_its_intervals_ends_are():
    """The interval's ends got up to 4 decimals to stay off 0, the difference beside them kept 2: a unit that beats
    gradient energy by 0.0041 [0.0018, 0.0066] read "+0.00 [+0.002, +0.01]", its value outside its own interval."""
    rows = [{"negatives": "spectrum_matched_crops", "level": "low-level matched", "method": LEARNED, "auc": 0.595,
             "auc_ci": [0.49, 0.698], "paired": {GRADIENT: {"delta": 0.0041, "ci": [0.0018, 0.0066]}}},
            {"negatives": "spectrum_matched_crops", "level": "low-level matched", "method": GRADIENT, "auc": 0.591,
             "auc_ci": [0.48, 0.69]}]
    verdict = controls_verdict(rows)
    assert verdict["per_negatives"][0]["beats"] == [GRADIENT]
    assert "minus gradient energy's +0.004 [+0.002, +0.01]" in verdict["sentences"][-1]


def test_below_the_no_faces_interval_mirrors_above_it_in_the_json_and_the_sentence():
    """below_interval_of counts the unit's AUC below the baseline's interval (0.60 < 0.62), as docs/analysis.md does;
    reading the unit's interval against the baseline's AUC (0.68 is not above 0.70: not below) counts 20 of 96 against
    24 on the same 24 main jobs."""
    def row(negatives, method, auc, ci, paired=None):
        r = {"negatives": negatives, "level": "low-level matched", "method": method, "auc": auc, "auc_ci": list(ci)}
        return {**r, "paired": paired} if paired else r

    paired = {NO_FACES: {"delta": -0.08, "ci": [-0.15, -0.01]}}
    rows = [row("upside_down", LEARNED, 0.60, (0.50, 0.70), paired), row("upside_down", NO_FACES, 0.68, (0.62, 0.74)),
            row("phase_scrambled", LEARNED, 0.80, (0.72, 0.88), paired), row("phase_scrambled", NO_FACES, 0.70, (0.60, 0.78)),
            row("block_shuffled", LEARNED, 0.70, (0.60, 0.80), paired), row("block_shuffled", NO_FACES, 0.72, (0.60, 0.80))]
    verdict = controls_verdict(rows)
    per = {p["negatives"]: p for p in verdict["per_negatives"]}
    assert per["upside_down"]["below_interval_of"] == [NO_FACES] and per["upside_down"]["above_interval_of"] == []
    assert per["phase_scrambled"]["above_interval_of"] == [NO_FACES] and per["phase_scrambled"]["below_interval_of"] == []
    assert per["block_shuffled"]["above_interval_of"] == per["block_shuffled"]["below_interval_of"] == []
    assert ("above the upper end of that network's interval on 1 of 3 (phase-scrambled faces) and below its lower end "
            "on 1 (upside-down faces)") in verdict["sentences"][0]


def test_a_sentence_that_beats_the_twin_paired_but_misses_the_criterion_says_why():
    """The paired interval is usually the narrower: "beats random weights ... Criterion not met." alone gives no
    reason."""
    def row(method, auc, ci):
        return {"negatives": "upside_down", "level": "low-level matched", "method": method, "auc": auc, "auc_ci": list(ci)}

    unit = {**row(LEARNED, 0.62, (0.57, 0.67)), "paired": {TWIN: {"delta": 0.03, "ci": [0.01, 0.05]}}}
    (per,) = controls_verdict([unit, row(TWIN, 0.59, (0.54, 0.64))])["per_negatives"]
    assert per["beats"] == [TWIN] and not per["passes"]
    assert (f'Criterion not met: its AUC 0.620 is not above the upper end of the interval of "{TWIN}" (0.640)'
            in per["sentence"])


def test_a_unit_that_cannot_tell_the_faces_from_a_control_does_not_pass_however_low_the_baselines():
    """Baselines can sit below 0.5 on a control (gradient energy at 0.01 on block-shuffled faces): a unit at 0.45
    [0.33, 0.57] cleared the twin's 0.40, the pixel's 0.41 and gradient energy's 0.02, and read 'Criterion met'."""
    def row(method, auc, ci):
        return {"negatives": "block_shuffled", "level": "low-level matched", "method": method, "auc": auc, "auc_ci": list(ci)}

    rows = [row(LEARNED, 0.45, (0.33, 0.57)), row(TWIN, 0.28, (0.18, 0.40)), row(PIXEL, 0.41, (0.30, 0.52)),
            row(GRADIENT, 0.02, (0.00, 0.05))]
    v = controls_verdict(rows)
    assert not v["per_negatives"][0]["passes"] and "Criterion not met" in v["per_negatives"][0]["sentence"]
    assert "its own interval above 0.5" in v["criterion"]
    assert v["criterion"].startswith(f'AUC above the upper end of the interval of "{TWIN}" (the random twin) and above '
                                     f"the AUCs of {PIXEL} and {GRADIENT}, and its own interval above 0.5")
    rows[0] = row(LEARNED, 0.70, (0.58, 0.81))               # the same bars, a unit that tells them apart: a pass
    assert controls_verdict(rows)["per_negatives"][0]["passes"]


def test_the_summary_says_on_how_many_passes_the_paired_intervals_also_separate_the_unit():
    """The summary counted passes of the criterion, which reads point AUCs: a pass at +0.07 [-0.06, +0.19] over best
    pixel would read as "meets the criterion" with nothing to say the paired interval reaches below 0."""
    def row(negatives, method, auc, ci, paired=None):
        r = {"negatives": negatives, "level": "low-level matched", "method": method, "auc": auc, "auc_ci": list(ci)}
        return {**r, "paired": paired} if paired else r

    def control(negatives, pixel_ci):
        paired = {TWIN: {"delta": 0.2, "ci": [0.1, 0.3]}, PIXEL: {"delta": 0.07, "ci": pixel_ci},
                  GRADIENT: {"delta": 0.3, "ci": [0.2, 0.4]}}
        return [row(negatives, LEARNED, 0.75, (0.65, 0.85), paired), row(negatives, TWIN, 0.55, (0.45, 0.62)),
                row(negatives, PIXEL, 0.68, (0.58, 0.78)), row(negatives, GRADIENT, 0.45, (0.35, 0.55))]

    v = controls_verdict(control("upside_down", [-0.06, 0.19]) + control("phase_scrambled", [0.01, 0.13]))
    assert all(p["passes"] for p in v["per_negatives"])
    assert v["sentences"][0] == (
        "On 2 of 2 low-level-matched controls the learned unit meets the criterion (upside-down faces, phase-scrambled "
        f"faces), which compares point AUCs; the paired intervals also put it above the random-weights twin, {PIXEL} and "
        f"{GRADIENT} on 1 of those 2 (phase-scrambled faces); they leave it not separated from {PIXEL} on the others.")
    assert "paired rule" in v["criterion"]
    v = controls_verdict(control("upside_down", [-0.06, 0.19]))
    assert v["sentences"][0].endswith(f"which compares point AUCs; the paired intervals do not put it above the "
                                      f"random-weights twin, {PIXEL} and {GRADIENT} there; they leave it not separated "
                                      f"from {PIXEL}.")
    # one pass that the paired rule keeps too: "there", not "on 1 of those 1 (the control named again)" (as a main job's
    # summary read)
    v = controls_verdict(control("phase_scrambled", [0.01, 0.13]))
    assert v["sentences"][0].endswith(f"(phase-scrambled faces), which compares point AUCs; the paired intervals also "
                                      f"put it above the random-weights twin, {PIXEL} and {GRADIENT} there.")


def test_a_control_without_a_bar_of_the_criterion_does_not_pass_it():
    """A negative set with no gradient-energy row does not pass the criterion (as a missing twin row misses it): else
    that bar is skipped, and the summary says the paired intervals leave the unit "not separated from gradient
    energy", a baseline it has no row for."""
    rows = [{"negatives": "phase_scrambled", "level": "low-level matched", "method": LEARNED, "auc": 0.9,
             "auc_ci": [0.85, 0.95], "paired": {TWIN: {"delta": 0.3, "ci": [0.2, 0.4]},
                                                PIXEL: {"delta": 0.3, "ci": [0.2, 0.4]}}},
            {"negatives": "phase_scrambled", "level": "low-level matched", "method": TWIN, "auc": 0.6,
             "auc_ci": [0.5, 0.7]},
            {"negatives": "phase_scrambled", "level": "low-level matched", "method": PIXEL, "auc": 0.6,
             "auc_ci": [0.5, 0.7]}]
    v = controls_verdict(rows)
    assert not v["per_negatives"][0]["passes"]
    assert f"Criterion not met: no {GRADIENT} row to compare with." in v["per_negatives"][0]["sentence"]
    assert v["sentences"][0] == "On 0 of 1 low-level-matched controls the learned unit meets the criterion."
    # without the twin's row the label is quoted: its comma read "no random weights, same architecture row"
    v = controls_verdict([row for row in rows if row["method"] != TWIN])
    assert f'no "{TWIN}" row to compare with' in v["per_negatives"][0]["sentence"]


class MemorisingModel(FeatureModel):
    """Unit 0 knows lfw's training part by heart: +5 on its faces, -5 on its non-faces, noise on any
    other image (held-out faces, their controls). Units 1-3: noise. A leak of training images into
    the test would show as an AUC above 0.5."""

    def __init__(self):
        super().__init__()
        self.input_shape = (1, 25, 25)
        train = lfw_split(size=25)["train"]
        self.register_buffer("known", train.x.reshape(len(train.y), -1))
        self.register_buffer("label", train.y.float() * 10 - 5)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(len(x), -1)
        distance, nearest = torch.cdist(flat.double(), self.known.double()).min(dim=1)
        noise = torch.sin(flat.sum(dim=1, keepdim=True).double() * torch.arange(1, 5, dtype=torch.float64) * 97.0)
        out = noise.clone()
        seen = distance < 1e-3                         # cdist of an image with itself: ~1e-6, not 0
        out[seen, 0] = self.label[nearest[seen]].double()
        return out.float()


def test_chosen_on_the_training_part_a_memorised_unit_scores_chance_on_held_out_images():
    result = face_controls(MemorisingModel(), BrightnessModel(), layer=None, input_shape=(1, 25, 25), prepare=None,
                           **FAST)
    assert result["select"] == "train" and result["split_seeds"] == []
    assert result["faces"] == 30 and result["negatives"]["lfw_nonfaces"]["images"] == 30   # the held-out ones only
    for negatives in ("lfw_nonfaces", "phase_scrambled", "upside_down", "block_shuffled", "spectrum_matched_crops"):
        row = _rows(result["rows"], negatives)[LEARNED]
        assert row["unit"] == 0 and row["selection_auc"] == 1.0 and row["splits"] == 1
        assert row["test_positives"] == 30 and row["test_negatives"] == 30      # every held-out face, every negative
        if negatives == "lfw_nonfaces":
            assert row["auc_ci"][0] < 0.5 < row["auc_ci"][1], negatives
        else:   # a control keeps its face's sum, so nearly its noise: two faces' pairs cancel, and the AUC is 0.5 but
            # for the own pairs' 1/30 share, interval and all (phase-scrambled: 0.4956 [0.4914, 0.4994])
            assert 0.49 < row["auc_ci"][0] <= row["auc"] <= row["auc_ci"][1] < 0.51, negatives
        assert row["accuracy_ci"][0] <= 0.5 <= row["accuracy_ci"][1], negatives   # noise: all on one side of ±5


def test_chosen_per_held_out_split_the_test_has_half_the_faces_and_every_split():
    result = face_controls(PlantedModel((1, 25, 25)), PlantedModel((1, 25, 25), seed=3), layer=None,
                           input_shape=(1, 25, 25), prepare=None, select="heldout", **FAST)
    assert result["select"] == "heldout" and result["split_seeds"] == FAST["seeds"]
    row = _rows(result["rows"], "upside_down")[LEARNED]
    assert row["splits"] == len(FAST["seeds"]) and row["test_positives"] == 15
    # one network, several splits: its unit index names one unit (a cross-fit's folds' rows have none)
    assert isinstance(row["unit"], int) and row["unit_share"] > 0
    with pytest.raises(ValueError, match="select"):
        face_controls(PlantedModel((1, 25, 25)), PlantedModel((1, 25, 25)), layer=None, input_shape=(1, 25, 25),
                      prepare=None, select="everything", **FAST)


def test_weighted_accuracy_is_the_balanced_accuracy_of_the_resampled_images():
    rng = np.random.default_rng(0)
    hit_pos, hit_neg = rng.random((2, 7)) < 0.6, rng.random((2, 9)) < 0.4
    w_pos, w_neg = rng.integers(0, 3, (4, 7)).astype(float) + 0.0, rng.integers(0, 3, (4, 9)).astype(float)
    w_pos[:, 0] += 1
    w_neg[:, 0] += 1
    got = weighted_accuracy(hit_pos, hit_neg, w_pos, w_neg)                       # (methods, B)
    for m in range(2):
        for b in range(4):
            p = np.repeat(hit_pos[m], w_pos[b].astype(int))
            q = np.repeat(hit_neg[m], w_neg[b].astype(int))
            assert got[m, b] == pytest.approx(0.5 * (p.mean() + q.mean()))


def test_paired_differences_use_the_same_replicates_for_both_methods():
    rng = np.random.default_rng(3)
    y = np.repeat([1, 0], 30)
    base = rng.standard_normal(len(y)) + 0.8 * y
    better = base + 0.3 * y                                       # the same images, a little more apart
    scores = {"a": better[:, None], "b": base[:, None], "same": better[:, None].copy()}
    splits = [(np.arange(0, 60, 2), np.arange(1, 60, 2))]
    rows = score_controls(scores, y, {"non-faces": np.flatnonzero(y == 0)}, np.arange(len(y)), splits,
                          replicates=400, paired="a")
    a, b = rows[0], rows[1]
    assert "paired" in a and "paired" not in b
    assert a["paired"]["same"] == {"delta": 0.0, "ci": [0.0, 0.0]}
    delta = a["paired"]["b"]
    assert delta["delta"] == pytest.approx(a["auc"] - b["auc"]) and delta["delta"] > 0
    assert delta["ci"][0] >= 0.0                                   # b never beats a on the same replicate
    assert delta["ci"][1] - delta["ci"][0] < 0.8 * (b["auc_ci"][1] - b["auc_ci"][0])   # 0.25 against 0.40 here


def _localizer_case() -> tuple[np.ndarray, np.ndarray, dict, np.ndarray, list]:
    """Unit 0 tells faces from non-faces perfectly and from their controls not at all (brightness);
    unit 1 tells faces a little less well from non-faces and well from their controls (a face unit)."""
    y, select, test = _sources(40)
    faces = np.flatnonzero(y == 1)
    source = np.concatenate([np.arange(len(y)), faces])                 # one control per face
    is_face = np.r_[y, np.zeros(len(faces))].astype(bool)
    rng = np.random.default_rng(0)
    scores = np.stack([np.where(np.r_[y, np.ones(len(faces))] == 1, 3.0, 0.0) + rng.uniform(0, 1, len(source)),
                       np.where(is_face, 2.0, 0.0) + rng.standard_normal(len(source))], axis=1)
    negatives = {"non-faces": np.flatnonzero(y == 0), "controls": np.arange(len(y), len(source))}
    return y, source, negatives, scores, [(select, test)]


def test_the_localizer_chooses_the_unit_that_tells_faces_from_their_controls():
    y, source, negatives, scores, splits = _localizer_case()
    plain = _rows(score_controls({"u": scores}, y, negatives, source, splits, replicates=200), "controls")["u"]
    assert plain["unit"] == 0 and plain["selection_auc"] == 1.0 and abs(plain["auc"] - 0.5) < 0.15
    localized = score_controls({"u": scores}, y, negatives, source, splits, replicates=200, localizer=("controls",))
    row = _rows(localized, "controls")["u"]
    assert row["unit"] == 1 and row["selection_auc"] < 1.0 and row["auc"] > 0.8     # chosen on selection, held on test
    assert row["test_positives"] == 20 and row["test_negatives"] == 20               # the test set is unchanged
    criterion, sign = ranking(scores[splits[0][0]], y[splits[0][0]])
    assert np.array_equal(criterion, np.abs(auc_scores(scores[splits[0][0]], y[splits[0][0]]) - 0.5))
    assert sign.tolist() == [1, 1]
    # The headroom diagnostic ranks units as the choice did: the face unit is first with the localizer.
    plain_room, = headroom([scores], y, negatives, source, splits, ("controls",))
    room, = headroom([scores], y, negatives, source, splits, ("controls",), localizer=("controls",))
    assert plain_room["best_unit"] == 1 and plain_room["best_rank"] == 2
    assert room["chosen_unit"] == 1 and room["best_rank"] == 1 and room["units_above_chosen"] == 0


@pytest.mark.parametrize("localizer", [(), ("controls",)], ids=["faces vs non-faces", "localizer"])
def test_a_nan_or_dead_unit_is_never_chosen(localizer):
    # an all-NaN unit scored AUC 0 and won "against" (selection AUC 1.0); one NaN made a localizer
    # criterion NaN, which argmax picks; a dead unit's 0.5 beat real units on a localizer's worst AUC
    y, source, negatives, scores, splits = _localizer_case()
    nan_unit = np.full(len(source), np.nan)
    one_nan = scores[:, 1].copy()
    one_nan[splits[0][0][0]] = np.nan                                               # on one selection image
    dead = np.full(len(source), 0.25)
    padded = np.column_stack([nan_unit, one_nan, dead, scores[:, 1]])
    row = _rows(score_controls({"u": padded}, y, negatives, source, splits, replicates=50, localizer=localizer),
                "controls")["u"]
    assert row["unit"] == 3 and 0.5 < row["selection_auc"] < 1.0
    with pytest.raises(ValueError, match="no candidate of 2 can be chosen"):
        score_controls({"u": np.column_stack([nan_unit, dead])}, y, negatives, source, splits, replicates=10,
                       localizer=localizer)
    on_test = scores.copy()
    on_test[negatives["controls"][-1], :] = np.nan                                  # a test image: said, not scored as 0
    with pytest.raises(ValueError, match="responds non-finite to 1 test image"):
        score_controls({"u": on_test}, y, negatives, source, splits, replicates=10, localizer=localizer)


def test_the_folds_sizes_are_each_recorded_when_they_differ():
    y, source, negatives, scores, _ = _localizer_case()
    faces, others = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    folds = [np.r_[faces[i::3], others[i::3]] for i in range(3)]                    # 14, 13, 13 faces
    splits = [(np.setdiff1d(np.arange(len(y)), f), f) for f in folds]
    row = _rows(score_controls({"u": scores}, y, negatives, source, splits, replicates=20), "controls")["u"]
    assert row["test_positives_range"] == [13, 14] and row["test_positives"] == 14


def test_the_localizer_needs_controls_built_from_the_selection_faces():
    y, source, negatives, scores, splits = _localizer_case()
    test_only = np.isin(source, splits[0][1])
    negatives = {**negatives, "controls": negatives["controls"][test_only[negatives["controls"]]]}
    with pytest.raises(ValueError, match="'controls'.*selection image of split 0"):
        score_controls({"u": scores}, y, negatives, source, splits, replicates=10, localizer=("controls",))


def test_with_the_localizer_the_training_faces_get_controls_and_the_test_keeps_its_own():
    result = face_controls(PlantedModel((1, 25, 25)), PlantedModel((1, 25, 25), seed=3), layer=None,
                           input_shape=(1, 25, 25), prepare=None, choice="localizer", **FAST)
    assert result["choice"] == "localizer" and result["faces"] == 30
    for name in ("phase_scrambled", "upside_down", "block_shuffled", "spectrum_matched_crops"):
        assert result["negatives"][name]["images"] == 30                              # built from test faces
        assert _rows(result["rows"], name)[LEARNED]["test_negatives"] == 30
    per_split = face_controls(PlantedModel((1, 25, 25)), PlantedModel((1, 25, 25), seed=3), layer=None,
                              input_shape=(1, 25, 25), prepare=None, choice="localizer", select="heldout", **FAST)
    row = _rows(per_split["rows"], "upside_down")[LEARNED]                            # each split's own controls
    assert row["splits"] == len(FAST["seeds"]) and row["test_positives"] == 15 and row["test_negatives"] == 15
    with pytest.raises(ValueError, match="choice"):
        face_controls(PlantedModel((1, 25, 25)), PlantedModel((1, 25, 25)), layer=None, input_shape=(1, 25, 25),
                      prepare=None, choice="peeking", **FAST)


def test_the_localizer_sees_only_the_controls_of_the_selection_faces():
    """Unit 0 tells faces from non-faces well and from the controls of *test* faces only; unit 1 tells
    faces from non-faces a little (AUC ~0.64) and from the controls of *selection* faces perfectly.
    Honestly chosen, unit 1's worst selection AUC (~0.64) beats unit 0's (~0.5), and it scores chance
    on the test's controls. A localizer that also saw the test's controls would rate unit 0 at ~0.75
    and unit 1 at ~0.64, choose unit 0 and score it ~1 on the test."""
    y, select, test = _sources(100)
    faces = np.flatnonzero(y == 1)
    source = np.concatenate([np.arange(len(y)), faces])                  # one control per face
    face_like = np.r_[y, np.ones(len(faces))] == 1                        # faces and their controls
    offset = np.where(face_like, 1.0, 0.0)[:, None] * [2.0, 0.15]          # (M, 2)
    scores = np.random.default_rng(1).uniform(0, 1, (len(source), 2)) + offset
    control = np.arange(len(y), len(source))
    scores[control[np.isin(faces, test)], 0] -= 2.0
    scores[control[np.isin(faces, select)], 1] -= 2.0
    negatives = {"non-faces": np.flatnonzero(y == 0), "controls": control}
    row = _rows(score_controls({"u": scores}, y, negatives, source, [(select, test)], replicates=100,
                               localizer=("controls",)), "controls")["u"]
    assert row["unit"] == 1 and abs(row["auc"] - 0.5) < 0.15


def test_many_small_folds_keep_a_finite_interval():
    """With 50 folds of 2 faces, every bootstrap replicate leaves some fold's faces without weight: such a fold sits
    out that replicate (else its AUC is NaN, the replicate dropped, and the interval NaN)."""
    from downpour.data import lfw_indices

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(100), np.zeros(100)].astype(int)
    scores = rng.normal(size=(200, 4))
    scores[y == 1, 0] += 1.0                                  # a planted selective unit
    intervals = {}
    for folds in (5, 50):
        splits = [(lfw_indices((i, folds))["train"], lfw_indices((i, folds))["heldout"]) for i in range(folds)]
        row = score_controls({"m": scores}, y, {"lfw": np.arange(100, 200)}, np.arange(200), splits,
                             replicates=500, seed=0)[0]
        low, high = row["auc_ci"]
        assert np.isfinite(low) and low < row["auc"] < high, (folds, row)
        intervals[folds] = high - low
    assert 0.5 < intervals[50] / intervals[5] < 2.0               # the same 100 faces: about as wide


class _BrokenLayer(PlantedModel):
    """A planted model with one more layer whose every unit responds NaN (one NaN weight spread by LCN)."""

    def feature_layers(self) -> list[str]:
        return ["codes", "broken"]

    def features(self, x: Tensor, layer: str | None = None) -> Tensor:
        codes = self(x)
        return torch.full_like(codes, float("nan")) if layer == "broken" else codes


def test_a_layer_of_non_finite_units_is_a_row_not_measured_not_a_failed_analysis():
    model, twin = _BrokenLayer((1, 16, 16)), _BrokenLayer((1, 16, 16), seed=3)
    test = face_controls(model, twin, layer="codes", input_shape=(1, 16, 16), prepare=None, other_layers=["broken"],
                         **{**FAST, "seeds": [0]})
    codes, broken = test["by_layer"]
    assert codes["layer"] == "codes" and len(codes["negatives"]) == 5
    assert broken["negatives"] == [] and "no candidate of 12 can be chosen" in broken["not_measured"]
    with pytest.raises(ValueError, match="the face test on layer 'broken': no candidate"):
        face_controls(model, twin, layer="broken", input_shape=(1, 16, 16), prepare=None, **{**FAST, "seeds": [0]})


class _DoubledLayer(PlantedModel):
    """A planted model with one more layer holding every unit twice: each choice there is a 2-unit tie."""

    def feature_layers(self) -> list[str]:
        return ["codes", "doubled"]

    def features(self, x: Tensor, layer: str | None = None) -> Tensor:
        codes = self(x)
        return torch.cat([codes, codes], dim=1) if layer == "doubled" else codes


def test_each_layers_row_keeps_its_learned_units_tie_as_the_face_test_rows_do():
    """The by-layer rows computed each layer's ``undecided`` and ``tie_spread_limit`` and kept neither."""
    model, twin = _DoubledLayer((1, 16, 16)), _DoubledLayer((1, 16, 16), seed=3)
    test = face_controls(model, twin, layer="codes", input_shape=(1, 16, 16), prepare=None, other_layers=["doubled"],
                         **{**FAST, "seeds": [0]})
    codes, doubled = test["by_layer"]
    learned = {r["negatives"]: r for r in test["rows"] if r["method"] == LEARNED}
    for c in codes["negatives"]:               # the analysed layer's: its rows' own
        keys = ("undecided", "tie_spread_limit", "tie_rule")
        assert tuple(c[k] for k in keys) == tuple(learned[c["negatives"]][k] for k in keys)
    for c in doubled["negatives"]:             # a unit and its copy: tied, and alike on every test and replicate
        assert c["undecided"] is False and c["tie_spread_limit"] == 0.0 and c["tie_rule"] == "pooled bootstrap range"


def test_the_localizer_tests_on_the_same_controls_as_the_default_choice():
    """The localizer built the controls of all 100 faces from one stream, so the 30 tested faces' phase scrambles,
    block orders and crops were other draws than under the default choice, and the documented fixed-split
    comparison of the two choices mixed their difference with control-draw noise."""
    model, twin = PlantedModel((1, 16, 16)), PlantedModel((1, 16, 16), seed=3)
    args = dict(layer=None, input_shape=(1, 16, 16), prepare=None, seeds=[0], replicates=50, n_random_filters=20,
                select="train", control_draws=2)
    a = face_controls(model, twin, **args)
    b = face_controls(model, twin, **args, choice="localizer")
    one = [(ra["negatives"], ra["auc"], rb["auc"]) for ra, rb in zip(a["rows"], b["rows"])
           if ra["method"] == GRADIENT]          # one candidate: the same rule either way, so the same scores
    assert one and all(x == y for _, x, y in one)


@pytest.mark.parametrize("nan_where", ["everywhere", "controls"])
def test_the_headroom_never_takes_a_unit_that_is_not_finite_for_the_best(nan_where):
    """An all-NaN unit scored selection AUC 0, so its sign flipped and its worst test AUC read 1.0: the 'best unit'
    the docs read as a face unit the choice passed over."""
    y, source, negatives, scores, splits = _localizer_case()
    bad = np.full((len(source), 1), np.nan)
    if nan_where == "controls":
        bad[: len(y), 0] = np.random.default_rng(1).standard_normal(len(y))
    room, = headroom([np.concatenate([scores, bad], axis=1)], y, negatives, source, splits, ("controls",))
    assert room["best_unit"] == 1 and room["best_worst"] < 1.0


def test_a_statistic_a_control_keeps_up_to_float_noise_ties_with_it():
    """A control's mean intensity equals its face's up to float32 rounding (computed along another path): those pairs
    are ties, so every replicate is as if the control were its face; they scored 1 or 0 on the noise's sign (a
    4-image concept read 0.500 [0.239, 0.743]). Responses 1e-5 apart stay distinct."""
    from downpour.analysis.controls import comparisons, weighted_auc

    rng = np.random.default_rng(0)
    faces = rng.uniform(0.2, 0.8, 4)
    controls = faces * (1 + rng.choice([-3e-7, 3e-7], 4))           # each face's own control, a few ulps apart
    h = comparisons(faces[None], controls[None])                   # (1, 4, 4)
    own = np.eye(4, dtype=bool)
    assert np.all(h[0][own] == 0.5)
    w = rng.multinomial(4, np.full(4, 0.25), size=200).astype(float)
    auc = weighted_auc(h, w, w, own)[0]
    same = np.isclose(auc, weighted_auc(comparisons(faces[None], faces[None]), w, w, own)[0])
    assert same.all()                                              # as if the control were its face exactly
    assert comparisons(np.array([0.50001]), np.array([0.5]))[0, 0] == 1.0


def test_the_recorded_bootstrap_seed_and_stream_redraw_the_intervals_the_test_gave(monkeypatch):
    """The record must name the draw actually used: the stream it writes, evaluated from the seed it writes, gives
    every row's interval again, and another of the seed's streams gives other intervals (a record naming the
    wrong seed or stream, or the split seed the test was given, would fail here). Seed 7, not the default 0."""
    import downpour.analysis.face_controls as fc

    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return score_controls(*args, **kwargs)

    monkeypatch.setattr(fc, "score_controls", spy)
    got = face_controls(BrightnessModel(), BrightnessModel(), layer=None, input_shape=(1, 25, 25), prepare=None,
                        seeds=[0, 1], replicates=200, n_random_filters=20, seed=7)
    record = got["bootstrap"]
    assert record["seed"] == 7 and record["replicates"] == 200
    args, kwargs = calls[0]                                     # the analysed layer's scoring

    def intervals(stream: str) -> list:
        again = score_controls(*args, **{**kwargs, "seed": eval(stream, {"numpy": np, "seed": record["seed"]})})
        return [(r["negatives"], r["method"], r["auc_ci"]) for r in again]

    given = [(r["negatives"], r["method"], r["auc_ci"]) for r in got["rows"]]           # what the test reported
    assert intervals(record["stream"]) == given
    assert intervals(record["stream"].replace("spawn(3)[1]", "spawn(3)[2]")) != given
