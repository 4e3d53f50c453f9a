"""An analysis stopped by Ctrl-C keeps its finished parts in RUN/analysis.partial.json; the next one reuses them."""
from __future__ import annotations

import json
import shutil

import pytest

import downpour.analysis.run as analysis_run
from downpour.analysis.partial import NAME
from downpour.cli import main

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


def _stop_in(monkeypatch, name):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(analysis_run, name, stopped)


def _same(a, b):
    """Two analysis.json dicts, but for the seconds each took."""
    return {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


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
    assert not (run / NAME).exists()                 # analysis.json holds every part now
    assert not (run / "figures.partial").exists()


def test_parts_kept_for_other_analysis_options_are_measured_anew(trained, monkeypatch, capsys):
    run, whole = trained
    with monkeypatch.context() as m:
        _stop_in(m, "optimal_stimulus")
        assert main(["analyze", str(run), *FAST, "--set", "analysis.top_k=5"]) == 130
    assert "kept the splits, the face test in" in capsys.readouterr().err
    calls = []
    real = analysis_run.over_splits
    monkeypatch.setattr(analysis_run, "over_splits", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(["analyze", str(run), *FAST]) == 0      # another top_k: another key
    assert calls == [1]
    assert _same(json.loads((run / "analysis.json").read_text()), whole)


def test_an_analysis_stopped_before_its_first_part_says_it_kept_nothing(trained, monkeypatch, capsys):
    run, _ = trained
    (run / "analysis.json").unlink(missing_ok=True)
    _stop_in(monkeypatch, "over_splits")
    assert main(["analyze", str(run), *FAST]) == 130
    err = capsys.readouterr().err
    assert "before any part of it finished" in err and not (run / NAME).exists() and not (run / "analysis.json").exists()
