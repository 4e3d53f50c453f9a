"""What the analysis and the report do with runs and settings they cannot use: one line naming the file,
key or layer, before the work where it can be found before (else each of these is a traceback, or an
error after the whole analysis, or a misleading message)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from downpour.analysis.report import write_report
from downpour.analysis.report_training import staleness_histograms
from downpour.analysis.run import analyze_run
from downpour.analysis.selectivity import split
from downpour.config import ConfigError, load_config
from downpour.crossfit import fold_config
from downpour.errors import DataError
from downpour.train.checkpoint import PAIR_KEY, sha256_of
from downpour.train.json_digest import rewrite_json
from downpour.train.loop import run_local
from downpour.train.rundir import NotARunError, RunDir

FAST = dict(splits=1, probes=[], stimulus_steps=5, stimulus_restarts=1, random_filters=50, top_k=3, bootstrap=100,
            control_draws=1)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    """A tiny cat network (two stages), trained 4 steps and analysed."""
    path = tmp_path_factory.mktemp("bad") / "run"
    cfg = load_config("cat-demo", ["train.steps=4", "train.tensorboard=false", "data.size=16", "model.kernels=[5,3]",
                                   "model.maps=[2,2]", "train.threads=1"])
    run_local(cfg, RunDir.create(path, cfg))
    analyze_run(path, **FAST)
    return path


@pytest.fixture
def run(analysed, tmp_path) -> Path:
    return Path(shutil.copytree(analysed, tmp_path / "run"))


def _edit_json(path: Path, edit) -> None:
    value = json.loads(path.read_text())
    path.write_text(json.dumps(edit(value)))


@pytest.mark.parametrize("edit, named", [
    (lambda a: {k: v for k, v in a.items() if k != "optimal_stimulus"}, "KeyError: 'optimal_stimulus'"),
    (lambda a: {}, "KeyError: 'training'"),       # (the first field the report reads: the loss headline's)
    (lambda a: [a], "it holds a list"),
    (lambda a: {k: v for k, v in a.items() if k != "invariance"}, "KeyError: 'invariance'"),
    (lambda a: {**a, "optimal_stimulus": {**a["optimal_stimulus"], "norm": "big"}}, "ValueError"),
    # sections the analysis always writes, read as "not applicable" when missing: "This model has no first-layer
    # filters to draw" (of a cat network), "No probes were run" (its config listing two)
    *[(lambda a, key=key: {k: v for k, v in a.items() if k != key}, f"KeyError: '{key}'")
      for key in ("filters", "probes", "training", "figures", "options")],
    # the face test's verdict and setup, written with its rows: without them the report printed the table, then
    # "Criterion: ." and no sentence (verdict), or called a test chosen once "once per split" (setup)
    *[(lambda a, key=key: {**a, "face_neuron": {k: v for k, v in a["face_neuron"].items() if k != key}},
       f"KeyError: '{key}'") for key in ("controls_verdict", "controls_setup")],
])
def test_the_report_of_an_edited_analysis_json_names_it(run, edit, named):
    _edit_json(run / "analysis.json", edit)
    with pytest.raises(NotARunError, match="analysis.json' lacks a field the report reads") as err:
        write_report(run)
    assert named in str(err.value) and f"downpour analyze {run} --report" in str(err.value)


@pytest.mark.parametrize("damage", ["weights", "model.json"])
def test_a_run_shared_without_whole_weights_keeps_its_analysis_and_reports_from_it(run, damage):
    """No model.safetensors (or a torn model.json) read as another model than the one analysed: the report removed
    analysis.json, figures/ and report.html, then failed for the missing weights."""
    write_report(run)
    if damage == "weights":
        (run / "model.safetensors").unlink()
    else:
        (run / "model.json").write_text('{"model": "cat-de')
    assert write_report(run).is_file()
    assert (run / "analysis.json").is_file() and any((run / "figures").iterdir())


def test_an_analysis_json_cut_short_is_named_with_the_way_to_write_it_again(run):
    text = (run / "analysis.json").read_text()
    (run / "analysis.json").write_text(text[:300])
    with pytest.raises(NotARunError, match="analysis.json' is not valid JSON") as err:
        write_report(run)
    assert f"downpour analyze {run} --report" in str(err.value)


def test_an_analysis_from_before_the_edge_measure_is_not_called_too_thin(run):
    _edit_json(run / "analysis.json", lambda a: {**a, "filters": {k: v for k, v in a["filters"].items() if k != "edge_fraction"}})
    page = write_report(run).read_text()
    assert "not measured for edges" in page and "too thin" not in page


@pytest.mark.parametrize("text, found", [
    ('{"overall": {"histogram": {"a": 3}}}', {}),
    ("[1, 2]", {}),
    ('{"per_worker": [1], "overall": {"histogram": {"0": 3, "2": 1}}}', {"overall": {0: 3, 2: 1}}),
    ("\xff\xfe", {}),
])
def test_a_malformed_staleness_json_is_skipped_not_fatal(tmp_path, text, found):
    (tmp_path / "staleness.json").write_bytes(text.encode("latin-1"))
    assert staleness_histograms(RunDir(tmp_path), []) == found


def test_a_figures_file_is_named_before_the_measurements_and_a_stale_staging_file_goes(run, monkeypatch):
    shutil.rmtree(run / "figures")
    (run / "figures").write_text("not a folder")
    measured = []
    monkeypatch.setattr("downpour.analysis.run._measure", lambda *a: measured.append(1))
    with pytest.raises(NotARunError, match="figures' is a file"):
        analyze_run(run, **FAST)
    assert measured == []
    (run / "figures").unlink()
    (run / "figures.partial").write_text("left by something")
    monkeypatch.undo()
    analyze_run(run, **FAST)
    assert (run / "figures").is_dir() and not (run / "figures.partial").exists()


@pytest.mark.parametrize("where", ["run", "figures"])
def test_a_run_that_cannot_be_written_is_named_before_the_measurements_and_keeps_its_report(run, monkeypatch, where):
    """A read-only run folder: a traceback after the measurements; a read-only figures/: a traceback after the
    run's report.html was gone, and figures.partial left behind."""
    import errno

    write_report(run)
    report, touch = (run / "report.html").read_text(), Path.touch
    folder = run if where == "run" else run / "figures"

    def read_only(self, *args, **kwargs):
        if self.parent == folder:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return touch(self, *args, **kwargs)

    monkeypatch.setattr(Path, "touch", read_only)
    measured = []
    monkeypatch.setattr("downpour.analysis.run._measure", lambda *a: measured.append(1))
    with pytest.raises(NotARunError, match=f"{str(folder)!r} cannot be written \\(Read-only file system\\)"):
        analyze_run(run, **FAST)
    assert measured == [] and (run / "report.html").read_text() == report and not (run / "figures.partial").exists()
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(NotARunError, match="cannot write .*report.html' \\(Permission denied\\)"):
        write_report(run)


