"""A replica's locally connected stages split into K partitions of output positions.

The paper's partitioning (Le et al. 2012, Dean et al. 2012): a stage's output grid is cut into K
spatial blocks (:mod:`downpour.parallel.blocks`); partition p owns the untied filters of block p of
every stage, receives only its block's input window (the block plus the receptive-field halo) and
sends back only its block's outputs. The tied decoder (RICA's WᵀWx) is the adjoint: partition p
maps its codes block back onto its input window, and the windows' overlaps (the halos) are summed.
Forward, backward and a training step are the same maths as the unpartitioned layer, reordered:
``tests/test_parallel.py`` checks them equal to 1e-10 in float64 for K = 1, 2, 4, 9.

The parameters are registered partition-major (``model.partitions[p].weights[stage]``), so the flat
parameter vector the server shards (:class:`~downpour.train.flat.ParamLayout`) holds each
partition's filters as one contiguous range: shards aligned to those ranges
(:func:`partition_bounds`) serve one partition each, and a partition fetches from and pushes to
only its own shards.

L2 pooling and LCN have no weights and cost ~1% of a cat stage's FLOPs (``downpour models
--footprint cat-demo``); the replica runs them on the stitched maps, so they need no halo exchange.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.layers import LocallyConnected2d
from downpour.layers.locally_connected import normalised
from downpour.layers._lc_kernels import new_banks, untied_adjoint, untied_apply
from downpour.models.base import FeatureModel
from downpour.parallel.blocks import Block, split_blocks


class Partition(nn.Module):
    """Partition p's parameters: the filters of its block, one tensor per stage, (h_p, w_p, M, C, k, k)."""

    def __init__(self, weights: list[Tensor]):
        super().__init__()
        self.weights = nn.ParameterList(weights)


class PartitionedFilter(nn.Module):
    """An untied :class:`LocallyConnected2d` computed block by block: the same interface
    (``forward(x, weight)``, ``adjoint(y, weight)``, ``effective_weight()``), where a weight is the
    tuple of the K block weights. It owns no parameters: ``blocks_weight`` are the partitions'."""

    def __init__(self, layer: LocallyConnected2d, blocks: list[Block], weights: list[nn.Parameter]):
        super().__init__()
        self.in_channels, self.maps, self.kernel_size, self.stride = layer.in_channels, layer.maps, layer.kernel_size, layer.stride
        self.in_size, self.out_size, self.norm, self.chunk_bytes = layer.in_size, layer.out_size, layer.norm, layer.chunk_bytes
        self.blocks = blocks
        self.blocks_weight = weights    # a plain list: the parameters belong to the model's partitions

    @property
    def weights(self) -> tuple[Tensor, ...]:
        """The trainable tensors a weight penalty sees (an untied layer's: ``(weight,)``)."""
        return tuple(self.blocks_weight)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.maps}, in_size={self.in_size}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, partitions={len(self.blocks)}, norm={self.norm}")

    def effective_weight(self) -> tuple[Tensor, ...]:
        return tuple(normalised(w, self.norm) for w in self.blocks_weight)   # per filter: block by block alike

    def forward(self, x: Tensor, weight: tuple[Tensor, ...] | None = None) -> Tensor:
        """(B, C, H, W) -> (B, M, Ho, Wo): each block from its input window, stitched."""
        ws = self.effective_weight() if weight is None else weight
        outs = [untied_apply(x[:, :, b.in_rows, b.in_cols], w, self.stride, self.chunk_bytes)
                for b, w in zip(self.blocks, ws)]
        return stitch(outs, self.blocks, dims=(2, 3))

    def adjoint(self, y: Tensor, weight: tuple[Tensor, ...] | None = None) -> Tensor:
        """(B, M, Ho, Wo) -> (B, C, H, W): each block's codes onto its window; overlaps summed."""
        ws = self.effective_weight() if weight is None else weight
        return sum_windows([untied_adjoint(y[:, :, b.rows, b.cols], wb, self.stride, b.in_size, self.chunk_bytes)
                            for b, wb in zip(self.blocks, ws)], self.blocks, self.in_size)

    def full_weight(self) -> Tensor:
        """The (Ho, Wo, M, C, k, k) filters of the unpartitioned layer (as stored, before the norm)."""
        return stitch([w.detach() for w in self.blocks_weight], self.blocks, dims=(0, 1))

    def filters(self) -> Tensor:
        """(Ho*Wo*M, C, k, k) as used (at ``norm``), for pictures; detached."""
        full = stitch([w.detach() for w in self.effective_weight()], self.blocks, dims=(0, 1))
        return full.reshape(-1, self.in_channels, self.kernel_size, self.kernel_size)


def sum_windows(parts: list[Tensor], blocks: list[Block], in_size: tuple[int, int]) -> Tensor:
    """Each block's (B, C, h, w) input-window tensor placed in the (B, C, H, W) input; overlaps summed."""
    h, w = in_size
    out = None
    for b, part in zip(blocks, parts):
        part = F.pad(part, (b.in_cols.start, w - b.in_cols.stop, b.in_rows.start, h - b.in_rows.stop))
        out = part if out is None else out + part
    return out


def stitch(parts: list[Tensor], blocks: list[Block], dims: tuple[int, int]) -> Tensor:
    """Blocks (row-major, as :func:`split_blocks` makes them) back into one tensor along ``dims``."""
    rows: dict[int, list[Tensor]] = {}
    for b, t in zip(blocks, parts):
        rows.setdefault(b.rows.start, []).append(t)
    return torch.cat([torch.cat(row, dim=dims[1]) for _, row in sorted(rows.items())], dim=dims[0])


