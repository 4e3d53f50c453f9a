"""``analysis.poses``: images of one object at known out-of-plane angles, for the invariance sweep's out-of-plane curve
(:func:`downpour.analysis.invariance.invariance_curves`'s ``poses``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from downpour.analysis.labelled import BUILT_IN, load_labelled
from downpour.errors import ConfigError, DataError

if TYPE_CHECKING:
    from downpour.data.preprocess import Preprocess


def load_poses(path: str, shape: tuple[int, ...], prepare: Preprocess,
               jpeg_draft: bool = True) -> dict[float, torch.Tensor]:
    """``analysis.poses``: {angle: images} from a folder with one sub-folder per angle in degrees (``jpeg_draft``:
    the run's data.jpeg_draft)."""
    folder = path if path not in BUILT_IN else os.path.join(os.curdir, path)   # a folder named lfw or digits
    angles = sorted(p.name for p in Path(folder).iterdir() if p.is_dir()) if Path(folder).is_dir() else None
    if angles is not None and len(angles) < 2:     # (one sub-folder per pose, not per class)
        raise _too_few(path, angles)
    try:
        posed = load_labelled(folder, shape, prepare=prepare, jpeg_draft=jpeg_draft)
    except DataError as err:
        raise ConfigError(f"analysis.poses: {err}", key="analysis.poses") from None
    if len(posed.classes) < 2:      # (an empty or hidden one is no pose: it would give a one-point curve)
        raise _too_few(path, list(posed.classes), " holding images")
    out: dict[float, torch.Tensor] = {}
    named: dict[float, str] = {}
    for k, name in enumerate(posed.classes):
        try:
            angle = float(name)
        except ValueError:
            raise ConfigError(f"analysis.poses: sub-folder {name!r} of {path!r} is not an angle in degrees",
                              key="analysis.poses") from None
        if angle in out:          # (0 and 0.0: one of them was dropped without a word)
            raise ConfigError(f"analysis.poses: sub-folders {named[angle]!r} and {name!r} of {path!r} are the same angle "
                              f"({angle:g} degrees); put their images in one", key="analysis.poses")
        out[angle], named[angle] = posed.x[torch.from_numpy(posed.y == k)], name
    if 0.0 not in out:
        raise ConfigError(f"analysis.poses: {path!r} has no frontal pose (a sub-folder named 0), which the curve is "
                          f"measured against; its angles: {sorted(out)}", key="analysis.poses")
    return out


def _too_few(path: str, angles: list[str], holding: str = "") -> ConfigError:
    """The refusal of a poses folder with fewer than two sub-folders (``holding``: that hold images)."""
    return ConfigError(f"analysis.poses: folder {path!r} needs one sub-folder per pose, named by its angle in degrees "
                       f"(at least 2, one of them 0: the frontal view), found {angles}{holding}", key="analysis.poses")
