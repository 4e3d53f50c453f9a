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
placed round-robin over the cluster's nodes in the plan's layout, a node each where there are enough
(``connect_on_ray.spot``; where a node has no room left, Ray chooses).
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import ray
import torch
from torch import Tensor, nn

from downpour.config import RunConfig
from downpour.data.pipeline import data_report
from downpour.ps import shm
from downpour.ps.channel import STOP, WorkerEnd
from downpour.ps.doorbell import Bell
from downpour.ps.laps import Laps
from downpour.ps.node_environments import start_report
from downpour.ps.setup import make_worker, seed_rng
from downpour.ps.shard import Shard
from downpour.ps.shard_server import ShardServer
from downpour.train.setup import stage_for_step

RESTART_SECONDS = 120   # how long a restarted worker's actor has to come up; longer: the run goes on without it
# A worker's wait for its previous push to leave a shard's inbox. The driver rings the shards to take
# pushes; when it waited for a restarted worker (up to RESTART_SECONDS) it rang none, and at 60 s every
# survivor timed out and was lost with it ("every worker was lost"). It no longer waits
# (downpour/ps/restarts_on_ray.py); the margin stays for a driver held up some other way.
INBOX_WAIT_SECONDS = RESTART_SECONDS + 60


def _quiet_readonly() -> None:
    # object-store buffers are read-only; we only ever read them (or copy), so torch's warning is noise
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


class NodeAnswers:
    """What every actor of a Ray run (a shard's, a worker's, a partition's; Sandblaster's shards' and workers') answers
    about where it runs."""

    def node(self) -> str:
        return _node()

    def start_report(self) -> dict[str, Any]:
        """Its start's answer: its node and the install there (:mod:`downpour.ps.node_environments`), and its actor id
        (hex, Ray's public ``get_actor_id``), which a lost actor's ``RayActorError.actor_id`` names (Sandblaster's
        ``shard_lost``)."""
        return {**start_report(_node()), "actor": ray.get_runtime_context().get_actor_id()}


@ray.remote
class ShardActor(ShardServer, NodeAnswers):
    """A :class:`~downpour.ps.shard_server.ShardServer` (a shard with shared-memory lanes and a
    doorbell where it can have them) in its own process. Workers on this node use the lanes,
    workers elsewhere the object store."""

    def __init__(self, shard: Shard, lane_prefix: str = "", workers: int = 0):
        _quiet_readonly()
        torch.set_num_threads(1)
        super().__init__(shard, lane_prefix, workers)

    def again(self, shard: Shard, lane_prefix: str = "", workers: int = 0) -> dict[str, Any] | None:
        """Become a new actor's shard, kept from a run that ended (:mod:`downpour.ps.keeping_on_ray`): the old one's
        shared memory and doorbell gone, its state cleared, built as a new actor is; returns :meth:`lanes`."""
        super().close()
        self.__dict__.clear()
        self.__init__(shard, lane_prefix, workers)
        return self.lanes()

    def lanes(self) -> dict[str, Any] | None:
        lanes = super().lanes()
        return None if lanes is None else {**lanes, "node": _node()}


class ShardLink:
    """One shard as a worker (or a benchmark client) on some node sees it: shared memory when the
    shard lives on the same node, the object store otherwise."""

    def __init__(self, actor: Any, lanes: dict[str, Any] | None, wid: int, n: int):
        self.actor, self.n, self.wid = actor, n, wid
        local = lanes is not None and lanes["node"] == _node()
        self.params = shm.Segment(lanes["params"], n) if local else None
        self.inbox = shm.Segment(lanes["inbox"][wid], n, writer=True) if local else None

    def pull_into(self, out: np.ndarray) -> Any:
        """Copy the parameters into ``out`` (n,) and return the version, or return an object ref to
        ``(params, version)`` to be fetched (the caller batches those)."""
        if self.params is not None:
            return self.params.read_into(out)
        return self.actor.pull.remote(self.wid)   # the shard notes the pull (DC-ASGD keeps a copy)

    def stage(self, grad: np.ndarray, seq: int, base: int, stages: tuple[int, ...] | None = None) -> np.ndarray | None:
        """Leave ``grad`` in the inbox, with the greedy ``stages`` the push trained (returns None), or hand it
        back to travel by the object store (the driver then passes the stages with it)."""
        if self.inbox is None:
            return grad
        self.inbox.put(grad, seq, base, timeout=INBOX_WAIT_SECONDS, stages=stages)
        return None


