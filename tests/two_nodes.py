"""A real two-node Ray on this machine for a test module (``ray.cluster_utils.Cluster``: a head and one node, 1 CPU
each, a worker's, and 100 MiB of object store each), joined by address as a user's run joins a cluster::

    two_nodes = pytest.fixture(scope="module")(two_node_cluster)   # yields (cluster, node ids sorted)
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

STORE = 100 * 2 ** 20


def two_node_cluster(system_config: dict[str, Any] | None = None) -> Iterator[tuple[Any, list[str]]]:
    """The cluster and its nodes' ids sorted, as the placer counts them (cluster.json's node_ids); shut down after.
    ``system_config``: the head's ``_system_config`` (tests/test_ps_ray_nodes.py's FAST_DEATH: a crashed node dead in
    seconds)."""
    more = {"_system_config": system_config} if system_config else {}
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": STORE, **more})
    cluster.add_node(num_cpus=1, object_store_memory=STORE)
    cluster.wait_for_nodes()
    yield cluster, sorted(node.node_id for node in cluster.list_all_nodes())
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()
