"""Q5, hand-designed templates: must first-layer edge detectors be learned, or can they be designed?

**Network.** The cat network of ``cat-demo`` (two stages of filter -> L2 pool -> LCN on 32x32
crops of the built-in photographs and faces), trained by the local runner; only stage 1's filters
change between conditions.

**Conditions**, on the same seeds (so the same data, and batch for batch the same order):
- ``learned``: stage 1 learned without labels for S steps, then frozen while stage 2 learns for S
  steps on its output (the greedy schedule, as Le et al. trained their stages);
- ``gabor``: a Gabor bank (4 orientations x 2 phases, the same at every position), frozen;
  stage 2 learns for S steps on it;
- ``random``: fixed random filters (a different one at every position and map), frozen; stage 2
  learns for S steps;
- ``gabor-init``: initialised with the Gabor bank, then learned for S steps and frozen, then stage 2
  for S steps.

Stage 2 gets the same S steps everywhere; the learned kinds spend S more steps on stage 1 first
(``train_seconds`` says what that costs). **Time to a given cost**: the given cost is, per seed,
within 10% of the stage-1 cost (reconstruction + pooled L2) that the learned first layer reaches
after its S steps; each condition's time is the first logged step (and second) at which its own
stage-1 cost, on the same batches, is at or below it (a frozen bank reaches it at once or never).

**Figures per cell**: the edge-like fraction of the first-layer filters (analysis/edges.py); linear
probe accuracy (digits, lfw) on stage 1's and the top stage's output (analysis/probe.py); the face
test's AUC on lfw non-faces and on the low-level-matched controls (analysis/face_controls.py);
the stage-1 cost at the end of its training; training seconds; what the faces gave the top stage's face
unit (the same cell trained again without a face, ``face_owed_controls``). Every comparison is paired with
``learned`` on the same seed.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from downpour._names import listed
from downpour.analysis.probe import INPUT
from downpour.studies import words
from downpour.studies.base import Cells, Condition, Study
from downpour.studies.claims import delta
from downpour.studies.designs.first_layer import KINDS, FirstLayerDesign
from downpour.studies.compare import figure_ci, owed_figure, owed_paragraph, owed_test
from downpour.studies.figure_words import figure_words
from downpour.studies.figures import interval_bars
from downpour.studies.holm import LEAD_IN_LIST, lead, lead_mark, leads_of
from downpour.studies.stats import DIVERGED, mean_ci, note_left_out, paired_test, wilson
from downpour.studies.plots import curves
from downpour.studies.trained import (FACE_TEST_WITH_TWIN, OWED, cost_curve, edge_fraction, face_aucs, face_draws,
                                      face_pair, no_faces_twin, owed_figures, probe_accuracies, trained_run)

BASELINE = "learned"
PROBE_SETS = ("digits", "lfw")
LAYERS = ("stage1", "stage2")
# The figures a first layer serves. Every figure is said in :func:`~downpour.studies.figure_words.figure_words`'
# words ("digits probe accuracy on stage 2"), as Holm's paragraph and the comparisons table name the same tests.
DOWNSTREAM = ("probe_digits_stage1", "probe_lfw_stage1", "probe_digits_stage2", "probe_lfw_stage2", "face_auc_lfw",
              "face_auc_controls")
# The paired differences each kind's paragraph reports, (figure, in points): every downstream figure Holm's family
# holds (the edge fraction and the stage-1 cost have paragraphs of their own), the lfw probe on stage 1 included: a
# test counted in Holm's family is reported.
REPORTED = (("probe_digits_stage2", True), ("probe_lfw_stage2", True), ("probe_digits_stage1", True),
            ("probe_lfw_stage1", True), ("face_auc_controls", False), ("face_auc_lfw", False),
            ("face_owed_controls", False))
# the reference every other kind is paired with, as the verdict and the claim name it: learned too, as gabor-init is
AGAINST = "the first layer learned from a random start"
TARGET = 1.10                          # the given cost: 110% of the learned layer's final stage-1 cost
# A difference whose interval holds 0 and stays inside these reads "no detectable effect" (else
# "inconclusive"): by the figure name's first word; stage 1's cost relative, 5% of learned's.
RESOLUTION = {"edge": 0.10, "probe": 0.02, "face": 0.05}
COST_RESOLUTION = 0.05


def _resolution(figure: str, base: list[float]) -> float:
    if figure == "stage1_cost":
        return COST_RESOLUTION * abs(float(np.nanmean(base)))
    return RESOLUTION[figure.split("_")[0]]


class FirstLayerStudy(FirstLayerDesign, Study):
    base = "cat-demo"
    measured_by = FACE_TEST_WITH_TWIN
    base_sets = (("train.threads", 1), ("train.tensorboard", False), ("train.log_every", 8),
                 ("cluster.runner", "local"))
    # the cost curve is read every 8 steps and at stage 1's last: another log_every misses that step
    varied_in_cells = ("train.log_every",)

    # --- one cell ----------------------------------------------------------------------------------
    def run_cell(self, condition: Condition, seed: int, context: dict[str, Any]) -> dict[str, float]:
        cfg = self.cell_config(condition, seed)
        s = self.steps()
        with trained_run(cfg) as (run, model, summary), no_faces_twin(cfg) as twin:
            figures: dict[str, float] = {"edge_fraction": edge_fraction(model, seed),
                                         "train_seconds": float(summary["seconds"])}
            probes = probe_accuracies(run, model, PROBE_SETS, LAYERS, samples=200 if self.quick else 500, seed=seed)
            for name in PROBE_SETS:
                figures[f"probe_{name}_raw"] = probes[f"{name}/{INPUT}"]
                for layer in LAYERS:
                    figures[f"probe_{name}_{layer}"] = probes[f"{name}/{layer}"]
            faces = face_aucs(run, model, LAYERS[-1], control_draws=face_draws(self.quick), seed=seed, no_faces=twin)
            figures["face_auc_lfw"], figures["face_auc_controls"] = face_pair(faces)
            figures.update(owed_figures(faces))
            steps, cost, seconds = cost_curve(run, "stage1/")
        # stage 1's phase only: the first S steps (greedy), or all of a joint run's S steps
        for k, c, t in zip(steps, cost, seconds):
            if k <= s:
                figures[f"stage1_cost@{k}"] = c
                figures[f"stage1_seconds@{k}"] = t
        figures["stage1_cost"] = next(c for k, c in zip(reversed(steps), reversed(cost)) if k <= s)
        return figures

    # --- rows, verdict, figures --------------------------------------------------------------------
    def _to_target(self, cells: Cells, name: str, seed: int) -> tuple[float, float]:
        """(steps, seconds) until ``name``'s logged stage-1 cost first falls to the given cost of this
        seed (TARGET x the learned layer's final stage-1 cost); (nan, nan) if it never does."""
        mine, target = cells[(name, seed)], TARGET * cells[(BASELINE, seed)]["stage1_cost"]
        for k in sorted(int(k.split("@")[1]) for k in mine if k.startswith("stage1_cost@")):
            if mine[f"stage1_cost@{k}"] <= target:
                return float(k), mine[f"stage1_seconds@{k}"]
        return math.nan, math.nan

    def summarise(self, conditions: list[Condition], cells: Cells, seeds: list[int]) -> list[dict[str, Any]]:
        names = ["edge_fraction"] + [f"probe_{p}_{layer}" for p in PROBE_SETS for layer in LAYERS] + \
                ["face_auc_lfw", "face_auc_controls", "face_owed_controls", "stage1_cost"]
        rows = []
        for c in conditions:
            got = [cells[(c.name, s)] for s in seeds]
            row: dict[str, Any] = {"condition": c.name, "group": c.group, "params": c.params, "n": len(seeds),
                                   "figures": {}, "extra": {"readings": {}}}
            for f in dict.fromkeys([*names, "train_seconds", *OWED]):     # each once (face_owed_controls is in both)
                row["figures"][f] = list(figure_ci(f, [g[f] for g in got]))
            owed_test(row, got)
            for p in PROBE_SETS:
                row["extra"][f"probe_{p}_raw_pixels"] = mean_ci([g[f"probe_{p}_raw"] for g in got])[0]   # (measured)
            # (a seed counted out, its run or the baseline's diverged: not one that never reached the cost)
            reach = [self._to_target(cells, c.name, s) for s in seeds
                     if not (cells[(c.name, s)].get(DIVERGED) or cells[(BASELINE, s)].get(DIVERGED))]
            row["figures"]["reached_cost"] = list(wilson(sum(math.isfinite(r[0]) for r in reach), len(reach)))
            row["extra"]["reached_cost_seeds"] = len(reach)     # (the verdict's "in 2 of 3 seeds measured")
            row["figures"]["steps_to_cost"] = list(mean_ci([r[0] for r in reach]))
            row["figures"]["seconds_to_cost"] = list(mean_ci([r[1] for r in reach]))
            if c.name != BASELINE:
                base = [cells[(BASELINE, s)] for s in seeds]
                for f in names:
                    pair = [b[f] for b in base], [g[f] for g in got]
                    row["figures"][f"delta_{f}"], row["extra"]["readings"][f] = paired_test(
                        row, f"delta_{f}", *pair, _resolution(f, [b[f] for b in base]), against=BASELINE)
                    note_left_out(row, f"delta_{f}", *pair)
            rows.append(row)
        return rows

    def verdict(self, rows: list[dict[str, Any]]) -> str:
        by = {r["condition"]: r for r in rows}

        def fig(name: str, key: str) -> list[float]:
            return by[name]["figures"][key]

        s = self.steps()
        paras = [("Edge-like first-layer filters (the analysis's edge test): "
                  + ", ".join(f"{k} {words.percent_ci(fig(k, 'edge_fraction'))}" for k in KINDS)
                  + "; paired against learned: "    # (the differences Holm's family holds)
                  + ", ".join(f"{k} {_reading(by[k], 'edge_fraction', True)}" for k in KINDS if k != BASELINE)
                  + f". Stage 2 trained {s} steps in every condition; the learned kinds trained stage 1 for {s} more.")]
        for k in KINDS:
            if k == BASELINE:
                continue
            parts = [f"{figure_words(f)} {_reading(by[k], f, points)}" for f, points in REPORTED]
            name = _named(k)        # (as "In short" and the claim name it)
            paras.append(f"{name[0].upper()}{name[1:]} against {AGAINST}, paired on {by[k]['n']} seeds: "
                         + "; ".join(parts) + ".")
        n = by[BASELINE]["n"]
        reached, costs, seconds = [], [], []
        for k in KINDS:
            reach, steps, secs = fig(k, "reached_cost"), fig(k, "steps_to_cost"), fig(k, "seconds_to_cost")
            # the seeds neither it nor the learned layer was counted out of (not its share times n: 2 of 3 measured
            # would read "3 of 4 seeds", a kind diverged in every seed stop the verdict, round(nan))
            m = by[k]["extra"].get("reached_cost_seeds", n)
            if not m:
                reached.append(f"{k} not measured (its run or the learned layer's diverged in every seed)")
                continue
            when = ("" if not reach[0] else f" at step {steps[0]:.0f} on average" if k in ("gabor", "random")
                    else f" after {steps[0]:.0f} steps ({secs[0]:.1f} s) on average")
            reached.append(f"{k} in {round(reach[0] * m)} of {m} seeds{' measured' if m < n else ''}{when}")
            costs.append(f"{k} {words.value_ci(fig(k, 'stage1_cost'))}" + ("" if k == BASELINE else _than(by[k])))
            seconds.append(f"{fig(k, 'train_seconds')[0]:.1f} s for {k}")
        said = [f"Time to a given cost (stage 1's own cost within {TARGET - 1:.0%} of what the learned layer reaches "
                f"in {s} steps, on the same batches): " + "; ".join(reached) + "."]
        if costs:           # (none where every kind's run or the learned layer's diverged in every seed)
            said += [f"The {figure_words('stage1_cost')}: " + "; ".join(costs) + ".",
                     f"The whole training took {listed(seconds)}."]
        paras.append(" ".join(said))
        paras.insert(1, self._answer(by))
        paras.append(owed_paragraph(rows, unit="top stage's face unit"))
        return "\n\n".join(p for p in paras if p)

    def _answer(self, by: dict[str, dict[str, Any]]) -> str:
        """The question answered in words: where each other kind beats or trails the learned layer, each named as the
        claim names it (gabor-init is learned too: "better than the learned layer" read as if it were not)."""
        said = []
        for k in KINDS[1:]:
            read = _downstream(by[k])
            # (a reading Holm's correction does not keep is named as a lead: "better on" alone read as a finding)
            parts = [f"{what} on " + ", ".join(f"the {figure_words(f)}" + lead_mark(by[k], f"delta_{f}", LEAD_IN_LIST)
                                               for f in read[w])
                     for w, what in (("higher", "better"), ("lower", "worse")) if read[w]]
            # the rest, neither better nor worse: "(6 inconclusive)", "(2 with no detectable effect, 4 inconclusive)"
            rest = [f"{n} {how}" for n, how in ((len(read["no detectable effect"]), "with no detectable effect"),
                                                (len(read["inconclusive"]), "inconclusive")) if n]
            if rest:
                of = (f"the other {len(read['no detectable effect']) + len(read['inconclusive'])}" if parts
                      else f"any of the {sum(map(len, read.values()))} downstream figures")
                parts.append(f"not detectably different on {of} ({', '.join(rest)})")
            said.append(f"{_named(k, verb=True)} " + "; ".join(parts))
        unseparated = all(by[k]["extra"]["readings"]["face_auc_controls"] not in ("higher", "lower") for k in KINDS[1:])
        return (f"In short, against {AGAINST} (then frozen), paired on the same seeds: "
                + ". ".join(s if i == 0 else s[0].upper() + s[1:] for i, s in enumerate(said))
                + (". The face AUC on the matched controls separated none of them from it." if unseparated else "."))

    def claim(self, rows: list[dict[str, Any]]) -> str:
        """"Against the first layer learned from a random start, on the downstream probes and face AUCs: the fixed
        Gabor bank (gabor) is worse on 3 (1 of them a lead: not after Holm's correction), better on 1 and inconclusive
        on 2 of 6 (digits probe accuracy on stage 2 Δ -0.6 points [-3.2, +1.9]); ...; the layer learned from a Gabor
        start (gabor-init) is ...": the "In short" paragraph's counts (:func:`_downstream`), with the probe's difference
        (named as every paragraph names it, :func:`~downpour.studies.figure_words.figure_words`). gabor-init is learned
        too, from the hand design as its starting point, so the claim names both layers by their starts, not
        "gabor-init against the learned layer" (as if gabor-init were not learned)."""
        by = {r["condition"]: r for r in rows}
        said = []
        for k in KINDS[1:]:
            read = _downstream(by[k])
            # (a count resting on readings Holm's correction does not keep says how many, as staleness's and costs' do)
            leads = {w: sum(lead(by[k], f"delta_{f}") for f in read[w]) for w in CLAIMED}
            counted = listed(f"{what} on {len(read[w])}{leads_of(leads[w], len(read[w]))}"
                             for w, what in CLAIMED.items() if read[w])
            probe = delta(by[k], "delta_probe_digits_stage2", points=1) or "Δ not measured"
            said.append(f"{_named(k, verb=True)} {counted or 'measured on none'} of {sum(map(len, read.values()))} "
                        f"({figure_words('probe_digits_stage2')} {probe})")
        return f"Against {AGAINST}, on the downstream probes and face AUCs: " + "; ".join(said) + "."

    def figures(self, rows: list[dict[str, Any]], cells: Cells, folder: Path) -> list[Path]:
        names = [r["condition"] for r in rows]
        by = {r["condition"]: r for r in rows}
        out = [interval_bars(names, [by[n]["figures"]["edge_fraction"] for n in names], folder / "edges.png",
                             "edge-like first-layer filters (95% intervals)", "edge-like fraction")]
        labels, triples = [], []
        for p in PROBE_SETS:
            for layer in LAYERS:
                for n in names:
                    labels.append(f"{n} {p}/{layer}")
                    triples.append(by[n]["figures"][f"probe_{p}_{layer}"])
        out.append(interval_bars(labels, triples, folder / "probes.png", "linear probe accuracy (95% intervals)",
                                 "accuracy"))
        labels = [f"{n} {w}" for w in ("lfw", "controls") for n in names]
        out.append(interval_bars(labels, [by[n]["figures"][f"face_auc_{w}"] for w in ("lfw", "controls") for n in names],
                                 folder / "face_auc.png", "face test: the face unit's AUC (95% intervals)\n"
                                 "against lfw's non-faces and against the matched controls", "AUC", reference=0.5))
        out.append(owed_figure(rows, folder / "face_owed_controls.png"))
        seeds = sorted({s for (_, s) in cells})
        series = {}
        for n in names:
            steps = sorted(int(k.split("@")[1]) for k in cells[(n, seeds[0])] if k.startswith("stage1_cost@"))
            series[n] = (steps, [mean_ci([cells[(n, s)][f"stage1_cost@{k}"] for s in seeds])[0] for k in steps])
        # log y: on a linear one the Gabor banks' 5,000 press the learned and random banks' 200 into one line
        out.append(curves(series, folder / "stage1_cost.png", "stage-1 cost during its training (mean over seeds)",
                          "step", "stage-1 cost (reconstruction + pooled L2)", logy=True))
        return out


# how the claim counts each reading of a downstream figure
CLAIMED = {"lower": "worse", "higher": "better", "no detectable effect": "no different", "inconclusive": "inconclusive"}
# how the verdict and the claim name each kind against the learned layer, with its verb: by what it starts from and
# whether it learns
NAMES = {"gabor": ("the fixed Gabor bank (gabor)", "is"), "random": ("fixed random filters (random)", "are"),
         "gabor-init": ("the layer learned from a Gabor start (gabor-init)", "is")}


def _downstream(row: dict[str, Any]) -> dict[str, list[str]]:
    """The downstream figures (:data:`DOWNSTREAM`) a kind's row compares, by how each reads against the learned layer:
    {"higher": [...], "lower": [...], "no detectable effect": [...], "inconclusive": [...]} (any other reading, "not
    measured", counted inconclusive)."""
    read = row["extra"]["readings"]
    found: dict[str, list[str]] = {w: [] for w in CLAIMED}
    for f in DOWNSTREAM:
        if f in read:
            found[read[f] if read[f] in found else "inconclusive"].append(f)
    return found


def _named(kind: str, verb: bool = False) -> str:
    """"the fixed Gabor bank (gabor)", with its verb ("... is") where ``verb``: :data:`NAMES`."""
    name, is_ = NAMES[kind]
    return f"{name} {is_}" if verb else name


def _than(row: dict[str, Any]) -> str:
    """", higher than learned's (Δ +5316 [+5159, +5473])": the paired difference of the final stage-1 cost that Holm's
    paragraph reads, with its number and interval (that paragraph names it alone: "gabor against learned: final
    stage-1 cost higher"); "inconclusive against learned's (Δ ...)" where it reads neither higher nor lower."""
    reading, shown = row["extra"]["readings"]["stage1_cost"], delta(row, "delta_stage1_cost", "{:+.4g}")
    than = "than" if reading in ("higher", "lower") else "against"
    return f", {reading} {than} {BASELINE}'s" + (f" ({shown})" if shown else "")


def _reading(row: dict[str, Any], figure: str, points: bool = False) -> str:
    """"higher (Δ +6.6 points [+5.0, +8.3], a lead)": how ``figure`` reads against the learned layer, with its paired
    difference as the claims give it (:func:`~downpour.studies.claims.delta`; in percentage points where ``points``).
    One parenthesis, none inside it: "(lower (a lead: not after Holm's correction))" read so."""
    shown = delta(row, f"delta_{figure}", points=1 if points else None)
    reading = row["extra"]["readings"][figure]
    return f"{reading} ({shown})" if shown else reading
