"""What the run-folder lock (downpour.train.lock) covers beyond the training itself: `downpour train`'s analysis,
`downpour analyze` and `report` of a run being trained, a cross-fit's folders named to `downpour train`, and a
filesystem that locks nothing (said once)."""
from __future__ import annotations

import contextlib
import errno
import os

import pytest

from downpour.cli import main
from downpour.cli_analyze import analyze_and_report
from downpour.config import load_config
from downpour.train import lock
from downpour.train.rundir import RunDir

SAE = ["--config", "ufldl-sae", "--set", "data.samples=500", "--set", "train.batch_size=20",
       "--set", "train.tensorboard=false"]


def test_downpour_train_holds_its_lock_through_its_analysis_and_report(tmp_path, monkeypatch):
    """The lock is held through the analysis and report: let go once the run (and its twin) had trained, the same
    command again, or a `--resume`, from another terminal would take the folder over while analysis.json and the
    figures are being written."""
    path, held = tmp_path / "run", []

    def train(cfg, run, resume=False, opened=None):
        return {"run": str(run.path)}

    def analyze_run(run, **overrides):           # another terminal looks while the analysis writes
        held.append(("analysis", lock.is_training(run)))

    def write_report(run, **how):
        held.append(("report", lock.is_training(run)))
        return os.path.join(run, "report.html")

    monkeypatch.setattr("downpour.runners.train", train)
    monkeypatch.setattr("downpour.analysis.run.analyze_run", analyze_run)
    monkeypatch.setattr("downpour.analysis.report.write_report", write_report)
    assert main(["train", *SAE, "--report", "--out", str(path)]) == 0
    assert held == [("analysis", True), ("report", True)]
    assert not lock.is_training(path)               # let go once the command ends


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_analyze_or_report_of_a_run_being_trained_is_refused_saying_so(tmp_path, capsys, command):
    """Else it reads the live run's files half-written, and before its model is saved says the run has none."""
    path = tmp_path / "run"
    RunDir.create(path, load_config("ufldl-sae"))
    with lock.training(path):                       # the other process, training it
        assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{str(path)!r} is being trained now by another downpour process: its files are still being written" in err
    assert f"then `downpour {command} {path}`" in err and "--resume" not in err
    assert not (path / "analysis.json").exists()


@pytest.mark.parametrize("where", ["its folder", "a fold", "a fold's twin", "--resume a fold"])
def test_downpour_train_into_a_live_crossfit_says_it_is_a_crossfit(tmp_path, capsys, where):
    """A cross-fit's folder, or a fold it trains, is not said to be "trained now by another downpour process ... then
    `downpour train --resume` it": a cross-fit goes on by its own command, and a fold resumed alone is not it."""
    out = tmp_path / "cf"
    fold = out / "fold-0"
    target = {"its folder": out, "a fold": fold, "a fold's twin": fold / "no-faces", "--resume a fold": fold}[where]
    target.mkdir(parents=True, exist_ok=True)
    fold.mkdir(exist_ok=True)                       # (a cross-fit's folder holds its folds)
    if where.startswith("--resume"):
        RunDir.create(fold, load_config("ufldl-sae"))
    argv = ["train", "--resume", str(fold)] if where.startswith("--resume") else ["train", *SAE, "--out", str(target)]
    with lock.training(out), lock.training(target) if target != out else contextlib.nullcontext():
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"the cross-fit {str(out)!r}, being run now by another downpour process" in err
    assert "run that same `downpour crossfit` command again to go on" in err
    assert f"then `downpour train --resume {target}`" not in err
    alone = tmp_path / "fold-0"                     # a folder of a run's own, named as a fold is, in no cross-fit
    alone.mkdir()
    with lock.training(alone):
        assert main(["train", *SAE, "--out", str(alone)]) == 2
    assert f"then `downpour train --resume {alone}`" in capsys.readouterr().err


