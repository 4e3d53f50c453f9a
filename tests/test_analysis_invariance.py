"""Invariance curves: the warps move content the way they say, and curves are 1 at the identity."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from downpour.analysis.invariance import invariance_curves, invariance_summary, sweep, transform
from downpour.analysis.invariance_widths import tied_summary
from downpour.analysis.report_invariance import invariance_rows, selectivity_rows, tied_invariance
from downpour.errors import DataError
from downpour.models.base import FeatureModel
from test_analysis_invariance_sweep import OLD_SWEEP
from test_analysis_planted import PlantedModel


def _dot(side=9, at=(4, 4)):
    x = torch.zeros(1, 1, side, side)
    x[0, 0, at[0], at[1]] = 1.0
    return x


def test_identity_and_shift():
    x = torch.rand(3, 2, 8, 8)
    assert torch.allclose(transform(x), x, atol=1e-5)
    moved = transform(_dot(at=(2, 3)), shift=(2.0, 1.0))
    assert moved[0, 0].argmax().item() == 3 * 9 + 5     # right by 2, down by 1


def test_scale_and_rotation_keep_the_centre():
    x = _dot()
    assert transform(x, angle=90.0)[0, 0].argmax().item() == 4 * 9 + 4
    assert transform(x, scale=2.0)[0, 0, 4, 4] > 0.2    # the centre stays, the dot grows
    with pytest.raises(ValueError, match="scale"):
        transform(x, scale=0.0)


@pytest.mark.parametrize("size", [(31, 31), (15, 31), (31, 15)])
def test_a_rotation_turns_pixels_on_an_image_of_any_shape(size):
    """The rotation turned affine_grid's coordinates, which run over [-1, 1] along each side: on a 15 x 31 image a
    dot 6 pixels right of the centre, turned 90 degrees, landed 3 pixels from it, smeared over 4 columns."""
    h, w = size
    x = torch.zeros(1, 1, h, w)
    x[0, 0, h // 2, w // 2 + 6] = 1.0                   # 6 pixels right of the centre pixel
    # (the border fill: on a 15 x 31 image a turn uncovers corners, which the mean fill sets to the dot's 1/465)
    turned = transform(x, angle=90.0, fill="border")[0, 0]   # clockwise as displayed: right of the centre -> below it
    assert divmod(turned.argmax().item(), w) == (h // 2 + 6, w // 2)
    assert turned.max() > 0.99 and turned.sum() == pytest.approx(1.0, abs=1e-4)
    moved = transform(x, shift=(-3.0, 2.0))[0, 0]        # shifts stay in pixels along each side
    assert divmod(moved.argmax().item(), w) == (h // 2 + 2, w // 2 + 3)


def test_the_images_are_warped_in_pixels_then_prepared_as_in_training():
    """The analysis once warped already-prepared (whitened) faces: the warp moved the preparation with them."""
    torch.manual_seed(0)
    model = PlantedModel((1, 16, 16), n_units=2)
    template = torch.zeros(1, 16, 16)
    template[0, 4:12, 6:10] = 1.0
    model.plant(0, template - template.mean())
    prepare = lambda t: t + template                               # noqa: E731  (a fixed, position-bound preparation)
    pixels = template.expand(4, 1, 16, 16) + 0.05 * torch.randn(4, 1, 16, 16)
    shifts = (-0.25, 0.0, 0.25)
    got = invariance_curves(model, pixels, 0, shifts=shifts, angles=(0.0,), scales=(1.0,), prepare=prepare)
    curve = next(c for c in got["curves"] if c["transform"] == "translation_x")
    r = lambda x: float(model(x)[:, 0].detach().double().mean())   # noqa: E731  (the planted unit's mean response)
    expected = [r(prepare(transform(pixels, shift=(f * 16, 0.0)))) / r(prepare(pixels)) for f in shifts]
    assert curve["response"] == pytest.approx(expected, rel=1e-6)
    old = invariance_curves(model, prepare(pixels), 0, shifts=shifts, angles=(0.0,), scales=(1.0,))
    old_curve = next(c for c in old["curves"] if c["transform"] == "translation_x")
    # in pixels the preparation stays where it is, and the unit keeps part of its response; warped with the
    # image (the old order) it leaves the unit's field too
    assert curve["response"][0] > 0.4 and curve["response"][2] > 0.4
    assert old_curve["response"][0] < 0 and old_curve["response"][2] < 0


def test_curves_are_one_at_the_identity_and_fall_off_for_a_template():
    torch.manual_seed(0)
    model = PlantedModel((1, 16, 16), n_units=3)
    template = torch.zeros(1, 16, 16)
    template[0, 4:12, 6:10] = 1.0                       # a bar in the middle
    model.plant(1, template - template.mean())
    images = template.expand(5, 1, 16, 16) + 0.05 * torch.randn(5, 1, 16, 16)
    result = invariance_curves(model, images, 1, shifts=(-0.375, 0.0, 0.375), angles=(0.0, 90.0), scales=(0.5, 1.0))
    assert result["normalised_to"] == "untransformed response"
    by_name = {c["transform"]: c for c in result["curves"]}
    assert set(by_name) == {"scale", "translation_x", "translation_y", "rotation"}
    for c in result["curves"]:
        identity = c["values"].index(1.0 if c["transform"] == "scale" else 0.0)
        assert c["response"][identity] == pytest.approx(1.0)
    assert by_name["rotation"]["response"][1] < 0.6     # a vertical bar turned flat no longer matches
    assert by_name["translation_x"]["response"][0] < 0.6
    assert result["out_of_plane_rotation"]["available"] is False
    assert invariance_summary(result)["ranges"]["rotation"] == [0.0, 0.0]


def test_summary_keeps_the_unbroken_range_around_the_identity():
    curve = {"transform": "rotation", "values": [-90.0, -45.0, 0.0, 45.0, 90.0], "response": [0.9, 0.3, 1.0, 0.7, 0.8]}
    assert invariance_summary({"curves": [curve]})["ranges"]["rotation"] == [0.0, 90.0]
    scale = {"transform": "scale", "values": [0.5, 2.0], "response": [1.0, 1.0]}         # no identity point
    assert invariance_summary({"curves": [scale]})["ranges"]["scale"] is None


def test_baseline_sets_the_zero_of_the_curve():
    model = PlantedModel((1, 8, 8), n_units=2)
    images = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        r0 = float(model(images)[:, 0].mean())
    result = invariance_curves(model, images, 0, baseline=r0 - 2.0, sign=1, shifts=(0.0,), angles=(0.0,), scales=(1.0,))
    assert all(c["response"] == pytest.approx([1.0]) for c in result["curves"])


def test_posed_images_give_the_out_of_plane_curve():
    torch.manual_seed(0)
    model = PlantedModel((1, 16, 16), n_units=2)
    template = torch.zeros(1, 16, 16)
    template[0, 4:12, 4:12] = 1.0                       # a face-on square
    model.plant(0, template - template.mean())
    cols = torch.arange(16.0)

    def turned(angle):                                  # the square seen at `angle`: narrower as it turns away
        half = 4 * abs(torch.cos(torch.tensor(angle * torch.pi / 180)))
        img = torch.zeros(1, 16, 16)
        img[0, 4:12] = ((cols - 7.5).abs() <= half).float()
        return img.expand(4, 1, 16, 16) + 0.01 * torch.randn(4, 1, 16, 16)

    poses = {a: turned(a) for a in (-80.0, -40.0, 0.0, 40.0, 80.0)}
    result = invariance_curves(model, poses[0.0], 0, poses=poses, shifts=(0.0,), angles=(0.0,), scales=(1.0,))
    curve = result["curves"][-1]
    assert curve["transform"] == "out_of_plane_rotation" and curve["values"] == [-80.0, -40.0, 0.0, 40.0, 80.0]
    assert curve["response"][2] == pytest.approx(1.0)
    assert curve["response"][0] < curve["response"][1] < 1.0 and curve["response"][4] < curve["response"][3] < 1.0
    assert result["out_of_plane_rotation"]["available"] is True
    assert invariance_summary(result)["ranges"]["out_of_plane_rotation"] == [-40.0, 40.0]
    with pytest.raises(DataError, match="frontal pose"):
        invariance_curves(model, poses[0.0], 0, poses={40.0: poses[40.0]})


class _BlobUnits(FeatureModel):
    """Unit 0: the strongest 3x3 blob anywhere (translation-invariant); unit 1: the blob at the centre only;
    unit 2: minus unit 1 (a unit the concept lowers)."""

    def __init__(self):
        super().__init__()
        self.input_shape = (1, 16, 16)

    def forward(self, x):
        m = F.conv2d(x, torch.ones(1, 1, 3, 3) / 9, padding=1)
        centre = m[:, 0, 7:9, 7:9].mean(dim=(1, 2))
        return torch.stack([m.amax(dim=(1, 2, 3)), centre, -centre], 1)


def test_a_translation_invariant_unit_spans_the_sweep_and_the_report_says_it_is_a_lower_bound():
    """The report's table gave bare numbers ("-6 … 6"): no unit (pixels, not the fraction of the side the
    sweep is set in) and no word that a range reaching the sweep's ends is only as wide as the sweep."""
    torch.manual_seed(0)
    blob = torch.zeros(6, 1, 16, 16)
    blob[:, 0, 6:10, 6:10] = 1.0
    blob += 0.01 * torch.rand_like(blob)
    model = _BlobUnits()
    every = invariance_curves(model, blob, 0, **OLD_SWEEP)      # (the new sweep runs on to where the blob is gone)
    every["summary"] = invariance_summary(every)
    assert every["summary"]["ranges"]["translation_x"] == [-6.0, 6.0]       # 0.375 of 16 pixels each way
    rows = dict(invariance_rows(every))
    assert rows["translation_x"] == "-6 … 6 pixels (the whole sweep: at least this)"
    assert rows["scale"] == "× 0.75 … × 4 (to the sweep's end: at least this far)"   # (× 2 while the sweep ended there)
    # analysis.json says so too (since 2026-12-05; only the report's words did): the range is a lower bound
    assert every["summary"]["censored"] == {"scale": True, "translation_x": True, "translation_y": True, "rotation": True}
    for unit, sign, baseline, width in ((1, 1, 0.0, 2), (2, -1, 0.0, 2), (2, -1, -0.1, 1)):   # tuned to one place
        centre = invariance_curves(model, blob, unit, sign=sign, baseline=baseline, **OLD_SWEEP)
        centre["summary"] = invariance_summary(centre)
        shift = next(c for c in centre["curves"] if c["transform"] == "translation_x")["response"]
        assert shift[5] == pytest.approx(1.0) and max(shift[0], shift[-1]) < 0.05
        # (a baseline 0.1 above the silent level: the half-height falls nearer the centre)
        assert dict(invariance_rows(centre))["translation_x"] == f"-{width} … {width} pixels"
        assert centre["summary"]["censored"]["translation_x"] is False


