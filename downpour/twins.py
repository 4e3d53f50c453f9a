"""A run's no-faces twin: the same recipe, seed and split trained without lfw's training faces.

    twin = no_faces_config(cfg)                  # checked once; refused by name where the data holds no faces
    summary = train_with_twin(cfg, run, twin)    # the run, then its twin into run.no_faces_twin (RUN/no-faces)

A run with ``analysis.no_faces_twin = true`` (the main job's default) gets its twin right after its
own training, and its face test scores the twin's unit, chosen the same way, as "the no-faces
network", paired with the learned unit on the same images: is the face unit learned from the faces,
or would the same recipe on photographs alone give one as good (docs/analysis.md)?
``downpour crossfit --control no-faces`` gives every fold one.

:func:`train_kept` trains a config into a directory that may already hold it: a finished run is kept,
a started one resumed, one that stopped before its first checkpoint trained again, and a different
run there is an error naming the key that differs. It holds the run folder's lock while it does
(:mod:`downpour.train.lock`): a run another process trains now is refused, naming it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterator

from downpour._names import pasted
from downpour.config import ConfigError, RunConfig
from downpour.data.opened import Opened
from downpour.errors import CheckpointError
from downpour.train.lock import training
from downpour.train.rundir import RunDir, RunExistsError

log = logging.getLogger(__name__)


def no_faces_config(cfg: RunConfig) -> RunConfig:
    """``cfg``'s twin, resolved and checked: ``data.train_faces = 0`` (lfw's non-faces stay in the mix),
    no report and no twin of its own. A source without lfw faces is refused, naming
    ``analysis.no_faces_twin``, and so is a supervised model (its twin would train on one class)."""
    from downpour.models.registry import model_entry
    from downpour.preflight import check_run_config

    if not cfg.data.trains_on_faces():   # its twin would be the run itself, trained twice
        d = cfg.data
        raise ConfigError(f"analysis.no_faces_twin: this run trains on no lfw face (data.source = {d.source!r}, "
                          f"data.train_faces = {d.train_faces}, data.faces_fraction = {d.faces_fraction:g}): there are "
                          "none to leave out, and its twin would be the run itself; set analysis.no_faces_twin = false "
                          "(a cross-fit: --control none)", key="analysis.no_faces_twin")
    if model_entry(cfg.model.name).family.supervised:   # its cost reads the labels: one class left, all non-face
        raise ConfigError(f"analysis.no_faces_twin: model {cfg.model.name!r} is supervised, trained on the face "
                          "labels; its twin, without a face (data.train_faces = 0), would have one class to learn, "
                          "non-face, and nothing of a face unit to compare (the run's classifier accuracy is its "
                          "held-out figure); set analysis.no_faces_twin = false (a cross-fit: --control none)",
                          key="analysis.no_faces_twin")
    twin = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_faces=0),
                               analysis=dataclasses.replace(cfg.analysis, report=False, no_faces_twin=False,
                                                            no_faces_run=""))
    try:
        return check_run_config(twin)
    except ConfigError as err:
        raise ConfigError(f"analysis.no_faces_twin: this run's twin trains with data.train_faces = 0, and {err}",
                          key="analysis.no_faces_twin") from None


def twin_config(cfg: RunConfig, asked: bool) -> tuple[RunConfig, RunConfig | None]:
    """(the run's config, its twin's checked config or None). A twin the config carries but the user
    did not ask for (``asked``: a ``--set analysis.no_faces_twin``), the main preset's, is turned off,
    and the log says so, when the run trains on no lfw face (your own images: none to leave out), or
    when no face test would score it (``analysis.dataset = "digits"``); one asked for is refused then
    (:func:`no_faces_config`; ``cli_flags.check_flags``)."""
    if not cfg.analysis.no_faces_twin:
        return cfg, None
    if not asked and not cfg.trains_twin():
        why = ("this run trains on no lfw face" if not cfg.data.trains_on_faces() else
               f"no face test scores it (analysis.dataset = {cfg.analysis.dataset!r}, positive = {cfg.analysis.positive})")
        log.info("no no-faces twin: %s (analysis.no_faces_twin turned off)", why)
        return dataclasses.replace(cfg, analysis=dataclasses.replace(cfg.analysis, no_faces_twin=False)), None
    return cfg, no_faces_config(cfg)


def finished_with_twin(cfg: RunConfig, run: RunDir, twin: RunConfig | None, resume: bool) -> tuple[bool, bool]:
    """(whether a resume of ``run`` finds it finished with a ``twin`` to train, whether that twin is finished too:
    nothing trains); RunExistsError for a twin of another recipe in its folder."""
    finished = resume and twin is not None and run.finished(cfg.train.steps)
    done = check_same_run(twin, run.no_faces_twin) if finished else None   # (a twin of another recipe there: named)
    return finished, done is not None and done.finished(twin.train.steps)


def train_with_twin(cfg: RunConfig, run: RunDir, twin: RunConfig | None, resume: bool = False,
                    opened: Opened | None = None) -> dict[str, Any]:
    """``runners.train``, then, given its checked config (:func:`no_faces_config`), the twin (its
    summary under ``no_faces_twin``). A resume of a run that finished trains only what its twin has left.
    ``opened``: the run's data read already (the twin reads its own)."""
    from downpour.runners import train

    finished, twin_done = finished_with_twin(cfg, run, twin, resume)
    # (both finished, nothing trains: a Ray run starts no Ray for them, and the log does not say "training the
    # no-faces twin" before "finished, kept")
    with shared_ray(cfg, runs=0 if twin_done else 1 if twin is None else 2):
        if finished:
            summary = kept(run, cfg)
            if not twin_done:
                log.info("%s: finished at step %d; only its no-faces twin is left", run.path, cfg.train.steps)
                run.drop_analysis("they have no row for the no-faces twin trained now")   # it will score the twin
        else:
            summary = train(cfg, run, resume=resume, opened=opened)
        if twin is not None:
            if not twin_done:
                log.info("%s: training the no-faces twin (data.train_faces = 0) -> %s", run.path, run.no_faces_twin)
            try:
                summary["no_faces_twin"] = train_kept(twin, run.no_faces_twin)
            except KeyboardInterrupt:   # (and SIGTERM) the twin's own runner named only its folder, or, stopped
                # in its set-up, nothing: `--resume RUN/no-faces` trains the twin but skips the run's analysis
                log.warning("%s: stopped in its no-faces twin; `downpour train --resume %s` finishes the twin and "
                            "goes on as this command would have", run.path, pasted(run.path))
                raise
    return summary


