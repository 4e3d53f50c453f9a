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
An untied decoder (``model.decoder = 'untied'``) goes with its encoder: a partition owns its block's
decoder weights beside its filters (one vector, fetched and pushed together) and answers with their reconstruction; a
tiled stage's decoder banks (``model.shared_decoders``) are the replica's and lent as its encoder's are, to the calls
that decode (not a forward-only one: a greedy step's stages below the trained one, an evaluation).
The driver needs nothing of its own for them: a replica's cycle returns one gradient entry per shard, as a whole
worker's does.

This module is their public face; each part lives in a module of its own: the partition actor
(:mod:`~downpour.ps.partition_actor_on_ray`), the replica's view of a stage the partitions compute
(:mod:`~downpour.ps.remote_filter_on_ray`) and the replica's parameter backend
(:mod:`~downpour.ps.partition_params_on_ray`).
"""
from __future__ import annotations

from downpour.ps.partition_actor_on_ray import PartitionActor, stage_specs
from downpour.ps.partition_params_on_ray import PartitionParams
from downpour.ps.remote_filter_on_ray import RemoteFilter, remote_replica

__all__ = ["PartitionActor", "PartitionParams", "RemoteFilter", "remote_replica", "stage_specs"]
