"""Whether a resume's input processing, fitted again on the data as it is now, is the one its run began with.

    refits = refits_after(run.path, preprocess, start)   # preprocess.json's refit_on_resume, ``start`` added on a change
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from downpour.train.checkpoint import CheckpointError, load_state

if TYPE_CHECKING:
    from downpour.data.preprocess import Preprocess

log = logging.getLogger(__name__)


def refits_after(path: Path, preprocess: "Preprocess", start: int, why: str = "the data changed since?") -> list[int]:
    """The steps at which the run in ``path`` refitted its input processing on resuming: the saved list, with
    ``start`` added (and a warning, saying ``why``: :func:`~downpour.data.pipeline.decode_change`) when
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
    One that does not verify (edited by hand, damaged) is a CheckpointError naming it: a resume wrote it anew over
    it without a word until 2026-12-05, and the steps it recorded the fit was refitted at were lost with it."""
    try:
        return load_state(path / "preprocess")
    except CheckpointError as err:
        if not (path / "preprocess.json").is_file():
            return None
        raise CheckpointError(f"{err}; the resume would write it anew, and lose the steps it records the input "
                              "processing was refitted at: put an intact copy back, or remove preprocess.json and "
                              "preprocess.safetensors to have the resume fit it anew without that record") from None
