"""A replica's view of a stage whose filters live in its partition actors (:class:`RemoteFilter`): its forward
and backward are the partitions' (:class:`_RemoteStage`), a tiled stage's banks lent them per call;
:func:`remote_replica` points a partitioned model's stages at the actors. The whole picture:
:mod:`downpour.ps.partitions_on_ray`."""
from __future__ import annotations

from typing import Any

import ray
import torch
from torch import Tensor, nn

from downpour.layers.locally_connected import normalised
from downpour.parallel.partition import BlockDecoder, PartitionedFilter, block_banks, stitch, sum_windows
from downpour.ps.node_answers_on_ray import quiet_readonly
from downpour.train.step import NonFiniteLoss


def _encode(filt: "RemoteFilter", x: Tensor, banks: tuple[Tensor, ...], grad: bool) -> list[tuple]:
    """Every partition's answer to block ``filt.stage`` of ``x``: (codes, reconstruction or None). ``banks``: each
    block's encoder banks, then each one's decoder banks (:meth:`RemoteFilter._lent`)."""
    k = len(filt.actors)
    lent = [bk.detach().numpy() for bk in banks] + [None] * (2 * k - len(banks))
    return ray.get([a.encode.remote(filt.stage, x[:, :, b.in_rows, b.in_cols].contiguous().numpy(), grad, grad,
                                    lent[p], lent[k + p])
                    for p, (a, b) in enumerate(zip(filt.actors, filt.blocks))])


class _RemoteStage(torch.autograd.Function):
    """One stage's encoder and decoder (tied or untied), computed by the partitions: x -> (codes, reconstruction). A
    tiled stage's ``banks`` are each block's (:func:`~downpour.parallel.partition.block_banks`), then each block's
    untied decoder banks; their gradients come back."""

    @staticmethod
    def forward(ctx, x: Tensor, anchor: Tensor, filt: "RemoteFilter", *banks: Tensor) -> tuple[Tensor, Tensor]:
        ctx.filt = filt
        answers = _encode(filt, x, banks, True)
        codes = stitch([torch.from_numpy(c) for c, _ in answers], filt.blocks, dims=(2, 3))
        return codes, sum_windows([torch.from_numpy(r) for _, r in answers], filt.blocks, filt.in_size)

    @staticmethod
    def backward(ctx, grad_codes: Tensor, grad_recon: Tensor) -> tuple[Tensor | None, ...]:
        filt = ctx.filt
        # a frozen encoder's codes have no graph in the partition: their gradient is not sent (it would be dropped
        # there: a frozen Gabor layer with an untied decoder would send each block's codes' worth for nothing)
        of_codes = [grad_codes[:, :, b.rows, b.cols].contiguous().numpy() if filt.trainable else None
                    for b in filt.blocks]
        answers = ray.get([a.backward.remote(filt.stage, gc, grad_recon[:, :, b.in_rows, b.in_cols].contiguous().numpy())
                           for a, b, gc in zip(filt.actors, filt.blocks, of_codes)])
        grads, bad = [got for got, _ in answers], [what for _, whats in answers for what in whats]
        if bad:     # train_step says it with the cost, and the worker skips the step (the partitions drop it)
            raise NonFiniteLoss(f"a gradient no rule could apply (NaN, Inf or too large) of {', '.join(bad)}")
        per_block = [[None if g is None else torch.from_numpy(g) for g in got] for got in grads]
        # in the order lent (_RemoteStage.forward's banks): every block's encoder banks, then every block's decoder's
        banks = [got[j] for j in range(len(per_block[0]) if per_block else 0) for got in per_block]
        return None, None, None, *banks   # a stage's input is detached: each stage learns from its own cost


