"""The checks of a resume, run before it writes anything: the run in its folder and the config it goes on with
(:func:`resume_config`: the run started, its config.toml unedited, its checkpoints kept, no override that makes it
another run), what it refuses at its folder (:func:`check_resumable`; --dry-run's :func:`check_folder`). A new
run's checks are :mod:`~downpour.preflight`'s.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from downpour.analysis.options import has_analysis, next_step
from downpour._names import pasted
from downpour.config import ConfigError, Override, RunConfig, as_typed
from downpour.config_diff import RESUMABLE, config_differences
from downpour.data.stream import list_items
from downpour.models.registry import resolve
from downpour.train.config_record import recorded_differences, splits_steps
from downpour.train.json_digest import digest_problem
from downpour.train.lock import check_not_training
from downpour.train.refit import check_classes, saved_fit
from downpour.train.run_begin import last_step, saving_words
from downpour.train.rundir import CONFIG_KEY, NotARunError, RunDir

log = logging.getLogger("downpour.preflight")   # the records keep the logger they had before the split


def start_again(path: str | Path) -> str:
    """The command that trains the run in ``path``, one that never started (``--resume`` refuses it), in its folder."""
    return f"downpour train --config {pasted(Path(path) / 'config.toml')} --out {pasted(path)}"


def resume_config(path: str, overrides: list[Override],
                  flags: Callable[[RunConfig], None] | None = None) -> tuple[RunDir, RunConfig]:
    """The run in ``path`` and its config with ``overrides``, as ``--resume`` takes them: NotARunError
    for a run that never started, ConfigError for an override that would make it another run. ``flags``: the
    command line's check of what the run never reads, first (a Sandblaster run's --set train.lr is not told "the run
    was trained with 0.03; start a new run (--config RUN/config.toml --set ...)", which refuses it too)."""
    run = RunDir.open(path)
    check_not_training(run.path)   # (a live run without a checkpoint yet would be taken for one stopped before it)
    if run.never_started():   # e.g. its data failed, or its output's reader left before the first step
        raise NotARunError(f"{path!r} holds no checkpoint, model or metrics row: it never started training, or was "
                           "stopped before its first row and checkpoint (nothing of it was kept); nothing to resume. "
                           f"Start it again with `{start_again(path)}`, which takes the folder over")
    check_unedited(run)
    cfg = same_data_path(run.config, run.config_with(overrides))
    if flags is not None:
        flags(cfg)
    check_resume(run.config, cfg, run_path=run.path, overrides=overrides)
    check_checkpoints_kept(run, cfg)
    return run, cfg


def same_data_path(saved: RunConfig, cfg: RunConfig) -> RunConfig:
    """``cfg`` with the run's own ``data.path`` where a resume's ``--set data.path`` names that folder in other words
    (relative, a trailing slash): config.toml records it absolute, and the command that began the run, given again
    with ``--resume``, is not refused as "cannot resume with data.path = 'imgs': the run was trained with
    '/home/me/imgs'"."""
    was, now = saved.data.path, cfg.data.path
    if now == was or not now or not was or os.path.abspath(now) != os.path.abspath(was):
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=was))


