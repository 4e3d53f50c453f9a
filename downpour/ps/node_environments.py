"""The install each node of a Ray run trains under, beside the driver's: environment.json's ``nodes``, and one warning
for each node whose package versions or downpour commit are not the driver's (Ray-free).

environment.json records the driver's install (:mod:`downpour.train.environment`); a worker or shard on another node
runs that node's Python, packages and checkout, which Ray does not check (another torch computes other floats). Every
actor answers its start's question (the one its placement is read from) with :func:`start_report`: its node and
:func:`~downpour.train.environment.environment`; :func:`node_environments` compares them with the driver's::

    reports = gathered([a.start_report.remote() for a in actors], ...)      # [{"node": id, "environment": {...}}, ...]
    placement, nodes = [r["node"] for r in reports], node_environments(reports, node_addresses())

``nodes`` lists every node an actor ran on, by its IP address (Ray's node id changes at every start of Ray, the
address does not: a resume on the same machines keeps the record as it was), each with the keys of its record that
are not the driver's, {} for a node that matches it: the record says which machines took part and that they matched,
and stays short. A node whose actors differ among themselves (a ``runtime_env``) is listed once a record ("10.0.0.5
(2 of 2)"); two nodes at one address (two raylets on one machine), each with its id's first 8 characters.

A worker or partition restarted mid-run answers its start's question too (``restarts_on_ray``,
``partition_restarts_on_ray``): where it came up on a node, or under an install, that no actor of the run had, the
driver computes ``nodes`` anew with its report among ``new`` (warned of as at the start; the others are not warned of
again) and rewrites environment.json's ``nodes`` (:func:`~downpour.train.environment.record_nodes`).
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from downpour._names import node_named
from downpour.train.environment import PACKAGES, environment

log = logging.getLogger("downpour.ps.node_environments")

# the keys a node's warning names: its code and the packages a run's bytes depend on (its CPU, OS and BLAS are
# recorded, not warned of: a cluster's machines often differ in them, as a resume's warning leaves them too)
WARNED = ("downpour", "commit", *PACKAGES)


def start_report(node: str) -> dict[str, Any]:
    """An actor's answer to its start's question, on ``node`` (Ray's node id, read by the actor). Asked of every
    actor, not once a node: one node's actors can differ (a ``runtime_env``: tests/test_ps_ray_lost_workers.py lists
    one node twice), and the call is cheap beside the actor's start (~2.4 CPU-s: docs/benchmarks.md#actor_start):
    its first call in a fresh actor that imported torch and downpour took 20-23 ms of wall, 12 ms of its CPU and 8
    ms of its three git calls' (5 actors one after another on a 2-CPU local Ray at load 8.4-8.8, 2026-12-07)."""
    return {"node": node, "environment": environment()}


def node_environments(reports: list[dict[str, Any]], addresses: dict[str, str], here: dict[str, Any] | None = None,
                      new: list[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """environment.json's ``nodes`` from the actors' :func:`start_report` ``reports``: per node (its IP address from
    ``addresses``, node id -> address; the id where Ray gives none) the keys of its record that differ from ``here``
    (the driver's, :func:`environment` by default); one WARNING for each node whose :data:`WARNED` keys differ.
    ``new``: restarted actors' reports, beside ``reports`` (warned of already): only a node, or a record on a node,
    that they bring is warned of."""
    here = environment() if here is None else here
    per_node: dict[str, dict[str, dict[str, Any]]] = {}     # node -> its records as text -> their differences
    for report in [*reports, *(new or [])]:
        record = report["environment"]
        per_node.setdefault(report["node"], {}).setdefault(
            _text(record), {k: v for k, v in record.items() if here.get(k) != v})
    warned = None if new is None else {(r["node"], _text(r["environment"])) for r in reports}
    named = {node: addresses.get(node) or node for node in per_node}
    at = Counter(named.values())
    nodes: dict[str, dict[str, Any]] = {}
    for node, records in per_node.items():
        name = named[node] if at[named[node]] == 1 else f"{named[node]} {node[:8]}"   # two raylets at one address
        for i, (text, differs) in enumerate(records.items()):
            if warned is None or (node, text) not in warned:
                _warn(node, differs, here, addresses)
            nodes[name if len(records) == 1 else f"{name} ({i + 1} of {len(records)})"] = differs
    return dict(sorted(nodes.items()))


def _text(record: dict[str, Any]) -> str:
    """A record as a key: two actors' records are one where their texts are."""
    return repr(sorted(record.items()))


def _warn(node: str, differs: dict[str, Any], here: dict[str, Any], addresses: dict[str, str]) -> None:
    """The warning of one node whose code or packages are not the driver's (none where they are)."""
    named = [f"{k} {differs[k]} (driver {here.get(k, 'not recorded')})" for k in WARNED if k in differs]
    if named:
        log.warning("%s runs other versions than the driver's install: %s; its actors compute under them, so the "
                    "run's floats need not match the same run on one install (recorded in environment.json's nodes)",
                    node_named(node, addresses), ", ".join(named))
