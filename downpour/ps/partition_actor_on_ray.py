"""A model-parallel replica's partition, an actor of its own (:class:`PartitionActor`): block p's filters of every
stage (and of their untied decoders), its shards' links and its slice of the push; what it must know of each stage
(:func:`stage_specs`). How the partitions and their replica share a step: :mod:`downpour.ps.partitions_on_ray`."""
from __future__ import annotations

from typing import Any

import numpy as np
import ray
import torch
from torch import Tensor, nn

from downpour.layers._lc_kernels import new_banks, untied_adjoint, untied_apply
from downpour.layers.locally_connected import _expand_tiles, normalised
from downpour.parallel.partition import BlockDecoder, Partition, PartitionedFilter
from downpour.ps.node_answers_on_ray import NodeAnswers, quiet_readonly
from downpour.ps.shards_on_ray import ShardLink, fetch_into, lanes_of
from downpour.ps.worker import LocalParams
from downpour.train.finite import applicable


def stage_specs(model: nn.Module, p: int) -> list[dict[str, Any]]:
    """What partition ``p`` must know of each stage of a partitioned ``model``: the filter geometry,
    its own block's sizes and, for a frozen stage (a Gabor or random first layer), its block's
    filters themselves: the shards hold only trainable parameters, so a fetch never brings them. A tiled
    stage (``tiled``) holds no filters: its block's banks come with each call. ``decoded``: the stage has an untied
    decoder (its block's weights the partition's own, or a tiled stage's banks lent with the encoder's)."""
    specs = []
    for stage in model.stages:
        f: PartitionedFilter = stage.filter
        b, w = f.blocks[p], f.banks if f.banks is not None else f.blocks_weight[p]
        specs.append({"decoded": isinstance(stage.decoder_weight, BlockDecoder),
                      "in_channels": f.in_channels, "maps": f.maps, "kernel": f.kernel_size, "stride": f.stride,
                      "norm": f.norm, "chunk": f.chunk_bytes, "out_size": b.out_size, "in_size": b.in_size,
                      "trainable": w.requires_grad, "dtype": w.dtype, "tiled": f.banks is not None,
                      "frozen": None if w.requires_grad or f.banks is not None else w.detach().cpu().numpy()})
    return specs


