"""environment.json: the install a run was trained with, and the warning of a resume or analysis under another."""
import json
import logging

from downpour.config import load_config
from downpour.train.machine import platform, versions
from downpour.train.environment import FILE, PACKAGES, warn_if_other
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir

SAE = ["data.samples=500", "train.batch_size=20", "train.tensorboard=false", "train.threads=1",
       "train.checkpoint_every=2"]


def _trained(path, steps=2):
    cfg = load_config("ufldl-sae", [*SAE, f"train.steps={steps}"])
    run_local(cfg, RunDir.create(path, cfg))
    return path


def _resume(path, steps=4):
    run_local(load_config(str(path / "config.toml"), [f"train.steps={steps}"]), RunDir.open(path), resume=True)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "downpour.train.environment"]


def test_a_run_records_every_package_version_its_commit_and_its_machine(tmp_path):
    import numpy
    import torch

    record = json.loads((_trained(tmp_path / "r") / FILE).read_text())
    assert set(PACKAGES) <= set(record) and {"downpour", "commit", "os", "cpu", "blas", "step"} <= set(record)
    assert record["numpy"] == numpy.__version__ and record["torch"] == torch.__version__      # (imported: the truth)
    assert record["step"] == 0 and record["commit"] and "not installed" not in record.values()
    assert {k: record[k] for k in platform()} == platform()          # the study cells' record, not a second one


def test_a_resume_under_another_numpy_warns_once_naming_both_versions_and_keeps_the_old_record(tmp_path, caplog):
    run = _trained(tmp_path / "r")
    old = json.loads((run / FILE).read_text())
    (run / FILE).write_text(json.dumps({**old, "numpy": "1.0.0", "pillow": "9.9.9"}))    # stand-in versions
    with caplog.at_level(logging.WARNING):
        _resume(run)
    said = _warnings(caplog)
    here = versions(("numpy", "pillow"))
    assert len(said) == 1 and f"numpy 1.0.0 (here {here['numpy']})" in said[0]
    assert f"pillow 9.9.9 (here {here['pillow']})" in said[0] and "the resume trains" in said[0]
    assert "torch" not in said[0].split(": ")[1].split(";")[0]                      # only the packages that differ
    new = json.loads((run / FILE).read_text())
    assert new["step"] == 2 and new["numpy"] == here["numpy"] and new["earlier"][0]["numpy"] == "1.0.0"


def test_a_resume_under_the_same_install_is_quiet_and_keeps_the_record_as_it_was(tmp_path, caplog):
    run = _trained(tmp_path / "r")
    before = (run / FILE).read_bytes()
    with caplog.at_level(logging.INFO):
        _resume(run)
    assert _warnings(caplog) == [] and (run / FILE).read_bytes() == before


def test_a_run_from_before_the_record_resumes_quietly_and_gains_one(tmp_path, caplog):
    run = _trained(tmp_path / "r")
    (run / FILE).unlink()
    with caplog.at_level(logging.INFO):
        _resume(run)
        warn_if_other(run, "the analysis runs")
    assert _warnings(caplog) == []
    assert json.loads((run / FILE).read_text())["step"] == 2


def test_an_analysis_under_another_torch_says_so(tmp_path, caplog, monkeypatch):
    import downpour.analysis.run as analysis

    run = _trained(tmp_path / "r")
    (run / FILE).write_text(json.dumps({**json.loads((run / FILE).read_text()), "torch": "1.0.0+stand-in"}))
    monkeypatch.setattr(analysis, "_analyze", lambda path, options: {})     # (the warning comes before the work)
    with caplog.at_level(logging.WARNING):
        analysis.analyze_run(run)
    said = _warnings(caplog)
    assert len(said) == 1 and "torch 1.0.0+stand-in (here" in said[0] and "the analysis runs" in said[0]


def test_a_package_that_is_not_installed_is_said_so():
    assert versions(("no-such-distribution-xyz",)) == {"no-such-distribution-xyz": "not installed"}


def test_a_run_that_never_got_going_is_taken_over_with_its_record_and_one_trained_again_starts_a_new_one(tmp_path):
    cfg = load_config("ufldl-sae", [*SAE, "train.steps=2"])
    RunDir.create(tmp_path / "never", cfg)
    (tmp_path / "never" / FILE).write_text(json.dumps({"numpy": "1.0.0"}))      # begin() wrote it, then the data failed
    RunDir.create(tmp_path / "never", cfg)                                      # (not "not an empty folder")
    assert not (tmp_path / "never" / FILE).exists()
    run = RunDir.open(_trained(tmp_path / "r"))
    run.discard_training()
    assert not (run.path / FILE).exists()


def test_a_package_whose_metadata_is_unreadable_is_said_so(tmp_path, monkeypatch):
    """A dist-info folder without METADATA (a broken install) gave None, not a version."""
    (tmp_path / "site" / "no_such_distribution_xyz-1.0.dist-info").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert versions(("no-such-distribution-xyz",)) == {"no-such-distribution-xyz": "unreadable"}


def test_a_folder_holding_only_a_stale_record_is_taken_over_without_it(tmp_path):
    """A never-started run's folder, its config.toml deleted: the record left is not the new run's ``earlier``."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / FILE).write_text(json.dumps({"numpy": "1.0.0", "step": 0}))
    record = json.loads((_trained(tmp_path / "r") / FILE).read_text())
    assert "earlier" not in record and record["numpy"] == versions(("numpy",))["numpy"]


def test_a_folder_with_a_trained_run_and_its_record_is_still_refused(tmp_path):
    import pytest

    from downpour.train.folders import RunExistsError

    run = _trained(tmp_path / "r")
    with pytest.raises(RunExistsError, match="already holds a run"):
        RunDir.create(run, load_config("ufldl-sae", [*SAE, "train.steps=2"]))


def test_a_damaged_record_is_said_once_by_name_where_the_version_check_cannot_run(tmp_path, caplog):
    """A cut-short environment.json read as no record at all: the analysis, or a resume under other package versions,
    said nothing, and the resume wrote a new record over the damaged one without a word."""
    run = _trained(tmp_path / "r")
    (run / FILE).write_text('{"numpy": "1.0')
    with caplog.at_level(logging.WARNING):
        warn_if_other(run, "the analysis runs")
    said = _warnings(caplog)
    assert len(said) == 1 and str(run / FILE) in said[0] and "not checked" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _resume(run)
    said = _warnings(caplog)
    assert len(said) == 1 and str(run / FILE) in said[0] and "written again" in said[0]
    assert json.loads((run / FILE).read_text())["step"] == 2


def test_written_again_is_said_where_the_caller_rewrites_the_record_not_read_from_its_words(tmp_path, caplog):
    """Whether "it is written again" was decided by ``doing`` starting "the resume": a resume's check said in other
    words lost it, and an analysis said "the resume ..." would have claimed it."""
    run = tmp_path / "r"
    run.mkdir()
    (run / FILE).write_text('{"numpy": "1.0')
    with caplog.at_level(logging.WARNING):
        warn_if_other(run, "training goes on", rewritten=True)
        warn_if_other(run, "the resume's analysis runs")
    rewritten, kept = _warnings(caplog)
    assert "whether training goes on under other ones is not checked; it is written again" in rewritten
    assert "the resume's analysis runs" in kept and "written again" not in kept
