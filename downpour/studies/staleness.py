"""Q1, local optima: does asynchrony help SGD escape poor local minima?

**Task.** The teacher–student problem of :mod:`downpour.models.teacher` (a ReLU student of 8
units learning an orthonormal teacher of 8 units): from random starts, plain SGD reaches the global
optimum (population loss 0) in most seeds and stalls in a spurious minimum in the others. A cell
*succeeds* when the exact population loss at the end is below 1e-3 and *diverges* when a gradient
or the loss is no longer finite. Every cell trains through the real parameter server on the
simulated cluster (shards, server-side SGD, workers, delays), so it reproduces bit for bit.

**Conditions**, at each learning rate (every condition gets the same examples and the same horizon
lr × updates = 300, so a small rate is not failed for running out of steps):
- ``sync``: one worker, no delay: plain SGD, the baseline of every comparison at that rate;
- ``delayT``: one worker whose pushes travel T steps (constant): every update is about T stale;
- ``random4``: exponentially distributed delays, mean 4;
- ``async4``: four asynchronous workers (DistBelief's setting);
- at the largest rate only ``sync``, ``delay2`` and ``async4``: the edge of stability;
- at the smallest rate (stable for every delay), controls for ``async4`` on the same seeds:
  ``noise``, fresh gradients plus Gaussian noise as large, relative to the gradient, as the error
  staleness adds; ``momentum``, the
  momentum asynchrony implies (Mitliagkas et al. 2016); see :mod:`downpour.studies.matching`;
- at that rate also an over-parametrised student (``wide/``, 16 units), and four workers on iid
  and on heterogeneous shards (``het/``: each worker holds the inputs where a few coordinates
  dominate), asynchronous vs synchronous (``sync4``: a round averages four gradients into one update
  at four times the rate, the linear scaling rule, so lr × updates stays the same).

**The real objective.** The UFLDL sparse autoencoder with Adam on the server, the same examples in
each condition: ``sae/serial`` (one worker, no delay), ``sae/async4`` (four asynchronous workers:
as many server updates as serial, but stale) and ``sae/sync4`` (four synchronous workers: a quarter
of the updates, each the mean of four gradients). The figure is the final cost on the whole
training set; its spread over seeds says whether asynchrony lands in different minima.
"""
from __future__ import annotations

import dataclasses
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from downpour._names import plural
from downpour.batch import Batch
from downpour.cli_flags import RAY_ONLY
from downpour.config import ConfigError, RunConfig
from downpour.models.registry import build
from downpour.ps.in_memory import simulate
from downpour.studies import words
from downpour.studies.base import Cells, Condition, Study
from downpour.studies.claims import change
from downpour.studies.designs.staleness import SAE_LR, WORKERS, StalenessDesign
from downpour.studies.figures import distributions, interval_bars, phase_diagram
from downpour.studies.matching import implicit_momentum, stale_error
from downpour.studies.holm import LEAD, LEAD_IN_ASIDE, lead, lead_mark, leads_of
from downpour.studies.stats import (flips, mean_ci, note_left_out, paired_proportions, paired_test, proportion_words,
                                    record_test, wilson)

SUCCESS = 1e-3          # population loss below this: the global optimum
DIVERGED = 1e3          # population loss above this (or not finite, or a gradient a shard refused): diverged
# (not train/divergence.py's 1,000 times the first logged loss: simulate logs none; from a start near 2 this is the
# stricter line, and one refused push counts where a run's summary needs most refused; docs/studies.md, Q1)
CALIBRATION_SEEDS = (10_001, 10_002, 10_003, 10_004)   # disjoint from the study's seeds
RESOLUTION = 0.10       # a difference interval within ±10 points that holds 0 reads "no detectable effect"


def _difference(row: dict[str, Any]) -> str:
    """"Δ -35 points [-60, -10]: lower, a lead": a success-rate comparison's paired difference and its reading, with
    McNemar's p where it, not the interval, made it inconclusive: "Δ -100 points [-100, -7]: inconclusive" read as a
    contradiction (4 of 4 seeds lost: p = 0.125)."""
    why = _mcnemar(row)
    reading = (f"inconclusive, {why}" if why else
               row["extra"]["reading"] + lead_mark(row, "delta_vs_success", LEAD_IN_ASIDE))
    return f"Δ {words.points(row['figures']['delta_vs_success'], 0, ' points', aside=', {}')}: {reading}"