def test_a_range_is_censored_where_it_runs_to_either_end_of_the_sweep_and_not_otherwise():
    values = [0.25, 0.5, 1.0, 2.0, 4.0]
    for response, rng, ended in (([0.1, 0.6, 1.0, 0.7, 0.2], [0.5, 2.0], False), ([0.9, 0.6, 1.0, 0.7, 0.2], [0.25, 2.0], True),
                                 ([0.1, 0.6, 1.0, 0.7, 0.6], [0.5, 4.0], True), ([0.9, 0.6, 0.4, 0.7, 0.6], None, None)):
        got = invariance_summary({"curves": [{"transform": "scale", "values": values, "response": response}]})
        assert (got["ranges"]["scale"], got["censored"]["scale"]) == (rng, ended)


def test_the_tied_widths_count_the_units_whose_range_ran_to_the_sweeps_end():
    """The report's tied column gave a mean of widths, some of them lower bounds, as a measured mean."""
    torch.manual_seed(0)
    blob = torch.zeros(6, 1, 16, 16)
    blob[:, 0, 6:10, 6:10] = 1.0
    blob += 0.01 * torch.rand_like(blob)
    tied = tied_summary(sweep(_BlobUnits(), blob, [0, 1], [1, 1], [0.0, 0.0], **OLD_SWEEP))
    assert tied["widths"]["translation_x"]["censored"] == 1            # unit 0 spans the sweep, unit 1 falls off
    assert tied["widths"]["translation_x"]["measured"] == 2
    inv = {"summary": {"ranges": {"translation_x": [-6.0, 6.0]}}, "tied": tied}
    assert tied_invariance(inv)[0].endswith("over all 2, 1 of them to the sweep's end: the mean is at least this")