class RemoteFilter(nn.Module):
    """A replica's view of a stage whose filters live in its partition actors. ``forward`` asks the
    partitions for the codes and, while training, the reconstruction too (tied or through the untied
    decoder; one round trip); ``adjoint`` of those codes returns that reconstruction. Weight penalties cannot
    see remote filters: ``weights`` is empty. A tiled stage's ``banks`` stay here (the model's ``shared_banks``,
    and its untied decoder's ``shared_decoders``): each call lends every partition its block's share, and
    backward sums their gradients into them."""

    def __init__(self, stage: int, local: PartitionedFilter, actors: list[Any], decoder: BlockDecoder | None = None):
        super().__init__()
        self.stage, self.actors, self.blocks, self.norm = stage, actors, local.blocks, local.norm
        self.trainable = local.trainable      # the encoder's: a frozen one is sent no gradient of its codes
        self.in_size, self.out_size, self.in_channels, self.maps = local.in_size, local.out_size, local.in_channels, local.maps
        self._banks = [] if local.banks is None else [local.banks]    # a plain list: the model's parameter
        self._decoder_banks = [] if decoder is None or decoder.banks is None else [decoder.banks]
        self._codes: Tensor | None = None
        self._recon: Tensor | None = None
        # the filters' stand-in in this process: it makes the stage's outputs part of the replica's
        # autograd graph, so backward reaches _RemoteStage.backward (and through it the partitions);
        # a frozen stage's (a Gabor or random first layer) has no gradient to reach, unless its untied decoder's
        self.anchor = torch.zeros((), requires_grad=local.trainable or decoder is not None)

    weights: tuple[Tensor, ...] = ()

    @property
    def banks(self) -> nn.Parameter | None:
        return self._banks[0] if self._banks else None

    def effective_weight(self) -> None:
        return None               # the partitions normalise their own filters (a tiled stage's: forward, here)

    def _lent(self, decode: bool) -> tuple[Tensor, ...]:
        """Each block's share of the normalised banks, then (``decode``) of the untied decoder's banks (none for an
        untied stage). A forward-only call decodes nothing, so it is not lent the decoder's banks."""
        if self.banks is None:
            return ()
        banks = normalised(self.banks, self.norm)
        lent = (banks, *self._decoder_banks) if decode else (banks,)
        return tuple(block_banks(bk, b) for bk in lent for b in self.blocks)

    def forward(self, x: Tensor, weight: None = None) -> Tensor:
        if torch.is_grad_enabled():
            self._codes, self._recon = _RemoteStage.apply(x, self.anchor, self, *self._lent(True))
            return self._codes
        answers = _encode(self, x, self._lent(False), False)
        return stitch([torch.from_numpy(c) for c, _ in answers], self.blocks, dims=(2, 3))

    def adjoint(self, y: Tensor, weight: None = None) -> Tensor:
        if y is not self._codes:
            raise RuntimeError("a remote stage decodes only the codes it has just encoded, once (the reconstruction "
                               "comes back with them)")
        # handed over, not kept: the step's outputs and graph hold them until its backward (kept by the filter, the last
        # codes and reconstruction would stay until the next step's forward: 984 kB on the main job split in 2)
        recon, self._codes, self._recon = self._recon, None, None
        return recon


def remote_replica(model: nn.Module, actors: list[Any]) -> None:
    """Point each stage of partitioned ``model`` at the partition actors, and drop its local filters and untied
    decoders (the shared banks of tiled stages stay: the replica lends them to the partitions)."""
    quiet_readonly()            # the partitions' answers arrive as read-only arrays; they are only read
    for i, stage in enumerate(model.stages):
        decoder = stage.decoder_weight if isinstance(stage.decoder_weight, BlockDecoder) else None
        stage.filter = RemoteFilter(i, stage.filter, actors, decoder)
        if decoder is not None:       # the reconstruction comes back from the partitions: nothing to decode with here
            stage.decoder_weight = BlockDecoder(decoder.blocks, [])
    del model.partitions
    if getattr(model, "frozen_cache", None) is not None:
        model.frozen_cache = None   # the filters live in the actors: a fetch there changes no tensor it could check
