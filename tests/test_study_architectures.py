"""The architectures study (Q7): the quick study end to end, the equal-FLOPs budget, and the FLOP and
parameter counts it rests on against hand counts."""
import dataclasses
import math

import pytest
import torch

from downpour.studies import study_class
from downpour.studies.architectures import CODE, CODE_ARMS
from downpour.studies.measure import flops_per_step

from study_quick import check_every_condition_may_diverge, check_owed, check_written, run_quick

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return run_quick("architectures", tmp_path_factory)


def test_quick_study_writes_study_json_html_and_figures(quick):
    folder, result = quick
    check_written(folder, result, "architectures")
    check_owed(folder, result)
    assert "cat network" in result["verdict"]
    assert "'s (a ranking of means: which differences the seeds resolve is in the paired intervals below)" in result["verdict"]


def test_every_arm_spends_the_same_training_flops(quick):
    context = quick[1]["context"]
    budget = context["budget_flops"]
    for row in quick[1]["cells"]:
        name, f = row["condition"], row["figures"]
        per_step = context["flops_per_step"][name]
        assert f["steps"][0] == context["steps"][name]                   # the runner ran the budget's steps
        assert abs(f["train_flops"][0] - budget) <= per_step / 2, name   # within half a step of the budget
    steps = context["steps"]
    assert steps["sae"] > steps["rbm"] > steps["cat"]                   # cheaper steps, more of them


def test_flop_count_and_parameters_of_the_sparse_autoencoder_by_hand(quick):
    """UFLDL autoencoder on 32x32 with 25 hidden units, batch 32: the encoder, decoder and, backward, the
    gradients of both weight matrices and of the codes are five (32 x 1024) x (1024 x 25)-sized products
    of 2 FLOPs per multiply-add (the input needs no gradient). Parameters: two 25 x 1024 matrices and
    both biases."""
    study = study_class("architectures")(quick=True)
    sae = next(c for c in study.conditions() if c.name == "sae")
    x = torch.randn(32, 1, 32, 32)
    assert flops_per_step(study.cell_config(sae, 0), x) == 5 * 2 * 32 * 1024 * 25
    rows = {r["condition"]: r["figures"] for r in quick[1]["cells"]}
    assert rows["sae"]["params"][0] == 2 * 25 * 1024 + 25 + 1024
    assert rows["sae"]["code_dims"][0] == 25 and rows["rbm"]["code_dims"][0] == 64
    assert rows["cat"]["code_dims"][0] == CODE        # what the code-size controls match


def test_the_code_size_controls_differ_from_their_arm_only_in_units_and_the_grus_rate_and_train_its_steps():
    study = study_class("architectures")(quick=False)
    conditions = {c.name: c for c in study.conditions()}
    assert set(CODE_ARMS) <= set(conditions) and not set(CODE_ARMS) & {c.name for c in study_class("architectures")(
        quick=True).conditions()}
    context = study.prepare()
    for name, (of, _) in CODE_ARMS.items():
        assert conditions[name].params["vs"] == of and conditions[name].group == "code size"
        mine, theirs = study.cell_config(conditions[name], 0), study.cell_config(conditions[of], 0)
        assert mine.model.options["hidden"] == CODE != theirs.model.options.get("hidden")
        strip = lambda cfg: {k: v for k, v in cfg.model.options.items() if k not in ("hidden", "code")}
        assert strip(mine) == strip(theirs) and mine.model.name == theirs.model.name
        assert (mine.data, mine.objective) == (theirs.data, theirs.objective)
        # the same training but the GRU's rate, chosen by its own training cost (CODE_ARMS)
        assert mine.train == dataclasses.replace(theirs.train, lr=0.003 if name == "rnn-288" else theirs.train.lr)
        assert context["steps"][name] == context["steps"][of]           # equal examples, not equal FLOPs
        assert context["flops_per_step"][name] > context["flops_per_step"][of]


