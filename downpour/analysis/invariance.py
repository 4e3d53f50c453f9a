"""How a unit's response holds up as its test images are scaled, translated and rotated.

Le et al. 2012 (figure 4) plot the face neuron's response against 3D rotation angle, scale factor
and horizontal/vertical translation, each normalised to the response to the untransformed image.
We do the same with in-plane transforms (one affine warp each, edges repeated): the mean response
over a set of test images at every transform, divided by the mean response to the originals, both
measured above a baseline (the unit's level on non-concept images), since our units, unlike the
paper's, need not be silent at rest.
Out-of-plane rotation needs images of the same objects at known poses; the built-in sets have none,
so without them it is reported as unavailable rather than faked. Given posed images
(``analysis.poses``: a folder with one sub-folder per angle in degrees, ``0`` the frontal view),
:func:`invariance_curves` adds that curve, normalised to the frontal images' response.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from downpour.analysis.labelled import load_labelled
from downpour.analysis.units import check_layer, unit_response
from downpour.errors import ConfigError, DataError
from downpour.models.base import FeatureModel

if TYPE_CHECKING:
    from downpour.data.preprocess import Preprocess

DEFAULT_SCALES = (0.5, 0.625, 0.75, 0.875, 1.0, 1.125, 1.25, 1.5, 1.75, 2.0)
DEFAULT_ANGLES = (-90.0, -67.5, -45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0, 67.5, 90.0)
DEFAULT_SHIFTS = (-0.375, -0.25, -0.1875, -0.125, -0.0625, 0.0, 0.0625, 0.125, 0.1875, 0.25, 0.375)  # fractions of the side


def transform(x: Tensor, *, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0), angle: float = 0.0) -> Tensor:
    """Warp images about their centre. x: (N, C, H, W) -> same shape.

    scale > 1 enlarges the content (zoom in); shift = (dx, dy) in pixels moves it right/down;
    angle (degrees) turns it clockwise as displayed (row 0 at the top). Pixels warped in from outside repeat the border.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    n, _, h, w = x.shape
    a = math.radians(angle)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    # affine_grid maps each output position to where it samples the input, in coordinates that run over [-1, 1]
    # along each side: x in units of w/2 pixels, y of h/2, so the rotation is conjugated by that scaling to turn
    # pixels, not those units (until 2026-12-04 it turned the units: on a 16x32 image a dot 6 pixels right of the
    # centre turned by 90 degrees landed 3 pixels above it, smeared 2x wide; square images are unchanged)
    theta = torch.tensor([[cos, sin * h / w, -2.0 * shift[0] / w], [-sin * w / h, cos, -2.0 * shift[1] / h]],
                         dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.no_grad()
def _curve(model: FeatureModel, x: Tensor, unit: int, layer: str, sign: int, base: float, scale: float,
           name: str, values: tuple[float, ...], warp, see: Callable[[Tensor], Tensor]) -> dict[str, Any]:
    means, stds, sems = [], [], []
    for v in values:
        r = sign * unit_response(model, see(warp(x, v)), unit, layer).double()       # (N,)
        means.append((float(r.mean()) - base) / scale)
        stds.append(float(r.std(unbiased=False)) / scale)
        sems.append(stds[-1] / np.sqrt(len(r)))      # standard error of each mean: the curve's own uncertainty
    return {"transform": name, "values": [float(v) for v in values], "response": means, "std": stds, "sem": sems}


@torch.no_grad()
def invariance_curves(model: FeatureModel, x: Tensor, unit: int, *, layer: str | None = None, sign: int = 1,
                      baseline: float = 0.0, scales: tuple[float, ...] = DEFAULT_SCALES,
                      angles: tuple[float, ...] = DEFAULT_ANGLES, shifts: tuple[float, ...] = DEFAULT_SHIFTS,
                      poses: dict[float, Tensor] | None = None,
                      prepare: Callable[[Tensor], Tensor] | None = None) -> dict[str, Any]:
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
    and ``normalised_to`` says so.
    """
    layer = check_layer(model, layer)
    model.eval()
    base = sign * baseline
    see = prepare or (lambda t: t)
    scale = float((sign * unit_response(model, see(x), unit, layer).double()).mean()) - base
    normalised_to = "untransformed response"
    if not scale > 1e-12:
        normalised_to, scale = "largest |mean response|", 1.0
    _, _, h, w = x.shape
    curves = [
        _curve(model, x, unit, layer, sign, base, scale, "scale", scales, lambda t, v: transform(t, scale=v), see),
        _curve(model, x, unit, layer, sign, base, scale, "translation_x", tuple(s * w for s in shifts),
               lambda t, v: transform(t, shift=(v, 0.0)), see),
        _curve(model, x, unit, layer, sign, base, scale, "translation_y", tuple(s * h for s in shifts),
               lambda t, v: transform(t, shift=(0.0, v)), see),
        _curve(model, x, unit, layer, sign, base, scale, "rotation", angles, lambda t, v: transform(t, angle=v), see),
    ]
    if normalised_to != "untransformed response":
        peak = max(max(abs(v) for v in c["response"]) for c in curves) or 1.0
        for c in curves:
            c["response"] = [v / peak for v in c["response"]]
            c["std"] = [v / peak for v in c["std"]]
            c["sem"] = [v / peak for v in c["sem"]]
    oop = {"available": False, "reason": "needs images of one object at known poses (analysis.poses); none were given"}
    if poses:
        curves.append(pose_curve(model, poses, unit, layer=layer, sign=sign, baseline=baseline))
        oop = {"available": True, "angles": curves[-1]["values"], "images": {str(a): int(len(v)) for a, v in poses.items()}}
    return {"unit": int(unit), "layer": layer, "sign": int(sign), "images": int(x.shape[0]), "baseline": float(baseline),
            "normalised_to": normalised_to, "curves": curves, "out_of_plane_rotation": oop}


@torch.no_grad()
def pose_curve(model: FeatureModel, poses: dict[float, Tensor], unit: int, *, layer: str, sign: int = 1,
               baseline: float = 0.0) -> dict[str, Any]:
    """The unit's mean response at each out-of-plane angle, normalised like the in-plane curves but to
    the frontal (angle 0) images: 1 = as strong as frontal, 0 = the baseline. ``poses``: {angle: (N_a, C, H, W)}."""
    if 0.0 not in poses:
        raise DataError(f"out-of-plane rotation needs the frontal pose (a sub-folder named 0); got angles {sorted(poses)}")
    base = sign * baseline
    scale = float((sign * unit_response(model, poses[0.0], unit, layer).double()).mean()) - base
    curve = _curve(model, poses[0.0], unit, layer, sign, base, scale if scale > 1e-12 else 1.0,
                   "out_of_plane_rotation", tuple(sorted(poses)), lambda _, angle: poses[angle],
                   lambda t: t)          # (posed images come prepared: analysis.poses loads them so)
    if not scale > 1e-12:      # the unit is no stronger on frontal views than its baseline: the ratio means nothing
        peak = max(abs(v) for v in curve["response"]) or 1.0
        curve.update({k: [v / peak for v in curve[k]] for k in ("response", "std", "sem")})
        curve["normalised_to"] = "largest |mean response|"
    return curve


def invariance_summary(result: dict[str, Any], floor: float = 0.5) -> dict[str, Any]:
    """For each curve, the unbroken range of transform values around the identity where the response stays >= ``floor``.

    ``None`` if the curve has no identity point or the unit is below the floor even there.
    """
    out = {}
    for c in result["curves"]:
        values, resp = np.asarray(c["values"]), np.asarray(c["response"])
        identity = 1.0 if c["transform"] == "scale" else 0.0
        at = np.flatnonzero(np.isclose(values, identity))
        if not at.size or resp[at[0]] < floor:
            out[c["transform"]] = None
            continue
        lo = hi = int(at[0])
        while lo > 0 and resp[lo - 1] >= floor:
            lo -= 1
        while hi < len(resp) - 1 and resp[hi + 1] >= floor:
            hi += 1
        out[c["transform"]] = [float(values[lo]), float(values[hi])]
    return {"floor": floor, "ranges": out}


def load_poses(path: str, shape: tuple[int, ...], prepare: Preprocess,
               jpeg_draft: bool = True) -> dict[float, torch.Tensor]:
    """``analysis.poses``: {angle: images} from a folder with one sub-folder per angle in degrees (``jpeg_draft``:
    the run's data.jpeg_draft)."""
    try:
        posed = load_labelled(path, shape, prepare=prepare, jpeg_draft=jpeg_draft)
    except DataError as err:
        raise ConfigError(f"analysis.poses: {err}", key="analysis.poses") from None
    out: dict[float, torch.Tensor] = {}
    named: dict[float, str] = {}
    for k, name in enumerate(posed.classes):
        try:
            angle = float(name)
        except ValueError:
            raise ConfigError(f"analysis.poses: sub-folder {name!r} of {path!r} is not an angle in degrees",
                              key="analysis.poses") from None
        if angle in out:          # (0 and 0.0: one of them was dropped without a word)
            raise ConfigError(f"analysis.poses: sub-folders {named[angle]!r} and {name!r} of {path!r} are the same angle "
                              f"({angle:g} degrees); put their images in one", key="analysis.poses")
        out[angle], named[angle] = posed.x[torch.from_numpy(posed.y == k)], name
    if 0.0 not in out:
        raise ConfigError(f"analysis.poses: {path!r} has no frontal pose (a sub-folder named 0), which the curve is "
                          f"measured against; its angles: {sorted(out)}", key="analysis.poses")
    return out
