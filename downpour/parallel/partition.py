"""A replica's locally connected stages split into K partitions of output positions.

The paper's partitioning (Le et al. 2012, Dean et al. 2012): a stage's output grid is cut into K
spatial blocks (:mod:`downpour.parallel.blocks`); partition p owns the untied filters of block p of
every stage, receives only its block's input window (the block plus the receptive-field halo) and
sends back only its block's outputs. A tiled stage's filter banks (``model.tile`` > 0: position (i, j)
uses bank (i mod tH, j mod tW)) belong to no one block: they are one shared parameter
(``model.shared_banks[stage]``), block p computes with the banks its positions use
(:func:`block_banks`), and autograd sums the blocks' partial gradients into the one copy, as
DistBelief sums the gradients of a weight shared across machines: the server applies its rule once,
to the sum. The tied decoder (RICA's WᵀWx) is the adjoint: partition p
maps its codes block back onto its input window, and the windows' overlaps (the halos) are summed; an
untied decoder (the paper's W₂, :class:`BlockDecoder`) alike, each block with its positions' decoder weights, which
its partition owns (a tiled stage's decoder banks shared, ``model.shared_decoders``).
Forward, backward and a training step are the same maths as the unpartitioned layer, reordered:
``tests/test_parallel.py`` checks them equal to 1e-10 in float64 for K = 1, 2, 4, 9.

The parameters are registered partition-major (``model.partitions[p].weights``, one tensor per untied
stage, ``.stages`` says which, then ``.decoders``), then the shared banks (then their decoders'), so
the flat parameter vector the server shards (:class:`~downpour.train.flat.ParamLayout`) holds each
partition's filters as one contiguous range and the shared banks as one more: shards aligned to those
ranges (:func:`partition_bounds`) serve one group each, and a partition fetches from and pushes to only
its own shards.

L2 pooling and LCN have no weights and cost ~1% of a cat stage's FLOPs (``downpour models
--footprint cat-demo``); the replica runs them on the stitched maps, so they need no halo exchange.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.layers import LocallyConnected2d
from downpour.layers.locally_connected import _expand_tiles, normalised
from downpour.layers._lc_kernels import new_banks, untied_adjoint, untied_apply
from downpour.models.base import FeatureModel
from downpour.parallel.blocks import Block, split_blocks


class Partition(nn.Module):
    """Partition p's parameters: the filters of its block of each untied stage (``stages``, 0-based), one
    tensor per stage, (h_p, w_p, M, C, k, k), then its block of their untied decoders (``decoders``, same
    shapes, those stages' that have one: ``decoder_stages``). A tiled stage's banks are shared:
    ``model.shared_banks`` (its untied decoder's banks ``model.shared_decoders``)."""

    def __init__(self, weights: list[Tensor], stages: list[int], decoders: list[Tensor] = (),
                 decoder_stages: list[int] = ()):
        super().__init__()
        self.weights = nn.ParameterList(weights)
        self.stages = list(stages)
        self.decoders = nn.ParameterList(decoders)
        self.decoder_stages = list(decoder_stages)


def block_banks(banks: Tensor, block: Block) -> Tensor:
    """The banks (tH, tW, M, C, k, k) that ``block``'s positions use, as the block's own tiling: its local
    position (i, j) is output position (r0 + i, c0 + j), which uses bank ((r0 + i) mod tH, (c0 + j) mod tW),
    entry (i mod tH', j mod tW') of the result, (tH', tW') = (min(tH, h), min(tW, w)). A block smaller than the
    tile period uses (and its gradient reaches) only some of the banks."""
    (th, tw), (h, w) = banks.shape[:2], block.out_size
    rows = (block.rows.start + torch.arange(min(th, h), device=banks.device)) % th
    cols = (block.cols.start + torch.arange(min(tw, w), device=banks.device)) % tw
    return banks.index_select(0, rows).index_select(1, cols)


class BlockWeights(nn.Module):
    """A partitioned stage's weights, block by block, owning no parameters: untied, ``blocks_weight`` are the
    partitions' (each block its positions'); tiled, ``banks`` is the model's shared copy, each block using the banks
    its positions use (:func:`block_banks`), so their gradients sum into it. What the encoder's
    :class:`PartitionedFilter` and the untied decoder's :class:`BlockDecoder` share."""

    def __init__(self, blocks: list[Block], weights: list[nn.Parameter], banks: nn.Parameter | None = None):
        super().__init__()
        self.blocks = blocks
        self.blocks_weight = weights    # plain lists: the parameters belong to the model's partitions
        self._banks = [] if banks is None else [banks]     # (and its shared banks)

    @property
    def banks(self) -> nn.Parameter | None:
        """A tiled stage's shared (tH, tW, M, C, k, k) banks; None when untied."""
        return self._banks[0] if self._banks else None

    @property
    def weights(self) -> tuple[Tensor, ...]:
        """The trainable tensors a weight penalty sees (a layer's: ``(weight,)``): the blocks', or the banks once."""
        return tuple(self._banks or self.blocks_weight)

    def per_block(self, banks: Tensor) -> tuple[Tensor, ...]:
        """Each block's (h_p, w_p, M, C, k, k) weights from the tiled ``banks`` (the shared ones, or normalised)."""
        return tuple(_expand_tiles(block_banks(banks, b), b.out_size) for b in self.blocks)

    def full_weight(self) -> Tensor:
        """The unpartitioned weights, (Ho, Wo, M, C, k, k) or tiled (tH, tW, M, C, k, k), as stored (before any
        norm); detached."""
        if self.banks is not None:
            return self.banks.detach()
        return stitch([w.detach() for w in self.blocks_weight], self.blocks, dims=(0, 1))


class PartitionedFilter(BlockWeights):
    """A :class:`LocallyConnected2d` computed block by block: the same interface (``forward(x, weight)``,
    ``adjoint(y, weight)``, ``effective_weight()``), where a weight is the tuple of the K block weights
    (untied, (h_p, w_p, M, C, k, k)). It owns no parameters: untied, ``blocks_weight`` are the partitions';
    tiled (``tile`` (tH, tW)), ``banks`` is the model's shared copy, and each block computes with the banks
    its positions use (:func:`block_banks`), so their gradients sum into it."""

    def __init__(self, layer: LocallyConnected2d, blocks: list[Block], weights: list[nn.Parameter],
                 banks: nn.Parameter | None = None):
        super().__init__(blocks, weights, banks)
        self.in_channels, self.maps, self.kernel_size, self.stride = layer.in_channels, layer.maps, layer.kernel_size, layer.stride
        self.in_size, self.out_size, self.norm, self.chunk_bytes = layer.in_size, layer.out_size, layer.norm, layer.chunk_bytes
        self.tile = layer.tile

    @property
    def trainable(self) -> bool:
        return self.weights[0].requires_grad

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.maps}, in_size={self.in_size}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, tile={self.tile}, partitions={len(self.blocks)}, norm={self.norm}")

    def effective_weight(self) -> tuple[Tensor, ...]:
        if self.banks is None:
            return tuple(normalised(w, self.norm) for w in self.blocks_weight)   # per filter: block by block alike
        return self.per_block(normalised(self.banks, self.norm))                 # once, then each block's share

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

    def filters(self) -> Tensor:
        """(n_distinct_filters, C, k, k) as used (at ``norm``), for pictures; detached."""
        full = (normalised(self.banks, self.norm) if self.banks is not None
                else stitch(list(self.effective_weight()), self.blocks, dims=(0, 1)))
        return full.detach().reshape(-1, self.in_channels, self.kernel_size, self.kernel_size)


class BlockDecoder(BlockWeights):
    """A partitioned stage's untied decoder (the paper's W₂, ``model.decoder = 'untied'``), block by block: what
    :meth:`PartitionedFilter.adjoint` takes as its ``weight``; tiled, its banks are ``model.shared_decoders``. Used
    as given (an untied decoder has no norm)."""

    def forward(self) -> tuple[Tensor, ...]:
        """Each block's decoder weights, (h_p, w_p, M, C, k, k)."""
        return tuple(self.blocks_weight) if self.banks is None else self.per_block(self.banks)


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


def cut_refusal(model: str, *, cat: bool, top: bool = False) -> str:
    """Why a replica of ``model`` cannot be split into partitions, naming the key, or "" when it can. One predicate
    for the runner (:func:`partition_model`, on the built model) and ``downpour plan`` (on the config,
    plan/network.py), so a plan lays out only what the runner accepts (a grid too small to cut is
    :func:`~downpour.parallel.blocks.grid_shape`'s, shared alike). Untied, tiled and convolutional filters
    are all split (a tiled stage's banks shared by the blocks), and so is the untied decoder (each block its
    positions' decoder weights, a tiled one's banks shared)."""
    if not cat:
        return f"model parallelism splits the locally connected stages of the cat network; {model} has none"
    if top:
        return ("model parallelism splits the locally connected stages; the recurrent top stage "
                "(model.top = 'gru') is not split: set model.top = 'none'")
    return ""


def _check(model: FeatureModel, k: int) -> list[nn.Module]:
    stages = list(getattr(model, "stages", ()))
    filters = [getattr(s, "filter", None) for s in stages]
    cat = bool(stages) and all(isinstance(f, LocallyConnected2d) for f in filters)
    refused = cut_refusal(type(model).__name__, cat=cat, top=getattr(model, "top", None) is not None)
    if refused:
        raise ValueError(f"cluster.partitions = {k}: {refused}")
    return stages


def _block_filters(w: Tensor, b: Block) -> nn.Parameter:
    """Block ``b``'s untied filters (or decoder weights), copied out of the layer's ``w`` (Ho, Wo, M, C, k, k),
    maps-innermost as the layer keeps them."""
    block = new_banks(*b.out_size, *w.shape[2:5], like=w)
    with torch.no_grad():
        block.copy_(w[b.rows, b.cols])
    return nn.Parameter(block, requires_grad=w.requires_grad)


def partition_model(model: FeatureModel, k: int) -> FeatureModel:
    """Split ``model``'s stages into ``k`` partitions, in place (returns it). Outputs, gradients and
    steps are unchanged; the parameters become ``model.partitions[p].weights`` (untied stages) and
    ``model.shared_banks[str(stage)]`` (tiled ones); an untied decoder's, ``model.partitions[p].decoders``
    (untied stages) and ``model.shared_decoders[str(stage)]`` (tiled ones), the stage's ``decoder_weight`` a
    :class:`BlockDecoder` of them."""
    stages = _check(model, k)
    per_stage = [split_blocks(s.filter.out_size, s.filter.kernel_size, s.filter.stride, k) for s in stages]
    untied = [i for i, s in enumerate(stages) if s.filter.untied]
    decoded = [i for i in untied if stages[i].decoder_weight is not None]
    model.partitions = nn.ModuleList(
        Partition([_block_filters(stages[i].filter.weight, per_stage[i][p]) for i in untied], untied,
                  [_block_filters(stages[i].decoder_weight, per_stage[i][p]) for i in decoded], decoded)
        for p in range(k))

    def copied(w: Tensor) -> nn.Parameter:
        return nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)

    tiled = [i for i, s in enumerate(stages) if not s.filter.untied]
    shared = {str(i): copied(stages[i].filter.weight) for i in tiled}
    shared_dec = {str(i): copied(stages[i].decoder_weight) for i in tiled if stages[i].decoder_weight is not None}
    if shared:      # registered after the partitions: the last range of the flat vector (the banks, their decoders)
        model.shared_banks = nn.ParameterDict(shared)
    if shared_dec:
        model.shared_decoders = nn.ParameterDict(shared_dec)
    for i, (stage, blocks) in enumerate(zip(stages, per_stage)):
        weights = [model.partitions[p].weights[untied.index(i)] for p in range(k)] if i in untied else []
        stage.filter = PartitionedFilter(stage.filter, blocks, weights, shared.get(str(i)))
        if stage.decoder_weight is not None:
            decoders = [model.partitions[p].decoders[decoded.index(i)] for p in range(k)] if i in decoded else []
            del stage.decoder_weight         # (a parameter's name: the blocks' view takes it)
            stage.decoder_weight = BlockDecoder(blocks, decoders, shared_dec.get(str(i)))
    return model