def search_failures(summary: dict[str, Any]) -> list[str]:
    """One line per L-BFGS line search that failed for real in the run of ``summary`` (:func:`train_with_twin`'s,
    or a cross-fit fold's) or in its twin: "RUN: L-BFGS failed at iteration N (greedy stage S): why"; [] for a
    run that is not Sandblaster's, or did not fail."""
    from downpour.sandblaster.record import failed_searches

    runs = [summary, *([summary["no_faces_twin"]] if isinstance(summary.get("no_faces_twin"), dict) else [])]
    return [_failure_line(run, stop) for run in runs for stop in failed_searches(run)]


def _failure_line(run: dict[str, Any], stop: dict[str, Any]) -> str:
    stage = f" (greedy stage {stop['stage']})" if stop.get("stage") is not None else ""
    return f"{run['run']}: L-BFGS failed at iteration {stop['iteration']}{stage}: {stop['message']}"


def failed(failures: list[str], kept: list[str] = ()) -> int:
    """1 when an L-BFGS line search failed for real (``failures``: :func:`search_failures`' lines, of a run and its
    twin, or of a cross-fit's folds), each logged as an error; else 0. The model is saved all the same (the last
    accepted point), but a run that did not optimise is no success to a script that checks the exit status (a
    WARNING scrolls past). ``kept``: those of runs kept from an earlier command (:func:`recorded_failures`), logged
    as warnings: that command exited 1 for them, as `downpour train` keeping a finished run exits 0."""
    for line in kept:
        log.warning("%s (kept as an earlier command trained it, which exited 1)", line)
    for line in failures:
        log.error("%s; the model saved is its last accepted point", line)
    return 1 if failures else 0


def shared_ray(cfg: RunConfig, runs: int) -> contextlib.AbstractContextManager:
    """On the Ray runner, one Ray for ``runs`` runs of ``cfg``'s cluster trained one after another (a run
    and its twin, a cross-fit's folds): its start-up and shutdown cost seconds each; and the actors a run that
    ended well leaves are kept for the next one, rebuilt in place (:mod:`downpour.ps.keeping_on_ray`: each is a
    process that imported torch). Nothing to share for one run, or on another runner."""
    if cfg.cluster.runner != "ray" or runs < 2:
        return contextlib.nullcontext()
    from downpour.ps.connect_on_ray import held
    from downpour.ps.keeping_on_ray import keeping

    @contextlib.contextmanager
    def one_ray() -> Iterator[None]:   # (entered at the caller's `with`, not here: Ray is joined there)
        with held(cfg.cluster.address), keeping():   # the keeping left first: what it kept is killed before Ray goes
            yield

    return one_ray()


