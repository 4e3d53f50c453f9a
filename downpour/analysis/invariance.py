"""How a unit's response holds up as its test images are scaled, translated and rotated.

Le et al. 2012 (figure 4) plot the face neuron's response against 3D rotation angle, scale factor
and horizontal/vertical translation, each normalised to the response to the untransformed image.
We do the same with in-plane transforms (one affine warp each, :mod:`downpour.analysis.warp`; what it uncovers is
each image's mean by default; under the mean fill the rotation sweep's images, the
unturned one too, are shown in the inscribed disc, :func:`~downpour.analysis.warp.in_disc`): the mean response
over a set of test images at every transform, divided by the mean response to the originals (the rotation's: to the
originals in the disc, where it has one), both
measured above a baseline (the unit's level on non-concept images), since our units, unlike the
paper's, need not be silent at rest.
Out-of-plane rotation needs images of the same objects at known poses; the built-in sets have none,
so without them it is reported as unavailable rather than faked.
The sweep also measures selectivity (:func:`selectivity_summary`), the paper's own figure 4 axis: the
unit's AUC of the warped concept images against the non-concept ones at every transform. A unit that answers any blob
keeps its response as a face shrinks to 8 pixels, but not its lead over the non-faces shrunk alike. Given posed images
(``analysis.poses``: a folder with one sub-folder per angle in degrees, ``0`` the frontal view),
:func:`invariance_curves` adds that curve, normalised to the frontal images' response.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from downpour.analysis.choice import auc_scores
from downpour.analysis.circle import TURN, covers_turn, walk, walked_range
from downpour.analysis.passes import Passes
from downpour.analysis.units import check_layer, unit_response
from downpour.analysis.warp import FILLS, ROTATION_APERTURE, transform
from downpour.errors import DataError
from downpour.models.base import FeatureModel

RELATIVE = "untransformed response"    # a :func:`sweep` result's ``normalised_to`` when its curves are relative to it
# Each sweep runs to where the transform has taken the face away: a shift of the whole side leaves
# only the fill, a shrink to 1/32 a 1-pixel dot of a 32-pixel face (8x: its central 4 pixels), 180 degrees is every angle.
# Stopped at 0.375 of the side, 0.25x to 4x and 90 degrees, on the mechanisms study's 16 seeds 28 of 32 glimpse
# cells' translation ranges, 23 scale ranges (all at 0.25x) and 15 rotation ranges ran to an end: bounds. A range at
# an end is still flagged (``censored``): the unit answers the blank fill, or every angle.
DEFAULT_SCALES = (0.03125, 0.0442, 0.0625, 0.0884, 0.125, 0.1768, 0.25, 0.3536, 0.5, 0.625, 0.75, 0.875, 1.0, 1.125,
                  1.25, 1.5, 1.75, 2.0, 2.828, 4.0, 5.657, 8.0)
_TURNS = (15.0, 30.0, 45.0, 67.5, 90.0, 112.5, 135.0, 157.5, 180.0)
DEFAULT_ANGLES = (*(-a for a in reversed(_TURNS)), 0.0, *_TURNS)
_SHIFTS = (0.0625, 0.125, 0.1875, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)     # fractions of the side
DEFAULT_SHIFTS = (*(-f for f in reversed(_SHIFTS)), 0.0, *_SHIFTS)


def _auc(pos: Tensor, neg: Tensor) -> Tensor:
    """(T,) AUC of every column of signed responses, pos (N, T) against neg (M, T): above 0.5, the unit ranks the
    concept images above the others."""
    both = torch.cat([pos, neg]).numpy()
    y = np.r_[np.ones(len(pos), dtype=bool), np.zeros(len(neg), dtype=bool)]
    return torch.from_numpy(auc_scores(both, y))


def _curve(model: FeatureModel, x: Tensor, units: Tensor, layer: str, signs: Tensor, base: Tensor, scale: Tensor,
           name: str, values: tuple[float, ...], warp, see: Callable[[Tensor], Tensor],
           negatives: Tensor | None = None, passes: Passes | None = None) -> list[dict[str, Any]]:
    """One transform's curve of every unit: base, scale (T,) as :func:`sweep` sets them; a dict per unit. With
    ``negatives`` (M, C, H, W) pixels, the AUC of the warped x against them warped alike (``auc``) and untouched
    (``auc_faces_only``). ``passes``: where its forward passes are made, or read back (:mod:`~downpour.analysis.passes`)."""
    passes = passes or Passes(units.tolist())
    means, stds, aucs, fixed = [], [], [], []
    still = None if negatives is None else passes.signed(("negatives", None), model, lambda: see(negatives), layer, units,
                                                         signs)      # (M, T): one pass for the four curves
    for v in values:
        r = passes.signed(("x", name, v), model, lambda: see(warp(x, v)), layer, units, signs)       # (N, T)
        means.append((r.mean(dim=0) - base) / scale)
        stds.append(r.std(dim=0, unbiased=False) / scale)
        if negatives is not None:
            aucs.append(_auc(r, passes.signed(("negatives", name, v), model, lambda: see(warp(negatives, v)), layer,
                                              units, signs)))
            fixed.append(_auc(r, still))
    mean, std = torch.stack(means), torch.stack(stds)                  # (V, T) each
    sem = std / np.sqrt(x.shape[0])      # standard error of each mean: the curve's own uncertainty
    out = [{"transform": name, "values": [float(v) for v in values], "response": mean[:, t].tolist(),
            "std": std[:, t].tolist(), "sem": sem[:, t].tolist()} for t in range(len(units))]
    if negatives is not None:
        auc, auc_fixed = torch.stack(aucs), torch.stack(fixed)
        for t, c in enumerate(out):
            c.update(auc=auc[:, t].tolist(), auc_faces_only=auc_fixed[:, t].tolist())
    return out


@torch.no_grad()
def invariance_curves(model: FeatureModel, x: Tensor, unit: int, *, layer: str | None = None, sign: int = 1,
                      baseline: float = 0.0, scales: tuple[float, ...] = DEFAULT_SCALES,
                      angles: tuple[float, ...] = DEFAULT_ANGLES, shifts: tuple[float, ...] = DEFAULT_SHIFTS,
                      poses: dict[float, Tensor] | None = None,
                      prepare: Callable[[Tensor], Tensor] | None = None,
                      negatives: Tensor | None = None, fill: str = FILLS[0],
                      passes: Passes | None = None) -> dict[str, Any]:
    """Response curves of one unit under scale, horizontal and vertical translation and rotation,
    and out-of-plane rotation when ``poses`` ({angle in degrees: (N_a, C, H, W) images of the same
    objects at that pose}, 0 = frontal) are given.

    x: (N, C, H, W) test images (e.g. the faces of the held-out set). sign: the unit's polarity
    (-1 for a unit that fires *against* the concept). ``shifts`` are fractions of the image side.
    baseline: the unit's "not the concept" level (e.g. its mean response to non-faces), in the
    same units as its response; 0 for a non-negative unit, as in the paper. ``prepare``: the run's
    preparation (normalisation, whitening), applied after each warp, so that ``x`` are the images in
    pixels and the network sees a warped image as it would see that image in training; warping
    already-whitened inputs is not the same (the warp moves the whitening's edges and border).

    Each curve's ``response`` is (mean(sign·r(T x)) − b) / (mean(sign·r(x)) − b), with b = sign·baseline:
    1.0 means as strong as on the untransformed images, 0.0 as weak as the baseline. ``std`` is
    the spread across images on the same scale, ``sem`` the standard error of the mean. If the unit is no stronger on the originals than
    its baseline, the ratio means nothing: curves are divided by their largest |value| instead
    and ``normalised_to`` says so. ``negatives``: the non-concept images in pixels; given, each in-plane curve has the
    unit's AUC too (:func:`sweep`). ``fill``: what a warp puts where it uncovers area outside the image
    (:func:`~downpour.analysis.warp.transform`). ``passes``: :func:`sweep`'s.
    """
    layer = check_layer(model, layer)
    result = sweep(model, x, [unit], [sign], [baseline], layer=layer, scales=scales, angles=angles, shifts=shifts,
                   prepare=prepare, negatives=negatives, fill=fill, passes=passes)[0]
    oop = {"available": False, "reason": "needs images of one object at known poses (analysis.poses); none were given"}
    if poses:
        result["curves"].append(pose_curve(model, poses, unit, layer=layer, sign=sign, baseline=baseline))
        oop = {"available": True, "angles": result["curves"][-1]["values"],
               "images": {str(a): int(len(v)) for a, v in poses.items()}}
    return {**result, "out_of_plane_rotation": oop}


@torch.no_grad()
def sweep(model: FeatureModel, x: Tensor, units: list[int], signs: list[int], baselines: list[float], *,
          layer: str | None = None,
          scales: tuple[float, ...] = DEFAULT_SCALES, angles: tuple[float, ...] = DEFAULT_ANGLES,
          shifts: tuple[float, ...] = DEFAULT_SHIFTS,
          prepare: Callable[[Tensor], Tensor] | None = None,
          negatives: Tensor | None = None, fill: str = FILLS[0], passes: Passes | None = None) -> list[dict[str, Any]]:
    """:func:`invariance_curves`' in-plane curves (no poses) of several units, each with its own sign and baseline,
    from one forward pass per warp: a list of their results, in ``units``' order.

    ``negatives`` (M, C, H, W): the non-concept images in pixels (those the baselines are the mean of). Given, each
    curve also has ``auc``, the unit's AUC (signed) of the warped x against the negatives warped the same way, and
    ``auc_faces_only``, against them untouched (the paper's figure 4 warps the faces alone), for
    :func:`selectivity_summary`; one more forward pass of the negatives per warp. Under ``fill="mean"`` the rotation
    curve's images, the unturned reference too, are in the inscribed disc (its curve and the result's
    ``rotation_aperture``: ``"disc"``; ``"none"`` under the border fill), its response relative to the unturned face
    in the disc. ``passes``
    (:class:`~downpour.analysis.passes.Passes`, made for a superset of ``units``): given to sweeps of the same x,
    negatives, ``prepare`` (the same function), fill and layer, the later ones read the first's passes back; the same
    numbers, bit for bit."""
    layer = check_layer(model, layer)
    model.eval()
    flat = model.features(x[:1], layer).reshape(1, -1).shape[1]
    bad = [u for u in units if not 0 <= u < flat]
    if bad:
        raise IndexError(f"unit {bad[0]} out of range: layer {layer!r} has {flat} units")
    index = torch.as_tensor(units, dtype=torch.long)
    sign = torch.as_tensor(signs, dtype=torch.float64)
    base = sign * torch.as_tensor(baselines, dtype=torch.float64)                       # (T,)
    passes = passes or Passes(units)
    passes.bind(model, layer, x, negatives, prepare, fill, units)
    see = prepare or (lambda t: t)
    scale = passes.signed(("x", None), model, lambda: see(x), layer, index, sign).mean(dim=0) - base     # (T,)
    relative = scale > 1e-12
    scale = torch.where(relative, scale, torch.ones_like(scale))
    # the rotation sweep's images, the unturned one too, are in the disc under the mean fill (warp.in_disc):
    # its curve is relative to the unturned face in the disc, as the AUC range is to the AUC there.
    # Without the disc (the border fill) it is relative to the images themselves, as it was: a 0-degree warp is not
    # them bit for bit (1.4e-6 off on 24x24 images), and reading it moved a curve by 4e-5 of itself and cost a pass
    aperture = ROTATION_APERTURE[fill]

    def turn(t: Tensor, v: float) -> Tensor:
        return transform(t, angle=v, fill=fill, aperture=aperture)

    turned = scale
    if aperture == "disc":
        # (the rotation curve's own 0-degree pass: the same images, its key, so the curve reads it back)
        turned = passes.signed(("x", "rotation", 0.0), model, lambda: see(turn(x, 0.0)), layer, index, sign).mean(dim=0) - base
        turned = torch.where(relative & (turned > 1e-12), turned, scale)   # no stronger in the disc than the baseline: no range
    _, _, h, w = x.shape
    per_transform = [
        _curve(model, x, index, layer, sign, base, scale, "scale", scales,
               lambda t, v: transform(t, scale=v, fill=fill), see, negatives, passes),
        _curve(model, x, index, layer, sign, base, scale, "translation_x", tuple(s * w for s in shifts),
               lambda t, v: transform(t, shift=(v, 0.0), fill=fill), see, negatives, passes),
        _curve(model, x, index, layer, sign, base, scale, "translation_y", tuple(s * h for s in shifts),
               lambda t, v: transform(t, shift=(0.0, v), fill=fill), see, negatives, passes),
        _curve(model, x, index, layer, sign, base, turned, "rotation", angles, turn, see, negatives, passes),
    ]
    per_transform[-1] = [{**c, "aperture": aperture} for c in per_transform[-1]]
    out = []
    for t, unit in enumerate(units):
        curves = [c[t] for c in per_transform]
        normalised_to = RELATIVE
        if not relative[t]:     # no stronger on the originals than its baseline: the ratio means nothing
            normalised_to = "largest |mean response|"
            peak = max(max(abs(v) for v in c["response"]) for c in curves) or 1.0
            for c in curves:
                c.update({k: [v / peak for v in c[k]] for k in ("response", "std", "sem")})
        out.append({"unit": int(unit), "layer": layer, "sign": int(signs[t]), "images": int(x.shape[0]), "fill": fill,
                    "rotation_aperture": aperture,
                    "baseline": float(baselines[t]), "normalised_to": normalised_to, "curves": curves})
    return out


@torch.no_grad()
def pose_curve(model: FeatureModel, poses: dict[float, Tensor], unit: int, *, layer: str, sign: int = 1,
               baseline: float = 0.0) -> dict[str, Any]:
    """The unit's mean response at each out-of-plane angle, normalised like the in-plane curves but to
    the frontal (angle 0) images: 1 = as strong as frontal, 0 = the baseline. ``poses``: {angle: (N_a, C, H, W)}."""
    if 0.0 not in poses:
        raise DataError(f"out-of-plane rotation needs the frontal pose (a sub-folder named 0); got angles {sorted(poses)}")
    base = sign * baseline
    scale = float((sign * unit_response(model, poses[0.0], unit, layer).double()).mean()) - base
    one = torch.tensor([float(sign)], dtype=torch.float64)
    curve, = _curve(model, poses[0.0], torch.tensor([unit]), layer, one, torch.tensor([base], dtype=torch.float64),
                    torch.tensor([scale if scale > 1e-12 else 1.0], dtype=torch.float64), "out_of_plane_rotation",
                    tuple(sorted(poses)), lambda _, angle: poses[angle],
                    lambda t: t)          # (posed images come prepared: analysis.poses loads them so)
    if not scale > 1e-12:      # the unit is no stronger on frontal views than its baseline: the ratio means nothing
        peak = max(abs(v) for v in curve["response"]) or 1.0
        curve.update({k: [v / peak for v in curve[k]] for k in ("response", "std", "sem")})
        curve["normalised_to"] = "largest |mean response|"
    return curve


def invariance_summary(result: dict[str, Any], floor: float = 0.5) -> dict[str, Any]:
    """For each curve, the unbroken range of transform values around the identity where the response stays >= ``floor``,
    and whether it is ``censored``: it runs to the first or last value swept, so the unit may hold up further and the
    range (and its width) is only a lower bound. (analysis.json and the studies carry the flag, not only the report's
    table: unflagged, 21 of the mechanisms study's 48 scale ranges, the whole sweep, read as measured.)

    A range is ``None`` (and its ``censored`` None too) if the curve has no identity point or the unit is below the floor
    even there. ``scale_up``: the scale range's upper end alone (:func:`upper_scale`).
    """
    out, censored = {}, {}
    for c in result["curves"]:
        out[c["transform"]], censored[c["transform"]] = _span(c, "response", lambda _: floor)
    return {"floor": floor, "ranges": out, "censored": censored, "scale_up": upper_scale(result["curves"], out)}


def upper_scale(curves: list[dict[str, Any]], ranges: dict[str, list[float] | None]) -> dict[str, Any]:
    """The scale range's upper end on its own: ``octaves`` above 1x (log2 of its end) and ``censored``, whether that
    end is the sweep's largest scale; both None without a scale range. The two-sided range's flag
    cannot say which end it ran to, and on the mechanisms study the shrinking end (0.25x, an 8-pixel face) was reached
    in 36-37 of 48 cells while the enlarging end was reached by none of 18 units measured."""
    curve, r = next((c for c in curves if c["transform"] == "scale"), None), ranges.get("scale")
    if curve is None or r is None:
        return {"octaves": None, "censored": None}
    return {"octaves": math.log2(r[1]), "censored": bool(np.isclose(r[1], max(curve["values"])))}


def _span(curve: dict[str, Any], key: str, floor: Callable[[float], float | None]) -> tuple[list[float] | None, bool | None]:
    """The unbroken range around the identity where ``curve[key]`` stays >= ``floor(its value at the identity)``, and
    whether it ran to an end of the sweep; (None, None) without an identity point, without a floor (``floor`` gave
    None), or with the value there below it. A rotation sweep of the whole turn has no ends: the walk goes round past
    +-180 (:mod:`~downpour.analysis.circle`), and its range is measured, the whole turn (-180 … 180,
    :func:`whole_turn`) flagged as one that ran to both ends."""
    values, ys = np.asarray(curve["values"]), np.asarray(curve[key])
    at = identity_index(curve)
    level = floor(float(ys[at])) if at is not None else None
    if level is None or ys[at] < level:
        return None, None
    round_ = covers_turn(curve["transform"], values)
    lo, hi = walk(ys, at, level, round_)
    return walked_range(values, lo, hi, round_)


def _identity(transform: str) -> float:
    """The transform value that leaves an image as it is: scale 1, every other (shift, angle) 0."""
    return 1.0 if transform == "scale" else 0.0


def identity_index(curve: dict[str, Any]) -> int | None:
    """The index of ``curve``'s identity value (:func:`_identity`, to float tolerance), None if it was not swept: the
    one rule for every figure read "untransformed" (the ranges and the untransformed AUC)."""
    at = np.flatnonzero(np.isclose(np.asarray(curve["values"], dtype=float), _identity(curve["transform"])))
    return int(at[0]) if at.size else None


SELECTIVE_KEY = "auc"       # the selectivity curve the summaries read: the non-faces warped as the faces are (see docs)


def kept_auc(auc: Any, keep: float = 0.5) -> float | None:
    """The AUC a selectivity range keeps, ``keep`` of the way from 0.5 to the untransformed ``auc``; None where there
    is none to keep (no untransformed AUC, or one at or below chance)."""
    return 0.5 + keep * (auc - 0.5) if isinstance(auc, (int, float)) and auc > 0.5 else None


def selectivity_summary(result: dict[str, Any], key: str = SELECTIVE_KEY, keep: float = 0.5) -> dict[str, Any]:
    """Like :func:`invariance_summary`, of the AUC curves (:func:`sweep` given ``negatives``): for each transform the
    range around the identity where the AUC stays >= 0.5 + ``keep`` x (its untransformed AUC - 0.5), halfway to chance
    by default, and ``censored``; ``auc``: the untransformed AUC. A unit at or below chance untransformed has no range
    (its AUC has no lead over chance to keep). The response range alone cannot tell a face detector from a blob
    detector (most units keep half their response down to an 8-pixel face).

    A curve without its identity value (a custom sweep: scale 1, shift or angle 0) has no untransformed AUC (``auc``
    None) and no range, as :func:`invariance_summary` has none, rather than an ``auc`` read at the value nearest
    the identity (a sweep of 0.9x and 1.1x would give 0.9x's AUC as the untransformed one). ``scale_up``: the scale
    range's upper end alone (:func:`upper_scale`)."""
    out, censored, at = {}, {}, {}
    for c in result["curves"]:
        if key not in c:
            continue
        out[c["transform"]], censored[c["transform"]] = _span(c, key, lambda a: kept_auc(a, keep))
        i = identity_index(c)
        at[c["transform"]] = None if i is None else c[key][i]
    curves = [c for c in result["curves"] if key in c]
    return {"curve": key, "keep": keep, "auc": at, "ranges": out, "censored": censored,
            "scale_up": upper_scale(curves, out)}


def disc_auc(result: dict[str, Any], key: str = SELECTIVE_KEY) -> float | None:
    """The unit's AUC on the unturned images in the inscribed disc: the rotation curve's own 0-degree point, where
    its images were in the disc (``rotation_aperture`` "disc", the mean fill); None without the disc or that point.
    At or below 0.5 the unit has no AUC rotation range (the cells and analysis.json say why)."""
    curve = next((c for c in result["curves"] if c["transform"] == "rotation" and key in c), None)
    at = None if curve is None or result.get("rotation_aperture") != "disc" else identity_index(curve)
    return None if at is None else float(curve[key][at])


def whole_turn(transform: str, r: list[float] | None) -> bool:
    """Whether ``r``, a range of ``transform``, is the whole turn (-180 to 180 degrees): the unit holds at every angle,
    so its width (360) is measured, not a lower bound, though :func:`invariance_summary` flags it ``censored`` (it ran
    to both ends of the sweep). Read as a bound, such a range would be "at least this" in the report and the
    studies, and two of them no measured difference. A range that went round
    past +-180 short of the whole turn (:mod:`~downpour.analysis.circle`) is narrower than 360: not this."""
    return transform == "rotation" and r is not None and r[1] - r[0] >= TURN - 1e-9
