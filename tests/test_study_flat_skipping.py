"""`downpour study flat-skipping --quick` end to end, and the gated network it measures."""
import copy
import json

import pytest
import torch

from downpour.models.registry import create_model
from downpour.studies.flat_skipping import SETS, FlatSkippingStudy, gated
from study_quick import check_written, run_quick

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder, result = run_quick("flat-skipping", tmp_path_factory)
    cells = [json.loads(line) for line in (folder / "cells.jsonl").read_text().splitlines()[1:]]
    return folder, result, cells


def test_study_json_has_the_contract(study):
    folder, result, _ = study
    check_written(folder, result, "flat-skipping")
    assert all({"threshold", "images", "whiten"} <= set(row["params"]) for row in result["cells"])
    assert "no detectable effect" in result["verdict"] or "inconclusive" in result["verdict"]


def test_the_verdict_names_what_got_worse_in_words(study):
    _, result, _ = study
    rows = copy.deepcopy(result["cells"])
    for row in rows:
        row["extra"]["readings"] = {k: "lower" for k in row["extra"]["readings"]}
    verdict = FlatSkippingStudy(quick=True).verdict(rows)
    assert "lfw face AUC vs non-faces" in verdict and "lfw face AUC on the controls" in verdict
    assert "face_auc" not in verdict                      # no figure key leaks into the words


def test_in_short_says_where_the_probe_fell_not_only_that_no_threshold_was_harmless(study):
    """'In short ... on digits no threshold's probe change is confirmed within ±2 points' under a paragraph
    where threshold 0.3 read 'digits -44.5 [-51.5, -37.5] (lower)': the drop was left out of the summary."""
    _, result, _ = study
    rows = copy.deepcopy(result["cells"])
    for row in rows:
        if "readings" in row["extra"]:
            row["extra"]["readings"]["probe"] = "inconclusive"
            row.setdefault("tests", {})["delta_probe"] = {"reading": "inconclusive", "p": 0.5, "p_holm": 1.0}
            if row["condition"].endswith("/0.3/digits"):
                row["extra"]["readings"]["probe"] = "lower"
                row["figures"]["delta_probe"] = [-0.445, -0.515, -0.375]
                row["tests"]["delta_probe"] = {"reading": "lower", "p": 0.0001, "p_holm": 0.003}   # kept by Holm
    verdict = FlatSkippingStudy(quick=True).verdict(rows)
    short = next(p for p in verdict.split("\n\n") if p.startswith("In short, on the whitened network"))
    assert ("on digits no threshold's probe change is confirmed within ±2 points, and the probe fell at threshold "
            "0.3 (-44.5 points [-51.5, -37.5])") in short
    assert short.count("fell") == 1                     # (lfw and padded: no drop read, none said)
    # the same drop, which Holm's correction over the study does not keep: said as a lead, as Holm's paragraph does
    # (a bare "(lower)" and "the probe fell" while the paragraph below called it a lead to recheck)
    for row in rows:
        if row["condition"].endswith("/0.3/digits"):
            row["tests"]["delta_probe"]["p_holm"] = 0.2
    paras = FlatSkippingStudy(quick=True).verdict(rows).split("\n\n")
    short = next(p for p in paras if p.startswith("In short, on the whitened network"))
    assert "the probe fell at threshold 0.3 (-44.5 points [-51.5, -37.5], a lead)" in short
    whitened = next(p for p in paras if p.startswith("On the whitened network"))
    assert "digits -44.5 points [-51.5, -37.5] (lower, a lead)" in whitened      # (one parenthesis, none inside)


def _judged(readings):
    """Rows of the full study's whitened network on digits, threshold t's probe reading ``readings[t]``, skipping
    t x 100% (a threshold's row as summarise writes it, with what _free reads)."""
    by = {}
    for t, reading in readings.items():
        by[f"whitened/{t:g}/digits"] = {"figures": {"skipped": [t, t, t], "net_flops_ratio": [0.9] * 3,
                                                    "net_time_ratio": [1.0, 0.95, 1.05],
                                                    "delta_probe": [-0.1, -0.2, 0.0]},
                                        "extra": {"readings": {"probe": reading}}}
    return by