@pytest.mark.parametrize("options, key", [({"layer": "nope"}, "analysis.layer"),
                                          ({"probe_layers": ["nope"], "probes": ["lfw"]}, "analysis.probe_layers")])
def test_a_layer_the_model_lacks_names_its_key_before_the_measurements(run, monkeypatch, options, key):
    monkeypatch.setattr("downpour.analysis.run._measure", lambda *a: pytest.fail("measured"))
    with pytest.raises(ConfigError, match=f"{key} = 'nope' is not a feature layer"):
        analyze_run(run, **options)


def test_a_misspelt_layer_names_the_nearest_one(run, monkeypatch):
    """`downpour analyze RUN --set analysis.layer=stage2/code` listed the layers but, unlike `downpour train`'s check
    of the same key, suggested none."""
    monkeypatch.setattr("downpour.analysis.run._measure", lambda *a: pytest.fail("measured"))
    with pytest.raises(ConfigError, match="did you mean 'stage2/codes'"):
        analyze_run(run, layer="stage2/code")


def _set_weights(run: Path, change) -> None:
    """Change model.safetensors and record its new digest in model.json, as a hand edit would."""
    tensors = load_file(run / "model.safetensors")
    change(tensors)
    save_file(tensors, run / "model.safetensors")
    rewrite_json(run / "model.json", **{PAIR_KEY: sha256_of(run / "model.safetensors")})


