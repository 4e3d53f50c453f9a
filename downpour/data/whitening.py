"""ZCA whitening, kept as an object so analysis can map learned filters back to pixel space.

ZCA decorrelates the pixels of a patch while staying as close as possible to the original image
(it is the symmetric whitening ``U diag(1/sqrt(λ + ε)) Uᵀ``), so whitened patches still look like
edge-enhanced images and filters learned on them can be drawn. ``ε = zca_eps · λ_max``: relative to
the largest eigenvalue so the same setting works whatever the data's scale; it keeps the
near-zero-variance directions (pixel noise) from being blown up.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from downpour.errors import DataError

# Above this many inputs the D x D matrix and its eigendecomposition stop being cheap
# (4096 -> a 64 MiB matrix, seconds to decompose); bigger inputs should be patches, not whole images.
MAX_DIM = 4096


class ZCAWhitener:
    """Fitted ZCA transform for inputs of shape ``input_shape`` (C, H, W), flattened to D = C·H·W.

    Fitted state (trailing underscore): ``mean_`` (D,), ``matrix_`` (D, D) whitening, ``inverse_``
    (D, D) colouring, ``eigenvalues_`` (D,) descending, ``eps_`` the absolute regulariser.
    """

    # each saved tensor's meaning (preprocess.safetensors' metadata), D = C*H*W, a sample flattened row-major
    LAYOUTS = {"mean": "(D,) the training samples' mean", "matrix": "(D, D) whitening: (x - mean) @ matrix",
               "inverse": "(D, D) colouring, whitened @ inverse + mean", "eigenvalues": "(D,) covariance's, descending",
               "eps": "[zca_eps (relative), the absolute regulariser added to every eigenvalue]",
               "input_shape": "(C, H, W) of the samples"}

    def __init__(self, eps: float = 0.01) -> None:
        self.eps = eps

    def fit(self, x: Tensor) -> "ZCAWhitener":
        """Fit on x (N, C, H, W). The covariance is computed in float64 for a stable decomposition."""
        if not self.eps > 0:
            raise ValueError(f"zca_eps must be > 0 (it is relative to the largest eigenvalue), got {self.eps}")
        n, d = x.shape[0], x[0].numel()
        if d > MAX_DIM:
            raise DataError(f"ZCA on {tuple(x.shape[1:])} inputs needs a {d}x{d} matrix (limit {MAX_DIM}); "
                            "use smaller patches, grey images or whiten = \"none\"")
        if n < 2:
            raise DataError(f"ZCA needs at least 2 samples, got {n}")
        self.input_shape = tuple(x.shape[1:])
        flat = x.reshape(n, d).double()
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / n
        eigenvalues, vectors = torch.linalg.eigh(cov)                   # ascending
        eigenvalues, vectors = eigenvalues.flip(0).clamp_min(0), vectors.flip(1)
        eps = self.eps * float(eigenvalues[0]) if eigenvalues[0] > 0 else self.eps
        scale = (eigenvalues + eps).sqrt()
        self.mean_ = mean.float()
        self.matrix_ = ((vectors / scale) @ vectors.T).float()          # U diag(1/√(λ+ε)) Uᵀ
        self.inverse_ = ((vectors * scale) @ vectors.T).float()         # U diag(√(λ+ε)) Uᵀ
        self.eigenvalues_ = eigenvalues.float()
        self.eps_ = eps
        return self

    def transform(self, x: Tensor) -> Tensor:
        """(N, C, H, W) in data space -> (N, C, H, W) whitened."""
        return ((x.reshape(len(x), -1) - self.mean_) @ self.matrix_).reshape(x.shape)

    def inverse(self, x: Tensor) -> Tensor:
        """(N, C, H, W) whitened -> data space (images, reconstructions, decoder bases)."""
        return (x.reshape(len(x), -1) @ self.inverse_ + self.mean_).reshape(x.shape)

    def pixel_filters(self, w: Tensor) -> Tensor:
        """Encoder filters on whitened inputs (F, C, H, W) -> the same filters on raw pixels.

        A unit computes ``w · transform(x) = (matrix_ w) · (x - mean_)`` because ZCA's matrix is
        symmetric, so ``matrix_ w`` is what the unit looks for in the image (UFLDL draws ``W · ZCAWhite``).
        Decoder bases and reconstructions live in data space through :meth:`inverse` instead.
        """
        return (w.reshape(len(w), -1) @ self.matrix_).reshape(w.shape)

    def summary(self) -> dict[str, Any]:
        """JSON-able description for ``Dataset.info``."""
        ev = self.eigenvalues_
        return {"method": "zca", "dim": int(ev.numel()), "eps_relative": self.eps, "eps": self.eps_,
                "eigenvalue_max": float(ev[0]), "eigenvalue_min": float(ev[-1]),
                "components_above_eps": int((ev > self.eps_).sum())}

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors to save with safetensors (and restore with :meth:`from_state_dict`)."""
        return {"mean": self.mean_, "matrix": self.matrix_, "inverse": self.inverse_,
                "eigenvalues": self.eigenvalues_, "eps": torch.tensor([self.eps, self.eps_], dtype=torch.float64),
                "input_shape": torch.tensor(self.input_shape, dtype=torch.int64)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> "ZCAWhitener":
        missing = {"mean", "matrix", "inverse", "eigenvalues", "eps", "input_shape"} - set(state)
        if missing:
            raise KeyError(f"ZCA state lacks {sorted(missing)}")
        self = cls(float(state["eps"][0]))
        self.eps_ = float(state["eps"][1])
        self.mean_, self.matrix_, self.inverse_ = state["mean"], state["matrix"], state["inverse"]
        self.eigenvalues_ = state["eigenvalues"]
        self.input_shape = tuple(int(v) for v in state["input_shape"])
        return self
