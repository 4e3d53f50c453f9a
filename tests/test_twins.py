"""A run's no-faces twin (analysis.no_faces_twin): trained by `downpour train` after the run, scored
by its face test, resumed on its own, refused where the data hold no faces."""
from __future__ import annotations

import io
import json
import re
import shutil
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path

import pytest

from downpour.analysis.face_controls import NO_FACES
from downpour.analysis.run import analyze_run
from downpour.cli import main
from downpour.config import ConfigError
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings and analyses run in this process)

TINY_CAT = ["--config", "cat-demo", "--runner", "local", "--steps", "4", "--set", "train.tensorboard=false",
            "--set", "data.size=16", "--set", "model.kernels=[5,3]", "--set", "model.maps=[2,2]"]
FAST_ANALYSIS = ["--set", "analysis.splits=1", "--set", "analysis.probes=[]", "--set", "analysis.stimulus_steps=5",
                 "--set", "analysis.stimulus_restarts=1", "--set", "analysis.bootstrap=200",
                 "--set", "analysis.control_draws=1", "--set", "analysis.random_filters=50"]
TWIN = ["--set", "analysis.no_faces_twin=true"]


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """``downpour train ... --report`` of a tiny cat network with its twin, run once for the module (three tests
    began with this same command): (run folder, its stdout, its stderr). A test that changes the run takes a copy."""
    out = tmp_path_factory.mktemp("reported") / "run"
    with redirect_stdout(io.StringIO()) as printed, redirect_stderr(io.StringIO()) as said:
        assert main(["train", *TINY_CAT, *FAST_ANALYSIS, *TWIN, "--report", "--out", str(out)]) == 0
    return out, printed.getvalue(), said.getvalue()


def _copy(reported, tmp_path):
    return Path(shutil.copytree(reported[0], tmp_path / "run"))


def test_train_trains_the_twin_after_the_run_and_the_report_scores_it(reported):
    out, printed_out, printed_err = reported
    assert "then its no-faces twin" in printed_err
    summary = json.loads(next(line for line in printed_out.splitlines() if line.startswith("{")))
    assert summary["no_faces_twin"]["run"] == str(out / "no-faces") and summary["no_faces_twin"]["steps"] == 4
    twin = RunDir.open(out / "no-faces").config
    assert (twin.data.train_faces, twin.analysis.report, twin.analysis.no_faces_twin) == (0, False, False)
    assert twin.seed == RunDir.open(out).config.seed and twin.model == RunDir.open(out).config.model
    face = json.loads((out / "analysis.json").read_text())["face_neuron"]
    assert {r["method"] for r in face["controls"]} >= {NO_FACES}
    assert "Against the no-faces network" in face["controls_verdict"]["sentences"][0]
    assert "does not ask whether" not in (out / "report.html").read_text()


def test_a_resume_of_a_finished_run_trains_only_its_twin(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY_CAT, "--no-report", "--out", str(out)]) == 0
    metrics = (out / "metrics.jsonl").read_text()
    assert main(["train", "--resume", str(out)]) == 2                 # no twin asked for: nothing to do
    assert "already reached step 4" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), *TWIN]) == 0
    assert RunDir(out / "no-faces").finished(4) and (out / "metrics.jsonl").read_text() == metrics
    assert RunDir.open(out).config.analysis.no_faces_twin            # saved: `downpour analyze` scores the twin
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0                 # both finished: the twin is kept
    assert json.loads(capsys.readouterr().out.strip())["no_faces_twin"]["kept"]


def test_a_kept_downpour_runs_summary_has_the_keys_of_a_trained_one_and_no_sandblaster_field(tmp_path, capsys):
    """The summary of a Downpour run kept as it was has no "line_search_failures": [], a Sandblaster field its freshly
    trained summary has not; a cross-fit's record still gives every fold the key."""
    from downpour.crossfit import fold_summary

    out = tmp_path / "run"
    assert main(["train", *TINY_CAT, *TWIN, "--no-report", "--out", str(out)]) == 0
    trained = json.loads(capsys.readouterr().out.strip())
    assert main(["train", "--resume", str(out)]) == 0                 # both finished: both kept
    kept = json.loads(capsys.readouterr().out.strip())
    assert kept["kept"] and kept["no_faces_twin"]["kept"]
    for summary in (trained, kept, kept["no_faces_twin"]):
        assert "line_search_failures" not in summary
    assert fold_summary(kept)["line_search_failures"] == []