def test_a_shrink_is_blurred_first_so_fine_detail_does_not_alias():
    """Stripes 3 pixels apart shrunk to a quarter are finer than a pixel: they should fade to their mean (1/3).
    Bilinear sampling alone read 2 of every 4 pixels and drew stripes of 0 and 0.5 (std 0.24); the sweep did not go
    below 0.5x until 2026-12-05, where that sampling still reads every pixel."""
    x = torch.zeros(1, 1, 48, 48)
    x[..., ::3] = 1.0
    small = transform(x, scale=0.25)[0, 0, 19:29, 19:29]      # the shrunk image's inside, away from the repeated edges
    assert small.mean().item() == pytest.approx(1 / 3, abs=0.01) and small.std().item() < 0.01
    assert torch.allclose(transform(x, scale=1.0), x, atol=1e-5)                     # no blur at the identity


def test_the_report_says_which_way_the_unit_answers_and_why_a_unit_short_of_its_baseline_has_no_range():
    """The section said "normalised to the untransformed response above the unit's mean on the other class" of every
    unit: of one the concept lowers (ufldl-sae's unit 3 answers faces at 0.002, the other class at 0.039), and of a
    folder's unit that the concept's untransformed images left short of that mean (rings after 200 steps: curves
    divided by their largest value, and a table of bare "–" with no word why)."""
    from downpour.analysis.report import _invariance

    torch.manual_seed(0)
    blob = torch.zeros(6, 1, 16, 16)
    blob[:, 0, 6:10, 6:10] = 1.0
    blob += 0.01 * torch.rand_like(blob)
    model = _BlobUnits()
    lowered = invariance_curves(model, blob, 2, sign=-1, baseline=0.0)       # -centre: the blob lowers it
    lowered["summary"] = invariance_summary(lowered)
    said = _invariance({"invariance": lowered})
    assert "how far below the unit's mean on the other class" in said and "above" not in said
    assert "-2 … 2 pixels" in said
    raised = invariance_curves(model, blob, 1, sign=-1, baseline=0.0)       # chosen as lowered, but the blob raises it
    raised["summary"] = invariance_summary(raised)
    assert raised["normalised_to"] == "largest |mean response|" and set(raised["summary"]["ranges"].values()) == {None}
    said = _invariance({"invariance": raised})
    assert "on the untransformed images it is not below the unit's mean on the other class" in said
    assert "no range is read" in said and "<td>–</td>" not in said
    assert said.count("none: the unit is not below its baseline even at the identity") == 4


