"""A supervised network's own classifier scored on the images of its labelled source it trained on and on those it
never saw, each with Wilson's 95% interval over the images: analysis.json's ``classifier``.

Two built-in sources hold images out of training, each its own way, and are scored one way (:class:`Split`,
:func:`scored`):

- ``digits``: the share ``data.digits_heldout`` of scikit-learn's 1,797 digits, drawn with the run's seed
  (:mod:`downpour.data.digits_split`; 0 holds none out);
- ``faces``: lfw's held-out part (``data.lfw_heldout``: faces 70-99 and non-faces 170-199, or a fold's), the
  images the face test scores; the run trains on the rest (less the faces ``data.train_faces`` drops).

The probes of a supervised digits run are fitted on images the network trained on with their labels, so they
measure fit; a face unit of a supervised faces run is the training target's. The held-out images are the figure a
user of a classifier asks first, and the training images' beside it show the gap.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from downpour.analysis.intervals import wilson
from downpour.analysis.labelled import LabelledSet, load_labelled, prepare_images
from downpour.config import DataConfig, RunConfig
from downpour.data.builtin import lfw_all, lfw_indices, lfw_trained
from downpour.data.digits_split import digits_split, split_record


@dataclass(frozen=True)
class Split:
    """Which of a labelled source's images a run trained on and which it held out. ``dataset``: the labelled set's
    name (``digits``, ``lfw``); ``parts``: {"train": (n,), "heldout": (k,)} indices into every image of the source
    in its own order (k may be 0); ``record``: what analysis.json's ``classifier.split`` keeps of it (the setting
    that drew it and the sizes); ``none_held``: why no image is held out, said where k is 0."""

    dataset: str
    parts: dict[str, np.ndarray]
    record: dict[str, Any]
    none_held: str = ""


def digits_held(n: int, fraction: float, seed: int) -> Split:
    """The split of the ``n`` digits ``data.digits_heldout = fraction`` draws with ``seed`` (the training load's)."""
    return Split("digits", digits_split(n, fraction, seed), split_record(n, fraction, seed),
                 f"the run trained on every digit shipped ({n:,}, data.digits_heldout = 0): no digit is held out, so "
                 "there is no held-out accuracy; the training accuracy measures fit")


def lfw_held(cfg: DataConfig) -> Split:
    """The split of lfw's 200 images a ``faces`` run trained on: ``data.lfw_heldout``'s held-out part, and the
    training part less the faces ``data.train_faces`` drops (those are neither: never trained on, never scored)."""
    fold = cfg.lfw_fold()
    parts = {"train": lfw_trained(fold, cfg.train_faces), "heldout": lfw_indices(fold)["heldout"]}
    return Split("lfw", parts, {"lfw_heldout": cfg.lfw_heldout, "train": len(parts["train"]),
                                "heldout": len(parts["heldout"])})


def classifier_part(cfg: RunConfig, model: Any, shape: tuple[int, ...], prepare: Any,
                    loaded: LabelledSet | None = None) -> dict[str, Any]:
    """``{"classifier": ...}`` (:func:`scored`) for a supervised network trained on the digits or lfw's faces;
    ``{}`` otherwise (an unsupervised network has no classifier of its own; another source holds nothing out).
    ``loaded``: the digits as ``load_labelled("digits", shape, prepare=prepare)`` gives them, where the analysis
    has them already (its dataset or a probe's); without it they are loaded here. lfw's 200 images are loaded here
    (the analysis's lfw set is its held-out part alone), at the model's input and prepared as the face test's."""
    if not getattr(model, "supervised", False) or cfg.data.source not in ("digits", "faces"):
        return {}
    if cfg.data.source == "faces":
        c, h, _ = shape
        every = lfw_all(h, grey=c == 1)          # (200, C, h, h), faces first, as load_labelled("lfw") cuts its part
        x, y = prepare_images(every.x, shape, prepare), every.y.numpy()
        split = lfw_held(cfg.data)
    else:
        if loaded is not None and loaded.name != "digits":
            raise ValueError(f"classifier_part scores the digits; it was given the labelled set {loaded.name!r}")
        # every digit, in scikit-learn's order, prepared
        data = loaded if loaded is not None else load_labelled("digits", shape, prepare=prepare)
        x, y = data.x, data.y
        split = digits_held(len(y), cfg.data.digits_heldout, cfg.seed)
    with torch.no_grad():
        predicted = model.predict(x).numpy()
    return {"classifier": scored(predicted, y, split)}


def _part(correct: np.ndarray, idx: np.ndarray) -> dict[str, Any] | None:
    if not len(idx):
        return None
    hits = int(correct[idx].sum())
    p, low, high = wilson(hits, len(idx))
    return {"n": int(len(idx)), "correct": hits, "accuracy": p, "ci": [low, high]}


def scored(predicted: np.ndarray, y: np.ndarray, split: Split) -> dict[str, Any]:
    """The accuracy of ``predicted`` (N,) against the labels ``y`` (N,) of every image of ``split``'s source, on the
    run's training images (``train``) and on those it held out (``heldout``: None where it held out none, and
    ``note`` says so), each {n, correct, accuracy, ci: Wilson 95% [low, high]}; ``split``: the record of what drew
    them; ``chance``: the majority class's share of every image (the accuracy of always answering it)."""
    parts = split.parts
    if np.intersect1d(parts["train"], parts["heldout"]).size:   # the whole figure rests on it
        raise AssertionError(f"the held-out {split.dataset} images ({split.record}) overlap the training ones")
    y = np.asarray(y)
    correct = np.asarray(predicted) == y
    out = {"dataset": split.dataset, "split": split.record, "chance": float(np.bincount(y).max() / len(y)),
           "train": _part(correct, parts["train"]), "heldout": _part(correct, parts["heldout"])}
    if out["heldout"] is None:
        out["note"] = split.none_held
    return out