def test_the_free_threshold_is_judged_in_order_and_the_first_that_is_not_stops_it():
    """The largest threshold whose probe read "no detectable effect", of 6 looked at, was said to be free: with no
    effect anywhere, each look may pass by chance, and the largest of them was picked. Judged from the smallest up,
    stopping at the first not free, no correction is needed: the claim holds 95% over all six."""
    study = FlatSkippingStudy(quick=False)
    assert study.thresholds() == (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    free, unsure = "no detectable effect", "inconclusive"
    by = _judged({0.003: free, 0.01: free, 0.03: unsure, 0.1: free, 0.3: free, 1.0: unsure})
    assert study._free(by, "whitened", "digits") == (
        "on digits the gate skips up to 1% of stage-1 positions (threshold 0.01) with no detectable probe change "
        "(within ±2 points), for network FLOPs x0.90 and network time x1.00 [0.95, 1.05] (no detectable effect) "
        "(thresholds judged from the smallest up, "
        "stopping at the first not free, 0.03; 0.1, 0.3 read free after it, not claimed)")
    by = _judged({0.003: unsure, 0.01: free, 0.03: free, 0.1: free, 0.3: free, 1.0: free})
    assert study._free(by, "whitened", "digits").startswith(
        "on digits no threshold's probe change is confirmed within ±2 points (thresholds judged from the smallest up, "
        "stopping at the first not free, 0.003; 0.01, 0.03, 0.1, 0.3, 1 read free after it, not claimed)")
    by = _judged({t: free for t in study.thresholds()})                # every one free: the largest, as before
    assert study._free(by, "whitened", "digits").endswith(
        "(threshold 1) with no detectable probe change (within ±2 points), for network FLOPs x0.90 and network time "
        "x1.00 [0.95, 1.05] (no detectable effect)")


def test_the_gated_network_is_the_network_where_nothing_is_flat_and_zero_where_all_is():
    torch.manual_seed(0)
    model = create_model("cat-demo", (1, 32, 32)).eval()
    net, gate = gated(model, 1e-6)
    busy = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.features(busy, "stage2"), model.features(busy, "stage2"), atol=1e-5)
        assert gate.last.skipped_fraction == 0.0
        flat = torch.full((2, 1, 32, 32), 0.7)
        assert model.features(flat, "stage1/codes").abs().max() > 0.1        # ungated: the filters respond to a level
        assert net.features(flat, "stage1/codes").abs().max() == 0.0         # gated: nothing computed, 0 out
        assert gate.last.skipped_fraction == 1.0 and gate.last.flops == 0


def test_skipping_grows_with_the_threshold(study):
    for cell in study[2]:
        f = cell["figures"]
        for name in SETS:
            assert 0.0 <= f[f"0.03/{name}/skipped"] <= f[f"0.3/{name}/skipped"] <= 1.0


def test_the_padded_faces_are_flatter_than_the_faces(study):
    """A 10x10 face centred on a flat 32x32 canvas leaves every 8x8 field whose rows or columns miss it
    flat: 1 - (17/25)^2 = 0.538 of them at least (more where the face's own border is flat)."""
    for cell in study[2]:
        f = cell["figures"]
        assert f["raw_flat/padded"] >= 1 - (17 / 25) ** 2 - 1e-9
        assert f["raw_flat/padded"] > f["raw_flat/lfw"]


class FaceAucPlanted(FlatSkippingStudy):
    """The quick flat-skipping study's figures planted, no training: gating lowers the face AUC against lfw's non-faces
    by 0.10 or 0.12 (seeds alternating) at every threshold, and leaves everything else as it was."""

    def run_cell(self, condition, seed, context):
        from downpour.studies.flat_skipping import MEASURED

        out = {"layer_flops_share": 0.3}
        for key in ("off", *(f"{t:g}" for t in self.thresholds())):
            drop = 0.0 if key == "off" else 0.10 + 0.02 * (seed % 2)
            out.update({f"{key}/face_auc_lfw": 0.8 + 0.01 * seed - drop,
                        f"{key}/face_auc_controls": 0.55 + 0.01 * seed})
            for name in SETS:
                out.update({f"raw_flat/{name}": 0.25, f"{key}/{name}/probe": 0.5 + 0.01 * seed,
                            **{f"{key}/{name}/{f}": 0.5 for f in MEASURED if key != "off" and f != "probe"}})
        return out


