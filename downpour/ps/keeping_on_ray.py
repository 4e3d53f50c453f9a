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
or restarted, no partitions, no GPU, every actor answering (:meth:`Keeping.keepable`). An actor is taken by a start that places
it as it was placed (its kind, index, node, CPUs and GPUs: the key); the start kills those it does not take
before it starts its own (they hold their CPUs), and the keeping's end kills what is left.
"""
from __future__ import annotations

import contextlib
from typing import Any, Hashable, Iterator

import ray


class Keeping:
    """The actors kept for the next start, by key (``("shard", j, node)``, ``("worker", w, node, cpus, gpus)``)."""

    def __init__(self) -> None:
        self.actors: dict[Hashable, Any] = {}

    def give(self, kept: dict[Hashable, Any]) -> None:
        """Keep ``kept`` (key -> actor) for the next start; any kept before and not taken are killed."""
        self.close()
        self.actors = dict(kept)

    def take(self, keys: list[Hashable]) -> dict[Hashable, Any]:
        """The kept actors of ``keys`` (handed over: the caller owns them); the others are killed."""
        taken = {k: self.actors.pop(k) for k in keys if k in self.actors}
        self.close()
        return taken

    def close(self) -> None:
        for actor in self.actors.values():
            with contextlib.suppress(Exception):   # (best effort: it may be dead already)
                ray.kill(actor)
        self.actors = {}

    @staticmethod
    def keepable(actors: list[Any], timeout: float = 10.0) -> bool:
        """Whether every one of ``actors`` answers within ``timeout`` seconds (a worker still serving its channel
        answers nothing else: one kept would hold up the next start)."""
        if not actors:   # (ray.get of none would start a Ray where none is up)
            return True
        try:
            ray.get([a.node.remote() for a in actors], timeout=timeout)
        except Exception:  # noqa: BLE001
            return False
        return True


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
