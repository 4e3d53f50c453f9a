"""``downpour crossfit``: train one run per lfw fold, then test the face unit on all 100 faces.

    result = run_crossfit("main", [("seed", 3)], "runs/crossfit-main", folds=5)
    result["verdict"]["sentences"]       # the pooled face test, in words

Run i is the config with ``data.lfw_heldout = "fold:i:K"`` (it trains without fold i's images, and
``downpour analyze`` on it tests on them), written to ``OUT/fold-i``. Run again after an
interruption, it keeps a finished fold, resumes a started one from its checkpoint (one stopped
between its last checkpoint and its model gets the model written from that checkpoint), and trains
again one that stopped before its first checkpoint. ``jobs`` > 1 trains that many folds at once, each in its own
process; with one at a time on the Ray runner, every run shares one Ray start. The pooled test
(:func:`~downpour.analysis.crossfit.crossfit_controls`) goes to ``OUT/crossfit.json``. The folds' configs, the
folder's checks and the locks held on it and its folds are in :mod:`downpour.crossfit_folds`.

``control="no-faces"`` (the default where the config sets ``analysis.no_faces_twin``, as the main job
does) also trains every fold's no-faces twin (:mod:`downpour.twins`: the same recipe and seed with
``data.train_faces = 0``) into ``OUT/fold-i/no-faces``; the face test then scores that network's unit,
chosen the same way, as one more method ("the no-faces network"), paired with the learned unit on the
same images: is the face unit learned from the faces? ``control="none"`` trains no twin.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NamedTuple

from downpour.cli_log import configure_logging
from downpour._names import pasted
from downpour.config import (CROSSFIT_CONTROLS, FACE_SOURCES, ConfigError, Override, RunConfig, as_typed,
                             config_to_dict, load_config, parse_override)
from downpour.crossfit_folds import check_crossfit_folder, crossfitting, fold_config, testing
from downpour.errors import RunError
from downpour.parent_death import die_with_parent
from downpour.train.folders import RunExistsError, folder_to_write, make_folder
from downpour.train.go_on import crossfit_fold
from downpour.train.model_file import replace_text
from downpour.train.rundir import RunDir
from downpour.train.signals import sigterm_as_interrupt
from downpour.train.telemetry import PROGRESS_LINE
from downpour.twins import check_same_run, no_faces_config, recorded_failures, search_failures, shared_ray, train_kept

log = logging.getLogger(__name__)
# what a failed or stopped fold says to do (run_crossfit's ``again``): `downpour crossfit` without --out names the
# --out to do it with (cli_train)
AGAIN = "run the same command again"


def fold_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """What crossfit.json keeps of a fold's training summary, and the line searches that failed for real in its
    training (Sandblaster; :func:`~downpour.twins.search_failures`): the command's exit status reads them, so a
    cross-fit whose folds failed exits 1, as `downpour train` does.
    A kept fold's are those its sandblaster.json records (:func:`~downpour.twins.recorded_failures`; none for a
    Downpour fold). Every fold's record has the key. ``kept`` is true or false, never ``null`` (which would read as
    unknown)."""
    failures = recorded_failures(summary["run"]) if summary.get("kept") else search_failures(summary)
    return {"run": summary.get("run"), "kept": bool(summary.get("kept")),
            **{k: summary.get(k) for k in ("seconds", "final_loss")}, "line_search_failures": failures}


def train_fold(cfg: RunConfig, path: Path) -> dict[str, Any]:
    """:func:`~downpour.twins.train_kept` of a fold (``OUT/fold-I``) or its twin (``OUT/fold-I/no-faces``), its
    :func:`fold_summary`; stopped, its runner's warning names the cross-fit's command (:mod:`downpour.train.go_on`),
    not ``--resume`` of the fold, which finishes that fold alone."""
    with crossfit_fold(path.parent.parent if path.name == RunDir.TWIN else path.parent):
        return fold_summary(train_kept(cfg, path))


def line_search_failures(record: dict[str, Any], kept: bool = False) -> list[str]:
    """The line searches that failed for real in the folds (and twins) a cross-fit ``record`` trained (with ``kept``:
    in those it kept from an earlier command, which said them and exited 1 then)."""
    return [line for run in [*record["runs"], *record.get("no_faces_runs", [])] if bool(run.get("kept")) == kept
            for line in run.get("line_search_failures", [])]


def parallel_threads(cfg: RunConfig, jobs: int) -> list[Override]:
    """With ``jobs`` folds at once, each gets an equal share of the cores (recorded in its config.toml)
    unless ``train.threads`` is set."""
    if jobs > 1 and cfg.cluster.runner == "ray":
        raise ConfigError("--jobs trains folds side by side in local processes; the Ray runner already spreads one "
                          "run over the cluster: use --jobs 1 with it, or --runner local")
    if jobs == 1 or cfg.train.threads:
        return []
    return [("train.threads", max(1, (os.cpu_count() or 1) // jobs))]


def _fold_child(cfg: RunConfig, path: Path, log_path: Path, conn: Connection, parent: int, again: str) -> None:
    """One fold in its own process: its output to ``log_path``, ``(ok, summary or FoldFailure)`` to ``conn``; stopped
    alone, it says ``again`` goes on. A
    SIGTERM (the parent's, when it is stopped, or when it dies) checkpoints the fold as Ctrl-C does, and ends the
    process. SIGINT is the parent's alone: a Ctrl-C at the terminal reaches every process of the group, but a
    SIGINT sent to the parent only (``kill -INT``, ``timeout -s INT``, a notebook) left the folds training, and
    the parent, waiting on them, killed them after :data:`STOP_SECONDS` with nothing saved."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
    with open(log_path, "a", encoding="utf-8") as out, redirect_stdout(out), redirect_stderr(out), sigterm_as_interrupt():
        configure_logging(stream=out, force=True)
        try:
            _answer(conn, (True, train_fold(cfg, path)))
        except KeyboardInterrupt:
            _answer(conn, (False, FoldFailure(f"stopped (its checkpoint is kept: {again} to go on)")))
        except Exception as err:   # reported by the parent, naming the fold; the other folds go on
            traceback.print_exc(file=out)
            _answer(conn, (False, fold_error(err)))
        finally:
            conn.close()


def _answer(conn: Connection, what: tuple[bool, Any]) -> None:
    """Send the parent the fold's outcome; a parent gone (stopped, killed) reads nothing, and that is no error."""
    try:
        conn.send(what)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass


def output_log(path: Path) -> Path:
    """Where a fold run's output goes when it trains in its own process: ``fold-i`` -> ``fold-i.log``,
    its twin ``fold-i/no-faces`` -> ``fold-i.no-faces.log`` (beside the fold: a run directory takes in
    nothing it did not write)."""
    if path.name == RunDir.TWIN:
        return path.parent.with_name(f"{path.parent.name}.{path.name}.log")
    return path.with_name(path.name + ".log")


def train_in_parallel(configs: list[RunConfig], paths: list[Path], jobs: int, again: str = AGAIN,
                      note: str = "") -> list[dict[str, Any]]:
    """Train fold i of ``configs`` into ``paths[i]``, ``jobs`` processes at a time, each writing its
    output to :func:`output_log`. A fold that fails (or whose process dies) does not stop the others; once
    all have ended, the failures are raised together (:func:`raise_failed`, with ``again`` and ``note``), and
    running again resumes them."""
    ctx = multiprocessing.get_context("spawn")     # a fresh interpreter: no forked torch threads or Ray state
    pending, running, done, failed = list(range(len(configs))), {}, {}, {}
    progress: dict[int, tuple[int, str]] = {}   # each running fold's log: the offset read to, the line logged last
    for i in list(pending):     # a finished fold is kept here: a process to say so cost 2-3 s (it imports torch)
        if _finished(configs[i], paths[i]):
            done[i] = train_fold(configs[i], paths[i])
            pending.remove(i)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i = pending.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                log_path = output_log(paths[i])
                make_folder(paths[i].parent, "the cross-fit's folder")
                process = ctx.Process(target=_fold_child,
                                      args=(configs[i], paths[i], log_path, send, os.getpid(), again))
                running[i] = (process, receive)     # before it starts: a stop during the start still stops it
                progress[i] = (_size(log_path), "")   # (a resumed fold appends to its log: earlier steps not logged)
                process.start()
                send.close()
                log.info("crossfit: run %d of %d -> %s (output: %s)", i + 1, len(configs), paths[i], log_path)
            wait([process.sentinel for process, _ in running.values()], timeout=PROGRESS_SECONDS)
            for i, (process, receive) in list(running.items()):
                if process.is_alive():
                    progress[i] = _log_progress(paths[i].relative_to(paths[0].parent), output_log(paths[i]),
                                                *progress[i])
                    continue
                process.join()
                ended = FoldFailure(f"its process ended with exit code {process.exitcode}")
                ok, what = receive.recv() if receive.poll() else (False, ended)
                receive.close()
                del running[i]
                (done if ok else failed)[i] = what
                log.info("crossfit: %s %s", paths[i], "done" if ok else f"failed: {what.message()}")
    except KeyboardInterrupt:   # stopped: every fold process stops too, with its checkpoint, before this one ends
        _stop([process for process, _ in running.values()])
        raise
    raise_failed(failed, paths, logs=True, again=again, note=note)
    return [done[i] for i in range(len(configs))]


PROGRESS_SECONDS = 15   # how often `--jobs N` looks for each running fold's newest step (its output goes to its log)


def _log_progress(name: Path, log_path: Path, offset: int, last: str) -> tuple[int, str]:
    """Log the newest progress line the fold ``name`` wrote to ``log_path`` past ``offset``, shortened
    ("crossfit: fold-1: step 120/1000, loss 0.43, eta 2m10s"), unless it is ``last``, the one logged before; the
    offset read to and the progress logged. A line half written is read on the next look."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read()
    except OSError:         # (not created yet)
        return offset, last
    end = text.rfind(b"\n") + 1
    lines = text[:end].decode("utf-8", "replace").splitlines()
    steps = [found for line in lines if (found := PROGRESS_LINE.match(line))]
    now = f"step {steps[-1][1]}/{steps[-1][2]}, loss {steps[-1][3]}, eta {steps[-1][4]}" if steps else last
    if now != last:
        log.info("crossfit: %s: %s", name, now)
    return offset + end, now


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def train_in_turn(configs: list[RunConfig], paths: list[Path], again: str = AGAIN,
                  note: str = "") -> list[dict[str, Any]]:
    """Train fold i of ``configs`` into ``paths[i]``, one after another in this process (on Ray, one start for
    them all). A fold that fails does not stop the others, as side by side, and the error names every fold that
    failed (:func:`raise_failed`)."""
    done, failed = [], {}
    # only the runs left to train share a Ray: a cross-fit run again over finished folds (to test them again, with
    # another analysis.face_choice) started one for nothing (a minute on a loaded machine)
    with shared_ray(configs[0], runs=sum(not _finished(cfg, path) for cfg, path in zip(configs, paths))):
        for i, (cfg, path) in enumerate(zip(configs, paths)):
            log.info("crossfit: run %d of %d -> %s", i + 1, len(configs), path)
            try:
                done.append(train_fold(cfg, path))
            except Exception as err:   # (not KeyboardInterrupt: a stop stops every fold)
                failed[i] = fold_error(err)
                log.error("crossfit: %s failed: %s", path, failed[i].message())
    raise_failed(failed, paths, logs=False, again=again, note=note)
    return done


# put after the message of a fold that refused its settings (a ConfigError), whose advice (`--workers N`,
# `--set K=V`) is a new run's
REFUSED = "in a new --out: the folds trained in this one keep their settings and refuse others"


class FoldFailure(NamedTuple):
    """Why a fold failed, in words, and whether it ``refused`` its settings (a ConfigError: the same cross-fit run
    again is refused the same way, and its advice, ``--workers N`` or ``--set K=V``, is a new run's)."""
    what: str
    refused: bool = False

    def message(self) -> str:
        """``what``, and for a refusal :data:`REFUSED`."""
        return self.what + (f" [{REFUSED}]" if self.refused else "")


def fold_error(err: Exception) -> FoldFailure:
    """A fold's failure as :func:`raise_failed` names it; a refusal of its settings (such as "use at most 19
    (--workers 19)", which a cross-fit run again so would have every fold trained refuse, their cluster.workers
    differing) marked ``refused``."""
    return FoldFailure(f"{type(err).__name__}: {err}", refused=isinstance(err, ConfigError))


def raise_failed(failed: dict[int, FoldFailure], paths: list[Path], logs: bool, again: str = AGAIN,
                 note: str = "") -> None:
    """RunError naming every failed fold run (its folder, its error, and with ``logs`` its output log), then
    ``again`` (the words to go on) and ``note`` (said once, after the clause they start, so that it does not cut
    the clause in two, "again (without --out ...) to train only those")."""
    if not failed:
        return
    lines = "; ".join(f"{paths[i]}: {what.message()}" + (f" (see {output_log(paths[i])})" if logs else "")
                      for i, what in sorted(failed.items()))
    refused = any(what.refused for what in failed.values())
    raise RunError(f"{len(failed)} of {len(paths)} fold runs failed, the others are kept ({lines}); {again} "
                   f"to train only those{note}" + (", but a fold that refused its settings refuses them again: "
                                            "a cross-fit with changed ones goes in a new --out" if refused else ""))


def _finished(cfg: RunConfig, path: Path) -> bool:
    """Whether ``path`` holds ``cfg``'s run trained to its end (what :func:`train_kept` keeps as it is)."""
    run = check_same_run(cfg, path)
    return run is not None and run.finished(cfg.train.steps)


STOP_SECONDS = 120   # how long a stopped cross-fit waits for a fold process to save its checkpoint before killing it


def _stop(processes: list[Any]) -> None:
    """Stop the fold processes of a stopped cross-fit: SIGTERM (they ignore SIGINT), each then saves its
    checkpoint; one that has not ended after :data:`STOP_SECONDS` is killed."""
    processes = [process for process in processes if process.pid is not None]   # (one stopped before it started)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()


def repeat_command(config: str, overrides: list[Override], folds: int, jobs: int, control: str, out: Path) -> str:
    """The ``downpour crossfit`` command that repeats a cross-fit (crossfit.json's ``command``, shell-quoted): run in
    its folder, it keeps every fold and tests them again; with another ``--out``, it trains them as they were."""
    flags = [f"--config {pasted(config)}", as_typed(overrides), f"--folds {folds}",
             f"--jobs {jobs}" if jobs > 1 else "", f"--control {control}", f"--out {pasted(out)}"]
    return " ".join(["downpour crossfit", *filter(None, flags)])


def run_crossfit(config: str, overrides: list[Override], out: str | Path, folds: int = 5, jobs: int = 1,
                 control: str | None = None, again: str = AGAIN, note: str = "") -> dict[str, Any]:
    """Train every fold of ``config`` into ``out`` (``jobs`` at a time, each in its own process), and
    with ``control="no-faces"`` (by default where the config sets ``analysis.no_faces_twin``) each
    fold's no-faces twin into ``out/fold-i/no-faces``; pool the face test, write ``out/crossfit.json``. A failed
    or stopped fold's error says ``again`` goes on (the command's words), and ``note`` once after the last."""
    from downpour.analysis.crossfit import crossfit_controls
    from downpour.analysis.face_controls import View
    from downpour.analysis.options import no_faces_network, open_run, run_preprocess
    from downpour.analysis.run import random_twin
    from downpour.analysis.units import check_layer

    if not 2 <= folds <= 100:
        raise ConfigError(f"--folds must be in [2, 100] (lfw_subset has 100 faces), got {folds}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if control is not None and control not in CROSSFIT_CONTROLS:
        raise ConfigError(f"--control must be one of {', '.join(CROSSFIT_CONTROLS)}, got {control!r}")
    jobs = min(jobs, folds)
    out = folder_to_write(Path(out), "the cross-fit's folder")
    if (out / "config.toml").is_file():          # (else its folds and crossfit.json go inside that run's folder)
        raise RunExistsError(f"{str(out)!r} holds a run (config.toml), not a cross-fit: a cross-fit's folder holds "
                             "its fold runs; pick another --out")
    check_crossfit_folder(out, folds)
    given = load_config(config, overrides)
    # a twin asked for with --set is refused where there is none to train, as `downpour train` refuses it (not
    # dropped unsaid), and so is one --control contradicts
    asked = [value for path, value in map(parse_override, overrides) if ".".join(path) == "analysis.no_faces_twin"]
    if asked and control is not None and bool(asked[-1]) != (control == "no-faces"):
        raise ConfigError(f"--control {control} and --set analysis.no_faces_twin={str(asked[-1]).lower()} both say "
                          "whether each fold has its no-faces twin, and disagree: give one")
    if asked and asked[-1]:
        no_faces_config(given)
    # the default pairs each fold with its twin where the config asks for one and the folds see faces
    control = control or ("no-faces" if given.analysis.no_faces_twin and given.data.trains_on_faces() else "none")
    twins = control == "no-faces"
    # (crossfit.json records the overrides as given: its page says these two in words, from the resolved config)
    settled = [*overrides, *parallel_threads(given, jobs), ("analysis.no_faces_twin", twins)]
    configs = [fold_config(config, settled, i, folds) for i in range(folds)]   # every config checked first
    d = configs[0].data     # refused here, before any training: the K folds would hold out nothing from it, train the
    # same network K times (bit for bit), and pool a face test of them as if each were its own
    if not d.trains_on_lfw():   # (the no-faces twin's rule, trains_on_faces, is this and data.train_faces != 0)
        raise ConfigError(f"--config {config}: its training data hold no lfw image (data.source = {d.source!r}"
                          f"{f', data.faces_fraction = 0' if d.source in FACE_SOURCES else ''}), and cross-fitting holds "
                          f"out each fold's lfw images from its training: its {folds} folds would train the same network "
                          f"{folds} times; cross-fit a config trained on lfw (data.source = 'faces' or 'natural+faces'), "
                          "or test this one with `downpour train`")
    paths = [out / f"fold-{i}" for i in range(folds)]
    if twins:
        configs += [no_faces_config(cfg) for cfg in configs]
        paths += [RunDir(path).no_faces_twin for path in paths]
    for cfg, path in zip(configs, paths):   # another run, or other files, in any fold's folder: said before any training
        if check_same_run(cfg, path) is None and path.exists():
            RunDir.check_new(path)
    log.info("crossfit: %d folds of %r%s -> %s", folds, config, ", each with its no-faces twin" if twins else "", out)
    with crossfitting(out):     # (the same command run again beside it is refused)
        started = time.time()
        trained = (train_in_turn(configs, paths, again, note) if jobs == 1
                   else train_in_parallel(configs, paths, jobs, again, note))
        training_seconds = time.time() - started
        with testing(out, paths):    # the trained folds (and twins), held while the pooled test reads them
            views, layer = [], None
            for i, cfg in enumerate(configs[:folds]):
                run, model = open_run(paths[i])
                layer = check_layer(model, cfg.analysis.layer)
                no_faces = no_faces_network(str(paths[folds + i]), cfg, layer) if twins else None
                views.append(View(model, random_twin(run, cfg.seed + 1), tuple(run.read_json("model.json")["input_shape"]),
                                  run_preprocess(run), no_faces))
            a = configs[0].analysis
            others = tuple(n for n in views[0].model.feature_layers() if n != layer)
            result = crossfit_controls(views, layer=layer, other_layers=others, n_random_filters=a.random_filters,
                                       seed=configs[0].seed, replicates=a.bootstrap, other_replicates=min(a.bootstrap, 500),
                                       control_draws=a.control_draws, choice=a.face_choice)
        # as fold 0 was trained, not as this command would train it: a fold kept from an earlier command keeps the
        # train.threads it trained with (a resume may change them, and --jobs sets them), and that is what repeats it
        config_record = config_to_dict(RunDir.open(paths[0]).config)
        config_record["data"].pop("lfw_heldout")
        record = {"config": config, "command": repeat_command(config, overrides, folds, jobs, control, out),
                  "overrides": [list(o) if isinstance(o, tuple) else o for o in overrides],
                  "resolved": config_record, "folds": folds, "runs": trained[:folds], "control": control,
                  **({"no_faces_runs": trained[folds:]} if twins else {}),
                  "training_seconds": round(training_seconds, 1),
                  "test_seconds": round(time.time() - started - training_seconds, 1),
                  **result}
        replace_text(out / "crossfit.json", json.dumps(record, indent=1))   # (a kill mid-write leaves the old one)
    return record
