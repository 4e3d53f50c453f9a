"""Why Q7's cat network owes its face unit so little to the faces: its cell against variants that each remove one
suspect, paired by seed, "what the faces gave" (``face_owed_controls``) measured as the study measures it.

    .venv/bin/python bench/architectures_why_cat.py run --variants cat,maps-2,no-pool --out cells.jsonl 0 1 ... 7
    .venv/bin/python bench/architectures_why_cat.py summary cells.jsonl
    .venv/bin/python bench/architectures_why_cat.py summary cells.jsonl --primary whole-pool \\
        --family whole-64,whole-pool-2,whole-pool:whole-64
    .venv/bin/python bench/architectures_why_cat.py summary cells.jsonl --primary whole-unpooled:whole-pool \\
        --family whole-unpooled,whole-unpooled:whole-64,whole-64:whole-pool
    .venv/bin/python bench/architectures_why_cat.py run --variants pool-read-codes,pool-no-tica --out cells.jsonl 0
    .venv/bin/python bench/architectures_why_cat.py run --variants pool-read-codes,pool-read-codes-64 --out c.jsonl 0
    .venv/bin/python bench/architectures_why_cat.py run --variants pool-l1-read-codes,pool-l1-read-codes-64 \\
        --out c.jsonl 0
    .venv/bin/python bench/architectures_why_cat.py faces --out faces.jsonl 0 1 ... 11
    .venv/bin/python bench/architectures_why_cat.py summary faces.jsonl --family cat:faces-18

``cat`` is Q7's own cell of the cat arm, unchanged (:meth:`ArchitecturesStudy.cell_config`, its 300 steps, one torch
thread, ``train_and_measure``'s steps: the run, its no-faces twin ``data.train_faces = 0``, ``measure_run`` with the
study's ``measures()``). The read-out variants (``READS``) score the face test again on those same two trained networks
at a lower layer (the unit chosen the same way, on the same images): nothing retrained, so only the layer read differs.
The trained variants (``TRAINED``) are the study built with one ``--set`` more
(``study_class("architectures")(sets=...)``, as ``downpour study architectures --set KEY=VALUE`` would build every
cell), run as the cat cell is. ``VARIANT_READS`` read a trained variant's two networks as ``READS`` read the cat cell's
(the variant's own cell comes with them, trained once); a read of ``(layer, n)`` gives the face test n of the layer's
codes (:func:`code_subset`, :func:`code_reader`), as many candidates as a smaller read has (each read's row names
the unit it chose: :func:`chosen_code`). ``summary`` prints, per
variant, each figure's mean and Student's t 95% interval, its paired difference with the cat cell (variant - cat) and
p (:mod:`downpour.studies.stats`), and Holm's adjusted p over the variants' differences in ``face_owed_controls``
(``--primary``: one pre-registered comparison left out of that family; ``--family``: the comparisons it adjusts,
``A:B`` pairing two variants). ``faces`` trains the cat cell and its ``FACES`` arms (fewer of lfw's training faces,
``data.train_faces``) on each seed against one no-faces twin, which is the same network for every arm; ``summary`` of
such a file adds the slope of what the faces gave against log2 of the faces trained on (:func:`faces_slopes`). The page
docs/studies/architectures-why-cat-2026-12-06.md is ``run``, ``faces`` and ``summary`` of its cells.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

READS = {"read-pooled": "stage2/pooled",    # the top stage before its LCN (L2 pooled codes)
         "read-codes": "stage2/codes"}      # the top stage's filter outputs: before its L2 pooling and LCN
TRAINED = {"maps-2": (("model.maps", (8, 2)),),      # stage 2 with 2 maps: a 72-unit code (the RBM's is 64), not 288
           "no-pool": (("model.pools", (1, 1)),),    # no L2 pooling in either stage (its cost becomes RICA's L1)
           # stage 2 sees the whole crop: a 12x12 filter on stage 1's 12x12 pooled map, no pooling after it (a 1x1 map,
           # each unit's field 10 + 11*2 = 32 pixels: the whole 32x32 crop); 8 units, or 64 (the RBM's code size)
           "whole": (("model.kernels", (8, 12)), ("model.pools", (3, 1))),
           "whole-64": (("model.maps", (8, 64)), ("model.kernels", (8, 12)), ("model.pools", (3, 1))),
           "untied": (("model.tile", 0),),     # no tiling, in both stages (model.tile is one value for the network)
           "tica-0.4": (("objective.pooled_l2.weight", 0.4),),   # twice the pooled-L2 (TICA) weight, both stages
           # the paper's three stages: stages 1-2 the cat cell's, a third local, tiled, L2-pooled stage on stage 2's 6x6
           # map (4x4 filters: a 3x3 map, pooled 3x3 to 1x1; field 22 + 3*2 + 2*2 = 32, the whole crop), 64 maps; 450
           # greedy steps, 150 a stage as the cat cell's two (so stages 1-2 train as the cat cell's do)
           "three": (("model.maps", (8, 8, 64)), ("model.kernels", (8, 5, 4)), ("model.strides", (1, 1, 1)),
                     ("model.pools", (3, 3, 3)), ("model.pool_strides", (2, 1, 1)), ("train.steps", 450)),
           # part 4: a whole-field top that keeps its L2 pooling. A 10x10 filter on stage 1's 12x12 map gives a 3x3 map
           # (tile 2: 4 banks), pooled 3x3 to 1x1: each filter sees 10 + 9*2 = 28 pixels, each pooled unit 32, the
           # whole crop, pooled over 9 positions; 64 maps, as whole-64. "whole-pool-2": an 11x11 filter (30 pixels), a
           # 2x2 map pooled 2x2 (4 positions, at tile 2 each its own weights)
           "whole-pool": (("model.maps", (8, 64)), ("model.kernels", (8, 10)), ("model.pools", (3, 3))),
           "whole-pool-2": (("model.maps", (8, 64)), ("model.kernels", (8, 11)), ("model.pools", (3, 2))),
           # part 6: whole-pool with its pooling alone taken away: the same 10x10 filter, 64 maps and tile 2, a 3x3
           # map kept unpooled (pool 1: its sparsity term the per-unit L1, its top LCN a 3-wide window over the 3x3
           # map): 576 units, each filter's field 10 + 9*2 = 28 pixels, not the pooled unit's 32
           "whole-unpooled": (("model.maps", (8, 64)), ("model.kernels", (8, 10)), ("model.pools", (3, 1))),
           # part 7: whole-pool trained without its pooled-L2 (TICA) sparsity term: weight 0 drops the term
           # (objectives.Objective), and the objective is one for the network, so in both stages (stage 1 then differs
           # from the cat cell's): reconstruction alone, at the fixed filter norm; pooling and the read-out kept
           "pool-no-tica": (("model.maps", (8, 64)), ("model.kernels", (8, 10)), ("model.pools", (3, 3)),
                            ("objective.pooled_l2.weight", 0.0)),
           # part 8: whole-pool with stage 2's sparsity alone made per-unit: its own terms (objectives.Objective's
           # PART/TERM) turn its pooled L2 off and put an L1 on its 576 codes at the pooled term's weight (0.2, what a
           # pool of 1 gives whole-unpooled, but for eps: |h| for sqrt(0.01 + h²)); its pools, read-out, LCN and stage
           # 1 (the shared pooled L2) are whole-pool's
           "whole-pool-l1": (("model.maps", (8, 64)), ("model.kernels", (8, 10)), ("model.pools", (3, 3)),
                             ("objective.stage2/pooled_l2.weight", 0.0), ("objective.stage2/l1.weight", 0.2))}
# part 7: read-outs of a trained variant's own two networks (its run and its no-faces twin, read the same way), as READS
# are of the cat cell's: "pool-read-codes" reads whole-pool's stage 2 before its L2 pooling and LCN (stage2/codes, as
# read-codes does the cat cell's): 64 maps x 3 x 3 = 576 units. Part 8's "pool-l1-read-codes" reads whole-pool-l1's the
# same way. Its base variant's cell comes with it, trained once
# Part 9's "pool-read-codes-64" reads 64 of those 576 codes (a layer given as (layer, units): see CodeSubset), as many
# candidates for the face unit's choice as whole-pool's pooled read has
# Part 10's "pool-l1-read-codes-64" reads whole-pool-l1's the same way (for a seed, the same 64 codes: code_subset)
VARIANT_READS = {"pool-read-codes": ("whole-pool", "stage2/codes"),
                 "pool-l1-read-codes": ("whole-pool-l1", "stage2/codes"),
                 "pool-read-codes-64": ("whole-pool", ("stage2/codes", 64)),
                 "pool-l1-read-codes-64": ("whole-pool-l1", ("stage2/codes", 64))}
# part 5: the cat cell trained on the first N of the lfw training part's 70 faces (data.train_faces; the cat cell, -1,
# trains on all 70), its 70 non-faces and data.faces_fraction kept: so fewer faces are also fewer face samples (0.3 *
# 70/140 = 15% of the samples at 70 faces, 0.3 * 35/105 = 10% at 35, 0.3 * 18/88 = 6.1% at 18)
FACES = {"faces-18": 18, "faces-35": 35}
ALL_FACES = 70      # lfw_train_faces() of the fixed split: the cat cell's count
FIGURES = ("face_owed_controls", "face_auc_controls", "face_auc_controls_no_faces", "face_owed_lfw", "face_auc_lfw")
EXTRA = ("code_dims", "edge_fraction", "final_loss")


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


def filter_field(cfg) -> int:
    """The side in pixels of the crop window that a top-stage pooled unit's filters and pools reach (its linear field;
    LCN's windows, and its divisor's floor, the mean over the whole map, reach further)."""
    o = cfg.model.options
    side, step = 1, 1
    for k, s, q, u in zip(o["kernels"], o["strides"], o["pools"], o["pool_strides"]):
        side, step = side + (k - 1) * step, step * s
        side, step = side + (q - 1) * step, step * u
    return side


def _cat_cell(study, seed: int) -> list[dict]:
    """The cat arm's cell as ``train_and_measure`` runs it, and the read-out variants on its two trained networks."""
    return _read_cells(study.cell_config(_condition(study, "cat"), seed), study.measures(), seed, "cat", READS)