def cut_refusal(model: str, *, cat: bool, untied: bool = True, top: bool = False, tied_decoder: bool = True) -> str:
    """Why a replica of ``model`` cannot be split into partitions, naming the key, or "" when it can. One predicate
    for the runner (:func:`partition_model`, on the built model) and ``downpour plan`` (on the config,
    plan/network.py), so a plan lays out only what the runner accepts (a grid too small to cut is
    :func:`~downpour.parallel.blocks.grid_shape`'s, shared alike)."""
    if not cat:
        return f"model parallelism splits the locally connected stages of the cat network; {model} has none"
    if not untied:
        return ("model parallelism needs untied filters (model.tile = 0): tiled or convolutional filters are "
                "shared across positions, so no block of positions owns them")
    if top:
        return ("model parallelism splits the locally connected stages; the recurrent top stage (model.top) is "
                "not split: set model.top = 'none'")
    if not tied_decoder:
        return "model parallelism needs the tied decoder (model.decoder = 'tied'): an untied decoder is not split"
    return ""


def _check(model: FeatureModel, k: int) -> list[nn.Module]:
    stages = list(getattr(model, "stages", ()))
    filters = [getattr(s, "filter", None) for s in stages]
    cat = bool(stages) and all(isinstance(f, LocallyConnected2d) for f in filters)
    refused = cut_refusal(type(model).__name__, cat=cat, untied=cat and all(f.untied for f in filters),
                          top=getattr(model, "top", None) is not None,
                          tied_decoder=all(getattr(s, "decoder_weight", None) is None for s in stages))
    if refused:
        raise ValueError(f"cluster.partitions = {k}: {refused}")
    return stages


def partition_model(model: FeatureModel, k: int) -> FeatureModel:
    """Split ``model``'s stages into ``k`` partitions, in place (returns it). Outputs, gradients and
    steps are unchanged; the parameters become ``model.partitions[p].weights[stage]``."""
    stages = _check(model, k)
    per_stage = [split_blocks(s.filter.out_size, s.filter.kernel_size, s.filter.stride, k) for s in stages]
    parts: list[list[nn.Parameter]] = [[] for _ in range(k)]
    for stage, blocks in zip(stages, per_stage):
        w = stage.filter.weight
        for p, b in enumerate(blocks):
            block = new_banks(*b.out_size, stage.filter.maps, stage.filter.in_channels, stage.filter.kernel_size,
                              like=w)
            with torch.no_grad():
                block.copy_(w[b.rows, b.cols])
            parts[p].append(nn.Parameter(block, requires_grad=w.requires_grad))
    model.partitions = nn.ModuleList(Partition(ws) for ws in parts)
    for i, (stage, blocks) in enumerate(zip(stages, per_stage)):
        stage.filter = PartitionedFilter(stage.filter, blocks, [model.partitions[p].weights[i] for p in range(k)])
    return model


def merge_model(model: FeatureModel) -> FeatureModel:
    """A copy of a partitioned ``model`` as the plain model (one untied layer per stage): what is
    saved and analysed. An unpartitioned model is returned as is."""
    if not hasattr(model, "partitions"):
        return model
    merged = copy.deepcopy(model)
    for stage in merged.stages:
        part: PartitionedFilter = stage.filter
        like = part.blocks_weight[0]
        with torch.random.fork_rng(devices=[]):    # its initial weights are overwritten: draw nothing from the run's RNG
            layer = LocallyConnected2d(part.in_channels, part.maps, part.in_size, part.kernel_size, part.stride,
                                       norm=part.norm).to(device=like.device, dtype=like.dtype)
        with torch.no_grad():
            layer.weight.copy_(part.full_weight())
        layer.weight.requires_grad_(part.blocks_weight[0].requires_grad)
        stage.filter = layer
    del merged.partitions
    return merged


def partition_ranges(model: FeatureModel) -> list[tuple[int, int]]:
    """[start, stop) of each partition's parameters in the flat vector (``ParamLayout`` order), for a
    model whose only trainable parameters are its partitions' (checked)."""
    ranges, n = [], 0
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if any(not name.startswith("partitions.") for name in trainable):
        raise ValueError(f"model parallelism: trainable parameters outside the partitions: "
                         f"{[n for n in trainable if not n.startswith('partitions.')]}")
    for part in model.partitions:
        size = sum(p.numel() for p in part.parameters() if p.requires_grad)
        ranges.append((n, n + size))
        n += size
    return ranges


def partition_bounds(ranges: list[tuple[int, int]], shards: int) -> list[tuple[int, int]]:
    """Shard bounds aligned to partitions: ``shards`` (>= K) split so that no shard holds two
    partitions' parameters; partition p gets ``shards // K`` shards, the first ``shards % K`` one more."""
    k = len(ranges)
    if shards < k:
        raise ValueError(f"cluster.shards = {shards} is fewer than cluster.partitions = {k}: each partition "
                         "needs a shard of its own")
    bounds = []
    for p, (a, b) in enumerate(ranges):
        n = shards // k + (1 if p < shards % k else 0)
        if n > b - a:
            raise ValueError(f"partition {p} has {b - a} trainable parameters, fewer than its {n} shards")
        edges = [a + round(i * (b - a) / n) for i in range(n + 1)]
        bounds.extend(zip(edges[:-1], edges[1:]))
    return bounds
