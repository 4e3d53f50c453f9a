"""What an analysis says of a model's first-layer filters (analysis.json's ``filters``): how edge-like they are,
how the first locally connected layer shares them, and what they are where the model says.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from downpour.analysis.edges import edge_measures
from downpour.layers import LocallyConnected2d
from downpour.models.base import FeatureModel
from downpour.train.environment import FILE as ENVIRONMENT, PACKAGES, differences, recorded
from downpour.train.machine import versions
from downpour.train.start_weights import check_start


def filter_stats(model: FeatureModel, filters: np.ndarray | None,
                 seed: int) -> tuple[dict[str, Any], np.ndarray | None]:
    """How edge-like the first-layer filters are (:func:`~downpour.analysis.edges.edge_summary`: the
    fraction that pass a test spikes, checkerboards and noise cannot, beside Gaussian noise's; its interval over the
    maps of a tiled or untied layer, ``edge_fraction_over``), how the first locally connected layer shares its filters,
    and ``what`` they are where the model says (``filters_what``); and the (n,) per-filter edge-like decision behind
    the fraction (:func:`~downpour.analysis.edges.edge_measures`; None where none was measured)."""
    if filters is None:
        return {"available": False}, None
    what = getattr(model, "filters_what", None)     # (None: no key, as in an analysis.json of before 2026-12-06)
    layer = next((m for m in model.modules() if isinstance(m, LocallyConnected2d)), None)
    banks = 1 if layer is None else layer.tile_shape[0] * layer.tile_shape[1]
    # a tiled or untied layer's filters (banks, maps) flattened: the L2 pools sum a map's neighbouring positions, which
    # lie in different banks (all 4 of the main job's in one 3x3 pool; chained by overlapping pools beyond), so the
    # edge-like share's interval counts maps, not filters
    by_map = banks > 1 and len(filters) == banks * layer.maps
    summary, edgy = edge_measures(filters, seed, np.arange(len(filters)) % layer.maps if by_map else None)
    out = {"available": True, **summary,
           "edge_fraction_over": "maps" if by_map else "filters", **({"what": what} if what else {}),
           # gabor, random: not learned
           "first_layer": getattr(getattr(model, "config", None), "first_layer", "learned")}
    if layer is not None:
        kind = "untied" if layer.untied else "convolution" if banks == 1 else "tiled"
        out["sharing"] = {"kind": kind, "banks": banks, "positions": layer.out_size[0] * layer.out_size[1]}
    return out, edgy


def from_start(filters: np.ndarray, start: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How far training moved each first-layer filter from the weights it started from: the cosine between each of
    ``filters`` (n, ...) and the same filter of ``start`` (the run's architecture built with its own seed, as
    training built it), mean, min and max; beside it ``other_draw``, the mean cosine with ``other`` (another seed's
    draw, the random twin's): what an unrelated start gives. 1: unmoved but for scale; near ``other_draw``: moved
    as far as another draw is."""
    def cosines(b: np.ndarray) -> np.ndarray:
        a, b = filters.reshape(len(filters), -1), b.reshape(len(b), -1)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1.0)   # (n,); 0 for an all-zero filter

    if filters.shape != start.shape or filters.shape != other.shape:
        raise ValueError(f"from_start: filters {filters.shape}, start {start.shape}, other {other.shape} differ")
    own = cosines(start)
    return {"mean": float(own.mean()), "min": float(own.min()), "max": float(own.max()),
            "other_draw": float(cosines(other).mean())}


def start_part(path: str | Path, filters: torch.Tensor, start: torch.Tensor, other: torch.Tensor,
               seed: int) -> dict[str, Any]:
    """analysis.json's ``filters.from_start`` of the run in ``path`` (:func:`from_start`), ``verified`` where
    ``start``, rebuilt from its ``seed``, is the start its environment.json fingerprinted
    (:mod:`~downpour.train.start_weights`), false where the run recorded none (trained before 2026-12-07); or, where
    it is another start, ``from_start_left_out``: why (a cosine with the wrong start would read as moved as far as
    another draw, whatever training did), with the package versions the run was trained under that are not these."""
    record = recorded(path)
    verified, wrong = check_start(record, start, seed, str(Path(path) / ENVIRONMENT))
    if wrong is not None:
        other = differences(record, versions(PACKAGES)) if record is not None else []
        return {"from_start_left_out": wrong + (f" (trained under {', '.join(other)})" if other else "")}
    moved = from_start(filters.numpy(), start.numpy(), other.numpy())
    return {"from_start": {**moved, "verified": verified}}