def test_a_resume_of_a_finished_run_and_twin_keeps_their_analysis(reported, tmp_path, capsys):
    """Nothing was left to train, yet the resume removed analysis.json, the figures and the report
    ("only its no-faces twin is left") and, with the report on, analysed the run again."""
    out = _copy(reported, tmp_path)
    analysis = (out / "analysis.json").read_text()
    assert main(["train", "--resume", str(out), "--no-report"]) == 0
    assert (out / "analysis.json").read_text() == analysis and (out / "report.html").is_file()
    err = capsys.readouterr().err     # (not "resuming RUN ..., then its no-faces twin", training nothing)
    assert f"{out} and its no-faces twin are already finished: nothing to train, both kept" in err
    assert "resuming" not in err
    assert main(["train", "--resume", str(out), "--report"]) == 0     # the report asked for: written, not analysed again
    assert (out / "analysis.json").read_text() == analysis and "report written" in capsys.readouterr().out


def test_a_new_run_into_a_finished_run_is_told_of_its_report_and_one_whose_twin_is_left_of_resume(reported, tmp_path,
                                                                                                    capsys):
    """A finished run is not told "resume it with --resume", which refuses a finished run."""
    out = _copy(reported, tmp_path)
    argv = ["train", *TINY_CAT, *TWIN, "--dry-run", "--out", str(out)]
    assert main(argv) == 2
    assert f"already holds a run; it is finished: `downpour report {out}` shows" in capsys.readouterr().err
    (out / "no-faces" / "model.json").unlink()                 # its twin stopped before its end: --resume trains it
    assert main(argv) == 2
    assert "already holds a run; resume it with --resume" in capsys.readouterr().err


def test_a_resume_that_changes_the_analysis_settings_does_not_keep_the_old_analysis(reported, tmp_path):
    """config.toml was saved with the new analysis.splits while analysis.json, kept, was made with the old."""
    out = _copy(reported, tmp_path)
    assert (out / "analysis.json").is_file() and (out / "report.html").is_file()
    assert main(["train", "--resume", str(out), "--no-report", "--set", "analysis.splits=2"]) == 0
    assert not (out / "analysis.json").exists() and not (out / "report.html").exists()
    assert RunDir.open(out).config.analysis.splits == 2
    assert main(["train", "--resume", str(out), "--report", "--set", "analysis.splits=3"]) == 0
    assert json.loads((out / "analysis.json").read_text())["options"]["splits"] == 3


def test_a_kept_run_keeps_the_training_settings_that_reproduce_it(tmp_path):
    """A cross-fit rerun with other --jobs kept a finished fold and saved the new train.threads in its
    config.toml, which then trained another model."""
    from dataclasses import replace

    from downpour.twins import train_kept

    out = tmp_path / "run"
    assert main(["train", *TINY_CAT, "--set", "train.threads=1", "--no-report", "--out", str(out)]) == 0
    cfg = RunDir.open(out).config
    again = replace(cfg, train=replace(cfg.train, threads=0), analysis=replace(cfg.analysis, splits=3))
    assert train_kept(again, out)["kept"]
    saved = RunDir.open(out).config
    assert saved.train.threads == 1 and saved.analysis.splits == 3     # trained as it was; analysed as asked now


def test_the_presets_twin_is_turned_off_for_data_without_lfw_faces(capsys, caplog):
    # the README's "your own images" command (the main preset, a folder source) is not refused
    with caplog.at_level("INFO", logger="downpour.twins"):
        assert main(["train", "--runner", "local", "--dry-run", "--set", "data.source=natural"]) == 0
    assert "no_faces_twin = false" in capsys.readouterr().out
    assert "no no-faces twin: this run trains on no lfw face" in caplog.text


