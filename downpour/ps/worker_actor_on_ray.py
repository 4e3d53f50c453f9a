"""A worker's actor (:class:`WorkerActor`): one push cycle a call (fetch when due, ``n_push`` training steps, the
gradient staged), each phase timed; and :func:`params_as_views`, which lets a fetch land in the model itself."""
from __future__ import annotations

import time
from typing import Any, Sequence

import ray
import torch
from torch import Tensor, nn

from downpour.config import RunConfig
from downpour.data.telemetry import data_report
from downpour.ps.channel import STOP, WorkerEnd
from downpour.ps.laps import Laps
from downpour.ps.node_answers_on_ray import NodeAnswers, quiet_readonly
from downpour.ps.seeds import seed_rng
from downpour.ps.setup import make_worker
from downpour.ps.shards_on_ray import ShardLink, fetch_into, lanes_of
from downpour.train.setup import stage_for_step


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
    (:func:`~downpour.ps.seeds.worker_rng`)."""

    def __init__(self, cfg: RunConfig, wid: int, data: Any, bounds: list[tuple[int, int]], gated: bool, start_step: int,
                 seq: int, shards: list[Any], lanes: list[Any], threads: int,
                 partitions: list[Any] | None = None, shards_of: list[list[int]] | None = None,
                 frozen: dict[str, Tensor] | None = None, rng: int | Tensor = 0):
        quiet_readonly()
        torch.set_num_threads(threads)
        seed_rng(cfg.seed, rng)        # what its training draws (ps.seeds.worker_rng): a sync run repeats
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
