"""Model parallelism on Ray: each replica's K partitions are actors of their own.

Partition p of replica w (:class:`PartitionActor`) holds the filters of block p of every stage and
nothing else (its weights are ≈ 1/K of the model's: ``bench/model_parallel.py``). Per training step
the replica (the worker actor, which keeps the weightless pooling and LCN and the cost) sends each
partition only its block's input window and gets back its codes block and its window's tied
reconstruction (:class:`RemoteFilter`); backward, it sends the gradients of both back, and the
partition runs its own autograd to its filters' gradients. A partition fetches from and pushes to
only its own shards (the shard bounds are aligned to partitions: ``parallel.partition_bounds``),
through the same shared-memory lanes or object store as a whole worker (:class:`ShardLink`).
The driver is unchanged: a replica's cycle returns one gradient entry per shard as before.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import ray
import torch
from torch import Tensor, nn

from downpour.layers._lc_kernels import new_banks, untied_adjoint, untied_apply
from downpour.layers.locally_connected import normalised
from downpour.parallel.partition import PartitionedFilter, stitch, sum_windows
from downpour.ps.on_ray import ShardLink, _quiet_readonly, fetch_into
from downpour.ps.worker import LocalParams


def stage_specs(model: nn.Module, p: int) -> list[dict[str, Any]]:
    """What partition ``p`` must know of each stage of a partitioned ``model``: the filter geometry,
    its own block's sizes and, for a frozen stage (a Gabor or random first layer), its block's
    filters themselves: the shards hold only trainable parameters, so a fetch never brings them."""
    specs = []
    for stage in model.stages:
        f: PartitionedFilter = stage.filter
        b, w = f.blocks[p], f.blocks_weight[p]
        specs.append({"in_channels": f.in_channels, "maps": f.maps, "kernel": f.kernel_size, "stride": f.stride,
                      "norm": f.norm, "chunk": f.chunk_bytes, "out_size": b.out_size, "in_size": b.in_size,
                      "trainable": w.requires_grad, "dtype": w.dtype,
                      "frozen": None if w.requires_grad else w.detach().cpu().numpy()})
    return specs


@ray.remote
class PartitionActor:
    """Partition ``p`` of replica ``wid``: block p's filters of every stage, its shards' links, and the
    gradient accumulator of its slice of the push."""

    def __init__(self, wid: int, p: int, specs: list[dict[str, Any]], shards: list[Any],
                 lanes: list[dict[str, Any] | None], bounds: list[tuple[int, int]], local_lr: float, n_fetch: int):
        _quiet_readonly()
        torch.set_num_threads(1)
        self.wid, self.p, self.specs = wid, p, specs
        self.weights = nn.ParameterList(
            nn.Parameter(new_banks(*s["out_size"], s["maps"], s["in_channels"], s["kernel"], dtype=s["dtype"]),
                         requires_grad=s["trainable"]) for s in specs)
        with torch.no_grad():
            for w, s in zip(self.weights, specs):
                if s.get("frozen") is not None:
                    w.copy_(torch.from_numpy(s["frozen"]))
        # the push accumulator and local SGD of a whole worker (ps.worker.LocalParams), over this slice
        self.params = LocalParams(self.weights, local_lr, n_fetch)
        start = bounds[0][0] if bounds else 0
        self.bounds = [(a - start, b - start) for a, b in bounds]    # this partition's shards, in its own vector
        self.links = [ShardLink(actor, ln, wid, b - a) for actor, ln, (a, b) in zip(shards, lanes, bounds)]
        self.flat = torch.zeros(self.params.numel)     # (the shards' float32)
        self._graphs: dict[int, tuple[Tensor, Tensor | None]] = {}

    def load(self, vec: np.ndarray | Tensor) -> None:
        """This partition's trainable filters, stage after stage, from one flat vector (what
        :meth:`fetch` does with its shards' slices; tests load float64 weights this way)."""
        self.params.load([torch.as_tensor(vec)])

    def gradients(self) -> list[np.ndarray | None]:
        """Each stage's filter gradient as it stands (before :meth:`add_grads` takes it)."""
        return [None if w.grad is None else w.grad.numpy() for w in self.weights]

    def fetch(self) -> list[int]:
        """Pull this partition's shards into its filters; returns their versions."""
        versions = fetch_into(self.links, self.bounds, self.flat.numpy())
        self.params.load([self.flat])
        return versions

    def encode(self, stage: int, x: np.ndarray, decode: bool, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Block ``stage``'s codes from its input window ``x`` (B, C, h, w), and (``decode``) the tied
        reconstruction of the window; with ``grad`` the graph is kept for :meth:`backward`."""
        s = self.specs[stage]
        with torch.set_grad_enabled(grad):
            w = normalised(self.weights[stage], s["norm"])
            codes = untied_apply(torch.from_numpy(x), w, s["stride"], s["chunk"])
            recon = untied_adjoint(codes, w, s["stride"], s["in_size"], s["chunk"]) if decode else None
        if grad:
            self._graphs[stage] = (codes, recon)
        return codes.detach().numpy(), None if recon is None else recon.detach().numpy()

    def backward(self, stage: int, grad_codes: np.ndarray, grad_recon: np.ndarray | None) -> None:
        """The gradients of block ``stage``'s codes and reconstruction: into the filters' ``.grad``."""
        codes, recon = self._graphs.pop(stage)
        outs, grads = [codes], [torch.from_numpy(grad_codes)]
        if recon is not None and grad_recon is not None:
            outs.append(recon)
            grads.append(torch.from_numpy(grad_recon))
        torch.autograd.backward(outs, grads)

    def add_grads(self) -> None:
        """The step's filter gradients into this partition's part of the push; ready for the next step."""
        self.params.add_grads()
        self.weights.zero_grad(set_to_none=True)    # the replica's zero_grad does not reach this process
        self._graphs.clear()

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def stage_push(self, seq: int, bases: list[int], stages: tuple[int, ...] | None = None) -> list[np.ndarray | None]:
        """Hand this partition's summed gradient, which trained greedy ``stages``, to its shards: per shard None
        (left in the shard's shared-memory inbox) or the slice (to travel by the object store)."""
        grads = self.params.take(self.bounds, seq, bases)
        return [link.stage(g.numpy(), seq, base, stages) for link, g, base in zip(self.links, grads, bases)]


class _RemoteStage(torch.autograd.Function):
    """One stage's encoder and tied decoder, computed by the partitions: x -> (codes, reconstruction)."""

    @staticmethod
    def forward(ctx, x: Tensor, anchor: Tensor, filt: "RemoteFilter") -> tuple[Tensor, Tensor]:
        ctx.filt = filt
        answers = ray.get([a.encode.remote(filt.stage, x[:, :, b.in_rows, b.in_cols].contiguous().numpy(), True, True)
                           for a, b in zip(filt.actors, filt.blocks)])
        codes = stitch([torch.from_numpy(c) for c, _ in answers], filt.blocks, dims=(2, 3))
        return codes, sum_windows([torch.from_numpy(r) for _, r in answers], filt.blocks, filt.in_size)

    @staticmethod
    def backward(ctx, grad_codes: Tensor, grad_recon: Tensor) -> tuple[None, None, None]:
        filt = ctx.filt
        ray.get([a.backward.remote(filt.stage, grad_codes[:, :, b.rows, b.cols].contiguous().numpy(),
                                   grad_recon[:, :, b.in_rows, b.in_cols].contiguous().numpy())
                 for a, b in zip(filt.actors, filt.blocks)])
        return None, None, None   # a stage's input is detached: each stage learns from its own cost


class RemoteFilter(nn.Module):
    """A replica's view of a stage whose filters live in its partition actors. ``forward`` asks the
    partitions for the codes and, while training, the tied reconstruction too (one round trip);
    ``adjoint`` of those codes returns that reconstruction. Weight penalties cannot see remote
    filters: ``weights`` is empty."""

    def __init__(self, stage: int, local: PartitionedFilter, actors: list[Any]):
        super().__init__()
        self.stage, self.actors, self.blocks = stage, actors, local.blocks
        self.in_size, self.out_size, self.in_channels, self.maps = local.in_size, local.out_size, local.in_channels, local.maps
        self._codes: Tensor | None = None
        self._recon: Tensor | None = None
        # the filters' stand-in in this process: it makes the stage's outputs part of the replica's
        # autograd graph, so backward reaches _RemoteStage.backward (and through it the partitions);
        # a frozen stage's (a Gabor or random first layer) has no gradient to reach
        self.anchor = torch.zeros((), requires_grad=local.trainable)

    weights: tuple[Tensor, ...] = ()

    def effective_weight(self) -> None:
        return None               # the partitions normalise their own filters

    def forward(self, x: Tensor, weight: None = None) -> Tensor:
        if torch.is_grad_enabled():
            self._codes, self._recon = _RemoteStage.apply(x, self.anchor, self)
            return self._codes
        answers = ray.get([a.encode.remote(self.stage, x[:, :, b.in_rows, b.in_cols].contiguous().numpy(), False, False)
                           for a, b in zip(self.actors, self.blocks)])
        return stitch([torch.from_numpy(c) for c, _ in answers], self.blocks, dims=(2, 3))

    def adjoint(self, y: Tensor, weight: None = None) -> Tensor:
        if y is not self._codes:
            raise RuntimeError("a remote stage decodes only the codes it has just encoded (the tied reconstruction "
                               "comes back with them)")
        return self._recon


class PartitionParams:
    """:class:`~downpour.ps.worker.Worker`'s parameter backend for a replica whose parameters live in
    its partition actors: they fetch, accumulate and stage pushes themselves."""

    def __init__(self, actors: list[Any], shards_of: list[list[int]], numel: int):
        self.actors, self.shards_of, self.numel = actors, shards_of, numel

    def fetch(self, n_shards: int) -> list[int]:
        versions = [0] * n_shards
        for shards, got in zip(self.shards_of, ray.get([a.fetch.remote() for a in self.actors])):
            for j, v in zip(shards, got):
                versions[j] = v
        return versions

    def load(self, slices: Sequence[Tensor]) -> None:
        pass                      # the partitions loaded their shards in :meth:`fetch`

    def add_grads(self) -> None:
        ray.get([a.add_grads.remote() for a in self.actors])

    def take(self, bounds: Sequence[tuple[int, int]], seq: int, base: Sequence[int],
             stages: tuple[int, ...] | None = None) -> list[np.ndarray | None]:
        staged: list[np.ndarray | None] = [None] * len(bounds)
        answers = ray.get([a.stage_push.remote(seq, [base[j] for j in shards], stages)
                           for a, shards in zip(self.actors, self.shards_of)])
        for shards, got in zip(self.shards_of, answers):
            for j, g in zip(shards, got):
                staged[j] = g
        return staged


def remote_replica(model: nn.Module, actors: list[Any]) -> None:
    """Point each stage of partitioned ``model`` at the partition actors, and drop its local filters."""
    _quiet_readonly()            # the partitions' answers arrive as read-only arrays; they are only read
    for i, stage in enumerate(model.stages):
        stage.filter = RemoteFilter(i, stage.filter, actors)
    del model.partitions
    if getattr(model, "frozen_cache", None) is not None:
        model.frozen_cache = None   # the filters live in the actors: a fetch there changes no tensor it could check
