"""The actors a Ray run that ended well leaves to the next run of the same layout on the same Ray (a run and its
no-faces twin, a cross-fit's folds: :func:`downpour.twins.shared_ray`):

    with held(""), keeping():     # one Ray, and the actors kept between the runs inside
        train(cfg, run)           # its close hands its shards and workers to the keeping
        train(twin_cfg, twin)     # its start gives them the twin's shards, data and seed (``again``)

Each actor is a process that imported torch and downpour (about 2.4 CPU-s each, docs/benchmarks.md#twin_actors):
a twin started anew paid it again for the same layout on the same Ray. A kept actor is rebuilt in place
(``ShardActor.again``, ``WorkerActor.again``: its state cleared, its constructor run again with what a new actor
is given), so the twin trains as on fresh actors (bit for bit: tests/test_twins.py); its Ray name stays the one it
was started with (the run's id), its shared memory, channels and restarts are the twin's own (its id).

Kept only where nothing went wrong (``RayCluster._keeping``, asked by its close): the run finished, no worker lost
or restarted, no partitions, no GPU, every actor answering (:meth:`Keeping.keepable`). An actor is taken by a start
that places it as it was placed (its kind, index, node, CPUs and GPUs: the key) if it still answers (one that died
since is started anew); the start kills those it does not take before it starts its own (they hold their CPUs), and
the keeping's end kills what is left. One that dies after it answered, before its rebuild (:func:`died`: a kill, its
node gone), is replaced at the start by an actor started anew, said in a warning and in cluster.json's
``actor_starts``; an error its ``again`` raises (a bug in it) fails the start.
"""
from __future__ import annotations

import contextlib
from typing import Any, Hashable, Iterable, Iterator

import ray
from ray.exceptions import RayActorError, RayTaskError

from downpour.ps.asking_on_ray import answering


class Keeping:
    """The actors kept for the next start, by key (``("shard", j, node)``, ``("worker", w, node, cpus, gpus)``)."""

    def __init__(self) -> None:
        self.actors: dict[Hashable, Any] = {}

    def give(self, kept: dict[Hashable, Any]) -> None:
        """Keep ``kept`` (key -> actor) for the next start; any kept before and not taken are killed."""
        self.close()
        self.actors = dict(kept)

    def take(self, keys: list[Hashable]) -> dict[Hashable, Any]:
        """The kept actors of ``keys`` that answer (handed over: the caller owns them); the others are killed. One
        that died since it was kept (or hangs) is not handed over: the start starts that one anew."""
        asked = {k: self.actors.pop(k) for k in keys if k in self.actors}
        up = dict(zip(asked, answering(list(asked.values()))))
        self.close()                                        # those not asked for
        _kill(a for k, a in asked.items() if not up[k])    # those that died or hang since
        return {k: a for k, a in asked.items() if up[k]}

    def close(self) -> None:
        _kill(self.actors.values())
        self.actors = {}

    @staticmethod
    def keepable(actors: list[Any]) -> bool:
        """Whether every one of ``actors`` answers (a worker still serving its channel answers nothing else: one
        kept would hold up the next start)."""
        return all(answering(actors))


def _kill(actors: Iterable[Any]) -> None:
    for actor in actors:
        with contextlib.suppress(Exception):   # (best effort: it may be dead already)
            ray.kill(actor)


def died(answers: dict[Hashable, Any], timeout: float) -> tuple[dict[Hashable, RayActorError], list[Hashable]]:
    """Which of ``answers`` (key -> the ref of a kept actor's ``again``) failed because the actor died (Ray's
    RayActorError: killed, or its node gone, since :meth:`Keeping.take` found it answering): key -> the error, for the
    start to start a new actor in its place; and the keys of the answers not ready within ``timeout`` seconds (a
    rebuild that hangs), left to the start's own bounded wait (``connect_on_ray.gathered``, which says what it waits
    for) with none of its limit left: they were waited for ``timeout`` here. An error ``again`` raised (RayTaskError,
    even one wrapping a RayActorError: a bug, or an actor it asked that died) is raised here."""
    if not answers:   # (a Ray call about none would start a Ray where none is up)
        return {}, []
    ready = set(ray.wait(list(answers.values()), num_returns=len(answers), timeout=timeout)[0])
    dead = {}
    for key, ref in answers.items():
        try:
            if ref in ready:
                ray.get(ref)
        except RayTaskError:
            raise
        except RayActorError as e:
            dead[key] = e
    return dead, [key for key, ref in answers.items() if ref not in ready]


_keeping: Keeping | None = None   # the keeping() in force: the runs it spans train one after another in this process


def kept() -> Keeping | None:
    """The keeping in force (None outside :func:`keeping`: a run's close kills its actors)."""
    return _keeping


@contextlib.contextmanager
def keeping() -> Iterator[Keeping]:
    """Keep a run's actors for the next run inside (one inside another: the outer keeping); kill what is left at
    the end, whatever happened."""
    global _keeping
    if _keeping is not None:
        yield _keeping
        return
    _keeping = Keeping()
    try:
        yield _keeping
    finally:
        done, _keeping = _keeping, None
        done.close()