def _mcnemar(row: dict[str, Any]) -> str:
    """"McNemar's exact p = 0.125 on the 4 seeds where only one of the two succeeded" where McNemar's test, not the
    interval, left a success-rate comparison inconclusive (its interval leaves out 0); else ""."""
    _, low, high = row["figures"]["delta_vs_success"]
    extra = row["extra"]
    if extra["reading"] != "inconclusive" or low <= 0 <= high:
        return ""
    return (f"McNemar's exact p = {extra['mcnemar_p']:.3g} on the {plural(extra['gained'] + extra['lost'], 'seed')} "
            "where only one of the two succeeded")


def _against(row: dict[str, Any], by: dict[str, dict[str, Any]], name: str = "") -> str:
    """'0% against wide/lr0.125/sync's 100% (Δ -100 points [-100, -96]: lower': a row's success rate beside its
    baseline's (``name``: how to call the baseline, its condition's name by default), with the paired difference and
    its reading, the parenthesis left open for what else the sentence says of the row."""
    vs = row["params"]["vs"]
    return (f"{words.against(row['figures']['p_success'][0], name or vs, by[vs]['figures']['p_success'][0])} "
            f"({_difference(row)}")


def _raised_lowered(compared: list[dict[str, Any]]) -> dict[str, str]:
    """{"higher": "0", "lower": "3 (2 of them leads: not after Holm's correction)"}: how many of the phase diagram's
    success-rate comparisons ``compared`` read higher and lower, with the leads among them (:func:`~downpour.studies.
    holm.leads_of`), as the verdict and the claim count them."""
    said = {}
    for w in ("higher", "lower"):
        got = [r for r in compared if r["extra"]["reading"] == w]
        said[w] = f"{len(got)}{leads_of(sum(lead(r, 'delta_vs_success') for r in got), len(got))}"
    return said