def partition_layouts(model: FeatureModel) -> dict[str, str]:
    """A partitioned model's own tensors in words, for a checkpoint's metadata: each partition's blocks of the untied
    stages' filters and decoders, and the tiled stages' shared banks, as parts of the merged model's tensors
    (:func:`merge_model`; model.safetensors says what those are); {} for a model that is not partitioned."""
    stages = getattr(model, "stages", ())
    out = {}
    for p, part in enumerate(getattr(model, "partitions", ())):
        for kind, group, merged, at in (("filters", "weights", "filter.weight", part.stages),
                                        ("untied decoder", "decoders", "decoder_weight", part.decoder_stages)):
            for j, i in enumerate(at):
                b, (h, w, m, c, k, _) = stages[i].filter.blocks[p], getattr(part, group)[j].shape
                out[f"partitions.{p}.{group}.{j}"] = (
                    f"(block rows {h}, block columns {w}, maps {m}, input channels {c}, kernel rows {k}, kernel "
                    f"columns {k}): partition {p}'s block of stage {i + 1}'s {kind}, output rows [{b.rows.start}, "
                    f"{b.rows.stop}) and columns [{b.cols.start}, {b.cols.stop}) of the merged model's "
                    f"stages.{i}.{merged}")
    for group, kind, merged in (("shared_banks", "filters", "filter.weight"),
                                ("shared_decoders", "untied decoder", "decoder_weight")):
        for i, banks in getattr(model, group, {}).items():
            th, tw, m, c, k, _ = banks.shape
            out[f"{group}.{i}"] = (f"(tile rows {th}, tile columns {tw}, maps {m}, input channels {c}, kernel "
                                   f"rows {k}, kernel columns {k}): stage {int(i) + 1}'s tiled {kind}, one copy "
                                   f"every partition uses: the merged model's stages.{i}.{merged}, as stored")
    return out