def test_a_poses_folder_named_like_a_built_in_set_is_read_as_the_folder(tmp_path, monkeypatch):
    """load_labelled takes ``digits`` for scikit-learn's digits, whose classes 0-9 read as ten angles: a poses folder
    of that name gave a curve over digits, not over the posed images."""
    import numpy as np
    from PIL import Image

    from downpour.analysis.poses import load_poses

    for angle in ("0", "40"):
        (tmp_path / "digits" / angle).mkdir(parents=True)
        Image.fromarray(np.full((16, 16), 128, dtype=np.uint8)).save(tmp_path / "digits" / angle / "a.png")
    monkeypatch.chdir(tmp_path)
    poses = load_poses("digits", (1, 16, 16), prepare=lambda t: t)
    assert sorted(poses) == [0.0, 40.0] and all(len(x) == 1 for x in poses.values())


@pytest.mark.parametrize("angles", [(), ("0",)])
def test_a_poses_folder_without_two_angle_sub_folders_asks_for_one_per_pose(tmp_path, angles):
    """An empty analysis.poses folder was refused with the labelled sets' words, "needs one sub-folder per class"."""
    from downpour.analysis.poses import load_poses
    from downpour.errors import ConfigError

    for angle in angles:
        (tmp_path / "poses" / angle).mkdir(parents=True)
    (tmp_path / "poses").mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match="one sub-folder per pose, named by its angle in degrees") as err:
        load_poses(str(tmp_path / "poses"), (1, 16, 16), prepare=lambda t: t)
    assert err.value.key == "analysis.poses" and "class" not in str(err.value)


