"""Each study's claim, the verdict's first sentence and the index's line, answers its question from its rows: the same
stand-in rows with a difference's sign flipped (and its reading with it) give other words, so that no claim is a fixed
conclusion. Every verdict opened with Holm's count over all its comparisons until 2026-12-07, the same prefix on every
index line, none answering its study's question."""
import pytest

from downpour.studies import study_class
from downpour.studies.holm import holm

UP, DOWN = [0.066, 0.050, 0.083], [-0.066, -0.083, -0.050]


def _compared(condition, test, triple, reading, p=0.001, **row):
    """A row comparing ``test`` against its reference: its paired difference ``triple`` read as ``reading``."""
    return {"condition": condition, "n": 6, "group": "", "params": {}, **row,
            "figures": {test: triple, **row.get("figures", {})},
            "tests": {test: {"reading": reading, "p": p}}}


def _claim(name, rows, quick=False):
    holm(rows)
    return study_class(name)(quick=quick).claim(rows)


def _templates(triple, reading, maps=(8, 8)):
    cost = {"params": [422400.0] * 3, "flops_fwd": [1.02e6] * 3}
    return [{"condition": "untied", "group": "equal maps", "params": {"maps": [8, 8], "vs": ""}, "figures": cost},
            _compared("tile2", "d_probe_digits", triple, reading, group="equal maps",
                      params={"maps": list(maps), "vs": "untied"},
                      figures={"params": [8448.0] * 3, "flops_fwd": [1.02e6] * 3})]


def test_templates_claim_gives_the_tilings_parameters_and_follows_its_probe():
    up = _claim("templates", _templates(UP, "higher"))
    assert up == ("At equal maps (8 per position), tile2 has 50x fewer parameters than untied (8,448 against 422,400) "
                  "at the same forward FLOPs and raises the digits probe accuracy (Δ +0.066 [+0.050, +0.083]).")
    assert "lowers the digits probe accuracy (Δ -0.066 [-0.083, -0.050])" in _claim("templates", _templates(DOWN, "lower"))
    same = _claim("templates", _templates([0.003, -0.010, 0.016], "no detectable effect"))
    assert "does not change the digits probe accuracy (Δ +0.003 [-0.010, +0.016])" in same


def test_templates_claim_says_each_pairs_maps_as_its_rows_give_them():
    """It was written for arms of equal maps ("At equal maps, tile2 ..."), whatever the rows' maps, and left out the
    equal-parameters arm, whose maps differ from its tiling's (32 stage-1 maps against tile2's 8)."""
    conv32 = _compared("conv32", "d_probe_digits", [0.011, -0.004, 0.026], "inconclusive", group="equal parameters",
                       params={"maps": [32, 8], "vs": "tile2"},
                       figures={"params": [8448.0] * 3, "flops_fwd": [3.97e6] * 3})
    both = _claim("templates", [*_templates(UP, "higher"), conv32])
    assert both.endswith("(Δ +0.066 [+0.050, +0.083]); with 32 stage-1 maps against tile2's 8, conv32 has as many "
                         "parameters as tile2 (8,448) at 3.89x tile2's forward FLOPs and has an inconclusive effect on "
                         "it (Δ +0.011 [-0.004, +0.026]).")
    odd = _claim("templates", _templates(UP, "higher", maps=(16, 8)))
    assert odd.startswith("With 16 stage-1 maps against untied's 8, tile2 has 50x fewer parameters") and "equal" not in odd


def _fronts(triple, reading, p=0.001):
    plain = {"condition": "plain", "figures": {"probe_digits": [0.916, 0.9, 0.93], "flops_fwd": [56e3] * 3}}
    return [plain, *(_compared(name, "d_probe_digits", t, w, p, figures={"flops_fwd": [56e3 * x] * 3})
                     for name, t, w, x in (("pyramid3", [0.001, -0.078, 0.080], "inconclusive", 3.49),
                                           ("glimpse", triple, reading, 0.49)))]


