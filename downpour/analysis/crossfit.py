"""Cross-fitting the face test: every lfw face is tested once, by a network that never trained on it.

    views = [View(model_i, twin_i, input_shape, prepare_i) for i in range(5)]   # run i: data.lfw_heldout = "fold:i:5"
    result = crossfit_controls(views, layer="stage2/codes", seed=0)
    result["rows"], result["verdict"]                                          # as face_controls'

``lfw_subset`` ships 100 faces. The fixed split tests 30 of them, and with 30 faces the random
twin's 95% interval on a control is about 0.2 wide (0.11 with 100 faces on the main job): a unit
can be better than the twin and still not clear it. Cross-fitting tests all 100. Fold i of K holds out every K-th face and non-face
from i (:func:`~downpour.data.builtin.lfw_indices`); run i trained without them. Per fold, every
method is chosen on the other images (faces vs non-faces, as the fixed split chooses on lfw's
training part), with run i's units, and scored on fold i's faces against fold i's non-faces and
the controls built from fold i's faces. The AUC is the plain mean over folds (folds of unequal size,
K not dividing 100, count alike); the bootstrap resamples all 200 images at once, so the interval is
that of 100 test faces. The interval does not cover training: each fold is a different network.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from downpour._names import pasted
from downpour.analysis.face_controls import LEARNED, View, face_test
from downpour.errors import NotARunError


def crossfit_controls(views: list[View], *, layer: str, other_layers: tuple[str, ...] = (),
                      n_random_filters: int = 2000, seed: int = 0, replicates: int = 2000,
                      other_replicates: int = 500, control_draws: int = 1, choice: str = "nonfaces") -> dict[str, Any]:
    """The face test pooled over ``len(views)`` folds: ``views[i]`` is the run that held out fold i.

    Returns face_controls' keys (``rows``, ``verdict``, ``by_layer``, ``negatives``, ``faces``, ...)
    plus ``folds`` and ``per_fold`` (each fold's images, its learned unit, that unit's AUC on each
    negative set, and its ``headroom``: the best worst-control AUC any unit of the fold's network
    reaches, chosen by peeking at the test; see :mod:`~downpour.analysis.headroom`). ``choice``: what
    every method is chosen against (:func:`~downpour.analysis.face_controls.face_test`). Rows carry
    ``split_auc``: each fold's AUC.
    """
    from downpour.data import lfw_all, lfw_indices

    folds = len(views)
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    every = lfw_all(size=25, grey=True)
    parts = [lfw_indices((i, folds)) for i in range(folds)]
    splits = [(p["train"], p["heldout"]) for p in parts]
    test = face_test(every.x.numpy(), every.y.numpy(), splits, views, layer=layer, other_layers=other_layers,
                     n_random_filters=n_random_filters, seed=seed, replicates=replicates,
                     other_replicates=other_replicates, control_draws=control_draws,
                     tested=np.arange(len(every.y)), choice=choice)
    y = every.y.numpy()
    learned = [r for r in test["rows"] if r["method"] == LEARNED]
    room = test.pop("headroom")
    return {
        **test, "layer": layer, "select": "crossfit", "folds": folds,
        # (not "its run trained on": a run of natural patches, or data.train_faces = 0, trained on no such face)
        "selection": (f"the {_span(len(s) for s, _ in splits)} images of its fold's training part of lfw "
                      f"({_span(int(y[s].sum()) for s, _ in splits)} faces)"),
        "per_fold": [{"fold": i, "test_faces": int(y[t].sum()), "test_non_faces": int(len(t) - y[t].sum()),
                      "select_images": len(s), "learned_unit": learned[0]["split_unit"][i],
                      "learned_auc": {r["negatives"]: r["split_auc"][i] for r in learned},
                      "headroom": room[i]}
                     for i, (s, t) in enumerate(splits)],
    }


def _span(values) -> str:
    """``"132"``, or ``"132-134"`` where the folds differ."""
    values = list(values)
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def crossfit_record(folder: Path) -> Path:
    """``folder/crossfit.json``, or NotARunError saying what ``folder`` is instead (from Python, a run's folder or
    a mistyped one: it was a bare FileNotFoundError)."""
    record = folder / "crossfit.json"
    if record.is_file():
        return record
    if not folder.exists():
        raise NotARunError(f"{str(folder)!r} does not exist")
    what = (f"it is a run (config.toml); `downpour report {pasted(folder)}` writes its report"
            if (folder / "config.toml").is_file() else "it is not the --out of a `downpour crossfit`, which writes it")
    raise NotARunError(f"{str(folder)!r} holds no crossfit.json: {what}")
