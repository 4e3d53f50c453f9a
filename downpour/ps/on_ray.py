"""The Ray runner: server shards and workers as Ray actors (Ray is imported only by modules named *on_ray.py).

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

import logging
import os
import socket
import uuid
import warnings
from typing import Any, Callable

import numpy as np
import ray
import torch
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from downpour.config import RunConfig
from downpour.errors import RunError
from downpour.ps import shm
from downpour.ps.checkpoint import ShardState
from downpour.ps.recorder import ShardLost
from downpour.ps.shm import SHM_DIR
from downpour.ps.coordinator import Coordinator
from downpour.ps.doorbell import Bell
from downpour.ps.setup import ClusterSetup, make_worker
from downpour.ps.shard import Shard
from downpour.ps.shard_server import ShardServer
from downpour.ps.worker import OnPush, Push, push_record

log = logging.getLogger(__name__)


def sweep_stale_segments() -> int:
    """Remove /dev/shm/downpour-<pid>-* files whose driver process (``pid``) is gone: what a
    driver killed by SIGKILL leaves behind. Returns how many were removed."""
    removed = 0
    for path in SHM_DIR.glob("downpour-*"):
        pid = path.name.split("-")[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            removed += 1
        except PermissionError:
            pass                 # another user's live process
    return removed


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


CONNECT_TIMEOUT_S = 10.0


def _reachable(address: str, timeout: float) -> None:
    """Raise RunError unless ``host:port`` (``ray://host:port`` too) accepts a TCP connection within
    ``timeout``: ``ray.init`` itself waits minutes on an address nobody answers."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return                   # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise RunError(f"cannot reach the Ray cluster at cluster.address={address!r} within {timeout:g} s "
                       f"({type(err).__name__}: {err}); is its head node running (`ray start --head`)?") from None


def connect(address: str) -> bool:
    """Join ``address`` or start a local Ray; returns True when this call started Ray.

    A plain run always starts its own local Ray (``address="local"``), so a stale
    /tmp/ray/ray_current_cluster left by a killed head, or a RAY_ADDRESS in the environment, does
    not redirect it. Joining fails in one line, within :data:`CONNECT_TIMEOUT_S`, when nobody answers."""
    if ray.is_initialized():
        return False
    if not address:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True)
        return True
    _reachable(address, CONNECT_TIMEOUT_S)
    try:
        ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as err:   # e.g. a token-protected cluster without the token
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"could not join the Ray cluster at cluster.address={address!r}: {first} "
                       "(a cluster started with authentication needs its token in this environment: see "
                       "docs/parameter-server.md#faults)") from None
    return True


def _placer(nodes_info: list[dict[str, Any]]) -> Callable[[int, float], dict[str, Any]]:
    """Round-robin over the nodes. Pinned (hard affinity: Ray's soft affinity ignores the node for
    actors that need no CPU) only where the node has room; otherwise Ray chooses."""
    node_cpus = {nd["NodeID"]: nd["Resources"].get("CPU", 0) for nd in nodes_info if nd["Alive"]}
    nodes = sorted(k for k, c in node_cpus.items() if c > 0)
    load: dict[str, float] = {}

    def place(i: int, cpus: float) -> dict[str, Any]:
        if len(nodes) < 2:
            return {}
        node = nodes[i % len(nodes)]
        if load.get(node, 0.0) + cpus > node_cpus[node]:
            return {}
        load[node] = load.get(node, 0.0) + cpus
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}

    return place


