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
    .venv/bin/python bench/architectures_why_cat.py run --variants cat,whole-pool --cache why-cat-cells --out c.jsonl 0

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

``--cache DIR`` (``run`` and ``faces``) keeps each finished cell's rows in DIR (:mod:`_cell_cache`), keyed on its
resolved config, seed, measures, read-outs and the code that trains and scores it (downpour's sources and
``_why_cat_cells.py``): a later run reads a cell DIR holds ("cached: ...") and appends its rows as trained, so a part's
reference arms (the cat cell, whole-pool) are trained once for every part at one code; ``--keep-networks`` keeps the
cat cell's and each read variant's two networks there too (:mod:`_kept_runs`), so a new read-out of them trains nothing.
The modules: the arms
(``_why_cat_arms.py``), the cells (``_why_cat_cells.py``), the table (``_why_cat_summary.py``).
"""
from __future__ import annotations
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _why_cat_arms import (ALL_FACES, EXTRA, FACES, FIGURES, READS, TRAINED, VARIANT_READS,  # noqa: E402,F401
                           _condition, faces_config, filter_field, variant_config)
from _why_cat_cells import (_cat_cell, _faces_cells, _read_cells, _trained_cell, chosen_code,  # noqa: E402,F401
                            code_reader, code_subset)
from _why_cat_summary import faces_slopes, summary  # noqa: E402,F401
from _kept_runs import KeptRuns  # noqa: E402

CELL_CODE = [Path(__file__).resolve().parent / "_why_cat_cells.py"]   # the bench's code that trains and scores a cell


def _cache(folder: str | None):
    """The cell cache in ``folder`` (:mod:`_cell_cache`), keyed on the code that trains and scores a cell; None
    without one."""
    from _cell_cache import CellCache, code_digest

    return None if folder is None else CellCache(folder, code_digest(CELL_CODE))


def _cached(cache, key, train) -> list[dict]:
    """``train()``'s rows; with a ``cache``, those it holds under ``key()``, else ``train()``'s stored there."""
    return train() if cache is None else cache.rows_of(key(), train)


def faces(arms: list[str], out: str, seeds: list[int], cache: str | None = None) -> None:
    import torch
    from downpour.studies import study_class

    torch.set_num_threads(1)
    unknown = [a for a in arms if a != "cat" and a not in FACES]
    if unknown:
        sys.exit(f"architectures_why_cat.py faces: --arms {','.join(unknown)}: not cat or one of {', '.join(FACES)}")
    study, cells = study_class("architectures")(), _cache(cache)
    for seed in seeds:
        _append(out, _faces_seed(study, seed, arms, cells), FIGURES + EXTRA)


def _faces_seed(study, seed: int, arms: list[str], cache) -> list[dict]:
    """``_faces_cells`` of the ``arms`` on ``seed``, each arm a cell of ``cache``: those it holds are read, the rest
    trained (with their one no-faces twin) and stored; none trained where it holds them all."""
    if cache is None:
        return _faces_cells(study, seed, arms)
    keys = {a: cache.key(f"_faces_cells {a}", faces_config(study, a, seed), seed, measures=study.measures())
            for a in arms}
    held = {a: cache.held(keys[a]) for a in arms}
    missing = [a for a in arms if held[a] is None]
    for arm, row in zip(missing, _faces_cells(study, seed, missing) if missing else []):
        cache.store(keys[arm], [row])
        held[arm] = [row]
    return [row for a in arms for row in held[a]]


def run(variants: list[str], out: str, seeds: list[int], cache: str | None = None, keep: bool = False) -> None:
    """The cells of ``variants`` on each of ``seeds``, appended to ``out``; with ``cache``, read from its folder where
    it holds them, and with ``keep``, the cat cell's and the read variants' networks kept there too (:mod:`_kept_runs`:
    a new read-out of them trains nothing)."""
    import torch
    from downpour.studies import study_class

    torch.set_num_threads(1)
    unknown = [v for v in variants if v != "cat" and v not in TRAINED and v not in VARIANT_READS]
    if unknown:
        sys.exit(f"architectures_why_cat.py run: --variants {','.join(unknown)}: not cat or one of "
                 f"{', '.join([*TRAINED, *VARIANT_READS])} (the read-outs {', '.join(READS)} come with cat)")
    if keep and cache is None:
        sys.exit("architectures_why_cat.py run: --keep-networks keeps them in the --cache folder: name one")
    study, cells = study_class("architectures")(), _cache(cache)
    runs = KeptRuns(cells) if keep else None
    read = {}     # a trained variant -> the read-outs asked of its networks (it is trained once for them and itself)
    for name in variants:
        if name in VARIANT_READS:
            base, layer = VARIANT_READS[name]
            read.setdefault(base, {})[name] = layer
    for seed in seeds:
        rows = []
        if "cat" in variants:
            cfg, m = study.cell_config(_condition(study, "cat"), seed), study.measures()
            rows += _cached(cells, lambda: cells.key("_cat_cell cat", cfg, seed, measures=m, reads=READS),
                            lambda: _cat_cell(study, seed, runs=runs))
        for base, reads in read.items():
            cfg, m = variant_config(base, seed)
            rows += _cached(cells, lambda: cells.key(f"_read_cells {base}", cfg, seed, measures=m, reads=reads),
                            lambda: _read_cells(cfg, m, seed, base, reads, runs=runs,
                                                sets=[list(s) for s in TRAINED[base]]))
        for v in (v for v in variants if v in TRAINED and v not in read):
            cfg, m = variant_config(v, seed)
            rows += _cached(cells, lambda: cells.key(f"_trained_cell {v}", cfg, seed, measures=m),
                            lambda: [_trained_cell(v, seed)])
        _append(out, rows, FIGURES)


def _append(out: str, rows: list[dict], figures: tuple[str, ...]) -> None:
    """A seed's cells appended to ``out``, one JSON line each, and printed with ``figures`` (those they have)."""
    with open(out, "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    for r in rows:
        print(r["variant"], r["seed"], r["cpu_s"], {k: round(r[k], 4) for k in figures if k in r}, flush=True)


CACHE_HELP = ("a folder of finished cells (bench/_cell_cache.py): a cell it holds under the same config, seed and code "
              "is read, not trained; the others are trained and stored there (default: none, every cell trained)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and measure the cells, appending to --out")
    r.add_argument("seeds", nargs="+", type=int)
    r.add_argument("--variants", default="cat," + ",".join(TRAINED),
                   help=f"cat (with the read-outs {', '.join(READS)}) and any of {', '.join(TRAINED)}; "
                        f"{', '.join(VARIANT_READS)} (with its trained variant's cell)")
    r.add_argument("--out", default=os.environ.get("OUT", "cells.jsonl"))
    r.add_argument("--cache", metavar="DIR", help=CACHE_HELP)
    r.add_argument("--keep-networks", action="store_true",
                   help="with --cache: keep the cat cell's and each read variant's two trained networks in "
                        "DIR/networks (safetensors + JSON run folders), so a new read-out of them trains nothing")
    f = sub.add_parser("faces", help="the cat cell and its FACES arms against one no-faces twin, appending to --out")
    f.add_argument("seeds", nargs="+", type=int)
    f.add_argument("--arms", default="cat," + ",".join(FACES), help=f"cat and any of {', '.join(FACES)}")
    f.add_argument("--out", default=os.environ.get("OUT", "faces.jsonl"))
    f.add_argument("--cache", metavar="DIR", help=CACHE_HELP)
    s = sub.add_parser("summary", help="the paired table of a cells file")
    s.add_argument("cells")
    s.add_argument("--primary", help="the one pre-registered comparison (a variant, minus cat, or A:B), not adjusted")
    s.add_argument("--family", help="comma list of the comparisons Holm adjusts (variants minus cat, or A:B); "
                                    "default every variant but --primary")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        run(a.variants.split(","), a.out, a.seeds, a.cache, a.keep_networks)
    elif a.cmd == "faces":
        faces(a.arms.split(","), a.out, a.seeds, a.cache)
    else:
        summary(a.cells, a.primary, a.family.split(",") if a.family else None)


if __name__ == "__main__":
    main()