def test_the_verdict_names_what_a_code_size_control_sets_besides_its_units(quick):
    rows = [row for row in quick[1]["cells"]]
    rbm = next(row for row in rows if row["condition"] == "rbm")
    rows.append({**rbm, "condition": "rbm-288", "params": {**rbm["params"], "vs": "rbm"}})
    # (the quick setting's warning is not the study's: the runner puts it first, run.verdict_text)
    first = study_class("architectures")(quick=True).verdict(rows).split("\n\n")[0]
    assert "only the code size differs between each and its arm, and rnn-288's train.lr = 0.003." in first
    for name, (_, more) in CODE_ARMS.items():
        for key, v in more:
            assert key in ("model.hidden", "model.code") or f"{name}'s {key} = {v}" in first


def test_the_full_setting_runs_the_16_seeds_the_sparse_autoencoder_needs_and_an_8_seed_folder_resumes():
    """On 8 seeds (the default until 2026-12-06) the sae arm's readings changed their words with the machine's
    arithmetic; 16 settled them. The seed count is not in a folder's header, so a folder run at 8 is resumed (seeds
    8-15 run), not refused."""
    from downpour.studies.about import describe
    from downpour.studies.run import cells_header

    cls = study_class("architectures")
    assert cls.seeds_full == 16
    assert "seeds: 16 per condition by default" in describe("architectures")
    study, before = cls(quick=False, sets=[]), type("Eight", (cls,), {"seeds_full": 8})(quick=False, sets=[])
    assert cells_header(before, before.conditions(), []) == cells_header(study, study.conditions(), [])


def test_a_swapped_model_leaves_the_cat_networks_options_behind():
    """cat-demo's [model] tile = 2 and its pooled_l2 weight belong to the cat network: an arm that swaps
    the model gets its own variant's defaults, not a merge."""
    study = study_class("architectures")(quick=False)
    by = {c.name: study.cell_config(c, 0) for c in study.conditions()}
    assert by["cat"].model.options["tile"] == 2 and by["cat"].objective["pooled_l2"]["weight"] == 0.2
    assert by["conv-ae"].model.options["tile"] == 1
    assert by["conv-ae"].objective["pooled_l2"]["weight"] == 0.05      # rica-local's own
    assert "tile" not in by["rbm"].model.options
    assert {cfg.data for cfg in by.values()} == {by["cat"].data}         # the same data for every arm


@pytest.mark.parametrize("arm", ["conv-ae", "rnn", "rnn-288"])
def test_the_arms_outside_the_quick_setting_train_and_measure(arm):
    """The full setting's other arms, a few steps each: every figure is measured; the GRU, whose input
    weights are rows with no 2-D shape, has no edge fraction (NaN) rather than a crash; the GRU given the
    cat network's code size has that many code units. Measured at the quick setting's sizes (the same figures on
    fewer probe samples and face draws: half the CPU, 3.3 of 6.6 s for rnn-288, 2026-12-06)."""
    condition = next(c for c in study_class("architectures")(quick=False).conditions() if c.name == arm)
    figures = study_class("architectures")(quick=True).run_cell(condition, 0, {"steps": {arm: 3},
                                                                               "flops_per_step": {arm: 1.0}})
    assert figures["steps"] == 3 and figures["train_flops"] == 3.0
    assert all(math.isfinite(v) for k, v in figures.items() if k != "edge_fraction"), figures
    assert math.isnan(figures["edge_fraction"]) == arm.startswith("rnn")
    assert (figures["code_dims"] == CODE) == arm.endswith("-288")


def test_a_condition_diverged_in_every_seed_is_named_not_a_crash(quick, tmp_path):
    check_every_condition_may_diverge(quick[0], "architectures", tmp_path)


def test_the_verdict_says_the_cat_networks_edge_like_filters_as_the_fraction_it_is(quick):
    """"0.000 edge-like filters" (0.154 [0.121, 0.187] at 16 seeds) read as a count of filters, not a share of them."""
    from downpour.studies.compare import value

    _, result = quick
    cat = next(r for r in result["cells"] if r["condition"] == "cat")
    assert f"an edge-like fraction of its filters {value(cat, 'edge_fraction')}, with " in result["verdict"]
    assert "edge-like filters, with" not in result["verdict"]
