"""What the Ray driver asks its workers once the driving loop is over: at the run's end (:meth:`Asking.info`: nodes,
placement, each worker's data report and profile) and on a stop (:meth:`Asking.data_reports`), every worker asked at
once in one bounded wait, so a node gone silent costs that wait once. A mixin of
:class:`~downpour.ps.cluster_on_ray.RayCluster`, which owns the state it reads (``coord``, ``worker_actors``,
``shard_actors``, ``placement``, ``devices``, ``laps``, ``piped``, ``_serving``, ``_pending``, ``_channels``) and the
calls it makes (``not_restarted``, ``_read_served``)."""
from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.exceptions import RayError

from downpour.ps.restarts_on_ray import WAITED

DROP_ANY = 1 << 62   # a push number past any: drop_inbox drops whatever waits
DROP_ROUND_SECONDS = 0.05   # on a stop, the shards drop their inboxes again this often while a worker's cycle runs

log = logging.getLogger("downpour.ps.cluster_on_ray")   # the driver's logger


def answered(refs: list[Any], ready: set[Any]) -> bool:
    """Whether an actor answered each of its ``refs`` (all in ``ready``) without an error (a lost one's:
    ActorDiedError)."""
    if not all(ref in ready for ref in refs):
        return False
    try:
        ray.get(refs)
    except RayError:
        return False
    return True


def answering(actors: list[Any], timeout: float = 10.0) -> list[bool]:
    """Per actor whether it answers (``node``) within ``timeout`` seconds, all asked at once: one wait of ``timeout``
    for them all, however many are silent."""
    if not actors:   # (a Ray call about none would start a Ray where none is up)
        return []
    asked = [a.node.remote() for a in actors]
    ready = set(ray.wait(asked, num_returns=len(asked), timeout=timeout)[0])
    return [answered([ref], ready) for ref in asked]   # (a dead actor's answer is its error)


def node_addresses() -> dict[str, str]:
    """Each node Ray knows, alive or not: its id -> its IP address."""
    return {nd["NodeID"]: nd.get("NodeManagerAddress", "") for nd in ray.nodes()}


def node_key(nodes: list[str], known: dict[str, str] | None = None) -> dict[str, list[str]]:
    """What cluster.json's placement numbers stand for: node i of ``placement`` is ``node_ids[i]`` (Ray's node id, as
    `ray status` and `ray list nodes` show it) at ``node_addresses[i]`` (its IP address; "" where Ray no longer knows
    the node; ``known``: the addresses read already, else Ray is asked now). The numbers alone (indices into the sorted
    ids of the nodes used) would not say which of a run's two machines held worker 1."""
    known = node_addresses() if known is None else known
    return {"node_ids": nodes, "node_addresses": [known.get(node, "") for node in nodes]}


