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

What is kept of that idea is the cheap half, which pays on a busy image: a tile is open as soon as
one of its fields is, so the field at each tile's origin is tested first (``origin_open``: sums of
k rows per tile row, then of k columns, ~3 passes over the input instead of ~20). Where every tile
is proven open the full test is skipped (on a 512x512 busy image 0.3 ms instead of ~4 ms, against a
~30 ms convolution); where a few are not, only their windows go through the full test; otherwise
the full test runs as before. The proof asks for a margin over the rounding of both computations,
so it never opens a tile the full test would close: the mask is the same either way. It can only
prove tiles open, so the gate runs it only after a batch with few closed tiles (``proof_pays``): on
text or a page it left half the tiles undecided and cost ~0.3 ms on top of the full test.
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
            if out is None:                       # a view of our own temporary needs no copy; of t, it does
                out = part if sums is not t else part.clone()
            else:
                out.add_(part)
            offset += width
        if 2 * width > k:
            return out
        m = sums.shape[dim] - width
        sums = sums.narrow(dim, 0, m) + sums.narrow(dim, width, m)
        width *= 2


def local_variance(x: Tensor, kernel_size: int, stride: int = 1) -> Tensor:
    """Spatial variance of every k x k receptive field, averaged over channels: (B, C, H, W) -> (B, Ho, Wo).

    Per channel, so a flat patch of colour counts as flat. The box filter is separable: sums of k
    rows, then of k columns, over [x, x²] (CPU ``avg_pool2d`` and depthwise convolutions are several
    times slower); x is centred on its per-image mean first so E[x²] - E[x]² keeps its digits in float32.
    """
    return box_variance(moments(x), kernel_size, stride)


def moments(x: Tensor) -> Tensor:
    """[x, x²] of x centred on its per-image mean: (B, C, H, W) -> (B, 2C, H, W), one allocation."""
    x = x.detach()
    c = x.shape[1]
    both = x.new_empty(x.shape[0], 2 * c, *x.shape[2:])
    torch.sub(x, x.mean(dim=(2, 3), keepdim=True), out=both[:, :c])
    torch.mul(both[:, :c], both[:, :c], out=both[:, c:])
    return both


def box_variance(both: Tensor, k: int, s: int, clamp: bool = True) -> Tensor:
    """Variance of every k x k window (starting every s) of ``moments``' output, averaged over
    channels: (B, 2C, H, W) -> (B, Ho, Wo). ``clamp=False`` leaves rounding's small negatives
    (a test against a threshold > 0 gives the same answer either way)."""
    c = both.shape[1] // 2
    box = box_sum(box_sum(both, 2, k, s), 3, k, s).mul_(1.0 / (k * k))         # (B, 2C, Ho, Wo) means
    var = box[:, c:].sub_(box[:, :c].square_())                                 # (B, C, Ho, Wo)
    var = var[:, 0] if c == 1 else var.mean(1)
    return var.clamp_min_(0) if clamp else var


def open_tiles(x: Tensor, k: int, s: int, threshold: float, geom: tuple[int, int, int, int, int, int],
               prove: bool = True) -> Tensor:
    """(B, nbh, nbw) bool: tiles with a field of variance >= threshold. ``geom``: (Ho, Wo, bh, bw, nbh, nbw).

    With ``prove``, the tiles whose origin field is open are proven first (cheap); the rest go through
    the full test, on their windows only when they are few (at most 1/8 of the input's values).
    Without it (a caller whose last batch had many closed tiles: ``proof_pays``), the full test runs
    at once. The mask is the same either way."""
    ho, wo, bh, bw, nbh, nbw = geom
    x = precise_enough(x.detach(), threshold)
    if not prove or k > 2 * s * min(bh, bw):   # origin fields overlap a lot (block=1): the proof costs more than the test
        return _full_test(x, k, s, threshold, geom)
    proven = origin_open(x, k, s, threshold, geom)                             # (B, nbh, nbw)
    undecided = (~proven).nonzero()                                            # (n, 3): (sample, ti, tj)
    n = undecided.shape[0]
    if n == 0:
        return proven
    if not _few(x, k, s, geom, n):
        return _full_test(x, k, s, threshold, geom)
    tb, ti, tj = undecided.unbind(1)
    proven[tb, ti, tj] = _window_test(x, k, s, threshold, geom, tb, ti, tj)
    return proven


def precise_enough(x: Tensor, threshold: float) -> Tensor:
    """``x``, or ``x`` in float64 where its float rounding could move a field's variance across the threshold.

    Centring on the image's mean keeps E[x²] - E[x]²'s digits only where the image stays near that mean:
    a region far from it (raw 0-255 pixels, half an image at 255) has a mean square of up to (max - min)²,
    and float32's error, a few eps of that (~8e-3 at 0-255), closed textured fields of variance 1e-3.
    Promoted when 16 eps (max - min)² > threshold: never for images in [0, 1] or standardised ones
    against the usual thresholds, so their test costs what it did (one min/max pass more)."""
    if threshold <= 0 or x.dtype == torch.float64 or x.numel() == 0:
        return x
    lo, hi = torch.aminmax(x)
    spread = float(hi - lo)
    return x.double() if 16 * torch.finfo(x.dtype).eps * spread * spread > threshold else x


