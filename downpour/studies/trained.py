"""A study cell that trains: the real runner into a run directory, then the analysis's own measures.

    with trained_run(cfg) as (run, model, summary), no_faces_twin(cfg) as twin:   # runners.train, twice
        edges = edge_fraction(model)                      # analysis/edges.py
        probes = probe_accuracies(run, model, ("digits", "lfw"), layers=["stage1", "stage2"])
        faces = face_aucs(run, model, no_faces=twin)      # analysis/face_controls.py, the matched controls
        owed = owed_figures(faces)                        # ... against the same recipe trained without a face

``no_faces_twin`` trains the cell's config again with ``data.train_faces = 0`` (None where its data hold
no lfw face); the face test chooses that network's unit the same way and scores it on the same images,
so ``face_owed_controls`` (the learned unit's AUC minus the twin's) is paired within the cell and its
interval over seeds says whether the arm's face unit owes anything to the faces (docs/studies.md).

The run directory is temporary (the study framework hands a cell no folder of its own); everything a
cell reports is read from it the way ``downpour analyze`` reads a finished run: the model and its
fitted input processing from disk, the cost parts from ``metrics.jsonl``. The measures are the
analysis's functions at study-sized settings (fewer random filters, probe images and bootstrap
replicates than a full ``downpour analyze``; the face unit is chosen the same way). scikit-learn runs with
one BLAS thread, as :func:`~downpour.analysis.run.analyze_run` does: with more, its BLAS and torch's
pools fight over the cores (a 3 s probe took 44 s on 2 cores).
"""
from __future__ import annotations

import logging
import math
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from downpour.analysis.blas import one_blas_thread
from downpour.analysis.edges import edge_summary
from downpour.analysis.face_controls import LEARNED, LOW_LEVEL, NO_FACES, face_controls
from downpour.analysis.labelled import load_labelled
from downpour.analysis.probe import probe_table
from downpour.analysis.options import open_run, run_preprocess
from downpour.analysis.choice import NoCandidate
from downpour.analysis.controls import tied_set
from downpour.analysis.units import check_layer, randomized_copy
from downpour.config import RunConfig
from downpour.errors import Diverged
from downpour.models.base import FeatureModel
from downpour.objectives import is_metric
from downpour.runners import train
from downpour.studies.scratch import cell_folder
from downpour.train.divergence import diverged_words
from downpour.train.rundir import RunDir
from downpour.twins import no_faces_config

log = logging.getLogger(__name__)

__all__ = ["FACE_TEST", "FACE_TEST_WITH_TWIN", "OWED", "cost_curve", "edge_fraction", "face_aucs", "face_draws",
           "no_faces_twin", "owed_figures", "probe_accuracies", "trained_run"]

# What :func:`face_aucs` measures, in a few words: a study that reports it names it in its cell cache's header,
# so a folder whose cells were measured by an earlier face test is refused, not mixed with new cells.
# Cells measured before 2026-12-01 chose the unit per split of the 60 held-out images, with one control draw; cells
# measured before 2026-12-04 gave a tie on the selection AUC to the lowest index (and cells of that day, with the
# larger Cohen's d, carry the same string as those before it: this header cannot tell them apart).
FACE_TEST = "unit chosen on lfw's training part, ties to the larger Cohen's d, 5 control draws"
# ... and with each cell's no-faces twin scored beside it (:func:`no_faces_twin`, :func:`owed_figures`): the header of
# the studies whose cells train one (a folder measured before the twins lacks their figures: refused, not mixed)
FACE_TEST_WITH_TWIN = FACE_TEST + ", a no-faces twin per cell"
# The figures :func:`owed_figures` adds to a cell: the no-faces twin's AUCs, and the learned unit's minus them
OWED = ("face_auc_lfw_no_faces", "face_auc_controls_no_faces", "face_owed_lfw", "face_owed_controls")


def face_draws(quick: bool) -> int:
    """Images per held-out face in each random control of a study's face test: the analysis's five, one in a
    quick (smoke-test) study."""
    return 1 if quick else 5


