"""A supervised network's own classifier scored on the digits it trained on and on those it never saw
(``data.digits_heldout``), each with Wilson's 95% interval over the images: analysis.json's ``classifier``.

The probes of such a run are fitted on images the network trained on with their labels, so they measure fit; the
held-out digits are the figure a user of a classifier asks first, and the training digits' beside it show the gap.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from downpour.analysis.intervals import wilson
from downpour.analysis.labelled import LabelledSet, load_labelled
from downpour.config import RunConfig
from downpour.data.digits_split import digits_split, split_record


def classifier_part(cfg: RunConfig, model: Any, shape: tuple[int, ...], prepare: Any,
                    loaded: LabelledSet | None = None) -> dict[str, Any]:
    """``{"classifier": ...}`` (:func:`scored`) for a supervised network trained on the digits; ``{}`` otherwise
    (an unsupervised network has no classifier of its own; another source's split is not this one). ``loaded``: the
    digits as ``load_labelled("digits", shape, prepare=prepare)`` gives them, where the analysis has them already
    (its dataset or a probe's); without it they are loaded here."""
    if not getattr(model, "supervised", False) or cfg.data.source != "digits":
        return {}
    if loaded is not None and loaded.name != "digits":
        raise ValueError(f"classifier_part scores the digits; it was given the labelled set {loaded.name!r}")
    # every digit, in scikit-learn's order, prepared
    data = loaded if loaded is not None else load_labelled("digits", shape, prepare=prepare)
    with torch.no_grad():
        predicted = model.predict(data.x).numpy()
    return {"classifier": scored(predicted, data.y, cfg.data.digits_heldout, cfg.seed)}


def _part(correct: np.ndarray, idx: np.ndarray) -> dict[str, Any] | None:
    if not len(idx):
        return None
    hits = int(correct[idx].sum())
    p, low, high = wilson(hits, len(idx))
    return {"n": int(len(idx)), "correct": hits, "accuracy": p, "ci": [low, high]}


def scored(predicted: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> dict[str, Any]:
    """The accuracy of ``predicted`` (N,) against the labels ``y`` (N,) of every digit, on the run's training digits
    (``train``) and on those it held out (``heldout``: None where it held out none, and ``note`` says so), each
    {n, correct, accuracy, ci: Wilson 95% [low, high]}; ``split``: the share, seed and sizes that drew them."""
    parts = digits_split(len(y), fraction, seed)
    if np.intersect1d(parts["train"], parts["heldout"]).size:   # the whole figure rests on it
        raise AssertionError(f"the held-out digits (seed {seed}) overlap the training ones")
    correct = np.asarray(predicted) == np.asarray(y)
    out = {"dataset": "digits", "split": split_record(len(y), fraction, seed),
           "chance": float(np.bincount(y).max() / len(y)),     # the majority class's share of every digit
           "train": _part(correct, parts["train"]), "heldout": _part(correct, parts["heldout"])}
    if out["heldout"] is None:
        out["note"] = (f"the run trained on every digit shipped ({len(y):,}, data.digits_heldout = 0): no digit is "
                       "held out, so there is no held-out accuracy; the training accuracy measures fit")
    return out