def test_mechanisms_claim_says_what_each_front_does_to_the_probe_at_its_flops():
    down = _claim("mechanisms", _fronts([-0.44, -0.567, -0.313], "lower", p=0.2))
    assert down == ("Against the plain stage (digits probe accuracy 0.916 [0.900, 0.930]), pyramid3 at 3.49x the "
                    "forward FLOPs has an inconclusive effect on the digits probe accuracy (Δ +0.001 [-0.078, +0.080]) "
                    "and glimpse at 0.49x lowers it (Δ -0.440 [-0.567, -0.313], a lead).")
    assert "glimpse at 0.49x raises it (Δ +0.440 [+0.313, +0.567])." in _claim(
        "mechanisms", _fronts([0.44, 0.313, 0.567], "higher"))


def _arms(triple, reading):
    cat = {"condition": "cat", "params": {"vs": ""},
           "figures": {"probe_digits": [0.905, 0.747, 1.0], "train_flops": [1.2e9] * 3}}
    return [cat, _compared("sae", "d_probe_digits", triple, reading, params={"vs": "cat"}),
            _compared("rnn-288", "d_probe_digits", UP, "higher", params={"vs": "rnn"})]     # (a code-size control)


def test_architectures_claim_sets_each_design_against_the_cat_networks_probe():
    down = _claim("architectures", _arms([-0.159, -0.175, -0.143], "lower"))
    assert down == ("On the same 1.2 GFLOP of training, against the cat network's digits probe accuracy (0.905 [0.747, "
                    "1.000]), sae lowers it (Δ -0.159 [-0.175, -0.143]).")
    assert "sae raises it (Δ +0.159 [+0.143, +0.175])." in _claim("architectures", _arms([0.159, 0.143, 0.175], "higher"))


def _penalties(within, p):
    rows = []
    for size in ("less", "more"):
        rows.append({"condition": f"{size}/none", "figures": {}, "extra": {"hoyer_gap_rank_correlation": within},
                     "tests": {"hoyer_gap_rank_correlation": {"reading": "higher" if within[1] > 0 else "lower"
                               if within[2] < 0 else "no detectable effect", "p": p, "correlation": True}}})
    return rows


def test_costs_claim_reads_the_sign_of_sparsitys_rank_correlation_with_over_fitting():
    more = _claim("costs", _penalties([0.38, 0.13, 0.64], 0.01))
    assert more == ("Sparsity and over-fitting, across the penalties and their weights: with less data sparser codes "
                    "went with more over-fitting (rank ρ of Hoyer sparsity and the gap within a seed +0.38 [+0.13, "
                    "+0.64]); with more data sparser codes went with more over-fitting (ρ +0.38 [+0.13, +0.64]).")
    less = _claim("costs", _penalties([-0.38, -0.64, -0.13], 0.04))      # (Holm: 0.08 each, leads)
    assert "with less data sparser codes went with less over-fitting" in less and "-0.13], a lead)" in less
    assert "no monotone relation shows" in _claim("costs", _penalties([0.05, -0.2, 0.3], 0.6))


def _kinds(reading, triple):
    from downpour.studies.first_layer import DOWNSTREAM
    rows = [{"condition": "learned", "figures": {}, "extra": {"readings": {}}}]
    for kind in ("gabor", "random", "gabor-init"):
        readings = dict.fromkeys(DOWNSTREAM, "inconclusive") | {"probe_digits_stage2": reading}
        row = _compared(kind, "delta_probe_digits_stage2", triple, reading, extra={"readings": readings})
        rows.append(row)
    return rows


def test_first_layers_claim_counts_where_each_kind_trails_the_learned_layer():
    worse = _claim("first-layer", _kinds("lower", [-0.05, -0.07, -0.03]))
    assert worse.startswith("Against the first layer learned from a random start, on the downstream probes and face "
                            "AUCs: the fixed Gabor bank (gabor) is worse on 1 and inconclusive on 5 of 6 (digits probe "
                            "accuracy on stage 2 Δ -5.0 points [-7.0, -3.0]); fixed random filters (random) are worse "
                            "on 1")
    better = _claim("first-layer", _kinds("higher", [0.05, 0.03, 0.07]))
    assert "(gabor) is better on 1 and inconclusive on 5 of 6 (digits probe accuracy on stage 2 Δ +5.0 points" in better
    assert "(gabor) is no different on 1 and inconclusive on 5" in _claim(
        "first-layer", _kinds("no detectable effect", [0.0, -0.01, 0.01]))


