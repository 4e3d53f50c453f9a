"""The processing after sampling, fitted once on the training set and replayable on new images.

Order: ``normalize = "patch"`` (per-sample standardisation), then whitening (ZCA, or the fitted
spectral whitening of :mod:`spectral`), then ``normalize = "ufldl"``
(after whitening, so its [0.1, 0.9] range for sigmoid decoders survives; UFLDL also samples its
patches from already-whitened images and then normalises them). A model only responds meaningfully
to inputs prepared like its training data, so analysis runs held-out images through the same
fitted :class:`Preprocess` (``Dataset.prepare``): same order, same whitening matrix, same
set-wide statistics (variance floor, clip bound) as training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from downpour._names import listed, plural
from downpour.data.normalize import normalize
from downpour.data.spectral import SpectralWhitener, check_contrast
from downpour.data.whitening import ZCAWhitener
from downpour.errors import DataError

WHITENERS = {"zca": ZCAWhitener, "spectral": SpectralWhitener}   # data.whiten -> its class; "none" has none


def fit_needs(whiten: str) -> int:
    """Samples the fit of ``whiten`` (and any data.normalize) needs: ZCA's covariance of one centred sample is
    zero, so it needs 2; the normalisations and the spectral whitener are defined on one (its own statistics)."""
    return 2 if whiten == "zca" else 1


def fitted(whiten: str) -> str:
    """What a fit that needs :func:`fit_needs` samples fits, for messages."""
    return "data.whiten = 'zca'" if whiten == "zca" else "data.normalize / data.whiten"


def too_few_to_fit(where: str, items: int, item: str, samples: int, whiten: str) -> DataError:
    """What both pipelines say when all the data give fewer samples than :func:`fit_needs`: one message, so a
    one-image folder is not trained on in memory and refused streamed, and both say what the fit needs."""
    need, fit = fit_needs(whiten), fitted(whiten)
    other = ", or data.whiten = 'spectral' (defined on one image)" if whiten == "zca" else ""
    return DataError(f"{where}: its {plural(items, item)} gave {plural(samples, 'sample')}, and fitting {fit} needs at least "
                     f"{need}; add images, or cut several samples from each (data.mode = 'patches', or data.tile){other}")


@dataclass
class Preprocess:
    normalize: str = "none"                   # none | patch | ufldl
    stats: dict[str, Any] | None = None       # the normalisation's fitted statistics (JSON-able)
    whitener: ZCAWhitener | SpectralWhitener | None = None

    @property
    def whiten(self) -> str:
        """none | zca | spectral: the ``data.whiten`` name of ``whitener``."""
        return next((name for name, cls in WHITENERS.items() if isinstance(self.whitener, cls)), "none")

    @classmethod
    def fit(cls, x: np.ndarray, normalize_mode: str, whiten: str, zca_eps: float,
            spectral_strength: float = 1.0) -> tuple["Preprocess", Tensor, dict[str, Any]]:
        """Fit on the training samples x (N, C, H, W) -> (the fitted steps, processed x as float32 tensor, info)."""
        if whiten not in ("none", *WHITENERS):
            raise ValueError(f"data.whiten must be none, {listed(WHITENERS, 'or')}, got {whiten!r}")
        stats = None
        if whiten == "spectral" and normalize_mode == "patch":   # it would blow flat images' round-off up to std 1
            check_contrast(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))   # (else the whitener judges)
        if normalize_mode != "ufldl":
            x, stats = normalize(x, normalize_mode)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        whitener = {"none": None, "zca": ZCAWhitener(zca_eps), "spectral": SpectralWhitener(spectral_strength)}[whiten]
        if isinstance(whitener, SpectralWhitener):   # its fit whitens the set already: kept, not done twice
            xt = whitener.fit_transform(xt)
        elif whitener is not None:
            xt = whitener.fit(xt).transform(xt)
        if normalize_mode == "ufldl":
            out, stats = normalize(xt.numpy(), normalize_mode)
            xt = torch.from_numpy(out)
        info = {"normalization": stats, "whitening": whitener.summary() if whitener else {"method": "none"}}
        return cls(normalize_mode, stats, whitener), xt, info

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, JSON-able meta) to save beside a model; :meth:`from_state` restores it."""
        prefix = f"{self.whiten}."
        tensors = {prefix + k: v.contiguous() for k, v in self.whitener.state_dict().items()} if self.whitener else {}
        return tensors, {"normalize": self.normalize, "stats": self.stats, "whiten": self.whiten}

    def layouts(self) -> dict[str, str]:
        """:meth:`state`'s tensors' meanings in words, for preprocess.safetensors' metadata."""
        prefix = f"{self.whiten}."
        return {prefix + k: v for k, v in self.whitener.LAYOUTS.items()} if self.whitener else {}

    @classmethod
    def from_state(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> "Preprocess":
        whiten = meta.get("whiten", "none")
        if whiten != "none" and whiten not in WHITENERS:
            raise ValueError(f"saved preprocessing names an unknown whitening {whiten!r}")
        prefix = f"{whiten}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        broken = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if broken:                            # (a whitener of NaN turns every image into NaN codes, unsaid)
            raise ValueError(f"saved whitening tensor {broken[0]!r} holds non-finite values")
        whitener = WHITENERS[whiten].from_state_dict(state) if whiten != "none" else None
        return cls(meta["normalize"], _checked_stats(meta["normalize"], meta.get("stats")), whitener)

    def __call__(self, x: Tensor) -> Tensor:
        """New images (N, C, H, W), prepared like the raw samples were -> (N, C, H, W) float32."""
        x = x.float()
        if self.normalize == "patch":
            x = torch.from_numpy(normalize(x.numpy(), "patch", self.stats)[0])
        if self.whitener is not None:
            x = self.whitener.transform(x)
        if self.normalize == "ufldl":
            x = torch.from_numpy(normalize(x.numpy(), "ufldl", self.stats)[0])
        return x


STATISTIC = {"patch": "variance_floor", "ufldl": "clip"}    # data.normalize -> the set-wide statistic it saves


def _checked_stats(mode: Any, stats: Any) -> dict[str, Any] | None:
    """Saved normalisation statistics, refused by name unless finite and >= 0: JSON reads NaN and Infinity, and
    a clip of NaN made every code NaN, a variance floor of Infinity every code 0, of -1 the images unscaled, silently."""
    key = STATISTIC.get(mode)
    if key is None:                           # "none" (an unknown mode is named by normalize itself)
        return stats
    value = stats.get(key) if isinstance(stats, dict) else None
    if stats is None or value is None:
        raise ValueError(f"saved stats for normalize={mode!r} lack {key!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"saved stats.{key} must be a finite number >= 0, got {value!r}")
    return stats