def merge_model(model: FeatureModel) -> FeatureModel:
    """A copy of a partitioned ``model`` as the plain model (one untied or tiled layer per stage): what is
    saved and analysed. An unpartitioned model is returned as is."""
    if not hasattr(model, "partitions"):
        return model
    merged = copy.deepcopy(model)
    for stage in merged.stages:
        part: PartitionedFilter = stage.filter
        like = part.weights[0]
        tile = None if part.tile is None else max(part.tile)     # (tH, tW) = min(tile, Ho), min(tile, Wo)
        with torch.random.fork_rng(devices=[]):    # its initial weights are overwritten: draw nothing from the run's RNG
            layer = LocallyConnected2d(part.in_channels, part.maps, part.in_size, part.kernel_size, part.stride,
                                       tile=tile, norm=part.norm).to(device=like.device, dtype=like.dtype)
        with torch.no_grad():
            layer.weight.copy_(part.full_weight())
        layer.weight.requires_grad_(part.trainable)
        stage.filter = layer
        if isinstance(stage.decoder_weight, BlockDecoder):
            decoder = stage.decoder_weight
            del stage.decoder_weight
            full = torch.empty_like(layer.weight).copy_(decoder.full_weight())     # (the layer's layout, as built)
            stage.decoder_weight = nn.Parameter(full, requires_grad=decoder.weights[0].requires_grad)
    del merged.partitions
    for name in ("shared_banks", "shared_decoders"):
        if hasattr(merged, name):
            delattr(merged, name)
    return merged


