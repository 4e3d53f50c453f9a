"""What `analyze`, `report` and a resume say of a run folder whose files fail their SHA-256 check (model.json's and
preprocess.json's own, json_sha256; model.safetensors' as model.json records it): the file named, and what failed,
before anything else is read or held, not silent, vague or late."""
from __future__ import annotations

import builtins
import json
import os
import shutil
from pathlib import Path

import pytest

from downpour.cli import main
from downpour.errors import CheckpointError
from downpour.train import checkpoint, lock, model_file
from downpour.train.rundir import RunDir
from small_run import run, trained  # noqa: F401 (fixtures)



def _edit_by_hand(path: Path, **changes) -> None:
    """What a text editor leaves: the fields changed, the digest not."""
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=1))


def _damage_weights(run: Path) -> None:
    """Bytes changed inside the last tensor's data, the header intact: a readable file, not the one written."""
    weights = bytearray((run / "model.safetensors").read_bytes())
    weights[-8:] = bytes(b ^ 0xFF for b in weights[-8:])
    (run / "model.safetensors").write_bytes(bytes(weights))


def test_the_report_of_a_run_whose_preprocess_json_was_edited_since_its_analysis_is_refused_naming_it(run, capsys):
    """An edited preprocess.json (what the analysis prepared its images with) is refused as an edited model.json is:
    named, json_sha256 said, the analysis kept (else the analysis is rendered as the run's without a word)."""
    (run / "analysis.json").write_text(json.dumps({"trained_steps": 4}))
    _edit_by_hand(run / "preprocess.json", normalize="none")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "preprocess.json' (of " in err and "json_sha256" in err and "its analysis.json is not reported" in err
    assert json.loads((run / "analysis.json").read_text()) == {"trained_steps": 4}
    assert not (run / "report.html").exists()


@pytest.mark.parametrize("damage, said", [
    ("model.json edited", "model.json' fails its SHA-256 check: its content is not what it held"),
    ("weights changed", "model.safetensors' fails its SHA-256 check: it is not the one"),
    ("model.json deleted", "model.json' is missing"),
    ("model.json's step edited to a string", "model.json' fails its SHA-256 check: its content is not what it held"),
])
def test_a_resume_that_writes_the_model_again_says_which_check_the_saved_one_failed(run, caplog, damage, said):
    """It says which file failed its SHA-256 check, not that the model "was not saved (or was cut short or damaged)"
    whatever it was."""
    if damage == "model.json edited":
        _edit_by_hand(run / "model.json", step=7)
    elif damage == "weights changed":
        _damage_weights(run)
    elif damage == "model.json's step edited to a string":     # (not "records no step number": the edit unsaid)
        _edit_by_hand(run / "model.json", step="4")
    else:
        (run / "model.json").unlink()
    with caplog.at_level("WARNING"):
        assert main(["train", "--resume", str(run)]) == 0
    assert f"the model was not saved whole ('{run}/{said}" in caplog.text
    assert RunDir(run).model_step() == 4


def test_a_resume_after_a_kill_between_the_weights_and_model_json_says_the_write_was_cut(run, caplog, monkeypatch):
    """write_model renames the new weights in, then writes model.json: a kill between leaves the previous model.json
    beside them. The resume that writes the model again says the weights are not the ones model.json records, or a
    write was cut between the two (not only "bytes changed on disk since it was written")."""
    replace_text = model_file.replace_text
    monkeypatch.setattr(model_file, "replace_text",   # the kill: model.json (step 4's) never replaced
                        lambda path, text: None if path.name == "model.json" else replace_text(path, text))
    assert main(["train", "--resume", str(run), "--steps", "8", "--no-report"]) == 0
    monkeypatch.undo()
    assert json.loads((run / "model.json").read_text())["step"] == 4 and RunDir(run).model_step() is None
    with caplog.at_level("WARNING"):
        assert main(["train", "--resume", str(run), "--no-report"]) == 0
    assert "model.safetensors' fails its SHA-256 check: it is not the one" in caplog.text
    assert "or a write was cut between the two" in caplog.text
    assert RunDir(run).model_step() == 8


def test_a_resume_without_checkpoints_says_why_the_model_beside_it_is_not_whole(run, capsys):
    """A run whose checkpoints/ is gone: a model failing its SHA-256 check (model.json edited) was said to be missing,
    model.safetensors there beside it."""
    shutil.rmtree(run / "checkpoints")
    _edit_by_hand(run / "model.json", seed=1)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors is missing" not in err
    assert f"Its model is not whole either ('{run}/model.json' fails its SHA-256 check: its content is not" in err


