"""Q2, memory and compute: untied vs tiled vs convolutional templates, at equal maps and at equal parameters.

**Network and data.** The cat network as ``downpour train --config cat-demo`` trains it (two stages of
filter → L2 pool → LCN, 32×32 crops of the built-in natural images and lfw training faces, greedy,
Adam), with only the tiling dial ``model.tile`` and the maps changed; every cell has the same steps
and batch (the same examples), through the local runner.

**Conditions.**
- *equal maps* (8 templates per position in both stages), against ``untied`` (the paper's layer):
  ``tile4`` (4×4 = 16 filter banks repeating over the map), ``tile2`` (2×2 = 4 banks, the cat-demo
  preset), ``conv`` (one bank: a convolution);
- *equal parameters*: ``conv32`` is a convolution with 32 stage-1 maps, which has exactly ``tile2``'s
  parameters (32·8·8 + 8·32·5·5 = 4·8·8·8 + 4·8·8·5·5 = 8,448), against ``tile2``. (A convolution with
  the untied net's 422,400 parameters would need 1,600 stage-1 maps; ``tile4``'s 33,792 needs 128, at
  ~15x the FLOPs: both beyond a 2-core budget, see docs/studies.md.)

**Figures** (:mod:`downpour.studies.measure`): parameters, activation memory per sample, optimiser
state (Adam's, read from the final checkpoint), forward and backward FLOPs per sample, wall time per
training step, edge-like fraction of the stage-1 filters, face AUC of the best unit against held-out
lfw non-faces and against the four low-level-matched controls, linear-probe accuracy (digits, lfw); and what
the faces gave the face unit: the same cell trained again without a face (``face_owed_controls``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from downpour._names import listed
from downpour.studies.base import Cells
from downpour.studies.designs.templates import TemplatesDesign
from downpour.studies.claims import change
from downpour.studies.compare import bar_reference, difference_sentence, owed_figure, owed_paragraph, tradeoff, value
from downpour.studies.figure_words import figure_words
from downpour.studies.figures import condition_colours, interval_bars
from downpour.studies.measured import MeasuredStudy

# the smallest paired difference worth reporting, per compared figure (in its own units)
RESOLUTION = {"probe_digits": 0.02, "face_auc_controls": 0.05, "face_auc_lfw": 0.05, "face_owed_controls": 0.05,
              "edge_fraction": 0.05, "seconds_per_step": 0.005}
LABELS = {key: figure_words(key) for key in RESOLUTION}      # (one table of words for every study's figures)


class TemplatesStudy(TemplatesDesign, MeasuredStudy):
    resolution = RESOLUTION

    def verdict(self, rows: list[dict[str, Any]]) -> str:
        by = {r["condition"]: r for r in rows}
        ref = by["untied"]
        paras = []
        p0 = ref["figures"]["params"][0]
        same_flops = all(r["figures"]["flops_fwd"][0] == ref["figures"]["flops_fwd"][0]
                         for r in rows if r["group"] == "equal maps")
        lines = []
        for r in rows:
            if r["group"] != "equal maps" or r is ref:
                continue
            f = r["figures"]
            lines.append(f"{r['condition']} has {f['params'][0]:,.0f} parameters ({p0 / f['params'][0]:.0f}x fewer), "
                         f"{_state(r)} of optimiser state (untied {_state(ref)}); "
                         + "; ".join(difference_sentence(r, k, LABELS[k]) for k in RESOLUTION))
        paras.append(f"At equal maps (8 per position), the untied network has {p0:,.0f} parameters and "
                     f"{_state(ref)} of Adam state; its forward pass costs {ref['figures']['flops_fwd'][0] / 1e6:.2f} "
                     f"MFLOP per sample" + (" and every tiling costs exactly the same FLOPs and activation memory "
                                            "(tiling changes memory, not arithmetic)" if same_flops else "")
                     + f". Against untied, paired over seeds: " + ". ".join(lines) + ".")
        for r in rows:
            if r["group"] != "equal parameters":
                continue
            f, vs = r["figures"], by[r["params"]["vs"]]
            paras.append(f"At equal parameters ({f['params'][0]:,.0f}), {r['condition']} ({r['params']['maps'][0]} "
                         f"stage-1 maps, one shared bank) against {vs['condition']} ({vs['params']['maps'][0]} maps, "
                         f"{r['params']['maps'][0] // vs['params']['maps'][0]} banks): forward FLOPs "
                         f"{f['flops_fwd'][0] / 1e6:.2f} vs {vs['figures']['flops_fwd'][0] / 1e6:.2f} M per sample, "
                         f"activations {f['act_bytes'][0] / 1e3:.0f} vs {vs['figures']['act_bytes'][0] / 1e3:.0f} kB per "
                         f"sample; " + "; ".join(difference_sentence(r, k, LABELS[k]) for k in RESOLUTION) + ".")
        paras.append(f"For reference, a linear probe on the input pixels reaches {value(ref, 'probe_digits_pixels')} on "
                     f"digits; a face AUC of 0.5 is chance.")
        paras.append(owed_paragraph(rows))
        return "\n\n".join(p for p in paras if p)

    def claim(self, rows: list[dict[str, Any]]) -> str:
        """"At equal maps (8 per position), tile2 has 50x fewer parameters than untied (8,448 against 422,400) at the
        same forward FLOPs and raises the digits probe accuracy (Δ +0.066 [+0.050, +0.083], a lead); with 32 stage-1
        maps against tile2's 8, conv32 has as many parameters as tile2 (8,448) at 3.89x tile2's forward FLOPs and has
        an inconclusive effect on it (Δ +0.011 [-0.004, +0.026])": the equal-maps tiling of fewest parameters, what it
        saves and what it learned, then each equal-parameters arm against its tiling, each pair's maps, parameters and
        FLOPs said as its rows give them (:func:`_pair`)."""
        by = {r["condition"]: r for r in rows}
        ref, maps = by["untied"], [r for r in rows if r["group"] == "equal maps" and r["condition"] != "untied"]
        if not maps:
            return ""
        tied = min(maps, key=lambda r: r["figures"]["params"][0])
        said = [f"{_pair(tied, ref)} and {change(tied, 'd_probe_digits', 'the digits probe accuracy')}"]
        said += [f"{_pair(r, by[r['params']['vs']])} and {change(r, 'd_probe_digits', 'it')}"
                 for r in rows if r["group"] == "equal parameters"]
        sentence = "; ".join(said)
        return sentence[0].upper() + sentence[1:] + "."

    def figures(self, rows: list[dict[str, Any]], cells: Cells, folder: Path) -> list[Path]:
        names = [r["condition"] for r in rows]
        out = [tradeoff(rows, "params", "probe_digits", folder / "params_vs_probe.png",
                        "parameters vs digits probe accuracy", "trainable parameters", "probe accuracy (digits)"),
               tradeoff(rows, "params", "seconds_per_step", folder / "params_vs_time.png",
                        "parameters vs wall time per step", "trainable parameters", "seconds per step")]
        for key, label in (("probe_digits", "probe accuracy (digits)"), ("face_auc_controls", "face AUC, matched controls"),
                           ("edge_fraction", "edge-like fraction")):
            reference, said = bar_reference(rows, key)
            out.append(interval_bars(names, [r["figures"][key] for r in rows], folder / f"{key}.png",
                                     f"{label}, 95% intervals over seeds{said}", label, reference=reference,
                                     colours=condition_colours(names)))
        out.append(owed_figure(rows, folder / "face_owed_controls.png"))
        return out


def _pair(row: dict[str, Any], ref: dict[str, Any]) -> str:
    """"at equal maps (8 per position), tile2 has 50x fewer parameters than untied (8,448 against 422,400) at the same
    forward FLOPs", or, where their maps differ, "with 32 stage-1 maps against tile2's 8, conv32 has as many parameters
    as tile2 (8,448) at 3.89x tile2's forward FLOPs": ``row`` against ``ref``, each figure said equal only where the
    rows' are (the design gives the equal-maps arms 8 and 8 maps, but the words follow the rows, not the design)."""
    name, base = row["condition"], ref["condition"]
    maps, maps0 = row["params"]["maps"], ref["params"]["maps"]
    n, n0 = row["figures"]["params"][0], ref["figures"]["params"][0]
    flops = row["figures"]["flops_fwd"][0] / ref["figures"]["flops_fwd"][0]
    if maps == maps0:
        who = f"at equal maps ({_maps(maps)} per position), {name}"
    elif maps[1:] == maps0[1:]:
        who = f"with {maps[0]} stage-1 maps against {base}'s {maps0[0]}, {name}"
    else:
        who = f"with {_maps(maps)} maps per position against {base}'s {_maps(maps0)}, {name}"
    has = (f"as many parameters as {base} ({n:,.0f})" if n == n0 else
           f"{n0 / n:.0f}x fewer parameters than {base} ({n:,.0f} against {n0:,.0f})" if n < n0 else
           f"{n / n0:.2g}x more parameters than {base} ({n:,.0f} against {n0:,.0f})")
    return f"{who} has {has} at " + ("the same forward FLOPs" if flops == 1 else f"{flops:.2f}x {base}'s forward FLOPs")


def _maps(maps: list[int]) -> str:
    """A network's maps per stage in words: "8" where every stage has 8, else "32 and 8"."""
    return str(maps[0]) if len(set(maps)) == 1 else listed(map(str, maps))


def _state(row: dict[str, Any]) -> str:
    """'0.07 MB' of optimiser state, read from the runs' checkpoints: 'n/a' where no seed's run finished."""
    size = row["figures"]["opt_bytes"][0]
    return f"{size / 1e6:.2f} MB" if math.isfinite(size) else "n/a"