def lanes_of(lanes: Sequence[Any]) -> list[dict[str, Any] | None]:
    """Per shard its lanes, as :meth:`ShardActor.lanes` returns them: ``lanes`` itself, or, where the driver handed
    an actor it started beside the shards their answers to come (object refs: ``starting_on_ray``'s start), those
    answers, waited for here. A shard answers once it is built, holding the weights, so an actor that links to
    the shards through this fetches nothing before they hold them (the start's order kept by this wait, not by the
    driver's starting the shards first)."""
    refs = [x for x in lanes if isinstance(x, ray.ObjectRef)]
    got = iter(ray.get(refs) if refs else ())
    return [next(got) if isinstance(x, ray.ObjectRef) else x for x in lanes]


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

    def apply(self, w: int, seq: int, bases: list[int], grads: list[Any], inbox: list[bool],
              meanwhile: Callable[[], None] | None = None, stages: tuple[int, ...] | None = None) -> list[Any]:
        """Per shard the result dict (rung shards: every bell rung first, then every answer read,
        so the shards apply in parallel) or an object ref to it (the caller waits on those).
        ``meanwhile`` is called once every shard has been told, before any answer is read. ``stages``: the
        greedy stages the push trained, for a gradient that travels by the object store (a staged one has
        them in its inbox)."""
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
                out.append(actor.push.remote(w, g, base, seq, stages))
        if meanwhile is not None:
            meanwhile()
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


def params_as_views(model: nn.Module, names: Sequence[str], offsets: Sequence[int], vec: Tensor) -> bool:
    """Make ``model``'s parameters ``names`` views of their slices of ``vec`` (numel,) at ``offsets``
    (their values copied in), so parameters fetched into ``vec`` are in the model already: the worker's
    load then copies each slice onto itself, which torch skips (the version counters still move, so
    caches keyed on them see the change). One 4-bytes-a-parameter copy less per fetch. Only where
    every parameter is contiguous float32 on ``vec``'s device (a GPU replica's would have moved to
    the CPU); returns whether it did."""
    named = dict(model.named_parameters())
    params = [named[n] for n in names]
    if any(p.dtype != torch.float32 or not p.is_contiguous() or p.device != vec.device for p in params):
        return False
    with torch.no_grad():
        for p, off in zip(params, offsets):
            view = vec[off:off + p.numel()].view_as(p)
            view.copy_(p)
            p.data = view
    return True


class _TimedParams:
    """A worker's :class:`~downpour.ps.worker.LocalParams` with its two per-step copies timed: the
    fetched vector into the model (``fetch_load``) and the step's gradients into the push
    (``grad_flatten``, part of the ``step`` phase)."""

    def __init__(self, inner: Any, laps: Laps):
        self.inner, self.laps, self.numel = inner, laps, inner.numel

    def load(self, slices: Sequence[Tensor]) -> None:
        t = time.perf_counter()
        self.inner.load(slices)
        self.laps.add("fetch_load", t)

    def add_grads(self) -> None:
        t = time.perf_counter()
        self.inner.add_grads()
        self.laps.add("grad_flatten", t)

    def discard(self) -> None:
        self.inner.discard()

    def take(self, bounds: Sequence[tuple[int, int]], seq: int, base: Sequence[int],
             stages: tuple[int, ...] | None = None) -> list[Tensor]:
        return self.inner.take(bounds, seq, base, stages)