def _read_cells(cfg, m, seed: int, base: str, reads: dict[str, str | tuple[str, int]], **said) -> list[dict]:
    """The cell ``base`` of ``cfg`` measured as ``train_and_measure`` measures it (``said``: more of its row), and
    each of ``reads`` (name -> layer) the face test read at that layer of the same two trained networks. A layer
    ``(layer, n)``: n of its codes (:func:`code_subset`, drawn from the cell's seed, in the row as ``units`` with
    ``subset_seed``), the same n for the run, its no-faces twin and its random-weights twin."""
    import torch
    from downpour.studies.measure import measure_run
    from downpour.studies.trained import face_aucs, face_pair, no_faces_twin, owed_figures, trained_run

    rows = []
    w0, c0 = time.time(), time.process_time()
    with trained_run(cfg) as (run, model, summary), no_faces_twin(cfg) as twin:
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


def _condition(study, name: str):
    return next(c for c in study.conditions() if c.name == name)


def variant_config(name: str, seed: int):
    """The cat arm's cell config of Q7 built with the trained variant ``name``'s ``--set`` (``TRAINED``)."""
    from downpour.studies import study_class

    study = study_class("architectures")(sets=list(TRAINED[name]))
    return study.cell_config(_condition(study, "cat"), seed), study.measures()


