"""Q7's own cell of one arm at two step counts (its Q7 budget and a larger one), paired by seed, and the table.

    .venv/bin/python bench/architectures_steps.py run --arm cat --out cells.jsonl 0 1 2 ... 15    # 300 and 1,500
    .venv/bin/python bench/architectures_steps.py run --arm rbm --steps 700,3500 --out cells.jsonl 0 1 ... 15
    .venv/bin/python bench/architectures_steps.py summary cells.jsonl                          # every arm in it

``run`` trains the arm's cell as the study does (:meth:`ArchitecturesStudy.cell_config`: one torch thread, the
study's measures, its no-faces twin, so ``face_owed_controls`` is Q7's "what the faces gave") at each of
``--steps`` for every seed given, one after the other in this process, and appends one JSON line per cell (arm,
seed, steps, wall_s, cpu_s and the cell's figures). ``--steps`` defaults to the arm's Q7 steps (the study's FLOP
budget, ``study.prepare()["steps"]``) and ``--times`` that many. ``summary`` prints, per arm, each figure's mean and
Student's t 95% interval at both step counts, their paired difference with its p (:mod:`downpour.studies.stats`,
as the studies compute them) and Holm's adjusted p over the figures in ``FIGURES``. The pages
docs/studies/architectures-cat-1500-steps-2026-12-06.md (cat, about 50 min on 16 seeds on a shared 2-core VM) and
docs/studies/architectures-5x-steps-2026-12-06.md (rbm, rnn) are ``run`` and ``summary`` of their cells.
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

FIGURES = ("face_owed_controls", "face_auc_controls", "face_auc_controls_no_faces", "face_owed_lfw", "face_auc_lfw",
           "edge_fraction", "probe_digits", "probe_lfw")   # Holm's family (the cat page's table)
EXTRA = ("final_loss",)                                    # printed, not in Holm's family


def run(arm: str, out: str, seeds: list[int], steps: list[int] | None, times: int) -> None:
    import torch
    from downpour.studies import study_class
    from downpour.studies.measure import train_and_measure, with_steps

    torch.set_num_threads(1)
    study = study_class("architectures")()
    condition = next((c for c in study.conditions() if c.name == arm), None)
    if condition is None:
        sys.exit(f"architectures_steps.py: --arm {arm!r} is no Q7 condition: "
                 + ", ".join(c.name for c in study.conditions()))
    if steps is None:
        base = study.prepare()["steps"][arm]
        steps = [base, base * times]
    for seed in seeds:
        for n in steps:
            cfg = with_steps(study.cell_config(condition, seed), n)
            w0, c0 = time.time(), time.process_time()
            f = train_and_measure(cfg, study.measures(), seed)
            row = {"arm": arm, "seed": seed, "wall_s": round(time.time() - w0, 1),
                   "cpu_s": round(time.process_time() - c0, 1), **f, "steps": n}   # (f has its own "steps")
            with open(out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(arm, seed, n, {k: round(row[k], 4) for k in FIGURES if k in row}, flush=True)


def holm_adjusted(ps: list[float]) -> list[float]:
    """Holm's step-down adjusted p of each of ``ps`` (one family), by the studies' own :func:`holm.holm`."""
    from downpour.studies.holm import holm

    tests = [{"p": p} for p in ps]
    holm([{"tests": dict(enumerate(tests))}])
    return [t["p_holm"] for t in tests]


def summary(path: str) -> None:
    from downpour.studies.stats import is_discrete, mean_ci, paired_difference, paired_p

    by: dict[str, dict[int, dict[int, dict]]] = {}
    for line in open(path):
        r = json.loads(line)
        by.setdefault(r.get("arm", "cat"), {}).setdefault(int(r["seed"]), {})[int(r["steps"])] = r
    fmt = lambda t: f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"
    for arm, cells in sorted(by.items()):
        counts = sorted({n for d in cells.values() for n in d})
        if len(counts) != 2:
            sys.exit(f"architectures_steps.py summary: {path}'s {arm} cells are at {counts} steps, not two counts")
        lo, hi = counts
        seeds = sorted(s for s, d in cells.items() if lo in d and hi in d)
        if len(seeds) < 2:
            sys.exit(f"architectures_steps.py summary: {path} has {len(seeds)} {arm} seed(s) at both {lo} and {hi}")
        rows = []
        for f in FIGURES + EXTRA:
            if not all(f in cells[s][n] and not math.isnan(cells[s][n][f]) for s in seeds for n in (lo, hi)):
                continue                             # a figure the arm lacks (the GRU's edge_fraction: NaN)
            a, b = [cells[s][lo][f] for s in seeds], [cells[s][hi][f] for s in seeds]
            rows.append((f, mean_ci(a), mean_ci(b), paired_difference(a, b, is_discrete(f)),
                         paired_p(a, b, is_discrete(f))))
        family = [i for i, r in enumerate(rows) if r[0] in FIGURES]
        adjusted = dict(zip(family, holm_adjusted([rows[i][4] for i in family])))
        wall = sum(cells[s][n]["wall_s"] for s in seeds for n in (lo, hi))
        cpu = sum(cells[s][n]["cpu_s"] for s in seeds for n in (lo, hi))
        print(f"{arm}: {len(seeds)} paired seeds ({seeds[0]}-{seeds[-1]}), wall {wall:.0f} s, CPU {cpu:.0f} s; "
              f"figure, {lo} steps, {hi} steps, {hi} - {lo} (paired), p, Holm p")
        for s in seeds:                              # the per-seed rows: what the faces gave, and both AUCs
            print(f"  seed {s}:", *(f"{cells[s][n][k]:+.3f}" for n in (lo, hi) for k in FIGURES[:3]))
        for i, (f, m0, m1, d, p) in enumerate(rows):
            holm = f"  Holm {adjusted[i]:.2g}" if i in adjusted else ""
            print(f"  {f}: {fmt(m0)}  {fmt(m1)}  {fmt(d)}  p {p:.2g}{holm}")


def _two_counts(text: str) -> list[int]:
    """``--steps A,B``: two step counts, 0 < A < B (one count alone would leave ``summary`` nothing to pair)."""
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        counts = []
    if len(counts) != 2 or not 0 < counts[0] < counts[1]:
        sys.exit(f"architectures_steps.py run: --steps {text!r} is not two step counts A,B with 0 < A < B "
                 "(e.g. 700,3500)")
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and measure the cells, appending to --out")
    r.add_argument("seeds", nargs="+", type=int)
    r.add_argument("--arm", default="cat", help="a Q7 condition: cat, rbm, rnn, sae, conv-ae, ...")
    r.add_argument("--steps", default=None, help="two step counts, e.g. 700,3500 (default: the arm's Q7 steps "
                   "and --times that many)")
    r.add_argument("--times", type=int, default=5, help="the larger setting, in multiples of the arm's Q7 steps")
    r.add_argument("--out", default=os.environ.get("OUT", "cells.jsonl"))
    s = sub.add_parser("summary", help="the paired table of a cells file, per arm")
    s.add_argument("cells")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        run(a.arm, a.out, a.seeds, _two_counts(a.steps) if a.steps else None, a.times)
    else:
        summary(a.cells)


if __name__ == "__main__":
    main()