def check_checkpoints_kept(run: RunDir, cfg: RunConfig) -> None:
    """NotARunError when the run's checkpoints/ folder, what a resume goes on from, is gone (moved or deleted):
    what happened, what of the run is left and how to train it again, not only "checkpoint file
    'RUN/checkpoints/local.safetensors' is missing". Not for a run that stopped before its first
    checkpoint (trained again from step 0), nor for a finished run whose no-faces twin is all that is left (one it
    trains: :meth:`RunConfig.trains_twin`, not any ``no_faces_twin = true``: a run with no lfw face has its twin
    turned off). A finished run it refuses as finished, with what the user may have meant (analyse or report it;
    more --steps, which needs the checkpoints), not told to put the folder back "to resume" a run with nothing left
    to train."""
    if run.has_checkpoint() or run.stopped_unsaved() or (cfg.trains_twin() and run.finished(cfg.train.steps)):
        return
    step, why = run.saved_model()
    where = "holds no whole checkpoint" if run.checkpoints.is_dir() else "is missing (moved or deleted)"
    gone = run.checkpoints_lost() or f"its folder {str(run.checkpoints)!r} {where}, and a resume goes on from the checkpoint there"
    again = (f"To train the run again from step 0: `downpour train --config {pasted(run.path / 'config.toml')} --out NEW` (its own "
             "config, into a new folder)")
    if step is not None and run.finished(cfg.train.steps):    # nothing to resume
        stop = run.stopped_for_good(cfg.train.steps)
        how = (f"its L-BFGS stopped for good at iteration {step} ({stop['reason']})" if stop is not None else
               f"its model.safetensors is at step {step} of train.steps = {cfg.train.steps}")
        more = ("more steps would not train it on" if stop is not None else
                "more steps under its greedy schedule are a new run (the command below, with --steps M)"
                if cfg.train.schedule == "greedy" else
                f"`downpour train --resume {pasted(run.path)} --steps M` (M above {cfg.train.steps}) would train it on, from "
                f"its checkpoint: {gone}; put it back first")
        shows = (f"`downpour analyze {pasted(run.path)}` analyses it and `downpour report {pasted(run.path)}` shows "
                 f"its report" if has_analysis(cfg) else next_step(run))   # (teacher-student: its training's report)
        raise NotARunError(f"{str(run.path)!r} is finished ({how}): there is nothing to resume. {shows}; {more}. "
                           f"{again}")
    left = (f"its model.safetensors (step {step}) is there: {next_step(run)}, but training "
            "cannot go on from the weights alone (the optimiser's state and the data's position are in the checkpoint)"
            if step is not None else
            "its model.safetensors is missing too: nothing of its training is left to go on from"
            if not (run.path / "model.safetensors").is_file() else   # (there, failing its check: it said "missing")
            f"its model is not whole either ({why}): copy a whole one back to "
            f"{'analyse' if has_analysis(cfg) else 'report'} it; training cannot go on from it")
    raise NotARunError(f"cannot resume {str(run.path)!r}: {gone}; put it back to resume. {left[0].upper()}{left[1:]}. "
                       f"{again}")


def check_unedited(run: RunDir) -> None:
    """ConfigError when the run's config.toml says another value than the one its checkpoint's weights were
    trained with (the JSON's ``config``), for a key a resume may not change: the file was edited by hand, and the
    resume would go on under a config that describes neither what it trained nor what it trains."""
    for meta_path in sorted(run.checkpoints.glob("*.json")) if run.checkpoints.is_dir() else []:
        try:
            meta = json.loads(meta_path.read_text())
            record = meta.get(CONFIG_KEY) if digest_problem(meta, meta_path.with_suffix(".safetensors")) is None else None
        except (OSError, ValueError, AttributeError):
            continue                            # (a damaged checkpoint: the resume's load names it)
        # (one edited by hand, not its digest, too: its config would be told as config.toml's edit, to be copied back)
        if not isinstance(record, dict):
            continue                            # (a run from before 2026-12-04 records none)
        differences = recorded_differences(record, run.config)   # (model.name first: config_record.name_first)
        if differences and differences[0][0] == "model.name":
            key, was, now = differences[0]
            # (not "put 0.0 back" for cluster.lr = 0.02 against 0.0, an RBM's checkpoint in a CNN's run, which would
            # only lead to the next key: the checkpoint trains another network)
            raise ConfigError(f"{str(meta_path)!r} is a checkpoint of model {was!r}, but "
                              f"{str(run.path / 'config.toml')!r} trains {now!r}: one of the two is another run's "
                              f"(a checkpoint copied in, or the model edited in config.toml). Put the run's own "
                              f"checkpoints/ and config.toml back to resume it, or train {now!r} anew (downpour train "
                              f"--config {pasted(run.path / 'config.toml')} --out NEW)", key=key)
        for key, was, now in differences:
            raise ConfigError(f"{str(run.path / 'config.toml')!r} has {key} = {now!r}, but the run's checkpoint "
                              f"({str(meta_path)!r}) was trained with {was!r}: the file was edited since. Put {was!r} "
                              f"back to resume the run, or train a new one from the edited file (downpour train "
                              f"--config {pasted(run.path / 'config.toml')} --out NEW)", key=key)