@ray.remote
class WorkerActor(NodeAnswers):
    """A :class:`~downpour.ps.worker.Worker` that fetches from the shard actors itself; with
    ``partitions`` (model parallelism) a replica whose filters live in those partition actors, which
    fetch and push their own shards (``ps.partitions_on_ray``).

    Its :class:`~downpour.ps.laps.Laps` time each phase of a cycle (``fetch_read``: shared memory or
    object store into the fetch buffer; ``fetch_load``: that buffer into the model; ``step``: the
    training step with its ``grad_flatten``; ``push_copy``: the gradient into the inboxes;
    ``between_cycles``: from returning a cycle to starting the next, Ray's hand-off and any wait
    for the driver); :meth:`profile` reports them. ``rng``: what it seeds torch's RNG from
    (:func:`~downpour.ps.setup.worker_rng`)."""

    def __init__(self, cfg: RunConfig, wid: int, data: Any, bounds: list[tuple[int, int]], gated: bool, start_step: int,
                 seq: int, shards: list[Any], lanes: list[Any], threads: int,
                 partitions: list[Any] | None = None, shards_of: list[list[int]] | None = None,
                 frozen: dict[str, Tensor] | None = None, rng: int | Tensor = 0):
        _quiet_readonly()
        torch.set_num_threads(threads)
        seed_rng(cfg.seed, rng)        # what its training draws (ps.setup.worker_rng): a sync run repeats
        self.laps, self._returned = Laps(), 0.0     # perf_counter when the last cycle returned (0: none yet)
        self.remote = None
        self._schedule = (cfg.train.steps, cfg.train.schedule)
        if partitions:
            from downpour.ps.partitions_on_ray import PartitionParams, remote_replica

            self.remote = PartitionParams(partitions, shards_of, bounds[-1][1])
            self.worker = make_worker(cfg, wid, data, bounds, gated, start_step, seq, params=self.remote, frozen=frozen)
            remote_replica(self.worker.model, partitions)
            self.remote.link_shared(self.worker.model, wid, shards, lanes_of(lanes), bounds, cfg.train.lr,
                                    cfg.cluster.n_fetch)
            return
        self.worker = make_worker(cfg, wid, data, bounds, gated, start_step, seq, frozen=frozen)
        self.links = [ShardLink(actor, ln, wid, b - a) for actor, ln, (a, b) in zip(shards, lanes_of(lanes), bounds)]
        self.fetched = torch.zeros(bounds[-1][1])   # (numel,) the parameters, gathered shard by shard
        layout = self.worker.params.layout
        self.laps.count("params_as_views", params_as_views(self.worker.model, layout.names, layout.offsets, self.fetched))
        self.worker.params = _TimedParams(self.worker.params, self.laps)

    def again(self, *args: Any) -> dict[str, Any]:
        """Become a new actor's worker, built with ``args`` (``__init__``'s), kept from a run that ended
        (:mod:`downpour.ps.keeping_on_ray`): its state cleared (the run's replica, data, laps and shared-memory links
        let go), torch's threads and RNG set as a new actor sets them; returns :meth:`start_report`."""
        self.__dict__.clear()
        self.__init__(*args)
        return self.start_report()

    def replace_partition(self, p: int, actor: Any) -> int:
        """Partition ``p`` died and ``actor`` replaces it (``ps.partition_restarts_on_ray``): the failed cycle's push
        is dropped, and the next step fetches, which fills the new partition's filters from its shards. Returns the
        dropped push's seq (the next push's), whose slices staged already the shards drop (``drop_inbox``)."""
        self.remote.replace(self.worker.model, p, actor)
        self.worker.drop_push()
        return self.worker.seq

    def _stage_of(self, step: int) -> int | None:
        """The greedy stage the run's step ``step`` trains (None: every stage), as the simulator's driver asks."""
        total, schedule = self._schedule
        return stage_for_step(step, total, self.worker.model.n_stages, schedule)

    def _fetch(self) -> None:
        w = self.worker
        if self.remote is not None:
            w.load([], self.remote.fetch(len(w.bounds)))
            return
        t = time.perf_counter()
        versions = fetch_into(self.links, w.bounds, self.fetched.numpy())
        self.laps.add("fetch_read", t)
        w.load([self.fetched], versions)

    def cycle(self, steps: int, first: int) -> tuple:
        """Run ``steps`` training steps, the run's steps ``first``, ``first + 1``, ... (each trains its
        greedy stage, so a cycle across a stage switch switches with it, as on the simulator); returns
        per shard the gradient slice (None where it went into the shard's shared-memory inbox), then
        the push's metadata."""
        w, laps = self.worker, self.laps
        if self._returned:
            laps.add("between_cycles", self._returned)
        else:
            laps.mark()          # CPU from the first cycle on: start-up (data, model) left out
        for i in range(steps):
            stage = self._stage_of(first + i)
            if w.fetch_due(stage):
                self._fetch()
            t = time.perf_counter()
            w.step(stage)
            laps.add("step", t)
        t = time.perf_counter()
        push = w.take_push()
        staged = (push.grads if self.remote is not None     # the partitions staged their own slices
                  else [link.stage(g.numpy(), push.seq, b, push.stages)
                        for link, g, b in zip(self.links, push.grads, push.base)])
        meta = {"seq": push.seq, "base": push.base, "steps": push.steps, "samples": push.samples, "stages": push.stages,
                "loss": push.loss, "parts": push.parts, "skipped": push.skipped, "inbox": [g is None for g in staged]}
        laps.add("push_copy", t)
        laps.count("cycles")
        laps.count("steps", steps)
        self._returned = time.perf_counter()
        return (*staged, meta)

    def serve(self, go: str, done: str) -> int:
        """Run the cycles the driver grants over its channel (:mod:`downpour.ps.channel`), reporting
        each push's metadata there, until it says stop; returns the cycles run. For a worker whose
        every shard has an inbox here (nothing returned by object ref); the driver's other calls
        (``profile``, ``data_report``) wait until this returns."""
        end, cycles = WorkerEnd(go, done), 0
        try:
            while True:
                steps, first = end.next_grant()
                if steps == STOP:
                    return cycles
                *staged, meta = self.cycle(steps, first)
                assert all(meta["inbox"]), "a served worker stages every push in the shards' inboxes"
                if not end.report(meta):   # the driver closed its end (a stop): nothing to report to
                    return cycles
                cycles += 1
        finally:
            end.close()

    def profile(self) -> dict[str, Any]:
        """This worker's :class:`~downpour.ps.laps.Laps` report (phase seconds, cycles, steps, CPU seconds
        since its first cycle) and ``until``, when its last cycle returned (``perf_counter``)."""
        return {**self.laps.report(), "until": self._returned}

    def device(self) -> dict[str, Any]:
        """Where this worker computes: its replica's device, and the GPU ids Ray gave it ([] for none).
        A model-parallel replica holds no parameters (its partition actors do, on CPU)."""
        first = next(self.worker.model.parameters(), None)
        return {"device": "cpu" if first is None else str(first.device), "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def buffers(self) -> dict[str, Tensor]:
        """Its replica's buffers (:meth:`~downpour.ps.worker.Worker.buffers`: an RBM's persistent chains)."""
        return self.worker.buffers()

    def data_report(self) -> dict[str, Any] | None:
        """Streamed data: the files this worker read and skipped (None in memory)."""
        return data_report(self.worker.batches)
