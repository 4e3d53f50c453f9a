"""A JSON of a run folder (checkpoint, preprocess.json, model.json, learner.json) whose own SHA-256 (json_sha256) was
deleted along with an edit must not load as a file written before digests, the edit accepted silently. Its tensors
file, written in the same save, says in its safetensors metadata that the JSON records one, so the deletion is
refused in an edit's words; a pair written as it was before digests (no such metadata) still loads."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from downpour.cli import main
from downpour.errors import CheckpointError
from downpour.learner import FeatureLearner
from downpour.train.checkpoint import load_state, save_state, verified_meta, write_tensors
from downpour.train.json_digest import JSON_KEY
from downpour.train.rundir import RunDir
from before_digests import as_written_before_digests, learner_saved_before_digests
from small_run import run, trained  # noqa: F401 (fixtures)

REFUSED = r"cannot be read back: its content is not what it held when it was written: it records no SHA-256 of itself"


def _edit_deleting_the_digest(path: Path, **changes) -> None:
    """What a text editor leaves where its user also deleted the digest, so that the file passes as an old one."""
    record = {**json.loads(path.read_text()), **changes}
    del record[JSON_KEY]
    path.write_text(json.dumps(record, indent=1))


@pytest.mark.parametrize("pair_key", [True, False], ids=["from 2026-12-02", "before 2026-12-02"])
def test_a_checkpoint_json_whose_digest_was_deleted_is_refused_and_one_written_before_digests_loads(tmp_path, caplog,
                                                                                                     pair_key):
    save_state(tmp_path / "ck", {"w": torch.ones(4)}, {"step": 95})
    _edit_deleting_the_digest(tmp_path / "ck.json", step=59)
    with pytest.raises(CheckpointError, match=rf"ck.json' \(of .*ck.safetensors'\) {REFUSED}.*ck.safetensors', "
                                              r"written with it, says it was written with one"):
        load_state(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=REFUSED):
        verified_meta(tmp_path / "ck")              # (what a resume's dry run and `analyze` read of preprocess.json)
    save_state(tmp_path / "ck", {"w": torch.ones(4)}, {"step": 95})
    as_written_before_digests(tmp_path / "ck.safetensors", tmp_path / "ck.json", pair_key)
    with caplog.at_level(logging.INFO):
        tensors, meta = load_state(tmp_path / "ck")
        assert verified_meta(tmp_path / "ck")["step"] == 95
    assert meta["step"] == 95 and torch.equal(tensors["w"], torch.ones(4)) and not caplog.text


def test_a_deleted_digest_is_refused_beside_a_tensors_file_cut_short_in_its_data_too(tmp_path):
    """verified_meta does not refuse tensors cut short (a run shared without them): their header still says it."""
    save_state(tmp_path / "ck", {"w": torch.ones(1000)}, {"step": 95})
    _edit_deleting_the_digest(tmp_path / "ck.json", step=59)
    (tmp_path / "ck.safetensors").write_bytes((tmp_path / "ck.safetensors").read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=REFUSED):
        verified_meta(tmp_path / "ck")


def test_a_checkpoint_json_whose_digest_was_deleted_falls_back_to_the_previous_pair_that_verifies(tmp_path, caplog):
    save_state(tmp_path / "ck", {"w": torch.ones(4)}, {"step": 8})
    save_state(tmp_path / "ck.prev", {"w": torch.zeros(4)}, {"step": 4})     # (as a save under way keeps it)
    _edit_deleting_the_digest(tmp_path / "ck.json", step=9)
    with caplog.at_level(logging.WARNING):
        _, meta = load_state(tmp_path / "ck")
    assert meta["step"] == 4 and "does not match its own SHA-256" in caplog.text


def test_a_resume_from_a_checkpoint_json_whose_digest_was_deleted_is_refused_naming_it(run, capsys):
    _edit_deleting_the_digest(run / "checkpoints/local.json", step=3)
    for dry in ([], ["--dry-run"]):
        assert main(["train", "--resume", str(run), "--steps", "6", *dry]) == 2
        err = capsys.readouterr().err
        assert "local.json' (of " in err and "it records no SHA-256 of itself" in err
    assert json.loads((run / "model.json").read_text())["step"] == 4


def test_a_checkpoint_config_record_edited_and_its_digest_deleted_is_named_not_config_toml(run, capsys):
    """The resume's check of config.toml against the checkpoint's config trusted a record without a digest."""
    record = json.loads((run / "checkpoints/local.json").read_text())["config"]
    _edit_deleting_the_digest(run / "checkpoints/local.json", config=record | {"seed": 12345})
    assert main(["train", "--resume", str(run), "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "local.json" in err and "json_sha256" in err and "edited since" not in err and "12345" not in err


@pytest.mark.parametrize("name, edit", [("model.json", {"seed": 99}), ("preprocess.json", {"normalize": "none"})])
def test_a_run_json_whose_digest_was_deleted_with_an_edit_is_refused_by_analyze_and_report(run, capsys, name, edit):
    _edit_deleting_the_digest(run / name, **edit)
    for command in ("analyze", "report"):
        assert main([command, str(run)]) == 2
        err = capsys.readouterr().err
        assert f"{name}' (of " in err and "it records no SHA-256 of itself" in err
    assert not (run / "analysis.json").exists() and not (run / "report.html").exists()


def test_a_model_json_whose_digest_was_deleted_is_not_counted_as_saved_nor_loaded(run):
    _edit_deleting_the_digest(run / "model.json", step=7)
    folder = RunDir.open(run)
    assert folder.saved_model() == (None, f"{str(run / 'model.json')!r} fails its SHA-256 check: its content is not "
                                          "what it held when it was written: it records no SHA-256 of itself "
                                          f"(json_sha256, over every other field of it), and "
                                          f"{str(run / 'model.safetensors')!r}, written with it, says it was written "
                                          "with one (a field edited by hand and the digest deleted, or bytes changed "
                                          "on disk since)")
    with pytest.raises(CheckpointError, match=rf"model.json' \(of .*model.safetensors'\) {REFUSED}"):
        folder.load_model()


def test_the_report_does_not_say_the_samples_of_a_model_json_whose_digest_was_deleted(run):
    from downpour.analysis.report import _samples

    assert _samples(RunDir(run)) == 500
    _edit_deleting_the_digest(run / "model.json", data={"n_samples": 5000})
    assert _samples(RunDir(run)) is None


def test_a_run_folder_written_before_digests_loads_and_counts_as_saved_but_not_with_tensors_saved_since(run, caplog):
    for stem in ("model", "preprocess", "checkpoints/local"):
        _edit_deleting_the_digest(run / f"{stem}.json")
    folder = RunDir.open(run)
    with pytest.raises(CheckpointError, match=REFUSED):
        folder.check_saved()
    assert folder.model_step() is None
    for stem in ("model", "preprocess", "checkpoints/local"):
        as_written_before_digests(run / f"{stem}.safetensors", run / f"{stem}.json")
    with caplog.at_level(logging.WARNING):
        folder.check_saved()
        assert folder.model_step() == 4 and folder.reached() == 4
        folder.load_model()
        assert folder.load_preprocess() is not None
    assert not caplog.text


@pytest.fixture(scope="module")
def learner():
    x = np.random.default_rng(0).random((120, 64), dtype=np.float32)
    return FeatureLearner("rica-8x8", steps=3, batch_size=32, seed=3).fit(x)


def test_a_learner_json_whose_digest_was_deleted_with_an_edit_is_refused_and_one_saved_before_digests_loads(
        tmp_path, learner, caplog):
    learner.save(tmp_path / "f")
    _edit_deleting_the_digest(tmp_path / "f" / "learner.json", params={**json.loads(
        (tmp_path / "f" / "learner.json").read_text())["params"], "seed": 4})
    with pytest.raises(CheckpointError, match=rf"learner.json' {REFUSED}.*model.safetensors', written with it"):
        FeatureLearner.load(tmp_path / "f")
    learner.save(tmp_path / "old")
    learner_saved_before_digests(tmp_path / "old")
    with caplog.at_level(logging.INFO):
        assert FeatureLearner.load(tmp_path / "old").seed == 3
    assert not caplog.text


def _cut_by_a_save_since(tensors: Path) -> None:
    """A save by this code cut between its two files: its tensors renamed in (marked), the JSON of the save before."""
    write_tensors({k: v + 1 for k, v in load_file(str(tensors)).items()}, tensors)


def test_a_pair_written_before_digests_and_cut_by_a_save_since_is_named_a_cut_write_not_an_edit(run, tmp_path):
    """A run from before 2026-12-05 resumed by this code, killed between the weights' rename and model.json's: the
    weights are marked, the JSON of the save before records no digest. Its SHA-256 of the weights tells the cut write,
    in a cut write's words (not as a JSON edited by hand and its digest deleted, "written with" weights it was not)."""
    as_written_before_digests(run / "model.safetensors", run / "model.json")
    _cut_by_a_save_since(run / "model.safetensors")
    folder = RunDir.open(run)
    step, why = folder.saved_model()
    assert step is None and why.endswith("a write was cut between the two)") and "json_sha256" not in why, why
    with pytest.raises(CheckpointError, match=r"model.safetensors' is not the model .*a write was cut between the two"):
        folder.check_saved()
    save_state(tmp_path / "ck", {"w": torch.ones(4)}, {"step": 8})        # a checkpoint pair, no earlier copy left
    as_written_before_digests(tmp_path / "ck.safetensors", tmp_path / "ck.json")
    _cut_by_a_save_since(tmp_path / "ck.safetensors")
    with pytest.raises(CheckpointError, match="do not belong together"):
        load_state(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="do not belong together"):
        verified_meta(tmp_path / "ck")
