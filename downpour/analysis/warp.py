"""The in-plane warp of the invariance curves: scale, shift and rotate images about their centre.

Where a warp uncovers area outside the image (a shift, a shrink, the corners of a rotation) it must put something
there. ``fill`` chooses what (:data:`FILLS`):

- ``"mean"`` (the default): each image's own mean, per channel, a plain canvas. The images are in
  pixels here and prepared afterwards: patch normalisation (each image standardised over every channel) takes the
  canvas near 0, a colour image's to its average colour, flat: the warped image's mean is what is subtracted, and it
  keeps the original's under a shrink (the canvas within 0.001 of the std of 0) but moves with what a shift or turn
  takes out of the frame (on lfw's 30 held-out faces at 32x32 the canvas sits 0.24 of the image's std from 0, median,
  at a shift of 0.1875 or 0.375 of the side, 0.56 at most; 0.18 at 45 degrees without the disc); a whitening alone
  passes it on at the image's own level, as it passes the untransformed image's mean (a canvas at the set's mean, the
  prepared 0, would move the image's level over the area uncovered, which the warp did not).
- ``"border"``: the edge pixels repeated (F.grid_sample's ``padding_mode="border"``), the fill of analyses
  written before 2026-12-05. A face shifted by 0.375 of the side stays a face-like smear: on the mechanisms study 47 of
  its 48 cells' translation ranges ran to the sweep's end, by the response and by the AUC alike.

A rotation's uncovered corners are a canvas of their own, and its edge with the image moves with the angle. Under the
mean fill the rotation sweep therefore shows every image, the unturned reference too, inside the inscribed disc
(``aperture="disc"``, :func:`in_disc`): the canvas outside it is the image's mean at every angle and
only the content inside turns. Without it the corners' flat wedges meet the image in a step of high local variance: on
the mechanisms study's glimpse front (seed 0, 30 held-out lfw faces) a 15-degree turn put 59% of the glimpses on a
wedge and its face unit's AUC fell from 0.68 to 0.42 (the edges repeated: 0.67), so 7 of its 8 seeds' rotation ranges
of the AUC were 0. In the disc 4% lie over a corner and 66% follow the turned features (32% before); the disc is a
stimulus of its own, though: that unit's AUC on the unturned faces in it is 0.51 (plain's 0.91, as in the full frame).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from downpour.config import AnalysisConfig
from downpour.settings import choices_of

FILLS = choices_of(AnalysisConfig, "invariance_fill")     # ("mean", "border"): declared there once, the default first
APERTURES = ("none", "disc")    # transform's aperture
ROTATION_APERTURE = {"mean": "disc", "border": "none"}   # the rotation sweep's under each fill (the old fill as it was)


def transform(x: Tensor, *, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0), angle: float = 0.0,
              fill: str = "mean", aperture: str = "none") -> Tensor:
    """Warp images about their centre. x: (N, C, H, W) -> same shape.

    scale > 1 enlarges the content (zoom in); shift = (dx, dy) in pixels moves it right/down;
    angle (degrees) turns it clockwise as displayed (row 0 at the top). Pixels warped in from outside are each
    image's mean (``fill="mean"``) or repeat the border (``fill="border"``; see the module docstring).
    ``aperture="disc"`` shows the warped image inside the inscribed disc, the image's mean outside (:func:`in_disc`).
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if aperture not in APERTURES:
        raise ValueError(f"aperture must be one of {', '.join(APERTURES)}, got {aperture!r}")
    if aperture == "disc":
        return in_disc(transform(x, scale=scale, shift=shift, angle=angle, fill=fill), x.mean(dim=(2, 3), keepdim=True))
    n, _, h, w = x.shape
    mean = x.mean(dim=(2, 3), keepdim=True)         # (N, C, 1, 1): the image's own, before a shrink's blur moves it
    centred, margin = x - mean, 0
    if scale < 1:       # shrinking samples the image sparser than its pixels: blur first, or it aliases
        sigma = (1 / scale - 1) / 2
        if fill == "border":
            x = _blur(x, sigma)
        else:
            # the image on its canvas blurred, its edge into the canvas too (so the frame grows by the blur's reach).
            # A blur that repeats the edges would leave a face shrunk onto its mean an unblurred step at its border:
            # on 30 lfw faces at 0.354x, 0.014 RMS (0.23 at most) off the shrink of the face on a larger plain
            # canvas, against 0.058 RMS of contrast in the shrunk face itself
            margin = _radius(sigma) if sigma >= MIN_SIGMA else 0
            centred = _blur(centred, sigma, "constant", grow=margin)
    a = math.radians(angle)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    # affine_grid maps each output position to where it samples the input, in coordinates that run over [-1, 1]
    # along each side: x in units of w/2 pixels, y of h/2, so the rotation is conjugated by that scaling to turn
    # pixels, not those units (turning the units, a dot 6 pixels right of the centre of a 16x32 image turned by 90
    # degrees would land 3 pixels above it, smeared 2x wide; on square images the two agree)
    theta = torch.tensor([[cos, sin * h / w, -2.0 * shift[0] / w], [-sin * w / h, cos, -2.0 * shift[1] / h]],
                         dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
    if fill == "border":
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # [-1, 1] spans the padded image's sides: the same pixels are at (side / padded side) of their coordinates
    grid = grid * torch.tensor([w / (w + 2 * margin), h / (h + 2 * margin)], dtype=grid.dtype)
    # outside is 0 once the mean is taken off: bilinear weights then blend the edge into the canvas over one pixel
    return F.grid_sample(centred, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + mean


def in_disc(x: Tensor, mean: Tensor) -> Tensor:
    """x (N, C, H, W) inside the disc inscribed in its frame, ``mean`` (N, C, 1, 1) outside it.

    A pixel's weight is 1 up to min(H, W)/2 - 1.5 pixels from the centre, falling linearly to 0 at min(H, W)/2 - 0.5 (a
    one-pixel anti-aliased rim, not a staircase); every pixel it keeps samples, under any rotation about the centre, a point inside
    the image, so nothing a turn uncovers is shown, and the canvas is the same at every angle."""
    _, _, h, w = x.shape
    rows = torch.arange(h, dtype=x.dtype)[:, None] - (h - 1) / 2
    cols = torch.arange(w, dtype=x.dtype)[None, :] - (w - 1) / 2
    weight = (min(h, w) / 2 - 0.5 - torch.sqrt(rows ** 2 + cols ** 2)).clamp(0, 1)
    return mean + weight * (x - mean)


MIN_SIGMA = 0.05     # a blur narrower than this moves no pixel by more than round-off: left out


def _radius(sigma: float) -> int:
    """How far :func:`_blur`'s kernel of ``sigma`` pixels reaches, in pixels."""
    return max(1, math.ceil(3 * sigma))


def _blur(x: Tensor, sigma: float, pad: str = "replicate", grow: int = 0) -> Tensor:
    """x (N, C, H, W) under a separable Gaussian of ``sigma`` pixels, on a frame grown by ``grow`` pixels a side
    -> (N, C, H + 2 grow, W + 2 grow); beyond the edges ``pad`` (F.pad's mode: "replicate" repeats them, "constant"
    reads 0).

    The anti-aliasing of a shrink by s, sigma = (1/s - 1)/2 as scikit-image's ``rescale`` sets it: bilinear sampling
    alone reads 2 of every 4 pixels at 0.25x (at 0.5x and above it reads every pixel).

    One matrix product per axis (:func:`_blur_matrix`), the padding folded into the matrix: at 1/32x a 16-pixel image
    is blurred onto a 110-pixel frame by a 95-tap kernel, which a padded conv2d ran over 204-pixel rows of mostly
    padding, where the product reads the image's 16 (bench/warp_blur.py: the scale curve's 22 warps 9-16x faster)."""
    if sigma < MIN_SIGMA:
        return F.pad(x, (grow,) * 4) if grow else x
    _, _, h, w = x.shape
    rows = _blur_matrix(h, sigma, pad, grow, x.dtype)        # (H + 2 grow, H)
    cols = rows if w == h else _blur_matrix(w, sigma, pad, grow, x.dtype)       # (W + 2 grow, W): a square's once
    return rows @ x @ cols.T


def _blur_matrix(n: int, sigma: float, pad: str, grow: int, dtype: torch.dtype) -> Tensor:
    """(n + 2 grow, n): row o the Gaussian kernel of ``sigma`` centred on input pixel o - grow, its taps beyond the
    edges dropped (``pad="constant"``) or added onto the edge pixel they would repeat (``"replicate"``)."""
    if pad not in ("constant", "replicate"):
        raise ValueError(f"pad must be 'constant' or 'replicate', got {pad!r}")
    radius = _radius(sigma)
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=dtype) / sigma) ** 2)
    k = k / k.sum()                                                  # (2 radius + 1,)
    out = torch.arange(n + 2 * grow)[:, None]                        # (n + 2 grow, 1)
    # (n + 2 grow, 2 radius + 1): the input pixel each tap of each output reads
    source = out - grow + torch.arange(-radius, radius + 1)[None, :]
    weight = k.expand(source.shape)
    if pad == "constant":
        inside = (source >= 0) & (source < n)
        out, source, weight = out.expand(source.shape)[inside], source[inside], weight[inside]
    else:
        out, source = out.expand(source.shape), source.clamp(0, n - 1)
    m = torch.zeros(n + 2 * grow, n, dtype=dtype)
    return m.index_put_((out.reshape(-1), source.reshape(-1)), weight.reshape(-1), accumulate=True)
