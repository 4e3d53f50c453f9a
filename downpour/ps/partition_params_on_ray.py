"""The parameter backend of a replica whose parameters live in its partition actors (:class:`PartitionParams`):
they fetch, accumulate and stage their shards' pushes; the replica only the shared banks of tiled stages. The whole
picture: :mod:`downpour.ps.partitions_on_ray`."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import ray
import torch
from torch import Tensor, nn

from downpour.ps.shards_on_ray import ShardLink, fetch_into
from downpour.ps.worker import LocalParams


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