@pytest.mark.parametrize("other", ["30", ".30"])
def test_a_poses_folder_whose_second_sub_folder_holds_no_image_is_refused(tmp_path, other):
    """Two sub-folders passed the count though one was empty or hidden (no pose to the labelled set): the folder read
    as the one pose 0, a one-point curve, without a word."""
    import numpy as np
    from PIL import Image

    from downpour.analysis.poses import load_poses
    from downpour.errors import ConfigError

    (tmp_path / "poses" / "0").mkdir(parents=True)
    (tmp_path / "poses" / other).mkdir()
    Image.fromarray(np.full((16, 16), 128, dtype=np.uint8)).save(tmp_path / "poses" / "0" / "a.png")
    with pytest.raises(ConfigError, match=r"one sub-folder per pose, .* found \['0'\] holding images") as err:
        load_poses(str(tmp_path / "poses"), (1, 16, 16), prepare=lambda t: t)
    assert err.value.key == "analysis.poses"


def _turn(low, values=None, transform="rotation"):
    """A curve over ``values`` (the default rotation sweep, -180 … 180) at 1 but for the angles ``low``, at 0."""
    from downpour.analysis.invariance import DEFAULT_ANGLES
    values = list(DEFAULT_ANGLES) if values is None else values
    return {"transform": transform, "values": values, "response": [0.0 if v in low else 1.0 for v in values],
            "auc": [0.5 if v in low else 0.9 for v in values]}


def test_a_rotation_range_goes_round_past_180_and_is_measured():
    """-180 and +180 degrees are one angle: a unit high everywhere but -67.5 … -30 holds from -15 up through 0, past 180
    and on to -90, 285 degrees, measured. Until 2026-12-05 the walk stopped at 180: -15 … 180, 195 degrees, a bound."""
    from downpour.analysis.invariance import selectivity_summary, whole_turn
    from downpour.studies.measure import censored_widths, range_widths
    curve = _turn({-67.5, -45.0, -30.0})
    summary = invariance_summary({"curves": [curve]})
    assert summary["ranges"]["rotation"] == [-15.0, 270.0] and summary["censored"]["rotation"] is False
    assert range_widths(summary["ranges"], (32, 32))["inv_rotation"] == 285.0
    assert censored_widths(summary["censored"], None, summary["ranges"]["rotation"])["inv_rotation"] == 0.0
    assert not whole_turn("rotation", summary["ranges"]["rotation"])
    sel = selectivity_summary({"curves": [curve]})          # the AUC's range goes round alike
    assert sel["ranges"]["rotation"] == [-15.0, 270.0] and sel["censored"]["rotation"] is False
    inv = {"curves": [curve], "summary": summary, "selectivity": sel}
    assert invariance_rows(inv) == [["rotation", "from -15 round through 180 to -90 degrees (285 wide: every angle but "
                                                  "those between -90 and -15)"]]
    assert selectivity_rows(inv)[0].startswith("from -15 round through 180 to -90 degrees (285 wide: every angle but")
    # every angle high: the walk meets itself, the whole turn as before (flagged, read "every angle")
    whole = invariance_summary({"curves": [_turn(set())]})
    assert whole["ranges"]["rotation"] == [-180.0, 180.0] and whole["censored"]["rotation"] is True
    inv = {"curves": [_turn(set())], "summary": whole}
    assert invariance_rows(inv) == [["rotation", "-180 … 180 degrees (every angle: the whole turn)"]]


