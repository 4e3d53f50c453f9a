"""Negatives matched to faces in low-level statistics: what a face unit must reject and a brightness unit cannot.

In ``lfw_subset`` the faces are brighter than the non-faces and differ in texture, so one scalar (mean
intensity, gradient energy) already separates them. Each control here is built from one face and
keeps some of its low-level statistics while destroying (or reordering) its configuration:

- ``phase_scrambled``: the face's amplitude spectrum and mean exactly, random phases;
- ``upside_down``: the same pixels, flipped top to bottom (a classic face-specific effect);
- ``block_shuffled``: the same pixels in blocks, the blocks permuted;
- ``spectrum_matched_crops``: a crop of a photograph that holds no face, given the face's
  amplitude spectrum (so mean and power spectrum match) and keeping the crop's own phase.

Every function is pure: images (N, C, H, W) float32 in [0, 1] (outputs of the spectral ones are not
clipped, so they may leave [0, 1]: clipping would change the spectrum), a seeded numpy Generator.
:func:`build_controls` makes them and remembers, for every control image, the image it came from.
Nothing here is about faces but the words and the photos' choice: it takes any images
and names them (``noun``), so a labelled folder's concept gets the same controls
(:mod:`downpour.analysis.concept_controls`); upside-down is offered there only when asked for, as it
tests an upright orientation that a texture or a symmetric shape does not have.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# Photographs from ``downpour.data.builtin.NATURAL`` that hold no face. Left out: ``astronaut`` (a
# portrait), ``camera`` (the cameraman), ``chelsea`` (a cat's face) and ``coins`` (Greek coins,
# several with profile heads). A crop of any of those could be part of a face, and a unit that
# rejected it would be rejecting a face.
NO_FACE_PHOTOS: tuple[str, ...] = (
    "brick", "clock", "coffee", "grass", "gravel", "hubble_deep_field", "moon", "page", "rocket",
    "stereo_motorcycle", "text",
)
CROP_SCALE = 4       # photos are shrunk so their short side is 4 crops long (see _photos)
MIN_CROP_STD = 0.05  # a flatter crop (blank page, black sky) has no structure worth keeping the phase of


CONTROLS = ("phase_scrambled", "upside_down", "block_shuffled", "spectrum_matched_crops")   # in build_controls' order
_LABEL = {"phase_scrambled": "phase-scrambled {noun}s", "upside_down": "upside-down {noun}s",
          "block_shuffled": "block-shuffled {noun}s", "spectrum_matched_crops": "spectrum-matched crops of photos"}


def control_label(name: str, noun: str = "face") -> str:
    """A control set's name in words: ``("phase_scrambled", "face")`` -> "phase-scrambled faces"."""
    return _LABEL[name].format(noun=noun)