def test_a_model_with_non_finite_weights_is_refused_with_its_parameter(run):
    _set_weights(run, lambda t: t["stages.1.filter.weight"].view(-1)[0].fill_(float("nan")))
    with pytest.raises(NotARunError, match=r"non-finite values in stages\.1\.filter\.weight"):
        analyze_run(run, **FAST)


def test_a_dead_layer_is_a_data_error_naming_it_not_a_traceback(run):
    _set_weights(run, lambda t: t["stages.1.filter.weight"].zero_())
    with pytest.raises(DataError, match=r"the best single neuron of layer 'stage2': no candidate of .*\(set analysis\.layer to "
                                        r"another of CatNet's feature layers: 'stage1/codes', 'stage1/pooled', "
                                        r"'stage1', 'stage2/codes', 'stage2/pooled'\)"):
        analyze_run(run, **FAST)


def test_a_dead_layer_of_a_one_layer_model_says_it_has_no_other(tmp_path):
    """ufldl-sae at train.lr = 200 (its codes all saturated) is told its model has no other feature layer than
    'codes', not to "set analysis.layer to another layer"."""
    cfg = load_config("ufldl-sae", ["train.steps=2", "train.tensorboard=false", "data.samples=500", "train.threads=1"])
    path = tmp_path / "sae"
    run_local(cfg, RunDir.create(path, cfg))
    _set_weights(path, lambda t: t["weight"].zero_())      # every code the same to every image
    with pytest.raises(DataError) as err:
        analyze_run(path, **FAST)
    assert "('codes' is Autoencoder's only feature layer: analysis.layer has no other to name)" in str(err.value)
    assert "another" not in str(err.value)


def test_a_dead_layer_of_a_run_that_diverged_says_it_diverged(run):
    """cnn-digits on 3 simulated workers at cluster.lr = 5 runs away to 5e19: its analysis says where its training
    went and that it diverged, not only that no unit of 'fc' can be chosen and to set analysis.layer to another
    layer."""
    _set_weights(run, lambda t: t["stages.1.filter.weight"].zero_())
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    with (run / "metrics.jsonl").open("a") as f:       # (the same stages as the last row: one stage's loss ran away)
        f.write(json.dumps({**last, "step": 5, "loss": 5.1e19}) + "\n")
    with pytest.raises(DataError, match=r"'stage2/pooled'\)\. Its training is in metrics\.jsonl; the run diverged: its "
                                        r"loss grew from .* to 5\.1e\+19 at step 5"):
        analyze_run(run, **FAST)


def test_too_few_probe_samples_names_the_key(run, monkeypatch):
    """Before the measurements: it came after the face test and the invariance sweeps (part 4 of the analysis)."""
    monkeypatch.setattr("downpour.analysis.run._measure", lambda *a: pytest.fail("measured"))
    with pytest.raises(DataError, match=r"linear probe on 'lfw': analysis.probe_samples = 3 keeps \d image"):
        analyze_run(run, **{**FAST, "probes": ["lfw"], "probe_samples": 3})


