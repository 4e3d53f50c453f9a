"""An analysis stopped by Ctrl-C keeps its finished parts in RUN/analysis.partial.json; the next one reuses them."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import downpour.analysis.run as analysis_run
from downpour.analysis.partial import NAME
from downpour.analysis.report_guide import edge_caveat, passed_words
from downpour.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings and analyses run in this process)

TINY = ["--config", "ufldl-sae", "--steps", "10", "--set", "data.samples=500", "--set", "train.tensorboard=false",
        "--set", "train.log_every=5", "--runner", "local", "--no-report"]
FAST = ["--set", "analysis.splits=2", "--set", "analysis.probes=[\"digits\"]", "--set", "analysis.probe_samples=200",
        "--set", "analysis.probe_folds=2", "--set", "analysis.stimulus_steps=10", "--set", "analysis.stimulus_restarts=2",
        "--set", "analysis.random_filters=50", "--set", "analysis.bootstrap=50", "--set", "analysis.top_k=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run and the analysis.json an analysis run through writes of it."""
    run = tmp_path_factory.mktemp("partial") / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    assert main(["analyze", str(run), *FAST]) == 0
    whole = json.loads((run / "analysis.json").read_text())
    (run / "analysis.json").unlink()
    shutil.rmtree(run / "figures")
    return run, whole


def _summary(whole: dict) -> str:
    """The face test's line as the headline says it: passed or not, then the summary sentence."""
    verdict = whole["face_neuron"]["controls_verdict"]
    return passed_words(verdict) + verdict["sentences"][0]


def _stop_in(monkeypatch, name):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(analysis_run, name, stopped)


