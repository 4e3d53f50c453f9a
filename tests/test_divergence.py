"""A run whose loss ran away with every number finite says so: in the training summary and the report's headline.

teacher-student with 3 simulated workers at the preset's rate (0.25, staleness 2) went 2.047 -> 3.3e+31 in 300
steps, every push finite and accepted: else it finishes without a word."""
from __future__ import annotations

import json
import logging

import pytest

import downpour.runners as runners
from downpour.analysis.report import _loss_headline
from downpour.analysis.run import analyze_run
from downpour.analysis.training import training_summary
from downpour.config import load_config
from downpour.errors import DataError
from downpour.runners import train
from downpour.train.divergence import diverged_words, recorded, runaway
from downpour.train.rundir import RunDir


def test_a_loss_that_grew_a_thousandfold_or_is_not_finite_is_a_runaway_and_a_falling_or_wandering_one_is_not():
    assert runaway([{"step": 50, "loss": 2.047}, {"step": 300, "loss": 3.3e31}]) == {
        "first_step": 50, "first_loss": 2.047, "last_step": 300, "last_loss": 3.3e31}
    assert runaway([{"step": 50, "loss": 2.0}, {"step": 100, "loss": float("nan")}])["last_step"] == 100
    assert runaway([{"step": 50, "loss": 2.0}, {"step": 100, "loss": float("inf")}]) is not None
    assert runaway([{"step": 50, "loss": -2.053}, {"step": 1500, "loss": 0.2474}]) is None     # rbm-digits' CD gap
    assert runaway([{"step": 20, "loss": 1.57}, {"step": 400, "loss": 0.0214}]) is None        # cnn-digits
    assert runaway([{"step": 10, "loss": 0.001}, {"step": 20, "loss": 0.5}]) is None           # small, not runaway
    assert runaway([]) is None and runaway([{"step": 10}]) is None
    # a greedy run's loss is another stage's sum at the end: each compared with its own stage's rows
    greedy = [{"step": 10, "loss": 0.05, "stage1/reconstruction": 0.05},
              {"step": 20, "loss": 300.0, "stage2/reconstruction": 300.0},
              {"step": 30, "loss": 280.0, "stage2/reconstruction": 280.0}]
    assert runaway(greedy) is None
    assert runaway([*greedy, {"step": 40, "loss": 4e6, "stage2/reconstruction": 4e6}])["first_step"] == 20
    # a stage 1 that ran away (finite) hands stage 2 an input whose cost is huge from its first row, and stays so
    gone = [{"step": 10, "loss": 0.05, "stage1/reconstruction": 0.05},
            {"step": 20, "loss": 1e9, "stage1/reconstruction": 1e9},
            {"step": 30, "loss": 5e12, "stage2/reconstruction": 5e12},
            {"step": 40, "loss": 4e12, "stage2/reconstruction": 4e12}]
    assert runaway(gone) == {"first_step": 10, "first_loss": 0.05, "last_step": 20, "last_loss": 1e9}


def test_the_first_trained_step_is_read_only_before_the_first_row_and_within_its_own_stage():
    """model.json's first_trained stands in front of the rows only where it comes before them: one a resume from an
    older checkpoint recorded (its step after the first row) is no first; a greedy run's compares within its stage."""
    rows = [{"step": 50, "loss": 2000.0}, {"step": 100, "loss": 1500.0}]
    assert runaway(rows, first={"step": 1, "loss": 1.0})["first_step"] == 1
    assert runaway(rows, first={"step": 51, "loss": 1.0}) is None       # (a resume's own first step)
    assert runaway(rows, first={"step": 50, "loss": 1.0}) is None       # (log_every 1: the row is that step)
    greedy = [{"step": 10, "loss": 3000.0, "stage2/reconstruction": 3000.0},
              {"step": 20, "loss": 2800.0, "stage2/reconstruction": 2800.0}]
    assert runaway(greedy, first={"step": 1, "loss": 0.05, "stage1/reconstruction": 0.05}) is None


