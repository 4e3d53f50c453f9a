"""The Ray runner's actors: server shards and workers, and how bytes move between them. The
driver that runs them is :class:`~downpour.ps.cluster_on_ray.RayCluster`; Ray is imported only by
modules named *on_ray.py.

The driver follows Ray's parameter-server example: a ``{future: (kind, worker)}`` dict and
``ray.wait``. A worker actor runs one push cycle (fetch when due, ``n_push`` training steps),
stages its gradient and returns; only then does the driver tell the shards to apply it. So a
worker killed mid-cycle never half-pushes: its push reaches every shard once (the cycle returned)
or none (it did not), and the shards' sequence numbers reject a repeat, so none is applied twice.

How the bytes move:

- same node (the common case, and all of a local Ray): the shard's parameters and one inbox per
  worker live in shared memory (:mod:`downpour.ps.shm`). A pull is one memcpy out of the shard's
  segment; a push is one memcpy into the inbox, then the driver tells the shard to apply it: by
  its doorbell (:mod:`downpour.ps.doorbell`, a named pipe: no actor call) when the driver is on
  the shard's node, by a tiny ``push_inbox`` call otherwise (:class:`ShardPush`).
- different nodes: a pull returns the NumPy slice through Ray's object store, and the gradient
  slice the cycle returned is an object ref the driver passes to ``push``: Ray's object manager
  moves it between machines, and on the receiving node it is read zero-copy from the store.

``cluster.address`` joins an existing cluster; empty starts a local Ray. Shards and workers are
placed round-robin over the cluster's nodes (where a node has no room left, Ray chooses).
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import ray
import torch

from downpour.config import RunConfig
from downpour.data.pipeline import data_report
from downpour.ps import shm
from downpour.ps.doorbell import Bell
from downpour.ps.setup import make_worker
from downpour.ps.shard import Shard
from downpour.ps.shard_server import ShardServer


def _quiet_readonly() -> None:
    # object-store buffers are read-only; we only ever read them (or copy), so torch's warning is noise
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


@ray.remote
class ShardActor(ShardServer):
    """A :class:`~downpour.ps.shard_server.ShardServer` (a shard with shared-memory lanes and a
    doorbell where it can have them) in its own process. Workers on this node use the lanes,
    workers elsewhere the object store."""

    def __init__(self, shard: Shard, lane_prefix: str = "", workers: int = 0):
        _quiet_readonly()
        torch.set_num_threads(1)
        super().__init__(shard, lane_prefix, workers)

    def lanes(self) -> dict[str, Any] | None:
        lanes = super().lanes()
        return None if lanes is None else {**lanes, "node": _node()}

    def node(self) -> str:
        return _node()


class ShardLink:
    """One shard as a worker (or a benchmark client) on some node sees it: shared memory when the
    shard lives on the same node, the object store otherwise."""

    def __init__(self, actor: Any, lanes: dict[str, Any] | None, wid: int, n: int):
        self.actor, self.n, self.wid = actor, n, wid
        local = lanes is not None and lanes["node"] == _node()
        self.params = shm.Segment(lanes["params"], n) if local else None
        self.inbox = shm.Segment(lanes["inbox"][wid], n) if local else None

    def pull_into(self, out: np.ndarray) -> Any:
        """Copy the parameters into ``out`` (n,) and return the version, or return an object ref to
        ``(params, version)`` to be fetched (the caller batches those)."""
        if self.params is not None:
            return self.params.read_into(out)
        return self.actor.pull.remote(self.wid)   # the shard notes the pull (DC-ASGD keeps a copy)

    def stage(self, grad: np.ndarray, seq: int, base: int) -> np.ndarray | None:
        """Leave ``grad`` in the inbox (returns None) or hand it back to travel by the object store."""
        if self.inbox is None:
            return grad
        self.inbox.put(grad, seq, base)
        return None


class ShardPush:
    """How the driver (or a benchmark client) has the shards apply a staged push: a doorbell ring
    where the gradient is in the inbox of a shard on this node, a ``push_inbox`` actor call where
    that shard is elsewhere, ``push`` with the gradient's object ref where it has no inbox.

    ``lanes`` (one per shard, as ``ShardActor.lanes`` returns them) is read on every push, so a
    caller that replaces an entry (a restarted worker's new inbox) is followed.
    """

    def __init__(self, actors: list[Any], lanes: list[dict[str, Any] | None]):
        self.actors, self.lanes, self.here = actors, lanes, _node()
        self._bells: dict[tuple[int, int], tuple[str, Bell]] = {}   # (shard, worker) -> (reply pipe, bell)

    def _bell(self, j: int, w: int) -> Bell | None:
        lanes = self.lanes[j]
        if lanes is None or lanes["node"] != self.here:
            return None
        path, bell = self._bells.get((j, w), ("", None))
        if path != lanes["reply"][w]:
            if bell is not None:
                bell.close()
            path, bell = lanes["reply"][w], Bell(lanes["bell"], lanes["reply"][w])
            self._bells[(j, w)] = path, bell
        return bell

    def apply(self, w: int, seq: int, bases: list[int], grads: list[Any], inbox: list[bool]) -> list[Any]:
        """Per shard the result dict (rung shards: every bell rung first, then every answer read,
        so the shards apply in parallel) or an object ref to it (the caller waits on those)."""
        out: list[Any] = []
        rung: dict[int, Bell] = {}
        for j, (actor, g, base, staged) in enumerate(zip(self.actors, grads, bases, inbox)):
            bell = self._bell(j, w) if staged else None
            if bell is not None:
                bell.ring(w, seq, base)
                rung[j] = bell
                out.append(None)
            elif staged:
                out.append(actor.push_inbox.remote(w, base, seq))
            else:
                out.append(actor.push.remote(w, g, base, seq))
        for j, bell in rung.items():
            out[j] = bell.answer(seq)
        return out

    @staticmethod
    def results(answers: list[Any]) -> list[dict[str, Any]]:
        """:meth:`apply`'s answers with the object refs fetched."""
        refs = [x for x in answers if not isinstance(x, dict)]
        fetched = iter(ray.get(refs)) if refs else iter(())
        return [x if isinstance(x, dict) else next(fetched) for x in answers]

    def close(self) -> None:
        for _, bell in self._bells.values():
            bell.close()
        self._bells.clear()


def fetch_into(links: list[ShardLink], bounds: list[tuple[int, int]], out: np.ndarray) -> list[int]:
    """Pull every shard of ``links`` into its ``[a, b)`` of ``out``; returns the shards' versions
    (same-node shards by memcpy, the others' object refs fetched together)."""
    answers = [link.pull_into(out[a:b]) for link, (a, b) in zip(links, bounds)]
    remote = [i for i, x in enumerate(answers) if not isinstance(x, int)]
    for i, (params, version) in zip(remote, ray.get([answers[i] for i in remote])):
        a, b = bounds[i]
        out[a:b] = params
        answers[i] = version
    return answers


@ray.remote
class WorkerActor:
    """A :class:`~downpour.ps.worker.Worker` that fetches from the shard actors itself; with
    ``partitions`` (model parallelism) a replica whose filters live in those partition actors, which
    fetch and push their own shards (``ps.partitions_on_ray``)."""

    def __init__(self, cfg: RunConfig, wid: int, data: Any, bounds: list[tuple[int, int]], sync: bool, start_step: int,
                 seq: int, shards: list[Any], lanes: list[dict[str, Any] | None], threads: int,
                 partitions: list[Any] | None = None, shards_of: list[list[int]] | None = None):
        _quiet_readonly()
        torch.set_num_threads(threads)
        self.remote = None
        if partitions:
            from downpour.ps.partitions_on_ray import PartitionParams, remote_replica

            self.remote = PartitionParams(partitions, shards_of, bounds[-1][1])
            self.worker = make_worker(cfg, wid, data, bounds, sync, start_step, seq, params=self.remote)
            remote_replica(self.worker.model, partitions)
            return
        self.worker = make_worker(cfg, wid, data, bounds, sync, start_step, seq)
        self.links = [ShardLink(actor, ln, wid, b - a) for actor, ln, (a, b) in zip(shards, lanes, bounds)]
        self.fetched = torch.zeros(bounds[-1][1])   # (numel,) the parameters, gathered shard by shard

    def _fetch(self) -> None:
        w = self.worker
        if self.remote is not None:
            w.load([], self.remote.fetch(len(w.bounds)))
            return
        w.load([self.fetched], fetch_into(self.links, w.bounds, self.fetched.numpy()))

    def cycle(self, steps: int, stage: int | None) -> tuple:
        """Run ``steps`` training steps; returns per shard the gradient slice (None where it went
        into the shard's shared-memory inbox), then the push's metadata."""
        w = self.worker
        for _ in range(steps):
            if w.fetch_due():
                self._fetch()
            w.step(stage)
        push = w.take_push()
        staged = (push.grads if self.remote is not None     # the partitions staged their own slices
                  else [link.stage(g.numpy(), push.seq, b) for link, g, b in zip(self.links, push.grads, push.base)])
        meta = {"seq": push.seq, "base": push.base, "steps": push.steps, "samples": push.samples,
                "loss": push.loss, "parts": push.parts, "skipped": push.skipped, "inbox": [g is None for g in staged]}
        return (*staged, meta)

    def node(self) -> str:
        return _node()

    def data_report(self) -> dict[str, Any] | None:
        """Streamed data: the files this worker read and skipped (None in memory)."""
        return data_report(self.worker.batches)