def _same(a, b):
    """Two analysis.json dicts, but for the seconds each took."""
    return {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_downpour_report_stopped_in_its_analysis_says_what_finishes_it(trained, monkeypatch, capsys):
    """`downpour report RUN` of a run without analysis.json analyses it first; stopped there it says what it kept and
    the command that finishes it, as `downpour analyze` does, not only "downpour: interrupted"."""
    run, _ = trained
    _stop_in(monkeypatch, "over_splits")         # the first part
    assert main(["report", str(run)]) == 130
    err = capsys.readouterr().err
    assert f"stopped in the analysis, before any part of it finished; `downpour report {run}` finishes it" in err
    assert not (run / "analysis.json").exists() and not (run / NAME).exists()


def test_downpour_report_that_analyses_first_says_the_headline_then_the_reports_path(trained, tmp_path, monkeypatch,
                                                                                       capsys):
    """`downpour report RUN` of a run without analysis.json analyses it, and ends on the path, not the headline after
    it, as `downpour analyze --report` and `downpour train` do: the last line is the file to open."""
    import downpour.analysis.report as report

    run, whole = trained
    copy = Path(shutil.copytree(run, tmp_path / "run"))

    def analysed_and_written(path, **how):
        (Path(path) / "analysis.json").write_text(json.dumps(whole))
        return Path(path) / "report.html"
    monkeypatch.setattr(report, "write_report", analysed_and_written)
    assert main(["report", str(copy)]) == 0
    summary = _summary(whole)
    out = capsys.readouterr().out
    assert out.endswith(f"downpour: face test: {summary}\ndownpour: report written to {copy / 'report.html'}\n")
    assert main(["report", str(copy)]) == 0                  # a report of an analysis already there: no headline
    assert "face test:" not in capsys.readouterr().out


def test_an_analysis_says_each_part_as_it_starts_measuring_it(trained, monkeypatch, caplog):
    """Else the main job's analysis (its run's, then its twin's) prints nothing for a minute or more after the
    training."""
    run, _ = trained
    _stop_in(monkeypatch, "face_controls")       # the second part
    with caplog.at_level(logging.INFO, logger="downpour.analysis.partial"):
        assert main(["analyze", str(run), *FAST]) == 130
    assert f"{run}: measuring the splits" in caplog.text and f"{run}: measuring the face test" in caplog.text
    (run / NAME).unlink()


def test_a_stopped_analysis_keeps_its_finished_parts_and_the_rerun_reuses_them(trained, monkeypatch, capsys):
    run, whole = trained
    with monkeypatch.context() as m:
        _stop_in(m, "invariance_curves")          # after the splits, the face test and the optimal stimulus
        assert main(["analyze", str(run), *FAST]) == 130
    err = capsys.readouterr().err
    assert not (run / "analysis.json").exists()       # nothing a reader would take for a finished analysis
    assert f"kept the splits, the face test, the optimal stimulus in {run / NAME}" in err
    assert f"`downpour analyze {run} --set analysis.splits=2" in err and "finishes it from there" in err
    kept = json.loads((run / NAME).read_text())
    assert sorted(kept["parts"]) == ["face test", "optimal stimulus", "splits"]

    with monkeypatch.context() as m:              # the rerun measures none of them again
        for name in ("over_splits", "face_controls", "optimal_stimulus"):
            _stop_in(m, name)
        assert main(["analyze", str(run), *FAST]) == 0
    assert _same(json.loads((run / "analysis.json").read_text()), whole)
    assert not (run / NAME).exists()                 # analysis.json holds every part by then
    assert not (run / "figures.partial").exists()


def test_parts_kept_for_other_analysis_options_are_measured_anew(trained, monkeypatch, capsys):
    run, whole = trained
    with monkeypatch.context() as m:
        _stop_in(m, "optimal_stimulus")
        assert main(["analyze", str(run), *FAST, "--set", "analysis.random_filters=60"]) == 130
    assert "kept the splits, the face test in" in capsys.readouterr().err
    calls = []
    real = analysis_run.over_splits
    monkeypatch.setattr(analysis_run, "over_splits", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(["analyze", str(run), *FAST]) == 0      # another random_filters (the splits read it): another key
    assert calls == [1]
    assert _same(json.loads((run / "analysis.json").read_text()), whole)


def test_parts_kept_under_options_no_part_reads_are_reused(trained, monkeypatch, capsys):
    """analysis.report and analysis.top_k change no kept part's numbers, yet were keyed: the rerun measured all anew."""
    run, whole = trained
    with monkeypatch.context() as m:
        _stop_in(m, "optimal_stimulus")
        assert main(["analyze", str(run), *FAST, "--set", "analysis.top_k=5", "--set", "analysis.report=true"]) == 130
    assert "kept the splits, the face test in" in capsys.readouterr().err
    for name in ("over_splits", "face_controls"):     # read back, not measured
        _stop_in(monkeypatch, name)
    assert main(["analyze", str(run), *FAST]) == 0
    assert _same(json.loads((run / "analysis.json").read_text()), whole)


def test_every_analysis_option_is_keyed_or_said_to_change_no_part():
    """A new AnalysisConfig field must be classified: read by a kept part (keyed) or not (a rerun reuses the parts)."""
    import dataclasses

    from downpour.analysis.partial import NOT_READ_BY_PARTS, READ_BY_PARTS
    from downpour.config import AnalysisConfig

    assert not set(READ_BY_PARTS) & set(NOT_READ_BY_PARTS)
    assert sorted(READ_BY_PARTS + NOT_READ_BY_PARTS) == sorted(f.name for f in dataclasses.fields(AnalysisConfig))


def test_the_key_reads_the_run_config_but_not_its_analysis_section(trained, tmp_path):
    """config.toml's [analysis] is read through the options (their READ_BY_PARTS); its report = true re-measured all."""
    from downpour.analysis.partial import inputs_key
    from downpour.train.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    key = inputs_key(RunDir.open(run), {}, None)
    config = (run / "config.toml").read_text()
    assert "report = false" in config and config.startswith("seed = 0\n")
    (run / "config.toml").write_text(config.replace("report = false", "report = true"))
    assert inputs_key(RunDir.open(run), {}, None) == key
    (run / "config.toml").write_text("seed = 1\n" + config.removeprefix("seed = 0\n"))
    assert inputs_key(RunDir.open(run), {}, None) != key


def test_an_analysis_stopped_before_its_first_part_says_it_kept_nothing(trained, monkeypatch, capsys):
    run, _ = trained
    (run / "analysis.json").unlink(missing_ok=True)
    _stop_in(monkeypatch, "over_splits")
    assert main(["analyze", str(run), *FAST]) == 130
    err = capsys.readouterr().err
    assert "before any part of it finished" in err and not (run / NAME).exists() and not (run / "analysis.json").exists()


def test_parts_kept_by_other_code_are_not_read_back(trained, monkeypatch, tmp_path):
    """A partial file kept before an upgrade was read back as the new code's numbers (the key had no code in it)."""
    from downpour.analysis import partial
    from downpour.train.rundir import RunDir

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("X = 1\n")
    before = partial.source_digest(tmp_path)
    (tmp_path / "pkg" / "a.py").write_text("X = 2\n")
    assert partial.source_digest(tmp_path) != before
    key = partial.inputs_key(RunDir.open(trained[0]), {"top_k": 4}, None)
    monkeypatch.setattr(partial, "code_digest", lambda: "downpour of another day")
    assert partial.inputs_key(RunDir.open(trained[0]), {"top_k": 4}, None) != key


def test_the_key_reads_the_input_processing_and_the_images_of_a_folder_the_options_name(trained, tmp_path):
    """A folder's images were keyed by its name (edited, its old parts were read back), the run's preprocess.* not."""
    from downpour.analysis.partial import inputs_key
    from downpour.train.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    images = tmp_path / "images"
    (images / "cat").mkdir(parents=True)
    (images / "cat" / "1.png").write_bytes(b"one")
    for options in ({"dataset": str(images)}, {"poses": str(images)}, {"probes": ["digits", str(images)]}):
        key = inputs_key(RunDir.open(run), options, None)
        (images / "cat" / "1.png").write_bytes((images / "cat" / "1.png").read_bytes() + b"!")
        assert inputs_key(RunDir.open(run), options, None) != key, options
    key = inputs_key(RunDir.open(run), {}, None)
    (run / "preprocess.json").write_text((run / "preprocess.json").read_text() + " ")
    assert inputs_key(RunDir.open(run), {}, None) != key


def test_an_unreadable_partial_file_is_measured_anew_and_logged(trained, caplog):
    from downpour.analysis.partial import Kept
    from downpour.train.rundir import RunDir

    (trained[0] / NAME).write_text('{"key": "abc", "parts": {"spl')       # torn
    with caplog.at_level("INFO"):
        kept = Kept.open(RunDir.open(trained[0]), "abc")
    assert kept.parts == {} and f"{trained[0] / NAME}: unreadable" in caplog.text and not (trained[0] / NAME).exists()


def test_a_temp_file_left_by_a_kill_mid_write_goes_with_the_next_analysis_and_its_cleanup(trained):
    """A kill while a part was written left analysis.partial.json.tmp (the file itself whole), and nothing removed it."""
    from downpour.analysis.partial import Kept
    from downpour.train.rundir import RunDir

    tmp = trained[0] / (NAME + ".tmp")
    tmp.write_text('{"key": "abc", "parts": {"spl')                   # torn where the kill left it
    kept = Kept.open(RunDir.open(trained[0]), "abc")
    assert kept.parts == {} and not tmp.exists()
    tmp.write_text('{"key": "abc", "parts": {"spl')
    kept.discard()                                                    # analysis.json written: every part in it
    assert not tmp.exists()


def test_a_stop_before_the_first_part_names_no_part_kept_for_other_inputs(trained, monkeypatch, capsys):
    """Not "kept the splits in ...: `...` finishes it from there" of another analysis's parts, never reused."""
    run, _ = trained
    (run / NAME).write_text(json.dumps({"key": "another model's", "parts": {"splits": {}}}))
    _stop_in(monkeypatch, "over_splits")
    assert main(["analyze", str(run), *FAST]) == 130
    err = capsys.readouterr().err
    assert "before any part of it finished" in err and "kept the splits" not in err and not (run / NAME).exists()


def test_parts_kept_on_another_thread_count_are_not_read_back(trained):
    """torch's sums come out otherwise on another thread count (analyze_run sets train.threads for that reason)."""
    import torch

    from downpour.analysis.partial import inputs_key
    from downpour.train.rundir import RunDir

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = inputs_key(RunDir.open(trained[0]), {}, None)
        torch.set_num_threads(2)
        assert inputs_key(RunDir.open(trained[0]), {}, None) != one
    finally:
        torch.set_num_threads(before)


def test_a_folder_named_as_a_built_in_set_is_not_read_into_the_key(trained, tmp_path, monkeypatch):
    """analysis.probes = ["digits"] is scikit-learn's digits even where the working folder holds a digits/ folder."""
    from downpour.analysis.partial import inputs_key
    from downpour.train.rundir import RunDir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    key = inputs_key(RunDir.open(trained[0]), {"probes": ["digits"]}, None)
    (tmp_path / "digits" / "photo.png").write_bytes(b"not what the probe reads")
    assert inputs_key(RunDir.open(trained[0]), {"probes": ["digits"]}, None) == key


def test_a_run_that_trains_on_drops_the_partial_file_and_its_temp_file(trained, tmp_path):
    """drop_analysis (a resume, a twin added) removed analysis.partial.json but left the .tmp a kill mid-write left."""
    from downpour.train.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    for name in (NAME, NAME + ".tmp"):
        (run / name).write_text('{"key": "abc", "parts": {}}')
    RunDir.open(run).drop_analysis("the model is about to change")
    assert not (run / NAME).exists() and not (run / (NAME + ".tmp")).exists()
    assert (run / "model.safetensors").is_file()


def test_the_default_layer_spelled_out_shares_the_parts(trained, monkeypatch, capsys):
    """analysis.layer = "" and the layer the model resolves it to (probe_layers = [] and the default list spelled out)
    are one analysis: keyed as written, the rerun of one would measure the other's parts anew."""
    run, whole = trained
    spelled = ["--set", 'analysis.layer="codes"', "--set", 'analysis.probe_layers=["codes"]']   # ufldl-sae's defaults
    with monkeypatch.context() as m:
        _stop_in(m, "optimal_stimulus")
        assert main(["analyze", str(run), *FAST, *spelled]) == 130
    assert "kept the splits, the face test in" in capsys.readouterr().err
    for name in ("over_splits", "face_controls"):     # read back, not measured
        _stop_in(monkeypatch, name)
    assert main(["analyze", str(run), *FAST]) == 0
    assert _same(json.loads((run / "analysis.json").read_text()), whole)


def test_probes_in_another_order_share_the_key(trained):
    """Each probe is a part of its own, named by its set: ["lfw", "digits"] and ["digits", "lfw"] measure the same."""
    from downpour.analysis.partial import inputs_key
    from downpour.train.rundir import RunDir

    run = RunDir.open(trained[0])
    assert inputs_key(run, {"probes": ["lfw", "digits"]}, None) == inputs_key(run, {"probes": ["digits", "lfw"]}, None)


def test_the_no_faces_network_is_keyed_by_its_files_not_its_spelling(trained, tmp_path, monkeypatch):
    """no_faces_run = "nf" and "./nf" score one network (its files are keyed); the spelling missed the parts."""
    from downpour.analysis.partial import inputs_key
    from downpour.train.rundir import RunDir

    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained[0], tmp_path / "nf")
    run = RunDir.open(trained[0])
    assert (inputs_key(run, {"no_faces_run": "nf"}, tmp_path / "nf")
            == inputs_key(run, {"no_faces_run": "./nf"}, tmp_path / "nf"))


def test_a_class_folder_linked_in_is_keyed_by_its_images(trained, tmp_path):
    """The loader reads a class sub-folder that is a symbolic link, and so does the key: an rglob that does not enter
    it leaves the key as it was when an image there is edited, and the parts measured on the old image are read
    back."""
    from downpour.analysis.partial import inputs_key
    from downpour.train.rundir import RunDir

    (tmp_path / "elsewhere" / "cat").mkdir(parents=True)
    (tmp_path / "elsewhere" / "cat" / "1.png").write_bytes(b"one")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "cat").symlink_to(tmp_path / "elsewhere" / "cat")
    run, options = RunDir.open(trained[0]), {"dataset": str(tmp_path / "images")}
    key = inputs_key(run, options, None)
    (tmp_path / "elsewhere" / "cat" / "1.png").write_bytes(b"two")
    assert inputs_key(run, options, None) != key


