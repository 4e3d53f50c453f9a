"""The variance gate's test: which output tiles have a receptive field of variance >= threshold.

Every field's variance comes from box sums over [x, x²] (x centred on its per-image mean, so
E[x²] - E[x]² keeps its digits in float32), separable: sums of k rows, then of k columns. The test
has to cost a few percent of a dense layer or the gate loses on a busy image, and the obvious ways
do not: a depthwise convolution of ones ran at 3.5 ms per pass over 2x512x512 on one core (k - 1
shifted adds: 0.7 ms), avg_pool2d 37 ms. So the sums double windows (1 -> 2 -> 4 -> 8 rows: three
adds for k = 8 instead of seven), and the test allocates little: on our VM a first touch of fresh
memory runs at ~1 GB/s, which made allocations, not adds, much of its cost.

(Tried and dropped: deciding most tiles from a sample of their fields and a variance bound on
their input windows; the strided sums cost as much per value as the full test's contiguous ones.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def box_sum(t: Tensor, dim: int, k: int, s: int = 1) -> Tensor:
    """Sums of k consecutive entries along ``dim``, starting every ``s``.

    Stride 1: windows of 1, 2, 4, ... entries by doubling, the ones in k's binary expansion added
    up (log2 k + popcount(k) adds). Larger strides: k - 1 shifted adds on the strided starts."""
    n = (t.shape[dim] - k) // s + 1
    if s > 1:
        span = (n - 1) * s + 1
        out = t.narrow(dim, 0, span).unfold(dim, 1, s).squeeze(-1).clone()
        for d in range(1, k):
            out += t.narrow(dim, d, span).unfold(dim, 1, s).squeeze(-1)
        return out
    out, offset, width, sums = None, 0, 1, t      # sums[i] = t[i] + ... + t[i + width - 1]
    while True:
        if k & width:                             # this power of two is in k: add its window at the offset
            part = sums.narrow(dim, offset, n)
            out = part.clone() if out is None else out.add_(part)
            offset += width
        if 2 * width > k:
            return out
        m = sums.shape[dim] - width
        sums = sums.narrow(dim, 0, m) + sums.narrow(dim, width, m)
        width *= 2


def moments(x: Tensor) -> Tensor:
    """[x, x²] of x centred on its per-image mean: (B, C, H, W) -> (B, 2C, H, W), one allocation."""
    x = x.detach()
    c = x.shape[1]
    both = x.new_empty(x.shape[0], 2 * c, *x.shape[2:])
    torch.sub(x, x.mean(dim=(2, 3), keepdim=True), out=both[:, :c])
    torch.mul(both[:, :c], both[:, :c], out=both[:, c:])
    return both


def box_variance(both: Tensor, k: int, s: int) -> Tensor:
    """Variance of every k x k window (starting every s) of ``moments``' output, averaged over
    channels: (B, 2C, H, W) -> (B, Ho, Wo)."""
    c = both.shape[1] // 2
    box = box_sum(box_sum(both, 2, k, s), 3, k, s).mul_(1.0 / (k * k))         # (B, 2C, Ho, Wo) means
    var = box[:, c:].sub_(box[:, :c].square_())                                 # (B, C, Ho, Wo)
    return (var[:, 0] if c == 1 else var.mean(1)).clamp_min_(0)


def open_tiles(x: Tensor, k: int, s: int, threshold: float, geom: tuple[int, int, int, int, int, int]) -> Tensor:
    """(B, nbh, nbw) bool: tiles with a field of variance >= threshold. ``geom``: (Ho, Wo, bh, bw, nbh, nbw)."""
    ho, wo, bh, bw, nbh, nbw = geom
    busy = box_variance(moments(x), k, s) >= threshold                         # (B, Ho, Wo)
    busy = F.pad(busy, (0, nbw * bw - wo, 0, nbh * bh - ho))                   # positions past the edge: not busy
    rows = busy.view(-1, nbh * bh, nbw, bw).any(3)                             # contiguous runs first: 2x faster
    return rows.view(-1, nbh, bh, nbw).any(2)