def partition_ranges(model: FeatureModel) -> list[tuple[int, int]]:
    """[start, stop) of each partition's parameters in the flat vector (``ParamLayout`` order), then of the
    shared banks' and their untied decoders' (empty when no stage is tiled): K + 1 ranges, for a model whose only
    trainable parameters are its partitions' and shared ones (checked). A partition of tiled stages only owns
    none: (n, n)."""
    ranges, n = [], 0
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    outside = [name for name in trainable if not name.startswith(("partitions.", "shared_banks.", "shared_decoders."))]
    if outside:
        raise ValueError(f"model parallelism: trainable parameters outside the partitions: {outside}")
    shared = [getattr(model, name) for name in ("shared_banks", "shared_decoders") if hasattr(model, name)]
    for group in (*model.partitions, nn.ModuleList(shared)):
        size = sum(p.numel() for p in group.parameters() if p.requires_grad)
        ranges.append((n, n + size))
        n += size
    return ranges


def least_shards(k: int, *, owned: bool, shared: bool) -> int:
    """The fewest shards ``k`` partitions train on (:func:`partition_bounds`): one per group of parameters, each
    partition's own untied filters (``owned``: a trained untied stage) and the tiled stages' shared banks (``shared``: a
    trained tiled one); 1 at least. ``downpour plan`` lays out no fewer (plan/predict.py), as the runner takes no fewer."""
    return max(1, k * owned + shared) if k > 1 else 1


def partition_bounds(ranges: list[tuple[int, int]], shards: int) -> list[tuple[int, int]]:
    """Shard bounds aligned to :func:`partition_ranges`' groups: ``shards`` split so that no shard holds two
    groups' parameters; of the G groups that hold any, group g gets ``shards // G`` shards, the first
    ``shards % G`` one more (untied filters: the K partitions, each its own)."""
    k, groups = len(ranges) - 1, [(p, a, b) for p, (a, b) in enumerate(ranges) if b > a]
    if shards < len(groups):
        if len(groups) == k and ranges[k][0] == ranges[k][1]:     # the K partitions, no shared banks
            raise ValueError(f"cluster.shards = {shards} is fewer than cluster.partitions = {k}: each partition "
                             "needs a shard of its own")
        raise ValueError(f"cluster.shards = {shards} is fewer than the {len(groups)} groups of parameters "
                         f"cluster.partitions = {k} makes (each partition's own untied filters, and the tiled stages' "
                         "shared banks): each group needs a shard of its own")
    bounds = []
    for g, (p, a, b) in enumerate(groups):
        n = shards // len(groups) + (1 if g < shards % len(groups) else 0)
        if n > b - a:
            what = "the shared banks have {} trainable parameters, fewer than their" if p == k else \
                f"partition {p} has {{}} trainable parameters, fewer than its"
            raise ValueError(f"{what.format(b - a)} {n} shards")
        edges = [a + round(i * (b - a) / n) for i in range(n + 1)]
        bounds.extend(zip(edges[:-1], edges[1:]))
    return bounds