class StalenessStudy(StalenessDesign, Study):
    base = "teacher-student"
    counts_out_diverged = False     # P(diverged) is its outcome: every cell records it beside every figure (DIVERGED)
    # the momentum control's server rule holds only a tensor pushed without a gradient (cells cached before 2026-12-04
    # held every exactly-zero element: a dead ReLU unit's weights kept their velocity), and worker 0 draws the local
    # loop's batch order (ps.seeds.batch_seed; cells cached before 2026-12-05 drew their own): cells cached before
    # either are refused, not mixed
    measured_by = ("server momentum: a tensor with no gradient held, exact zeros trained; worker 0 draws the local "
                   "loop's batches")
    # the noise and momentum controls' cells get these from the calibration (run_cell)
    varied_in_cells = ("cluster.grad_noise", "cluster.grad_noise_relative", "cluster.rule", "cluster.momentum", "train.lr")
    fixed = {key: "every cell runs Downpour on the in-memory simulator (ps.in_memory.simulate), which reads no runner, "
                  "address, algorithm, local optimiser or Ray setting"
             for key in ("cluster.runner", "cluster.address", "cluster.algorithm", "train.optimizer", "train.momentum",
                         *RAY_ONLY)}
    fixed.update({key: "the in-memory simulator writes nothing (no log, checkpoint or TensorBoard file) and loses no "
                       "worker or shard" for key in ("train.log_every", "train.tensorboard", "cluster.checkpoint_every",
                                                     "cluster.shard_restarts", "cluster.faults")})
    # the server learns at cluster.lr where it is set (cluster.lr = 0.05: every cell would learn at 0.05, its train.lr
    # axis, the SAE arms' 0.02 and the momentum control's matched rate read by nothing), so it is refused
    fixed["cluster.lr"] = ("the study varies the server's learning rate itself, as train.lr (its rate axis, the "
                           "sparse autoencoder's 0.02, the momentum control's matched rate), and cluster.lr would "
                           "replace it in every cell")

    # (not "seeds 0, 0, 4": three counts that look like seed numbers)
    headings = {"diverged_vs": "diverged_vs: seeds diverged in its vs condition vs in this one"}

    def shown(self, row: dict[str, Any], key: str) -> str | None:
        """diverged_vs as "0 of 4 vs 1 of 4; Δ +25 points [-14, +62]: inconclusive", and a rate that averages k
        gradients as "0.5 (4 × 0.125: a round averages 4 gradients)" (not a bare 0.5 beside the name
        het/lr0.125/sync4, explained in docs/studies.md alone)."""
        extra = row.get("extra", {})
        if key == "diverged_vs" and key in extra:
            was, now, n = extra[key]["seeds"]
            return (f"{was} of {n} vs {now} of {n}; Δ {html.escape(words.points(extra[key]['delta'], 0, ' points'))}: "
                    f"{html.escape(extra[key]['reading'])}")
        k = self.averaged(row["group"], row["params"].get("staleness", ""))
        if key == "lr" and k > 1:
            lr = row["params"]["lr"]
            return f"{lr:g} ({k} × {lr / k:g}: a round averages {k} gradients)"
        return None

    def cell_config(self, condition: Condition, seed: int) -> RunConfig:
        """As every study's, except that the sparse autoencoder's arms (``sae/*``) swap in their own model:
        the user's ``model.*`` and ``objective.*`` keys are the teacher-student arms' (they reached ufldl-sae)."""
        if condition.group != "sae":
            return super().cell_config(condition, seed)
        own = [(key, value) for key, value in self.sets if not key.startswith(("model.", "objective."))]
        return Study.cell_config(dataclasses.replace(self, sets=own), condition, seed)

    # --- calibration: the controls' noise and momentum, matched to async4 ---------------------------
    def prepare(self) -> dict[str, Any]:
        context: dict[str, Any] = {}
        seeds = CALIBRATION_SEEDS[:1] if self.quick else CALIBRATION_SEEDS
        by_name = {c.name: c for c in self.conditions()}
        for lr in (self._middle(),):
            cond = by_name[f"lr{lr:g}/async4"]
            stale, errors = [], []
            for seed in seeds:
                cfg = self.cell_config(cond, seed)
                run = simulate(cfg)
                stale.append(run.mean_staleness)
                errors.append(stale_error(cfg, run.staleness))
            s = float(np.mean(stale))
            mu, lr_m = implicit_momentum(s, lr)
            finite = [e for e in errors if math.isfinite(e[1])]
            if not finite:   # its cells were recorded as diverged runs: "noise hurt", of a control never run
                raise ConfigError(f"the noise-matched control's calibration: the stale-gradient error of {cond.name} "
                                  f"is not finite in any of its {plural(len(seeds), 'calibration seed')} (every replay diverged), "
                                  "so there is no noise to match; the study cannot run its control at these settings "
                                  "(a --set that makes async4 diverge at this rate?)")
            context[f"lr{lr:g}"] = {"matched": cond.name, "mean_staleness": round(s, 4),
                                    "stale_error_rms": float(np.mean([e[0] for e in finite])),
                                    "grad_noise": float(np.mean([e[1] for e in finite])),
                                    "momentum": round(mu, 6), "momentum_lr": lr_m, "seeds": list(seeds)}
        return context

    # --- one cell ----------------------------------------------------------------------------------
    def same_run(self, condition: Condition) -> Any:
        """A cell is its overrides, its control and whether it is a sparse-autoencoder cell: ``iid/…/async4``
        is the phase diagram's ``…/async4`` (same rate, workers, data and width) and runs once per seed."""
        return (condition.sets, condition.params["control"], condition.group == "sae")

    def run_cell(self, condition: Condition, seed: int, context: dict[str, Any]) -> dict[str, float]:
        if condition.group == "sae":
            return self._sae_cell(condition, seed)
        control = condition.params["control"]
        if control:
            match = context[f"lr{condition.params['lr']:g}"]
            extra: list[tuple[str, Any]] = (
                [("cluster.grad_noise", match["grad_noise"]), ("cluster.grad_noise_relative", True)]
                if control == "noise" else
                [("cluster.rule", "momentum"), ("cluster.momentum", match["momentum"]), ("train.lr", match["momentum_lr"])])
            condition = dataclasses.replace(condition, sets=condition.sets + tuple(extra))
        run = simulate(self.cell_config(condition, seed))
        loss = run.model.population_loss()   # type: ignore[operator]
        diverged = run.rejected > 0 or not math.isfinite(loss) or loss > DIVERGED
        return {"success": float(not diverged and loss < SUCCESS), "diverged": float(diverged),
                "population_loss": loss if not diverged else float("nan"),
                "mean_staleness": run.mean_staleness}

    def _sae_cell(self, condition: Condition, seed: int) -> dict[str, float]:
        cfg = self.cell_config(condition, seed)
        run = simulate(cfg)
        _, objective = build(cfg, run.data.input_shape)
        with torch.no_grad():
            total, _ = objective(run.model.forward_train(Batch(run.data.x)))
        return {"final_cost": float(total), "mean_staleness": run.mean_staleness}

    # --- rows, verdict, figures ------------------------------------------------------------------
    def summarise(self, conditions: list[Condition], cells: Cells, seeds: list[int]) -> list[dict[str, Any]]:
        rows = []
        for c in conditions:
            got = [cells[(c.name, s)] for s in seeds]
            row: dict[str, Any] = {"condition": c.name, "group": c.group, "params": c.params, "n": len(seeds),
                                   "figures": {}, "extra": {}}
            if c.group == "sae":
                cost = [g["final_cost"] for g in got if math.isfinite(g["final_cost"])]   # a diverged seed: counted apart
                row["figures"]["final_cost"] = list(mean_ci(cost))
                row["extra"]["diverged"] = len(got) - len(cost)
                row["extra"]["cost_sd"] = float(np.std(cost, ddof=1)) if len(cost) > 1 else float("nan")
                row["extra"]["cost_quartiles"] = ([float(q) for q in np.quantile(cost, [0.25, 0.5, 0.75])] if cost
                                                  else [float("nan")] * 3)
            else:
                ok = [g["success"] > 0 for g in got]
                row["figures"]["p_success"] = list(wilson(sum(ok), len(ok)))
                row["figures"]["p_diverged"] = list(wilson(sum(g["diverged"] > 0 for g in got), len(got)))
            row["figures"]["mean_staleness"] = list(mean_ci([g["mean_staleness"] for g in got]))
            vs = c.params["vs"]
            if vs:
                base = [cells[(vs, s)] for s in seeds]
                if c.group == "sae":
                    pair = [b["final_cost"] for b in base], [g["final_cost"] for g in got]
                    row["figures"]["delta_vs_cost"], row["extra"]["reading"] = paired_test(
                        row, "delta_vs_cost", *pair, 0.01 * abs(np.nanmean(pair[0])), against=vs)
                    note_left_out(row, "delta_vs_cost", *pair)
                else:
                    pair = [b["success"] > 0 for b in base], [g["success"] > 0 for g in got]
                    d = paired_proportions(*pair)
                    row["figures"]["delta_vs_success"] = list(d)
                    row["extra"].update(flips(*pair))
                    row["extra"]["reading"] = proportion_words(*d, RESOLUTION, row["extra"]["mcnemar_p"])
                    record_test(row, "delta_vs_success", row["extra"]["reading"], row["extra"]["mcnemar_p"], against=vs)
                    was, now = [b["diverged"] > 0 for b in base], [g["diverged"] > 0 for g in got]
                    dd, p = paired_proportions(was, now), flips(was, now)["mcnemar_p"]   # did staleness itself make seeds diverge
                    row["extra"]["diverged_vs"] = {"seeds": [sum(was), sum(now), len(now)], "delta": list(dd),
                                                   "reading": proportion_words(*dd, RESOLUTION, p)}
                    if c.group == "phase" and not c.params.get("control"):
                        # (what the verdict reads: every stale phase row, fixed by the design, not those where most
                        # seeds diverged, which would let the outcome choose which tests enter Holm's family)
                        record_test(row, "diverged_vs", row["extra"]["diverged_vs"]["reading"], p, against=vs)
            rows.append(row)
        return rows

    def verdict(self, rows: list[dict[str, Any]]) -> str:
        by = {r["condition"]: r for r in rows}
        paras = []
        for lr in self._lrs():
            p = f"lr{lr:g}/"
            base = by[p + "sync"]["figures"]["p_success"]
            parts = [f"{r['condition'].split('/')[-1]} {words.percent(r['figures']['p_success'][0])} ({_difference(r)})"
                     for r in rows if r["condition"].startswith(p) and r["params"]["vs"] == p + "sync"]
            paras.append(f"At learning rate {lr:g}, plain SGD reached the global optimum in {words.percent(base[0])} of seeds "
                         f"[{words.percent(base[1])}, {words.percent(base[2])}]; with staleness: " + "; ".join(parts) + ".")
            controls = [r for r in rows if r["condition"].startswith(p) and r["params"]["control"]]
            if controls:
                said = [f"the {r['params']['control']}-matched control reached {_against(r, by, 'async4')})"
                        for r in controls]
                paras[-1] += " Without any delay, " + "; ".join(said) + "."
        compared = [r for r in rows if r["group"] == "phase" and r["params"]["vs"]]
        counted = [r["extra"]["reading"] for r in compared]
        tally = {w: counted.count(w) for w in ("no detectable effect", "inconclusive")}
        counts = _raised_lowered(compared)
        # stale conditions where most seeds diverged: staleness made them diverge only where the paired test says
        # so (more seeds diverged than at the same rate and seeds without it, McNemar p < 0.05)
        # (not the controls: their baseline is async4, itself stale)
        diverged = [r for r in rows if r["group"] == "phase" and r["params"]["vs"] and not r["params"].get("control")
                    and r["figures"]["p_diverged"][0] > 0.5]
        # (the count is the phase diagram's success rates alone; Holm's paragraph counts every test the verdict reads)
        overall = (f"Over the phase diagram's {len(counted)} success-rate comparisons (each stale condition against "
                   "synchronous SGD at the same rate and seeds; not the controls or the arms below), "
                   f"staleness raised the success rate in {counts['higher']}, lowered it in {counts['lower']}, had no "
                   f"detectable effect (interval within ±{RESOLUTION:.0%}) in {tally['no detectable effect']}, and was "
                   f"inconclusive in {tally['inconclusive']}.")
        caused = [r["condition"] for r in diverged if r["extra"]["diverged_vs"]["reading"] == "higher"]
        # (one whose paired test Holm's correction over the study does not keep is named as a lead, not a cause)
        held = [c for c in caused if not lead(by[c], "diverged_vs")]
        if held:
            overall += (f" Most seeds diverged in {', '.join(held)}, significantly more than at the same rate without "
                        "staleness: there staleness lowered the stable learning rate.")
        if len(held) < len(caused):
            overall += (f" Most seeds {'also ' if held else ''}diverged in {', '.join(c for c in caused if c not in held)}, "
                        "more than at the same rate without staleness" + LEAD + ": staleness may have lowered the "
                        "stable learning rate there; recheck with more seeds.")
        untold = [r for r in diverged if r["condition"] not in caused]
        if untold:
            overall += f" Most seeds {'also ' if caused else ''}diverged in " + ", ".join(
                f"{r['condition']} ({r['extra']['diverged_vs']['seeds'][1]} of {r['extra']['diverged_vs']['seeds'][2]}, "
                f"against {r['extra']['diverged_vs']['seeds'][0]} without staleness)" for r in untold) + (
                "; with these seeds that is not shown to be staleness's doing.")
        paras.insert(0, overall)
        for group, what in (("width", "With an over-parametrised student (16 units)"),
                            ("data", "With heterogeneous workers (inputs split by their dominant coordinate)")):
            rs = [r for r in rows if r["group"] == group and r["params"]["vs"]]
            if rs:
                paras.append(what + ", " + "; ".join(
                    f"{r['condition']} reached {_against(r, by)}"
                    # (0% could read as stuck in spurious minima: say when the seeds diverged instead)
                    + (f"; {words.percent(r['figures']['p_diverged'][0])} of its seeds diverged"
                       if r["figures"]["p_diverged"][0] > 0 else "") + ")" for r in rs) + ".")
        sae = {k: by["sae/" + k] for k in ("serial", "async4", "sync4")}
        said = "; ".join(f"{k} {r['figures']['final_cost'][0]:.4g} (sd {r['extra']['cost_sd']:.2g} over seeds"
                         + (f"; {r['extra']['diverged']} of {r['n']} seeds diverged, left out of the mean and the pairs"
                            if r["extra"].get("diverged") else "")
                         + (f"; vs serial {words.difference(r['figures']['delta_vs_cost'], '{:+.3g}', aside=', {}')}, "
                            f"{r['extra']['reading']}{lead_mark(r, 'delta_vs_cost', LEAD_IN_ASIDE)})"
                            if r["params"]["vs"] else ")") for k, r in sae.items())
        paras.append(f"On the real objective (the UFLDL sparse autoencoder, Adam on the server at {SAE_LR:g}, the same "
                     f"examples in each condition), the final cost on the whole training set was: {said}.")
        return "\n\n".join(p for p in paras if p)

    def claim(self, rows: list[dict[str, Any]]) -> str:
        """"At learning rate 0.125, asynchrony with 4 workers lowers the share of seeds reaching the global optimum
        (Δ -35 points [-60, -10], a lead): async4 reached 40% against sync's 75%; over the phase diagram's 12
        success-rate comparisons staleness raised it in 0 and lowered it in 3 (2 of them leads: not after Holm's
        correction)": async4 against synchronous SGD at the rate of the controls (the smallest, where every delay is
        stable), said with every study's verbs (:data:`~downpour.studies.claims.VERBS`), the phase diagram's count after
        it (the verdict's first paragraph), with how many of those lowered are where most seeds diverged."""
        by = {r["condition"]: r for r in rows}
        row = by.get(f"lr{self._middle():g}/async4")
        if row is None or not row["params"].get("vs"):
            return ""
        said = change(row, "delta_vs_success", "the share of seeds reaching the global optimum", points=0)
        sync = by[row["params"]["vs"]]["figures"]["p_success"][0]
        why = _mcnemar(row)
        compared = [r for r in rows if r["group"] == "phase" and r["params"]["vs"]]
        counts = _raised_lowered(compared)
        lowered = sum(r["extra"]["reading"] == "lower" for r in compared)
        # (a rate lowered because most seeds diverged is a step too large for staleness, not a worse optimum: the full
        # setting's 8 lowered are all such, beside "does not change" at this rate)
        diverged = sum(r["extra"]["reading"] == "lower" and r["figures"]["p_diverged"][0] > 0.5 for r in compared)
        how = ("" if not diverged else ", each where most seeds diverged" if diverged == lowered else
               f", {diverged} of them where most seeds diverged")
        return (f"At learning rate {self._middle():g}, asynchrony with {WORKERS} workers {said}: async4 reached "
                f"{words.against(row['figures']['p_success'][0], 'sync', sync)}{', ' + why if why else ''}; over the "
                f"phase diagram's {plural(len(compared), 'success-rate comparison')} staleness raised it in "
                f"{counts['higher']} and lowered it in {counts['lower']}{how}.")

    def figures(self, rows: list[dict[str, Any]], cells: Cells, folder: Path) -> list[Path]:
        by = {r["condition"]: r for r in rows}
        kinds = self._kinds(self._middle())
        lrs = self._lrs()
        grid = np.array([[by[f"lr{lr:g}/{k}"]["figures"]["p_success"][0] if f"lr{lr:g}/{k}" in by else np.nan
                          for k in kinds] for lr in lrs])
        n = max((by[f"lr{lr:g}/{k}"]["n"] for lr in lrs for k in kinds if f"lr{lr:g}/{k}" in by), default=0)
        # (its cells are rates without their intervals: the title says how few seeds each is of, on --quick 2)
        out = [phase_diagram(grid, [f"lr {lr:g}" for lr in lrs], kinds, folder / "phase.png",
                             f"P(global optimum), teacher-student k=8, {plural(n, 'seed')} per cell",
                             "P(global optimum)")]
        mid = f"lr{self._middle():g}/"
        names = [mid + k for k in kinds + ["noise", "momentum"]]
        out.append(interval_bars([n.split("/")[-1] for n in names], [by[n]["figures"]["p_success"] for n in names],
                                 folder / "controls.png",   # (named as the phase diagram and the table name it)
                                 f"P(global optimum) at lr {self._middle():g}, Wilson 95% intervals over seeds\n"
                                 "(dashed: sync's)", "P(global optimum)",
                                 reference=by[mid + "sync"]["figures"]["p_success"][0], whole=(0.0, 1.0)))
        seeds = sorted({s for (_, s) in cells})
        out.append(distributions({c: [cells[(c, s)]["final_cost"] for s in seeds]
                                  for c in ("sae/serial", "sae/async4", "sae/sync4")},
                                 folder / "sae_cost.png", "sparse autoencoder: final cost per seed", "final cost"))
        return out
