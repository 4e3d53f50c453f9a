"""Where a run's training stands, read from its folder: never started, logged, finished, stopped for good (an L-BFGS
run's stop), stopped before its first checkpoint, its checkpoints lost. A part of
:class:`~downpour.train.rundir.RunDir`."""
from __future__ import annotations

from typing import Any

from downpour.config import is_cluster_runner
from downpour.errors import NotARunError
from downpour.train.metrics_file import has_row


class RunProgress:
    """RunDir's methods for where its training stands (they use its ``path``, ``config``, ``TRAINED``, ``METRICS``,
    ``checkpoints``, ``metrics``, ``read_json``, ``model_step`` and ``reached``)."""

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
        """Whether this run's model is saved at ``steps`` (its ``train.steps``), whole (:meth:`model_step`: one damaged
        since, its SHA-256 not model.json's, does not count), or its L-BFGS stopped for good."""
        return self.model_step() == steps or self.stopped_for_good(steps) is not None

    def stopped_for_good(self, steps: int | None = None) -> dict[str, Any] | None:
        """The ``stop`` sandblaster.json records (gradient, precision, line search) when the model is saved where it
        stopped (on the whole data set a resume would search again and end alike; on sampled batches the rule already
        waited for the failure to recur), unless it samples batches and ``steps`` (a resume's) asks for more than the
        run was trained to: sandblaster.json's ``train_steps`` (one written before 2026-12-05 has none: config.toml's
        then, which a resume past the stop raises at once, so a resume interrupted before its first iteration's end
        can read as "finished" where the resume goes on). None otherwise. A run that sampled batches, a cross-fit fold
        too, stopped so is kept, not trained on."""
        record = self._sandblaster_record()
        stop = record.get("stop") or {"reason": "steps"}
        if stop["reason"] == "steps" or self.model_step() != record.get("steps"):
            return None
        trained_to = record.get("train_steps", self.config.train.steps)
        return stop if ends_at_stop(stop, self.samples_batches(), steps, trained_to) else None

    def samples_batches(self) -> bool:
        """Whether the run's L-BFGS draws a new sample of examples every iteration: sandblaster.json's
        ``samples_batches`` (not recorded before 2026-12-05), else its sandblaster.batch > 0."""
        return self._sandblaster_record().get("samples_batches", self.config.sandblaster.batch > 0)

    def _sandblaster_record(self) -> dict[str, Any]:
        return self.read_json("sandblaster.json") if (self.path / "sandblaster.json").is_file() else {}

    def stopped_unsaved(self) -> bool:
        """Whether the run trained but stopped before its first checkpoint (a kill, with
        ``train.checkpoint_every = 0`` saving one only at the end): metrics rows, and no checkpoint or
        model to go on from. Training it again from step 0 is then the run itself."""
        return (self.logged() and self.reached() is None and not (self.path / "model.json").is_file()
                and self.checkpoints_lost() is None)

    def checkpoints_lost(self) -> str | None:
        """What the folder shows of checkpoints that were written and are gone since (deleted or moved), said as what
        it found; None where it shows none (a kill before the first checkpoint leaves a folder alike, and is trained
        again from step 0: :meth:`stopped_unsaved`). A run whose checkpoints were deleted while it trained, then killed
        before its model, is told apart from that run here, not trained again from step 0 over its rows.
        The evidence: a local run's metrics.jsonl rows past step ``train.checkpoint_every`` (the loop saves that
        step's checkpoint before it trains the next; the cluster runners' rows do not say: Downpour's server saves
        by pushes and on Ray by time, and Sandblaster's greedy stages skip iterations). An empty checkpoints/ folder
        is none: a kill during the first save leaves it so (:func:`~downpour.train.checkpoint.save_state` makes it,
        then copies the tensors and lays them out before its temporary file exists: seconds of a large model, where an
        out-of-memory kill lands), and that is not refused as checkpoints deleted."""
        cfg = self.config
        every = cfg.train.checkpoint_every
        if self.has_checkpoint() or is_cluster_runner(cfg.cluster.runner) or not every:   # (no row says one was written)
            return None
        try:
            last = max((row["step"] for row in self.metrics() if isinstance(row.get("step"), int)), default=0)
        except NotARunError:    # a damaged line: no evidence (a run trained again from step 0 writes the file anew)
            return None
        if every < last:
            where = "holds no checkpoint" if self.checkpoints.is_dir() else "is missing"
            return (f"its folder {str(self.checkpoints)!r} {where}, though metrics.jsonl has rows to step {last}, past "
                    f"step {every}, where train.checkpoint_every = {every} saved a checkpoint there: the checkpoints "
                    "were deleted (or moved) after they were written, not lost to a kill before the first")
        return None

    def has_checkpoint(self) -> bool:
        """Whether a resume has a checkpoint to start from (runs save one only every
        ``checkpoint_every`` steps or ``checkpoint_seconds``, and at the end)."""
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("*.safetensors"))


def ends_at_stop(stop: dict[str, Any] | None, samples_batches: bool, steps: int | None, trained_to: int) -> bool:
    """Whether a resume asking for ``steps`` (None: as many as before) of an L-BFGS run that stopped early (``stop``, the
    stop its checkpoint or sandblaster.json records; None: it did not) has nothing to train: on the whole data set it
    would search again from the same point and fail alike; on sampled batches its rule already waited for the failure
    to recur, so only more steps than the ``trained_to`` it ran to go on, on new batches. The one rule both the runner
    (:func:`~downpour.sandblaster.run.run_sandblaster`) and :meth:`RunDir.stopped_for_good` (a dry run, a finished
    run's checks) apply."""
    return stop is not None and not (samples_batches and steps is not None and steps > trained_to)
