"""Q6 of MISSION.md (issue 10's Q7), whole-network design: the classic designs side by side.

**Data.** Every arm trains on the cat network's data (``--config cat-demo``'s ``[data]``: 32×32 crops
of the built-in natural images and lfw training faces, patch-normalised, partly whitened) through the
same local runner, the same Adam optimiser and batch of 32. Each arm keeps its family's learning rate
(the shipped presets': 0.005 for the cat network, 0.01 for the GRU, 0.03 for the UFLDL autoencoder;
0.005 where no preset uses Adam).

**Budget: equal training FLOPs.** The cat network gets ``train.steps`` steps (300 in the full setting);
every other arm gets as many steps as spend the same FLOPs, counted by torch's FLOP counter over one real
training step of each (forward, cost, backward; the RBM's Gibbs chain included), in :meth:`prepare`.

**Arms**, each against ``cat``:
- ``cat``: the cat network as shipped (``cat-demo``: two stages of 2x2-tiled filters → L2 pool → LCN);
- ``conv-ae``: a convolutional autoencoder: one convolutional RICA stage (``rica-local`` with
  ``tile = 1``: 8 maps of 8×8 filters, stride 2, tied decoder, pooled-L2 sparsity);
- ``rbm``: a Gaussian–Bernoulli RBM (``grbm-patches``: 64 hidden units, CD-1; Gaussian visibles
  because the data are real-valued);
- ``rnn``: a GRU autoencoder reading the crop row by row (``rnn-rows-faces``: 128 units, code 64);
- ``sae``: the UFLDL sparse autoencoder (``ufldl-sae``: 25 sigmoid units, KL sparsity ρ = 0.01, weight
  decay) with UFLDL's linear decoder, since the data are not in [0, 1].

**Code-size controls** (full setting), each against its own small arm: ``rbm-288``, ``rnn-288`` and
``sae-288`` are those designs with the cat network's code size (``CODE``: 8 maps × 6 × 6 positions of
stage 2), trained as many steps as the small arm (equal examples, not equal FLOPs), so that only the
number of units differs (and ``rnn-288``'s learning rate, 0.003, its best by its own training cost: the
GRU's 0.01 trained the larger GRU too fast). They separate what a design learns from how many numbers it outputs: with
~70 training faces, a few units that must each explain much of the data become face templates.

**Figures** (:mod:`downpour.studies.measure`): linear-probe accuracy of each arm's top codes (digits;
lfw faces vs non-faces), edge-like fraction of the first-layer filters (none for the GRU, whose input
weights are rows), face AUC of the best unit on the matched controls, parameters, FLOPs per sample,
wall time per step, and the steps and FLOPs the budget gave; and what the faces gave each arm's face unit:
the same cell trained again without a face (``face_owed_controls``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from downpour._names import listed
from downpour.config import RunConfig
from downpour.data import build_dataset
from downpour.studies.base import Cells, Condition
from downpour.studies.designs.architectures import CODE, CODE_ARMS, ArchitecturesDesign
from downpour.studies.claims import change
from downpour.studies.compare import bar_reference, difference_sentence, owed_figure, owed_paragraph, tradeoff, value
from downpour.studies.figure_words import figure_words
from downpour.studies.figures import condition_colours, interval_bars
from downpour.studies.measured import MeasuredStudy
from downpour.studies.measure import config_with_model, flops_per_step, train_and_measure, with_steps

STEPS_FULL, STEPS_QUICK = 300, 16      # the cat network's steps; they set the FLOP budget of every arm
RESOLUTION = {"probe_digits": 0.02, "probe_lfw": 0.05, "face_auc_controls": 0.05, "face_owed_controls": 0.05,
              "edge_fraction": 0.05}
LABELS = {key: figure_words(key) for key in RESOLUTION}      # (one table of words for every study's figures)


def own_settings() -> str:
    """What a code-size control sets besides its units, as the verdict says it: ', and rnn-288's train.lr = 0.003'."""
    own = [f"{name}'s " + ", ".join(f"{key} = {v}" for key, v in more if key not in ("model.hidden", "model.code"))
           for name, (_, more) in CODE_ARMS.items() if any(key not in ("model.hidden", "model.code") for key, _ in more)]
    return "".join(f", and {o}" for o in own)