def test_the_probe_sets_are_checked_from_their_labels_and_loaded_only_when_probed(run, monkeypatch):
    """The up-front check of probe_samples holds no probe set's images through the face test and the sweeps (the main
    preset's digits: 15.2 MB): its refusal comes from the labels; the analysis's own set (lfw) is loaded once."""
    import downpour.analysis.run as analysis_run
    loaded, real = [], analysis_run.load_labelled
    monkeypatch.setattr(analysis_run, "load_labelled", lambda name, *a, **k: loaded.append(name) or real(name, *a, **k))
    monkeypatch.setattr(analysis_run, "_measure", lambda *a: pytest.fail("measured"))
    with pytest.raises(DataError, match=r"linear probe on 'digits': analysis.probe_samples = 12 keeps \d image"):
        analyze_run(run, **{**FAST, "probes": ["lfw", "digits"], "probe_samples": 12})
    assert loaded == ["lfw"]


def test_a_set_with_one_image_of_a_class_blames_the_set_not_test_fraction():
    with pytest.raises(DataError, match="holds 1 image of class 1.*fold:I:K"):
        split(np.array([0, 0, 0, 1]), 0.5, seed=0)
    with pytest.raises(ConfigError, match="analysis.test_fraction = 0.1"):
        split(np.array([0] * 5 + [1] * 5), 0.1, seed=0)