def _few(x: Tensor, k: int, s: int, geom: tuple[int, int, int, int, int, int], n: int) -> bool:
    """Whether n tiles' windows hold at most 1/8 of the input's values (then testing them alone pays)."""
    bh, bw = geom[2:4]
    return 8 * n * ((bh - 1) * s + k) * ((bw - 1) * s + k) <= x.shape[0] * x.shape[2] * x.shape[3]


def proof_pays(x: Tensor, k: int, s: int, geom: tuple[int, int, int, int, int, int], closed: int) -> bool:
    """Whether the origin proof would have spared the full test on a batch with ``closed`` closed
    tiles: only when they are few (the proof only ever opens tiles). On text or a page (30% closed)
    it decides half the tiles and costs ~0.3 ms for nothing; on a busy image it saves ~1.5 ms."""
    return _few(x, k, s, geom, closed)


def _full_test(x: Tensor, k: int, s: int, threshold: float, geom: tuple[int, int, int, int, int, int]) -> Tensor:
    """Every field tested: (B, C, H, W) -> (B, nbh, nbw) bool."""
    ho, wo, bh, bw, nbh, nbw = geom
    busy = ~(box_variance(moments(x), k, s, clamp=threshold <= 0) < threshold)  # (B, Ho, Wo); NaN: busy
    busy = F.pad(busy, (0, nbw * bw - wo, 0, nbh * bh - ho))                   # positions past the edge: not busy
    rows = busy.view(-1, nbh * bh, nbw, bw).any(3)                             # contiguous runs first: 2x faster
    return rows.view(-1, nbh, bh, nbw).any(2)


def _window_test(x: Tensor, k: int, s: int, threshold: float, geom: tuple[int, int, int, int, int, int],
                 tb: Tensor, ti: Tensor, tj: Tensor) -> Tensor:
    """The full test on the windows of tiles (tb, ti, tj) only: (n,) bool. Same values as ``_full_test``
    (the same centring, and box sums are sums of the same neighbours in the same order)."""
    ho, wo, bh, bw, nbh, nbw = geom
    b, c, h, w = x.shape
    big_h, big_w = (bh - 1) * s + k, (bw - 1) * s + k
    # Input rows / columns of each window, clamped at the edge instead of padding the image (a copy of
    # it): only fields of positions past the edge read the clamped ones, and those are masked below.
    r = (ti[:, None] * (bh * s) + torch.arange(big_h, device=x.device)).clamp_(max=h - 1)     # (n, big_h)
    q = (tj[:, None] * (bw * s) + torch.arange(big_w, device=x.device)).clamp_(max=w - 1)     # (n, big_w)
    windows = x[tb[:, None, None], :, r[:, :, None], q[:, None, :]].permute(0, 3, 1, 2)     # (n, C, big_h, big_w)
    n = windows.shape[0]
    both = windows.new_empty(n, 2 * c, big_h, big_w)
    torch.sub(windows, x.mean(dim=(2, 3), keepdim=True)[tb], out=both[:, :c])  # centred on the whole image's mean
    torch.mul(both[:, :c], both[:, :c], out=both[:, c:])
    busy = ~(box_variance(both, k, s) < threshold)                             # (n, bh, bw); NaN: busy
    rows = torch.arange(bh, device=x.device) < (ho - ti * bh)[:, None]         # positions past the edge: not busy
    cols = torch.arange(bw, device=x.device) < (wo - tj * bw)[:, None]
    return (busy & rows[:, :, None] & cols[:, None, :]).flatten(1).any(1)


def origin_open(x: Tensor, k: int, s: int, threshold: float, geom: tuple[int, int, int, int, int, int]) -> Tensor:
    """(B, nbh, nbw) bool: tiles whose first field (at the tile's origin) is proven to have variance >=
    threshold. A tile proven open is open; one not proven may still be.

    Sums of k rows per tile row (contiguous), then of k columns per tile, over x and x² uncentred;
    the proof asks var - margin >= threshold, the margin bounding the float error of this estimate and
    of the full test's (each < ~100 eps of the field's mean square, centred or not)."""
    ho, wo, bh, bw, nbh, nbw = geom
    b, c, h, w = x.shape
    sb, sc, sh, sw = x.stride()
    rows = x.as_strided((b, c, nbh, k, w), (sb, sc, s * bh * sh, sh, sw))        # the k input rows of each tile row
    sums = x.new_empty(2, b, c, nbh, w)
    torch.sum(rows, 3, out=sums[0])
    torch.sum(rows.square(), 3, out=sums[1])
    st = sums.stride()
    box = sums.as_strided((2, b, c, nbh, nbw, k), (*st[:4], s * bw * st[4], st[4])).sum(-1).mul_(1.0 / (k * k))
    m1, m2 = box[0], box[1]                                                     # (B, C, nbh, nbw) E[x], E[x²]
    var = (m2 - m1 * m1).mean(1)
    mu = x.mean(dim=(2, 3))[:, :, None, None]                                   # E[(x - mu)²] <= 2 E[x²] + 2 mu²
    margin = (200 * torch.finfo(x.dtype).eps) * (3 * m2 + 2 * mu * mu).mean(1)
    return (var - margin) >= threshold
