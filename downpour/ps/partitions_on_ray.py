"""Model parallelism on Ray: each replica's K partitions are actors of their own.

Partition p of replica w (:class:`PartitionActor`) holds the filters of block p of every stage and
nothing else (its weights are ≈ 1/K of the model's: ``bench/model_parallel.py``). Per training step
the replica (the worker actor, which keeps the weightless pooling and LCN and the cost) sends each
partition only its block's input window and gets back its codes block and its window's tied
reconstruction (:class:`RemoteFilter`); backward, it sends the gradients of both back (the codes' only where the
encoder trains: a frozen one's untied decoder needs the reconstruction's), and the partition runs its own autograd
to its filters' gradients. A partition fetches from and pushes to
only its own shards (the shard bounds are aligned to partitions: ``parallel.partition_bounds``),
through the same shared-memory lanes or object store as a whole worker (:class:`ShardLink`).
A tiled stage's banks are shared by the blocks: the replica holds the one copy and fetches and
pushes its shards itself (:meth:`PartitionParams.link_shared`), sends each partition the banks its
block uses with the input window, and gets back their gradient, which its autograd sums over the
blocks: the push carries one summed gradient of the banks, and the server's rule runs once on it.
An untied decoder (``model.decoder = 'untied'``, since 2026-12-05) goes with its encoder: a partition owns its block's
decoder weights beside its filters (one vector, fetched and pushed together) and answers with their reconstruction; a
tiled stage's decoder banks (``model.shared_decoders``) are the replica's and lent as its encoder's are, to the calls
that decode (not a forward-only one: a greedy step's stages below the trained one, an evaluation).
The driver is unchanged: a replica's cycle returns one gradient entry per shard as before.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import ray
import torch
from torch import Tensor, nn

from downpour.layers._lc_kernels import new_banks, untied_adjoint, untied_apply
from downpour.layers.locally_connected import _expand_tiles, normalised
from downpour.parallel.partition import BlockDecoder, Partition, PartitionedFilter, block_banks, stitch, sum_windows
from downpour.ps.on_ray import NodeAnswers, ShardLink, _quiet_readonly, fetch_into, lanes_of
from downpour.ps.worker import LocalParams
from downpour.train.finite import applicable
from downpour.train.step import NonFiniteLoss


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
    (:func:`~downpour.ps.setup.partition_seed`), kept as ``seed``; a partition draws nothing so far (``encode`` and
    ``backward`` leave the RNG as they found it: ``tests/test_partition_actor.py``)."""

    def __init__(self, wid: int, p: int, specs: list[dict[str, Any]], shards: list[Any],
                 lanes: list[Any], bounds: list[tuple[int, int]], local_lr: float, n_fetch: int, seed: int):
        _quiet_readonly()
        torch.set_num_threads(1)
        torch.manual_seed(seed)      # (until 2026-12-05 never: a draw added here would not have repeated with --seed)
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
        # the specs less a frozen stage's filters, copied into its weights: until 2026-12-05 kept here twice
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
        lent only with ``decode`` (a forward-only call, since 2026-12-05, gets None: it decodes nothing)."""
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
        the replica's check sees only its own parameters (until 2026-12-05 such a step was not skipped: its NaN went
        into the partition's push)."""
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
        non-finite gradient). The replica's ``zero_grad`` does not reach this process: until 2026-12-05 a skipped
        step's gradients stayed, and the next step's backward added onto them (a NaN for good)."""
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
        # a frozen encoder's codes have no graph in the partition: their gradient is not sent (until 2026-12-05 it was,
        # and dropped there: a frozen Gabor layer with an untied decoder sent each block's codes' worth for nothing)
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
        untied stage). A forward-only call decodes nothing: until 2026-12-05 it was lent the decoder's banks too."""
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
        # handed over, not kept: the step's outputs and graph hold them until its backward (until 2026-12-05 the filter
        # held the last codes and reconstruction until the next step's forward: 984 kB on the main job split in 2)
        recon, self._codes, self._recon = self._recon, None, None
        return recon


