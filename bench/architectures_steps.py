"""Q7's own cell for one arm at its Q7 budget and at a multiple of it, paired by seed (2026-12-06).

Each cell is ``ArchitecturesStudy.cell_config(arm, seed)`` at the arm's Q7 steps (the study's own FLOP budget,
``study.prepare()["steps"]``: rbm 700, sae 2,867, rnn 28, cat 300) and at ``--times`` that many, trained and
measured by ``train_and_measure(cfg, study.measures(), seed)``: the face test and the no-faces twin of Q7, so
``face_owed_controls`` is Q7's "what the faces gave". One torch thread, one process; one JSON line per cell is
appended to ``--out``. ``--summary`` reads such a file and prints the paired means (``downpour.studies.stats``).

    .venv/bin/python bench/architectures_steps.py --arm rbm --times 5 --seeds 0 1 2 3 --out cells.jsonl
    .venv/bin/python bench/architectures_steps.py --summary cells.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

FIGURES = ("face_owed_controls", "face_auc_controls", "face_auc_controls_no_faces", "face_owed_lfw",
           "face_auc_lfw", "probe_digits", "probe_lfw", "final_loss")


def run(arm: str, times: int, seeds: list[int], out: str, base: int | None) -> None:
    from downpour.studies import study_class
    from downpour.studies.measure import train_and_measure, with_steps
    torch.set_num_threads(1)
    study = study_class("architectures")()
    condition = next(c for c in study.conditions() if c.name == arm)
    steps = base if base is not None else study.prepare()["steps"][arm]
    for seed in seeds:
        for n in (steps, steps * times):
            cfg = with_steps(study.cell_config(condition, seed), n)
            w0, c0 = time.time(), time.process_time()
            f = train_and_measure(cfg, study.measures(), seed)
            row = {"arm": arm, "seed": seed, "steps": n, "wall_s": time.time() - w0,
                   "cpu_s": time.process_time() - c0, **f}
            with open(out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(arm, seed, n, f"{row['face_owed_controls']:+.3f}", f"{row['wall_s']:.0f}s", flush=True)


def summary(path: str) -> None:
    from downpour.studies.stats import mean_ci, paired_difference
    by: dict[tuple[str, int], dict[int, dict]] = {}
    for line in open(path):
        r = json.loads(line)
        by.setdefault((r["arm"], r["seed"]), {})[r["steps"]] = r
    for arm in sorted({a for a, _ in by}):
        cells = {s: d for (a, s), d in by.items() if a == arm and len(d) == 2}
        seeds = sorted(cells)
        if not seeds:
            continue
        lo, hi = sorted(cells[seeds[0]])
        print(f"{arm}: {len(seeds)} seeds {seeds}, {lo} vs {hi} steps")
        for s in seeds:
            print(" ", s, *(f"{cells[s][n][k]:+.3f}" for n in (lo, hi)
                            for k in ("face_owed_controls", "face_auc_controls", "face_auc_controls_no_faces")))
        for k in FIGURES:
            a, b = [cells[s][lo].get(k, float("nan")) for s in seeds], [cells[s][hi].get(k, float("nan")) for s in seeds]
            print(f"  {k}: {lo}: {mean_ci(a)}  {hi}: {mean_ci(b)}  diff: {paired_difference(a, b)}")
        wall = sum(cells[s][n]["wall_s"] for s in seeds for n in (lo, hi))
        cpu = sum(cells[s][n]["cpu_s"] for s in seeds for n in (lo, hi))
        print(f"  wall {wall:.0f} s, CPU {cpu:.0f} s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arm", default="rbm", help="a Q7 condition: cat, conv-ae, rbm, rnn, sae, rbm-288, ...")
    p.add_argument("--times", type=int, default=5, help="the larger setting, in multiples of the arm's steps")
    p.add_argument("--seeds", type=int, nargs="*", default=[0])
    p.add_argument("--base-steps", type=int, default=None, help="the arm's 1x steps (default: Q7's FLOP budget)")
    p.add_argument("--out", default="cells.jsonl", help="JSON lines, appended to")
    p.add_argument("--summary", metavar="CELLS", help="print the paired summary of CELLS and measure nothing")
    a = p.parse_args(argv)
    if a.summary:
        summary(a.summary)
    else:
        run(a.arm, a.times, a.seeds, a.out, a.base_steps)


if __name__ == "__main__":
    main()
