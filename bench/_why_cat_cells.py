"""The why-cat study's cells, trained and measured (bench/architectures_why_cat.py): the cat cell with its read-outs
(:func:`_cat_cell`), a trained variant's cell with the read-outs of its networks (:func:`_read_cells`), a trained
variant alone (:func:`_trained_cell`), and the ``FACES`` arms of a seed against one no-faces twin
(:func:`_faces_cells`). Each returns the JSON rows the bench appends; :mod:`_cell_cache` keys them on this module's
source among the code that trains and scores them.
"""
from __future__ import annotations

import time

from _why_cat_arms import ALL_FACES, FACES, READS, TRAINED, _condition, faces_config, variant_config


def code_subset(n_codes: int, units: int, seed: int) -> list[int]:
    """``units`` of a layer's ``n_codes`` flattened codes drawn at random from ``seed`` (ascending): the same for a seed
    whichever network reads them."""
    import torch

    if not 0 < units <= n_codes:
        raise ValueError(f"a subset of {units} codes of {n_codes}: it takes 1 to {n_codes}")
    return sorted(torch.randperm(n_codes, generator=torch.Generator().manual_seed(seed))[:units].tolist())


def code_reader(model, layer: str, units: list[int]):
    """``model`` read at ``units`` of its flattened codes at ``layer`` alone: the face test's candidates are then those
    units (part 9: 64 of whole-pool's 576 stage-2 codes). A ``FeatureModel`` wrapping the trained one, so the face test
    reads it unchanged; its random-weights twin (``randomized_copy``, a deep copy with the wrapped model's weights
    reset as they would be unwrapped) keeps the same units, and the no-faces twin is wrapped with them too."""
    import torch
    from downpour.models.base import FeatureModel

    class CodeSubset(FeatureModel):
        def __init__(self):
            super().__init__()
            self.model, self.layer, self.input_shape = model, layer, model.input_shape
            self.register_buffer("units", torch.tensor(units, dtype=torch.long))

        def feature_layers(self) -> list[str]:
            return [self.layer]

        def features(self, x, layer: str | None = None):
            if layer not in (None, self.layer):
                raise KeyError(f"unknown layer {layer!r}; this read-out has [{self.layer!r}]")
            return self.model.features(x, self.layer).reshape(x.shape[0], -1)[:, self.units]    # (B, units)

    return CodeSubset().eval()


def chosen_code(faces: dict, subset: dict) -> dict[str, int | None]:
    """The face unit a read chose (``face_aucs``' ``unit``, the first of those tied at the top): ``unit``, its index
    among the read's candidates, and ``code``, its index among the layer's flattened codes (``subset``'s ``units``
    [unit] for a read of some of them, else the unit itself), so that a full read's unit can be looked for in a
    subset's ``units``; None where no unit was chosen."""
    unit = (faces.get("unit", {}).get("tied_units") or [None])[0]
    return {"unit": unit, "code": unit if unit is None or not subset else subset["units"][unit]}


def _cat_cell(study, seed: int, runs=None) -> list[dict]:
    """The cat arm's cell as ``train_and_measure`` runs it, and the read-out variants on its two trained networks."""
    return _read_cells(study.cell_config(_condition(study, "cat"), seed), study.measures(), seed, "cat", READS,
                       runs=runs)


