"""The report's loss headline of a run's metrics rows: a greedy run's stages each against itself, a joint run's
stages' shares (a frozen one named), one logged row, an RBM's diagnostics."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings and analyses run in this process)


def test_a_greedy_runs_loss_headline_compares_each_stage_with_itself():
    """A greedy run's ``loss`` is stage 1's cost first and stage 2's last: the headline gives each
    stage's own first and last cost (the transition row counts for both), a joint run keeps one."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import training_summary

    greedy = [{"step": 10, "loss": 200.0, "stage1/reconstruction": 40.0, "stage1/pooled_l2": 160.0},
              {"step": 20, "loss": 150.0, "stage1/reconstruction": 20.0, "stage1/pooled_l2": 140.0,
               "stage2/reconstruction": 90.0, "stage2/pooled_l2": 200.0, "stage2/metric/code_std": 9.0},
              {"step": 30, "loss": 280.0, "stage2/reconstruction": 60.0, "stage2/pooled_l2": 220.0}]
    t = training_summary(greedy)
    assert t["stages"] == [
        {"stage": "stage1", "first_step": 10, "last_step": 20, "first_loss": 200.0, "last_loss": 160.0, "logged_rows": 2},
        {"stage": "stage2", "first_step": 20, "last_step": 30, "first_loss": 290.0, "last_loss": 280.0, "logged_rows": 2}]
    said = _loss_headline(t)
    assert "stage1 200 → 160 (steps 10–20)" in said and "stage2 290 → 280 (steps 20–30)" in said and "3 logged rows" in said
    joint = [{"step": s, "loss": l, "stage1/reconstruction": l / 2, "stage2/reconstruction": l / 2} for s, l in ((10, 9.0), (20, 5.0))]
    assert training_summary(joint)["stages"] == [] and _loss_headline(training_summary(joint)).startswith("Loss 9 → 5 over 2")
    plain = [{"step": 10, "loss": 3.0, "reconstruction": 3.0}]
    assert training_summary(plain)["stages"] == []


def test_a_joint_runs_loss_headline_gives_each_stages_share_and_names_a_frozen_one():
    """cat-demo, joint, model.first_layer = "gabor", 300 steps: the headline read "Loss 5773 → 5392", about 5,300 of
    it stage 1's cost, which has nothing to train and only moved with the batches, while stage 2's fell 319 → 117."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import frozen_stages, training_summary
    from downpour.models.registry import create_model

    assert frozen_stages(create_model("cat-demo", first_layer="gabor")) == ["stage1"]
    assert frozen_stages(create_model("cat-demo", first_layer="random")) == ["stage1"]
    assert frozen_stages(create_model("cat-demo")) == frozen_stages(create_model("rica-8x8")) == []
    joint = [{"step": 10, "loss": 5773.0, "stage1/reconstruction": 5214.0, "stage1/pooled_l2": 239.0,
              "stage2/reconstruction": 203.0, "stage2/pooled_l2": 117.0, "stage2/metric/code_std": 9.0},
             {"step": 300, "loss": 5392.0, "stage1/reconstruction": 5043.0, "stage1/pooled_l2": 233.0,
              "stage2/reconstruction": 11.0, "stage2/pooled_l2": 105.0, "stage2/metric/code_std": 7.0}]
    t = training_summary(joint, frozen=["stage1"])
    assert t["stages"] == []                                   # not trained in turn: the loss is one sum throughout
    assert [(s["stage"], s["first_loss"], s["last_loss"], s.get("frozen")) for s in t["joint_stages"]] == [
        ("stage1", 5453.0, 5276.0, True), ("stage2", 320.0, 116.0, None)]
    said = _loss_headline(t)
    assert said.startswith("Loss 5773 → 5392 over 2 logged rows, the sum of each stage's own cost (trained together): ")
    assert "stage1 5453 → 5276 (frozen: no parameter of it trains" in said and "stage2 320 → 116." in said
    assert "(frozen" not in _loss_headline(training_summary(joint))      # nothing said frozen unless it is
    greedy = [{"step": 10, "loss": 5453.0, "stage1/reconstruction": 5453.0}, {"step": 20, "loss": 320.0, "stage2/reconstruction": 320.0}]
    assert "stage1 5453 (one logged row, step 10) (frozen: no parameter" in _loss_headline(training_summary(greedy, ["stage1"]))
    # one stage is the loss itself; an analysis.json from before 2026-12-04 (no joint_stages) keeps the one sum
    assert "joint_stages" not in training_summary([{"step": 10, "loss": 3.0, "stage1/reconstruction": 3.0}])
    assert _loss_headline({**t, "joint_stages": None}).startswith("Loss 5773 → 5392 over 2 logged rows. Logged beside")


def test_a_run_with_one_logged_row_does_not_report_an_unmoved_loss():
    """rbm-digits --steps 30 logs one row (train.log_every = 50): the headline read "Loss -2.976 → -2.976 over
    1 logged rows", a loss that did not move."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import training_summary

    said = _loss_headline(training_summary([{"step": 30, "loss": -2.976, "contrastive_divergence": -2.976}]))
    assert "→" not in said and "at step 30" in said and "only logged row" in said


def test_an_rbms_headline_gives_its_diagnostics_and_says_its_cost_is_a_free_energy_gap():
    """rbm-digits (1500 steps) read "Loss -2.053 → 0.2474 over 30 logged rows" and nothing else: a cost that rose,
    read as divergence, while the reconstruction error fell 2.562 → 1.38 and the pseudo-likelihood rose."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import training_summary

    rbm = [{"step": 50, "loss": -2.053, "contrastive_divergence": -2.053, "metric/reconstruction_error": 2.562,
            "metric/pseudo_likelihood": -27.51},
           {"step": 1500, "loss": 0.2474, "contrastive_divergence": 0.2474, "metric/reconstruction_error": 1.38,
            "metric/pseudo_likelihood": -20.78}]
    said = _loss_headline(training_summary(rbm))
    assert said.startswith("Loss -2.053 → 0.2474 over 2 logged rows.")
    assert "metric/reconstruction_error 2.562 → 1.38" in said and "metric/pseudo_likelihood -27.51 → -20.78" in said
    assert "free-energy gap" in said and "not part of it" in said
    plain = _loss_headline(training_summary([{"step": 10, "loss": 3.0, "reconstruction": 3.0},
                                              {"step": 20, "loss": 2.0, "reconstruction": 2.0}]))
    assert plain == "Loss 3 → 2 over 2 logged rows."


def test_a_stage_logged_once_is_not_said_to_have_gone_from_its_cost_to_itself():
    """cat-3stage, 30 steps, log_every 10: each stage logged one row, and the headline read
    "stage1 2255 → 2255 (steps 10–10)", a loss that did not move."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import training_summary

    rows = [{"step": 10, "loss": 2255.0, "stage1/reconstruction": 255.0, "stage1/pooled_l2": 2000.0},
            {"step": 20, "loss": 2235.0, "stage2/reconstruction": 235.0, "stage2/pooled_l2": 2000.0},
            {"step": 30, "loss": 1478.0, "stage3/reconstruction": 478.0, "stage3/pooled_l2": 1000.0}]
    said = _loss_headline(training_summary(rows))
    assert "stage1 2255 (one logged row, step 10)" in said and "stage3 1478 (one logged row, step 30)" in said
    assert "→" not in said
