"""What every actor of a Ray run answers about where it runs (:class:`NodeAnswers`), and the two helpers each actor
uses as it starts: its node's id and the quieting of torch's warning about read-only object-store buffers."""
from __future__ import annotations

import warnings
from typing import Any

import ray

from downpour.ps.node_environments import start_report


def quiet_readonly() -> None:
    # object-store buffers are read-only; we only ever read them (or copy), so torch's warning is noise
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def this_node() -> str:
    return ray.get_runtime_context().get_node_id()


class NodeAnswers:
    """What every actor of a Ray run (a shard's, a worker's, a partition's; Sandblaster's shards' and workers') answers
    about where it runs."""

    def node(self) -> str:
        return this_node()

    def start_report(self) -> dict[str, Any]:
        """Its start's answer: its node and the install there (:mod:`downpour.ps.node_environments`), and its actor id
        (hex, Ray's public ``get_actor_id``), which a lost actor's ``RayActorError.actor_id`` names (Sandblaster's
        ``shard_lost``)."""
        return {**start_report(this_node()), "actor": ray.get_runtime_context().get_actor_id()}
