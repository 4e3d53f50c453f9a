"""The model a run directory holds: model.safetensors + model.json, and the fitted input processing
(preprocess.*), written and read back with their checks. A part of :class:`~downpour.train.rundir.RunDir`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from downpour._names import pasted
from downpour.errors import DownpourError, NotARunError
from downpour.models.base import FeatureModel
from downpour.models.registry import create_model
from downpour.settings import is_count
from downpour.train.checkpoint import (PAIR_KEY, PREPROCESS_RECORD, CheckpointError, UnreadableFile, denied,
                                       load_state, read_tensors, readable_tensors, save_state, sha256_of, verified_meta)
from downpour.train.config_record import model_differences
from downpour.train.json_digest import digest_problem
from downpour.train.model_file import fit_weights, write_model
from downpour.train.recorded import config_fills, model_fills, without_unread

if TYPE_CHECKING:
    from pathlib import Path

    from downpour.data.preprocess import Preprocess

# why model.safetensors is not the one model.json records: a save killed between the two (write_model renames the
# weights in, then writes model.json), or the weights changed since
UNPAIRED = "bytes changed on disk since it was written, or a write was cut between the two"


class RunModel:
    """RunDir's methods for the model and the preprocessing (they use its ``path``, ``config``, ``read_json``
    and ``drop_analysis``)."""

    def model_step(self) -> int | None:
        """The step model.json records; None without a whole model (model.safetensors or model.json missing,
        model.json torn by a kill while it was written: :meth:`save_model` writes it last; model.safetensors
        cut short, or damaged inside its data, its SHA-256 not the one model.json records; model.json edited since, not
        the SHA-256 it records of itself: a resume writes it again from its checkpoint, not saying the run "already
        reached" its end; the damaged one does not count as saved; one whose digest was deleted beside
        weights saved since, :func:`~downpour.train.json_digest.marked`, is edited too). A model from before 2026-12-02
        records no SHA-256 and counts as whole."""
        return self.saved_model()[0]

    def saved_model(self) -> tuple[int | None, str | None]:
        """:meth:`model_step`, and where it is None, why, said for a warning naming the file: missing, not readable
        (cut short or damaged; or permission denied, said so), or failing its SHA-256 check (model.json's of itself, or
        of model.safetensors). A resume that writes the model again says it, not a bare "was not saved (or was cut short
        or damaged)"."""
        weights, record = self.path / "model.safetensors", self.path / "model.json"
        for path in (weights, record):
            if not path.is_file():
                return None, f"{str(path)!r} is missing"
        if not readable_tensors(weights):
            return None, f"{str(weights)!r} " + ("cannot be read (permission denied)" if denied(weights) else
                                                  "is not a readable safetensors file (cut short or damaged)")
        try:
            meta = self.read_json("model.json")
        except NotARunError as err:                  # (torn by a kill while it was written)
            return None, str(err)
        if not isinstance(meta, dict):
            return None, f"{str(record)!r} does not hold a JSON object"
        problem = digest_problem(meta, weights)      # (first: nothing it records is to be trusted then, nor hashed)
        if problem:
            return None, f"{str(record)!r} fails its SHA-256 check: {problem}"
        if not isinstance(meta.get("step"), int):
            return None, f"{str(record)!r} records no step number (step is {meta.get('step')!r})"
        if PAIR_KEY in meta and meta[PAIR_KEY] != sha256_of(weights):
            return None, (f"{str(weights)!r} fails its SHA-256 check: it is not the one {str(record)!r} records "
                          f"({UNPAIRED})")
        return meta["step"], None

    def save_model(self, model: FeatureModel, step: int, extra: dict[str, Any] | None = None) -> None:
        """``model.safetensors`` (every parameter and buffer) + ``model.json`` (registry name, options, step)."""
        cfg = self.config
        write_model(self.path, model, cfg.model.name, {"step": step, "seed": cfg.seed, **(extra or {})})
        analysed = self.analysed_step()
        if analysed not in (None, step):   # made meanwhile (`downpour report` while a resume trained): of the model before
            self.drop_analysis(f"they describe the model at step {analysed}, and the model is now at step {step}")

    def analysis_stale(self) -> bool:
        """Whether analysis.json describes the model at another step than the one saved (a report made while a resume
        trained, before 2026-12-02): a report of the run analyses it again first. Blind to a model that fails its
        SHA-256 check (:meth:`model_step` is None: not stale): `analyze` and `report` ask :meth:`check_saved` first."""
        saved = self.model_step()
        return saved is not None and self.analysed_step() not in (None, saved)

    def check_analysed_model(self) -> None:
        """:meth:`check_saved`, said for `downpour report`: where the run has an analysis.json, the refusal adds that
        it is not reported meanwhile (it describes the model and input processing as they were saved, not the files on
        disk now). :meth:`analysis_stale` would not catch it: :meth:`model_step` is None for a model that fails its
        check (so not stale), and a preprocess.json edited since is not looked at there. Nothing is removed: the
        resume that writes the model again leaves the analysis of its step. Without analysis.json the report analyses
        the run first, and its refusal is the analysis's own words."""
        try:
            self.check_saved()
        except CheckpointError as err:
            if not (self.path / "analysis.json").is_file():
                raise
            raise CheckpointError(f"{err}; its analysis.json is not reported meanwhile: it describes the model and its "
                                  "input processing as they were saved, not the files on disk now") from None

    def check_saved(self) -> None:
        """A CheckpointError in :meth:`load_model`'s and :meth:`load_preprocess`'s words where a SHA-256 finds a file
        changed since it was written: model.json edited (its own), model.safetensors not the weights model.json
        records, preprocess.json edited or preprocess.safetensors not the one it records; found without loading the
        model, so `downpour analyze` and `report` refuse the run before anything else is read or held (asking first
        whether the analysis is stale is blind to it, and an analysis would hold the no-faces network meanwhile). A file
        missing, cut short, or a torn model.json is not refused here (a run shared with its analysis alone still
        reports; the analysis's loaders name them), a preprocess.json that is not JSON is (its save renames it in
        whole); a model.json or preprocess.json from before 2026-12-05 records no digest and passes (one that lost
        its digest beside a tensors file saved since does not). (The weights' hash
        is cached for a big file: model_step's and load_model's are the same.)"""
        if (self.path / "model.json").is_file():
            try:
                self._check_pair(self._model_json())
            except NotARunError:
                pass
        if (self.path / "preprocess.json").is_file():
            verified_meta(self.path / "preprocess", kind=PREPROCESS_RECORD)

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
        meta = self._model_json() if meta is None else meta
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
            raise CheckpointError(f"{str(self.path / 'model.json')!r} builds {key} = {was!r}, {str(config)!r} says "
                                  f"{now!r}: {_why_differs(config, key, was)}")
        return create_model(meta["model"], tuple(meta["input_shape"]), **options)

    def load_model(self, rewrites: str | None = None) -> FeatureModel:
        """The model of model.json with model.safetensors' weights, both checked; ``rewrites``: what writes the
        pair again where a write was cut between the two (default: this run's resume)."""
        if not (self.path / "model.safetensors").is_file():
            raise NotARunError(self._no_weights())
        meta = self._model_json(rewrites)
        tensors = self._read_weights(rewrites)    # a damaged file is named as such first
        self._check_pair(meta, rewrites)
        model = self.new_model(meta)
        fit_weights(model, tensors, self.path / "model.safetensors")
        model.eval()
        return model

    def _model_json(self, rewrites: str | None = None) -> Any:
        """model.json, or a CheckpointError naming it where it does not match the SHA-256 it records of itself, with
        what writes it again (``rewrites``, or as :meth:`_weights_again` says: the resume only where the run has the
        checkpoint it writes it from)."""
        meta = self.read_json("model.json")
        problem = digest_problem(meta, self.path / "model.safetensors") if isinstance(meta, dict) else None
        if not problem:
            return meta
        said = (f"{str(self.path / 'model.json')!r} (of {str(self.path / 'model.safetensors')!r}) cannot be read back: "
                f"{problem}")
        if rewrites:
            raise CheckpointError(f"{said}; {rewrites} writes it again")
        raise CheckpointError(self._weights_again(f"{said} (copy a whole one back, or", f"{said}, and the run has no "
                                                  "checkpoint to write it from: copy a whole one back"))

    def _check_pair(self, meta: Any, rewrites: str | None = None) -> None:
        """A CheckpointError naming model.safetensors and model.json where the weights' SHA-256 is not the one
        ``meta`` (model.json) records, with what writes them again (``rewrites``, or as :meth:`_weights_again` says);
        none where the weights are missing or cut short (:meth:`_read_weights` names those) or model.json records no
        SHA-256 (a run from before 2026-12-02)."""
        weights = self.path / "model.safetensors"
        if not (isinstance(meta, dict) and PAIR_KEY in meta and readable_tensors(weights)) \
                or meta[PAIR_KEY] == sha256_of(weights):
            return
        said = (f"{str(weights)!r} is not the model {str(self.path / 'model.json')!r} describes (its SHA-256 is not the "
                f"one recorded there: {UNPAIRED}")
        if rewrites:
            raise CheckpointError(f"{said}); {rewrites} writes it again")
        raise CheckpointError(self._weights_again(f"{said}: copy a whole one back, or",
                                                  f"{said}), and the run has no checkpoint to write it from: copy a whole "
                                                  "one back"))

    def _read_weights(self, rewrites: str | None) -> dict[str, Any]:
        """model.safetensors' tensors; one cut short or damaged (a copy that did not finish, a full disk) is named
        with what writes it again, as :meth:`_no_weights` says, not only the file and the library's words
        ("incomplete metadata, file not fully covered") with no way on."""
        try:
            return read_tensors(self.path / "model.safetensors")
        except UnreadableFile:       # (permission denied: not damaged, and nothing to write again)
            raise
        except CheckpointError as err:
            if rewrites:
                raise CheckpointError(f"{err}; {rewrites} writes it again") from None
            raise CheckpointError(self._weights_again(
                f"{err} (cut short or damaged: copy a whole one back, or",
                f"{err} (cut short or damaged), and the run has no checkpoint to write it from: copy a whole one back"
            )) from None

    def _no_weights(self) -> str:
        """model.json without model.safetensors, said as what it means and what writes the weights again. A cut
        save does not leave it (:func:`write_model` renames the weights in before it writes model.json): the file
        was deleted, or left out of a copy: asking "has its training finished?" would be wrong of a run that had."""
        return self._weights_again(
            f"{str(self.path)!r} has model.json but not model.safetensors, the model's weights (deleted, or left out "
            "where the folder was copied: copy it back, or",
            f"{str(self.path)!r} has model.json but not model.safetensors, the model's weights, nor a checkpoint to "
            "write them from (deleted, or left out where the folder was copied): copy them back")

    def _weights_again(self, said: str, unkept: str) -> str:
        """``said`` (what is wrong with model.safetensors, up to "or") and the resume that writes the weights again
        from the run's checkpoint; ``unkept`` (up to "or") where it has none."""
        try:
            reached = self.reached()
        except (CheckpointError, NotARunError):      # (a damaged checkpoint: the resume names it)
            return f"{said} `downpour train --resume {pasted(self.path)}` writes them again from its checkpoint)"
        try:
            steps = self.config.train.steps
        except DownpourError as err:   # (config.toml damaged too: said after the weights' words, never instead of them)
            if reached is None:
                return f"{unkept}; and {err}"
            return (f"{said} `downpour train --resume {pasted(self.path)}` writes them again from its checkpoint once its "
                    f"config.toml reads again: {err})")
        if reached is not None and reached >= steps:
            return f"{said} `downpour train --resume {pasted(self.path)}` writes them again from its checkpoint at its last step, {reached})"
        if reached is not None:
            return (f"{said} `downpour train --resume {pasted(self.path)}` trains on from its checkpoint at step {reached} of "
                    f"{steps} and writes them at the end)")
        # (every run checkpoints at its end, train.checkpoint_every = 0 too: none left means checkpoints/ went
        # with the weights, and a resume refuses the run: "checkpoint file ... is missing")
        return f"{unkept}, or train it again, `downpour train --config {pasted(self.path / 'config.toml')} --out NEW_FOLDER`"

    def save_preprocess(self, preprocess: "Preprocess", refits: list[int] | None = None,
                        classes: list[str] | None = None) -> None:
        """``preprocess.safetensors`` + ``.json``: the fitted input processing (normalisation statistics,
        ZCA matrix), so analysis prepares new images exactly like the training data, from this directory
        alone. ``refits``: the steps at which a resume fitted it anew on data that had changed."""
        tensors, meta = preprocess.state()
        save_state(self.path / "preprocess", tensors, {**meta, **({"refit_on_resume": refits} if refits else {}),
                                                       **({"classes": list(classes)} if classes is not None else {})},
                   preprocess.layouts())

    def load_preprocess(self) -> "Preprocess | None":
        """The run's saved input processing, or None for a run that predates it."""
        from downpour.data.preprocess import Preprocess

        if not (self.path / "preprocess.json").is_file():
            return None
        try:
            return Preprocess.from_state(*load_state(self.path / "preprocess", kind=PREPROCESS_RECORD))
        except (ValueError, KeyError, TypeError) as err:    # a hand-edited file: a traceback in every analysis
            why = err if isinstance(err, ValueError) else repr(err)      # (a KeyError's str() is the bare key)
            raise CheckpointError(f"{str(self.path / 'preprocess.json')!r} cannot be read back: {why}") from None


def _why_differs(config: Path, key: str, was: Any) -> str:
    """Why model.json's ``key`` (``was``) differs from ``config``'s (config.toml), and what to do: the first of
    :func:`~downpour.train.config_record.model_differences`."""
    if key in dict(config_fills(config)):
        return ("lacks it, read as its absence meant in runs from before it existed; a run made in Python by older "
                f"code wrote only the options it set: write {key.split('.', 1)[1]} = {was!r} into its [model]")
    if key == "model.name":
        return "one of the two is another run's (copied in, or edited; a run writes both alike): put the run's own back"
    return "one of them was edited (a run writes both alike); put it back"


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(is_count(v, 1) for v in value)
