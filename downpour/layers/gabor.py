"""Hand-designed and random first-layer filters, as a config choice next to learned ones.

The essay asks whether first-layer edge detectors must be learned or can be designed by hand, like
V1 simple cells. :class:`GaborBank` builds oriented Gabor filters (orientations x scales x phases);
:func:`random_filters` builds fixed random filters (Saxe et al. 2011, "On random weights and
unsupervised feature learning"). :func:`init_first_layer` fills any first-layer weight with either and
freezes it, so one config switch (``first_layer = "learned" | "gabor" | "random"``) swaps them;
``"gabor-init"`` starts from the Gabor bank and learns from there (the hand design as a starting point):

    trainable = init_first_layer(model.filter.weight, "gabor", seed=0)   # False: filled and frozen

Weight layouts understood: a locally connected / conv bank ``(tH, tW, maps, C, k, k)``, a conv
``(maps, C, k, k)``, or a dense ``(hidden, C*k*k)`` (pass ``channels`` when C > 1).
Every filter is zero-mean (gabor only) and unit L2 norm, so the kinds start at the same scale.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["FIRST_LAYER_KINDS", "FROZEN_KINDS", "GaborBank", "gabor_kernel", "init_first_layer", "random_filters"]

FIRST_LAYER_KINDS = ("learned", "gabor", "random", "gabor-init")
FROZEN_KINDS = ("gabor", "random")        # the kinds whose filters never train


def gabor_kernel(size: int, theta: float, wavelength: float, phase: float, sigma: float | None = None,
                 aspect: float = 0.5) -> Tensor:
    """One (size, size) Gabor filter: a cosine grating of ``wavelength`` pixels at angle ``theta``
    (radians) and ``phase``, under a Gaussian envelope of std ``sigma`` (default 0.56 x wavelength,
    about one octave of bandwidth) elongated along the grating by 1/``aspect``. Zero mean, unit norm."""
    if size < 1 or wavelength <= 0:
        raise ValueError(f"gabor_kernel: size must be >= 1 and wavelength > 0, got {size} and {wavelength}")
    sigma = 0.56 * wavelength if sigma is None else sigma
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    u = x * math.cos(theta) + y * math.sin(theta)       # across the stripes
    v = -x * math.sin(theta) + y * math.cos(theta)      # along the stripes
    g = torch.exp(-(u ** 2 + (aspect * v) ** 2) / (2 * sigma ** 2)) * torch.cos(2 * math.pi * u / wavelength + phase)
    g = g - g.mean()  # a DC response would make the filter a brightness detector, not an edge detector
    n = g.norm()
    return (g / n if n > 1e-12 else g).float()


class GaborBank:
    """Gabor filters at ``orientations`` x ``scales`` x ``phases``, for ``kernel_size`` fields on ``channels``.

    Scale s has wavelength ``kernel_size / 2**s`` pixels (the coarsest is the field's width, each
    next one an octave finer, never under 2 pixels). Phases are spread over [0, pi): 0 is
    even (a bar detector), pi/2 odd (an edge detector); at a 2-pixel wavelength a phase whose grating the
    pixels sample only at its zeros (the even phase on an even-sized field: an all-zero filter, which a
    frozen bank keeps dead) is shifted by pi/4. ``filters()`` orders them orientation
    fastest, then phase, then scale, so the first n of the bank cover every orientation first.
    A filter equal to an earlier one or its negative is left out: at a 2-pixel wavelength an axis-aligned
    grating has one phase only (its even filter, shifted, is minus the odd one), and a scale past the
    finest octave repeats the one before it. A multi-channel filter is the same pattern in every channel
    (a luminance detector).
    """

    def __init__(self, kernel_size: int, orientations: int = 8, scales: int = 2, phases: int = 2, channels: int = 1):
        for name, v in (("kernel_size", kernel_size), ("orientations", orientations), ("scales", scales),
                        ("phases", phases), ("channels", channels)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"GaborBank: {name} must be a positive int, got {v!r}")
        self.kernel_size, self.orientations, self.scales = kernel_size, orientations, scales
        self.phases, self.channels = phases, channels

    def __len__(self) -> int:
        return len(self.filters())

    @classmethod
    def sized(cls, n: int, kernel_size: int, channels: int = 1) -> "GaborBank":
        """The smallest bank of at least ``n`` distinct filters: up to 8 orientations, 2 phases once n >= 4, then
        octave-spaced scales down to a 2-pixel wavelength, then more orientations (rica-8x8's 64 Gabor maps were
        8 x 2 x 4 scales, wavelengths 8, 4, 2, 2: 18 of them repeats, frozen)."""
        if n < 1:
            raise ValueError(f"GaborBank.sized: n must be >= 1, got {n}")
        phases = 2 if n >= 4 else 1
        orientations = min(8, max(1, n // phases))
        octaves = 1 + sum(1 for s in range(64) if kernel_size / 2 ** s > 2)   # distinct wavelengths, 2 pixels the last
        scales = min(octaves, math.ceil(n / (orientations * phases)))
        bank = cls(kernel_size, orientations, scales, phases, channels)
        while len(bank) < n:
            if bank.orientations >= 16 * n:     # (not reached: every new orientation adds a distinct filter)
                raise ValueError(f"GaborBank.sized: no {n} distinct Gabor filters of side {kernel_size}")
            bank = cls(kernel_size, bank.orientations + 1, scales, phases, channels)
        return bank

    def wavelength(self, scale: int) -> float:
        return max(2.0, self.kernel_size / 2 ** scale)

    def filters(self) -> Tensor:
        """(len(self), C, k, k) float32, each unit norm over C*k*k."""
        out, seen = [], []
        for s in range(self.scales):
            for p in range(self.phases):
                for o in range(self.orientations):
                    theta, wavelength = math.pi * o / self.orientations, self.wavelength(s)
                    g = gabor_kernel(self.kernel_size, theta, wavelength, math.pi * p / self.phases)
                    if float(g.norm()) < 0.5:   # a 2-pixel grating sampled at its zeros: shift it an eighth
                        g = gabor_kernel(self.kernel_size, theta, wavelength, math.pi * p / self.phases + math.pi / 4)
                    flat = g.flatten().double()
                    if float(flat.norm()) > 0.5 and any(abs(float(flat @ h)) > 1 - 1e-6 for h in seen):
                        continue                # the same filter (or its negative) as one already in the bank
                    seen.append(flat)
                    out.append(g.expand(self.channels, -1, -1) / math.sqrt(self.channels))
        return torch.stack(out)


def random_filters(n: int, channels: int, kernel_size: int, seed: int | None = None) -> Tensor:
    """(n, C, k, k) fixed random filters: Gaussian, unit L2 norm each, reproducible from ``seed``
    (None: drawn from torch's global generator, so a run's seed decides them)."""
    g = None if seed is None else torch.Generator().manual_seed(seed)
    w = torch.randn(n, channels, kernel_size, kernel_size, generator=g)
    return w / w.flatten(1).norm(dim=1).clamp_min(1e-12).view(n, 1, 1, 1)


def _layout(shape: torch.Size, channels: int) -> tuple[int, int, int, int]:
    """(positions, maps, C, k) of a first-layer weight; raises naming the shape if it is not one."""
    if len(shape) == 6 and shape[-1] == shape[-2]:     # (tH, tW, maps, C, k, k)
        return shape[0] * shape[1], shape[2], shape[3], shape[4]
    if len(shape) == 4 and shape[-1] == shape[-2]:     # (maps, C, k, k)
        return 1, shape[0], shape[1], shape[2]
    if len(shape) == 2:                                # (hidden, C*k*k)
        k = math.isqrt(shape[1] // channels) if shape[1] % channels == 0 else 0
        if k * k * channels != shape[1]:
            raise ValueError(f"init_first_layer: a dense weight of shape {tuple(shape)} is not (hidden, C*k*k) "
                             f"with C = channels = {channels} and a square k x k field")
        return 1, shape[0], channels, k
    raise ValueError(f"init_first_layer: weight shape {tuple(shape)} is not (tH, tW, maps, C, k, k), "
                     f"(maps, C, k, k) or (hidden, C*k*k)")


def init_first_layer(weight: Tensor, kind: str, seed: int | None = None, channels: int = 1) -> bool:
    """Fill a first-layer ``weight`` in place with ``kind`` filters and return whether it stays trainable.

    ``kind``: "learned" leaves it as initialised (returns True); "gabor" fills every position's bank
    with the same :meth:`GaborBank.sized` filters (V1-like: the same detectors everywhere); "random"
    fills every filter of every position with its own fixed random filter (:func:`random_filters`,
    from ``seed``, or from torch's global generator when None: only "random" draws from it).
    Designed and random weights are frozen (``requires_grad=False``; returns False), so the trainer
    and the parameter server leave them out; "gabor-init" fills the Gabor bank and leaves it
    trainable (returns True). ``channels`` is C for a dense (hidden, C*k*k) weight.
    """
    if kind not in FIRST_LAYER_KINDS:
        raise ValueError(f"model.first_layer must be one of {FIRST_LAYER_KINDS}, got {kind!r}")
    if kind == "learned":
        return True
    positions, maps, c, k = _layout(weight.shape, channels)
    if kind in ("gabor", "gabor-init"):
        if k < 2:   # a 1-pixel filter minus its mean is 0: the bank would be dead (and, frozen, stay dead)
            raise ValueError(f"model.first_layer = {kind!r} needs filters of at least 2x2 pixels, got {k}x{k}")
        bank = GaborBank.sized(maps, k, c).filters()[:maps]                     # (maps, C, k, k)
        filled = bank.unsqueeze(0).expand(positions, -1, -1, -1, -1)
    else:
        filled = random_filters(positions * maps, c, k, seed).view(positions, maps, c, k, k)
    with torch.no_grad():
        weight.copy_(filled.reshape(weight.shape).to(weight.dtype))
    if kind not in FROZEN_KINDS:
        return True
    weight.requires_grad_(False)
    return False
