"""What a runner asks of its run directory at its start: the checks of a resume (the step it starts
from, a run already at its end, a model not saved at it) and :meth:`RunBegin.begin`. A part of
:class:`~downpour.train.rundir.RunDir`."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from downpour._names import pasted
from downpour.config import ConfigError, RunConfig
from downpour.data.resumed import decode_change
from downpour.errors import NotARunError
from downpour.train.checkpoint import denied, load_state
from downpour.train.checkpoint_checks import check_streams
from downpour.train.config_record import config_record
from downpour.train.environment import record_environment, record_nodes, warn_if_other
from downpour.train.refit import check_classes, refits_after, saved_fit

if TYPE_CHECKING:
    from downpour.data.preprocess import Preprocess

log = logging.getLogger("downpour.train.rundir")   # RunDir's logger: its records under one name
CONFIG_KEY = "config"   # a checkpoint's JSON: the resolved config its weights were trained with


def last_step(start: int) -> str:
    """Where a resume whose model was not saved at the run's end writes it from (:meth:`RunBegin.unsaved_words`)."""
    return f"the checkpoint is the run's last step ({start})"


def saving_words(unsaved: str, dry_run: bool = False) -> str:
    """The warning of a resume that writes the model from its checkpoint (``unsaved``: :meth:`RunBegin.unsaved_words`),
    as the runner says it does it, or as its ``--dry-run`` says the resume would: the words of the Downpour runners',
    Sandblaster's and the dry run's warning, written here once."""
    return f"{unsaved}; {'the resume would save it from there' if dry_run else 'saving it now'}"


class RunBegin:
    """RunDir's methods for the start of a run and of a resume (they use its ``path``, ``config``,
    ``checkpoints``, ``model_step``, ``saved_model``, ``save_config``, ``save_preprocess`` and ``truncate_metrics``)."""

    trained_with: dict[str, Any] | None

    def unsaved_at_end(self, cfg: RunConfig, start: int, resume: bool) -> bool:
        """A resume whose checkpoint is the run's last step but whose model was not written at it (stopped
        between the two): the runner writes the model from the checkpoint instead of training. The model
        may be missing, or an earlier one's: a resume that raised --steps keeps the old model until its end. Only
        at the run's own end: a checkpoint mid-way through a run resumed with --steps at or below it is refused
        (:meth:`begin`), not saved as if the run had finished there (a step-50 model under a config of 100)."""
        if not resume or not self.ends_unsaved(cfg, start):
            return False
        # a preprocess.json that does not verify refuses it, as its --dry-run does (a model saved beside it would
        # only have the analysis refuse the run in turn)
        saved_fit(self.path)
        log.warning("%s", saving_words(self.unsaved_words(last_step(start))))
        return True

    def unsaved_words(self, where: str) -> str:
        """Why a resume writes the model from the checkpoint ``where`` says, naming the file that is not whole
        (missing, unreadable, failing its SHA-256 check) or the step of the model left: what the resume warns, and
        its ``--dry-run`` and Sandblaster's stop for good (which rewrites it) say too."""
        saved, why = self.saved_model()
        if saved is None and denied(self.path / "model.safetensors"):   # (maybe whole: not "not saved whole")
            return f"{self.path}: {where} but {why}"
        return (f"{self.path}: {where} but the model "
                + (f"was not saved whole ({why})" if saved is None else f"is still step {saved}'s"))

    def ends_unsaved(self, cfg: RunConfig, start: int) -> bool:
        """:meth:`unsaved_at_end`'s test, saying nothing (``--dry-run`` asks it too)."""
        saved = self.model_step()
        return start == cfg.train.steps == self.config.train.steps and (saved is None or saved < start)

    def begin(self, cfg: RunConfig, preprocess: "Preprocess", start: int, resume: bool,
              classes: list[str] | None = None, nodes: dict[str, dict[str, Any]] | None = None,
              start_weights: dict[str, Any] | None = None) -> None:
        """What every runner does once its state is restored and before its first step: refuse a
        run that already reached ``cfg.train.steps``, save the config and the fitted preprocessing,
        and on a resume drop the metrics rows logged after the checkpoint (they are logged again). ``classes``: a
        labelled folder's, recorded with the preprocessing; a resume whose classes changed is refused first.
        Only now, with the checkpoint loaded and the step checked: a mistyped resume leaves the run as it was.
        The analysis stays: it describes model.safetensors, which only the resume's end replaces
        (:meth:`save_model` removes it then; a resume stopped before its end leaves both as they were). ``nodes``: a
        Ray run's, recorded in environment.json (:func:`~downpour.train.environment.record_environment`), as is
        ``start_weights``, a new run's fingerprint of the weights it starts from
        (:func:`~downpour.train.start_weights.fingerprint`; a resume keeps the first go's, whatever it is given)."""
        self.refuse_reached(cfg, start)
        # (before anything is written: a preprocess.json that does not verify refuses the resume)
        refits = refits_after(self.path, preprocess, start, decode_change(self.path, cfg.data)) if resume else []
        if resume:
            check_classes(classes, self.path)
        if (self.path / "tb").exists() and not (self.path / "tb").is_dir():   # (TensorBoard's writer: a traceback)
            raise NotARunError(f"{str(self.path / 'tb')!r} is a file where the run's TensorBoard folder goes; move it away")
        if (self.path / "metrics.jsonl").is_dir():
            raise NotARunError(f"{str(self.path / 'metrics.jsonl')!r} is a folder where the run's metrics file goes; "
                               "move it away")
        if resume:
            warn_if_other(self.path, "the resume trains", rewritten=True)     # (record_environment, next)
        record_environment(self.path, start, nodes, None if resume else start_weights)
        self.save_config(cfg)
        self.trained_with = config_record(cfg)
        self.save_preprocess(preprocess, refits, classes)
        if resume:
            self.truncate_metrics(start)

    def record_nodes(self, nodes: dict[str, dict[str, Any]]) -> None:
        """environment.json's ``nodes`` anew, after :meth:`begin` wrote it: a Ray run's worker or partition restarted
        on a node, or under an install, that its start did not list
        (:func:`~downpour.train.environment.record_nodes`)."""
        record_nodes(self.path, nodes)

    def stamped(self, meta: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's ``meta`` with the config its weights train with (``config``, from :meth:`begin`): a resume
        compares config.toml with it, so a hand edit of the file is refused by name instead of trained past."""
        return {**meta, CONFIG_KEY: self.trained_with} if self.trained_with is not None else meta

    def refuse_reached(self, cfg: RunConfig, start: int) -> None:
        """ConfigError when a resume from step ``start`` has nothing left to train to ``cfg.train.steps``."""
        if start >= cfg.train.steps:
            run = pasted(self.path)
            go_on = (f"raise train.steps above {start} to go on (downpour train --resume {run} --steps M)" if cfg.train.schedule != "greedy"
                     else "it is finished: a greedy schedule gives each stage its share of train.steps, so more steps means "
                     f"a new run (downpour train --config {pasted(self.path / 'config.toml')} --steps M --out "
                     "NEW); a joint run could be resumed with more --steps instead")
            # (past its steps, "step 3000 of 100" read as a miscount)
            reached = (f"step {start} of {cfg.train.steps}" if start == cfg.train.steps
                       else f"step {start}, past its train.steps = {cfg.train.steps}")
            raise ConfigError(f"the run in {str(self.path)!r} already reached {reached}; {go_on}; "
                              f"what it learned: downpour report {run}")

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
