"""Downpour: the sharded asynchronous parameter server, its simulated cluster and its Ray runner.

Run one with :func:`downpour.ps.cluster.run_cluster` (what ``downpour train --runner simulated|ray``
calls); see docs/parameter-server.md. The pieces below are plain torch and usable alone; only
:mod:`downpour.ps.on_ray` imports Ray.
"""
from downpour.ps.compensation import make_compensation
from downpour.ps.consistency import make_consistency
from downpour.ps.delays import make_delays
from downpour.ps.rules import make_rule
from downpour.ps.shard import PushResult, Shard, shard_bounds

__all__ = ["Shard", "PushResult", "shard_bounds", "make_rule", "make_compensation", "make_consistency", "make_delays"]