def test_a_rotation_range_that_stops_at_180_is_measured_where_the_turn_goes_on_low():
    """High only on -15 … 180 (and -180, the same angle): the walk past 180 meets -157.5 low, so the range reads as
    before but is measured, not a bound. A sweep short of the whole turn (-90 … 90), or a shift, still stops at its
    ends."""
    from downpour.analysis.invariance import DEFAULT_ANGLES
    high = {v for v in DEFAULT_ANGLES if -15.0 <= v <= 180.0 or v == -180.0}
    curve = _turn({v for v in DEFAULT_ANGLES if v not in high})
    assert curve["response"][0] == curve["response"][-1] == 1.0 and curve["response"][1] == 0.0   # ±180 high, -157.5 low
    summary = invariance_summary({"curves": [curve]})
    assert summary["ranges"]["rotation"] == [-15.0, 180.0] and summary["censored"]["rotation"] is False
    assert invariance_rows({"curves": [curve], "summary": summary}) == [["rotation", "-15 … 180 degrees"]]
    partial = [v for v in DEFAULT_ANGLES if abs(v) <= 90.0]
    for c, want in ((_turn({-45.0}, partial), [-30.0, 90.0]), (_turn(set(), partial), [-90.0, 90.0]),
                    (_turn({-67.5, -45.0, -30.0}, transform="translation_x"), [-15.0, 180.0])):
        got = invariance_summary({"curves": [c]})
        assert got["ranges"][c["transform"]] == want and got["censored"][c["transform"]] is True, c


def test_a_rotation_range_goes_round_past_minus_180_and_a_dip_at_180_bounds_both_sides():
    """Going down past -180 the range's lower end is below -180 (a dip at 45 … 67.5: 30 down to -270, the angle 90,
    300 degrees); a dip across +-180 (157.5 … -157.5) bounds the range on both sides, measured (-135 … 135)."""
    down = invariance_summary({"curves": [_turn({45.0, 67.5})]})
    assert down["ranges"]["rotation"] == [-270.0, 30.0] and down["censored"]["rotation"] is False
    assert invariance_rows({"curves": [_turn({45.0, 67.5})], "summary": down})[0][1] == \
        "from 90 round through 180 to 30 degrees (300 wide: every angle but those between 30 and 90)"
    across = invariance_summary({"curves": [_turn({157.5, 180.0, -180.0, -157.5})]})
    assert across["ranges"]["rotation"] == [-135.0, 135.0] and across["censored"]["rotation"] is False


def test_the_angle_at_plus_and_minus_180_reads_alike_from_either_side():
    """-180 and +180 are one angle measured twice; were the two points to differ about the floor, the walk read +180's
    going up and -180's going down, so the angle held from one side and not the other: with -180 high, +180 low, a dip
    at 90 gave -247.5 … 67.5 (through the angle) and a dip at -90 gave -67.5 … 157.5 (stopped before it). It now holds
    only where both points do, from either side, the response's range and the AUC's alike."""
    from downpour.analysis.invariance import selectivity_summary
    for dip, want in ((90.0, [-157.5, 67.5]), (-90.0, [-67.5, 157.5])):
        for low_end in (0, -1):                 # -180 low, then +180 low
            curve = _turn({dip})
            curve["response"][low_end], curve["auc"][low_end] = 0.0, 0.5
            assert invariance_summary({"curves": [curve]})["ranges"]["rotation"] == want, (dip, low_end)
            assert selectivity_summary({"curves": [curve]})["ranges"]["rotation"] == want, (dip, low_end)