class PartitionParams:
    """:class:`~downpour.ps.worker.Worker`'s parameter backend for a replica whose parameters live in
    its partition actors: they fetch, accumulate and stage pushes themselves. The shared banks of tiled
    stages live in the replica (:meth:`link_shared`): it fetches, accumulates and stages their shards alike."""

    def __init__(self, actors: list[Any], shards_of: list[list[int]], numel: int):
        self.actors, self.shards_of, self.numel = actors, shards_of, numel
        self.shared: LocalParams | None = None
        self.shared_shards: list[int] = []
        self.links: list[ShardLink] = []
        self.bounds: list[tuple[int, int]] = []
        self.flat = torch.zeros(0)

    def link_shared(self, model: nn.Module, wid: int, shards: list[Any], lanes: list[dict[str, Any] | None],
                    bounds: list[tuple[int, int]], local_lr: float, n_fetch: int) -> None:
        """The replica's own part: ``model.shared_banks`` and ``model.shared_decoders`` (if any), on the shards no
        partition holds (the last of ``bounds``, :func:`~downpour.parallel.partition.partition_bounds`), linked as a
        whole worker links them."""
        owned = {j for shards_p in self.shards_of for j in shards_p}
        self.shared_shards = [j for j in range(len(bounds)) if j not in owned]
        if not self.shared_shards:
            return
        shared = nn.ModuleList(getattr(model, name) for name in ("shared_banks", "shared_decoders")
                               if hasattr(model, name))
        self.shared = LocalParams(shared, local_lr, n_fetch)
        start = bounds[self.shared_shards[0]][0]
        self.bounds = [(bounds[j][0] - start, bounds[j][1] - start) for j in self.shared_shards]
        self.links = [ShardLink(shards[j], lanes[j], wid, bounds[j][1] - bounds[j][0]) for j in self.shared_shards]
        self.flat = torch.zeros(self.shared.numel)

    def fetch(self, n_shards: int) -> list[int]:
        versions = [0] * n_shards
        pending = [a.fetch.remote() for a in self.actors]
        if self.shared is not None:        # while the partitions fetch theirs
            for j, v in zip(self.shared_shards, fetch_into(self.links, self.bounds, self.flat.numpy())):
                versions[j] = v
            self.shared.load([self.flat])
        for shards, got in zip(self.shards_of, ray.get(pending)):
            for j, v in zip(shards, got):
                versions[j] = v
        return versions

    def load(self, slices: Sequence[Tensor]) -> None:
        pass                      # the partitions (and the replica's shared banks) loaded their shards in :meth:`fetch`

    def add_grads(self) -> None:
        pending = [a.add_grads.remote() for a in self.actors]
        if self.shared is not None:       # the banks' gradient, summed over the blocks by the replica's backward
            self.shared.add_grads()
        ray.get(pending)

    def discard(self) -> None:
        """A skipped step: the partitions drop its gradients and graphs (the replica's own, the shared banks', were
        cleared by ``train_step``)."""
        ray.get([a.discard.remote() for a in self.actors])

    def drop(self) -> None:
        """The push being built goes, on every partition and the shared banks (``Worker.drop_push``)."""
        pending = [a.drop.remote() for a in self.actors]
        if self.shared is not None:
            self.shared.drop()
        ray.get(pending)

    def replace(self, model: nn.Module, p: int, actor: Any) -> None:
        """Partition ``p`` is ``actor`` now (its predecessor died): every stage asks it (the push being built is
        the caller's to drop: ``Worker.drop_push``)."""
        self.actors[p] = actor
        for stage in model.stages:
            stage.filter.actors[p] = actor      # (one list with :attr:`actors` where Ray unpickled them together)
            stage.filter._codes = stage.filter._recon = None

    def take(self, bounds: Sequence[tuple[int, int]], seq: int, base: Sequence[int],
             stages: tuple[int, ...] | None = None) -> list[np.ndarray | None]:
        staged: list[np.ndarray | None] = [None] * len(bounds)
        pending = [a.stage_push.remote(seq, [base[j] for j in shards], stages)
                   for a, shards in zip(self.actors, self.shards_of)]
        if self.shared is not None:
            bases = [base[j] for j in self.shared_shards]
            for j, link, g, b in zip(self.shared_shards, self.links, self.shared.take(self.bounds, seq, bases), bases):
                staged[j] = link.stage(g.numpy(), seq, b, stages)
        for shards, got in zip(self.shards_of, ray.get(pending)):
            for j, g in zip(shards, got):
                staged[j] = g
        return staged


def remote_replica(model: nn.Module, actors: list[Any]) -> None:
    """Point each stage of partitioned ``model`` at the partition actors, and drop its local filters and untied
    decoders (the shared banks of tiled stages stay: the replica lends them to the partitions)."""
    _quiet_readonly()            # the partitions' answers arrive as read-only arrays; they are only read
    for i, stage in enumerate(model.stages):
        decoder = stage.decoder_weight if isinstance(stage.decoder_weight, BlockDecoder) else None
        stage.filter = RemoteFilter(i, stage.filter, actors, decoder)
        if decoder is not None:       # the reconstruction comes back from the partitions: nothing to decode with here
            stage.decoder_weight = BlockDecoder(decoder.blocks, [])
    del model.partitions
    if getattr(model, "frozen_cache", None) is not None:
        model.frozen_cache = None   # the filters live in the actors: a fetch there changes no tensor it could check
