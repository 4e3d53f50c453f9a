"""What one call of the variance gate did: positions skipped, arithmetic done and saved, the path it took."""
from __future__ import annotations

from dataclasses import dataclass

from downpour.layers._gate_bands import RowPlan, RowStats

__all__ = ["GateStats", "gate_stats", "ungated_stats"]


@dataclass
class GateStats:
    """What the last gated forward did. FLOPs count a multiply-add as 2."""

    positions: int        # B * Ho * Wo
    open: int             # output positions inside open tiles (every position when the path is 'ungated')
    computed: int         # positions the filter ran at (open ones, plus padding where a tile overhangs the edge)
    flops: int            # filter arithmetic done: the GEMMs / convolutions, plus bias adds
    flops_ungated: int    # the same layer's arithmetic at every position
    gate_flops: int       # the variance test: centring, x², the separable box filter, per channel
    path: str = "gated"   # what ran: 'gated' (open tiles only), 'bands' (the rows of tiles with an open one),
                          # 'dense' (the layer everywhere), closed tiles zeroed in all three; or 'ungated'
                          # (mode 'auto' only: the plain layer, no tile closed, the full test skipped)
    break_even: float | None = None   # modes 'auto'/'exact': the flat fraction above which the gated path beats the dense one
    band_fraction: float | None = None   # output rows in bands: the rows the band path computes (whichever ran)
    estimated_open: float | None = None  # path 'ungated': the open fraction the test found (this call's, or the
                                         # last tested call's in a streak of untested ones)

    @property
    def skipped_fraction(self) -> float:
        return 1.0 - self.open / max(1, self.positions)

    @property
    def flops_ratio(self) -> float:
        """(gated + gate test) / ungated: below 1 means the gate saves arithmetic."""
        return (self.flops + self.gate_flops) / max(1, self.flops_ungated)


def _per_position(m: int, c: int, k: int, bias: bool) -> int:
    return 2 * m * c * k * k + (m if bias else 0)


def gate_stats(shape: tuple[int, int, int, int], layer: tuple[int, int, bool], geom: tuple[int, int, int, int],
               tiles_shape: tuple[int, int], stats: RowStats, path: str, break_even: float | None,
               plan: RowPlan) -> GateStats:
    """The stats of a call that ran the full test. ``shape``: the input's (B, C, H, W); ``layer``:
    (maps M, kernel k, has a bias); ``geom``: (Ho, Wo, bh, bw); ``tiles_shape``: (nbh, nbw)."""
    b, c, h, w = shape
    m, k, bias = layer
    ho, wo, bh, bw = geom
    counts, last_col = stats.counts, stats.last_col
    n_tiles = sum(counts)
    if path == "gated":
        computed = n_tiles * bh * bw
    elif path == "bands":
        computed = b * sum((o1 - o0) * (c1 - c0) for o0, o1, c0, c1 in plan.bands)
    else:
        computed = b * ho * wo
    per_pos = _per_position(m, c, k, bias)
    box = 2 * k * 2 * c * (ho * w + ho * wo)                      # x and x², a (k, 1) then a (1, k) pass
    # open positions: bh*bw per open tile, less the overhang of the last row and column of tiles
    cut_h, cut_w = tiles_shape[0] * bh - ho, tiles_shape[1] * bw - wo
    n_open = (bh * bw * n_tiles - cut_h * bw * counts[-1] - cut_w * bh * sum(last_col)
              + cut_h * cut_w * last_col[-1])
    estimated = None
    if path == "ungated":                                     # the plain layer: nothing skipped, whatever the test found
        n_open, estimated = b * ho * wo, n_open / max(1, b * ho * wo)
    return GateStats(positions=b * ho * wo, open=n_open, computed=computed,
                     flops=computed * per_pos, flops_ungated=b * ho * wo * per_pos,
                     gate_flops=b * (3 * c * h * w + box + 3 * c * ho * wo), path=path, break_even=break_even,
                     band_fraction=plan.band_fraction, estimated_open=estimated)


def ungated_stats(shape: tuple[int, int, int, int], layer: tuple[int, int, bool], geom: tuple[int, int, int, int],
                  estimated_open: float | None) -> GateStats:
    """The stats of an untested call of mode 'auto' (the plain layer; ``estimated_open``: what the
    last test found)."""
    b, c = shape[:2]
    m, k, bias = layer
    ho, wo = geom[:2]
    flops = b * ho * wo * _per_position(m, c, k, bias)
    return GateStats(positions=b * ho * wo, open=b * ho * wo, computed=b * ho * wo, flops=flops,
                     flops_ungated=flops, gate_flops=0, path="ungated", estimated_open=estimated_open)
