"""The run directory every runner writes and every analysis reads (see docs/architecture.md)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from downpour._names import pasted
from downpour.config import ConfigError, Override, RunConfig, config_to_toml, load_config
from downpour.data.patches import DATA_JSON
from downpour.data.resumed import decode_began
from downpour.errors import DownpourError, NotARunError
from downpour.models.registry import resolve
from downpour.train.environment import FILE as ENVIRONMENT
from downpour.train.folders import RunExistsError, folder_to_write, make_folder
from downpour.train.metrics_file import read_rows, truncate_rows
from downpour.train.model_file import replace_text, temp_of
from downpour.train.not_a_run import nearest_run, study_folder
from downpour.train.recorded import config_fills, has_key, unread_resets
from downpour.train.run_begin import CONFIG_KEY, RunBegin
from downpour.train.run_model import RunModel
from downpour.train.run_progress import RunProgress

__all__ = ["CONFIG_KEY", "NotARunError", "RunDir", "RunExistsError"]   # (NotARunError lives in errors, RunExistsError in folders)

log = logging.getLogger(__name__)


class RunDir(RunBegin, RunModel, RunProgress):
    """A run's folder: made new (:meth:`create`) or opened (:meth:`open`), its config and its files; the model it
    holds (:class:`~downpour.train.run_model.RunModel`), the start of a run or a resume
    (:class:`~downpour.train.run_begin.RunBegin`) and where its training stands
    (:class:`~downpour.train.run_progress.RunProgress`) are methods of it too."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.trained_with: dict[str, Any] | None = None   # the config begin() saved: what checkpoints record
        # trained again from step 0 by a `--resume` (stopped before its first checkpoint): the runners' refusal of its
        # data is said as a resume's, which keeps its workers and data.size (not as a new run's)
        self.again = False

    @classmethod
    def create(cls, path: str | Path, cfg: RunConfig, again: bool = False) -> "RunDir":
        """A new run directory holding the fully resolved ``config.toml``; refuses to overwrite a run,
        or to write into a folder that holds anything downpour did not put there.

        A directory whose run never got going (a config.toml and nothing trained: no checkpoint, no
        model, no metrics row, e.g. the data failed to load) is taken over, so fixing the cause and
        running the same command again works. ``again``: the run's own folder, its training discarded
        (:meth:`discard_training`) to train it again from step 0: files the user put there since stay, as a resume
        keeps them (not refused as "not an empty folder", its rows already discarded); its runner's
        refusals are then said as a resume's (:attr:`again`)."""
        check_is_config(cfg, "RunDir.create")   # before the folder is made (else a name makes it, then fails inside)
        run = cls(path) if again else cls.check_new(path)
        if (run.path / "config.toml").exists():
            (run.path / cls.METRICS).unlink(missing_ok=True)   # opened before the first step: no row in it
            # what the failed start's data did (the fixed run's own follows)
            (run.path / DATA_JSON).unlink(missing_ok=True)
        # the failed start's record (a folder holding it alone too, its config.toml deleted): this start records its
        # own, not that one as its ``earlier``
        (run.path / ENVIRONMENT).unlink(missing_ok=True)
        make_folder(run.path, "the run folder")
        run.save_config(cfg)
        run.again = again
        return run

    @classmethod
    def check_new(cls, path: str | Path) -> "RunDir":
        """What :meth:`create` refuses (RunExistsError), found without writing anything (``--dry-run``)."""
        run = cls(path)
        taken_over = (run.path / "config.toml").exists()      # a run that never started: create takes it over
        if taken_over and not run.never_started():
            raise RunExistsError(f"{str(run.path)!r} already holds a run; {run._next_words()} or pick another --out")
        if run.path.exists():
            ours = (*cls.NEVER_STARTED, cls.TWIN, *((cls.METRICS, DATA_JSON) if taken_over else ()))   # (they go)
            others = sorted(p.name for p in run.path.iterdir() if p.name not in ours) if run.path.is_dir() else []
            if not run.path.is_dir() or others:
                shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
                raise RunExistsError(f"{str(run.path)!r} is not an empty folder ({shown or 'a file'}): a run is written "
                                     "only into a new or empty folder, never over files it did not make; pick another --out")
        folder_to_write(run.path, "the run folder")
        return run

    # what a run that never got going leaves behind (RunDir.begin writes the preprocessing too)
    NEVER_STARTED = ("config.toml", "preprocess.json", "preprocess.safetensors", ENVIRONMENT, "tb")

    # what training writes (and, after it, the analysis and the report)
    METRICS = "metrics.jsonl"
    # (sandblaster.json is written with the model: listed here, or a Sandblaster run trained again from step 0 would
    # carry its old one, which its folder's new run then refuses as a file downpour did not make)
    TRAINED = ("model.json", "model.safetensors", "checkpoints", METRICS, "staleness.json", "sandblaster.json")
    PARTIAL = "analysis.partial.json"   # a stopped analysis's finished parts (downpour.analysis.partial)
    STAGING = "figures.partial"         # a running analysis's figures, moved into figures/ with its analysis.json
    # of the model as it is: stale once it trains on (the partial file's temp file too, which a kill mid-write leaves;
    # and figures.partial/ a kill leaves, which a run trained again from step 0 would otherwise keep)
    ANALYSIS = ("figures", "analysis.json", PARTIAL, temp_of(Path(PARTIAL)).name, STAGING, "report.html")
    AFTER = ("cluster.json", *ANALYSIS)
    # everything training wrote, and what was made of its model after it: removed for the run to start over (its
    # TensorBoard events too: they would show twice)
    # (data.json: written too by a run that stopped before its first step, the files it skipped)
    WRITTEN = (*TRAINED, DATA_JSON, ENVIRONMENT, "tb", *AFTER)
    # a run of its own inside this one (analysis.no_faces_twin): it may be there before this run trains
    # (crossfit trains folds and twins side by side), and a run trained again keeps it (same recipe)
    TWIN = "no-faces"

    def _next_words(self) -> str:
        """What to do with this run instead of starting another over it: a finished one's `--resume` is refused,
        so a new run into its folder is not told "resume it with --resume"."""
        try:
            steps = self.config.train.steps          # (a twin left to train: its --resume trains it)
            done = self.finished(steps) and (not self.config.trains_twin()
                                             or RunDir(self.no_faces_twin).finished(steps))
        except DownpourError:     # (a damaged record: what --resume says of it is the user's next step)
            done = False
        return (f"it is finished: `downpour report {pasted(self.path)}` shows what it learned," if done else
                "resume it with --resume")

    def discard_training(self) -> None:
        """Remove what training, the analysis and the report wrote, keeping the config: the run can
        then start over (:meth:`create` takes it over). Files downpour did not write stay."""
        self._remove(self.WRITTEN)

    def _remove(self, names: tuple[str, ...]) -> list[str]:
        """Remove the files and folders ``names`` of this run that exist; returns those."""
        gone = [name for name in names if (self.path / name).exists()]
        for name in gone:
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return gone

    def drop_analysis(self, why: str) -> None:
        """The analysis and report describe a model that is about to change (a resume, a twin added): remove
        them, so ``downpour report`` analyses again instead of showing the old model's numbers as current."""
        gone = self._remove(self.ANALYSIS)
        if gone:
            log.info("%s: %s removed (%s; `downpour analyze %s` writes them again)", self.path, ", ".join(gone), why,
                     self.path)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        run = cls(path)
        inside = run.path.parent    # one of a run's own files or folders (a tab completion one level too deep)
        if run.path.exists() and not (run.path / "config.toml").is_file() and (inside / "config.toml").is_file():
            raise NotARunError(f"{str(run.path)!r} is {'a file' if run.path.is_file() else 'a folder'} of the run "
                               f"{str(inside)!r}, not a run; give {str(inside)!r}")
        if run.path.is_file():
            raise NotARunError(f"{str(run.path)!r} is a file, not a run directory")
        if not run.path.exists() and (inside / "config.toml").is_file():   # (`report runs/cat/analysis.json`, not yet there)
            if run.path == cls(inside).no_faces_twin:
                raise NotARunError(_no_twin(cls(inside)))   # (why it is missing, not just "give RUN")
            raise NotARunError(f"{str(run.path)!r} does not exist, and it would be inside the run {str(inside)!r}, "
                               f"not a run; give {str(inside)!r}")
        if not run.path.is_dir():
            raise NotARunError(f"{str(run.path)!r} does not exist{nearest_run(run.path)}")
        if not (run.path / "config.toml").is_file():
            if (run.path / "crossfit.json").is_file():    # (a cross-fit's folder: its runs are its fold-I)
                raise NotARunError(f"{str(run.path)!r} is a cross-fit's folder, not a run: its report is "
                                   f"crossfit.html, and each fold's run is {str(run.path / 'fold-I')!r}")
            if any((run.path / f"fold-{i}" / "config.toml").is_file() for i in range(2)):   # (one stopped before it)
                raise NotARunError(f"{str(run.path)!r} is a cross-fit's folder, not a run, stopped before its report: "
                                   f"each fold's run is {str(run.path / 'fold-I')!r}, and the same `downpour crossfit` "
                                   "command again finishes it")
            if (run.path / "cells.jsonl").is_file():    # (a study's folder: its cells are numbers, no run is kept)
                raise NotARunError(study_folder(run.path))
            raise NotARunError(f"{str(run.path)!r} is not a downpour run directory (no config.toml); "
                               "give the --out directory of a `downpour train` run")
        return run

    # --- configuration ------------------------------------------------------------------------
    @property
    def config(self) -> RunConfig:
        try:
            return self.config_with()
        except ConfigError as err:
            raise NotARunError(f"{str(self.path)!r}: its config.toml cannot be read: {err}") from None

    def config_with(self, overrides: list[Override] | tuple[Override, ...] = ()) -> RunConfig:
        """The run's config.toml with ``overrides`` (``--set``, flags) over it; keys the file lacks because
        the run predates them read as what their absence meant (:mod:`downpour.train.recorded`)."""
        path = self.path / "config.toml"
        if path.is_file() and not path.read_bytes().strip():   # (it would read as the defaults: cat-demo)
            raise NotARunError(f"{str(path)!r} is empty: the run's resolved config is lost (restore it from a copy)")
        return load_config(str(path), [*self.saved_reads(), *overrides])

    def saved_reads(self) -> list[Override]:
        """What reading the run's config.toml puts before any ``--set``: keys it lacks read as their absence meant,
        and model options refused after the run as read by nothing read as their defaults
        (:mod:`downpour.train.recorded`)."""
        path = self.path / "config.toml"
        fills = config_fills(path)
        saved = load_config(str(path), fills)
        if not has_key(path, "data", "jpeg_decode"):     # (written before 2026-12-05: the rule its start decoded by)
            fills.append(("data.jpeg_decode", decode_began(self.path, saved.data)))
        return [*fills, *unread_resets(path, saved.model.name, saved.model.options)]

    def save_config(self, cfg: RunConfig) -> None:
        """config.toml: ``cfg`` resolved, whoever built it. A config made in Python and never resolved wrote only the
        options it set, and one it lacked read back as its absence meant in old runs (filter_norm 0: free filters)."""
        replace_text(self.path / "config.toml", config_to_toml(resolve(cfg)))

    # --- files --------------------------------------------------------------------------------
    def last_loss(self) -> float | None:
        """The loss of metrics.jsonl's last row (the mean over its ``log_every`` steps); None without one."""
        rows = [row for row in self.metrics() if "loss" in row]
        return rows[-1]["loss"] if rows else None

    def metrics(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl (:mod:`~downpour.train.metrics_file`): a torn last line is left out."""
        return read_rows(self.path / self.METRICS)

    def truncate_metrics(self, step: int) -> int:
        """Drop the metrics rows logged after ``step`` (a resume from a checkpoint at ``step`` logs them
        again), and a torn last line; rewrites metrics.jsonl atomically. Returns the rows dropped."""
        return truncate_rows(self.path / self.METRICS, step)

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        replace_text(path, json.dumps(obj, indent=1, sort_keys=True))
        return path

    def read_json(self, name: str) -> Any:
        path = self.path / name
        if not path.is_file():
            raise NotARunError(f"{str(path)!r} does not exist")
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise NotARunError(f"{str(path)!r} is not valid JSON: {err}") from None

    @property
    def figures(self) -> Path:
        path = self.path / "figures"
        path.mkdir(exist_ok=True)
        return path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def no_faces_twin(self) -> Path:
        """Where ``analysis.no_faces_twin`` keeps this run's recipe trained without a face (a run directory)."""
        return self.path / self.TWIN


def check_is_config(cfg: Any, caller: str) -> None:
    """TypeError naming ``caller`` where ``cfg`` is not a RunConfig: from Python a preset's name or a TOML file's path
    is the likely slip, said with the call that makes one."""
    if not isinstance(cfg, RunConfig):
        raise TypeError(f"{caller}: cfg must be a RunConfig (load_config({cfg!r}) for a preset or a TOML file), "
                        f"got {cfg!r} ({type(cfg).__name__})")


def _no_twin(run: RunDir) -> str:
    """Why ``run``'s no-faces twin folder is not there: never trained, or none can be (:func:`twin_advice` says which).
    (A run on no lfw face does not read "has no no-faces twin, never trained; none can be trained".)"""
    never = ", never trained" if run.config.data.trains_on_faces() else ""
    return (f"{str(run.no_faces_twin)!r} does not exist: the run {str(run.path)!r} has no no-faces twin{never}; "
            f"{twin_advice(run)}")


def twin_advice(run: RunDir) -> str:
    """What trains ``run``'s no-faces twin, or why none can be: the setting by which it saw no lfw face (this refusal's
    and the analysis's, :func:`downpour.analysis.options.no_faces_of`: a run with data.train_faces = 0 is told that
    setting, not "data.source = 'natural+faces' holds no lfw face", its source holding them)."""
    data = run.config.data
    if data.trains_on_faces():
        return f"`downpour train --resume {pasted(run.path)} --set analysis.no_faces_twin=true` trains it"
    return f"none can be trained: the run saw no lfw face ({data.no_faces_setting()})"