def test_the_reports_headline_says_first_that_the_run_diverged():
    gone = training_summary([{"step": 50, "loss": 2.047, "reconstruction": 2.047},
                             {"step": 300, "loss": 3.303e31, "reconstruction": 3.303e31}])
    said = _loss_headline(gone)
    assert said.startswith("<strong>The run diverged: its loss grew from 2.047 at step 50 to 3.303e+31 at step 300")
    assert "lower learning rate" in said
    fine = training_summary([{"step": 50, "loss": -2.053}, {"step": 1500, "loss": 0.2474}])
    assert "diverged" not in fine and _loss_headline(fine).startswith("Loss -2.053 → 0.2474")


@pytest.mark.parametrize("workers, diverges", [(3, True), (1, False)])
def test_teacher_student_on_three_stale_workers_at_the_presets_rate_is_said_to_diverge(tmp_path, caplog, workers,
                                                                                       diverges):
    cfg = load_config("teacher-student", ["cluster.runner=simulated", f"cluster.workers={workers}", "train.steps=150",
                                          "train.threads=1"])
    with caplog.at_level(logging.WARNING, logger="downpour.runners"):
        summary = train(cfg, RunDir.create(tmp_path / "run", cfg))
    assert ("diverged" in summary) is diverges
    if diverges:
        # (its first trained push, model.json's first_trained, before its first row: 1.25 at step 1, 2.047 at 50)
        assert summary["diverged"]["first_step"] == 1 and summary["diverged"]["last_step"] == 150
        said = caplog.text
        assert "the run diverged: its loss grew from" in said
        assert "Lower train.lr (the server's rate, 0.25 here)" in said
        assert "the staleness (a mean of 1.9" in said
    else:
        assert "diverged" not in caplog.text
    # the analysis has no image to show this model, and says where its training is: diverged, said so
    with pytest.raises(DataError,
                       match="nothing to measure here. Its training is in metrics.jsonl and staleness.json") as err:
        analyze_run(tmp_path / "run")
    assert ("; the run diverged: its loss grew from 1.25 at step 1 to" in str(err.value)) is diverges


def test_rows_that_stop_before_the_runs_end_with_its_steps_skipped_are_a_runaway():
    """A run that went past finite numbers skips every step after (NonFiniteLoss, a non-finite push) and logs no
    row after its last finite one: teacher-student at train.lr = 20 logged one row, 1.6e+33 at step 50, and skipped
    the other 290 steps: its first and last row are that one row, and it is said to diverge all the same."""
    one = [{"step": 50, "loss": 1.58e33}]
    assert runaway(one) is None                                         # (no steps given: no skipped steps known)
    gone = runaway(one, steps=300)
    assert gone == {"first_step": 50, "first_loss": 1.58e33, "last_step": 50, "last_loss": 1.58e33, "steps": 300}
    assert diverged_words(gone).startswith("the run diverged: every step after step 50, to step 300, had a non-finite")
    assert runaway([{"step": 50, "loss": 2.0}, {"step": 100, "loss": 1.5}], steps=150)["first_loss"] == 2.0
    assert runaway([{"step": 50, "loss": 2.0}, {"step": 300, "loss": 1.5}], steps=300) is None   # rows to its end


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_run_that_blew_up_and_skipped_the_rest_is_said_to_diverge(tmp_path, caplog, runner):
    cfg = load_config("teacher-student", [f"cluster.runner={runner}", "train.optimizer=sgd", "train.lr=20",
                                          "train.steps=60", "train.log_every=10", "train.threads=1"])
    with caplog.at_level(logging.WARNING, logger="downpour.runners"):
        summary = train(cfg, RunDir.create(tmp_path / "run", cfg))
    assert summary.get("skipped_steps") or summary["rejected"]["non-finite"]
    assert summary["diverged"]["steps"] == 60 and summary["diverged"]["last_step"] < 60
    assert "the run diverged: every step after step" in caplog.text and "20 here)" in caplog.text
    # the analysis reads the same from the run's files: its summary (model.json's skipped steps) and the words
    run = RunDir.open(tmp_path / "run")
    assert recorded(run.path)[0] == 60 and training_summary(run.metrics(), (), 60)["diverged"]["steps"] == 60
    with pytest.raises(DataError, match="; the run diverged: every step after step"):
        analyze_run(run.path)