def test_the_analysis_runs_with_the_runs_own_torch_threads(run, monkeypatch):
    seen = []
    monkeypatch.setattr("downpour.analysis.run._analyze", lambda path, options: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        analyze_run(run)
        assert seen == [1]                       # train.threads = 1, whatever the caller's
        assert torch.get_num_threads() == 2      # and the caller's restored
    finally:
        torch.set_num_threads(before)


def test_a_crossfit_config_file_setting_a_key_the_pooled_test_ignores_is_refused(tmp_path):
    (tmp_path / "cf.toml").write_text('base = "cat-demo"\n[analysis]\nface_select = "heldout"\n')
    with pytest.raises(ConfigError, match=r"cf.toml: analysis.face_select = 'heldout': the cross-fit's face test does not read it"):
        fold_config(str(tmp_path / "cf.toml"), [], 0, 2)


def test_a_probe_on_the_images_a_supervised_network_trained_on_says_so(tmp_path):
    """cnn-digits trains with labels on 1,438 of the digits (data.digits_heldout = 0.2), so its digits probe
    cross-validates mostly on those same images: the report says so, else it gives the accuracy as if held out; its
    classifier's accuracy on the 359 held out stands beside its training digits' (analysis.json's classifier)."""
    path = tmp_path / "cnn"
    cfg = load_config("cnn-digits", ["train.steps=4", "train.tensorboard=false"])
    run_local(cfg, RunDir.create(path, cfg))
    a = analyze_run(path, **{**FAST, "probes": ["digits", "lfw"], "probe_samples": 300})
    assert [p.get("trained_on") for p in a["probes"]] == ["images and labels", None]
    assert (a["classifier"]["train"]["n"], a["classifier"]["heldout"]["n"]) == (1438, 359)
    # (the note's words fit the best-unit table too: "this measures", not "this probe measures")
    page = write_report(path).read_text()
    assert page.count("this measures how well it fits them") == 1
    assert '<h2 id="classifier">Classifier accuracy</h2>' in page and "held-out digits (never trained on)" in page
    # the figure a classifier is trained for comes first, before the training curves (an unsupervised run has none)
    assert page.index('<h2 id="classifier">') < page.index('<h2 id="training">') < page.index('<h2 id="invariance">')
    assert 'Sections: <a href="#classifier">Classifier accuracy</a> · <a href="#training">' in page
    # its best unit on digits is one of its fc codes (the default layer; not its logits),
    # trained on those labels: the table says so too
    no_face_test = {k: v for k, v in FAST.items() if k not in ("bootstrap", "control_draws")}
    b = analyze_run(path, **{**no_face_test, "dataset": "digits", "positive": 3, "probes": []})
    assert a["layer"] == b["layer"] == "fc"
    assert b["face_neuron"]["trained_on"] == "images and labels"
    assert "this measures how well it fits them" in write_report(path).read_text()


def test_lfw_is_never_called_trained_on_it_is_the_part_the_run_held_out(analysed):
    """A cat network trained on lfw's training part: its lfw probe's note must not say its features were learned on
    these images, which are the held-out ones."""
    from downpour.analysis.run import _trained_on

    cfg = RunDir.open(analysed).config
    assert cfg.data.trains_on_faces() and _trained_on(cfg, None, "lfw") == {}


def test_a_model_whose_input_is_not_an_image_is_refused_before_any_measurement(tmp_path):
    """teacher-student's inputs are 8 numbers (1x1x8): lfw resized to them is one grey value per face, and the report
    would give a face-test verdict on that."""
    path = tmp_path / "ts"
    cfg = load_config("teacher-student", ["train.steps=2", "train.tensorboard=false"])
    run_local(cfg, RunDir.create(path, cfg))
    with pytest.raises(DataError, match=r"input_shape \[1, 1, 8\] \(data.source = 'gaussian'\) is not an image of at least 4x4"):
        analyze_run(path, **FAST)
    assert not (path / "analysis.json").exists() and not (path / "figures").exists()


def _stopped_tica(tmp_path, monkeypatch, at: int | None) -> Path:
    """tica-8x8 for 8 steps, Ctrl-C'd inside step ``at`` (None: it ends)."""
    import os
    import signal

    from downpour.cli import main
    from downpour.train.telemetry import PartsMean

    add, calls = PartsMean.add, []

    def add_then_ctrl_c(self, parts, samples=0, loss=None):
        add(self, parts, samples, loss)
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(PartsMean, "add", add_then_ctrl_c)
    path = tmp_path / "stopped"
    assert main(["train", "--config", "tica-8x8", "--runner", "local", "--steps", "8", "--no-report", "--out", str(path),
                 "--set", "train.threads=1", "--set", "data.samples=500"]) == (0 if at is None else 130)
    monkeypatch.setattr(PartsMean, "add", add)
    return path


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_the_analysis_of_a_run_stopped_mid_way_names_its_step_and_the_resume(tmp_path, monkeypatch, capsys, command):
    """A run killed at step 848 of 8,000 was met with "has no model.json: has its training finished?", which named
    neither where it stood nor `--resume`."""
    from downpour.cli import main

    path = _stopped_tica(tmp_path, monkeypatch, at=3)
    capsys.readouterr()
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint is at step 3 of 8" in err and f"downpour train --resume {path}" in err and "\n" not in err.strip()


def test_the_analysis_of_a_run_stopped_between_its_last_checkpoint_and_its_model_says_the_resume_writes_it(
        tmp_path, monkeypatch, capsys):
    from downpour.cli import main

    path = _stopped_tica(tmp_path, monkeypatch, at=None)
    (path / "model.json").unlink()
    capsys.readouterr()
    assert main(["analyze", str(path)]) == 2
    assert "its checkpoint is its last step (8) but the model was not written" in capsys.readouterr().err
    assert main(["train", "--resume", str(path)]) == 0 and (path / "model.json").is_file()


def test_the_analysis_of_a_run_without_a_model_whose_checkpoint_is_damaged_says_the_way_on(tmp_path, monkeypatch,
                                                                                            capsys):
    """Its checkpoint's error alone (exit 2) named neither the missing model nor a way on: `--resume` refuses it."""
    from downpour.cli import main

    path = _stopped_tica(tmp_path, monkeypatch, at=3)
    for weights in (path / "checkpoints").glob("*.safetensors"):
        weights.write_bytes(b"")
    capsys.readouterr()
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "has no model.json" in err and "not a readable safetensors file" in err and "\n" not in err.strip()
    assert f"downpour train --config {path / 'config.toml'} --out NEW" in err


def test_the_analysis_of_a_run_stopped_before_anything_was_kept_says_how_to_start_it_again(tmp_path, capsys):
    from downpour.cli import main

    cfg = load_config("tica-8x8", ["train.steps=8"])
    path = RunDir.create(tmp_path / "never", cfg).path
    assert main(["analyze", str(path)]) == 2
    assert f"downpour train --config {path / 'config.toml'} --out {path}` starts it again" in capsys.readouterr().err


def test_a_no_faces_run_without_a_model_says_where_it_stands_as_the_analysis_does(tmp_path):
    """analysis.no_faces_run naming an unfinished run says where the run stands and the command that goes on, as the
    analysis's own refusal does (else it asks "has its training finished?")."""
    from downpour.analysis.options import no_faces_run

    cfg = load_config("tica-8x8", ["train.steps=8"])
    path = RunDir.create(tmp_path / "never", cfg).path
    with pytest.raises(ConfigError) as err:
        no_faces_run(str(path), cfg)
    assert "has its training finished" not in str(err.value)
    assert f"`downpour train --config {path / 'config.toml'} --out {path}` starts it again" in str(err.value)
    assert str(err.value).startswith("analysis.no_faces_run: ")


def test_a_run_with_model_json_but_no_weights_says_they_are_missing_and_what_writes_them(tmp_path, monkeypatch, capsys):
    """A finished run whose model.safetensors was deleted (or left out of a copy) is told the weights are missing and
    the resume that writes them again, not asked "has no model.safetensors yet: has its training finished?"."""
    import shutil

    from downpour.cli import main

    path = _stopped_tica(tmp_path, monkeypatch, at=None)
    (path / "model.safetensors").unlink()
    capsys.readouterr()
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "has model.json but not model.safetensors, the model's weights" in err and "training finished" not in err
    assert f"`downpour train --resume {path}` writes them again from its checkpoint at its last step, 8" in err
    assert main(["train", "--resume", str(path)]) == 0
    assert RunDir.open(path).load_model() is not None
    (path / "model.safetensors").unlink()
    shutil.rmtree(path / "checkpoints")         # nothing left to write them from: a resume would refuse
    capsys.readouterr()
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "nor a checkpoint to write them from" in err and "--resume" not in err
    assert f"`downpour train --config {path / 'config.toml'} --out NEW_FOLDER`" in err


def test_a_cut_model_safetensors_says_what_writes_it_again(tmp_path, monkeypatch, capsys):
    """model.safetensors cut to half its bytes (a copy that did not finish) gets what the missing file's message says,
    from `analyze` and `report` alike: the resume that writes the weights again, or, with no checkpoint, training it
    again (else the library's words, "incomplete metadata, file not fully covered", and no way on)."""
    import shutil

    from downpour.cli import main

    path = _stopped_tica(tmp_path, monkeypatch, at=None)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    for command in ("analyze", "report"):
        capsys.readouterr()
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{str(weights)!r} is not a readable safetensors file" in err and "(cut short or damaged: copy a whole one " \
            f"back, or `downpour train --resume {path}` writes them again from its checkpoint at its last " \
            "step, 8)" in err
    # as it says (not that the run "already reached step 8 of 8; raise train.steps (--steps) to go on")
    assert main(["train", "--resume", str(path)]) == 0 and RunDir.open(path).load_model() is not None
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    shutil.rmtree(path / "checkpoints")
    capsys.readouterr()
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "(cut short or damaged), and the run has no checkpoint to write it from: copy a whole one back, or train it " \
        f"again, `downpour train --config {path / 'config.toml'} --out NEW_FOLDER`" in err and "--resume" not in err


def test_a_report_without_probes_says_why(run):
    """"No probes were run." left a reader to guess whether they failed (analysis.probes = [] runs none)."""
    write_report(run)
    assert "No probes were run: analysis.probes is empty." in (run / "report.html").read_text()


def test_the_staleness_figure_takes_the_workers_in_their_order(tmp_path):
    """staleness.json's keys are strings: with 11 workers the legend read worker 0, 1, 10, 2, ..."""
    workers = {str(w): {"histogram": {"3": 1}} for w in range(11)}
    (tmp_path / "staleness.json").write_text(json.dumps({"per_worker": workers}))
    assert list(staleness_histograms(RunDir(tmp_path), [])) == [f"worker {w}" for w in range(11)]
