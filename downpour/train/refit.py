"""Whether a resume's input processing, fitted again on the data as it is now, is the one its run began with.

    refits = refits_after(run.path, preprocess, start)   # preprocess.json's refit_on_resume, ``start`` added on a change
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from downpour.data.patches import DATA_JSON
from downpour.data.resumed import recorded
from downpour.errors import DataError
from downpour.train.checkpoint import PREPROCESS_RECORD, CheckpointError, load_state

if TYPE_CHECKING:
    from downpour.data.preprocess import Preprocess

log = logging.getLogger(__name__)


def refits_after(path: Path, preprocess: "Preprocess", start: int, why: str = "the data changed since?") -> list[int]:
    """The steps at which the run in ``path`` refitted its input processing on resuming: the saved list, with
    ``start`` added (and a warning, saying ``why``: :func:`~downpour.data.resumed.decode_change`) when
    ``preprocess`` differs from the saved fit (files added or changed since, or the decoder)."""
    saved = saved_fit(path)
    if saved is None:
        return []                           # a run from before preprocess.*, or one whose fit was lost
    tensors, meta = saved
    refits = list(meta.get("refit_on_resume", []))
    new_tensors, new_meta = preprocess.state()
    same = (all(meta.get(k) == v for k, v in json.loads(json.dumps(new_meta)).items())
            and tensors.keys() == new_tensors.keys()
            and all(torch.equal(tensors[k], new_tensors[k].to(tensors[k].dtype)) for k in tensors))
    if same:
        return refits
    log.warning("%s: the input processing fitted on the data as it is now differs from the one this run began "
                "with (%s); the steps from %d on train on the data as it is now, and preprocess.json records the "
                "refit (refit_on_resume)", path, why, start)
    return [*refits, start]


def saved_fit(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The run's saved input processing (``preprocess.*``) as a resume reads it; None where it has no preprocess.json.
    One that does not verify (edited by hand, damaged) is a CheckpointError naming it, not written anew over without a
    word: the steps it records the fit was refitted at would be lost with it. The refusal says those steps where it
    records some (:func:`_recorded_refits`); else that a change of the data since the run began would go unrecorded
    (it speaks of no steps it has none of)."""
    try:
        return load_state(path / "preprocess", kind=PREPROCESS_RECORD)
    except CheckpointError as err:
        if not (path / "preprocess.json").is_file():
            return None
        refits = _recorded_refits(path / "preprocess.json")
        lost = (f"and lose the steps it records the input processing was refitted at ({refits})" if refits else
                "with nothing to compare its new fit with: a change of the data since the run began would go "
                "unrecorded")
        raise CheckpointError(f"{err}; the resume would write it anew, {lost}: put an intact copy back, or remove "
                              "preprocess.json and preprocess.safetensors to have the resume fit it anew"
                              + (" without that record" if refits else "")) from None


def _recorded_refits(record: Path) -> list[Any]:
    """The ``refit_on_resume`` a preprocess.json that does not verify records, read as it is; [] where it records none
    or is not a JSON object."""
    try:
        meta = json.loads(record.read_text())
    except (OSError, ValueError):
        return []
    refits = meta.get("refit_on_resume") if isinstance(meta, dict) else None
    return refits if isinstance(refits, list) else []


def check_classes(now: list[str] | None, run: Path) -> None:
    """A resume of a run trained on a folder's classes (``data.labels``) goes on with the classes it began with
    (``preprocess.json`` records them; a run from before it did: its data.json). A class folder added, removed or
    renamed since renumbers the classes (sorted names): the same images would train with other numbers, unsaid
    (a warning that the file list changed would not say so). ``now``: the data's ``info["classes"]``
    (None: not a labelled folder). DataError naming both lists. preprocess.json is read as the resume reads it
    (:func:`saved_fit`): one that does not verify is refused naming it, its classes not read (not compared, and said
    "then", from a file the resume refuses)."""
    if now is None:
        return
    saved = saved_fit(run)
    began = (saved[1].get("classes") if saved is not None else None) or recorded(run / DATA_JSON, "classes")
    if began is not None and list(began) != list(now):
        raise DataError(f"cannot resume {str(run)!r}: the classes under data.path changed since it began ({began} then, "
                        f"{now} now), so its images would train with other class numbers; restore the class folders, "
                        "or start a new run")
