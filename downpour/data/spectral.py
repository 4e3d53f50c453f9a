"""Spectral whitening: divide each image's Fourier transform by the training set's amplitude spectrum.

Natural images have a power spectrum that falls steeply with frequency (cat-demo's 32x32 crops:
2,600x from the lowest to the highest band), so a reconstruction cost spends nearly all its effort
on the lowest frequencies. Worse, an overcomplete autoencoder with a sparsity penalty puts filters
where the data has no power: they then respond to nothing, which the penalty rewards, and show
up as checkerboards. Whitening must leave no such empty band.

- ZCA does that for small patches, but over whole 32x32 crops it needs a 1024-square covariance
  fitted on ~1,250 crops, and its regulariser leaves the weakest directions nearly empty
  (checkerboards; docs/analysis.md).
- The fixed |f| filter of Olshausen & Field undoes a 1/f² spectrum only: our crops, downsampled
  with an antialiasing filter, still lose 20-25x of power towards the Nyquist corners after it, and
  a quarter of cat-demo's first-layer filters became checkerboards there.
- Here the spectrum is *fitted*: the mean power P(fy, fx) of the training images on one frequency
  grid, and every image's transform is multiplied by 1/√P (the mean set to 0). That is ZCA for a
  stationary image model: ~H·W numbers instead of (H·W)² and all of them well estimated from a
  few hundred images. Measured on cat-demo's crops: band powers within 0.18-0.29 of each other
  from the lowest band to the corners, and no checkerboards.

Each image is reflect-padded by half its side before the transform, so its border does not ring
(a periodic transform sees a jump from one edge to the opposite), and cropped back after. One
set-wide factor then gives the whitened training set unit std.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from downpour.errors import DataError

# Power below this fraction of the strongest frequency's is treated as this floor, so a band the
# data never reaches (an image of constant rows) is not amplified without bound.
POWER_FLOOR = 1e-7
_CHUNK = 256          # images per FFT: their float64 spectra are ~40x the images' bytes
# fit_transform keeps the fit's whitened chunks (float64: 2x a float32 set) up to this many bytes, and whitens
# the rest again: an in-memory set may reach 1 GiB (pipeline.STREAM_ABOVE), and must not take 2 more at its fit.
# The fit's power pass keeps the first chunks' spectra (~4x a chunk's whitened bytes) up to this many bytes too,
# for its std pass, which frees each as it whitens it: the two never hold more than this together (plus a chunk).
KEEP_BYTES = 256 << 20


def _padded_spectrum(x: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """(N, C, H, W) -> rfft2 of each channel reflect-padded by half its side, (N·C, 2H', W' // 2 + 1), and the pad."""
    n, c, h, w = x.shape
    ph, pw = min(h // 2, h - 1), min(w // 2, w - 1)          # reflect padding must be < the side
    padded = F.pad(x.reshape(n * c, 1, h, w).double(), (pw, pw, ph, ph), mode="reflect")
    return torch.fft.rfft2(padded)[:, 0], (ph, pw)


FLAT = 1e-6   # an image set whose largest pixel std is below this times its largest |value| is flat


def check_contrast(x: Tensor) -> None:
    """DataError for images (N, C, H, W) that are flat: power at the mean only, but round-off (an FFT of a side
    that is no power of two, a float32 resize) leaves ~1e-27 elsewhere, which whitening blows up into
    unit-std noise. Judged in pixels, relative to the values' scale (the whitening itself is scale-free);
    ``Preprocess.fit`` judges the images as loaded, before a per-patch normalisation could blow the
    round-off up first."""
    spread = float(x.reshape(x.shape[0] * x.shape[1], -1).std(dim=1).max()) if x.shape[2] * x.shape[3] > 1 else 0.0
    if not spread > FLAT * float(x.abs().max()):
        raise DataError(f"data.whiten = 'spectral': the {x.shape[0]} images it is fitted on are flat (largest pixel "
                        f"std {spread:.2g} against values up to {float(x.abs().max()):.2g}: no contrast, only "
                        f"brightness), so there is no spectrum to divide by; check the images (or data.fit_sample's "
                        f"draw), or use data.whiten = 'none'")


class SpectralWhitener:
    """Whitening by the training set's mean power spectrum (stationary ZCA).

    ``strength`` s: the transform is multiplied by P^(-s/2). 1 flattens the spectrum completely;
    below 1 a little of the natural slope is left. Fitted state: ``power_`` (H + 2·(H//2),
    (W + 2·(W//2)) // 2 + 1) float64, the mean power on the padded grid; ``scale_`` the set-wide
    factor; ``input_shape`` (C, H, W).
    """

    # each saved tensor's meaning (preprocess.safetensors' metadata)
    LAYOUTS = {"power": "(H + 2*ph, (W + 2*pw) // 2 + 1) the training images' mean power on the rfft2 grid of an image "
                        "reflect-padded by ph = min(H // 2, H - 1) rows and pw = min(W // 2, W - 1) columns a side; "
                        "gain = max(power, 1e-7 * the largest but the mean's) ** (-strength / 2), 0 at [0, 0]",
               "scale": "[scale, strength]: whitened = irfft2(rfft2(padded) * gain) cropped back, times scale",
               "input_shape": "(C, H, W) of the images; each channel whitened alone"}

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = strength

    def fit(self, x: Tensor) -> "SpectralWhitener":
        """Fit on x (N, C, H, W), after any per-image normalisation."""
        self._fit(x, keep=0)
        return self

    def fit_transform(self, x: Tensor) -> Tensor:
        """``fit(x).transform(x)``, bit for bit, for less: the fit already whitens every chunk once (for the set's
        std), so up to :data:`KEEP_BYTES` of those float64 chunks are kept and only scaled, not transformed again
        (main's 2,180 crops, 18 MB of them: ``Preprocess.fit``'s CPU 0.62-0.79x of fit-then-transform's,
        bench/start_up.py)."""
        return self._transform(x, self._fit(x, KEEP_BYTES))

    def _fit(self, x: Tensor, keep: int) -> list[Tensor]:
        """Fit on x; the first whitened (unscaled) chunks of the std pass, while they take at most ``keep`` bytes."""
        if not 0 < self.strength <= 1:
            raise ValueError(f"spectral whitening strength must be in (0, 1], got {self.strength!r}")
        if x.shape[0] < 1 or min(x.shape[2:]) < 2:
            raise DataError(f"spectral whitening needs at least one image of at least 2x2 pixels, got {tuple(x.shape)}")
        self.input_shape = tuple(x.shape[1:])
        check_contrast(x)
        power = torch.zeros(())
        spectra: dict[int, tuple[Tensor, tuple[int, int]]] = {}   # start -> the first chunks' spectra, for the std
        spectra_bytes = 0                                             # pass, while they take at most KEEP_BYTES
        for start in range(0, x.shape[0], _CHUNK):           # bounded memory for large sets
            spectrum, pad = _padded_spectrum(x[start:start + _CHUNK])
            power = power + (spectrum.abs() ** 2).sum(dim=0)
            spectra_bytes += spectrum.numel() * spectrum.element_size()    # (every chunk's: once over, none after)
            if spectra_bytes <= KEEP_BYTES:
                spectra[start] = (spectrum, pad)
        self.power_ = power / (x.shape[0] * x.shape[1])
        self.scale_ = 1.0
        total, squares, gain = 0.0, 0.0, self.gain()         # the whitened set's std, a chunk at a time
        kept: list[Tensor] = []
        for start in range(0, x.shape[0], _CHUNK):           # (a kept spectrum popped: its memory back once used)
            part = self._whitened(x[start:start + _CHUNK], gain, spectra.pop(start, None))
            total, squares = total + float(part.sum()), squares + float(part.square().sum())
            held = sum(k.numel() * k.element_size() for k in kept) + part.numel() * part.element_size()
            if len(kept) == start // _CHUNK and held <= keep:   # the first chunks, none skipped; a copy, as the
                kept.append(part.contiguous())   # crop is a view of the 2x2-padded irfft2 (kept whole: 4x the bytes)
        count = x.numel()
        std = math.sqrt(max(0.0, squares - total * total / count) / max(1, count - 1))
        self.scale_ = 1.0 / std if std > 0 else 1.0
        return kept

    def gain(self) -> Tensor:
        """P^(-strength/2) on the padded rfft2 grid, 0 at the mean (DC). The floor is relative to the
        strongest frequency other than the mean's: the images' brightness (DC) must not set it."""
        ac = self.power_.clone()
        ac[0, 0] = 0.0
        gain = self.power_.clamp_min(float(ac.max()) * POWER_FLOOR) ** (-0.5 * self.strength)
        gain[0, 0] = 0.0
        return gain

    def transform(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> whitened, at the training set's scale. The size must be the fitted one."""
        return self._transform(x, [])

    def _transform(self, x: Tensor, kept: list[Tensor]) -> Tensor:
        """:meth:`transform`, taking the first ``len(kept)`` chunks already whitened (unscaled, by :meth:`_fit`)."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"spectral whitening was fitted on {self.input_shape} images, got {tuple(x.shape[1:])}")
        gain, out = self.gain(), x.new_empty(x.shape, dtype=torch.float32)
        for i, start in enumerate(range(0, x.shape[0], _CHUNK)):   # a chunk at a time: the float64 spectra of a
            part = x[start:start + _CHUNK]                            # whole set took ~40x its size
            out[start:start + _CHUNK] = (kept[i] if i < len(kept) else self._whitened(part, gain)) * self.scale_
        return out

    @staticmethod
    def _whitened(x: Tensor, gain: Tensor, spectrum: tuple[Tensor, tuple[int, int]] | None = None) -> Tensor:
        """(n, C, H, W) times ``gain`` in the padded frequency domain, cropped back: float64 (n, C, H, W).
        ``spectrum``: x's :func:`_padded_spectrum`, where the caller has it already."""
        n, c, h, w = x.shape
        spectrum, (ph, pw) = _padded_spectrum(x) if spectrum is None else spectrum
        return torch.fft.irfft2(spectrum * gain, s=(h + 2 * ph, w + 2 * pw))[:, ph:ph + h, pw:pw + w].reshape(n, c, h, w)

    def inverse(self, x: Tensor) -> Tensor:
        """Whitened (N, C, H, W) -> data space, for pictures (the mean, removed by whitening, stays 0)."""
        n, c, h, w = x.shape
        spectrum, (ph, pw) = _padded_spectrum(x / self.scale_)
        gain = self.gain()
        colour = torch.where(gain > 0, 1.0 / gain.clamp_min(1e-300), torch.zeros_like(gain))
        out = torch.fft.irfft2(spectrum * colour, s=(h + 2 * ph, w + 2 * pw))[:, ph:ph + h, pw:pw + w]
        return out.reshape(n, c, h, w).float()

    def summary(self) -> dict[str, Any]:
        p = self.power_
        return {"method": "spectral", "filter": "mean power spectrum ** (-strength/2), reflect-padded by half the side",
                "strength": self.strength, "scale": self.scale_, "power_max": float(p.max()), "power_min": float(p.min())}

    def state_dict(self) -> dict[str, Tensor]:
        return {"power": self.power_, "scale": torch.tensor([self.scale_, self.strength], dtype=torch.float64),
                "input_shape": torch.tensor(self.input_shape, dtype=torch.int64)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> "SpectralWhitener":
        missing = {"power", "scale", "input_shape"} - set(state)
        if missing:
            raise KeyError(f"spectral whitening state lacks {sorted(missing)}")
        self = cls(float(state["scale"][1]))
        self.power_ = state["power"].double()
        self.scale_ = float(state["scale"][0])
        self.input_shape = tuple(int(v) for v in state["input_shape"])
        return self