def kept(run: RunDir, cfg: RunConfig) -> dict[str, Any]:
    """A finished run taken as it is: its config saved again with ``cfg``'s analysis (a twin added
    later is then scored), its training as it was trained (``check_resume`` lets train.threads and the
    reporting keys differ: the saved ones are what reproduces its model), and the summary of its
    training read back (``seconds``: the training time of its last metrics row): keys a trained summary has, and
    ``kept``; no ``line_search_failures``, a key no trained summary has (what a cross-fit reads of a kept fold's line
    searches comes from :func:`recorded_failures`). Its
    analysis is dropped when ``cfg`` changes how it is made (any analysis key but ``report``): config.toml would name
    settings the analysis was not made with."""
    from downpour.analysis.options import absolute_paths

    # (its folders as cfg's are: a run from before 2026-12-05 records analysis.dataset = "concept", cfg the same
    # folder absolute; compared as written, its analysis would be dropped for settings nothing changed)
    saved = absolute_paths(run.config.analysis)
    if dataclasses.replace(saved, report=cfg.analysis.report) != cfg.analysis:
        run.drop_analysis("they were made with the analysis settings this command changes")
    run.save_config(dataclasses.replace(run.config, analysis=cfg.analysis))
    rows = [row for row in run.metrics() if "time" in row]
    return {"run": str(run.path), "kept": True, "seconds": rows[-1]["time"] if rows else None,
            "final_loss": run.last_loss()}


def recorded_failures(path: str | Path) -> list[str]:
    """:func:`search_failures`' lines for every line search that failed for real in the training of the run kept in
    ``path``, as its sandblaster.json records them (said, and counted in the exit status, by the command that trained
    it); [] for a run that is not Sandblaster's."""
    from downpour.sandblaster.record import failed_searches

    run = RunDir.open(path)
    if not (run.path / "sandblaster.json").is_file():
        return []
    record = {**run.read_json("sandblaster.json"), "resumed_from": 0, "run": str(run.path)}
    return [_failure_line(record, stop) for stop in failed_searches(record)]


def check_same_run(cfg: RunConfig, path: Path) -> RunDir | None:
    """The run ``cfg`` started in ``path`` (None: nothing there, or a run that never started);
    RunExistsError naming the key that differs when it is a run of another config. What
    :func:`train_kept` checks first, for a caller that checks every run before training any."""
    from downpour.resume_checks import unresumable
    from downpour.train.config_record import splits_steps

    if not (path / "config.toml").is_file() or (run := RunDir.open(path)).never_started():
        return None
    changed = unresumable(run.config, cfg)
    if changed:          # every key, not the first (one the runner never reads could be the first)
        raise RunExistsError(f"{str(path)!r} holds another run: its config differs in "
                             f"{', '.join(key for key, _, _ in changed)}; pick another --out, or give the config it "
                             "was trained with")
    try:
        reached = run.reached()
    except CheckpointError as err:
        if not run.finished(cfg.train.steps):   # (its checkpoint is what a resume starts from)
            raise CheckpointError(f"{err}: {str(path)!r} cannot resume from it; remove {pasted(run.checkpoints)} and "
                                  "run the same command again to train it again from its start") from None
        reached = None     # finished, its model whole: its checkpoint, read only to resume, stopped the keeping
    if reached is not None and reached > cfg.train.steps:   # found now, not when its turn to resume comes
        raise RunExistsError(f"{str(path)!r} holds a run trained to step {reached}, past train.steps = {cfg.train.steps}; "
                             "give its steps (or more), or pick another --out")
    if run.config.train.steps != cfg.train.steps and splits_steps(cfg):   # (as a resume refuses: a greedy run's)
        # its own words, not check_resume's "start a new run (downpour train --config FOLD/config.toml ...)": the
        # command typed was a cross-fit's (or the run's whose twin this is), which trains these runs itself
        raise RunExistsError(f"{str(path)!r} holds another run: its config differs in train.steps "
                             f"({run.config.train.steps} -> {cfg.train.steps}; a greedy run splits its steps between "
                             f"its stages by it); give its train.steps = {run.config.train.steps} (--steps "
                             f"{run.config.train.steps}), or pick another --out")
    return run


def train_kept(cfg: RunConfig, path: Path) -> dict[str, Any]:
    """Train ``cfg`` into ``path``: skipped when a run with the same config finished there, resumed
    from its checkpoint when one started there (started over when it stopped before its first
    checkpoint); a different run there is an error naming the key that differs. NotARunError naming
    ``path`` when another process trains it now (else a cross-fit run again beside a running one would resume
    its fold there too, or take one without a checkpoint yet for stopped, remove its metrics and train it again
    from step 0 beside it)."""
    with training(path):   # (made empty first: a new run is locked as it starts)
        return _train_kept(cfg, path)


def _train_kept(cfg: RunConfig, path: Path) -> dict[str, Any]:
    from downpour.runners import train

    run = check_same_run(cfg, path)
    if run is not None:
        if run.finished(cfg.train.steps):
            log.info("%s: finished, kept", path)
            return kept(run, cfg)
        if run.has_checkpoint():
            log.info("%s: resuming", path)
            return train(cfg, run, resume=True)
        log.warning("%s: stopped before its first checkpoint; training it again", path)
        run.discard_training()
    # trained again from step 0 keeps its workers and data.size, as a `--resume` does (RunDir.again): its runner's
    # refusal of its data is said as a resume's (a cross-fit's fold is not told it as a new run's), and
    # its folder, its own, is taken with the user's files in it
    return train(cfg, RunDir.create(path, cfg, again=run is not None))