def test_file_names_and_digests_do_not_run_together_in_the_key(trained, tmp_path, monkeypatch):
    """Files x and y of folder F hashed as "F x" digest(x) "F y" digest(y), the very bytes of one file named
    x + digest(x) + "F y" holding y's image: two folders of other images shared a key."""
    import hashlib

    from downpour.analysis.partial import inputs_key
    from downpour.train.rundir import RunDir

    monkeypatch.chdir(tmp_path)
    run, options = RunDir.open(trained[0]), {"dataset": "F"}
    (tmp_path / "F").mkdir()
    (tmp_path / "F" / "x").write_bytes(b"one image")
    (tmp_path / "F" / "y").write_bytes(b"another")
    key = inputs_key(run, options, None)
    shutil.rmtree(tmp_path / "F")
    (tmp_path / "F").mkdir()
    (tmp_path / "F" / f"x{hashlib.sha256(b'one image').hexdigest()}F y").write_bytes(b"another")
    assert inputs_key(run, options, None) != key


def test_a_run_that_trains_on_drops_the_figures_a_killed_analysis_was_drawing(trained, tmp_path):
    """figures.partial/ was not among a run's analysis outputs: a run trained on, or again, kept it for good."""
    from downpour.train.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    for drop in (lambda r: r.drop_analysis("the model is about to change"), RunDir.discard_training):
        (run / "figures.partial").mkdir()
        (run / "figures.partial" / "loss.png").write_bytes(b"half drawn")
        drop(RunDir.open(run))
        assert not (run / "figures.partial").exists()