@pytest.mark.parametrize("no_faces", ["data.source=natural", "data.train_faces=0"])
def test_a_twin_without_faces_to_leave_out_is_refused_before_anything_is_written(tmp_path, capsys, no_faces):
    # train_faces = 0 trained the run twice, and the report compared the network with itself
    out = tmp_path / "run"
    assert main(["train", *TINY_CAT, *TWIN, "--set", no_faces, "--out", str(out)]) == 2
    assert "analysis.no_faces_twin: this run trains on no lfw face" in capsys.readouterr().err
    assert not out.exists()


def test_the_analysis_names_a_missing_twin_and_two_no_faces_networks(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY_CAT, "--no-report", "--out", str(out)]) == 0
    opts = {"splits": 1, "probes": [], "stimulus_steps": 5, "bootstrap": 200, "control_draws": 1, "random_filters": 50}
    with pytest.raises(ConfigError, match="both name a no-faces network"):
        analyze_run(out, **opts, no_faces_twin=True, no_faces_run=str(out))
    with pytest.raises(ConfigError, match=r"`(downpour train --resume .*)` trains it") as told:
        analyze_run(out, **opts, no_faces_twin=True)
    advice = re.search(r"`downpour (train --resume .*)` trains it", str(told.value)).group(1).split()
    assert main(advice) == 0                                   # the advice works as given
    assert analyze_run(out, **opts, no_faces_twin=True)["face_neuron"]


def test_a_run_folder_holding_only_its_twin_is_taken(tmp_path):
    from downpour.config import load_config

    (tmp_path / "run" / "no-faces").mkdir(parents=True)       # crossfit may train a fold's twin first
    RunDir.create(tmp_path / "run", load_config("cat-demo"))
    (tmp_path / "other" / "notes").mkdir(parents=True)
    with pytest.raises(Exception, match="not an empty folder"):
        RunDir.create(tmp_path / "other", load_config("cat-demo"))


# what is shared is Ray itself, whatever runs on it: one worker and one shard (each actor a process importing torch)
ONE_ACTOR_EACH = ["--runner", "ray", "--workers", "1", "--shards", "1"]


@pytest.fixture
def ray_starts(monkeypatch):
    """Every connection to Ray, in order: True where it started Ray, False where it found Ray up."""
    from downpour.ps import connect_on_ray, starting_on_ray

    starts = []
    real = connect_on_ray.connect
    counted = lambda address: starts.append(real(address)) or starts[-1]      # noqa: E731
    for module in (connect_on_ray, starting_on_ray):                           # the driver imported it by name
        monkeypatch.setattr(module, "connect", counted)
    return starts


def test_on_ray_a_crossfit_shares_one_ray_over_its_folds(tmp_path, ray_starts):
    import ray

    out = tmp_path / "cf"
    assert main(["crossfit", *TINY_CAT, *ONE_ACTOR_EACH, "--folds", "2", "--control", "none", *FAST_ANALYSIS,
                 "--out", str(out)]) == 0
    assert RunDir(out / "fold-0").finished(4) and RunDir(out / "fold-1").finished(4)
    assert ray_starts == [True, False, False] and not ray.is_initialized()
    # run again over its finished folds (to test them again): nothing to train, no Ray (it started one for nothing)
    ray_starts.clear()
    assert main(["crossfit", *TINY_CAT, *ONE_ACTOR_EACH, "--folds", "2", "--control", "none", *FAST_ANALYSIS,
                 "--out", str(out)]) == 0
    assert ray_starts == [] and not ray.is_initialized()