def unresumable(saved: RunConfig, new: RunConfig) -> list[tuple[str, Any, Any]]:
    """(key, was, now) of every difference a resume may not make (not in RESUMABLE). Both are compared
    resolved, so a value written in an older form (``model.filter_norm = 1.0`` for ``[1.0]``) is the same run."""
    return [(key, was, now) for key, was, now in config_differences(resolve(saved), resolve(new)) if key not in RESUMABLE
            and not (key == "data.jpeg_decode" and was == 0)]   # naming the rule a run's records do not (0: unknown)


def check_resume(saved: RunConfig, new: RunConfig, changed: list[tuple[str, Any, Any]] | None = None,
                 run_path: str | Path = "RUN", overrides: list[Override] | tuple[Override, ...] = ()) -> None:
    """Refuse overrides on ``--resume`` that would change what the run is, naming the key (``changed``:
    :func:`unresumable`'s answer, when the caller has it); the new run they suggest reads ``run_path``'s config.toml
    (the run's own folder, not a placeholder ``RUN/config.toml``) with the command line's ``overrides`` as typed,
    shell-quoted (not a literal ``--set ...``)."""
    config, typed = pasted(Path(run_path) / "config.toml"), as_typed(overrides)
    for key, was, now in unresumable(saved, new) if changed is None else changed:
        raise ConfigError(f"cannot resume with {key} = {now!r}: the run was trained with {was!r}; start a new run "
                          f"(downpour train --config {config} {typed or '--set ...'} --out NEW) instead")
    if saved.train.steps != new.train.steps and splits_steps(new):
        # (it said "for more steps" to a --steps below the run's too)
        raise ConfigError(f"cannot change train.steps ({saved.train.steps} -> {new.train.steps}) when resuming a greedy "
                          f"run: its split of the steps between stages depends on train.steps; to train it for "
                          f"{new.train.steps} steps start a new run (downpour train --config {config} "
                          f"{typed or f'--steps {new.train.steps}'} --out NEW)")


def check_folder(out: str | None, resume: RunDir | None, cfg: RunConfig, twin: bool) -> None:
    """What the run would refuse at its folder, found without writing anything (``--dry-run``): ``--out``
    a file or a folder holding a run (:meth:`RunDir.check_new`); what a resume refuses (:func:`check_resumable`), and
    its warning where it would write the model from its last checkpoint (said by the dry run as by the run)."""
    if out:
        RunDir.check_new(out)
    if resume is not None and (unsaved := check_resumable(resume, cfg, twin)) is not None:
        log.warning("%s", saving_words(unsaved, dry_run=True))


def check_resumable(resume: RunDir, cfg: RunConfig, twin: bool) -> str | None:
    """What a resume of ``resume`` refuses at its folder, found without writing anything: nothing left to train
    (:meth:`RunDir.begin`), unless only its no-faces ``twin`` is left or its model is written from its last checkpoint
    (:meth:`RunDir.unsaved_at_end`: the words of the runner's warning then, else None); a labelled folder whose
    classes changed (``check_classes``). ``downpour train --resume`` asks it before it says it resumes, so a finished
    run is refused before any "resuming RUN" is printed or "resuming RUN at step N" logged."""
    saved_fit(resume.path)          # (a preprocess.json that does not verify refuses the resume: named now)
    if cfg.data.source == "folder" and cfg.data.labels:   # listed, nothing decoded
        check_classes((list_items(cfg.data).info or {}).get("classes"), resume.path)
    if not twin and (stop := resume.stopped_for_good(cfg.train.steps)) is not None:   # (as the runner)
        from downpour.sandblaster.run import stopped_words
        raise ConfigError(stopped_words(resume, stop["iteration"], stop["message"], resume.samples_batches()))
    if cfg.cluster.algorithm == "sandblaster":     # (as the runner: it writes the model)
        from downpour.sandblaster.run import stopped_at, unsaved_stop
        if (at := unsaved_stop(resume, cfg.train.steps)) is not None:
            return resume.unsaved_words(stopped_at(at))
    start = resume.reached()
    if start is None or start < cfg.train.steps or (twin and resume.finished(cfg.train.steps)):
        return None
    if not resume.ends_unsaved(cfg, start):
        resume.refuse_reached(cfg, start)
    return resume.unsaved_words(last_step(start))