def test_a_cluster_runs_skipped_steps_are_read_from_its_rejected_pushes(tmp_path):
    """A cluster run's model.json has no skipped_steps: a push whose every step was skipped is a non-finite push its
    shards rejected (staleness.json), as the simulated teacher-student at train.lr = 20 logged 1 row for 300 steps."""
    (tmp_path / "model.json").write_text(json.dumps({"step": 300, "runner": "simulated"}))
    assert recorded(tmp_path)[0] is None
    (tmp_path / "staleness.json").write_text(json.dumps({"rejected": {"non-finite": 290}}))
    assert recorded(tmp_path) == (300, 0, None, None)
    (tmp_path / "staleness.json").write_text(json.dumps({"rejected": {"duplicate": 2}}))
    assert recorded(tmp_path)[0] is None


def test_a_few_skipped_steps_at_the_end_of_a_run_whose_loss_was_fine_are_not_a_divergence():
    """train.log_every = 1 logs a row every step: one bad batch at the last step leaves the rows one step short, and
    that does not read as a run that diverged. Ten or more skipped in a row are batches each non-finite on the
    same parameters: still said."""
    rows = [{"step": s, "loss": 2.0 - s / 1000} for s in range(1, 300)]
    assert runaway(rows, steps=300) is None                                  # step 300 alone skipped
    assert runaway(rows[:-8], steps=300) is None                             # 9 steps skipped
    assert runaway(rows[:-9], steps=300)["steps"] == 300                     # 10 in a row
    assert runaway([{"step": 10, "loss": 2.0}, {"step": 20, "loss": 1e9}], steps=21)["last_loss"] == 1e9  # ran away


def test_a_short_run_whose_last_half_was_skipped_is_a_runaway_and_one_bad_last_batch_is_not():
    """A study cell of 6 steps whose steps 2-6 were skipped (non-finite) ended with its first step's loss as its
    final loss: 5 skipped, under TAIL, and it is not measured as trained."""
    first = [{"step": 1, "loss": 0.8998}]
    assert runaway(first, steps=6)["steps"] == 6                             # steps 2-6 skipped
    assert runaway([*first, {"step": 2, "loss": 0.8}, {"step": 3, "loss": 0.7}], steps=6)["steps"] == 6   # 3 of 6
    assert runaway([{"step": s, "loss": 1.0} for s in range(1, 5)], steps=6) is None     # 2 of 6: under half
    assert runaway([{"step": s, "loss": 1.0} for s in range(1, 4)], steps=4) is None     # one bad last batch
    assert runaway([{"step": 1, "loss": 1.0}], steps=2) is None                           # (the same, 2 steps)
    assert runaway([{"step": 1, "loss": 1.0}], steps=3)["steps"] == 3                     # 2 of 3


def test_a_loss_that_fell_far_below_zero_is_said_to_have_fallen_not_grown():
    fell = runaway([{"step": 50, "loss": -2.0}, {"step": 300, "loss": -5000.0}])
    assert diverged_words(fell) == "the run diverged: its loss fell from -2 at step 50 to -5000 at step 300"
    grew = runaway([{"step": 50, "loss": 2.0}, {"step": 300, "loss": float("inf")}])
    assert "its loss grew from 2 at step 50 to inf" in diverged_words(grew)
    nan = runaway([{"step": 50, "loss": 2.0}, {"step": 300, "loss": float("nan")}])
    assert "its loss went from 2 at step 50 to nan" in diverged_words(nan)


def test_a_cluster_run_mostly_refused_whose_loss_did_not_run_away_is_said_once_with_its_refused_count(tmp_path, caplog,
                                                                                                     monkeypatch):
    """ps.cluster leaves the words to runners.train (not both warning of the same run): with no runaway in the rows,
    the refused pushes (cluster.json's, as the cluster runners write it) are the warning, and the summary's
    ``diverged`` (else a study reads such a run as trained)."""
    cfg = load_config("teacher-student", ["cluster.runner=simulated", "train.steps=300"])
    run = RunDir.create(tmp_path / "run", cfg)
    (run.path / RunDir.METRICS).write_text("".join(json.dumps({"step": s, "loss": 2.0}) + "\n" for s in (150, 300)))

    def fake(cfg, run, resume, opened=None):
        summary = {"steps": 300, "rejected": {"duplicate": 200}, "refused_pushes": {"refused": 200, "of": 300}}
        run.write_json("cluster.json", summary)
        return summary
    monkeypatch.setattr(runners, "runner", lambda cfg: fake)
    with caplog.at_level(logging.WARNING, logger="downpour.runners"):
        summary = train(cfg, run)
    assert summary["diverged"] == {"first_step": 150, "first_loss": 2.0, "last_step": 300, "last_loss": 2.0,
                                   "refused": 200, "pushes": 300} and len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(
        "the run diverged: 200 of its 300 pushes carried no finite gradient a shard accepted (its logged loss, 2 at "
        "step 300, averages only the pushes whose cost was finite); its model is not a trained one.")


