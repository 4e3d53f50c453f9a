"""A checkpoint's and a model's JSON record a SHA-256 of their own content (json_sha256): a digit changed in "step"
went unseen (the tensors' digest covers the tensors only), and a resume went on from the wrong step."""
import json

import pytest
import torch

from before_digests import as_written_before_digests
from downpour.config import load_config
from downpour.train.checkpoint import CheckpointError, load_state, save_state
from downpour.train.json_digest import JSON_KEY, digested, rewrite_json
from downpour.train.loop import run_local
from downpour.train.optimizer_state import load_optimizer_state, optimizer_state
from downpour.train.rundir import RunDir

SAE = ["data.samples=500", "train.batch_size=20", "train.tensorboard=false", "train.threads=1"]


def _adam_checkpoint(stem):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_state(opt)
    save_state(stem, tensors, {**meta, "step": 95})
    return opt


def _edit_by_hand(path, **changes):
    """What a text editor leaves: the fields changed, the digest not."""
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=1))


def test_a_checkpoint_json_edited_without_its_digest_is_refused_naming_both_files(tmp_path):
    _adam_checkpoint(tmp_path / "ck")
    _edit_by_hand(tmp_path / "ck.json", step=59)              # one digit flipped
    with pytest.raises(CheckpointError, match=r"ck.json' \(of .*ck.safetensors'\) cannot be read back: .*"
                                              r"json_sha256, over every other field of it.*ck.prev.\*\) verifies; "
                                              r"put an intact copy of the run back"):
        load_state(tmp_path / "ck")


def test_a_checkpoint_json_changed_on_purpose_with_rewrite_json_loads(tmp_path):
    opt = _adam_checkpoint(tmp_path / "ck")
    rewrite_json(tmp_path / "ck.json", step=59)
    tensors, meta = load_state(tmp_path / "ck")
    assert meta["step"] == 59
    load_optimizer_state(opt, tensors, meta)                  # the optimiser's part reads back as written


def test_a_checkpoint_from_before_the_digest_loads_without_a_word(tmp_path, caplog):
    _adam_checkpoint(tmp_path / "ck")
    assert JSON_KEY in json.loads((tmp_path / "ck.json").read_text())     # a save writes it
    as_written_before_digests(tmp_path / "ck.safetensors", tmp_path / "ck.json")
    with caplog.at_level("INFO"):
        _, meta = load_state(tmp_path / "ck")
    assert meta["step"] == 95 and not caplog.text


def test_an_edited_checkpoint_json_falls_back_to_the_previous_pair_that_verifies(tmp_path, caplog):
    save_state(tmp_path / "ck", {"w": torch.ones(4)}, {"step": 8})
    save_state(tmp_path / "ck.prev", {"w": torch.zeros(4)}, {"step": 4})     # (as a save under way keeps it)
    _edit_by_hand(tmp_path / "ck.json", step=9)
    with caplog.at_level("WARNING"):
        _, meta = load_state(tmp_path / "ck")
    assert meta["step"] == 4 and "does not match its own SHA-256" in caplog.text


def test_a_model_json_edited_without_its_digest_is_refused_and_not_counted_as_saved(tmp_path):
    cfg = load_config("ufldl-sae", [*SAE, "train.steps=4", "train.checkpoint_every=4"])
    run = RunDir.create(tmp_path / "r", cfg)
    run_local(cfg, run)
    assert run.model_step() == 4
    _edit_by_hand(run.path / "model.json", step=7)
    assert run.model_step() is None                           # a resume writes it again from its checkpoint
    with pytest.raises(CheckpointError, match=r"model.json' \(of .*model.safetensors'\) cannot be read back: .*"
                                              r"json_sha256.*downpour train --resume"):
        run.load_model()


def _trained(path, steps=4):
    cfg = load_config("ufldl-sae", [*SAE, f"train.steps={steps}", "train.checkpoint_every=4"])
    run_local(cfg, RunDir.create(path, cfg))
    return path


def test_a_resume_over_a_hand_edited_preprocess_json_is_refused_and_leaves_the_run_as_it_was(tmp_path):
    """Its load failed its digest, the resume took that for a run without one and wrote preprocess.* anew over it,
    without a word: the edited file (the evidence) and the refits it recorded were gone."""
    run = _trained(tmp_path / "r")
    _edit_by_hand(run / "preprocess.json", refit_on_resume=[2])
    before = {name: (run / name).read_bytes() for name in ("preprocess.json", "preprocess.safetensors", "config.toml")}
    cfg = load_config(str(run / "config.toml"), ["train.steps=6"])
    with pytest.raises(CheckpointError, match=r"preprocess.json' .*cannot be read back: .*json_sha256.*"
                                              r"put an intact copy back, or remove preprocess.json"):
        run_local(cfg, RunDir.open(run), resume=True)
    assert {name: (run / name).read_bytes() for name in before} == before