def _read_cells(cfg, m, seed: int, base: str, reads: dict[str, str | tuple[str, int]], runs=None,
                **said) -> list[dict]:
    """The cell ``base`` of ``cfg`` measured as ``train_and_measure`` measures it (``said``: more of its row), and
    each of ``reads`` (name -> layer) the face test read at that layer of the same two trained networks. A layer
    ``(layer, n)``: n of its codes (:func:`code_subset`, drawn from the cell's seed, in the row as ``units`` with
    ``subset_seed``), the same n for the run, its no-faces twin and its random-weights twin. ``runs``: where the two
    networks come from, ``trained_run`` and ``no_faces_twin`` (:class:`_kept_runs.KeptRuns`: kept from an earlier
    run); by default :mod:`downpour.studies.trained`'s, trained here."""
    import torch
    from downpour.studies.measure import measure_run
    from downpour.studies import trained
    from downpour.studies.trained import face_aucs, face_pair, owed_figures

    rows = []
    w0, c0 = time.time(), time.process_time()
    runs = runs or trained
    with runs.trained_run(cfg) as (run, model, summary), runs.no_faces_twin(cfg) as twin:
        f = measure_run(run, model, m, seed, twin)
        f["final_loss"] = float(summary["final_loss"])
        rows.append({"variant": base, "seed": seed, **said, "wall_s": round(time.time() - w0, 1),
                     "cpu_s": round(time.process_time() - c0, 1), **f})
        for name, layer in reads.items():
            w0, c0 = time.time(), time.process_time()
            read, other, subset = model, twin, {}
            if not isinstance(layer, str):
                layer, n = layer
                n_codes = model.features(torch.zeros((1, *model.input_shape)), layer).numel()
                subset = {"subset_seed": seed, "units": code_subset(n_codes, n, seed)}
                read = code_reader(model, layer, subset["units"])
                other = twin and (twin[0], code_reader(twin[1], layer, subset["units"]))
            faces = face_aucs(run, read, layer, control_draws=m.control_draws, random_filters=m.random_filters,
                              replicates=m.bootstrap, seed=seed, no_faces=other)
            f = dict(zip(("face_auc_lfw", "face_auc_controls"), face_pair(faces)), **owed_figures(faces))
            f["code_dims"] = float(read.features(torch.zeros((1, *model.input_shape)), layer).numel())  # measure_run's
            rows.append({"variant": name, "seed": seed, "layer": layer, **subset, **chosen_code(faces, subset),
                         "wall_s": round(time.time() - w0, 1), "cpu_s": round(time.process_time() - c0, 1), **f})
    return rows


def _trained_cell(name: str, seed: int) -> dict:
    from downpour.studies.measure import train_and_measure

    cfg, measures = variant_config(name, seed)
    w0, c0 = time.time(), time.process_time()
    f = train_and_measure(cfg, measures, seed)
    return {"variant": name, "seed": seed, "sets": [list(s) for s in TRAINED[name]],
            "wall_s": round(time.time() - w0, 1), "cpu_s": round(time.process_time() - c0, 1), **f}


def _faces_cells(study, seed: int, arms: list[str]) -> list[dict]:
    """The cat cell and its ``FACES`` arms on ``seed``, each measured as ``train_and_measure`` measures a cell, all
    against one no-faces twin: every arm's twin config is the cat cell's (data.train_faces = 0 whatever the count),
    so it is trained once and what the faces gave is paired within the seed across the arms as well."""
    from downpour.studies.measure import measure_run
    from downpour.studies.trained import no_faces_twin, trained_run
    from downpour.twins import no_faces_config

    base, m = faces_config(study, "cat", seed), study.measures()
    rows = []
    c0 = time.process_time()
    with no_faces_twin(base) as twin:
        print(f"seed {seed}: the no-faces twin in {time.process_time() - c0:.1f} CPU-s", flush=True)
        for name in arms:
            cfg = faces_config(study, name, seed)
            assert no_faces_config(cfg) == no_faces_config(base), f"{name}'s twin is not the cat cell's"
            w0, c0 = time.time(), time.process_time()
            with trained_run(cfg) as (run, model, summary):
                f = measure_run(run, model, m, seed, twin)
                f["final_loss"] = float(summary["final_loss"])
            rows.append({"variant": name, "seed": seed, "faces": FACES.get(name, ALL_FACES),
                         "wall_s": round(time.time() - w0, 1), "cpu_s": round(time.process_time() - c0, 1), **f})
    return rows