def _trained_cell(name: str, seed: int) -> dict:
    from downpour.studies.measure import train_and_measure

    cfg, measures = variant_config(name, seed)
    w0, c0 = time.time(), time.process_time()
    f = train_and_measure(cfg, measures, seed)
    return {"variant": name, "seed": seed, "sets": [list(s) for s in TRAINED[name]],
            "wall_s": round(time.time() - w0, 1), "cpu_s": round(time.process_time() - c0, 1), **f}


def faces_config(study, name: str, seed: int):
    """The cat cell's config of ``study`` on ``seed``, trained on ``FACES[name]`` faces (``cat``: all of them)."""
    import dataclasses
    from downpour.preflight import check_run_config

    cfg = study.cell_config(_condition(study, "cat"), seed)
    if name == "cat":
        return cfg
    return check_run_config(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_faces=FACES[name])))


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


def faces(arms: list[str], out: str, seeds: list[int]) -> None:
    import torch
    from downpour.studies import study_class

    torch.set_num_threads(1)
    unknown = [a for a in arms if a != "cat" and a not in FACES]
    if unknown:
        sys.exit(f"architectures_why_cat.py faces: --arms {','.join(unknown)}: not cat or one of {', '.join(FACES)}")
    study = study_class("architectures")()
    for seed in seeds:
        _append(out, _faces_cells(study, seed, arms), FIGURES + EXTRA)


