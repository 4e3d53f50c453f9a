"""Each study's claim, the verdict's first sentence and the index's line, answers its question from its rows: the same
stand-in rows with a difference's sign flipped (and its reading with it) give other words, so that no claim is a fixed
conclusion. Every verdict opened with Holm's count over all its comparisons until 2026-12-07, the same prefix on every
index line, none answering its study's question."""
import pytest

from downpour.studies import study_class
from downpour.studies.stats import holm

UP, DOWN = [0.066, 0.050, 0.083], [-0.066, -0.083, -0.050]


def _compared(condition, test, triple, reading, p=0.001, **row):
    """A row comparing ``test`` against its reference: its paired difference ``triple`` read as ``reading``."""
    return {"condition": condition, "n": 6, "group": "", "params": {}, **row,
            "figures": {test: triple, **row.get("figures", {})},
            "tests": {test: {"reading": reading, "p": p}}}


def _claim(name, rows, quick=False):
    holm(rows)
    return study_class(name)(quick=quick).claim(rows)


def _templates(triple, reading):
    cost = {"params": [422400.0] * 3, "flops_fwd": [1.02e6] * 3}
    return [{"condition": "untied", "group": "equal maps", "figures": cost},
            _compared("tile2", "d_probe_digits", triple, reading, group="equal maps",
                      figures={"params": [8448.0] * 3, "flops_fwd": [1.02e6] * 3})]


def test_templates_claim_gives_the_tilings_parameters_and_follows_its_probe():
    up = _claim("templates", _templates(UP, "higher"))
    assert up == ("At equal maps, tile2 has 50x fewer parameters than untied (8,448 against 422,400) at the same forward FLOPs and "
                  "raises the digits probe accuracy (Δ +0.066 [+0.050, +0.083]).")
    assert "lowers the digits probe accuracy (Δ -0.066 [-0.083, -0.050])" in _claim("templates", _templates(DOWN, "lower"))
    same = _claim("templates", _templates([0.003, -0.010, 0.016], "no detectable effect"))
    assert "does not change the digits probe accuracy (Δ +0.003 [-0.010, +0.016])" in same


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
    assert worse.startswith("Against the learned first layer, on the downstream probes and face AUCs: gabor is worse "
                            "on 1 and inconclusive on 5 of 6 (the top stage's digits probe Δ -5.0 points [-7.0, -3.0]); "
                            "random is worse on 1")
    better = _claim("first-layer", _kinds("higher", [0.05, 0.03, 0.07]))
    assert "gabor is better on 1 and inconclusive on 5 of 6 (the top stage's digits probe Δ +5.0 points" in better
    assert "gabor is no different on 1 and inconclusive on 5" in _claim(
        "first-layer", _kinds("no detectable effect", [0.0, -0.01, 0.01]))


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


def _phase(reading, triple, rate):
    sync = {"condition": "lr0.125/sync", "group": "phase", "params": {"vs": ""}, "figures": {"p_success": [0.75] * 3}}
    stale = _compared("lr0.125/async4", "delta_vs_success", triple, reading, group="phase", params={"vs": "lr0.125/sync"},
                      figures={"p_success": [rate] * 3},
                      extra={"reading": reading, "gained": 0, "lost": 3, "mcnemar_p": 0.25})
    return [sync, stale]


def test_stalenesss_claim_follows_the_success_rate_of_asynchrony_against_sync():
    lower = _claim("staleness", _phase("lower", [-0.35, -0.6, -0.1], 0.4), quick=True)
    assert lower == ("At learning rate 0.125, 4 asynchronous workers lowered the share of seeds reaching the global "
                     "optimum: async4 reached 40% against sync's 75% (Δ -35 points [-60, -10]: lower); over the phase "
                     "diagram's 1 success-rate comparison staleness raised it in 0 and lowered it in 1.")
    higher = _claim("staleness", _phase("higher", [0.2, 0.05, 0.35], 0.95), quick=True)
    assert higher.startswith("At learning rate 0.125, 4 asynchronous workers raised the share") and "raised it in 1" in higher
