"""Where the Ray driver's actors go: a replica's partition actors started (model parallelism), and each actor's
node, at the start by the plan's layout and, for a replacement, as the actor it replaces, off a node gone since.

A mixin of :class:`~downpour.ps.cluster_on_ray.RayCluster`, which owns the state it reads (``setup``, ``pins``,
``place``, ``per_worker``, ``gpus``, ``threads``, ``node_cpus``, ``lanes``, ``shard_actors``, ``partition_actors``,
``silent_nodes``, ``_starting``).
"""
from __future__ import annotations

import logging
import os
from typing import Any

from ray.util.client import ray as client_ray

from downpour.ps.connect_on_ray import live_cpus, pinned, replacing, spot
from downpour.ps.reach import RAYLET_TIMEOUT_S, answers_at
from downpour.ps.seeds import partition_seed

log = logging.getLogger("downpour.ps.cluster_on_ray")   # the driver's logger: its records go where the driver's do


class Placing:
    """``RayCluster``'s half that places actors."""

    pins: dict[tuple[int, int | None], str | None]   # actor -> the node its latest incarnation was pinned to
    silent_nodes: set[str]
    partition_actors: dict[int, list[Any]]
    _starting: dict[int, tuple[Any, float]]

    def _threads(self, w: int, nodes: list[dict[str, Any]] | None) -> int:
        """The torch threads of worker ``w``'s actor (:func:`worker_threads`), placed already (:attr:`pins`);
        ``nodes``: ``ray.nodes()`` read at its restart (None: the start's, ``node_cpus``)."""
        if nodes is not None:
            self.node_cpus = live_cpus(nodes)
        n = self.setup.cfg.cluster.workers
        return worker_threads(self.threads, w, [self.pins.get((v, None)) for v in range(n)], self.node_cpus)

    def _spawn_partitions(self, w: int, name: str, nodes: list[dict[str, Any]] | None, step: int) -> list[Any]:
        """Worker ``w``'s K partition actors (model parallelism), started at ``step`` (their RNGs' seeds:
        :func:`~downpour.ps.seeds.partition_seed`), each linked to its own shards only;
        spread over the nodes like the shards (they need no CPU reserved: the replica waits on them); ``nodes``: as
        :meth:`_partition_places`'s."""
        options = self._partition_places(w, len(self.setup.shards_of), nodes)
        actors = [self._partition_actor(w, p, f"{name}-part{p}", options[p], step)
                  for p in range(len(self.setup.shards_of))]
        self.partition_actors[w] = actors
        return actors

    def _partition_actor(self, w: int, p: int, name: str, options: dict[str, Any], step: int) -> Any:
        """Worker ``w``'s partition ``p``, started at ``step``: at its worker's start, or alone in place of one that
        died (``ps.partition_restarts_on_ray``)."""
        from downpour.ps.partitions_on_ray import PartitionActor, stage_specs

        setup, shards = self.setup, self.setup.shards_of[p]
        return (PartitionActor.options(name=name, num_cpus=0, **options)
                .remote(w, p, stage_specs(setup.model, p), [self.shard_actors[j] for j in shards],
                        [self.lanes[j] for j in shards], [setup.bounds[j] for j in shards], setup.cfg.train.lr,
                        setup.cfg.cluster.n_fetch, partition_seed(setup.cfg.seed, w, p, step)))

    def _partition_places(self, w: int, k: int, nodes: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """The actor options of worker ``w``'s ``k`` partitions: round-robin over the nodes, the first actors of the
        plan's layout (:func:`~downpour.ps.connect_on_ray.spot`). A
        replacement's (``nodes``: the ``ray.nodes()`` its worker was placed by; None at the start) placed as the
        partitions they replace, over the nodes alive now (:meth:`_placed`): the start's placer, built from the
        nodes at the start, would pin them to a node lost since, where Ray never starts them (the replacement given
        up after RESTART_SECONDS, its survivors held up meanwhile). ``nodes``: the one ``ray.nodes()`` read of the
        worker's restart (``_spawn``), which places its partitions too: none is read again here."""
        return [self._partition_place(w, p, k, nodes) for p in range(k)]

    def _partition_place(self, w: int, p: int, k: int, nodes: list[dict[str, Any]] | None) -> dict[str, Any]:
        """The options of worker ``w``'s partition ``p`` of ``k``, with its siblings' (at a restart: alone, in place of
        one that died, its siblings kept: ``ps.partition_restarts_on_ray``)."""
        # one moved off a node gone avoids its siblings' (those placed already, those kept): else it could stack on
        # the node of one kept there, with a node free of them alive
        siblings = frozenset(self.pins.get((w, q)) for q in range(k) if q != p)
        n = self.setup.cfg.cluster.workers
        return self._placed((w, p), spot("partition", w * k + p, n, k), 0.0, nodes, siblings)

    def _placed(self, key: tuple[int, int | None], i: int, cpus: float, nodes: list[dict[str, Any]] | None,
                avoid: frozenset[str | None] = frozenset()) -> dict[str, Any]:
        """The options of actor ``key`` (of :attr:`pins`), which asks ``cpus``, ``i`` its index in the round-robin
        (:func:`~downpour.ps.connect_on_ray.spot`), and the node they pin it to in :attr:`pins`. At the start
        (``nodes`` None) the start's placer's (a GPU worker:
        Ray's); a replacement's (``nodes``: ``ray.nodes()`` read at its restart) placed as the actor it replaces
        (:func:`~downpour.ps.connect_on_ray.replacing`), said where that one's node is gone or does not answer
        (:func:`unanswered`)."""
        w, p = key
        if nodes is None:
            options = {} if p is None and self.gpus else self.place(i, cpus)
        else:
            before = self.pins[key]
            coming: dict[str, float] = {}    # the CPUs of the replacements pinned and not up yet, on each node
            for v in self._starting:
                if (node := self.pins.get((v, None))) is not None:
                    coming[node] = coming.get(node, 0.0) + self.per_worker
            silent = unanswered(before, nodes, self.silent_nodes)
            options = replacing(before, i, cpus, nodes, avoid, coming, silent)
            if before is not None and (silent or pinned(options) != before):
                what = f"worker {w}" if p is None else f"worker {w}'s partition {p}"
                now = pinned(options)
                where = ("left to Ray (one node alive, or none with its CPUs free)" if now is None else
                         f"pinned to node {now[:8]} still (no other node has its CPUs free)" if now == before else
                         f"pinned to node {now[:8]}")
                log.warning("%s's node %s %s: its replacement is %s", what, before[:8],
                            "does not answer (Ray lists it alive)" if silent else "is gone", where)
        self.pins[key] = pinned(options)
        return options


def unanswered(node: str | None, nodes: list[dict[str, Any]], silent: set[str]) -> bool:
    """Whether ``node``, which ``nodes`` (``ray.nodes()``) lists alive, does not answer: its raylet accepts no
    connection within :data:`~downpour.ps.reach.RAYLET_TIMEOUT_S`. A crashed node's actors show their loss in 2-3 s
    (``ActorUnavailableError``), and Ray lists the node alive until its health checks have failed (14 s on Ray 2.60's
    defaults): a replacement pinned there meanwhile dies coming up once Ray has the node dead, and is placed again
    (back 17.2 s after the crash against 4.8 s placed off it: bench/replacement_seconds.py). False where Ray lists no
    address for it, and on a Ray Client connection (ray://), whose driver may reach no node's private address (as
    ``connect_on_ray.head_answers``): asked nothing. ``silent``: the nodes found so already (added to here), asked no
    more while Ray lists them alive: the actors lost with one node ask once, not 2 s each where its machine answers
    nothing at all (the driver's loop waits meanwhile)."""
    if client_ray.is_connected():
        return False
    info = next((nd for nd in nodes if nd["NodeID"] == node and nd["Alive"]), None)
    if info is None or not info.get("NodeManagerAddress") or not info.get("NodeManagerPort"):
        return False
    if node in silent:
        return True
    if answers_at(info["NodeManagerAddress"], int(info["NodeManagerPort"]), RAYLET_TIMEOUT_S):
        return False
    silent.add(node)
    return True


def worker_threads(asked: int, w: int, pins: list[str | None], node_cpus: dict[str, float],
                   here: int | None = None) -> int:
    """Worker ``w``'s torch threads: ``asked`` (``train.threads``) where set; else, for a worker pinned to a node
    (``pins``: each worker's node, None where Ray chooses), that node's CPUs as Ray reports them (``node_cpus``) over
    the workers pinned there, at least 1; else (a one-node cluster, a GPU worker, a node without room at the start)
    this machine's cores (``here``, else ``os.cpu_count()``) over the workers, at least 1. Not this machine's cores for
    every worker: a node of 16 CPUs holding 2 of 4 workers, driven from a laptop of 4 cores, would run 1 thread each,
    not 8. A one-node run's workers are never pinned (:func:`~downpour.ps.connect_on_ray.placer`): this machine's
    cores over the workers."""
    if asked:
        return asked
    node = pins[w]
    if node is None or node not in node_cpus:
        return max(1, int(here or os.cpu_count() or 1) // len(pins))
    return max(1, int(node_cpus[node]) // sum(1 for p in pins if p == node))