def test_on_ray_the_twin_trains_on_the_runs_kept_actors_as_it_would_on_new_ones(tmp_path, monkeypatch):
    """The twin's shard and workers are the run's processes, rebuilt (downpour.ps.keeping_on_ray: each actor is a
    process importing torch), and its model is the one actors started anew train, bit for bit (sync, one thread).
    Its workers draw from torch's RNG while they train (a denoising term's masks), worker 0 from the run's state and
    worker 1 from its seed (ps.seeds.worker_rng): a kept worker whose ``again`` did not re-seed its process's RNG as
    a new actor's start does (it drew on from where the run left it, or from another seed) trains another model."""
    import ray

    from downpour.ps.connect_on_ray import held
    from downpour.ps.keeping_on_ray import Keeping

    sync = [*TINY_CAT, "--runner", "ray", "--workers", "2", "--shards", "1", "--no-report",
            "--set", "cluster.consistency=sync", "--set", "train.threads=1", "--set", "objective.denoising.weight=0.5"]
    taken, take = [], Keeping.take

    def counted(self, keys):
        got = take(self, keys)
        taken.append(sorted(key[0] for key in got))   # (the start pops what it takes from got)
        return got

    monkeypatch.setattr(Keeping, "take", counted)
    # one Ray for both commands (a start costs seconds): the first one's keeping is its own all the same (its
    # shared_ray finds Ray up and keeps its actors until it ends), and the second has no keeping to take from
    with held(""):
        assert main(["train", *sync, *TWIN, "--out", str(tmp_path / "kept")]) == 0
        assert taken == [[], ["shard", "worker", "worker"]]   # none for the run; the twin took the run's
        # the twin alone, as its own run (its config: twins.no_faces_config), on actors started anew. (The run's model
        # is not trained again: its actors were new ones in both ways, and what the twin takes from it is its actors.)
        assert main(["train", *sync, "--set", "data.train_faces=0", "--out", str(tmp_path / "anew")]) == 0
    assert len(taken) == 2 and not ray.is_initialized()
    kept, anew = (path / "model.safetensors" for path in (tmp_path / "kept" / "no-faces", tmp_path / "anew"))
    assert kept.read_bytes() == anew.read_bytes()
    assert RunDir(tmp_path / "kept" / "no-faces").finished(4)


@pytest.mark.parametrize("kind", ["shard", "worker"])
def test_on_ray_a_kept_actor_that_dies_before_its_rebuild_is_replaced_by_a_new_one(tmp_path, monkeypatch, caplog, kind,
                                                                                    ray_starts):
    """The twin's start took the run's actors (they answered), then one died before its ``again`` (killed here, as a
    node gone would): a new actor takes its place, said once, and the twin's cluster.json says which were fresh. Its
    death failed the twin's start ("ActorDiedError"). The run and its twin share one Ray, shut down after, dead actor
    or not, and a resume of both finished starts none (checked here, on the same command, not in a test of its own:
    each is a Ray start and three actor processes)."""
    import ray
    from ray_kill import kill_and_wait

    from downpour.ps.keeping_on_ray import Keeping

    take = Keeping.take

    def killing(self, keys):
        got = take(self, keys)
        for key, actor in got.items():
            if key[0] == kind:          # between take's check and the start's rebuild
                kill_and_wait(actor)
        return got

    monkeypatch.setattr(Keeping, "take", killing)
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="downpour.ps.cluster_on_ray"):
        assert main(["train", *TINY_CAT, *ONE_ACTOR_EACH, "--no-report", *TWIN, "--out", str(out)]) == 0
    assert RunDir(out).finished(4) and RunDir(out / "no-faces").finished(4)
    assert ray_starts == [True, False, False] and not ray.is_initialized()   # held, then each run found it up
    said = [r.getMessage() for r in caplog.records if "died before its rebuild" in r.getMessage()]
    assert said == [f"the kept {kind} 0 (an earlier run's actor, taken for this run) died before its rebuild "
                    "(ActorDiedError): a new one is started in its place"]
    starts = {"shards": ["kept"], "workers": ["kept"], kind + "s": ["fresh: the kept one died"]}
    assert RunDir.open(out / "no-faces").read_json("cluster.json")["actor_starts"] == starts
    assert RunDir.open(out).read_json("cluster.json")["actor_starts"] == {"shards": ["fresh"], "workers": ["fresh"]}
    # both finished, a resume trains nothing: it started Ray all the same, and said it trained the twin
    ray_starts.clear()
    caplog.clear()
    monkeypatch.setattr(Keeping, "take", take)
    with caplog.at_level("INFO", logger="downpour"):
        assert main(["train", "--resume", str(out), "--no-report"]) == 0
    assert ray_starts == [] and "training the no-faces twin" not in caplog.text and "finished, kept" in caplog.text