def test_a_run_most_of_whose_steps_were_skipped_is_said_to_diverge_though_a_row_logged_its_end(tmp_path, caplog):
    """ufldl-sae at train.lr = 1e30 for 6 steps: steps 2-6 non-finite (weight_l2 inf) and skipped, yet train.log_every
    = 50 (the studies' rate) logged one row, at step 6, finite: its rows do not stop early, and the run is said to
    diverge all the same (else a study measures it as trained). More than half skipped is; half or fewer are not."""
    cfg = load_config("ufldl-sae", ["train.lr=1e30", "train.steps=6", "train.log_every=50", "train.threads=1",
                                    "train.tensorboard=false"])
    with caplog.at_level(logging.WARNING, logger="downpour.runners"):
        summary = train(cfg, RunDir.create(tmp_path / "run", cfg))
    assert summary["skipped_steps"] == 5 and [r["step"] for r in RunDir.open(tmp_path / "run").metrics()] == [6]
    assert summary["diverged"]["skipped"] == 5
    assert "the run diverged: 5 of its 6 steps had a non-finite cost or gradient and were skipped" in caplog.text
    # the analysis reads the same from the run's files
    assert recorded(tmp_path / "run")[:2] == (6, 5)
    assert training_summary(RunDir.open(tmp_path / "run").metrics(), (), 6, 5)["diverged"]["skipped"] == 5
    rows = [{"step": 6, "loss": 1.0}]
    assert runaway(rows, 6, 3) is None and runaway(rows, 6, 4)["skipped"] == 4


@pytest.mark.parametrize("runner, rate", [("local", ["train.optimizer=adam", "train.lr=1000"]),
                                          ("simulated", ["cluster.rule=adam", "cluster.lr=1000"])])
def test_a_run_shorter_than_log_every_whose_loss_ran_away_is_said_to_diverge_from_its_first_step(tmp_path, caplog,
                                                                                                   runner, rate):
    """ufldl-sae at Adam's rate 1000 for 6 steps, train.log_every = 50 (the studies' rate): one row, at step 6, the
    mean of the 6 steps (2.1e+05), every number finite; its step 1 logged 49.65. Growth needs two rows, so the run is
    said to diverge from model.json's first_trained, its first trained step, alone (else a study cell of 16-30 steps
    that runs away so is measured as trained)."""
    cfg = load_config("ufldl-sae", [f"cluster.runner={runner}", *rate, "train.steps=6", "train.log_every=50",
                                    "train.threads=1", "train.tensorboard=false"])
    with caplog.at_level(logging.WARNING, logger="downpour.runners"):
        summary = train(cfg, RunDir.create(tmp_path / "run", cfg))
    run = RunDir.open(tmp_path / "run")
    assert [r["step"] for r in run.metrics()] == [6] and not summary.get("skipped_steps")
    gone = summary["diverged"]
    assert gone["first_step"] == 1 and 10 < gone["first_loss"] < 100 and gone["last_step"] == 6
    assert gone["last_loss"] > 1e3 * gone["first_loss"]
    assert f"the run diverged: its loss grew from {gone['first_loss']:.4g} at step 1 to" in caplog.text
    # the analysis reads the same from the run's files
    assert training_summary(run.metrics(), (), *recorded(run.path))["diverged"] == gone


@pytest.mark.parametrize("runner, rate", [("local", ["train.optimizer=adam", "train.lr=1000"]),
                                          ("simulated", ["cluster.rule=adam", "cluster.lr=1000"])])