def block_grid(h: int, w: int, target: int = 5) -> int | None:
    """Blocks per side for :func:`block_shuffled` on (h, w) images: a common divisor of both, at least 2 and
    leaving blocks of at least 2 px, nearest ``target`` (lfw's 25 x 25: 5; 32 x 32: 4 blocks of 8 px), the
    smaller on a tie; None when the sides share none (31 x 31)."""
    grids = [d for d in range(2, min(h, w) // 2 + 1) if h % d == 0 and w % d == 0]
    return min(grids, key=lambda d: (abs(d - target), d)) if grids else None


@dataclass
class ControlSet:
    """Control images and the face each was built from: ``x`` (N, C, H, W) float32, ``source`` (N,) int64."""

    name: str
    x: np.ndarray
    source: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    return images.astype(np.float64)


def phase_scrambled(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image's amplitude spectrum (and so its mean) exactly, with random phases.

    The phases are those of white noise's spectrum: the spectrum of a real image, so Hermitian
    symmetric and the output real. The DC phase is set to 0 so the mean keeps its sign and value.
    Channels of one image share the phases (colour stays aligned).
    """
    x = _check(faces)
    amplitude = np.abs(np.fft.fft2(x))                               # (N, C, H, W)
    n, _, h, w = x.shape
    phase = np.angle(np.fft.fft2(rng.standard_normal((n, 1, h, w))))  # (N, 1, H, W), Hermitian-antisymmetric
    phase[..., 0, 0] = 0.0
    return np.fft.ifft2(amplitude * np.exp(1j * phase)).real.astype(np.float32)


def upside_down(faces: np.ndarray) -> np.ndarray:
    """The images flipped top to bottom."""
    return np.ascontiguousarray(np.asarray(faces)[:, :, ::-1, :], dtype=np.float32)


def block_shuffled(faces: np.ndarray, rng: np.random.Generator, blocks: int = 5) -> np.ndarray:
    """Each image cut into a ``blocks`` x ``blocks`` grid (5 x 5 blocks of 5 px on 25 x 25), the blocks permuted.

    Every image gets its own permutation; the multiset of pixel values is unchanged.
    """
    x = np.asarray(faces, dtype=np.float32)
    n, c, h, w = x.shape
    if h % blocks or w % blocks:
        raise ValueError(f"block_shuffled: {h}x{w} images do not divide into a {blocks}x{blocks} grid")
    bh, bw = h // blocks, w // blocks
    tiles = x.reshape(n, c, blocks, bh, blocks, bw).transpose(0, 2, 4, 1, 3, 5).reshape(n, blocks * blocks, c, bh, bw)
    order = np.argsort(rng.random((n, blocks * blocks)), axis=1)         # (N, blocks²): a permutation per image
    tiles = np.take_along_axis(tiles, order[:, :, None, None, None], axis=1)
    out = tiles.reshape(n, blocks, blocks, c, bh, bw).transpose(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)
    return np.ascontiguousarray(out)


def match_spectrum(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``image``'s phase with ``target``'s amplitude spectrum: (..., H, W) each -> (..., H, W) float64.

    A real image's phase is Hermitian antisymmetric and the amplitude symmetric, so the result is
    real. The DC phase is forced to 0, so the mean is the target's (even if the image's were negative).
    """
    phase = np.angle(np.fft.fft2(np.asarray(image, dtype=np.float64)))
    phase[..., 0, 0] = 0.0
    amplitude = np.abs(np.fft.fft2(np.asarray(target, dtype=np.float64)))
    return np.fft.ifft2(amplitude * np.exp(1j * phase)).real


def _photos(names: tuple[str, ...], channels: int, crop: int) -> list[np.ndarray]:
    """The photographs, grey or colour, shrunk so the short side is ``CROP_SCALE`` crops long.

    At full size (300-1000 px) a 25-px window is mostly a flat patch or fine texture; at ~100 px it
    holds object parts (edges, corners, contours) at the scale of a face's features, which is what a
    control with structure but no face needs.
    """
    from downpour.data.builtin import natural_images

    out = []
    for image in natural_images(grey=channels == 1, names=names).images:   # (C, H, W) float32 in [0, 1]
        scale = CROP_SCALE * crop / min(image.shape[1:])
        t = torch.from_numpy(np.ascontiguousarray(image))[None]
        size = (max(crop, round(image.shape[1] * scale)), max(crop, round(image.shape[2] * scale)))
        out.append(F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)[0].numpy())
    return out


def spectrum_matched_crops(faces: np.ndarray, rng: np.random.Generator,
                           photos: tuple[str, ...] = NO_FACE_PHOTOS) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One crop per face from a photograph with no face, given that face's amplitude spectrum.

    faces: (N, C, H, W). For face i a photo is drawn from ``photos`` and a window of the face's size
    at a random position (redrawn while its std is under ``MIN_CROP_STD``); the output keeps the
    crop's phase (its structure) and takes face i's amplitude spectrum, so mean and power spectrum
    match face i. Returns (controls (N, C, H, W) float32, where each crop came from).
    """
    x = _check(faces)
    n, c, h, w = x.shape
    pictures = _photos(tuple(photos), c, max(h, w))
    out, where = np.empty_like(x), []
    for i in range(n):
        for _ in range(100):
            k = int(rng.integers(len(pictures)))
            top = int(rng.integers(pictures[k].shape[1] - h + 1))
            left = int(rng.integers(pictures[k].shape[2] - w + 1))
            crop = pictures[k][:, top:top + h, left:left + w]
            if crop.std() >= MIN_CROP_STD:
                break
        out[i] = match_spectrum(crop, x[i])
        where.append({"photo": photos[k], "top": top, "left": left})
    return out.astype(np.float32), where


def joined(a: ControlSet, b: ControlSet, offset: int) -> ControlSet:
    """Control set ``a`` with ``b``'s images after it, ``b``'s sources counted from ``offset`` (the faces ``b`` was
    built from follow ``a``'s); its info's crop positions joined too."""
    info = {**a.info, **({"crops": a.info["crops"] + b.info["crops"]} if "crops" in a.info else {})}
    return ControlSet(a.name, np.concatenate([a.x, b.x]), np.concatenate([a.source, b.source + offset]), info)


def build_controls(faces: np.ndarray, rng: np.random.Generator, blocks: int = 5, draws: int = 1,
                   kinds: tuple[str, ...] = CONTROLS, noun: str = "face") -> list[ControlSet]:
    """The low-level-matched controls ``kinds`` (default: all four) of ``faces`` (N, C, H, W): any images of
    one concept, called ``noun`` in the sets' words ("face", "stripes image").

    ``draws`` images per face in each random control (phase-scrambled, block-shuffled, crops), one
    in ``upside_down`` (deterministic); ``source[j]`` is the index (into ``faces``) of the face control j
    was built from. More draws do not add faces, but they average out which phases, block orders and
    crops one draw happened to get (on the main job a chosen unit's AUC against one draw of the
    30 faces' phase scrambles moved between 0.74 and 0.89 from draw to draw). The random draws come
    from ``rng`` in one order (crops, phases, block orders) whichever ``kinds`` are asked for, so
    leaving one out does not change the others.
    """
    faces = np.asarray(faces, dtype=np.float32)
    if draws < 1:
        raise ValueError(f"build_controls: draws must be >= 1, got {draws}")
    unknown = [k for k in kinds if k not in CONTROLS]
    if unknown or not kinds:
        raise ValueError(f"build_controls: kinds must be some of {CONTROLS}, got {list(kinds)}")
    own = np.arange(len(faces))
    many, drawn = np.repeat(faces, draws, axis=0), np.repeat(own, draws)   # face i's draws are rows i·draws ...
    crops, where = spectrum_matched_crops(many, rng) if "spectrum_matched_crops" in kinds else (None, [])
    made = {
        "phase_scrambled": lambda: ControlSet(
            "phase_scrambled", phase_scrambled(many, rng), drawn,
            {"what": f"each {noun}'s amplitude spectrum and mean, random phases", "draws": draws}),
        "upside_down": lambda: ControlSet("upside_down", upside_down(faces), own,
                                          {"what": f"each {noun} flipped top to bottom", "draws": 1}),
        "block_shuffled": lambda: ControlSet(
            "block_shuffled", block_shuffled(many, rng, blocks), drawn,
            {"what": f"each {noun} cut into {blocks}x{blocks} blocks, the blocks permuted", "draws": draws}),
        "spectrum_matched_crops": lambda: ControlSet(
            "spectrum_matched_crops", crops, drawn,
            {"what": f"a crop of a photo with no face, given its {noun}'s amplitude spectrum (mean and power "
                     "spectrum match), keeping its own phase", "photos": list(NO_FACE_PHOTOS), "crops": where,
             "draws": draws}),
    }
    return [made[k]() for k in CONTROLS if k in kinds]      # (in this order: phases drawn before block orders)