def test_the_simulated_check_into_a_folder_being_trained_is_told_to_pick_another_out(tmp_path, capsys):
    """The same `plan --check-simulated --out RUN` again from another terminal is told to pick another --out, not to
    `downpour train --resume` the first's run."""
    path = tmp_path / "run"
    path.mkdir()
    with lock.training(path):                       # the first check, training it
        assert main(["plan", "--check-simulated", "--replicas", "4", "--shards", "2", "--steps", "20",
                     "--out", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(path)!r} is being trained now by another downpour process" in err
    assert "pick another --out" in err and f"`downpour plan --check-run {path}`" in err and "--resume" not in err
    assert list(path.iterdir()) == []


def test_a_filesystem_that_locks_nothing_is_said_once_in_a_command(tmp_path, monkeypatch, caplog):
    """`downpour train --resume` looks at the lock (resume_config), then takes it (training_in), and its twin takes
    its own: "cannot be locked" is logged once, not for each."""
    def flock(fd, how):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock.fcntl, "flock", flock)
    monkeypatch.setattr(lock, "_UNLOCKABLE", set(), raising=False)
    lock.check_not_training(tmp_path)               # what --resume checks first
    with lock.training(tmp_path):                   # then the run
        with lock.training(tmp_path / "no-faces"):  # and its twin
            pass
    said = [r for r in caplog.records if "cannot be locked" in r.getMessage()]
    assert len(said) == 1 and str(tmp_path) in said[0].getMessage()


def test_a_second_analysis_of_a_run_being_analysed_is_refused(tmp_path, monkeypatch, capsys):
    """Of two `downpour analyze RUN` at once the second is refused, saying so: else both stage their figures in
    RUN/figures.partial/, the second removes the first's (as one a killed analysis left) and both write
    analysis.json."""
    path, seen = tmp_path / "run", []
    RunDir.create(path, load_config("ufldl-sae"))

    def analyze_run(run, **overrides):              # another terminal starts the same analysis meanwhile
        if not seen:
            seen.append(main(["analyze", str(run)]))
            seen.append(lock.is_training(run))      # (an analysis is not a training: a cross-fit's words need that)

    monkeypatch.setattr("downpour.analysis.run.analyze_run", analyze_run)
    assert main(["analyze", str(path)]) == 0
    assert seen == [2, False]
    err = capsys.readouterr().err
    assert f"{str(path)!r} is being analysed now by another downpour process: its analysis.json and figures" in err
    assert f"then `downpour analyze {path}`" in err
    assert main(["analyze", str(path)]) == 0        # let go once it ends


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_a_training_of_a_run_being_analysed_is_refused_saying_so(tmp_path, monkeypatch, command):
    """`downpour analyze` holds the lock while it analyses: looked at as it starts and let go, a `downpour train` of
    the folder from another terminal would take the run over (remove its files, or its analysis.json) while it is
    being analysed."""
    path, seen = tmp_path / "run", []
    RunDir.create(path, load_config("ufldl-sae"))

    def analyze_run(run, **overrides):              # another terminal trains the folder meanwhile
        with pytest.raises(lock.FolderBusy, match="being analysed now by another downpour process: let it finish"):
            with lock.training(run):
                seen.append("trained beside the analysis")
        seen.append("refused")
        return os.path.join(run, "report.html")

    monkeypatch.setattr("downpour.analysis.run.analyze_run", analyze_run)
    monkeypatch.setattr("downpour.analysis.report.write_report", analyze_run)
    assert main([command, str(path)]) == 0
    assert seen == ["refused"]
    with lock.training(path):                       # let go once it ends
        pass


