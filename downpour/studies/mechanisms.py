"""Q3 of MISSION.md (issue 10's Q4), brain mechanisms: do multi-resolution and attention front ends help?

**Network and data.** One untied RICA stage (6×6 fields, stride 2, 4 maps per position, tied decoder,
pooled-L2 sparsity) behind a front end (:mod:`downpour.models.multires`), on the cat network's data
(32×32 crops of the built-in natural images and lfw training faces, patch-normalised, partly
whitened: ``--config cat-demo``'s ``[data]``), the same steps and batch for every condition, trained by
the local runner with Adam.

**Conditions**, each against ``plain`` (the same stage on the raw input, ``multires-none``):
- ``pyramid3``: a 3-level Laplacian pyramid stacked as channels (every filter sees three scales at its
  position); ``pyramid3-gauss``: Gaussian (blurred) levels instead of band-pass ones; ``pyramid2``: 2 levels;
- ``glimpse``: attention, 3 foveated glimpses of 12×12 at the most contrasted places, each a sharp
  crop plus a 2x wider one pooled to 12×12 (``glimpse-rica``); ``glimpse-1scale``: the same
  glimpses without the wide surround, which separates where it looks from what resolution it sees.

**Figures** (:mod:`downpour.studies.measure`): linear-probe accuracy of the codes (digits, lfw faces vs
non-faces), the invariance ranges of the face test's unit (the one whose AUCs it reports, chosen on lfw's
training part), averaged over the units tied with it (scale in octaves, translation as a fraction of the side,
rotation in degrees, where the unit keeps at least half its response; on lfw's 60 held-out images, which the
choice never saw), the face AUC on the matched controls, edge-like fraction, parameters, FLOPs per sample and wall time per step; and what the faces
gave the face unit: the same cell trained again without a face (``face_owed_controls``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from downpour._names import listed
from downpour.config import RunConfig
from downpour.studies.base import Cells, Condition
from downpour.studies.designs.mechanisms import MechanismsDesign
from downpour.studies.claims import change
from downpour.studies.compare import (bar_reference, difference_sentence, owed_figure, owed_paragraph, tally,
                                      value)
from downpour.studies.bounds import BESIDE, lower_bound_marks
from downpour.studies.figure_words import figure_words
from downpour.studies.figures import interval_bars
from downpour.studies.measured import MeasuredStudy
from downpour.studies.measure import config_with_model

RESOLUTION = {"probe_digits": 0.02, "probe_lfw": 0.05, "inv_scale_octaves": 0.25, "inv_shift": 0.05,
              "inv_rotation": 15.0, "inv_scale_octaves_auc": 0.25, "inv_shift_auc": 0.05, "inv_rotation_auc": 15.0,
              "inv_scale_up_octaves": 0.25, "inv_scale_up_octaves_auc": 0.25,
              "face_auc_controls": 0.05, "face_owed_controls": 0.05}
# figure_words' words, each range's with its unit (its difference sentences give numbers in them)
UNITS = {"inv_scale_octaves": "octaves", "inv_shift": "fraction of the side", "inv_rotation": "degrees",
         "inv_scale_up_octaves": "octaves above 1x"}
LABELS = {key: figure_words(key) for key in ("probe_digits", "probe_lfw", "face_auc_controls", "face_owed_controls")}
LABELS |= {key + auc: f"{figure_words(key + auc)} ({unit})" for key, unit in UNITS.items() for auc in ("", "_auc")}
FORMATS = {"inv_rotation": "{:+.0f}", "inv_scale_octaves": "{:+.2f}", "inv_shift": "{:+.3f}", "inv_scale_up_octaves": "{:+.2f}"}
FORMATS.update({key + "_auc": f for key, f in FORMATS.items()})


class MechanismsStudy(MechanismsDesign, MeasuredStudy):
    resolution = RESOLUTION
    invariance = True
    # (cells cached before the invariance curves warped the faces in pixels, before their unit was the one whose
    # selection AUC is furthest from 0.5, ties to the larger Cohen's d (2026-12-04; it was the most accurate, ties
    # to the lowest index), or before the ranges were the mean over every unit tied at the top (2026-12-04; the
    # chosen unit's alone), or before they were the face test's unit's (2026-12-04; the best-neuron table's, chosen on
    # half of held-out lfw, measured on every lfw image, then on the other half), before the scale sweep ran 0.25x to
    # 4x, shrinks blurred first, with each range's end flagged (2026-12-05; 0.5x to 2x, a width at its end read as
    # measured), or before a cell recorded how many of the tied units have a range, inv_ranged (2026-12-05: the means
    # are over those), or before the AUC ranges beside them, inv_*_auc (2026-12-05: a unit that answers any blob kept
    # half its response down to an 8-pixel face), or before the warps filled what they uncover with each face's mean
    # (2026-12-05; its edges repeated: 47 of 48 cells' translation ranges ran to the sweep's end) and a cell recorded the
    # scale range's upper end alone, inv_scale_up_octaves (2026-12-05), or before a shrink's blur ran on that canvas
    # (2026-12-05, later; it repeated the edges, an unblurred step at the shrunk face's border), or before the rotation
    # sweep showed every face, the unturned one too, in the inscribed disc (2026-12-05, later still; the turn's flat
    # corners met the face in an edge that drew the glimpse front's glimpses: 59% of them at 15 degrees on seed 0), or
    # before a cell recorded its unit's AUC in that disc, inv_rotation_disc_auc (2026-12-05, later again), or before the
    # sweeps ran to where the face is gone, shifts to the whole side, scales 1/32x to 8x, turns to 180 degrees
    # (2026-12-05, last; 0.375 of the side, 0.25x to 4x, 90 degrees: 28 of 32 glimpse cells' shift ranges were bounds),
    # or before the rotation ranges went round the circle past +-180 degrees (2026-12-05, after that: the walk from 0
    # stopped at 180, so a unit high but for -67.5 … -30 read 195 degrees, a bound, for 285 measured), are refused, not
    # mixed)
    measured_by = (MeasuredStudy.measured_by + "; invariance: faces warped in pixels, then prepared, the mean over "
                   "the units tied at the top of the choice by selection AUC that have a range (inv_ranged of "
                   "inv_tied), of the face test's unit, chosen on lfw's training part, measured on the 60 held-out "
                   "images; scale 1/32x to 8x, shifts to the whole side, turns to 180 degrees, shrinks anti-aliased, "
                   "ranges at the sweep's end flagged; the AUC ranges, faces vs "
                   "non-faces both warped, halfway from 0.5 to the untransformed AUC; what a warp uncovers filled with "
                   "each face's mean (analysis.invariance_fill), a shrink anti-aliased on that canvas; the scale range's upper end "
                   "on its own; the rotation sweep's faces, the unturned one too, in the inscribed disc, the face's mean "
                   "outside it, the chosen unit's AUC there recorded; rotation ranges wrap round the circle (past "
                   "+-180 degrees, measured)")

    def cell_config(self, condition: Condition, seed: int) -> RunConfig:
        return config_with_model(self.base, [*self.base_sets, *self.sets, *condition.sets], seed)

    def summarise(self, conditions: list[Condition], cells: Cells, seeds: list[int]) -> list[dict[str, Any]]:
        rows = super().summarise(conditions, cells, seeds)
        for row in rows:
            row[DISC] = disc_counts([cells[(row["condition"], s)] for s in seeds])
        return rows

    def verdict(self, rows: list[dict[str, Any]]) -> str:
        by = {r["condition"]: r for r in rows}
        ref = by["plain"]
        tied = value(ref, "inv_tied", "{:.3g}") if "inv_tied" in ref["figures"] else "n/a"   # (none: no face unit)

        def ends(key: str) -> str:      # a range at the sweep's end is a lower bound (said)
            n = ref.get("censored", {}).get(key)
            return f" (to the sweep's end in {n} of {ref['n']} seeds: at least that)" if n else ""

        def scale(suffix: str) -> str:      # the width, and its upper end alone where the cells have it
            width, up = "inv_scale_octaves" + suffix, "inv_scale_up_octaves" + suffix
            said = [f"to the sweep's end in {n} of {ref['n']} seeds: at least that"
                    for n in [ref.get("censored", {}).get(width)] if n]
            if up in ref["figures"]:        # (the shrinking end is the one the width usually runs to)
                n = ref.get("censored", {}).get(up)
                said.append(f"its upper end {value(ref, up, '{:.2f}')} octaves above 1x"
                            + (f", at the sweep's largest scale in {n} of {ref['n']} seeds: at least that" if n else ""))
            return f"{value(ref, width, '{:.2f}')} octaves of scale" + (f" ({'; '.join(said)})" if said else "")

        ranged = (f"that have a range ({value(ref, 'inv_ranged', '{:.3g}')} of {tied} per seed; one no stronger on the "
                  "faces than on the non-faces has none)" if "inv_ranged" in ref["figures"] else f"({tied} per seed)")
        # its selectivity beside its response: the response range cannot tell a face detector from a
        # blob detector, the AUC's can (faces vs non-faces both warped, over the tied units above chance untransformed)
        auc_ranges = ("; its AUC, faces vs non-faces both warped, kept half its lead over chance (over the "
                      f"{value(ref, 'inv_auc_ranged', '{:.3g}')} units above chance) over "
                      f"{scale('_auc')}, "
                      f"{value(ref, 'inv_shift_auc')} of the side{ends('inv_shift_auc')} and "
                      f"{value(ref, 'inv_rotation_auc', '{:.0f}')} degrees{ends('inv_rotation_auc')}"
                      if "inv_scale_octaves_auc" in ref["figures"] else "")
        paras = [f"The plain stage reached digits probe accuracy {value(ref, 'probe_digits')} (input pixels "
                 f"{value(ref, 'probe_digits_pixels')}) and lfw probe accuracy {value(ref, 'probe_lfw')}; its face unit, averaged "
                 f"over the units tied with it at the top of the choice {ranged}, "
                 f"kept half its response over {scale('')}, "
                 f"{value(ref, 'inv_shift')} of the side in translation{ends('inv_shift')} and "
                 f"{value(ref, 'inv_rotation', '{:.0f}')} degrees of rotation{ends('inv_rotation')}{auc_ranges}, at "
                 f"{ref['figures']['flops_fwd'][0] / 1e3:.0f} kFLOP per sample forward and "
                 f"{ref['figures']['params'][0]:,.0f} parameters."]
        for r in rows:
            if r is ref:
                continue
            f = r["figures"]
            cost = (f"{f['flops_fwd'][0] / ref['figures']['flops_fwd'][0]:.2f}x the FLOPs, "
                    f"{f['params'][0] / ref['figures']['params'][0]:.2f}x the parameters, "
                    f"{value(r, 'seconds_per_step', '{:.4f}')} s per step")
            paras.append(f"{r['condition']} ({cost}), paired against plain: "
                         + "; ".join(difference_sentence(r, k, LABELS[k], FORMATS.get(k, "{:+.3f}")) for k in RESOLUTION)
                         + ".")
        for key in ("probe_digits", "probe_lfw"):
            t = tally(rows, key)
            said = {"higher": "higher for", "lower": "lower for",
                    "no detectable effect": f"no detectable effect (within ±{RESOLUTION[key]:g}) for",
                    "inconclusive": "inconclusive for"}
            paras.append(f"Against the plain stage, the {LABELS[key]}: "
                         + "; ".join(f"{said[w]} {', '.join(names)}" for w, names in t.items() if names) + ".")
        paras.append("Invariance ranges are, per run, the mean over the face test's unit (the one whose face AUCs are "
                     "reported, chosen by selection AUC on lfw's training part) and the units tied with it at the top "
                     "of that choice, measured on lfw's 60 held-out images, "
                     "which the choice never saw, and compute counts the filter arithmetic torch's counter sees (the "
                     "glimpse front's variance map and crops are not counted).")
        paras.append(disc_paragraph(rows))
        paras.append(owed_paragraph(rows))
        return "\n\n".join(p for p in paras if p)

    def claim(self, rows: list[dict[str, Any]]) -> str:
        """"Against the plain stage (digits probe accuracy 0.916), pyramid3 at 3.49x the forward FLOPs has an
        inconclusive effect on the digits probe accuracy (Δ +0.001 [-0.078, +0.080]) and glimpse at 0.49x lowers it
        (Δ -0.440 [-0.567, -0.313], a lead)": what each front does to what the stage learned, at what compute."""
        ref = next(r for r in rows if r["condition"] == "plain")
        said = []
        for r in rows:
            if r is ref:
                continue
            flops = f"{r['figures']['flops_fwd'][0] / ref['figures']['flops_fwd'][0]:.2f}x"
            first = not said        # (the first names the figure and its FLOPs in full; the others say "it")
            said.append(f"{r['condition']} at {flops}{' the forward FLOPs' if first else ''} "
                        + change(r, "d_probe_digits", "the digits probe accuracy" if first else "it"))
        return (f"Against the plain stage (digits probe accuracy {value(ref, 'probe_digits')}), {listed(said)}."
                if said else "")

    def figures(self, rows: list[dict[str, Any]], cells: Cells, folder: Path) -> list[Path]:
        names = [r["condition"] for r in rows]
        out = []
        for key, label in (("probe_digits", "probe accuracy (digits)"), ("probe_lfw", "probe accuracy (lfw faces)"),
                           ("inv_scale_octaves", "scale range, octaves"), ("inv_shift", "translation range, fraction of side"),
                           ("inv_rotation", "rotation range, degrees"), ("flops_fwd", "forward FLOPs per sample")):
            # the AUC range's width beside the response's (inv_*_auc; a folder measured before 2026-12-05 has none)
            auc = [r["figures"].get(key + "_auc") for r in rows] if key.startswith("inv_") else [None]
            beside = None if any(a is None for a in auc) else ("response", "AUC, non-faces warped alike", auc)
            bounds = [lower_bound_marks(rows, key + s) for s in BESIDE[:1 if beside is None else 2]]
            reference, said = bar_reference(rows, key)
            out.append(interval_bars(names, [r["figures"][key] for r in rows], folder / f"{key}.png",
                                     f"{label}, 95% intervals over seeds{said}", label, reference=reference,
                                     beside=beside, bounds=bounds))
        out.append(owed_figure(rows, folder / "face_owed_controls.png"))
        return out