class Asking:
    """``RayCluster``'s half that asks every worker at once: the run's end, a stop."""

    ray_info: dict[str, Any] | None = None   # which Ray (:func:`~downpour.ps.connect_on_ray.joined`), set on start
    addresses: dict[str, str] = {}           # node id -> IP address, read once every actor is up (node_addresses)
    nodes: dict[str, dict[str, Any]] | None = None   # environment.json's nodes (node_environments), set on start

    def info(self) -> dict[str, Any]:
        """Nodes and placement, each live worker's data report (a lost worker's is lost with it), and the first live
        worker's replica's buffers (``model_buffers``: an RBM's persistent chains, as the simulator's first live worker
        gives them: asked again of the next live one where that worker was found dead here; none where none answers)."""
        # every worker asked at once, live and waiting, one wait of 60 s for them all: one at a time, a node gone
        # silent would cost 60 s a worker (scripted, two silent waiting workers: 120 s), as would a wait of the
        # waiting ones' own after the live ones' (one silent of each: 120 s). A
        # worker the warm start never let join (cluster.warm_start past train.steps) is asked whether it lives: one
        # that died unseen (the piped loop stopped its serve task first) is lost here, not kept as waiting
        live, waiting = sorted(self.coord.live), self.coord.waiting
        serving = [ref for ref, (w, _) in self._serving.items() if w in live]   # piped: ending (the loop's end stopped them)
        asked = {w: [self.worker_actors[w].data_report, self.worker_actors[w].profile] for w in live}
        if live:
            asked[live[0]].append(self.worker_actors[live[0]].buffers)
        answers = self._ask({**asked,
                             **{w: [self.worker_actors[w].node] for w in waiting}}, timeout=60, also=serving)
        reports, profiles, buffers = {}, {}, {}
        for w, got in answers.items():    # a worker that died after its last push is a loss, restarted no more
            if isinstance(got, Exception):
                self.coord.lose(w, type(got).__name__ + (WAITED if w in waiting else " after its last push"),
                                self.where("workers", [w]))
                self.not_restarted(w, "no steps left for it")
            elif w not in waiting:
                reports[w], profiles[w], *more = got
                buffers = more[0] if more else buffers
        first = min(reports, default=None)   # live[0] died here (lost above): the first live one left gives them
        if first is not None and first != live[0]:
            got = self._ask({first: [self.worker_actors[first].buffers]}, timeout=60)[first]
            buffers = {} if isinstance(got, Exception) else got[0]
        return {**self.placed(), **({"ray": self.ray_info} if self.ray_info else {}), "queue_depth": self.coord.depth,
                "worker_devices": self.devices, "data_workers": [reports[w] for w in sorted(reports)],
                **({"model_buffers": buffers} if buffers else {}),
                **({"actor_starts": self.actor_starts} if self.actor_starts else {}),
                **({"partition_restarts": parts} if (parts := self.partition_restarts()) else {}),
                "profile": {"driver": self.laps.report(), "workers": [profiles[w] for w in sorted(profiles)],
                            "shards": ray.get([a.profile.remote() for a in self.shard_actors], timeout=60)}}

    def placed(self, known: dict[str, str] | None = None) -> dict[str, Any]:
        """cluster.json's ``nodes``, ``placement`` (each actor's node: an index into ``node_ids``), ``node_ids`` and
        ``node_addresses`` (``known``: the addresses read already, else Ray is asked now: :func:`node_key`)."""
        nodes = sorted(set().union(*self.placement.values()))   # (a partition may sit on a node of its own)
        return {"nodes": len(nodes), "placement": {k: [nodes.index(x) for x in v] for k, v in self.placement.items()},
                **node_key(nodes, known)}

    def _unblock_staging(self) -> None:
        """On a stop: a worker whose cycle granted ahead stages its push while its last one waits in a shard's inbox,
        which no ring will take now, so its ``put`` would wait (60 s and more) and its serve task, or on the task path
        its queued cycle and the data report behind it, would not end within the 5 s (scripted: Ctrl-C of a
        streamed one-node Ray run left data.json without any worker's report, its ``skipped`` none; the task path,
        over several nodes or ``cluster.partitions``, alike). The shards drop what waits (the stop's
        checkpoint is saved: nothing of it is lost), again every ``DROP_ROUND_SECONDS`` for up to 1 s a cycle a
        worker may have queued, until every worker's serve task or cycle has ended. A shard without inboxes (on
        another node) has nothing to drop. A shard lost (the stop's cause?) or silent is asked no more, the others'
        rounds go on (were its error to end them all after the first, a worker with a second cycle queued behind a
        live shard's inbox would miss the reports' wait); a worker waiting on a lost shard's inbox sees it
        gone itself (``shm.ShardGone``)."""
        live, shards = sorted(self.coord.live), list(self.shard_actors)
        # rounds of DROP_ROUND_SECONDS until the bound of 1 s a cycle a worker may have queued: with rounds of
        # 1 s, a worker blocked again by its next queued cycle costs the whole second (scripted: Ctrl-C of a
        # 2-worker, 2-shard, queue_depth=2 run, its cycles ended 1.01-1.02 s after the stop began)
        # (and never fewer rounds than before, depth + 1, however long a loaded box takes to answer a drop)
        ends, rounds = time.monotonic() + self.coord.depth + 1, 0
        while (busy := self._busy(live)) and shards and (rounds <= self.coord.depth or time.monotonic() < ends):
            rounds += 1
            asked = {a: [a.drop_inbox.remote(w, DROP_ANY) for w in live] for a in shards}
            every = [ref for refs in asked.values() for ref in refs]
            ready, _ = ray.wait(every, num_returns=len(every), timeout=5)
            shards = [a for a, refs in asked.items() if answered(refs, set(ready))]
            done, _ = ray.wait(busy, num_returns=len(busy), timeout=DROP_ROUND_SECONDS)
            self._read_served(set(done))

    def _busy(self, live: list[int]) -> list[Any]:
        """The ``live`` workers' serve tasks (piped) or cycles (the task path: a stop leaves them in ``_pending``)
        that have not ended."""
        refs = ([ref for ref, (w, _) in self._serving.items() if w in live] if self.piped else
                [ref for ref, (kind, w) in self._pending.items() if kind == "cycle" and w in live])
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        return [ref for ref in refs if ref not in done]

    def _ask(self, calls: dict[int, list[Any]], timeout: float, also: list[Any] = ()) -> dict[int, list[Any] | Exception]:
        """Each worker's answers to its ``calls`` (actor methods, no arguments), all asked at once and waited for
        ``timeout`` s in all: ``{worker: [answers]}``, or the error of one that failed (``GetTimeoutError``: no answer).
        ``also``: serve tasks waited for in the same wait, and read (:meth:`_read_served`)."""
        refs = {w: [call.remote() for call in methods] for w, methods in calls.items()}
        every = [ref for rs in refs.values() for ref in rs] + list(also)
        ready, _ = ray.wait(every, num_returns=len(every), timeout=timeout) if every else ([], [])
        done, out = set(ready), {}
        self._read_served(done)
        for w, rs in refs.items():
            try:
                if not all(ref in done for ref in rs):
                    raise ray.exceptions.GetTimeoutError(f"no answer within {timeout} s")
                out[w] = [ray.get(ref) for ref in rs]
            except (RayError, ray.exceptions.GetTimeoutError) as err:
                out[w] = err
        return out

    def data_reports(self) -> list[dict[str, Any] | None]:
        """On a stop: the data reports of the live workers that answer within 5 s (one mid-cycle answers after
        it; a lost worker's is lost with it, and a worker that raised a DataError is alive and answers). Piped, each
        is told to stop serving first (a serving actor answers nothing else) and its serve task is read in the same
        wait: else a piped stop waits its 5 s and its data.json has no worker's report (scripted: two live
        workers, data_reports [] after a 5 s wait without this; both, at once, with it)."""
        for w in sorted(self.coord.live) + self.coord.waiting if self.piped else ():
            if w in self._channels:
                self._channels[w].stop()
        t = time.monotonic()
        self._unblock_staging()
        unblocked = time.monotonic() - t
        serving = [ref for ref, (w, _) in self._serving.items() if w in self.coord.live]
        answers = self._ask({w: [self.worker_actors[w].data_report] for w in sorted(self.coord.live)}, timeout=5,
                            also=serving)
        reports = [got[0] for got in answers.values() if not isinstance(got, Exception)]
        log.debug("stop: the workers' cycles ended %.3f s after it began, their data reports (%d of %d) %.3f s after",
                  unblocked, len(reports), len(answers), time.monotonic() - t)
        return reports