class ArchitecturesStudy(ArchitecturesDesign, MeasuredStudy):
    resolution = RESOLUTION

    def cell_config(self, condition: Condition, seed: int) -> RunConfig:
        steps = [("train.steps", STEPS_QUICK if self.quick else STEPS_FULL)]
        return config_with_model(self.base, [*self.base_sets, *steps, *self.sets, *condition.sets], seed)

    def prepare(self) -> dict[str, Any]:
        """The FLOP budget: the cat network's steps x its FLOPs per step; each arm's steps spend the same, and
        each code-size control takes its small arm's steps."""
        conditions = self.conditions()
        first = self.cell_config(conditions[0], 0)
        shape = build_dataset(first.data, first.seed).input_shape
        x = torch.randn((first.train.batch_size, *shape), generator=torch.Generator().manual_seed(0))
        per_step = {c.name: flops_per_step(self.cell_config(c, 0), x) for c in conditions}
        budget = per_step["cat"] * self.cell_config(conditions[0], 0).train.steps
        steps = {name: max(1, round(budget / f)) for name, f in per_step.items()}
        steps.update({name: steps[of] for name, (of, _) in CODE_ARMS.items() if name in steps})
        return {"budget_flops": budget, "flops_per_step": per_step, "steps": steps,
                "counted_on": {"batch": list(x.shape), "counter": "torch.utils.flop_counter, forward + cost + backward"}}

    def run_cell(self, condition: Condition, seed: int, context: dict[str, Any]) -> dict[str, float]:
        cfg = with_steps(self.cell_config(condition, seed), context["steps"][condition.name])
        figures = train_and_measure(cfg, self.measures(), seed)
        figures.setdefault("steps", float(cfg.train.steps))   # (a diverged cell spent its budget too)
        figures["train_flops"] = context["flops_per_step"][condition.name] * figures["steps"]
        return figures

    def verdict(self, rows: list[dict[str, Any]]) -> str:
        by = {r["condition"]: r for r in rows}
        cat = by["cat"]
        budget = cat["figures"]["train_flops"][0]
        designs = [r for r in rows if r["condition"] not in CODE_ARMS]
        paras = [f"Each arm trained on {budget / 1e9:.1f} GFLOP (the cat network's {cat['figures']['steps'][0]:.0f} steps): "
                 + ", ".join(f"{r['condition']} {r['figures']['steps'][0]:.0f} steps" for r in designs) + "."]
        if len(designs) < len(rows):
            paras[0] += (f" The code-size controls ({', '.join(CODE_ARMS)}) trained as many steps as their small arm, "
                         f"with the cat network's {CODE} units: only the code size differs between each and its arm"
                         f"{own_settings()}.")
        best = max(rows, key=lambda r: r["figures"]["probe_digits"][0])
        paras.append(f"The cat network's top codes reached digits probe accuracy {value(cat, 'probe_digits')}, lfw probe "
                     f"{value(cat, 'probe_lfw')}, face AUC on the matched controls {value(cat, 'face_auc_controls')} and "
                     # (a share: "0.154 [0.121, 0.187] edge-like filters" read as a count of filters)
                     f"an edge-like fraction of its filters {value(cat, 'edge_fraction')}, with "
                     f"{cat['figures']['params'][0]:,.0f} parameters "
                     f"and {cat['figures']['flops_fwd'][0] / 1e6:.2f} MFLOP per sample forward (input pixels: digits "
                     f"{value(cat, 'probe_digits_pixels')}). The highest digits probe mean was {best['condition']}'s (a ranking "
                     "of means: which differences the seeds resolve is in the paired intervals below).")
        for r in rows:
            if r is cat:
                continue
            f = r["figures"]
            # (its arm's words hold a parenthesis, "Gaussian-Bernoulli RBM (grbm-patches)": said outside one)
            paras.append(f"{r['condition']}, {r['params']['arm']}: {f['params'][0]:,.0f} parameters, "
                         f"{f['flops_fwd'][0] / 1e6:.3f} MFLOP per sample, {value(r, 'seconds_per_step', '{:.4f}')} s per "
                         f"step; paired against {r['params']['vs']}: "
                         + "; ".join(difference_sentence(r, k, LABELS[k]) for k in RESOLUTION) + ".")
        paras.append("Probe accuracy depends on the code's size as well as on what it learned (each arm's code is "
                     "the registered design's); the table gives every arm's parameters and FLOPs beside it.")
        paras.append(owed_paragraph(rows))
        return "\n\n".join(p for p in paras if p)

    def claim(self, rows: list[dict[str, Any]]) -> str:
        """"On the same 1.2 GFLOP of training, against the cat network's digits probe accuracy (0.905), rbm has an
        inconclusive effect on it (Δ +0.016 [-0.001, +0.033]) and sae lowers it (Δ -0.159 [-0.175, -0.143], a
        lead)": each other design against the cat network (the code-size controls, against their arm, are the
        verdict's)."""
        cat = next(r for r in rows if r["condition"] == "cat")
        said = [f"{r['condition']} {change(r, 'd_probe_digits', 'it')}" for r in rows if r["params"]["vs"] == "cat"]
        return (f"On the same {cat['figures']['train_flops'][0] / 1e9:.1f} GFLOP of training, against the cat "
                f"network's digits probe accuracy ({value(cat, 'probe_digits')}), {listed(said)}.") if said else ""

    def figures(self, rows: list[dict[str, Any]], cells: Cells, folder: Path) -> list[Path]:
        names = [r["condition"] for r in rows]
        out = [tradeoff(rows, "flops_fwd", "probe_digits", folder / "flops_vs_probe.png",
                        "FLOPs per sample vs digits probe accuracy", "forward FLOPs per sample", "probe accuracy (digits)")]
        for key, label in (("probe_digits", "probe accuracy (digits)"), ("probe_lfw", "probe accuracy (lfw faces)"),
                           ("face_auc_controls", "face AUC, matched controls"), ("edge_fraction", "edge-like fraction")):
            reference, said = bar_reference(rows, key)
            out.append(interval_bars(names, [r["figures"][key] for r in rows], folder / f"{key}.png",
                                     f"{label}, 95% intervals over seeds{said}", label, reference=reference,
                                     colours=condition_colours(names)))
        out.append(owed_figure(rows, folder / "face_owed_controls.png"))
        return out