def test_the_verdict_gives_the_face_auc_difference_it_calls_lower(monkeypatch, tmp_path):
    """The quick run of 2026-12-06 said "— lower: lfw face AUC vs non-faces (a lead)" at threshold 0.03 and gave no
    number for it (-0.167 [-0.294, -0.040], in the table alone)."""
    from scipy import stats

    from downpour import studies
    from downpour.studies.run import run_study

    monkeypatch.setitem(studies.STUDIES, "flat-skipping", f"{__name__}:FaceAucPlanted")
    run_study("flat-skipping", tmp_path, quick=True, seeds=4, jobs=1)
    verdict = json.loads((tmp_path / "study.json").read_text())["verdict"]
    half = stats.t.ppf(0.975, 3) * stats.tstd([0.10, 0.12, 0.10, 0.12]) / 2      # paired t over the 4 seeds
    said = f"vs non-faces Δ -0.110 [{-0.11 - half:+.3f}, {-0.11 + half:+.3f}] (lower"
    assert verdict.count(said) == 2 and verdict.count("— lower: lfw face AUC vs non-faces") == 2   # both thresholds


def test_a_time_ratio_is_a_geometric_mean_with_its_interval_and_the_verdict_says_both(study):
    """The verdict said "network time x2.19/1.43/8.93" where digits' x8.93 had the interval [0, 98.3] on 2 seeds:
    a bare ratio read as a slowdown that the seeds could not tell from none."""
    from downpour.studies import words

    _, _, cells = study
    s = FlatSkippingStudy(quick=True)
    by = {(c["condition"], c["seed"]): dict(c["figures"]) for c in cells}
    seeds = sorted({c["seed"] for c in cells})
    for (_, seed), figures in by.items():
        figures["0.03/digits/net_time_ratio"] = (2.0, 8.0)[seed]
        figures["0.03/padded/net_time_ratio"] = (1.0, 1.005)[seed]
    rows = s.summarise(s.conditions(), by, seeds)
    digits = next(r for r in rows if r["condition"] == "whitened/0.03/digits")["figures"]["net_time_ratio"]
    padded = next(r for r in rows if r["condition"] == "whitened/0.03/padded")["figures"]["net_time_ratio"]
    assert digits[0] == pytest.approx(4.0) and digits[1] < 1 < digits[2]     # (the plain mean: 5)
    verdict = s.verdict(rows)
    assert f"digits {words.ratio(digits)} (inconclusive)" in verdict
    assert f"padded {words.ratio(padded)} (no detectable effect)" in verdict
    assert "network time x" not in verdict                      # no ratio without its interval and reading
    # (read "higher" or "lower", a time ratio is out of Holm's family, whose paragraph claimed every comparison)
    assert "a timing of this machine outside Holm's correction in the last paragraph" in verdict
    assert study[1]["verdict"].split("\n\n")[-1].startswith("Holm's correction")     # (study.json's: the last)


def test_each_comparison_names_its_ungated_twin_and_the_probe_change_is_in_points(study):
    """Its conditions' "vs" is "off" (the threshold), not a condition: the comparisons table names the row each Δ is
    paired with. And the verdict's probe Δ said "-8.3 [-29.5, +12.8]" with no unit beside the table's -0.0833."""
    from downpour.studies import words

    _, result, _ = study
    for row in result["cells"]:
        for test in row.get("tests", {}).values():
            whiten, _, images = row["condition"].split("/")
            assert test["against"] == f"{whiten}/off/{images}"
    lfw = next(r for r in result["cells"] if r["condition"].endswith("/lfw") and "delta_probe" in r["figures"])
    assert f"probe Δ lfw {words.points(lfw['figures']['delta_probe'])} (" not in result["verdict"]
    assert f"probe Δ lfw {words.points(lfw['figures']['delta_probe'], unit=' points')} (" in result["verdict"]
