"""FeatureLearner.save / load: a fitted learner as safetensors + JSON, read back checked and without a pickle."""
from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from downpour.data.preprocess import Preprocess
from downpour.errors import CheckpointError
from downpour.train.json_digest import JSON_KEY, rewrite_json
from downpour.learner import FeatureLearner
from downpour.models.registry import create_model
from before_digests import learner_saved_before_digests
from test_analysis_planted import TinyAutoencoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x[:300] / 16.0).astype(np.float32), y[:300]


@pytest.fixture(scope="module")
def trained(digits):
    return FeatureLearner("rica-8x8", steps=15, batch_size=32, seed=3).fit(digits[0])


@pytest.fixture
def no_pickle(monkeypatch):
    """Any unpickling while loading is a failure (torch.load unpickles too, weights_only or not)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was read")
    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)


def test_a_trained_registered_model_loads_back_bit_for_bit(tmp_path, digits, trained, no_pickle):
    x, y = digits
    trained.save(tmp_path / "f")
    loaded = FeatureLearner.load(tmp_path / "f")
    assert np.array_equal(loaded.transform(x), trained.transform(x))      # exact, not close
    assert loaded.get_params() == trained.get_params()
    for key in ("layer_", "input_shape_", "n_features_in_", "loss_curve_", "_n_features_out"):
        assert getattr(loaded, key) == getattr(trained, key), key
    assert list(loaded.get_feature_names_out()) == list(trained.get_feature_names_out())
    refit = clone(loaded).fit(x)                      # the parameters alone retrain the same learner (seeded)
    assert np.array_equal(refit.transform(x[:20]), trained.transform(x[:20]))
    pipe = Pipeline([("features", loaded), ("clf", LogisticRegression(max_iter=300))]).fit(x, y)
    assert pipe.score(x, y) > 0.5                     # 10 classes: chance is 0.1


def test_a_trained_model_instance_keeps_its_starting_weights_for_a_clone(tmp_path, digits):
    x, _ = digits
    start = create_model("rica-8x8", (1, 8, 8), hidden=20)
    learner = FeatureLearner(start, objective={"reconstruction": 1.0}, steps=10, lr=0.1).fit(x)
    learner.save(tmp_path / "f")
    assert (tmp_path / "f" / "start" / "model.safetensors").is_file()      # fine-tuned: the start differs
    loaded = FeatureLearner.load(tmp_path / "f")
    assert np.array_equal(loaded.transform(x), learner.transform(x))
    for mine, theirs in zip(loaded.model.state_dict().values(), start.state_dict().values()):
        assert torch.equal(mine, theirs)
    assert np.array_equal(clone(loaded).fit(x).transform(x[:9]), learner.transform(x[:9]))
    frozen = FeatureLearner(start, steps=0).fit(x)
    frozen.save(tmp_path / "g")
    assert not (tmp_path / "g" / "start").exists()                   # used as given: model_ is its copy
    assert np.array_equal(FeatureLearner.load(tmp_path / "g").transform(x), frozen.transform(x))


def test_a_from_run_learner_keeps_the_runs_normalisation_and_whitening(tmp_path, digits, request):
    from downpour.config import load_config
    from downpour.train.loop import run_local
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae", ["train.steps=5", "data.samples=500", "train.tensorboard=false"])  # ZCA + ufldl
    run = RunDir.create(tmp_path / "run", cfg)
    run_local(cfg, run)
    learner = FeatureLearner.from_run(run.path).fit(digits[0])
    learner.save(tmp_path / "f")
    request.getfixturevalue("no_pickle")              # (its refusals set once the run has trained)
    loaded = FeatureLearner.load(tmp_path / "f")
    assert isinstance(loaded.preprocess, Preprocess) and loaded.preprocess.whiten == "zca"
    assert np.array_equal(loaded.transform(digits[0]), learner.transform(digits[0]))
    raw = FeatureLearner(loaded.model, steps=0).fit(digits[0])       # the processing matters here
    assert not np.allclose(raw.transform(digits[0][:20]), learner.transform(digits[0][:20]))
    assert np.array_equal(clone(loaded).fit(digits[0]).transform(digits[0]), learner.transform(digits[0]))


def test_a_parameter_grids_numpy_values_are_saved_as_numbers(tmp_path, digits):
    learner = FeatureLearner("rica-8x8", options={"hidden": np.int64(20)}, lr=np.float64(0.1), steps=0).fit(digits[0])
    learner.save(tmp_path / "f")
    loaded = FeatureLearner.load(tmp_path / "f")
    assert loaded.get_params()["options"] == {"hidden": 20} and loaded.get_params()["lr"] == 0.1
    assert np.array_equal(loaded.transform(digits[0]), learner.transform(digits[0]))


def test_a_callable_preprocess_is_refused_unless_left_out_and_load_says_so(tmp_path, digits, trained, caplog):
    x, _ = digits
    learner = clone(trained).set_params(preprocess=lambda im: im * 2.0).fit(x)
    with pytest.raises(ValueError, match="preprocess is <function .*cannot be saved.*preprocess=False"):
        learner.save(tmp_path / "f")
    assert not (tmp_path / "f").exists()              # refused before anything is written
    learner.save(tmp_path / "f", preprocess=False)
    with caplog.at_level(logging.WARNING):
        loaded = FeatureLearner.load(tmp_path / "f")
    assert loaded.preprocess is None and "saved without its preprocess" in caplog.text
    assert np.array_equal(loaded.transform(x * 2.0), learner.transform(x))   # raw X now: the caller prepares it


def test_what_cannot_be_saved_is_refused(tmp_path, digits):
    x, _ = digits
    with pytest.raises(NotFittedError):
        FeatureLearner("rica-8x8").save(tmp_path / "f")
    unregistered = FeatureLearner(TinyAutoencoder((1, 8, 8), hidden=10), steps=0).fit(x)
    with pytest.raises(ValueError, match="TinyAutoencoder, which no registered model builds"):
        unregistered.save(tmp_path / "f")
    assert not (tmp_path / "f").exists()


def _tamper(folder, edit):
    tensors = load_file(str(folder / "model.safetensors"))
    save_file(edit(tensors), str(folder / "model.safetensors"))
    rewrite_json(folder / "model.json", lambda meta: meta.pop("safetensors_sha256"))   # (else the pair check answers
    # first: tested in test_run_robustness)


def _renamed(t):
    return {("enc.bogus" if i == 0 else k): v for i, (k, v) in enumerate(t.items())}


def _reshaped(t):
    return {k: (v[:-1] if i == 0 else v) for i, (k, v) in enumerate(t.items())}


def _poisoned(t):
    first = next(iter(t))
    return {**t, first: torch.full_like(t[first], float("nan"))}


@pytest.mark.parametrize("edit, message", [
    (_renamed, r"model.safetensors' does not fit the model that model.json describes: lacks tensor '[\w.]+'"),
    (_reshaped, r"model.safetensors' does not fit the model that model.json describes: tensor '[\w.]+' has shape"),
    (_poisoned, r"model.safetensors': tensor '[\w.]+' holds \d+ non-finite"),
])
def test_damaged_weights_are_named_in_one_line(tmp_path, trained, edit, message):
    trained.save(tmp_path / "f")
    _tamper(tmp_path / "f", edit)
    with pytest.raises(CheckpointError, match=message) as err:
        FeatureLearner.load(tmp_path / "f")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("edit, message", [
    (lambda f: (f / "learner.json").unlink(), r"learner.json' does not exist"),
    (lambda f: (f / "model.safetensors").unlink(), r"model.safetensors' does not exist"),
    (lambda f: (f / "learner.json").write_text("{"), r"learner.json' is not valid JSON"),
    (lambda f: _edit(f, lambda r: r["params"].pop("steps")), r"learner.json': params lacks \['steps'\]"),
    (lambda f: _edit(f, lambda r: r["params"].update(hidden=3)), r"learner.json': params holds unknown \['hidden'\]"),
    (lambda f: _edit(f, lambda r: r["fitted"].update(input_shape_=[1, 4, 16])), r"learner.json': input_shape_ \[1, 4, 16\]"),
    (lambda f: _edit(f, lambda r: r["fitted"].update(layer_="stage9")), r"learner.json': layer_ 'stage9'"),
    (lambda f: _edit(f, lambda r: r.update(format="pickle")), r"learner.json': format is 'pickle'"),
])
def test_a_damaged_learner_folder_is_named(tmp_path, trained, edit, message):
    trained.save(tmp_path / "f")
    edit(tmp_path / "f")
    with pytest.raises(CheckpointError, match=message):
        FeatureLearner.load(tmp_path / "f")


def test_a_learner_json_edited_by_hand_is_refused_and_one_saved_before_its_digest_loads(tmp_path, trained, caplog):
    """learner.json recorded no SHA-256 of itself (the run's JSON files did): a seed or a loss curve changed by hand
    loaded as the fitted learner's."""
    trained.save(tmp_path / "f")
    where = tmp_path / "f" / "learner.json"
    record = json.loads(where.read_text())
    assert JSON_KEY in record
    where.write_text(json.dumps({**record, "params": {**record["params"], "seed": 4}}))    # what a text editor leaves
    with pytest.raises(CheckpointError, match=r"learner.json' cannot be read back: .*json_sha256.*"
                                              r"fit and save the learner again"):
        FeatureLearner.load(tmp_path / "f")
    where.write_text(json.dumps(record))                  # the edit undone; then as saved before 2026-12-05, model pair too
    learner_saved_before_digests(tmp_path / "f", pair_key=False)    # (model.json without its pair key, as before 2026-12-02)
    with caplog.at_level(logging.INFO):
        assert FeatureLearner.load(tmp_path / "f").seed == 3
    assert not caplog.text


def _edit(folder, change):
    rewrite_json(folder / "learner.json", change)     # (with its digest: each check above answers, not the digest's)


def test_a_save_cut_between_its_two_files_says_to_save_again_not_to_resume_a_run(tmp_path, digits, trained):
    """A second save into one folder killed between the weights' rename and model.json's: the pair check named
    it, but told the user to run `downpour train --resume FOLDER` (no run there to resume); a torn model.json
    was a NotARunError where load promises a CheckpointError."""
    trained.save(tmp_path / "f")
    FeatureLearner("rica-8x8", steps=2, seed=9).fit(digits[0]).save(tmp_path / "g")
    (tmp_path / "f" / "model.safetensors").write_bytes((tmp_path / "g" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"a write was cut between the two\); saving the learner") as err:
        FeatureLearner.load(tmp_path / "f")
    assert "--resume" not in str(err.value)
    (tmp_path / "g" / "model.json").write_text('{"model": ')
    with pytest.raises(CheckpointError, match=r"model.json' is not valid JSON"):
        FeatureLearner.load(tmp_path / "g")


def test_saving_into_the_run_directory_it_came_from_is_refused_and_the_run_kept(tmp_path, digits):
    """from_run(RUN).save(RUN) replaced the run's model.json with the learner's: its step, seed, skipped steps and
    data record gone, so the run read as unfinished (RunDir.finished: False) until a resume wrote it again."""
    from downpour.config import load_config
    from downpour.train.loop import run_local
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae", ["train.steps=3", "data.samples=300", "train.tensorboard=false"])
    run = RunDir.create(tmp_path / "run", cfg)
    run_local(cfg, run)
    before = (run.path / "model.json").read_text()
    learner = FeatureLearner.from_run(run.path).fit(digits[0])
    with pytest.raises(ValueError, match=r"holds a run \(config.toml\).*save into another folder"):
        learner.save(run.path)
    assert (run.path / "model.json").read_text() == before and run.finished(3)
    assert not (run.path / "learner.json").exists()
    learner.save(run.path / "learner")                 # beside it, as the message says: fine
    assert np.array_equal(FeatureLearner.load(run.path / "learner").transform(digits[0]), learner.transform(digits[0]))


@pytest.mark.parametrize("mode, key, bad, match", [
    ("ufldl", "clip", "NaN", "stats.clip must be a finite number >= 0, got nan"),                 # every code NaN
    ("patch", "variance_floor", "Infinity", "stats.variance_floor must be a finite number >= 0, got inf"),   # every code 0
    ("patch", "variance_floor", "-1.0", r"stats.variance_floor must be a finite number >= 0, got -1.0"),   # unscaled
])
def test_a_saved_normalisation_statistic_that_is_not_finite_is_refused_by_name(tmp_path, digits, mode, key, bad, match):
    """JSON reads NaN and Infinity: load took them, and transform gave NaN (or all-zero) codes without a word."""
    prep = Preprocess(mode, {"normalize": mode, key: 0.25})
    FeatureLearner("rica-8x8", steps=0, preprocess=prep).fit(digits[0]).save(tmp_path / "f")
    text = (tmp_path / "f" / "preprocess.json").read_text()
    assert f'"{key}": 0.25' in text
    rewrite_json(tmp_path / "f" / "preprocess.json", json.loads(text.replace(f'"{key}": 0.25', f'"{key}": {bad}')))
    with pytest.raises(CheckpointError, match=r"preprocess.json' cannot be read back: saved " + match) as err:
        FeatureLearner.load(tmp_path / "f")
    assert "\n" not in str(err.value)


def test_a_runs_whitening_that_is_not_finite_is_refused_when_read_back(tmp_path, digits):
    """A run's preprocess was read by the analysis (and from_run) without a finite check on the ZCA tensors."""
    from downpour.data.whitening import ZCAWhitener
    from downpour.train.rundir import RunDir

    zca = ZCAWhitener(0.1).fit(torch.from_numpy(digits[0][:100].reshape(-1, 1, 8, 8)))
    zca.matrix_ = zca.matrix_.clone()
    zca.matrix_[0, 0] = float("nan")
    RunDir(tmp_path).save_preprocess(Preprocess("none", None, zca))
    with pytest.raises(CheckpointError, match=r"cannot be read back: saved whitening tensor 'zca.matrix' holds non-finite"):
        RunDir(tmp_path).load_preprocess()


def test_a_save_over_a_learner_cut_midway_leaves_the_old_learner_whole(tmp_path, digits, trained, monkeypatch):
    """The second save wrote the new model pair into the folder, then learner.json: cut between them, the folder
    loaded the new weights under the old parameters and loss curve (seed 3 read back for a seed-9 model)."""
    import downpour.learner_save as learner_save

    x = digits[0]
    other = FeatureLearner("rica-8x8", steps=2, seed=9).fit(x)
    trained.save(tmp_path / "f")
    written = learner_save.replace_text

    def cut(path, text):
        if path.name == "learner.json":
            raise KeyboardInterrupt                   # the kill, after every other file of the new save
        written(path, text)
    monkeypatch.setattr(learner_save, "replace_text", cut)
    with pytest.raises(KeyboardInterrupt):
        other.save(tmp_path / "f")
    monkeypatch.undo()
    loaded = FeatureLearner.load(tmp_path / "f")
    assert np.array_equal(loaded.transform(x), trained.transform(x)) and loaded.seed == 3
    other.save(tmp_path / "f")                        # the cut save's leftover is cleared; the folder is the new learner
    assert np.array_equal(FeatureLearner.load(tmp_path / "f").transform(x), other.transform(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_save_cut_between_its_renames_names_both_folders(tmp_path, trained):
    trained.save(tmp_path / "f")
    (tmp_path / "f").rename(tmp_path / ".f.replaced")   # as the kill leaves it: the new learner still in .f.saving
    with pytest.raises(CheckpointError, match=r"cut between its two renames; the previous learner is whole in "
                                              r"'.*\.f\.replaced' and the new one in '.*\.f\.saving': rename either to 'f'"):
        FeatureLearner.load(tmp_path / "f")


def test_a_save_into_a_folder_of_other_files_is_refused_and_deletes_nothing(tmp_path, trained):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files that are not a saved learner's \('notes.txt'\).*new or empty folder"):
        trained.save(tmp_path / "results")
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    trained.save(tmp_path / "empty")                  # an empty folder (tempfile.mkdtemp) is fine
    assert (tmp_path / "empty" / "learner.json").is_file()