def test_no_twin_is_trained_or_asked_for_where_no_face_test_runs(tmp_path, capsys, caplog):
    """With analysis.dataset = digits the preset's twin was trained (the main job's 80 s) for a face test
    that never runs, and `analyze --set analysis.dataset=digits` of a run without its twin was refused."""
    with caplog.at_level("INFO", logger="downpour.twins"):
        assert main(["train", "--runner", "local", "--dry-run", "--set", "analysis.dataset=digits"]) == 0
    assert "no_faces_twin = false" in capsys.readouterr().out
    assert "no face test scores it (analysis.dataset = 'digits'" in caplog.text
    out = tmp_path / "run"
    assert main(["train", *TINY_CAT, *FAST_ANALYSIS, "--no-report", "--out", str(out)]) == 0
    run = RunDir.open(out)
    run.save_config(replace(run.config, analysis=replace(run.config.analysis, no_faces_twin=True)))   # its twin never trained
    assert main(["analyze", str(out)]) == 2 and "holds no trained twin yet" in capsys.readouterr().err
    assert main(["analyze", str(out), "--set", "analysis.dataset=digits", "--set", "analysis.positive=0"]) == 0
    assert json.loads((out / "analysis.json").read_text())["face_neuron"]["controls"] == []
    assert main(["analyze", str(out), "--set", "analysis.dataset=digits", "--set", "analysis.control_draws=2"]) == 2
    # (a folder's concept reads it too: not "only the face test reads it")
    assert ("analysis.control_draws: only the face test (analysis.dataset = 'lfw' with positive = 1) and a folder "
            "concept's controls (analysis.concept_controls) read it (this analysis: 'digits', 1)") in capsys.readouterr().err


def test_a_run_stopped_in_its_twin_says_the_resume_of_the_run_finishes_it(tmp_path, monkeypatch, caplog):
    """Ctrl-C in the twin says the run's own --resume, not only the twin's `--resume RUN/no-faces` (which skips the
    run's analysis and report), nor, in the twin's set-up, nothing."""
    import os
    import signal

    from downpour.train.telemetry import PartsMean

    add, calls = PartsMean.add, []

    def add_then_ctrl_c(self, parts, samples=0, loss=None):
        add(self, parts, samples, loss)
        calls.append(1)
        if len(calls) == 6:                  # the run's 4 steps, then inside the twin's second
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(PartsMean, "add", add_then_ctrl_c)
    out = tmp_path / "run"
    assert main(["train", *TINY_CAT, *TWIN, "--no-report", "--out", str(out)]) == 130
    assert RunDir(out).finished(4) and not RunDir(out / "no-faces").finished(4)
    assert f"stopped in its no-faces twin; `downpour train --resume {out}` finishes the twin" in caplog.text
    monkeypatch.setattr(PartsMean, "add", add)
    assert main(["train", "--resume", str(out)]) == 0 and RunDir(out / "no-faces").finished(4)


def test_a_run_train_kept_trains_again_from_step_0_reaches_its_runner_as_one_trained_again(tmp_path, monkeypatch):
    """A cross-fit's fold (or a twin) stopped before its first checkpoint keeps its workers and data.size when the
    same command trains it again, as a `--resume` does: its runner is told so (RunDir.again, which says a refusal of
    its data as a resume's), not a new run's remedies."""
    from downpour.config import load_config
    from downpour.twins import train_kept

    sets = [v for flag, v in zip(TINY_CAT, TINY_CAT[1:]) if flag == "--set"]
    cfg = load_config("cat-demo", [*sets, ("cluster.runner", "local"), ("train.steps", 4)])
    out = tmp_path / "fold-0"
    train_kept(cfg, out)
    (out / "model.json").unlink()                 # as a kill before the first checkpoint leaves it
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    told = []
    monkeypatch.setattr("downpour.runners.train", lambda cfg, run, resume=False, opened=None: told.append(
        (resume, run.again)) or {"run": str(run.path)})
    train_kept(cfg, out)
    assert told == [(False, True)]
    shutil.rmtree(out)                           # a folder holding nothing: a new run, not one trained again
    train_kept(cfg, out)
    assert told[1:] == [(False, False)]
