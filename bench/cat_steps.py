"""Q7's cat network at more steps: its own cell, paired by seed, at 300 and 1,500 steps (or any others).

    .venv/bin/python bench/cat_steps.py run --out cells.jsonl 0 1 2 ... 15     # the cells (appends)
    .venv/bin/python bench/cat_steps.py summary cells.jsonl [--steps 300,1500]  # the paired table

``run`` trains Q7's `cat` cell as the study does (:meth:`ArchitecturesStudy.cell_config`: cat-demo, one torch
thread, the study's measures, its no-faces twin) at each of ``--steps`` for every seed given, one after the
other in this process, and appends one JSON line per cell (seed, steps, wall_s, cpu_s and the cell's figures).
``summary`` prints, for each figure, the mean and Student's t 95% interval at both step counts and their paired
difference with its p (:mod:`downpour.studies.stats`, as the studies compute them) and Holm's adjusted p over the
figures printed. docs/studies/architectures-cat-1500-steps-2026-12-06.md is ``run`` on seeds 0-15 (32 cells,
about 50 min on a shared 2-core VM) and ``summary`` of its cells.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

FIGURES = ("face_owed_controls", "face_auc_controls", "face_auc_controls_no_faces", "face_owed_lfw", "face_auc_lfw",
           "edge_fraction", "probe_digits", "probe_lfw")


def run(out: str, seeds: list[int], steps: list[int]) -> None:
    import torch
    from downpour.studies import study_class
    from downpour.studies.measure import train_and_measure, with_steps

    torch.set_num_threads(1)
    study = study_class("architectures")()
    cat = next(c for c in study.conditions() if c.name == "cat")
    for seed in seeds:
        for n in steps:
            cfg = with_steps(study.cell_config(cat, seed), n)
            w0, c0 = time.time(), time.process_time()
            f = train_and_measure(cfg, study.measures(), seed)
            row = {"seed": seed, "steps": n, "wall_s": round(time.time() - w0, 1),
                   "cpu_s": round(time.process_time() - c0, 1), **f, "steps": n}   # (f has its own "steps")
            with open(out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(seed, n, {k: round(row[k], 4) for k in FIGURES if k in row}, flush=True)


def summary(path: str, steps: list[int]) -> None:
    from downpour.studies.stats import is_discrete, mean_ci, paired_difference, paired_p

    if len(steps) != 2:
        sys.exit(f"cat_steps.py summary: --steps must name two step counts, got {steps}")
    by: dict[int, dict[int, dict]] = {}
    for line in open(path):
        r = json.loads(line)
        by.setdefault(int(r["seed"]), {})[int(r["steps"])] = r
    seeds = sorted(s for s, d in by.items() if all(n in d for n in steps))
    if len(seeds) < 2:
        sys.exit(f"cat_steps.py summary: {path} has {len(seeds)} seed(s) at both {steps[0]} and {steps[1]} steps")
    fmt = lambda t: f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"
    rows = []
    for f in FIGURES:
        a, b = [by[s][steps[0]][f] for s in seeds], [by[s][steps[1]][f] for s in seeds]
        rows.append((f, mean_ci(a), mean_ci(b), paired_difference(a, b, is_discrete(f)), paired_p(a, b, is_discrete(f))))
    order, adjusted, worst = sorted(range(len(rows)), key=lambda i: rows[i][4]), {}, 0.0
    for rank, i in enumerate(order):                 # Holm's step-down adjusted p over the figures printed
        worst = max(worst, min(1.0, (len(rows) - rank) * rows[i][4]))
        adjusted[i] = worst
    print(f"{len(seeds)} paired seeds ({seeds[0]}-{seeds[-1]}); figure, {steps[0]} steps, {steps[1]} steps, "
          f"{steps[1]} - {steps[0]} (paired), p, Holm p")
    for i, (f, m0, m1, d, p) in enumerate(rows):
        print(f"{f}: {fmt(m0)}  {fmt(m1)}  {fmt(d)}  p {p:.2g}  Holm {adjusted[i]:.2g}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and measure the cells, appending to --out")
    r.add_argument("seeds", nargs="+", type=int)
    r.add_argument("--out", default=os.environ.get("OUT", "cells.jsonl"))
    r.add_argument("--steps", default="300,1500")
    s = sub.add_parser("summary", help="the paired table of a cells file")
    s.add_argument("cells")
    s.add_argument("--steps", default="300,1500")
    a = ap.parse_args(argv)
    steps = [int(x) for x in a.steps.split(",")]
    if a.cmd == "run":
        run(a.out, a.seeds, steps)
    else:
        summary(a.cells, steps)


if __name__ == "__main__":
    main()
