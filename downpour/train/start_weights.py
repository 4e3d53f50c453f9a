"""The weights a run started from, fingerprinted: environment.json's ``start_weights``, written at a run's step 0 (a
resume keeps the first go's), so that the analysis can check that the start it rebuilds from the run's seed (its
``filters.from_start``) is the one training began from::

    "start_weights": {"sha256": "9f2c...", "shape": [16, 1, 3, 3]}

The digest is of the first-layer filters (:meth:`~downpour.models.base.FeatureModel.first_layer_filters`, what
``from_start`` compares) as float32 bytes: a few kB to a few MB, hashed once per run, never per step. Each runner
takes it on the CPU before the model moves to a device, where the analysis rebuilds it, so both sides compute the
filters alike.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from downpour.models.base import FeatureModel

KEY = "start_weights"


def digest(filters: torch.Tensor) -> dict[str, Any]:
    """``{"sha256", "shape"}`` of ``filters`` (n, C, kh, kw) as contiguous float32 bytes."""
    a = filters.detach().to("cpu", torch.float32).contiguous().numpy()
    return {"sha256": hashlib.sha256(a.tobytes()).hexdigest(), "shape": list(a.shape)}


def fingerprint(model: FeatureModel) -> dict[str, Any] | None:
    """:func:`digest` of ``model``'s first-layer filters as they are now (a runner's: before its first step); None for
    a model without filters to picture (the analysis has no ``from_start`` for it either)."""
    filters = model.first_layer_filters()
    return None if filters is None else digest(filters)


def check_start(record: dict[str, Any] | None, rebuilt: torch.Tensor, seed: int,
                file: str) -> tuple[bool, str | None]:
    """(verified, why not): the filters ``rebuilt`` from the run's ``seed`` against the fingerprint its
    environment.json (``record``, named ``file``) holds. (True, None): the same; (False, None): no fingerprint (a run
    trained before 2026-12-07), so nothing to check; (False, reason): another start, or a fingerprint that cannot be
    read, the reason naming both."""
    kept = None if record is None else record.get(KEY)
    if kept is None:
        return False, None
    head = f"the starting weights rebuilt from seed {seed} are not the ones training started from"
    if not (isinstance(kept, dict) and isinstance(kept.get("sha256"), str) and isinstance(kept.get("shape"), list)):
        return False, f"{head}: {file}'s {KEY} is {kept!r}, not a {{sha256, shape}} table downpour wrote"
    now = digest(rebuilt)
    if now == {"sha256": kept["sha256"], "shape": kept["shape"]}:
        return True, None
    said = (f"their shape is {now['shape']}, {file}'s {KEY} records {kept['shape']}" if now["shape"] != kept["shape"]
            else f"their SHA-256 is {now['sha256'][:12]}..., {file}'s {KEY} records {kept['sha256'][:12]}...")
    return False, (f"{head}: the first-layer filters built with it differ ({said}); a torch draw before the model is "
                   "built, or a run trained by another version of downpour or torch, gives another start, so "
                   "filters.from_start is left out")