class RayCluster:
    """The Ray driver, shaped like :class:`~downpour.ps.simulated.SimulatedCluster`: built with the
    cluster's setup and restored shards, it starts Ray (or joins ``cluster.address``), one actor per
    shard and per worker; :meth:`run` drives the coordinator's budget; :meth:`close` kills every actor
    and removes the shared memory, whatever happened, so nothing is left running on a shared cluster.

    The driving loop is Ray's parameter-server example: ``pending`` maps each future to what it
    is (a worker's cycle, or the shards' answers to a push), and ``ray.wait`` takes the next one.
    """

    def __init__(self, setup: ClusterSetup, shards: list[Shard], coord: Coordinator,
                 stage_of: Callable[[int], int | None], start_step: int = 0, seqs: dict[int, int] | None = None,
                 start_time: float = 0.0):
        cfg = setup.cfg
        self.setup, self.coord, self.stage_of = setup, coord, stage_of
        self.restarts = cfg.cluster.restarts            # restarts left
        self.next_seq = dict(seqs or {})                 # per worker, one past the last push the driver received
        self.shard_actors: list[Any] = []
        self.worker_actors: list[Any] = []
        self.partition_actors: dict[int, list[Any]] = {}   # model parallelism: each worker's partitions
        self.pusher: ShardPush | None = None
        self.started = connect(cfg.cluster.address)
        self._incarnation = [0] * cfg.cluster.workers
        self._pending: dict[Any, tuple[str, int]] = {}   # future -> ("cycle" | "push", worker)
        self._grads: dict[Any, list[Any]] = {}           # a cycle's metadata ref -> its gradient refs
        self._owner: dict[Any, Any] = {}                 # a cycle's metadata ref -> the worker actor running it
        self._pushes: dict[Any, tuple[list[Any], dict[str, Any]]] = {}   # last answer ref -> (all answers, metadata)
        self._blocked: set[int] = set()
        try:
            self._start(shards, start_step)
        except BaseException:
            self.close()
            raise

    # -- actors -----------------------------------------------------------------------------------
    def _start(self, shards: list[Shard], start_step: int) -> None:
        """Shard actors, then worker actors (which learn the shards' shared-memory lanes)."""
        cfg, n = self.setup.cfg, self.setup.cfg.cluster.workers
        sweep_stale_segments()
        self.run_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"   # the driver's pid: what the sweep checks
        self.per_worker = min(1.0, float(ray.cluster_resources().get("CPU", 1.0)) / n)  # 8 workers still fit on 2 cores
        self.threads = cfg.train.threads or max(1, int(os.cpu_count() or 1) // n)
        self.place = _placer(ray.nodes())
        for j, s in enumerate(shards):
            self.shard_actors.append(ShardActor.options(name=f"downpour-{self.run_id}-shard{j}", num_cpus=0,
                                                        **self.place(j, 0.0))
                                     .remote(s, f"/dev/shm/downpour-{self.run_id}", n))
        self.lanes = ray.get([a.lanes.remote() for a in self.shard_actors])
        for w in range(n):
            self.worker_actors.append(self._spawn(w, self.next_seq.get(w, 0), start_step))
        self.pusher = ShardPush(self.shard_actors, self.lanes)
        self.placement = {"shards": ray.get([a.node.remote() for a in self.shard_actors]),
                          "workers": ray.get([a.node.remote() for a in self.worker_actors])}  # every actor is up
        if self.partition_actors:   # worker w's partitions, in order: w*K .. w*K + K-1
            self.placement["partitions"] = ray.get([a.node.remote() for w in sorted(self.partition_actors)
                                                    for a in self.partition_actors[w]])

    def _spawn(self, w: int, seq: int, step: int) -> Any:
        """Start (or restart: new name, new inboxes, wherever Ray finds room) worker ``w``'s actor."""
        setup = self.setup
        name, options = f"downpour-{self.run_id}-worker{w}", self.place(w, self.per_worker)
        if self._incarnation[w]:
            name, options = f"{name}-restart{self._incarnation[w]}", {}
            self.lanes[:] = ray.get([a.new_inbox.remote(w, self._incarnation[w]) for a in self.shard_actors])
        self._incarnation[w] += 1
        n = setup.cfg.cluster.workers
        parts = self._spawn_partitions(w, name) if setup.cfg.cluster.partitions > 1 else None
        return (WorkerActor.options(name=name, num_cpus=self.per_worker, **options)
                .remote(setup.cfg, w, setup.data.shard(w, n), setup.bounds, setup.gate.sync, step, seq,
                        self.shard_actors, self.lanes, self.threads, parts, setup.shards_of))

    def _spawn_partitions(self, w: int, name: str) -> list[Any]:
        """Worker ``w``'s K partition actors (model parallelism), each linked to its own shards only;
        spread over the nodes like the shards (they need no CPU reserved: the replica waits on them)."""
        from downpour.ps.partitions_on_ray import PartitionActor, stage_specs

        setup, c = self.setup, self.setup.cfg.cluster
        for old in self.partition_actors.get(w, []):
            ray.kill(old)
        actors = [PartitionActor.options(name=f"{name}-part{p}", num_cpus=0, **self.place(w * c.partitions + p, 0.0))
                  .remote(w, p, stage_specs(setup.model, p), [self.shard_actors[j] for j in shards],
                          [self.lanes[j] for j in shards], [setup.bounds[j] for j in shards], setup.cfg.train.lr,
                          c.n_fetch)
                  for p, shards in enumerate(setup.shards_of)]
        self.partition_actors[w] = actors
        return actors

    def _set_live(self) -> None:   # waited for, so no worker fetches before the shards know who is live
        ray.get([a.set_workers.remote(sorted(self.coord.live)) for a in self.shard_actors])

    def _dead_shards(self) -> list[int]:
        """The shards whose actor no longer answers (asked after a failure, to tell a lost shard,
        which every worker's next fetch trips over, from a lost worker)."""
        dead = []
        for j, a in enumerate(self.shard_actors):
            try:
                ray.get(a.node.remote(), timeout=10)
            except (RayError, ray.exceptions.GetTimeoutError):
                dead.append(j)
        return dead

    def _shard_lost(self, err: BaseException) -> None:
        """Raise :class:`ShardLost` if a shard died (``err`` the failure that showed it); else return."""
        dead = self._dead_shards()
        if dead:
            raise ShardLost(f"shard {', '.join(map(str, dead))} lost at step {self.coord.done} "
                            f"({type(err).__name__})") from err

    # -- the driving loop ---------------------------------------------------------------------------
    def _dispatch(self, w: int) -> None:
        k = self.coord.begin_cycle(w)
        if k == 0:
            self._blocked.add(w)
            return
        self._blocked.discard(w)
        m = len(self.shard_actors)
        refs = self.worker_actors[w].cycle.options(num_returns=m + 1).remote(k, self.stage_of(self.coord.dispatched - k))
        self._grads[refs[m]] = refs[:m]
        self._owner[refs[m]] = self.worker_actors[w]
        self._pending[refs[m]] = ("cycle", w)

    def _applied(self, w: int, results: list[dict[str, Any]], meta: dict[str, Any], on_push: OnPush) -> None:
        """Every shard answered push ``meta["seq"]`` of worker ``w``: record it, dispatch who may go on."""
        joined = self.coord.end_cycle(w, meta["steps"])
        if joined:
            self._set_live()
        push = Push(w, meta["seq"], [], meta["base"], meta["steps"], meta["samples"], meta["loss"], meta["parts"],
                    meta["skipped"], meta["clock_gap"])
        on_push(push, push_record(results, meta["clock_gap"]))
        for v in sorted(self._blocked | set(joined) | {w}):
            self._dispatch(v)

    def _lost(self, w: int, err: Exception) -> None:
        """Worker ``w``'s actor died: its push never left, so nothing of it is applied. Restart it
        if ``cluster.restarts`` allows, and let the others go on."""
        self.coord.lose(w, type(err).__name__)
        log.warning("worker %d lost at step %d: %s", w, self.coord.done, type(err).__name__)
        if self.restarts > 0 and self.coord.dispatched < self.coord.total:
            self.restarts -= 1
            self.worker_actors[w] = self._spawn(w, self.next_seq.get(w, 0), self.coord.done)
            ray.get(self.worker_actors[w].node.remote())
            self.coord.rejoin(w)
            log.warning("worker %d restarted", w)
        self._set_live()
        for _ in range(self.coord.depth):
            for v in sorted(self._blocked | {w}):
                self._dispatch(v)

    def _cycle_done(self, ref: Any, w: int, on_push: OnPush) -> None:
        actor = self._owner.pop(ref)
        grads = self._grads.pop(ref, None)
        current = w in self.coord.live and actor is self.worker_actors[w]
        try:
            meta = ray.get(ref)
        except RayError as err:
            if current:          # (else another queued cycle of the same dead actor: already handled)
                self._shard_lost(err)   # a dead shard fails every worker's fetch: not the worker's loss
                self._lost(w, err)
            return
        if not current:
            # a cycle that finished just as its actor died, reported after the loss: the loss
            # already gave its steps back, so it is dropped (not applied at all)
            return
        self.coord.end_compute(w)
        meta["clock_gap"] = self.coord.gaps[w]
        self.next_seq[w] = meta["seq"] + 1
        # rung shards have applied it when this returns; the others answer with object refs
        assert self.pusher is not None
        answers = self.pusher.apply(w, meta["seq"], meta["base"], grads, meta["inbox"])
        self._dispatch(w)                      # async: compute the next cycle while this push is applied
        refs = [x for x in answers if not isinstance(x, dict)]
        if not refs:
            self._applied(w, answers, meta, on_push)
            return
        self._pushes[refs[-1]] = (answers, meta)
        self._pending[refs[-1]] = ("push", w)  # each shard runs the driver's calls in order; wait on all below

    def run(self, on_push: OnPush) -> None:
        """Dispatch cycles, hand finished gradients to the shards (by doorbell where it can), record
        each push, and restart up to ``cluster.restarts`` lost workers, until the budget is done."""
        for _ in range(self.coord.depth):
            for w in sorted(self.coord.live):
                self._dispatch(w)
        while self._pending:
            ready, _ = ray.wait(list(self._pending), num_returns=1)
            kind, w = self._pending.pop(ready[0])
            try:
                if kind == "cycle":
                    self._cycle_done(ready[0], w, on_push)
                else:
                    answers, meta = self._pushes.pop(ready[0])
                    self._applied(w, ShardPush.results(answers), meta, on_push)
            except ShardLost:
                raise
            except (RayError, ConnectionError, OSError) as err:   # a closed doorbell, a shard call that failed
                self._shard_lost(err)
                raise

    # -- the driver protocol's other half -----------------------------------------------------------
    def snapshot(self) -> list[ShardState]:
        """The shards' states now (after :meth:`run`: final, a partial sync round flushed)."""
        return ray.get([a.state_dict.remote() for a in self.shard_actors], timeout=60)

    def meta(self) -> dict[str, Any]:
        return {}

    def info(self) -> dict[str, Any]:
        nodes = sorted(set(self.placement["shards"]) | set(self.placement["workers"]))
        return {"nodes": len(nodes), "placement": {k: [nodes.index(x) for x in v] for k, v in self.placement.items()}}

    def close(self) -> None:
        """Best effort (Ray itself may be going down); safe to call twice."""
        if self.pusher is not None:
            self.pusher.close()
        if self.shard_actors:
            try:
                ray.get([a.close.remote() for a in self.shard_actors], timeout=30)
            except Exception:  # noqa: BLE001
                log.warning("a shard could not remove its shared memory (/dev/shm/downpour-*)")
        parts = [a for actors in self.partition_actors.values() for a in actors]
        for a in (*self.worker_actors, *parts, *self.shard_actors):
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        self.shard_actors, self.worker_actors, self.partition_actors, self.pusher = [], [], {}, None
        for path in SHM_DIR.glob(f"downpour-{getattr(self, 'run_id', '-')}-*"):   # what a dead shard left here
            path.unlink(missing_ok=True)
        if self.started:
            ray.shutdown()
            self.started = False
