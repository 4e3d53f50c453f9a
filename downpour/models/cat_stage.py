"""One stage of the cat network (:mod:`~downpour.models.cat`): filter -> L2 pooling -> local contrast normalisation,
with the decoder of the stage's reconstruction cost and the pixels that cost reads (``model.recon``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from downpour.layers import L2Pool2d, LocalContrastNorm2d, LocallyConnected2d


def _full_coverage(n_in: int, k: int, stride: int) -> Tensor:
    """(n_in,) bool: input positions along one axis that every window which would cover them covers
    (none cut off by the border), and at least one does: a contiguous interior block (when no pixel has
    all of its windows, the pixels the most windows cover). With a stride
    that does not divide k the count of windows varies within it (2, 3, 3, 2, 3, 3, ... for k 8, stride
    3); a rule of "as many as any position" kept only the lattice at the maximum (196 of 1,024 pixels)."""
    n_out = (n_in - k) // stride + 1
    p = torch.arange(n_in)
    first = -((k - 1 - p) // stride)          # the first window i with i·stride + k > p (ceil), if windows ran on
    last = p // stride                        # the last window with i·stride <= p
    inside = (first >= 0) & (last <= n_out - 1) & (first <= last)
    if bool(inside.any()):
        return inside
    # too few windows for any pixel to have all of its (one window over most of the side, k >= 2·stride):
    # the pixels covered by the most windows
    count = (last.clamp(max=n_out - 1) - first.clamp(min=0) + 1).clamp(min=0)
    return count == count.max()


class CatStage(nn.Module):
    """filter -> L2 pool -> LCN, with a decoder for the stage's reconstruction cost."""

    def __init__(self, in_channels: int, in_size: tuple[int, int], maps: int, kernel: int, stride: int,
                 pool: int, pool_stride: int, lcn: int, tile: int, decoder: str, filter_norm: float = 0.0,
                 recon: str = "all"):
        super().__init__()
        norm = filter_norm * stride * math.sqrt(in_channels / maps) if filter_norm else None
        self.filter = LocallyConnected2d(in_channels, maps, in_size, kernel, stride, tile=tile or None, norm=norm)
        # Variance-preserving: unit-variance inputs give unit-variance codes, and the decoder, which
        # sums maps * (kernel / stride)^2 contributions into each pixel, unit-variance reconstructions.
        # (A Glorot bound on both made the first reconstruction ~1000x the data's energy; its huge first
        # gradients froze Adagrad's step sizes: cat-demo's stage-1 reconstruction after 600 steps was
        # 385 with it, 27 with this.)
        enc = math.sqrt(3.0 / (in_channels * kernel ** 2))
        dec = math.sqrt(3.0 / (maps * max(1.0, kernel / stride) ** 2))
        with torch.no_grad():
            self.filter.weight.uniform_(-enc, enc)
        self.decoder_weight = (nn.Parameter(torch.empty_like(self.filter.weight).uniform_(-dec, dec))
                               if decoder == "untied" else None)
        # (1, 1, H, W): 1 where every filter offset reaches, scaled so the weights sum to H·W; None = all pixels
        if recon == "interior":
            h, w = self.filter.in_size
            inside = _full_coverage(h, kernel, stride)[:, None] & _full_coverage(w, kernel, stride)[None, :]
            # the mask as a buffer (0/1: exact in any dtype, on the model's device), its scale divided out in the
            # model's dtype: a model cast to float64 weighs in float64 (a float32 weight carried 2e-8 of rounding)
            self.register_buffer("recon_mask", inside.float()[None, None], persistent=False)
        else:
            self.recon_mask = None
        ho, wo = self.filter.out_size
        if pool > min(ho, wo):
            raise ValueError(f"pool {pool} is larger than the filter output {ho}x{wo}; shrink kernels or pools")
        self.pool = L2Pool2d(pool, stride=pool_stride)
        self.out_shape = (maps, (ho - pool) // pool_stride + 1, (wo - pool) // pool_stride + 1)
        side = min(self.out_shape[1:])
        self.lcn = LocalContrastNorm2d(maps, kernel_size=min(lcn, side - 1 + side % 2))  # odd, within the map

    @property
    def recon_weight(self) -> Tensor | None:
        """(1, 1, H, W) weight of each pixel's reconstruction error (``model.recon``), None = every pixel alike."""
        if self.recon_mask is None:
            return None
        return self.recon_mask * (self.recon_mask.numel() / self.recon_mask.sum())   # (counts: exact in float32)

    def forward(self, x: Tensor, weight: Tensor | None = None,
                normalise: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
        """(B, C, H, W) -> codes (B, maps, Ho, Wo), pooled (B, maps, Hp, Wp), normalised output (same as pooled).
        ``weight``: the filter layer's ``effective_weight()``, when the caller computed it already. ``normalise``
        False: None for the normalised output, LCN not run (a caller that reads only codes or pooled: its output
        the same bit for bit, as LCN draws no random numbers)."""
        codes = self.filter(x, weight)
        pooled = self.pool(codes)
        return codes, pooled, self.lcn(pooled) if normalise else None

    @property
    def decoder_weights(self) -> tuple[Tensor, ...]:
        """The untied decoder's trainable tensors, as a weight penalty sees them (a partitioned stage's: its blocks',
        or its tiled banks', :class:`~downpour.parallel.partition.BlockDecoder`); () when tied."""
        dec = self.decoder_weight
        return () if dec is None else dec.weights if isinstance(dec, nn.Module) else (dec,)

    def decode(self, codes: Tensor, weight: Tensor | None = None) -> Tensor:
        """codes -> reconstruction: the untied decoder, else the filters' transpose (``weight`` as for forward).
        A partitioned stage's untied decoder gives its blocks' weights (a BlockDecoder, called)."""
        dec = self.decoder_weight
        if dec is None:
            return self.filter.adjoint(codes, weight)
        return self.filter.adjoint(codes, dec() if isinstance(dec, nn.Module) else dec)