def test_a_resumed_run_keeps_its_first_trained_step(tmp_path, runner, rate):
    """The first trained step travels in the checkpoint (the local one, the server's): a run resumed past it still
    compares its rows with it (a resume would otherwise record its own first step, step 7 here). 6 steps: a simulated
    run's first pushes carry the loss of the weights its workers fetched at the start (3 steps logged 49.78)."""
    sets = [f"cluster.runner={runner}", *rate, "train.log_every=50", "train.threads=1", "train.tensorboard=false"]
    cfg = load_config("ufldl-sae", [*sets, "train.steps=6"])
    first = train(cfg, RunDir.create(tmp_path / "run", cfg))["diverged"]
    longer = load_config("ufldl-sae", [*sets, "train.steps=12"])
    again = train(longer, RunDir.open(tmp_path / "run"), resume=True)
    assert again["resumed_from"] == 6 and again["diverged"]["first_step"] == 1
    assert again["diverged"]["first_loss"] == first["first_loss"]
    assert json.loads((tmp_path / "run" / "model.json").read_text())["first_trained"]["step"] == 1


def test_a_simulated_run_whose_pushes_were_nearly_all_refused_is_said_to_diverge_in_pushes(tmp_path, caplog):
    """ufldl-sae on 2 simulated workers at train.lr = 1e30, 30 steps: 26 of its 30 pushes refused (non-finite), its
    one row (step 30) the mean of the 4 that were not, 49.78, its first push's loss: no runaway in the rows. The
    warning does not say its "metrics stop at step 30", where they do not, and the summary has ``diverged`` (else a
    study measures such a cell as trained), and its analysis a word of it."""
    cfg = load_config("ufldl-sae", ["cluster.runner=simulated", "cluster.workers=2", "train.lr=1e30", "train.steps=30",
                                    "train.log_every=50", "train.threads=1", "train.tensorboard=false"])
    with caplog.at_level(logging.WARNING, logger="downpour.runners"):
        summary = train(cfg, RunDir.create(tmp_path / "run", cfg))
    refused = summary["refused_pushes"]
    assert refused["of"] == 30 and refused["refused"] > 20
    assert summary["diverged"]["refused"] == refused["refused"] and summary["diverged"]["pushes"] == 30
    said = caplog.records[-1].getMessage()
    assert said.startswith(f"the run diverged: {refused['refused']} of its 30 pushes carried no finite gradient a "
                           f"shard accepted (its logged loss, ")
    assert "averages only the pushes whose cost was finite); its model is not a trained one. Lower train.lr" in said
    assert "metrics stop" not in said
    run = RunDir.open(tmp_path / "run")
    assert training_summary(run.metrics(), (), *recorded(run.path))["diverged"] == summary["diverged"]


def test_a_sandblaster_run_records_the_cost_its_first_iteration_started_from_and_keeps_it_on_resume(tmp_path):
    """A Sandblaster row is the cost where an L-BFGS iteration ended: model.json has the initial model's cost as
    first_trained (as the other runners' do), for the divergence check to compare with.
    Its reference: the initial model's cost on the whole batch, computed here by the shared step."""
    import torch

    from downpour.batch import Batch
    from downpour.models.registry import build
    from downpour.ps.setup import set_up_cluster
    from downpour.train.step import train_step

    sets = ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "model.name=rica-8x8", "model.hidden=16",
            "data.samples=300", "train.tensorboard=false", "train.threads=1"]
    cfg = load_config("tica-8x8", [*sets, "train.steps=2"])
    train(cfg, RunDir.create(tmp_path / "run", cfg))
    setup = set_up_cluster(runners.resolve(cfg))
    model, objective = build(runners.resolve(cfg), setup.data.input_shape)
    model.load_state_dict(setup.model.state_dict())
    with torch.random.fork_rng(devices=[]):
        initial = train_step(model, objective, Batch(setup.data.x)).loss
    first = json.loads((tmp_path / "run" / "model.json").read_text())["first_trained"]
    assert first["step"] == 0 and first["loss"] == pytest.approx(initial, rel=1e-5)
    assert RunDir.open(tmp_path / "run").metrics()[0]["loss"] < first["loss"]     # (a row: where iteration 1 ended)
    train(load_config("tica-8x8", [*sets, "train.steps=4"]), RunDir.open(tmp_path / "run"), resume=True)
    assert json.loads((tmp_path / "run" / "model.json").read_text())["first_trained"] == first
    assert recorded(tmp_path / "run")[2] == first