def test_an_analysis_that_fails_as_it_moves_its_figures_leaves_no_figures_partial(trained, tmp_path):
    from downpour.analysis.run import analyze_run

    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    (run / "analysis.json").unlink(missing_ok=True)
    (run / "figures").mkdir(exist_ok=True)
    (run / "figures" / "loss.png").unlink(missing_ok=True)
    (run / "figures" / "loss.png").mkdir()                        # in the way of the new loss.png
    (run / "figures" / "loss.png" / "mine").write_text("a folder of the user's")
    with pytest.raises(OSError):
        analyze_run(run, splits=2, probes=["digits"], probe_samples=200, probe_folds=2, stimulus_steps=10,
                    stimulus_restarts=2, random_filters=50, bootstrap=50)
    assert not (run / "figures.partial").exists() and not (run / "analysis.json").exists()


def test_a_poses_folder_named_digits_is_keyed_by_its_images(trained, tmp_path, monkeypatch):
    """analysis.poses names nothing but a folder, so a folder called ``digits`` is read as one (analysis/poses.py);
    the key must not take the name for the built-in set and hash none of its images."""
    from downpour.analysis.partial import inputs_key
    from downpour.train.rundir import RunDir

    (tmp_path / "digits" / "0").mkdir(parents=True)
    (tmp_path / "digits" / "0" / "1.png").write_bytes(b"one")
    monkeypatch.chdir(tmp_path)
    run, options = RunDir.open(trained[0]), {"poses": "digits"}
    key = inputs_key(run, options, None)
    (tmp_path / "digits" / "0" / "1.png").write_bytes(b"two")
    assert inputs_key(run, options, None) != key


