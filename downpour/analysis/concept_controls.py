"""The face test's controls for the user's own concept: a labelled folder's class against low-level-matched images.

    result = concept_controls(model, twin, data, positive=2, layer="stage2", input_shape=(1, 32, 32), prepare=prep,
                              seeds=[0, 1, 2], kinds=("phase_scrambled", "block_shuffled", "spectrum_matched_crops"))
    result["rows"], result["verdict"]          # as face_controls': one row per (negative set, method)

The best single neuron's table scores a unit against the folder's other classes only, and a unit that tracks
brightness or texture energy passes it whenever the concept is brighter or busier than the rest. Here every
method of the face test (the learned unit, its random-weights twin, the best pixel, random filters, mean
intensity, contrast, gradient energy, the pixel probe) is chosen once per split, on the split's selection part
(the concept against the other classes, the same seeded splits as the table), and scored unchanged on its test
part: the concept's test images against the other classes' test images, and against controls built from the
concept's images (:mod:`downpour.analysis.negatives`); a split counts only the controls of its own test images,
so no control is made of an image its unit was chosen on. The pass criterion and its words are the face test's
(:func:`~downpour.analysis.face_verdict.controls_verdict`); the sets are named after the concept, not faces.

Upside-down is built only when ``analysis.concept_controls`` names it: it asks whether the unit needs the concept
upright, which is a face's (or a letter's) property; stripes, textures and symmetric shapes are their own
inversion, and a truly selective unit would "fail" it.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from torch import Tensor

from downpour.analysis.face_controls import View, face_test
from downpour.analysis.face_verdict import Subject
from downpour.analysis.labelled import LabelledSet
from downpour.analysis.negatives import block_grid
from downpour.analysis.selectivity import split
from downpour.config import ConfigError
from downpour.models.base import FeatureModel

OTHERS = "other_classes"      # the class-vs-class negative set (the face test's lfw non-faces)


def concept_subject(data: LabelledSet, positive: int, kinds: tuple[str, ...]) -> Subject:
    """The test's names for class ``positive`` of ``data``: "stripes image", "the other classes (blobs, noise)".
    ConfigError (analysis.concept_controls) when block_shuffled is asked for images no grid divides."""
    name = data.classes[positive]
    h, w = data.raw.shape[2:]
    blocks = block_grid(h, w)
    if "block_shuffled" in kinds and blocks is None:
        raise ConfigError(f"analysis.concept_controls: block_shuffled cuts each image into a grid of equal blocks, and "
                          f"{h}x{w} images (the model's input) have no common divisor for one; leave it out",
                          key="analysis.concept_controls")
    others = [c for k, c in enumerate(data.classes) if k != positive]
    return Subject(noun=f"{name} image", negatives=OTHERS, negatives_label=f"the other classes ({', '.join(others)})",
                   negatives_what=f"the held-out images of {data.name!r} not in class {name!r}", level="classes",
                   baselines=f"the folder's images resized to {list(data.raw.shape[1:])}, values in [0, 1], "
                             "no run-specific processing",
                   kinds=tuple(kinds), blocks=blocks or 0)


def concept_controls(model: FeatureModel, twin: FeatureModel, data: LabelledSet, *, positive: int, layer: str,
                     input_shape: tuple[int, ...], prepare: Callable[[Tensor], Tensor] | None, seeds: list[int],
                     kinds: tuple[str, ...], test_fraction: float = 0.5, n_random_filters: int = 2000, seed: int = 0,
                     replicates: int = 2000, other_layers: tuple[str, ...] = (), other_replicates: int = 500,
                     control_draws: int = 1) -> dict[str, Any]:
    """Every method on the other classes and on each control of class ``positive``'s held-out images; JSON-ready
    ``{"rows", "verdict", "by_layer", "negatives", "positives", "concept", ...}`` (:func:`face_test`'s, named).

    data.raw: (N, C, H, W) the folder's images as the baselines see them (the units see them resized to
    ``input_shape`` and ``prepare``d); ``seeds``: the best single neuron's split seeds (stratified,
    ``test_fraction`` held back), so each split chooses on the images the table chose on.
    """
    subject = concept_subject(data, positive, kinds)
    y = (data.y == positive).astype(np.int64)
    splits = [split(y, test_fraction, s) for s in seeds]
    tested = np.unique(np.concatenate([test for _, test in splits]))     # every image some split tests
    raw = np.ascontiguousarray(data.raw.numpy(), dtype=np.float32)
    test = face_test(raw, y, splits, [View(model, twin, tuple(input_shape), prepare)], layer=layer,
                     other_layers=other_layers, n_random_filters=n_random_filters, seed=seed, replicates=replicates,
                     other_replicates=other_replicates, control_draws=control_draws, tested=tested, subject=subject)
    positives = test.pop("faces")
    return {**test, "layer": layer, "select": "splits", "concept": data.classes[positive], "positives": positives,
            "selection": (f"the selection part of each of {len(splits)} seeded splits ({1 - test_fraction:g} of the "
                          f"images, the best single neuron's), {data.classes[positive]} against the other classes"),
            "split_seeds": list(seeds), "test_fraction": test_fraction}


def concept_part(model: FeatureModel, twin: FeatureModel, opts: Any, data: LabelledSet, layer: str,
                 shape: tuple[int, ...], prepare: Callable[[Tensor], Tensor] | None, seeds: list[int],
                 seed: int) -> dict[str, Any]:
    """:func:`concept_controls` with the analysis options ``opts`` (an AnalysisConfig), as analysis.json's
    ``face_neuron`` keys: ``controls``, ``controls_verdict``, ``controls_by_layer``, ``controls_setup``."""
    others = tuple(name for name in model.feature_layers() if name != layer)
    test = concept_controls(model, twin, data, positive=opts.positive, layer=layer, input_shape=shape, prepare=prepare,
                            seeds=seeds, kinds=tuple(opts.concept_controls), test_fraction=opts.test_fraction,
                            n_random_filters=opts.random_filters, seed=seed, replicates=opts.bootstrap,
                            other_layers=others, other_replicates=min(opts.bootstrap, 500),
                            control_draws=opts.control_draws)
    return {"controls": test["rows"], "controls_ties": test["ties"], "controls_verdict": test["verdict"],
            "controls_by_layer": test["by_layer"],
            "controls_setup": {k: test[k] for k in ("negatives", "positives", "concept", "representation", "bootstrap",
                                                     "select", "selection", "test_fraction", "split_seeds")}}
