"""Downpour: the sharded asynchronous parameter server, its simulated cluster and its Ray runner.

Run one with :func:`downpour.ps.cluster.run_cluster` (what ``downpour train --runner simulated|ray``
calls); see docs/parameter-server.md. The pieces below are plain torch and usable alone; only the ``*_on_ray``
modules import Ray.
"""
import os

# Ray's driver folds its workers' log lines that differ only in words holding a digit into one line "[repeated Nx across
# cluster]": a stream's "skipped DIR/f0010.jpg: OSError: Truncated File Read" and f0500's and f0900's printed as one,
# naming one file of three. Off unless the user set it: Ray reads it as it is first imported, which
# every *_on_ray module (downpour.sandblaster's too) does after this package.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

from downpour.ps.compensation import make_compensation
from downpour.ps.consistency import make_consistency
from downpour.ps.delays import make_delays
from downpour.ps.rules import make_rule
from downpour.ps.shard import PushResult, Shard, shard_bounds

__all__ = ["Shard", "PushResult", "shard_bounds", "make_rule", "make_compensation", "make_consistency", "make_delays"]
