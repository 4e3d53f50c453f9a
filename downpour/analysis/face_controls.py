"""The honest face test: held-out faces against lfw non-faces and low-level-matched controls.

    result = face_controls(model, twin, layer="stage2", input_shape=(1, 32, 32), prepare=prep, seeds=range(50))
    result["rows"]       # one per (negative set, method): auc, auc_ci, accuracy_mean, accuracy_std, ...
    result["verdict"]    # which baselines the learned unit beats on each negative set, in words

Faces: the held-out part of lfw (30 faces, 30 non-faces, never trained on), at their native 25 x 25
grey. Negatives, each scored separately: the 30 lfw non-faces, and four controls built from the
faces (:mod:`downpour.analysis.negatives`). Every method is chosen once on faces vs lfw non-faces
(by default on lfw's training part; ``select="heldout"``: per split of the held-out images) and
scored unchanged on every negative set (:mod:`downpour.analysis.controls`). The
learned unit and its random-weights twin see the run's prepared input (resized, then ``prepare``,
as :func:`~downpour.analysis.labelled.load_labelled` does); every other method sees the fixed raw
representation (:mod:`downpour.analysis.baselines`), the same for every run. The methods' names and the verdict's
words: :mod:`downpour.analysis.face_verdict`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from downpour.analysis import baselines
from downpour.analysis.controls import Responses, score_controls, ties_once
from downpour.analysis.face_verdict import (FACES, GRADIENT, LEARNED, LOW_LEVEL, NO_FACES, PER_NETWORK, PIXEL, PROBE,
                                           TWIN, Subject, controls_verdict)
from downpour.analysis.headroom import headroom
from downpour.analysis.labelled import prepare_images
from downpour.analysis.negatives import build_controls, joined
from downpour.analysis.choice import NoCandidate
from downpour.analysis.selectivity import split
from downpour.analysis.units import check_layer, layer_responses, unit_responses
from downpour.models.base import FeatureModel

SELECT = ("train", "heldout")       # where each method is chosen (face_controls' ``select``)
CHOICE = ("nonfaces", "localizer")  # against what (``choice``): lfw non-faces | also the choosing faces' controls


@dataclass
class View:
    """How one trained network sees the test images: the model, its random-weights twin, the input
    shape (C, H, W), the run's own input processing and, optionally, the same recipe trained without
    a face: ``no_faces`` = (its model, its own input processing, fitted on its own data), scored as
    one more method."""

    model: FeatureModel
    twin: FeatureModel
    input_shape: tuple[int, ...]
    prepare: Callable[[Tensor], Tensor] | None
    no_faces: tuple[FeatureModel, Callable[[Tensor], Tensor] | None] | None = None


def face_controls(model: FeatureModel, twin: FeatureModel, *, layer: str | None, input_shape: tuple[int, ...],
                  prepare: Callable[[Tensor], Tensor] | None, seeds: list[int], test_fraction: float = 0.5,
                  n_random_filters: int = 2000, seed: int = 0, replicates: int = 2000,
                  other_layers: tuple[str, ...] = (), other_replicates: int = 500,
                  select: str = "train", control_draws: int = 1, fold: tuple[int, int] | None = None,
                  choice: str = "nonfaces",
                  no_faces: tuple[FeatureModel, Callable[[Tensor], Tensor] | None] | None = None) -> dict[str, Any]:
    """Every method on every negative set, each chosen once; JSON-ready ``{"rows", "verdict", ...}``.

    ``select`` says where every method is chosen: ``"train"`` (the default) on the 140 images of
    lfw's training part (70 faces, 70 non-faces: unsupervised training may have seen them, never
    their labels), then scored on all 60 held-out images and every control (one split, ``seeds``
    unused); ``"heldout"``: per seeded split of the 60 held-out images, chosen on one part, scored
    on the other (15 faces per test). Choosing among hundreds of units on 30 images picks lucky ones
    (cat-demo's chosen unit: selection AUC 0.92, test 0.69); 140 images and twice the test faces
    narrow both the choice and the intervals.
    ``fold``: the run's ``data.lfw_fold()``; lfw's parts are then that fold's (160 choose, 40 test
    for fold i of 5). :func:`~downpour.analysis.crossfit.crossfit_controls` pools every fold's run.
    ``control_draws``: images per face in each random control (more average out one draw's luck).
    ``choice``: what each method is chosen against (:func:`face_test`).
    ``no_faces``: (model, its input processing) of the same recipe trained with ``data.train_faces = 0``,
    scored as one more method (:class:`View`).
    ``seed`` draws the controls (phase noise, block orders, crops), the random filters (the same bank
    as :func:`~downpour.analysis.selectivity.face_neuron_tables` with ``seeds[0] == seed``) and the
    bootstrap; ``seeds`` are the split seeds (stratified, ``test_fraction`` held back for testing).
    ``by_layer``: the learned unit's result in brief for ``layer``, then for each of ``other_layers``,
    scored on the same images and splits against the methods the criterion needs (twin at that layer,
    best pixel, gradient energy; ``other_replicates`` bootstrap replicates); an other layer with no
    unit that can be chosen (non-finite responses) gets ``not_measured`` (the reason) and no negatives.
    """
    from downpour.data import lfw_split

    layer = check_layer(model, layer)
    if select not in SELECT:
        raise ValueError(f"face test: select must be one of {SELECT}, got {select!r}")
    parts = lfw_split(size=25, grey=True, fold=fold)
    held = parts["heldout"]
    sources = [held] if select == "heldout" else [parts["train"], held]   # sources: the choosing images first
    raw = np.concatenate([p.x.numpy() for p in sources])
    y = np.concatenate([p.y.numpy() for p in sources])
    first = len(y) - len(held.y)                                         # held-out sources start here
    splits = ([split(y, test_fraction, s) for s in seeds] if select == "heldout"
              else [(np.arange(first), np.arange(first, len(y)))])
    test = face_test(raw, y, splits, [View(model, twin, input_shape, prepare, no_faces)], layer=layer, other_layers=other_layers,
                     n_random_filters=n_random_filters, seed=seed, replicates=replicates,
                     other_replicates=other_replicates, control_draws=control_draws, tested=np.arange(first, len(y)),
                     choice=choice)
    return {
        **test, "layer": layer, "select": select,
        "selection": (f"each of {len(splits)} seeded splits of the held-out images, {1 - test_fraction:g} of them"
                      if select == "heldout" else
                      f"the {first} images of lfw's training part ({int(y[:first].sum())} faces)"),
        "split_seeds": list(seeds) if select == "heldout" else [],
        "test_fraction": test_fraction if select == "heldout" else 1.0,
    }


def face_test(raw: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], views: list[View], *,
              layer: str, other_layers: tuple[str, ...] = (), n_random_filters: int = 2000, seed: int = 0,
              replicates: int = 2000, other_replicates: int = 500, control_draws: int = 1,
              tested: np.ndarray, choice: str = "nonfaces", subject: Subject = FACES) -> dict[str, Any]:
    """The face test on source images ``raw`` (n, 1, 25, 25) with labels ``y`` (1 = face) and ``splits``
    (selection, test) of them; the controls are built from the ``tested`` faces (the rows any split
    may test; with the localizer, from every face) and the lfw negatives are the ``tested`` non-faces.

    ``views``: one per split (split s scores the units of ``views[s]``: cross-fitting), or one for all.
    ``choice``: ``"nonfaces"`` chooses every method on the selection faces vs non-faces (the
    candidate whose AUC is furthest from 0.5). ``"localizer"`` also builds the controls from the
    selection faces and chooses the candidate whose *worst* selection AUC, over the non-faces and
    each control, is highest, as a face area is localised with faces against objects and scrambled
    faces; the test is unchanged (only controls built from test faces count). One rule for every
    method; a one-candidate method (a statistic, the probe) only takes its side from it.
    Returns ``{"rows", "verdict", "by_layer", "negatives", "faces", "representation", "bootstrap"}``, and with
    one view per split ``"headroom"`` (:func:`~downpour.analysis.headroom.headroom`, a diagnostic).
    ``subject``: what is tested, in the sets' names and words (label 1's images, "faces" above), and which
    controls are built (default: lfw's faces, all four).
    """
    if len(views) not in (1, len(splits)):
        raise ValueError(f"face test: {len(views)} views for {len(splits)} splits (give one, or one per split)")
    if choice not in CHOICE:
        raise ValueError(f"face test: choice must be one of {CHOICE}, got {choice!r}")
    if len({v.no_faces is None for v in views}) > 1:
        raise ValueError("face test: every view needs its no-faces network, or none does")
    face_rows = tested[y[tested] == 1]
    draw_controls, draw_bootstrap, draw_choosing = np.random.SeedSequence(seed).spawn(3)   # independent streams
    # the tested faces' controls from their own stream, the same under either choice; the localizer's choosing
    # faces' from another (drawn from one stream, the tested faces' were other draws under each choice)
    build = dict(blocks=subject.blocks, draws=control_draws, kinds=subject.kinds, noun=subject.noun)
    controls = build_controls(raw[face_rows], np.random.default_rng(draw_controls), **build)
    built_from = face_rows
    choosing = np.setdiff1d(np.flatnonzero(y == 1), face_rows) if choice == "localizer" else face_rows[:0]
    if len(choosing):
        more = build_controls(raw[choosing], np.random.default_rng(draw_choosing), **build)
        controls = [joined(c, m, len(built_from)) for c, m in zip(controls, more)]
        built_from = np.concatenate([face_rows, choosing])
    images = np.concatenate([raw] + [c.x for c in controls])             # (M, 1, 25, 25): sources, then controls
    source = np.concatenate([np.arange(len(y))] + [built_from[c.source] for c in controls])
    negatives, start = {subject.negatives: tested[y[tested] == 0]}, len(y)
    for c in controls:
        negatives[c.name] = np.arange(start, start + len(c.x))
        start += len(c.x)

    seen = [prepare_images(torch.from_numpy(images), v.input_shape, v.prepare) for v in views]

    # every layer the test reads, from one pass of each network on the first read (float32 until read, popped
    # then): a pass per layer ran cat-demo's stage 1 six times; the reads took 0.45 s instead of 0.12, and on a
    # machine at load 8, 22 of the analysis's 54 s (bench/layer_responses.py)
    read: dict[tuple[str, bool], list[np.ndarray]] = {}     # (layer, twin?) -> (M, U) per view

    def units(name: str, twin: bool) -> Responses:        # one (M, U) float64 array, or one per split
        if (name, twin) not in read:
            wanted = list(dict.fromkeys((name, layer, *other_layers)))
            per_view = [layer_responses(v.twin if twin else v.model, x, wanted, dtype=np.float32)
                        for v, x in zip(views, seen)]
            read.update({(n, twin): [r[n] for r in per_view] for n in wanted})
        out = [r.astype(np.float64) for r in read.pop((name, twin))]
        return out[0] if len(out) == 1 else out

    def no_faces_units() -> Responses:                    # its own input processing: fitted without faces
        out = [unit_responses(v.no_faces[0], prepare_images(torch.from_numpy(images), v.input_shape, v.no_faces[1]),
                              layer) for v in views]
        return out[0] if len(out) == 1 else out

    pixels = baselines.pixels(images)                                    # (M, 625): the fixed representation
    statistics = {name: v[:, None] for name, v in baselines.statistics(images).items()}
    methods: dict[str, Responses] = {
        LEARNED: units(layer, False),
        TWIN: units(layer, True),
        **({NO_FACES: no_faces_units()} if views[0].no_faces is not None else {}),
        PIXEL: pixels,
        f"best of {n_random_filters} random linear filters":
            pixels @ baselines.random_directions(pixels.shape[1], n_random_filters, seed),
        **statistics,
        PROBE: lambda select: baselines.probe(pixels[select], y[select]).decision_function(pixels)[:, None],
    }
    levels = {name: subject.level if name == subject.negatives else LOW_LEVEL for name in negatives}
    labels = subject.labels()
    localizer = tuple(c.name for c in controls) if choice == "localizer" else ()
    try:
        rows = score_controls(methods, y, negatives, source, splits, replicates=replicates, seed=draw_bootstrap,
                              levels=levels, paired=LEARNED, per_split=len(views) > 1, localizer=localizer,
                              networks=PER_NETWORK if len(views) > 1 else ())   # (heldout: 1 network, k splits)
    except ValueError as err:           # (a unit with non-finite responses: name the layer it is in)
        raise (NoCandidate if isinstance(err, NoCandidate) else ValueError)(
            f"the face test on layer {layer!r}: {err}") from None
    verdict = controls_verdict(rows, labels=labels)
    by_layer = [_brief(layer, verdict, rows)]
    for other in other_layers:          # the same images, splits and bootstrap draw; only the units change
        needed = {LEARNED: units(other, False), TWIN: units(other, True), PIXEL: pixels, GRADIENT: statistics[GRADIENT]}
        try:
            other_rows = score_controls(needed, y, negatives, source, splits, replicates=other_replicates,
                                        seed=draw_bootstrap, levels=levels, paired=LEARNED, localizer=localizer)
        except ValueError as err:       # a diagnostic row: it does not take the analysed layer's test down
            by_layer.append({"layer": other, "passes_low_level": None, "negatives": [], "not_measured": str(err)})
            continue
        by_layer.append(_brief(other, controls_verdict(other_rows, labels=labels), other_rows))
    rows, ties = ties_once(rows)
    result = {
        "rows": rows, "ties": ties, "verdict": verdict, "by_layer": by_layer,
        "negatives": {subject.negatives: {"label": subject.negatives_label, "images": len(negatives[subject.negatives]),
                                          "what": subject.negatives_what},
                      **{c.name: {"label": labels[c.name], "images": int(np.isin(built_from[c.source], tested).sum()),
                                  **c.info} for c in controls}},
        "faces": int(len(face_rows)),
        "choice": choice,
        "representation": {"baselines": subject.baselines,
                           "units": f"resized to {list(views[0].input_shape)}, then the run's own input processing"},
        "bootstrap": {"replicates": replicates, "interval": "percentile 95%", "seed": int(seed),
                      "stream": "numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(3)[1])",
                      "resamples": "source images (faces, non-faces separately); controls follow their face; "
                                   "choices fixed per split, AUC averaged over splits"},
    }
    if len(views) > 1:    # one network per split: how far each split's choice is from its network's best unit
        result["headroom"] = headroom(methods[LEARNED], y, negatives, source, splits, tuple(c.name for c in controls),
                                      localizer=localizer)
    return result


def _brief(layer: str, verdict: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One layer's face test in brief: the learned unit's AUC [CI] per negative set, whether it passes, and its
    tie's ``undecided`` / ``tie_spread_limit`` / ``tie_rule`` (its row's in ``rows``, :func:`score_controls`)."""
    learned = {r["negatives"]: r for r in rows if r["method"] == LEARNED}
    return {"layer": layer, "passes_low_level": verdict["passes_low_level"],
            "negatives": [{"negatives": p["negatives"], "auc": p["learned_auc"], "auc_ci": p["learned_auc_ci"],
                           "passes": p["passes"], "paired": p["paired"],
                           **{k: learned[p["negatives"]][k] for k in ("undecided", "tie_spread_limit", "tie_rule")}}
                          for p in verdict["per_negatives"]]}