def test_a_dry_run_of_that_resume_names_the_preprocess_json_too(tmp_path, capsys):
    from downpour.cli import main

    run = _trained(tmp_path / "r")
    _edit_by_hand(run / "preprocess.json", refit_on_resume=[2])
    assert main(["train", "--resume", str(run), "--steps", "6", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "preprocess.json" in err and "json_sha256" in err


def test_a_resume_that_only_saves_the_model_refuses_a_hand_edited_preprocess_json_as_its_dry_run_does(tmp_path, capsys):
    """A finished run whose model was not saved at its last step: its resume only writes the model from the
    checkpoint (RunBegin.unsaved_at_end) and went ahead beside a preprocess.json its dry run refused, which the
    analysis then refused in turn."""
    from downpour.cli import main

    run = _trained(tmp_path / "r")
    (run / "model.json").unlink()
    _edit_by_hand(run / "preprocess.json", refit_on_resume=[2])
    assert main(["train", "--resume", str(run), "--dry-run"]) == 2
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "preprocess.json" in err and "json_sha256" in err
    assert not (run / "model.json").exists()


def test_a_checkpoint_whose_config_record_was_edited_by_hand_is_named_not_config_toml(tmp_path, capsys):
    """The resume's check of config.toml against the checkpoint's config read the edited record: it said config.toml
    was edited since and asked for the checkpoint's (edited) value to be put back into it."""
    from downpour.cli import main

    run = _trained(tmp_path / "r")
    _edit_by_hand(run / "checkpoints/local.json", config=json.loads((run / "checkpoints/local.json").read_text())
                  ["config"] | {"seed": 12345})
    assert main(["train", "--resume", str(run), "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "local.json" in err and "json_sha256" in err and "edited since" not in err and "12345" not in err


def test_the_report_does_not_say_the_samples_of_a_model_json_edited_since(tmp_path):
    """`downpour report` of an analysed run read model.json's sample count without its check: a report of a run whose
    model.json was edited after its analysis (model_step None, so the analysis was not taken as stale) said it."""
    from downpour.analysis.report import _samples

    (tmp_path / "model.json").write_text(json.dumps(digested({"step": 4, "data": {"n_samples": 500}})))
    assert _samples(RunDir(tmp_path)) == 500
    _edit_by_hand(tmp_path / "model.json", data={"n_samples": 5000})
    assert _samples(RunDir(tmp_path)) is None


def test_the_report_of_a_run_whose_model_json_was_edited_since_its_analysis_is_refused_naming_it(tmp_path, capsys):
    """model_step is None for a model.json that does not verify, so analysis_stale said "not stale" and `downpour
    report` rendered the analysis as that model's without a word. Now refused naming model.json; the analysis kept."""
    from downpour.cli import main

    run = _trained(tmp_path / "r")
    (run / "analysis.json").write_text(json.dumps({"trained_steps": 4}))
    _edit_by_hand(run / "model.json", data={"n_samples": 5000})
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.json" in err and "json_sha256" in err and "downpour train --resume" in err
    assert json.loads((run / "analysis.json").read_text()) == {"trained_steps": 4} and not (run / "report.html").exists()


def test_the_report_of_a_run_whose_weights_changed_on_disk_since_its_analysis_is_refused_naming_them(tmp_path, capsys):
    """model_step is None for a model.safetensors whose SHA-256 is not the one model.json records, so analysis_stale
    said "not stale" and `downpour report` rendered the analysis as that model's without a word. Now refused naming
    model.safetensors and model.json, with the resume that writes them again; the analysis kept."""
    from downpour.cli import main

    run = _trained(tmp_path / "r")
    (run / "analysis.json").write_text(json.dumps({"trained_steps": 4}))
    weights = bytearray((run / "model.safetensors").read_bytes())
    weights[-8:] = bytes(b ^ 0xFF for b in weights[-8:])           # inside the last tensor's data, the header intact
    (run / "model.safetensors").write_bytes(bytes(weights))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors' is not the model" in err and "model.json' describes" in err
    assert f"`downpour train --resume {run}` writes them again from its checkpoint" in err
    assert json.loads((run / "analysis.json").read_text()) == {"trained_steps": 4} and not (run / "report.html").exists()


def test_an_analysis_reading_a_hand_edited_preprocess_json_is_not_told_to_resume(tmp_path):
    """downpour analyze reads preprocess.json too: its refusal said "cannot be resumed from ... resume from another
    copy of the run", a resume's words, on a command that resumes nothing (and whose fix is the same copy put back)."""
    run = _trained(tmp_path / "r")
    _edit_by_hand(run / "preprocess.json", normalize="none")
    with pytest.raises(CheckpointError) as err:
        RunDir.open(run).load_preprocess()
    assert "preprocess.json' (of " in str(err.value) and "cannot be read back" in str(err.value)
    assert "resume" not in str(err.value)
    assert "put an intact copy of the run back" in str(err.value)
