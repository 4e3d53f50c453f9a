"""`downpour crossfit` without --out trains into runs/crossfit-<config>-<time>: after a stop or a failed fold, "the
same command" again names a new folder (another time) and trains every fold again. Its words give the --out to go
on with. The cross-fit itself is replaced here: only the command's words are under test."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import downpour.crossfit
from downpour.cli import main
from downpour.crossfit import AGAIN, FoldFailure, raise_failed

ARGS = ["crossfit", "--config", "cat-demo", "--runner", "local", "--folds", "2"]
FOLDS = [Path("runs/x/fold-0"), Path("runs/x/fold-1")]


def _stop(*args, **kwargs):
    raise KeyboardInterrupt


def _fail(*args, again=AGAIN, note="", **kwargs):       # raise_failed's own words: a change in them is seen here
    raise_failed({1: FoldFailure("DataError: ...")}, FOLDS, logs=False, again=again, note=note)


def _fail_stopped(*args, again=AGAIN, note="", **kwargs):    # a fold process stopped alone, as _fold_child answers
    raise_failed({1: FoldFailure(f"stopped (its checkpoint is kept: {again} to go on)")}, FOLDS, logs=True, again=again,
                 note=note)


@pytest.mark.parametrize("what", [_stop, _fail, _fail_stopped])
def test_a_crossfit_without_out_says_which_out_goes_on(tmp_path, monkeypatch, capsys, what):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(downpour.crossfit, "run_crossfit", what)
    assert main(ARGS) == (130 if what is _stop else 2)
    err = capsys.readouterr().err
    folder = re.search(r"--out (runs/crossfit-cat-demo-\d{8}-\d{6})", err)
    assert folder, err       # not "the same command goes on (--out ...)": the same command starts a new folder
    assert "without --out it starts a new cross-fit" in err, err
    # every "run the same command again" names the --out (the first alone did: a fold stopped alone's, not the advice)
    assert AGAIN not in err and err.count(f"the same command with --out {folder[1]}") == 1 + (what is _fail_stopped), err
    assert err.count("without --out") == 1, err
    if what is not _stop:    # the note after the clause it qualifies, not inside it ("again (without ...) to train")
        assert "again to train only those (without --out it starts a new cross-fit" in err, err


@pytest.mark.parametrize("what", [_stop, _fail, _fail_stopped])
def test_a_crossfit_with_out_says_the_same_command_goes_on(tmp_path, monkeypatch, capsys, what):
    monkeypatch.setattr(downpour.crossfit, "run_crossfit", what)
    assert main([*ARGS, "--out", str(tmp_path / "cf")]) == (130 if what is _stop else 2)
    err = capsys.readouterr().err
    assert "the same command" in err and "without --out" not in err, err
