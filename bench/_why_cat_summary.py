"""The why-cat study's paired table (``architectures_why_cat.py summary``): each variant's figures, their paired
differences with the cat cell (or another variant), Holm's p over a family, and the ``FACES`` arms' slope.
"""
from __future__ import annotations

import json
import math
import sys

from _why_cat_arms import ALL_FACES, EXTRA, FACES, FIGURES


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
