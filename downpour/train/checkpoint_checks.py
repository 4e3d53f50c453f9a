"""What a checkpoint's contents must be before anything is trained or analysed from them: floating-point tensors
of the model's dtypes and finite, whole step counts, stream positions that can be gone on from (the files' own
digests are :mod:`downpour.train.checkpoint`'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor

from downpour._names import plural
from downpour.data.positions import position_problem
from downpour.errors import CheckpointError
from downpour.settings import is_count


def check_dtypes(want: dict[str, Tensor], tensors: dict[str, Tensor], path: str | Path) -> None:
    """CheckpointError naming ``path`` unless each of ``tensors`` that is a floating-point entry of ``want`` (a
    model's state_dict) has its dtype: load_state_dict casts silently (integer weights loaded as whole numbers)."""
    for key, value in tensors.items():
        if key in want and want[key].is_floating_point() and value.dtype != want[key].dtype:
            raise CheckpointError(f"{str(path)!r}: tensor {key!r} is {value.dtype}, the model's is {want[key].dtype} "
                                  "(a damaged or replaced file)")


def check_finite(tensors: dict[str, Tensor], path: str | Path) -> None:
    """CheckpointError naming ``path`` and the first tensor of ``tensors`` holding a NaN or infinity: training
    applies no such update, so the file was written by another tool (or a finite step overflowed); resumed, every
    step's cost would be NaN, every step skipped, and the run would end 'finished' with a model of NaNs."""
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{str(path)!r}: tensor {key!r} holds {plural(bad, 'non-finite value')} of {value.numel()}; "
                                  "nothing can be trained or analysed from it (resume from another copy of the run)")


def check_counts(meta: dict[str, Any], keys: Iterable[str], stem: str | Path) -> None:
    """CheckpointError naming ``stem``'s JSON unless each of ``keys`` in ``meta`` is a whole number >= 0
    (a step, a count), and the steps skipped are no more than the steps taken: a hand-edited ``"step":
    "95"`` gave a TypeError far from the file, and ``skipped`` above ``step`` a false "every step was skipped"."""
    for key in keys:
        value = meta[key]
        if not is_count(value):
            what = "a step number" if key == "step" else "a whole number >= 0"
            raise CheckpointError(f"checkpoint file {str(Path(stem).with_suffix('.json'))!r}: {key} is {value!r}, not {what}")
    if "skipped" in keys and meta["skipped"] > meta["step"]:
        raise CheckpointError(f"checkpoint file {str(Path(stem).with_suffix('.json'))!r}: {meta['skipped']} steps skipped "
                              f"of {meta['step']}")


def check_streams(meta: dict[str, Any], stem: str | Path) -> None:
    """CheckpointError naming ``stem``'s JSON unless the stream positions it holds can be gone on from, as a resume
    reads them (:func:`~downpour.data.positions.position_problem`): a local checkpoint's ``data``, the simulator's
    workers' ``streams`` (each a seed step and a position) and the patches per image a streamed cluster run cut
    (``patches_per_image``). A hand-edited value was a bare error deep in the loader, or a count read as another
    (2.5 as 2, true as 1); ``downpour train --resume --dry-run`` checks them too."""
    where = str(Path(stem).with_suffix(".json"))
    count = meta.get("patches_per_image", 1)
    if not is_count(count, 1):
        raise CheckpointError(f"checkpoint file {where!r} records patches_per_image = {count!r}, not a positive whole "
                              "number (a damaged checkpoint)")
    streams = meta.get("streams") or []
    if not isinstance(streams, list) or not all(isinstance(s, dict) and {"seed_step", "position"} <= s.keys()
                                                for s in streams):
        raise CheckpointError(f"checkpoint file {where!r}: its streams are not a list of seed steps and positions "
                              "(a damaged checkpoint)")
    for s in streams:
        check_counts(s, ("seed_step",), stem)
    positions = [s["position"] for s in streams] + ([meta["data"]] if meta.get("data") is not None else [])
    for position in positions:
        problem = position_problem(position)
        if problem is not None:
            raise CheckpointError(f"checkpoint file {where!r}: {problem} (a damaged checkpoint)")
    counts = {p.get("patches") for p in positions} | {meta.get("patches_per_image")}
    if len(counts - {None}) > 1:
        raise CheckpointError(f"checkpoint file {where!r} records {sorted(counts - {None})} patches per image for one "
                              "stream cut (a damaged checkpoint)")