@contextmanager
def trained_run(cfg: RunConfig) -> Iterator[tuple[RunDir, FeatureModel, dict[str, Any]]]:
    """Train ``cfg`` with its runner into a temporary run directory; yield (run, trained model, summary).
    A run whose summary says it diverged with finite numbers (``summary["diverged"]``: its loss ran away,
    :mod:`downpour.train.divergence`) raises :class:`~downpour.errors.Diverged` too, as one whose every step was
    non-finite does: every study counts both out (:mod:`downpour.studies.diverged`), so no study measures such a run,
    its probes and AUCs of weights near 1e+31 in the intervals."""
    with cell_folder() as tmp:         # swept by the next study if this process is killed (studies/scratch.py)
        run_path = f"{tmp}/run"
        summary = train(cfg, RunDir.create(run_path, cfg))
        if summary.get("diverged"):
            raise Diverged(diverged_words(summary["diverged"]).removeprefix("the run diverged: "))
        run, model = open_run(run_path)
        with one_blas_thread():
            yield run, model, summary


@contextmanager
def no_faces_twin(cfg: RunConfig, train: Callable[[RunConfig], Any] | None = None
                  ) -> Iterator[tuple[RunDir, FeatureModel] | None]:
    """``cfg``'s no-faces twin (the same recipe and seed with ``data.train_faces = 0``,
    :func:`~downpour.twins.no_faces_config`) trained into a temporary run directory: (run, model); None
    where ``cfg``'s data show the network no lfw face, so there is nothing to take away, and where the twin diverged
    (:func:`trained_run`'s rule, said as a warning): only what the faces gave is then not measured, the cell's run
    measured (every study's twin so: it neither ends the study nor is scored). ``train``: the context that gives
    the twin's (run, model, summary) in place of :func:`trained_run` (a bench's networks kept from an earlier run)."""
    if not cfg.data.trains_on_faces():
        yield None
        return
    with ExitStack() as stack:
        try:
            run, model, _ = stack.enter_context((train or trained_run)(no_faces_config(cfg)))
        except Diverged as err:
            log.warning("the no-faces twin diverged: %s", err)
            twin = None
        else:
            model.eval()
            twin = run, model
        yield twin


def face_pair(faces: dict[str, float]) -> tuple[float, float]:
    """(AUC against lfw non-faces, mean AUC on the matched controls) of :func:`face_aucs`; NaN, not measured, where
    no unit could be chosen (an empty result: a cell indexing it stopped the study with KeyError 'lfw')."""
    return faces.get("lfw", math.nan), faces.get("controls", math.nan)


def owed_figures(faces: dict[str, float]) -> dict[str, float]:
    """What the faces gave a cell's face unit (:data:`OWED`), from :func:`face_aucs` with a twin: the twin's
    AUC against lfw non-faces and on the matched controls, and the learned unit's minus the twin's on the
    same images (a paired difference: its mean and interval over seeds say whether the unit owes anything
    to the faces). NaN where the cell had no twin."""
    nan = math.nan
    out = {f"face_auc_{k}_no_faces": faces.get(f"{k}_no_faces", nan) for k in ("lfw", "controls")}
    out.update({f"face_owed_{k}": faces.get(k, nan) - out[f"face_auc_{k}_no_faces"] for k in ("lfw", "controls")})
    return out


def edge_fraction(model: FeatureModel, seed: int = 0) -> float:
    """The fraction of first-layer filters that pass the edge test (``filters.edge_fraction`` of an analysis);
    NaN for a model without 2-D first-layer filters (none, or rows too thin to be oriented: an RNN's)."""
    filters = model.first_layer_filters()
    fraction = None if filters is None else edge_summary(filters, seed)["edge_fraction"]
    return float("nan") if fraction is None else float(fraction)