def test_a_pair_gone_on_from_its_previous_copy_is_said_once(run, caplog):
    """`downpour analyze` checks preprocess.* (check_saved), then loads it; `report` checks it twice; a resume reads its
    checkpoint twice (reached, then the restore): each says its warning once (not at each look, nor the second half
    of the report's, of a file it does not read)."""
    for stem in (run / "preprocess", run / "checkpoints" / "local"):   # a save killed between its two renames
        for path in (stem.with_suffix(".json"), stem.with_suffix(".safetensors")):
            shutil.copy(path, path.with_name(path.name.replace(".", ".prev.", 1)))
        _edit_by_hand(stem.with_suffix(".json"), step=3)
    with caplog.at_level("WARNING"):
        RunDir(run).check_saved()
        RunDir(run).load_preprocess()
        assert main(["train", "--resume", str(run), "--steps", "6", "--no-report"]) == 0
    said = [record.getMessage() for record in caplog.records if "does not verify" in record.getMessage()]
    assert [line.split(" does not verify")[0] for line in said] == [f"the run's preprocessing record {run}/preprocess",
                                                                     f"checkpoint {run}/checkpoints/local"]


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_an_edited_model_json_of_a_run_without_checkpoints_is_not_told_to_be_resumed(run, capsys, command):
    """Not told "`downpour train --resume RUN` writes it again", which refuses a run without its checkpoint."""
    shutil.rmtree(run / "checkpoints")
    _edit_by_hand(run / "model.json", seed=1)
    assert main([command, str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.json' (of " in err and "--resume" not in err and "no checkpoint to write it from: copy a whole " \
        "one back" in err


def test_the_preprocessing_record_is_not_called_a_checkpoint_file(run):
    """load_state named preprocess.* a "checkpoint file" to `downpour analyze`, which reads no checkpoint."""
    _edit_by_hand(run / "preprocess.json", normalize="none")
    with pytest.raises(CheckpointError) as edited:
        RunDir(run).load_preprocess()
    (run / "preprocess.json").write_text((run / "preprocess.json").read_text() + "}")
    with pytest.raises(CheckpointError) as torn:
        RunDir(run).load_preprocess()
    (run / "preprocess.safetensors").unlink()
    with pytest.raises(CheckpointError) as missing:
        RunDir(run).load_preprocess()
    for err in (edited, torn, missing):
        assert "checkpoint" not in str(err.value) and str(err.value).startswith("the run's preprocessing record file '")
    assert "preprocess.safetensors' is missing" in str(missing.value)


def test_damaged_weights_beside_a_broken_config_toml_are_still_named_with_it(run, capsys):
    """What writes the weights again reads config.toml (the run's steps): with a broken one the damaged weights are
    still named, not the resume's words as if the resume could run, nor, from `downpour analyze`, only that
    config.toml cannot be read."""
    _damage_weights(run)
    (run / "config.toml").write_text("[train\nsteps = ")
    with pytest.raises(CheckpointError) as err:
        RunDir(run).load_model()
    assert "model.safetensors' is not the model" in str(err.value) and "once its config.toml reads again: " \
        f"{str(run)!r}: its config.toml cannot be read: " in str(err.value)
    assert main(["analyze", str(run)]) == 2
    assert str(err.value) in capsys.readouterr().err


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_an_analysis_of_a_run_whose_weights_fail_their_check_is_refused_for_them_first(run, capsys, command):
    """The decision to analyse (RunModel.analysis_stale) is blind to weights that are not the ones model.json records,
    so the weights are checked and named first: else `downpour analyze` (and a report of a run not analysed yet) holds
    the no-faces twin first, a training of it meets that as the refusal ("is being trained now"), and the weights are
    named only after that, once the model is loaded."""
    _damage_weights(run)
    RunDir(run).no_faces_twin.mkdir()
    with lock.training(RunDir(run).no_faces_twin):     # `downpour train --resume RUN/no-faces`, from another terminal
        assert main([command, str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors' is not the model" in err and f"`downpour train --resume {run}` writes them again" in err
    assert "being trained now" not in err and "not reported meanwhile" not in err


def test_the_dry_run_of_a_resume_says_what_the_resume_will_say_of_the_model_it_writes_again(run, caplog):
    """The resume warns that the model was not saved whole, naming the file, and writes it again from its checkpoint;
    its --dry-run, which says what the resume would do, says so too."""
    _edit_by_hand(run / "model.json", seed=1)
    with caplog.at_level("WARNING"):
        assert main(["train", "--resume", str(run), "--dry-run"]) == 0
    dry = [r.getMessage() for r in caplog.records if "not saved whole" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main(["train", "--resume", str(run), "--no-report"]) == 0
    real = [r.getMessage() for r in caplog.records if "not saved whole" in r.getMessage()]
    assert len(dry) == len(real) == 1 and dry[0].split(";")[0] == real[0].split(";")[0]
    assert f"('{run}/model.json' fails its SHA-256 check" in dry[0] and dry[0].endswith("the resume would save it from there")


@pytest.mark.parametrize("refits", [None, [2]])
def test_a_resume_refused_for_its_preprocess_json_speaks_of_refits_only_where_it_records_some(run, capsys, refits):
    """Not that the resume would "lose the steps it records the input processing was refitted at", of a file that
    records none."""
    _edit_by_hand(run / "preprocess.json", normalize="none", **({"refit_on_resume": refits} if refits else {}))
    assert main(["train", "--resume", str(run), "--steps", "6", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "preprocess.json" in err and "the resume would write it anew" in err
    if refits:
        assert "lose the steps it records the input processing was refitted at ([2])" in err
    else:
        assert "refitted at" not in err and "a change of the data since the run began would go unrecorded" in err


def _deny_reading(path: Path, monkeypatch) -> None:
    """chmod 000. Root is not stopped by permission bits (these tests run as root in CI's container): there the reads
    fail as they do for another account, safetensors' with the FileNotFoundError it raises for EACCES (seen as an
    unprivileged user, 2026-12-05), open's with PermissionError."""
    path.chmod(0)
    if os.geteuid() != 0:
        return

    def refused(real, error):
        def call(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and Path(file) == path:
                raise error(file)
            return real(file, *args, **kwargs)
        return call

    for name in ("safe_open", "load_file"):
        monkeypatch.setattr(checkpoint, name, refused(getattr(checkpoint, name),
                                                      lambda file: FileNotFoundError(f"No such file or directory: {file}")))
    monkeypatch.setattr(builtins, "open", refused(builtins.open,
                                                  lambda file: PermissionError(13, "Permission denied", str(file))))


def test_weights_this_account_may_not_read_are_said_so_not_damaged(run, capsys, monkeypatch):
    """model.safetensors chmod 000 was "not a readable safetensors file (cut short or damaged)", to `downpour analyze`
    with the library's "No such file or directory" and a resume to write it again; and so in the resume's warning."""
    weights = run / "model.safetensors"
    _deny_reading(weights, monkeypatch)
    assert RunDir(run).saved_model() == (None, f"{str(weights)!r} cannot be read (permission denied)")
    assert main(["analyze", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{str(weights)!r} cannot be read (permission denied)" in err
    assert "cut short" not in err and "No such file" not in err


def test_weights_this_account_may_not_read_are_not_said_unsaved_by_the_resume(run, caplog, monkeypatch):
    """The resume's warning (and its --dry-run's) said of them "the model was not saved whole ('...' cannot be read
    (permission denied))": they may well be whole."""
    weights = run / "model.safetensors"
    _deny_reading(weights, monkeypatch)
    with caplog.at_level("WARNING"):
        assert main(["train", "--resume", str(run), "--dry-run"]) == 0
    assert (f"the checkpoint is the run's last step (4) but {str(weights)!r} cannot be read (permission denied); the "
            "resume would save it from there") in caplog.text
    assert "not saved whole" not in caplog.text


def test_the_words_of_a_resume_that_writes_its_model_are_written_once():
    """A resume that writes the model from its checkpoint warns "...; saving it now" (the Downpour runners' and
    Sandblaster's) and its --dry-run "...; the resume would save it from there": run_begin.saving_words says both,
    since tails written at each place that warns could change one without the others."""
    import downpour
    from downpour.train.run_begin import saving_words

    assert saving_words("R: the checkpoint is the run's last step (3) but ...") == \
        "R: the checkpoint is the run's last step (3) but ...; saving it now"
    assert saving_words("R: ...", dry_run=True) == "R: ...; the resume would save it from there"
    sources = [path.read_text() for path in Path(downpour.__file__).parent.rglob("*.py")]
    for tail in ("saving it now", "the resume would save it from there"):
        assert sum(source.count(tail) for source in sources) == 1, tail
