"""The run directory every runner writes and every analysis reads (see docs/architecture.md)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from downpour.config import ConfigError, Override, RunConfig, config_to_toml, load_config
from downpour.data.pipeline import check_classes, decode_began, decode_change
from downpour.errors import NotARunError
from downpour.models.base import FeatureModel
from downpour.models.registry import create_model, resolve
from downpour.settings import is_count
from downpour.train.checkpoint import (PAIR_KEY, CheckpointError, check_streams, load_state, read_tensors, save_state,
                                       sha256_of)
from downpour.train.config_record import config_record, model_differences
from downpour.train.folders import RunExistsError, folder_to_write, make_folder
from downpour.train.metrics_file import has_row, read_rows, truncate_rows
from downpour.train.model_file import fit_weights, replace_text, write_model
from downpour.train.refit import refits_after
from downpour.train.recorded import config_fills, has_key, model_fills, unread_resets, without_unread

if TYPE_CHECKING:
    from downpour.data.preprocess import Preprocess

log = logging.getLogger(__name__)
CONFIG_KEY = "config"   # a checkpoint's JSON: the resolved config its weights were trained with


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.trained_with: dict[str, Any] | None = None   # the config begin() saved: what checkpoints record

    @classmethod
    def create(cls, path: str | Path, cfg: RunConfig) -> "RunDir":
        """A new run directory holding the fully resolved ``config.toml``; refuses to overwrite a run,
        or to write into a folder that holds anything downpour did not put there.

        A directory whose run never got going (a config.toml and nothing trained: no checkpoint, no
        model, no metrics row, e.g. the data failed to load) is taken over, so fixing the cause and
        running the same command again works.
        """
        run = cls.check_new(path)
        if (run.path / "config.toml").exists():
            (run.path / cls.METRICS).unlink(missing_ok=True)   # opened before the first step: no row in it
            (run.path / cls.STOPPED_DATA).unlink(missing_ok=True)   # what the failed start's data did (the fixed run's own follows)
        make_folder(run.path, "the run folder")
        run.save_config(cfg)
        return run

    @classmethod
    def check_new(cls, path: str | Path) -> "RunDir":
        """What :meth:`create` refuses (RunExistsError), found without writing anything (``--dry-run``)."""
        run = cls(path)
        taken_over = (run.path / "config.toml").exists()      # a run that never started: create takes it over
        if taken_over and not run.never_started():
            raise RunExistsError(f"{str(run.path)!r} already holds a run; resume it with --resume or pick another --out")
        if run.path.exists():
            ours = (*cls.NEVER_STARTED, cls.TWIN, *((cls.METRICS, cls.STOPPED_DATA) if taken_over else ()))   # (they go)
            others = sorted(p.name for p in run.path.iterdir() if p.name not in ours) if run.path.is_dir() else []
            if not run.path.is_dir() or others:
                shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
                raise RunExistsError(f"{str(run.path)!r} is not an empty folder ({shown or 'a file'}): a run is written "
                                     "only into a new or empty folder, never over files it did not make; pick another --out")
        folder_to_write(run.path, "the run folder")
        return run

    # what a run that never got going leaves behind (RunDir.begin writes the preprocessing too)
    NEVER_STARTED = ("config.toml", "preprocess.json", "preprocess.safetensors", "tb")

    # what training writes (and, after it, the analysis and the report)
    METRICS = "metrics.jsonl"
    STOPPED_DATA = "data.json"   # written too by a run that stopped before its first step (the files it skipped)
    TRAINED = ("model.json", "model.safetensors", "checkpoints", METRICS, "staleness.json")
    ANALYSIS = ("figures", "analysis.json", "report.html")    # of the model as it is: stale once it trains on
    AFTER = ("cluster.json", *ANALYSIS)
    # a run of its own inside this one (analysis.no_faces_twin): it may be there before this run trains
    # (crossfit trains folds and twins side by side), and a run trained again keeps it (same recipe)
    TWIN = "no-faces"

    def never_started(self) -> bool:
        """True while nothing of this run's training exists yet: no checkpoint, no model, no metrics row.
        Telemetry opens metrics.jsonl before the first step, so a run whose data failed there leaves it
        empty: that file alone does not make the run one that trained."""
        trained = (name for name in self.TRAINED if name != self.METRICS)
        return not self.logged() and not any((self.path / name).exists() for name in trained)

    def logged(self) -> bool:
        """Whether metrics.jsonl holds at least one row (a torn line, a kill mid-write, is none); reads
        only up to the first, so it is cheap on a long run."""
        return has_row(self.path / self.METRICS)

    def finished(self, steps: int) -> bool:
        """Whether this run's model is saved at ``steps`` (its ``train.steps``), or where its L-BFGS stopped for
        good (:meth:`stopped_for_good`): nothing left to train."""
        return ((self.path / "model.json").is_file() and self.read_json("model.json").get("step") == steps
                or self.stopped_for_good() is not None)

    def stopped_for_good(self) -> dict[str, Any] | None:
        """The ``stop`` sandblaster.json records (gradient, precision, line search) when the model is saved where it
        stopped on the whole data set: a resume would search again from the same point and end alike (a run that
        samples batches goes on). None otherwise. (Until 2026-12-05 only a model at train.steps was finished, and
        `downpour crossfit` refused to go on past a fold that stopped early.)"""
        path = self.path / "sandblaster.json"
        record = self.read_json(path.name) if path.is_file() else {}
        stop = record.get("stop") or {"reason": "steps"}
        sampled = record.get("samples_batches", self.config.sandblaster.batch > 0)   # (not recorded before 2026-12-05)
        return stop if stop["reason"] != "steps" and not sampled and self.model_step() == record.get("steps") else None

    def stopped_unsaved(self) -> bool:
        """Whether the run trained but stopped before its first checkpoint (a kill, with
        ``train.checkpoint_every = 0`` saving one only at the end): metrics rows, and no checkpoint or
        model to go on from. Training it again from step 0 is then the run itself."""
        return self.logged() and self.reached() is None and not (self.path / "model.json").is_file()

    def has_checkpoint(self) -> bool:
        """Whether a resume has a checkpoint to start from (runs save one only every
        ``checkpoint_every`` steps or ``checkpoint_seconds``, and at the end)."""
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("*.safetensors"))

    def discard_training(self) -> None:
        """Remove what training, the analysis and the report wrote, keeping the config: the run can
        then start over (:meth:`create` takes it over). Files downpour did not write stay."""
        self._remove(self.TRAINED + self.AFTER + ("tb",))   # (its TensorBoard events too: they would show twice)

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
        if run.path.is_file():
            raise NotARunError(f"{str(run.path)!r} is a file, not a run directory")
        if not run.path.is_dir():
            raise NotARunError(f"{str(run.path)!r} does not exist")
        if not (run.path / "config.toml").is_file():
            if (run.path / "crossfit.json").is_file():    # (a cross-fit's folder: its runs are its fold-I)
                raise NotARunError(f"{str(run.path)!r} is a cross-fit's folder, not a run: its report is "
                                   f"crossfit.html, and each fold's run is {str(run.path / 'fold-I')!r}")
            if any((run.path / f"fold-{i}" / "config.toml").is_file() for i in range(2)):   # (one stopped before it)
                raise NotARunError(f"{str(run.path)!r} is a cross-fit's folder, not a run, stopped before its report: "
                                   f"each fold's run is {str(run.path / 'fold-I')!r}, and the same `downpour crossfit` "
                                   "command again finishes it")
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
        and model options refused since as read by nothing read as their defaults (:mod:`downpour.train.recorded`)."""
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

    def unsaved_at_end(self, cfg: RunConfig, start: int, resume: bool) -> bool:
        """A resume whose checkpoint is the run's last step but whose model was not written at it (stopped
        between the two): the runner writes the model from the checkpoint instead of training. The model
        may be missing, or an earlier one's: a resume that raised --steps keeps the old model until its end. Only
        at the run's own end: a checkpoint mid-way through a run resumed with --steps at or below it is refused
        (:meth:`begin`), not saved as if the run had finished there (it wrote a step-50 model under a config of 100)."""
        if not resume or not self.ends_unsaved(cfg, start):
            return False
        saved = self.model_step()
        log.warning("%s: the checkpoint is the run's last step (%d) but the model %s; saving it now", self.path, start,
                    "was not saved" if saved is None else f"is still step {saved}'s")
        return True

    def ends_unsaved(self, cfg: RunConfig, start: int) -> bool:
        """:meth:`unsaved_at_end`'s test, saying nothing (``--dry-run`` asks it too)."""
        saved = self.model_step()
        return start == cfg.train.steps == self.config.train.steps and (saved is None or saved < start)

    def model_step(self) -> int | None:
        """The step model.json records; None without a whole model (model.safetensors or model.json missing,
        or model.json torn by a kill while it was written: :meth:`save_model` writes it last)."""
        if not (self.path / "model.safetensors").is_file():
            return None
        try:
            meta = self.read_json("model.json")
        except NotARunError:
            return None
        step = meta.get("step") if isinstance(meta, dict) else None
        return step if isinstance(step, int) else None

    def begin(self, cfg: RunConfig, preprocess: "Preprocess", start: int, resume: bool,
              classes: list[str] | None = None) -> None:
        """What every runner does once its state is restored and before its first step: refuse a
        run that already reached ``cfg.train.steps``, save the config and the fitted preprocessing,
        and on a resume drop the metrics rows logged after the checkpoint (they are logged again). ``classes``: a
        labelled folder's, recorded with the preprocessing; a resume whose classes changed is refused first.
        Only now, with the checkpoint loaded and the step checked: a mistyped resume leaves the run as it was.
        The analysis stays: it describes model.safetensors, which only the resume's end replaces
        (:meth:`save_model` removes it then; a resume stopped before its end leaves both as they were)."""
        self.refuse_reached(cfg, start)
        if resume:
            check_classes(classes, self.path)
        if (self.path / "tb").exists() and not (self.path / "tb").is_dir():   # (TensorBoard's writer: a traceback)
            raise NotARunError(f"{str(self.path / 'tb')!r} is a file where the run's TensorBoard folder goes; move it away")
        if (self.path / "metrics.jsonl").is_dir():
            raise NotARunError(f"{str(self.path / 'metrics.jsonl')!r} is a folder where the run's metrics file goes; "
                               "move it away")
        self.save_config(cfg)
        self.trained_with = config_record(cfg)
        refits = refits_after(self.path, preprocess, start, decode_change(self.path, cfg.data)) if resume else []
        self.save_preprocess(preprocess, refits, classes)
        if resume:
            self.truncate_metrics(start)

    def stamped(self, meta: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's ``meta`` with the config its weights train with (``config``, from :meth:`begin`): a resume
        compares config.toml with it, so a hand edit of the file is refused by name instead of trained past."""
        return {**meta, CONFIG_KEY: self.trained_with} if self.trained_with is not None else meta

    def refuse_reached(self, cfg: RunConfig, start: int) -> None:
        """ConfigError when a resume from step ``start`` has nothing left to train to ``cfg.train.steps``."""
        if start >= cfg.train.steps:
            go_on = "raise train.steps (--steps) to go on" if cfg.train.schedule != "greedy" else ("it is finished: a greedy "
                     "schedule gives each stage its share of train.steps, so more steps means a new run (downpour train --config "
                     f"{str(self.path / 'config.toml')!r} --steps M --out NEW); a joint run could be resumed with more --steps instead")
            raise ConfigError(f"the run in {str(self.path)!r} already reached step {start} of {cfg.train.steps}; {go_on}")

    def reached(self) -> int | None:
        """The step (Sandblaster: iteration) the run's checkpoint records, what a resume starts from, read
        with a resume's checks (a damaged checkpoint raises CheckpointError naming it); None without one."""
        stems = sorted({p.name.split(".")[0] for p in self.checkpoints.glob("*.json")}) if self.checkpoints.is_dir() else []
        steps = []
        for stem in stems:
            meta = load_state(self.checkpoints / stem)[1]
            check_streams(meta, self.checkpoints / stem)      # (its streams' positions: a dry run passed damaged ones)
            steps.append(meta.get("step", meta.get("iteration")))
        return max((step for step in steps if isinstance(step, int)), default=None)

    # --- the model ----------------------------------------------------------------------------
    def save_model(self, model: FeatureModel, step: int, extra: dict[str, Any] | None = None) -> None:
        """``model.safetensors`` (every parameter and buffer) + ``model.json`` (registry name, options, step)."""
        cfg = self.config
        write_model(self.path, model, cfg.model.name, {"step": step, "seed": cfg.seed, **(extra or {})})
        analysed = self.analysed_step()
        if analysed not in (None, step):   # made meanwhile (`downpour report` while a resume trained): of the model before
            self.drop_analysis(f"they describe the model at step {analysed}, and the model is now at step {step}")

    def analysed_step(self) -> int | None:
        """The step of the model analysis.json describes (its ``trained_steps``); None without a readable one."""
        try:
            step = self.read_json("analysis.json").get("trained_steps") if (self.path / "analysis.json").is_file() else None
        except (NotARunError, AttributeError):
            return None
        return step if is_count(step) else None

    def new_model(self, meta: dict[str, Any] | None = None) -> FeatureModel:
        """A freshly initialised model of the architecture model.json (or its dict ``meta``) describes, the
        options it lacks read as what their absence meant (:mod:`downpour.train.recorded`): what
        :meth:`load_model` loads the weights into, and the analysis's random-weights twin."""
        meta = self.read_json("model.json") if meta is None else meta
        for key, fits, what in (("model", lambda v: isinstance(v, str), "a model's name"),
                                ("input_shape", _is_shape, "a list of sizes >= 1"),
                                ("options", lambda v: isinstance(v, dict), "a table of the model's options")):
            if key not in meta:
                raise CheckpointError(f"{str(self.path / 'model.json')!r} lacks key {key!r}")
            if not fits(meta[key]):     # a hand-edited file: a TypeError deep in the model's constructor
                raise CheckpointError(f"{str(self.path / 'model.json')!r}: {key} is {meta[key]!r}, not {what}")
        options = {**model_fills(self.path / "model.json", meta["model"], meta["options"]), **meta["options"]}
        options = without_unread(self.path / "model.json", meta["model"], options)
        config = self.path / "config.toml"
        for key, was, now in model_differences(meta["model"], options, self.config) if config.is_file() else ():
            why = ("lacks it, read as its absence meant in runs from before it existed; a run made in Python before "
                   f"2026-12-04 wrote only the options it set: write {key.split('.', 1)[1]} = {was!r} into its [model]"
                   if key in dict(config_fills(config)) else "one of them was edited (a run writes both alike); put it back")
            raise CheckpointError(f"{str(self.path / 'model.json')!r} builds {key} = {was!r}, {str(config)!r} says "
                                  f"{now!r}: {why}")
        return create_model(meta["model"], tuple(meta["input_shape"]), **options)

    def load_model(self, rewrites: str | None = None) -> FeatureModel:
        """The model of model.json with model.safetensors' weights, both checked; ``rewrites``: what writes the
        pair again where a write was cut between the two (default: this run's resume)."""
        if not (self.path / "model.safetensors").is_file():
            raise NotARunError(f"{str(self.path)!r} has no model.safetensors yet: has its training finished?")
        meta = self.read_json("model.json")
        weights = self.path / "model.safetensors"
        tensors = read_tensors(weights)           # a damaged file is named as such first
        if PAIR_KEY in meta and meta[PAIR_KEY] != sha256_of(weights):     # (a run from before 2026-12-02: none)
            raise CheckpointError(f"{str(weights)!r} is not the model {str(self.path / 'model.json')!r} describes (a write "
                                  f"was cut between the two); {rewrites or f'`downpour train --resume {self.path}`'} writes it again")
        model = self.new_model(meta)
        fit_weights(model, tensors, weights)
        model.eval()
        return model

    def save_preprocess(self, preprocess: "Preprocess", refits: list[int] | None = None,
                        classes: list[str] | None = None) -> None:
        """``preprocess.safetensors`` + ``.json``: the fitted input processing (normalisation statistics,
        ZCA matrix), so analysis prepares new images exactly like the training data, from this directory
        alone. ``refits``: the steps at which a resume fitted it anew on data that had changed."""
        tensors, meta = preprocess.state()
        save_state(self.path / "preprocess", tensors, {**meta, **({"refit_on_resume": refits} if refits else {}),
                                                       **({"classes": list(classes)} if classes is not None else {})})

    def load_preprocess(self) -> "Preprocess | None":
        """The run's saved input processing, or None for a run that predates it."""
        from downpour.data.preprocess import Preprocess

        if not (self.path / "preprocess.json").is_file():
            return None
        try:
            return Preprocess.from_state(*load_state(self.path / "preprocess"))
        except (ValueError, KeyError, TypeError) as err:    # a hand-edited file: a traceback in every analysis
            why = err if isinstance(err, ValueError) else repr(err)      # (a KeyError's str() is the bare key)
            raise CheckpointError(f"{str(self.path / 'preprocess.json')!r} cannot be read back: {why}") from None

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


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(is_count(v, 1) for v in value)
