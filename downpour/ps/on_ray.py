"""The Ray runner's actors: server shards and workers, and how bytes move between them. The
driver that runs them is :class:`~downpour.ps.cluster_on_ray.RayCluster`; Ray is imported only by
modules named *on_ray.py.

The driver follows Ray's parameter-server example: a ``{future: (kind, worker)}`` dict and
``ray.wait``. A worker actor runs one push cycle (fetch when due, ``n_push`` training steps),
stages its gradient and returns; only then does the driver tell the shards to apply it. So a
worker killed mid-cycle never half-pushes: its push reaches every shard once (the cycle returned)
or none (it did not), and the shards' sequence numbers reject a repeat, so none is applied twice.

The pieces, one a module: :mod:`downpour.ps.node_answers_on_ray` (what every actor answers about its node),
:mod:`downpour.ps.shards_on_ray` (the shard's actor, and how bytes move between it and the others: a worker's
:class:`ShardLink`, the driver's :class:`ShardPush`), :mod:`downpour.ps.worker_actor_on_ray` (the worker's actor).
This module re-exports them.

``cluster.address`` joins an existing cluster; empty starts a local Ray. Shards and workers are
placed round-robin over the cluster's nodes in the plan's layout, a node each where there are enough
(``connect_on_ray.spot``; where a node has no room left, Ray chooses).
"""
from downpour.ps.node_answers_on_ray import NodeAnswers
from downpour.ps.shards_on_ray import (INBOX_WAIT_SECONDS, RESTART_SECONDS, ShardActor, ShardLink, ShardPush,
                                       fetch_into, lanes_of)
from downpour.ps.worker_actor_on_ray import WorkerActor, params_as_views

__all__ = ["INBOX_WAIT_SECONDS", "RESTART_SECONDS", "NodeAnswers", "ShardActor", "ShardLink", "ShardPush",
           "WorkerActor", "fetch_into", "lanes_of", "params_as_views"]