@ray.remote
class PartitionActor(NodeAnswers):
    """Partition ``p`` of replica ``wid``: block p's filters of every untied stage (then its block of their untied
    decoders), its shards' links, and the gradient accumulator of its slice of the push (a tiled stage's banks, and
    their untied decoder's, are the replica's, lent per call). ``seed``: its torch RNG's
    (:func:`~downpour.ps.seeds.partition_seed`), kept as ``seed``; a partition draws nothing so far (``encode`` and
    ``backward`` leave the RNG as they found it: ``tests/test_partition_actor.py``)."""

    def __init__(self, wid: int, p: int, specs: list[dict[str, Any]], shards: list[Any],
                 lanes: list[Any], bounds: list[tuple[int, int]], local_lr: float, n_fetch: int, seed: int):
        quiet_readonly()
        torch.set_num_threads(1)
        torch.manual_seed(seed)      # (so that a draw added here repeats with --seed)
        self.wid, self.p, self.seed = wid, p, seed
        untied = [i for i, s in enumerate(specs) if not s["tiled"]]
        decoded = [i for i in untied if specs[i]["decoded"]]
        self.own = {i: j for j, i in enumerate(untied)}          # stage -> weights[j]
        self.own_decoder = {i: j for j, i in enumerate(decoded)}     # stage -> decoders[j]

        def block(s: dict[str, Any], trainable: bool) -> nn.Parameter:
            return nn.Parameter(new_banks(*s["out_size"], s["maps"], s["in_channels"], s["kernel"], dtype=s["dtype"]),
                                requires_grad=trainable)
        # the model's Partition p, in its order (filters, then decoders): the flat slice its shards hold
        self.part = Partition([block(specs[i], specs[i]["trainable"]) for i in untied], untied,
                              [block(specs[i], True) for i in decoded], decoded)
        self.weights, self.decoders = self.part.weights, self.part.decoders
        with torch.no_grad():
            for w, i in zip(self.weights, untied):
                if specs[i].get("frozen") is not None:
                    w.copy_(torch.from_numpy(specs[i]["frozen"]))
        # the specs less a frozen stage's filters, copied into its weights: not kept here twice
        self.specs = [{k: v for k, v in s.items() if k != "frozen"} for s in specs]
        # the push accumulator and local SGD of a whole worker (ps.worker.LocalParams), over this slice
        self.params = LocalParams(self.part, local_lr, n_fetch)
        start = bounds[0][0] if bounds else 0
        self.bounds = [(a - start, b - start) for a, b in bounds]    # this partition's shards, in its own vector
        self.links = [ShardLink(actor, ln, wid, b - a) for actor, ln, (a, b) in zip(shards, lanes_of(lanes), bounds)]
        self.flat = torch.zeros(self.params.numel)     # (the shards' float32)
        self._graphs: dict[int, tuple[Tensor, Tensor | None, list[Tensor]]] = {}

    def load(self, vec: np.ndarray | Tensor) -> None:
        """This partition's trainable filters, stage after stage, then its untied decoders' blocks, from one flat
        vector (what :meth:`fetch` does with its shards' slices; tests load float64 weights this way)."""
        self.params.load([torch.as_tensor(vec)])

    def gradients(self) -> list[np.ndarray | None]:
        """Each untied stage's filter gradient as it stands (before :meth:`add_grads` takes it), then each one's untied
        decoder's; None for a tiled one (its banks' gradient went back to the replica) and for a tied decoder."""
        n = range(len(self.specs))
        grads = ([self.weights[self.own[i]].grad if i in self.own else None for i in n]
                 + [self.decoders[self.own_decoder[i]].grad if i in self.own_decoder else None for i in n])
        return [None if g is None else g.numpy() for g in grads]

    def fetch(self) -> list[int]:
        """Pull this partition's shards into its filters and untied decoders' blocks; returns their versions."""
        versions = fetch_into(self.links, self.bounds, self.flat.numpy())
        self.params.load([self.flat])
        return versions

    def encode(self, stage: int, x: np.ndarray, decode: bool, grad: bool, banks: np.ndarray | None = None,
               decoder_banks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Block ``stage``'s codes from its input window ``x`` (B, C, h, w), and (``decode``) the window's
        reconstruction, tied or through the untied decoder; with ``grad`` the graph is kept for :meth:`backward`. A
        tiled stage's ``banks``: the replica's banks that this block uses, normalised
        (:func:`~downpour.parallel.partition.block_banks`), and ``decoder_banks`` its untied decoder's, as they are:
        lent only with ``decode`` (a forward-only call gets None: it decodes nothing)."""
        s = self.specs[stage]
        lent = []
        with torch.set_grad_enabled(grad):
            if s["tiled"]:
                lent.append(torch.from_numpy(banks).requires_grad_(grad and s["trainable"]))
                w = _expand_tiles(lent[0], s["out_size"])
            else:
                w = normalised(self.weights[self.own[stage]], s["norm"])
            codes = untied_apply(torch.from_numpy(x), w, s["stride"], s["chunk"])
            recon = None
            if decode:
                if not s["decoded"]:
                    d = w                                       # the tied decoder: the filters' adjoint
                elif s["tiled"]:
                    lent.append(torch.from_numpy(decoder_banks).requires_grad_(grad))
                    d = _expand_tiles(lent[1], s["out_size"])
                else:
                    d = self.decoders[self.own_decoder[stage]]
                recon = untied_adjoint(codes, d, s["stride"], s["in_size"], s["chunk"])
        if grad:
            self._graphs[stage] = (codes, recon, lent)
        return codes.detach().numpy(), None if recon is None else recon.detach().numpy()

    def backward(self, stage: int, grad_codes: np.ndarray, grad_recon: np.ndarray | None
                 ) -> tuple[list[np.ndarray | None], list[str]]:
        """The gradients of block ``stage``'s codes and reconstruction: into the filters' (and untied decoder's)
        ``.grad``; a tiled stage's into the lent banks, returned (the replica sums the blocks'): the encoder's, then
        the untied decoder's; [] when untied. ``grad_codes`` is None for a frozen encoder: its untied decoder's
        gradient needs the codes (kept in the graph) and the reconstruction's gradient, not the codes'. With them, what
        of this block's own gradients no rule could apply (NaN, Inf, a squared norm past the dtype: ``applicable``):
        the replica's check sees only its own parameters (unchecked, such a step is not skipped: its NaN goes into
        the partition's push)."""
        codes, recon, lent = self._graphs.pop(stage)
        pairs = [(codes, grad_codes), (recon, grad_recon)]
        # (a frozen encoder's codes have no graph: only its untied decoder's reconstruction is trained)
        pairs = [(t, torch.from_numpy(g)) for t, g in pairs if t is not None and g is not None and t.requires_grad]
        if pairs:
            torch.autograd.backward(*zip(*pairs))
        own = [("filters", self.weights, self.own), ("untied decoder", self.decoders, self.own_decoder)]
        bad = [f"stage {stage + 1}'s {what} in partition {self.p}" for what, ws, at in own if stage in at
               and ws[at[stage]].grad is not None and not applicable(ws[at[stage]].grad, ws[at[stage]].dtype)]
        return [None if t.grad is None else t.grad.numpy() for t in lent], bad

    def add_grads(self) -> None:
        """The step's filter (and untied decoder) gradients into this partition's part of the push; ready for the next
        step."""
        if self.params.numel:        # (a partition of tiled stages only owns no filters)
            self.params.add_grads()
        self.discard()

    def discard(self) -> None:
        """Drop the step's filter (and untied decoder) gradients and the graphs its forward kept: after
        :meth:`add_grads`, and for a step the replica skipped (a non-finite cost, whose backward never ran, or a
        non-finite gradient). The replica's ``zero_grad`` does not reach this process: undropped, a skipped step's
        gradients would stay, and the next step's backward add onto them (a NaN for good)."""
        self.part.zero_grad(set_to_none=True)
        self._graphs.clear()

    def drop(self) -> None:
        """The replica's cycle failed (another of its partitions died): this partition's part of the push goes too."""
        self.params.drop()
        self.discard()

    def stage_push(self, seq: int, bases: list[int], stages: tuple[int, ...] | None = None) -> list[np.ndarray | None]:
        """Hand this partition's summed gradient, which trained greedy ``stages``, to its shards: per shard None
        (left in the shard's shared-memory inbox) or the slice (to travel by the object store)."""
        grads = self.params.take(self.bounds, seq, bases)
        return [link.stage(g.numpy(), seq, base, stages) for link, g, base in zip(self.links, grads, bases)]