def test_first_layers_claim_says_gabor_init_is_learned_from_a_gabor_start_and_marks_its_leads():
    """It read "Against the learned first layer ...: ...; gabor-init is better on 1": gabor-init is learned too, from the
    Gabor bank, which the claim did not say, and a count that held a lead did not say so."""
    rows = _kinds("higher", [0.05, 0.03, 0.07])
    for row in rows[1:]:
        row["extra"]["readings"]["probe_lfw_stage1"] = "higher"
        row["tests"]["delta_probe_lfw_stage1"] = {"reading": "higher", "p": 0.3}
    said = _claim("first-layer", rows)
    assert said.startswith("Against the first layer learned from a random start,")
    # (the lead counted in staleness's, costs' and the verdicts' words: holm.leads_of)
    assert said.endswith("; the layer learned from a Gabor start (gabor-init) is better on 2 (1 of them a lead: not "
                         "after Holm's correction) and inconclusive on 4 of 6 (digits probe accuracy on stage 2 Δ +5.0 "
                         "points [+3.0, +7.0]).")


def _gated(study, triple, reading):
    t, cond = max(study.thresholds()), study.conditions()[0].name
    return [_compared(f"{cond}/{t:g}/{n}", "delta_probe", triple, reading,
                      figures={"skipped": [share] * 3, "net_flops_ratio": [0.81] * 3,
                               "net_time_ratio": [1.37, 0.947, 1.98]})
            for n, share in (("lfw", 0.49), ("padded", 0.22), ("digits", 0.82))]


@pytest.mark.parametrize("quick", [True, False])
def test_flat_skippings_claim_says_what_the_largest_threshold_skips_saves_and_costs(quick):
    study = study_class("flat-skipping")(quick=quick)
    rows = _gated(study, [-0.208, -0.314, -0.102], "lower")
    holm(rows)
    said = study.claim(rows)
    assert said == (f"At its largest threshold ({max(study.thresholds()):g}) the whitened network's gate skips 49% of "
                    "stage-1 positions on lfw (22% on padded, 82% on digits), for network FLOPs x0.81 and network "
                    "time x1.37 [0.947, 1.98] (inconclusive) on lfw, and lowers lfw's probe accuracy (Δ -20.8 points "
                    "[-31.4, -10.2]).")
    rows = _gated(study, [0.004, -0.01, 0.018], "no detectable effect")
    holm(rows)
    assert study.claim(rows).endswith("does not change lfw's probe accuracy (Δ +0.4 points [-1.0, +1.8]).")


def _phase(reading, triple, rate, p=0.001, name="lr0.125/async4", diverged=0.0):
    sync = {"condition": "lr0.125/sync", "group": "phase", "params": {"vs": ""},
            "figures": {"p_success": [0.75] * 3, "p_diverged": [0.0] * 3}}
    stale = _compared(name, "delta_vs_success", triple, reading, p, group="phase", params={"vs": "lr0.125/sync"},
                      figures={"p_success": [rate] * 3, "p_diverged": [diverged] * 3},
                      extra={"reading": reading, "gained": 0, "lost": 3, "mcnemar_p": 0.25})
    return [sync, stale]


def test_stalenesss_claim_follows_the_success_rate_of_asynchrony_against_sync():
    lower = _claim("staleness", _phase("lower", [-0.35, -0.6, -0.1], 0.4), quick=True)
    assert lower == ("At learning rate 0.125, asynchrony with 4 workers lowers the share of seeds reaching the global "
                     "optimum (Δ -35 points [-60, -10]): async4 reached 40% against sync's 75%; over the phase "
                     "diagram's 1 success-rate comparison staleness raised it in 0 and lowered it in 1.")
    higher = _claim("staleness", _phase("higher", [0.2, 0.05, 0.35], 0.95), quick=True)
    assert higher.startswith("At learning rate 0.125, asynchrony with 4 workers raises the share") and "raised it in 1" in higher