def probe_accuracies(run: RunDir, model: FeatureModel, sets: Sequence[str], layers: Sequence[str], *,
                     samples: int = 500, folds: int = 3, seed: int = 0) -> dict[str, float]:
    """Cross-validated linear-probe accuracy of each labelled set on each layer (and the input pixels):
    ``{"<set>/<layer>": accuracy}``, the images prepared with the run's own input processing."""
    prepare = run_preprocess(run)
    shape = tuple(model.input_shape)
    out = {}
    for name in sets:
        images = load_labelled(name, shape, prepare=prepare, jpeg_draft=run.config.data.jpeg_draft)
        table = probe_table(model, images, layers=list(layers), folds=folds,
                            seed=seed, max_samples=samples)
        out.update({f"{name}/{row['features']}": row["mean"] for row in table["rows"]})
    return out


def face_aucs(run: RunDir, model: FeatureModel, layer: str | None = None, *, control_draws: int = face_draws(False),
              random_filters: int = 200, replicates: int = 200, seed: int = 0,
              no_faces: tuple[RunDir, FeatureModel] | None = None) -> dict[str, Any]:
    """The face test's learned unit, chosen as ``downpour analyze`` chooses it (faces vs non-faces on the
    140 images of lfw's training part, then scored unchanged on the 60 held-out ones): its AUC against
    lfw's held-out non-faces (``lfw``) and its mean AUC over the low-level-matched controls (``controls``:
    phase-scrambled, upside-down, block-shuffled faces, spectrum-matched crops, ``control_draws`` images
    per face each; 0.5 is chance). Only the run's model is trained; the labels choose the unit.
    ``no_faces``: the run's no-faces twin (:func:`no_faces_twin`), whose unit is chosen the same way and
    scored on the same images: ``lfw_no_faces`` and ``controls_no_faces``. ``unit``: the learned
    unit itself, for a measure of it on the images its choice never saw: ``tied_units``, ``tied_signs`` (the units tied
    at the top of its choice, it first) and ``fold``, the lfw fold whose held-out part the test scored on (every one of
    its images is unseen by the choice: ``load_labelled("lfw", lfw_fold=fold)`` loads them). Empty when no unit of the
    layer can be chosen (non-finite or constant responses: a diverged or dead network): not measured."""
    twin, _ = randomized_copy(model, seed + 1)
    # the twin's units are chosen in the same test: if none of them can be, the run's own unit is tested alone
    fold = run.config.data.lfw_fold()
    for other in [*([] if no_faces is None else [(no_faces[1], run_preprocess(no_faces[0]))]), None]:
        try:
            test = face_controls(model, twin, layer=check_layer(model, layer), input_shape=tuple(model.input_shape),
                                 prepare=run_preprocess(run), seeds=[seed], n_random_filters=random_filters,
                                 seed=seed, replicates=replicates, select="train", control_draws=control_draws,
                                 fold=fold, no_faces=other)
            break
        except NoCandidate as err:
            log.warning("%s: the face test %s", err, "again without the no-faces twin" if other else "is not measured")
    else:
        return {}
    out: dict[str, Any] = {}
    for method, suffix in ((LEARNED, ""), (NO_FACES, "_no_faces")):
        unit = [r for r in test["rows"] if r["method"] == method]
        if unit:
            out["lfw" + suffix] = next(r["auc"] for r in unit if r["level"] != LOW_LEVEL)
            out["controls" + suffix] = float(np.mean([r["auc"] for r in unit if r["level"] == LOW_LEVEL]))
    learned = next(r for r in test["rows"] if r["method"] == LEARNED)
    units, signs = tied_set(test["ties"], learned)
    out["unit"] = {"tied_units": units, "tied_signs": signs, "fold": fold}
    return out


def cost_curve(run: RunDir, prefix: str) -> tuple[list[int], list[float], list[float]]:
    """(steps, cost, seconds) from ``metrics.jsonl``: the sum of the logged cost parts named
    ``prefix``... (e.g. ``"stage1/"``: one stage's cost; diagnostics left out) at every row that has them."""
    steps, costs, seconds = [], [], []
    for row in run.metrics():
        parts = [v for k, v in row.items() if k.startswith(prefix) and not is_metric(k)]
        if parts:
            steps.append(int(row["step"]))
            costs.append(float(sum(parts)))
            seconds.append(float(row["time"]))
    return steps, costs, seconds