def faces_slopes(cells: dict[str, dict[int, dict]]) -> dict[int, float]:
    """Per seed with the cat cell and every ``FACES`` arm of the file: the least-squares slope of what the faces
    gave (``face_owed_controls``) against log2 of the faces trained on, per doubling of the faces."""
    arms = ["cat", *(a for a in FACES if a in cells)]
    seeds = sorted(set.intersection(*(set(cells[a]) for a in arms)))
    x = [math.log2(FACES.get(a, ALL_FACES)) for a in arms]
    mx = sum(x) / len(x)
    slopes = {}
    for s in seeds:
        y = [cells[a][s]["face_owed_controls"] for a in arms]
        my = sum(y) / len(y)
        slopes[s] = sum((u - mx) * (v - my) for u, v in zip(x, y)) / sum((u - mx) ** 2 for u in x)
    return slopes


def run(variants: list[str], out: str, seeds: list[int]) -> None:
    import torch
    from downpour.studies import study_class

    torch.set_num_threads(1)
    unknown = [v for v in variants if v != "cat" and v not in TRAINED and v not in VARIANT_READS]
    if unknown:
        sys.exit(f"architectures_why_cat.py run: --variants {','.join(unknown)}: not cat or one of "
                 f"{', '.join([*TRAINED, *VARIANT_READS])} (the read-outs {', '.join(READS)} come with cat)")
    study = study_class("architectures")()
    read = {}     # a trained variant -> the read-outs asked of its networks (it is trained once for them and itself)
    for name in variants:
        if name in VARIANT_READS:
            base, layer = VARIANT_READS[name]
            read.setdefault(base, {})[name] = layer
    for seed in seeds:
        rows = _cat_cell(study, seed) if "cat" in variants else []
        for base, reads in read.items():
            cfg, m = variant_config(base, seed)
            rows += _read_cells(cfg, m, seed, base, reads, sets=[list(s) for s in TRAINED[base]])
        rows += [_trained_cell(v, seed) for v in variants if v in TRAINED and v not in read]
        _append(out, rows, FIGURES)


