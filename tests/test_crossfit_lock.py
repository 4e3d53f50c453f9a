"""A cross-fit holds a lock on its folder while it runs, and each fold run on its own folder while it trains
(downpour.train.lock, as `downpour train` holds its run's): the same command run again from another terminal (how
a cross-fit goes on) is refused, naming the folder. Else it resumes the folds being trained, two processes in one
folder, and takes a fold without a checkpoint yet for one stopped before it: its metrics removed, trained again from
step 0 beside the live one."""
from __future__ import annotations

import shutil

import pytest

from downpour.cli import main
from downpour.train.lock import analysing, training
from test_crossfit import TINY

pytestmark = pytest.mark.usefixtures("one_thread")   # (its cross-fits' analyses run in this process)


def _trains(monkeypatch) -> list[str]:
    """The folders the runner was asked to train; each stops there (a DataError: a failed fold, named)."""
    from downpour.errors import DataError

    asked = []

    def train(cfg, run, resume=False, opened=None):
        asked.append(run.path.name)
        raise DataError("stopped by the test")

    monkeypatch.setattr("downpour.runners.train", train)
    return asked


def test_a_crossfit_run_again_beside_a_running_one_is_refused_naming_its_folder(tmp_path, capsys, monkeypatch):
    asked = _trains(monkeypatch)
    out = tmp_path / "cf"
    out.mkdir()
    with training(out):                        # the other cross-fit, running in it
        assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{str(out)!r} is being cross-fitted now by another downpour process: let it finish, or stop it" in err
    assert "run the same command again to go on" in err and asked == [] and list(out.iterdir()) == []
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 2      # once it is not: its folds train
    assert asked == ["fold-0", "fold-1"]


def test_a_fold_being_trained_now_is_refused_and_the_others_train(tmp_path, capsys, monkeypatch):
    """One after another (--jobs 1): a fold another process trains (`downpour train --resume OUT/fold-0`) is
    a failed fold, named, and the later folds go on (fold-1 stops in the test's runner)."""
    asked = _trains(monkeypatch)
    out = tmp_path / "cf"
    (out / "fold-0").mkdir(parents=True)
    with training(out / "fold-0"):
        assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{str(out / 'fold-0')!r} is being trained now by another downpour process" in err
    assert "2 of 2 fold runs failed" in err and asked == ["fold-1"]         # (fold-1 stopped by the test)


def test_a_fold_without_a_checkpoint_yet_is_not_trained_again_beside_its_live_run(tmp_path, capsys):
    """Side by side (--jobs 2, each fold in its own process): the fold's lock is taken in its process. The folds
    are trained before and after in this process (--jobs 1, the same runs with train.threads set): a fold process
    takes seconds to start."""
    out = tmp_path / "cf"
    argv = ["crossfit", *TINY, "--set", "train.threads=1", "--runner", "simulated", "--folds", "2", "--out", str(out)]
    assert main([*argv, "--jobs", "1"]) == 0
    fold = out / "fold-0"
    for name in ("model.json", "checkpoints"):              # as it is while it trains, before its first checkpoint
        shutil.rmtree(fold / name) if (fold / name).is_dir() else (fold / name).unlink()
    rows = (fold / "metrics.jsonl").read_text()
    capsys.readouterr()
    with training(fold):                                    # `downpour train --resume OUT/fold-0`, training it
        assert main([*argv, "--jobs", "2"]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 fold runs failed" in err and f"{str(fold)!r} is being trained now by another downpour process" in err
    assert (fold / "metrics.jsonl").read_text() == rows and not (fold / "model.json").exists()
    assert main([*argv, "--jobs", "1"]) == 0 and (fold / "model.json").exists()   # once it is not: trained again from step 0


def test_a_crossfit_into_a_folder_being_analysed_says_so(tmp_path, capsys, monkeypatch):
    """A `downpour analyze OUT` holds the folder shared a moment (it then finds no run there): a cross-fit started
    then is told OUT is being analysed, to let it finish (else "being cross-fitted now", and to run the same command
    again "to go on")."""
    asked = _trains(monkeypatch)
    out = tmp_path / "cf"
    out.mkdir()
    with analysing(out, then="", then_analysed=""):
        assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{str(out)!r} is being analysed now by another downpour process: let it finish" in err
    assert "cross-fitted" not in err and asked == []


def test_the_pooled_test_holds_the_folds_it_reads(tmp_path, capsys, monkeypatch):
    """Once its folds are trained the cross-fit holds each fold's model as it reads it: a `downpour analyze OUT/fold-I`
    meanwhile is refused, saying what reads the fold (else it writes into the fold as the pooled test reads it)."""
    from downpour.errors import DataError

    out, seen = tmp_path / "cf", []
    fold = out / "fold-0"

    def crossfit_controls(views, **options):       # another terminal analyses a fold while the test runs
        seen.append(main(["analyze", str(fold)]))
        raise DataError("stopped by the test")

    monkeypatch.setattr("downpour.analysis.crossfit.crossfit_controls", crossfit_controls)
    monkeypatch.setattr("downpour.analysis.run.analyze_run", lambda run, **overrides: seen.append("analysed"))
    argv = ["crossfit", *TINY, "--runner", "simulated", "--folds", "2", "--control", "none", "--out", str(out)]
    assert main(argv) == 2
    assert seen == [2]
    err = capsys.readouterr().err
    assert f"{str(fold)!r} is being read now by another downpour process: it is a fold of the cross-fit {str(out)!r}" in err
    assert f"then `downpour analyze {fold}`" in err
    assert main(["analyze", str(fold)]) == 0 and seen == [2, "analysed"]     # let go once it ends


def test_a_fold_being_analysed_as_the_pooled_test_starts_refuses_the_test_naming_the_fold(tmp_path, capsys, monkeypatch):
    """The pooled test of a fold another `downpour analyze` is writing into is refused, and told that the same
    command (keeping the trained folds) tests them again."""
    from contextlib import ExitStack

    out, other = tmp_path / "cf", ExitStack()
    fold = out / "fold-0"

    def train_in_turn(configs, paths, *advice):      # trained; then another terminal starts analysing fold-0
        fold.mkdir(parents=True)
        (fold / "config.toml").write_text("")
        other.enter_context(analysing(fold, then="", then_analysed=""))
        return []

    monkeypatch.setattr("downpour.crossfit.train_in_turn", train_in_turn)
    with other:
        assert main(["crossfit", *TINY, "--folds", "2", "--control", "none", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{str(fold)!r} is being analysed now by another downpour process: let it finish, then run the same" in err
    assert f"`downpour crossfit --out {out}` command again: it keeps the trained folds" in err


def test_a_fold_of_a_live_crossfit_another_analysis_writes_into_is_said_as_that_analysis(tmp_path, capsys):
    """A `downpour analyze` of a live cross-fit's fold refused by another `downpour analyze` of it is told that one
    holds it: the one that holds it is named, not both holders at once (the cross-fit's pooled test "(or it is
    another `downpour analyze` of the fold)")."""
    out = tmp_path / "cf"
    fold = out / "fold-0"
    fold.mkdir(parents=True)
    (fold / "config.toml").write_text("")
    with training(out), analysing(fold, then="", then_analysed=""):     # the cross-fit; another terminal's analysis
        assert main(["analyze", str(fold)]) == 2
    err = capsys.readouterr().err
    assert f"{str(fold)!r} is being analysed now by another downpour process: its analysis.json and figures" in err
    assert "pooled" not in err