def test_an_analysis_ends_by_saying_its_edge_share_and_face_test_summary(trained, tmp_path, capsys):
    """`downpour train` ended on a JSON line and a report's path: what the run learned was only in the files."""
    run, whole = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    capsys.readouterr()
    assert main(["analyze", str(copy), *FAST]) == 0
    out = capsys.readouterr().out
    edges = whole["filters"]["edge_fraction"]
    ci = whole["filters"]["edge_fraction_ci"]
    assert (f"downpour: first-layer filters edge-like: {edges:.0%}, 95% interval {ci[0]:.0%}–{ci[1]:.0%}"
            f"{edge_caveat(whole['filters'])} (analysis.json filters.edge_fraction and edge_fraction_ci)\n") in out
    summary = _summary(whole)
    assert f"downpour: face test: {summary}\n" in out


@pytest.mark.parametrize("dataset, said", [("digits", "controls (none: analysis.dataset = 'digits')"),
                                           ("shapes", "controls for stripes")])
def test_the_log_names_a_concepts_controls_as_the_report_does_not_the_face_test(trained, tmp_path, monkeypatch, caplog,
                                                                                capsys, dataset, said):
    """A folder concept's analysis does not log "measuring the face test" (its report titles the part "Controls for
    stripes"), nor does digits', which runs no controls at all; its Ctrl-C line names the part as the log did, not
    "kept the splits, the face test" (the stored part's name) after the log said the controls."""
    from PIL import Image

    run, _ = trained
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    rng = np.random.default_rng(0)
    for name in ("blobs", "stripes"):
        (tmp_path / "shapes" / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 256, (16, 16), dtype=np.uint8)
            if name == "stripes":
                pixels[::2] = 255
            Image.fromarray(pixels).save(tmp_path / "shapes" / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    _stop_in(monkeypatch, "optimal_stimulus")      # the part after the controls
    argv = ["--set", f"analysis.dataset={dataset}", "--set", f"analysis.positive={1 if dataset == 'shapes' else 7}"]
    with caplog.at_level(logging.INFO, logger="downpour.analysis.partial"):
        fast = [a for k in range(0, len(FAST), 2) if dataset == "shapes" or FAST[k + 1] != "analysis.bootstrap=50"
                for a in FAST[k:k + 2]]                       # (digits runs no controls: its bootstrap is refused)
        assert main(["analyze", str(copy), *fast, *argv]) == 130
    assert f"{copy}: measuring the {said}" in caplog.text and "face test" not in caplog.text
    err = capsys.readouterr().err
    assert f"kept the splits, the {said} in {copy / 'analysis.partial.json'}" in err and "face test" not in err
