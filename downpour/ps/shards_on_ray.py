"""A shard's actor (:class:`ShardActor`) and how the others reach it: a worker's :class:`ShardLink` (pulls, staged
pushes), the driver's :class:`ShardPush` (has the shards apply a staged push).

How the bytes move:

- same node (the common case, and all of a local Ray): the shard's parameters and one inbox per
  worker live in shared memory (:mod:`downpour.ps.shm`). A pull is one memcpy out of the shard's
  segment; a push is one memcpy into the inbox, then the driver tells the shard to apply it: by
  its doorbell (:mod:`downpour.ps.doorbell`, a named pipe: no actor call) when the driver is on
  the shard's node, by a tiny ``push_inbox`` call otherwise (:class:`ShardPush`).
- different nodes: a pull returns the NumPy slice through Ray's object store, and the gradient
  slice the cycle returned is an object ref the driver passes to ``push``: Ray's object manager
  moves it between machines, and on the receiving node it is read zero-copy from the store.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import ray
import torch

from downpour.ps import shm
from downpour.ps.doorbell import Bell
from downpour.ps.node_answers_on_ray import NodeAnswers, quiet_readonly, this_node
from downpour.ps.shard import Shard
from downpour.ps.shard_server import ShardServer

RESTART_SECONDS = 120   # how long a restarted worker's actor has to come up; longer: the run goes on without it
# A worker's wait for its previous push to leave a shard's inbox. The driver rings the shards to take
# pushes; waiting for a restarted worker (up to RESTART_SECONDS) it would ring none, and at 60 s every
# survivor would time out and be lost with it ("every worker was lost"). It does not wait so
# (downpour/ps/restarts_on_ray.py); the margin is for a driver held up some other way.
INBOX_WAIT_SECONDS = RESTART_SECONDS + 60


@ray.remote
class ShardActor(ShardServer, NodeAnswers):
    """A :class:`~downpour.ps.shard_server.ShardServer` (a shard with shared-memory lanes and a
    doorbell where it can have them) in its own process. Workers on this node use the lanes,
    workers elsewhere the object store."""

    def __init__(self, shard: Shard, lane_prefix: str = "", workers: int = 0):
        quiet_readonly()
        torch.set_num_threads(1)
        super().__init__(shard, lane_prefix, workers)

    def again(self, shard: Shard, lane_prefix: str = "", workers: int = 0) -> dict[str, Any] | None:
        """Become a new actor's shard, kept from a run that ended (:mod:`downpour.ps.keeping_on_ray`): the old one's
        shared memory and doorbell gone, its state cleared, built as a new actor is; returns :meth:`lanes`."""
        super().close()
        self.__dict__.clear()
        self.__init__(shard, lane_prefix, workers)
        return self.lanes()

    def lanes(self) -> dict[str, Any] | None:
        lanes = super().lanes()
        return None if lanes is None else {**lanes, "node": this_node()}


class ShardLink:
    """One shard as a worker (or a benchmark client) on some node sees it: shared memory when the
    shard lives on the same node, the object store otherwise."""

    def __init__(self, actor: Any, lanes: dict[str, Any] | None, wid: int, n: int):
        self.actor, self.n, self.wid = actor, n, wid
        local = lanes is not None and lanes["node"] == this_node()
        self.params = shm.Segment(lanes["params"], n) if local else None
        self.inbox = shm.Segment(lanes["inbox"][wid], n, writer=True) if local else None

    def pull_into(self, out: np.ndarray) -> Any:
        """Copy the parameters into ``out`` (n,) and return the version, or return an object ref to
        ``(params, version)`` to be fetched (the caller batches those)."""
        if self.params is not None:
            return self.params.read_into(out)
        return self.actor.pull.remote(self.wid)   # the shard notes the pull (DC-ASGD keeps a copy)

    def stage(self, grad: np.ndarray, seq: int, base: int, stages: tuple[int, ...] | None = None) -> np.ndarray | None:
        """Leave ``grad`` in the inbox, with the greedy ``stages`` the push trained (returns None), or hand it
        back to travel by the object store (the driver then passes the stages with it)."""
        if self.inbox is None:
            return grad
        self.inbox.put(grad, seq, base, timeout=INBOX_WAIT_SECONDS, stages=stages)
        return None


def lanes_of(lanes: Sequence[Any]) -> list[dict[str, Any] | None]:
    """Per shard its lanes, as :meth:`ShardActor.lanes` returns them: ``lanes`` itself, or, where the driver handed
    an actor it started beside the shards their answers to come (object refs: ``starting_on_ray``'s start), those
    answers, waited for here. A shard answers once it is built, holding the weights, so an actor that links to
    the shards through this fetches nothing before they hold them (the start's order kept by this wait, not by the
    driver's starting the shards first)."""
    refs = [x for x in lanes if isinstance(x, ray.ObjectRef)]
    got = iter(ray.get(refs) if refs else ())
    return [next(got) if isinstance(x, ray.ObjectRef) else x for x in lanes]


class ShardPush:
    """How the driver (or a benchmark client) has the shards apply a staged push: a doorbell ring
    where the gradient is in the inbox of a shard on this node, a ``push_inbox`` actor call where
    that shard is elsewhere, ``push`` with the gradient's object ref where it has no inbox.

    ``lanes`` (one per shard, as ``ShardActor.lanes`` returns them) is read on every push, so a
    caller that replaces an entry (a restarted worker's new inbox) is followed.
    """

    def __init__(self, actors: list[Any], lanes: list[dict[str, Any] | None]):
        self.actors, self.lanes, self.here = actors, lanes, this_node()
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

    def apply(self, w: int, seq: int, bases: list[int], grads: list[Any], inbox: list[bool],
              meanwhile: Callable[[], None] | None = None, stages: tuple[int, ...] | None = None) -> list[Any]:
        """Per shard the result dict (rung shards: every bell rung first, then every answer read,
        so the shards apply in parallel) or an object ref to it (the caller waits on those).
        ``meanwhile`` is called once every shard has been told, before any answer is read. ``stages``: the
        greedy stages the push trained, for a gradient that travels by the object store (a staged one has
        them in its inbox)."""
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
                out.append(actor.push.remote(w, g, base, seq, stages))
        if meanwhile is not None:
            meanwhile()
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