@pytest.mark.parametrize("held", ["analysed", "read"])
def test_the_simulated_check_into_a_folder_being_analysed_says_so(tmp_path, capsys, held):
    """The refusal says what holds the folder: one being analysed is not said to be "trained now", and one held shared
    by a reader (a cross-fit's pooled test of its folds, an analysis of the run it is the twin of) is not said to be a
    `downpour analyze` or `report` of it."""
    path = tmp_path / "run"
    path.mkdir()
    holding = (lock.analysing(path, then="", then_analysed="") if held == "analysed"    # from another terminal
               else lock.reading(path, then=""))
    with holding:
        assert main(["plan", "--check-simulated", "--replicas", "4", "--shards", "2", "--steps", "20",
                     "--out", str(path)]) == 2
    err = capsys.readouterr().err
    assert (f"--out {str(path)!r} is being analysed now by another downpour process (a `downpour analyze`, `report` "
            "or `crossfit` reading it)") in err
    assert "trained" not in err and list(path.iterdir()) == []


@pytest.mark.parametrize("where", ["a fold not reached yet", "its twin"])
def test_downpour_train_into_a_fold_the_live_crossfit_does_not_train_now_says_it_is_a_crossfit(tmp_path, monkeypatch,
                                                                                               capsys, where):
    """Only a fold being trained at that moment was said to be the cross-fit's: `--out OUT/fold-1` while the cross-fit
    trained fold-0 trained a run there, and the cross-fit, reaching fold-1, failed it as another run."""
    out, trained = tmp_path / "cf", []
    (out / "fold-0").mkdir(parents=True)           # (the cross-fit's folder holds its folds)
    target = {"a fold not reached yet": out / "fold-1", "its twin": out / "fold-0" / "no-faces"}[where]
    monkeypatch.setattr("downpour.runners.train",
                        lambda cfg, run, resume=False, opened=None: trained.append(run.path) or {})
    with lock.training(out):                        # the cross-fit, running
        assert main(["train", *SAE, "--no-report", "--out", str(target)]) == 2
    assert f"{str(target)!r} is a fold of the cross-fit {str(out)!r}, being run now" in capsys.readouterr().err
    assert trained == [] and not target.exists()