def _append(out: str, rows: list[dict], figures: tuple[str, ...]) -> None:
    """A seed's cells appended to ``out``, one JSON line each, and printed with ``figures`` (those they have)."""
    with open(out, "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    for r in rows:
        print(r["variant"], r["seed"], r["cpu_s"], {k: round(r[k], 4) for k in figures if k in r}, flush=True)


def _fmt(t: tuple[float, float, float]) -> str:
    return f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"


def _versus(cells: dict[str, dict[int, dict]], name: str, base: str, figure: str) -> tuple[list[int], tuple, float]:
    """``name`` minus ``base`` in ``figure``, paired by seed: (the seeds both have, mean [95% interval], p)."""
    from downpour.studies.stats import paired_difference, paired_p

    seeds = sorted(s for s in cells[name] if s in cells[base])
    a, b = [cells[base][s][figure] for s in seeds], [cells[name][s][figure] for s in seeds]
    return seeds, paired_difference(a, b), paired_p(a, b)


def summary(path: str, primary: str | None = None, family: list[str] | None = None) -> None:
    """The paired table of a cells file. ``primary``: one pre-registered comparison, its p printed alone, outside
    Holm's family. ``family``: the comparisons Holm's p adjusts, each a variant (minus cat) or ``A:B`` (A minus B);
    by default every variant other than ``primary``, minus cat."""
    from architectures_steps import holm_adjusted
    from downpour.studies.stats import mean_ci

    cells: dict[str, dict[int, dict]] = {}
    for line in open(path):
        r = json.loads(line)
        cells.setdefault(r["variant"], {})[int(r["seed"])] = r
    if "cat" not in cells:
        sys.exit(f"architectures_why_cat.py summary: {path} has no cat cell to pair the variants with")
    compared = [c for c in [primary, *(family or [])] if c]
    unknown = [c for c in compared if c.count(":") > 1 or any(v not in cells for v in c.split(":"))]
    if unknown:
        sys.exit(f"architectures_why_cat.py summary: {', '.join(unknown)}: no such variant in {path} "
                 f"(it has {', '.join(cells)})")
    owed_p, lines = {}, []
    for name, by_seed in cells.items():
        seeds = sorted(s for s in by_seed if s in cells["cat"])
        cpu = sum(by_seed[s]["cpu_s"] for s in seeds)
        lines.append(f"{name}: {len(seeds)} seeds paired with cat ({', '.join(map(str, seeds))}), CPU {cpu:.0f} s")
        for f in FIGURES + EXTRA:
            if not all(f in by_seed[s] and not math.isnan(by_seed[s][f]) for s in seeds):
                continue
            said = f"  {f}: {_fmt(mean_ci([by_seed[s][f] for s in seeds]))}"
            if name != "cat" and len(seeds) >= 2 and f in cells["cat"][seeds[0]]:
                _, difference, p = _versus(cells, name, "cat", f)
                said += f"  minus cat's {_fmt(difference)}  p {p:.2g}"
                if f == "face_owed_controls":
                    owed_p[name] = p
            lines.append(said)
        if name != "cat":
            lines.append("  per seed, face_owed_controls (cat, variant): "
                         + "; ".join(f"{s}: {cells['cat'][s]['face_owed_controls']:+.3f}, "
                                     f"{by_seed[s]['face_owed_controls']:+.3f}" for s in seeds))
    for c in compared:
        name, base = c.split(":") if ":" in c else (c, "cat")
        seeds, difference, owed_p[c] = _versus(cells, name, base, "face_owed_controls")
        lines.append(f"{'primary (pre-registered, not adjusted): ' if c == primary else ''}{name} minus {base}: "
                     f"face_owed_controls {_fmt(difference)}  p {owed_p[c]:.2g}  ({len(seeds)} paired seeds)")
    if any(a in cells for a in FACES):
        from downpour.studies.stats import paired_p

        slopes = faces_slopes(cells)
        arms = ", ".join(f"{FACES.get(a, ALL_FACES)} ({a})" for a in ["cat", *FACES] if a in cells)
        b = list(slopes.values())
        lines.append(f"slope of face_owed_controls per doubling of the faces (faces: {arms}): {_fmt(mean_ci(b))}  "
                     f"p {paired_p([0.0] * len(b), b):.2g}  ({len(b)} seeds; per seed "
                     + ", ".join(f"{s}: {v:+.3f}" for s, v in slopes.items()) + ")")
    print("\n".join(lines))
    named = family or [n for n in owed_p if n != primary and ":" not in n]
    if named:
        adjusted = holm_adjusted([owed_p[n] for n in named])
        print("Holm over the variants' face_owed_controls differences: "
              + ", ".join(f"{n} {p:.2g}" for n, p in zip(named, adjusted)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and measure the cells, appending to --out")
    r.add_argument("seeds", nargs="+", type=int)
    r.add_argument("--variants", default="cat," + ",".join(TRAINED),
                   help=f"cat (with the read-outs {', '.join(READS)}) and any of {', '.join(TRAINED)}; "
                        f"{', '.join(VARIANT_READS)} (with its trained variant's cell)")
    r.add_argument("--out", default=os.environ.get("OUT", "cells.jsonl"))
    f = sub.add_parser("faces", help="the cat cell and its FACES arms against one no-faces twin, appending to --out")
    f.add_argument("seeds", nargs="+", type=int)
    f.add_argument("--arms", default="cat," + ",".join(FACES), help=f"cat and any of {', '.join(FACES)}")
    f.add_argument("--out", default=os.environ.get("OUT", "faces.jsonl"))
    s = sub.add_parser("summary", help="the paired table of a cells file")
    s.add_argument("cells")
    s.add_argument("--primary", help="the one pre-registered comparison (a variant, minus cat, or A:B), not adjusted")
    s.add_argument("--family", help="comma list of the comparisons Holm adjusts (variants minus cat, or A:B); "
                                    "default every variant but --primary")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        run(a.variants.split(","), a.out, a.seeds)
    elif a.cmd == "faces":
        faces(a.arms.split(","), a.out, a.seeds)
    else:
        summary(a.cells, a.primary, a.family.split(",") if a.family else None)


if __name__ == "__main__":
    main()
