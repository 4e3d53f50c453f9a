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


# Two filters are the same map when |cos| between them (unit norm) is above this: their responses to white noise
# correlate above 0.99. At 1 - 1e-6 (exact repeats only) a 2x2 bank of 16 held pairs at 0.99998, and rica-8x8's 64
# two at 0.994 (2-pixel gratings 16 degrees apart that the pixel grid samples alike).
SAME = 0.99


def _gabor_stack(size: int, theta: Tensor, wavelength: Tensor, phase: Tensor, sigma: Tensor, aspect: float) -> Tensor:
    """(n, size, size) float64 Gabor filters, one per entry of the (n,) float64 ``theta``, ``wavelength``,
    ``phase`` and ``sigma``: zero mean, unit norm (an all-zero one stays zero)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")                     # (k, k)
    cos, sin = theta.cos().view(-1, 1, 1), theta.sin().view(-1, 1, 1)
    u = x * cos + y * sin       # across the stripes
    v = -x * sin + y * cos      # along the stripes
    envelope = torch.exp(-(u ** 2 + (aspect * v) ** 2) / (2 * sigma.view(-1, 1, 1) ** 2))
    g = envelope * torch.cos(2 * math.pi * u / wavelength.view(-1, 1, 1) + phase.view(-1, 1, 1))
    g = g - g.mean(dim=(1, 2), keepdim=True)  # a DC response would make the filter a brightness detector, not an edge detector
    n = g.flatten(1).norm(dim=1).view(-1, 1, 1)
    return torch.where(n > 1e-12, g / n.clamp_min(1e-12), g)


def gabor_kernel(size: int, theta: float, wavelength: float, phase: float, sigma: float | None = None,
                 aspect: float = 0.5) -> Tensor:
    """One (size, size) Gabor filter: a cosine grating of ``wavelength`` pixels at angle ``theta``
    (radians) and ``phase``, under a Gaussian envelope of std ``sigma`` (default 0.56 x wavelength,
    about one octave of bandwidth) elongated along the grating by 1/``aspect``. Zero mean, unit norm."""
    if size < 1 or wavelength <= 0:
        raise ValueError(f"gabor_kernel: size must be >= 1 and wavelength > 0, got {size} and {wavelength}")
    sigma = 0.56 * wavelength if sigma is None else sigma
    one = (torch.tensor([v], dtype=torch.float64) for v in (theta, wavelength, phase, sigma))
    return _gabor_stack(size, *one, aspect)[0].float()


class GaborBank:
    """Gabor filters at ``orientations`` x ``scales`` x ``phases``, for ``kernel_size`` fields on ``channels``.

    Scale s has wavelength ``kernel_size / 2**s`` pixels (the coarsest is the field's width, each
    next one an octave finer, never under 2 pixels). Phases are spread over [0, pi): 0 is
    even (a bar detector), pi/2 odd (an edge detector); at a 2-pixel wavelength a phase whose grating the
    pixels sample only at its zeros (the even phase on an even-sized field: an all-zero filter, which a
    frozen bank keeps dead) is shifted by pi/4. ``filters()`` orders them orientation
    fastest, then phase, then scale, so the first n of the bank cover every orientation first.
    A filter alike to an earlier one or its negative (|cos| > ``SAME``) is left out: at a 2-pixel wavelength
    an axis-aligned grating has one phase only (its even filter, shifted, is minus the odd one), nearby
    orientations sample alike, and a scale past the finest octave repeats the one before it. A multi-channel
    filter is the same pattern in every channel (a luminance detector).
    """

    def __init__(self, kernel_size: int, orientations: int = 8, scales: int = 2, phases: int = 2, channels: int = 1):
        for name, v in (("kernel_size", kernel_size), ("orientations", orientations), ("scales", scales),
                        ("phases", phases), ("channels", channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"GaborBank: {name} must be a positive int, got {v!r}")
        self.kernel_size, self.orientations, self.scales = kernel_size, orientations, scales
        self.phases, self.channels = phases, channels

    def __len__(self) -> int:
        return len(self._distinct())

    @classmethod
    def sized(cls, n: int, kernel_size: int, channels: int = 1) -> "GaborBank":
        """The smallest bank of at least ``n`` distinct filters: up to 8 orientations, 2 phases once n >= 4, then
        octave-spaced scales down to a 2-pixel wavelength, then more orientations (rica-8x8's 64: 8 x 2 x 3 scales
        hold 46 distinct filters, 11 orientations 64). Raises when no bank of up to 64 orientations more than the
        fewest that could hold ``n`` does (a 2x2 field holds 19, a 3x3 one about 120, an 8x8 one about 340: past
        that, new orientations sample like old ones)."""
        if n < 1:
            raise ValueError(f"GaborBank.sized: n must be >= 1, got {n}")
        phases = 2 if n >= 4 else 1
        orientations = min(8, max(1, n // phases))
        octaves = 1 + sum(1 for s in range(64) if kernel_size / 2 ** s > 2)   # distinct wavelengths, 2 pixels the last
        scales = min(octaves, math.ceil(n / (orientations * phases)))
        # o orientations give at most o x scales x phases filters: none below that bound can hold n
        start = max(orientations, math.ceil(n / (scales * phases)))
        most = 0
        for o in range(start, start + 65):
            bank = cls(kernel_size, o, scales, phases, channels)
            held = len(bank)
            if held >= n:
                return bank
            most = max(most, held)
        raise ValueError(f"GaborBank.sized: {kernel_size}x{kernel_size} fields hold no {n} distinct Gabor filters (the "
                         f"banks of {start} to {start + 64} orientations held at most {most}, no two with |cos| > {SAME})")

    def wavelength(self, scale: int) -> float:
        return max(2.0, self.kernel_size / 2 ** scale)

    def _distinct(self) -> Tensor:
        """(m, k, k) float64: the bank's filters in order, those alike to an earlier one left out."""
        o, p, s = self.orientations, self.phases, self.scales
        grid = torch.cartesian_prod(torch.arange(s), torch.arange(p), torch.arange(o)).double()   # (s*p*o, 3)
        theta = math.pi * grid[:, 2] / o
        wavelength = (self.kernel_size / 2 ** grid[:, 0]).clamp_min(2.0)
        phase = math.pi * grid[:, 1] / p
        g = _gabor_stack(self.kernel_size, theta, wavelength, phase, 0.56 * wavelength, 0.5)
        dead = g.flatten(1).norm(dim=1) < 0.5        # a 2-pixel grating sampled at its zeros: shift it an eighth
        if bool(dead.any()):
            g[dead] = _gabor_stack(self.kernel_size, theta[dead], wavelength[dead], phase[dead] + math.pi / 4,
                                   0.56 * wavelength[dead], 0.5)
        flat = g.flatten(1)
        zero = (flat.norm(dim=1) < 0.5).tolist()
        taken = torch.zeros(len(flat), dtype=torch.bool)    # alike to a filter kept before it
        keep: list[int] = []
        # each kept filter against all, not every pair: the same banks (672 checked), and GaborBank.sized refusing
        # 2000 maps on 8x8 fields in 4 s, not 24 (2026-12-05, that case of tests/test_gabor.py then, 2 cores)
        for i in range(len(flat)):
            if zero[i] or not taken[i]:
                keep.append(i)
                taken |= (flat @ flat[i]).abs() > SAME
        return g[keep]

    def filters(self) -> Tensor:
        """(len(self), C, k, k) float32, each unit norm over C*k*k."""
        g = self._distinct().float()
        return g.unsqueeze(1).expand(-1, self.channels, -1, -1) / math.sqrt(self.channels)


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
        try:
            bank = GaborBank.sized(maps, k, c).filters()[:maps]                 # (maps, C, k, k)
        except ValueError as err:   # more maps than distinct filters: a frozen bank would repeat some
            raise ValueError(f"model.first_layer = {kind!r} needs {maps} distinct filters, one per map, but "
                             f"{str(err).removeprefix('GaborBank.sized: ')}; use fewer maps or larger filters") from None
        filled = bank.unsqueeze(0).expand(positions, -1, -1, -1, -1)
    else:
        filled = random_filters(positions * maps, c, k, seed).view(positions, maps, c, k, k)
    with torch.no_grad():
        weight.copy_(filled.reshape(weight.shape).to(weight.dtype))
    if kind not in FROZEN_KINDS:
        return True
    weight.requires_grad_(False)
    return False