DISC = "disc_at_chance"     # a row's counts of its cells whose unit had no lead over non-faces in the rotation disc


def disc_counts(got: list[dict[str, float]]) -> dict[str, int]:
    """Of a condition's cells: ``measured``, those with ``inv_rotation_disc_auc`` (the chosen unit's AUC on the unturned
    faces in the inscribed disc); ``at_chance``, those where it is <= 0.5, so the unit has no AUC rotation range; and
    ``dropped``, those of them with no ``inv_rotation_auc`` at all (no tied unit above chance there either), which the
    paired rotation comparisons leave out, so a reader sees why the seeds are left out, not only that they are."""
    disc = [g.get("inv_rotation_disc_auc", math.nan) for g in got]
    at = [d <= 0.5 for d in disc]
    return {"measured": sum(math.isfinite(d) for d in disc), "at_chance": sum(at),
            "dropped": sum(a and not math.isfinite(g.get("inv_rotation_auc", math.nan)) for a, g in zip(at, got))}


def disc_paragraph(rows: list[dict[str, Any]]) -> str:
    """The verdict's count, per front, of the seeds whose face unit lost its lead over the non-faces in the rotation
    sweep's disc (:func:`disc_counts`); "" for rows without the counts (a folder from before them) or none measured."""
    counted = [r for r in rows if r.get(DISC, {}).get("measured")]
    if not counted:
        return ""

    def said(r: dict[str, Any]) -> str:
        c = r[DISC]
        dropped = f" ({c['dropped']} with no tied unit above it either, left out of the paired rotation AUC comparison)"
        return f"{r['condition']} {c['at_chance']} of {c['measured']}" + (dropped if c["dropped"] else "")

    return ("The rotation sweep shows the faces, the unturned ones too, in the inscribed disc (the face's mean outside "
            "it): there the face unit's AUC against the non-faces was at or below 0.5, so it "
            "had no AUC rotation range, in " + "; ".join(said(r) for r in counted) + " seeds.")