def test_stalenesss_claim_speaks_with_every_studys_verbs_and_marks_a_lead_once(monkeypatch):
    """Its own table said "lowered" and "did not change ... (within ±10%)" where every other study says "lowers" and
    "does not change", and a lead read "lower (a lead: not after Holm's correction), a lead)"."""
    from downpour.studies import claims
    same = _claim("staleness", _phase("no detectable effect", [0.0, -0.05, 0.05], 0.75), quick=True)
    assert "with 4 workers does not change the share of seeds reaching the global optimum (Δ 0 points [-5, +5])" in same
    lead = _claim("staleness", _phase("lower", [-0.35, -0.6, -0.1], 0.4, p=0.2), quick=True)
    assert "(Δ -35 points [-60, -10], a lead): async4 reached 40%" in lead and lead.count("lead") == 2
    assert lead.endswith("lowered it in 1 (a lead: not after Holm's correction).")
    monkeypatch.setitem(claims.VERBS, "lower", "cuts {}")
    assert "with 4 workers cuts the share" in _claim("staleness", _phase("lower", [-0.35, -0.6, -0.1], 0.4), quick=True)


def test_stalenesss_claim_says_where_a_lowered_success_rate_is_divergence():
    """On the full setting's numbers (160 seeds, docs/studies/history.md's Q1 table) the claim says async4 "does not
    change the share ... (Δ 0 points [-8, +8])" and staleness "lowered it in 8": all 8 are rates where most seeds
    diverged (lr0.125/delay8, lr0.25/*, lr0.5/*), not worse optima, which the claim did not say."""
    rows = _phase("no detectable effect", [0.0, -0.08, 0.08], 0.75)
    rows += _phase("lower", [-0.75, -0.8, -0.7], 0.0, name="lr0.125/delay8", diverged=1.0)[1:]
    rows += _phase("lower", [-0.35, -0.6, -0.1], 0.4, name="lr0.125/delay4")[1:]
    said = _claim("staleness", rows, quick=True)
    assert said.endswith("staleness raised it in 0 and lowered it in 2, 1 of them where most seeds diverged.")
    assert _claim("staleness", rows[:3], quick=True).endswith("lowered it in 1, each where most seeds diverged.")


def _depth(text):
    """How deep the parentheses of ``text`` nest (1: none inside another)."""
    deepest = depth = 0
    for c in text:
        depth += {"(": 1, ")": -1}.get(c, 0)
        deepest = max(deepest, depth)
    assert depth == 0, text
    return deepest


def test_no_claim_nests_parentheses_where_a_difference_has_no_interval():
    """The quick setting's 2 seeds leave a difference or ρ without an interval, which read "(ρ -0.50 (no interval: too
    few seeds to tell))" in the quick costs study's claim, and likewise in each claim that says a Δ."""
    alone = [0.017, -float("inf"), float("inf")]
    costs = _claim("costs", _penalties([-0.5, -float("inf"), float("inf")], 1.0), quick=True)
    assert costs == ("Sparsity and over-fitting, across the penalties and their weights: with less data how the two "
                     "relate is inconclusive (rank ρ of Hoyer sparsity and the gap within a seed -0.50, no interval: too "
                     "few seeds to tell); with more data how the two relate is inconclusive (ρ -0.50, no interval: too "
                     "few seeds to tell).")
    said = [costs, _claim("templates", _templates(alone, "inconclusive")),
            _claim("first-layer", _kinds("inconclusive", alone)), _claim("mechanisms", _fronts(alone, "inconclusive"))]
    assert "(Δ +0.017, no interval: too few seeds to tell)" in said[1]
    assert all(_depth(s) == 1 for s in said), said