def test_a_folder_above_the_out_that_cannot_be_listed_is_no_crossfit(tmp_path, monkeypatch):
    """`downpour train` looks whether its --out is a live cross-fit's fold (its parent listed): a parent one may
    enter but not list (mode 311) is none, not a PermissionError traceback."""
    from pathlib import Path

    from downpour.crossfit_folds import check_not_crossfits

    listed = Path.iterdir

    def iterdir(self):
        if self == tmp_path:
            raise PermissionError(13, "Permission denied", str(self))
        return listed(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    check_not_crossfits(tmp_path / "fold-0")        # nothing raised (a fold's name: its parent is looked at)


@pytest.mark.parametrize("where", ["an --out being trained", "an --out being analysed", "--resume a run being analysed",
                                   "a live cross-fit's fold", "--resume a run whose twin is being trained"])
def test_a_dry_run_is_refused_as_the_command_would_be_by_another_process(tmp_path, capsys, where):
    """`downpour train --dry-run` (check before you spend) is refused as the command itself is by the folder's lock (or
    a live cross-fit's), not "config checked", nor that the folder "holds a run" where it is being analysed."""
    path, out = tmp_path / "run", tmp_path / "cf"
    path.mkdir()
    if where.startswith("--resume") or where == "an --out being analysed":
        RunDir.create(path, load_config("ufldl-sae", [("analysis.no_faces_twin", "twin" in where),
                                                      ("data.source", "natural+faces")]))
        (path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')      # (started: a resume goes on from it)
    target = {"a live cross-fit's fold": out / "fold-1", "--resume a run whose twin is being trained": path / "no-faces"}
    held = target.get(where, path)
    (out / "fold-0").mkdir(parents=True)
    held.mkdir(exist_ok=True)
    hold = lock.analysing(held, "", "") if "analysed" in where else lock.training(out if "cross-fit" in where else held)
    argv = (["train", "--resume", str(path)] if where.startswith("--resume") else
            ["train", *SAE, "--out", str(held)])
    with hold:
        assert main([*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    doing = {"a live cross-fit's fold": "is a fold of the cross-fit", "an --out being trained": "being trained now",
             "--resume a run whose twin is being trained": f"{str(path / 'no-faces')!r} is being trained now"}
    assert doing.get(where, "is being analysed now by another downpour process") in err and "config checked" not in err


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_an_analysis_of_a_run_whose_twin_is_being_trained_is_refused_naming_the_twin(tmp_path, monkeypatch, capsys,
                                                                                     command):
    """`downpour analyze RUN` while `downpour train --resume RUN/no-faces` trains the twin is refused naming the twin:
    else it reads it as the no-faces network half-trained (or says it holds no twin yet); and a training of the twin
    can start mid-analysis."""
    path, seen = tmp_path / "run", []
    RunDir.create(path, load_config("ufldl-sae"))
    twin = RunDir(path).no_faces_twin
    twin.mkdir()
    with lock.training(twin):                       # `downpour train --resume RUN/no-faces`, from another terminal
        assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{str(twin)!r} is being trained now by another downpour process: the analysis of {str(path)!r} scores" in err
    assert f"then `downpour {command} {path}`" in err

    def analyze_run(run, **overrides):              # the twin's training started from another terminal meanwhile
        with pytest.raises(lock.FolderBusy, match="being analysed now"):
            with lock.training(twin):
                pass
        seen.append("refused")
        return os.path.join(run, "report.html")

    monkeypatch.setattr("downpour.analysis.run.analyze_run", analyze_run)
    monkeypatch.setattr("downpour.analysis.report.write_report", analyze_run)
    assert main([command, str(path)]) == 0 and seen == ["refused"]


def test_downpour_train_holds_its_twin_through_its_analysis(tmp_path, monkeypatch):
    """`downpour train`'s own analysis scores the twin it trained as its no-faces network, and holds it: with the
    twin's lock let go once the twin had trained, a `downpour train --resume RUN/no-faces --steps MORE` from another
    terminal would train it on while the run's analysis reads it (as `downpour analyze RUN` refuses too)."""
    path, seen = tmp_path / "run", []

    def analyze_run(run, **overrides):              # another terminal trains the twin on meanwhile
        with pytest.raises(lock.FolderBusy, match="being analysed now"):
            with lock.training(RunDir(run).no_faces_twin):
                pass
        seen.append("refused")

    monkeypatch.setattr("downpour.runners.train", lambda cfg, run, resume=False, opened=None: {"run": str(run.path)})
    monkeypatch.setattr("downpour.analysis.run.analyze_run", analyze_run)
    monkeypatch.setattr("downpour.analysis.report.write_report", lambda run, **how: os.path.join(run, "report.html"))
    assert main(["train", *SAE, "--set", "data.source=natural+faces", "--set", "analysis.no_faces_twin=true",
                 "--report", "--out", str(path)]) == 0
    assert seen == ["refused"] and not lock.is_training(RunDir(path).no_faces_twin)   # let go once it ends


def test_a_dry_run_resume_of_a_twin_its_run_analysis_reads_is_refused_as_the_command_is(tmp_path, capsys):
    """`downpour train --resume RUN/no-faces` is refused while RUN's analysis holds the twin shared (it scores it), but
    its --dry-run says so too (looking only for a whole lock, a training's, and at config.toml, an analysis's, it
    would say "config checked")."""
    twin = RunDir(tmp_path / "run").no_faces_twin
    RunDir.create(twin, load_config("ufldl-sae"))
    (twin / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')      # (started: a resume goes on from it)
    said = []
    with lock.reading(twin, then=""):               # `downpour analyze RUN`, from another terminal
        for dry in ([], ["--dry-run"]):
            assert main(["train", "--resume", str(twin), *dry]) == 2
            said.append(capsys.readouterr().err)
    assert f"{str(twin)!r} is being analysed now by another downpour process: let it finish" in said[0]
    assert said[1] == said[0]


def test_downpour_train_of_a_finished_run_holds_its_twin_while_its_stale_analysis_is_made_again(tmp_path, monkeypatch):
    """A finished run and its twin kept: only its report was written, and write_report makes a stale analysis again
    (the model saved is at another step), the twin held: else a `downpour train --resume RUN/no-faces` from another
    terminal trains it on as that analysis scores it."""
    path, seen = tmp_path / "run", []

    def train_with_twin(cfg, run, twin, resume=False, opened=None):     # both finished before: kept, with an analysis
        RunDir(run.path).no_faces_twin.mkdir()
        (run.path / "analysis.json").write_text('{"trained_steps": 1}')
        return {"run": str(run.path), "kept": True}

    def write_report(run, **how):                          # its analysis found stale, made again in here
        with pytest.raises(lock.FolderBusy, match="being analysed now"):
            with lock.training(RunDir(run).no_faces_twin):
                pass
        seen.append("refused")
        return os.path.join(run, "report.html")

    monkeypatch.setattr("downpour.twins.train_with_twin", train_with_twin)
    monkeypatch.setattr(RunDir, "model_step", lambda self: 2)      # (its analysis is of step 1: stale)
    monkeypatch.setattr("downpour.analysis.run.analyze_run", lambda run, **overrides: seen.append("analysed"))
    monkeypatch.setattr("downpour.analysis.report.write_report", write_report)
    assert main(["train", *SAE, "--set", "data.source=natural+faces", "--set", "analysis.no_faces_twin=true",
                 "--report", "--out", str(path)]) == 0
    assert seen == ["refused"]                             # (its analysis kept: only the report)


@pytest.mark.parametrize("named", ["in config.toml", "--set"])
def test_an_analysis_holds_its_no_faces_run_and_is_refused_while_it_is_trained(tmp_path, monkeypatch, capsys, named):
    """analysis.no_faces_run (another run's folder) is held: else an analysis reads it half-trained, and a
    `downpour train --resume` of it can start while the analysis scores it."""
    path, other, seen = tmp_path / "run", tmp_path / "nf", []
    sets = [("analysis.no_faces_run", str(other))] if named == "in config.toml" else []
    RunDir.create(path, load_config("ufldl-sae", sets))
    other.mkdir()
    argv = ["analyze", str(path), *(["--set", f"analysis.no_faces_run={other}"] if named == "--set" else [])]
    with lock.training(other):                      # `downpour train --resume NF`, from another terminal
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert (f"{str(other)!r} is being trained now by another downpour process: the analysis of {str(path)!r} scores it "
            "as its no-faces network (analysis.no_faces_run); let it finish") in err

    def analyze_run(run, **overrides):              # its training started from another terminal meanwhile
        with pytest.raises(lock.FolderBusy, match="being analysed now"):
            with lock.training(other):
                pass
        seen.append("refused")

    monkeypatch.setattr("downpour.analysis.run.analyze_run", analyze_run)
    assert main(argv) == 0 and seen == ["refused"]


def test_the_analysis_downpour_train_makes_of_a_run_naming_itself_its_no_faces_run_is_not_refused_by_itself(
        tmp_path, monkeypatch):
    """A run's analysis.no_faces_run naming the run itself (a run that saw no face passes its checks): `downpour
    train`'s analysis must not hold it shared beside the training's whole lock on it, a second lock of this process's
    own, and be refused as "being trained now by another downpour process"."""
    path, seen = tmp_path / "run", []
    RunDir.create(path, load_config("ufldl-sae", [("analysis.no_faces_run", f"{path}/.")]))
    monkeypatch.setattr("downpour.analysis.run.analyze_run", lambda run, **overrides: seen.append("analysed"))
    monkeypatch.setattr("downpour.analysis.report.write_report", lambda run, **how: os.path.join(run, "report.html"))
    with lock.training(path):                       # `downpour train`, at its end
        assert analyze_and_report(path) == 0
    assert seen == ["analysed"]


@pytest.mark.parametrize("held", ["twin", "analysis.no_faces_run"])
def test_a_report_of_an_analysed_run_is_not_refused_while_its_no_faces_network_is_trained(tmp_path, monkeypatch, held):
    """`downpour report` of a run analysed already reads its analysis.json, not its no-faces networks, so it is not
    refused while its twin or analysis.no_faces_run is trained."""
    path, other = tmp_path / "run", tmp_path / "nf"
    RunDir.create(path, load_config("ufldl-sae", [("analysis.no_faces_run", str(other))]))
    (path / "analysis.json").write_text("{}")
    folder = RunDir(path).no_faces_twin if held == "twin" else other
    folder.mkdir()
    monkeypatch.setattr("downpour.analysis.report.write_report", lambda run, **how: os.path.join(run, "report.html"))
    with lock.training(folder):                     # `downpour train --resume` of it, from another terminal
        assert main(["report", str(path)]) == 0


@pytest.mark.parametrize("command", ["train", "analyze"])
def test_a_command_starting_as_another_looks_at_its_folder_is_not_refused(tmp_path, monkeypatch, command):
    """A look at a folder (`downpour train --dry-run`'s check_free, a cross-fit's is_training) takes its lock for an
    instant: a `downpour train` or `analyze` of it starting in that instant tries again a moment later, not refused as
    if it were being trained or analysed."""
    import fcntl

    path, real, looked = tmp_path / "run", fcntl.flock, []

    def flock(fd, how):
        if not looked:                              # the other process's look holds the lock at this instant
            looked.append(fd)
            raise BlockingIOError(errno.EWOULDBLOCK, "held")
        real(fd, how)

    path.mkdir()
    monkeypatch.setattr(fcntl, "flock", flock)
    held = lock.training(path) if command == "train" else lock.analysing(path, then="", then_analysed="")
    with held:
        assert looked


@pytest.mark.parametrize("argv", [["train", *SAE, "--out"], ["train", "--resume"], ["analyze"]])
def test_a_run_folder_that_cannot_be_opened_to_lock_is_refused_naming_it(tmp_path, monkeypatch, capsys, argv):
    """A folder this user cannot read (or one removed meanwhile) was taken for a filesystem that locks nothing: "its
    folder cannot be locked" was logged and the run trained unlocked (a --resume of a run without a checkpoint yet
    removed its metrics and trained it again from step 0 beside a live one)."""
    path, opened, trained = tmp_path / "run", os.open, []
    path.mkdir()                                    # (an --out made beforehand, empty: a new run goes into it)
    if argv[-1] != "--out":                         # a run that trained a step, not checkpointed yet
        RunDir.create(path, load_config("ufldl-sae"))
        (path / "metrics.jsonl").write_text('{"step": 1, "cost": 1.0}\n')
    kept = {p.name: p.read_bytes() for p in path.iterdir()}

    def refused(file, flags, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return opened(file, flags, *args, **kwargs)

    monkeypatch.setattr(lock.os, "open", refused)
    monkeypatch.setattr("downpour.runners.train", lambda cfg, run, resume=False, opened=None: trained.append(run) or {})
    monkeypatch.setattr("downpour.analysis.run.analyze_run", lambda run, **overrides: trained.append(run))
    assert main([*argv, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{str(path)!r} cannot be opened to hold its lock (Permission denied)" in err
    assert trained == [] and {p.name: p.read_bytes() for p in path.iterdir()} == kept


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EIO])
def test_only_a_filesystem_without_locks_trains_unlocked(tmp_path, monkeypatch, caplog, code):
    """flock failing for any reason was taken for a filesystem that locks nothing (the run trained unlocked); only its
    words for that (ENOLCK, EOPNOTSUPP: test_rundir_recovery; ENOSYS) are, and the run goes on as before the lock."""
    def flock(fd, how):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(lock.fcntl, "flock", flock)
    monkeypatch.setattr(lock, "_UNLOCKABLE", set(), raising=False)
    if code == errno.EIO:
        with pytest.raises(lock.NotARunError, match=f"{str(tmp_path)!r} cannot be locked \\(Input/output error\\)"):
            with lock.training(tmp_path):
                pass
        return
    with lock.training(tmp_path):
        pass
    assert any("cannot be locked" in r.getMessage() for r in caplog.records)
