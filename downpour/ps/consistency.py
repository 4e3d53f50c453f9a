"""Consistency models: when may a worker start its next push cycle?

Every worker has a clock: the number of pushes it has completed. One small gate object, kept by
the runner (the simulator's event loop, the Ray driver), answers :meth:`Consistency.may_start`.

- ``async``       never wait (Downpour SGD).
- ``bounded:K``   stale synchronous parallel (Ho et al., NIPS 2013): a worker may not run more than
                  K clocks ahead of the slowest live worker.
- ``sync``        K = 0, and the shards hold every push of a round and apply them together, so
                  every push of a round is computed from the same version.

The same worker code runs under all three; only the gate (and for ``sync`` the shards' round
buffer) differs.
"""
from __future__ import annotations

from downpour.config import CONSISTENCY_FORMS
from downpour.settings import Spec, parse_spec


class Consistency:
    """Asynchronous: the base class, a gate that is always open. Clocks are still kept for the log."""

    name = "async"
    bound: int | None = None   # max clocks ahead of the slowest, None = unbounded
    sync = False               # shards buffer a round and apply it as one update

    def __init__(self) -> None:
        self.clocks: dict[int, int] = {}

    def join(self, worker: int, clock: int | None = None) -> None:
        """Add a live worker. A late joiner (warm start) starts level with the slowest, not at 0."""
        if clock is None:
            clock = min(self.clocks.values()) if self.clocks else 0
        self.clocks[worker] = clock

    def leave(self, worker: int) -> None:
        """A dead worker holds the others back no more: its clock goes."""
        self.clocks.pop(worker, None)

    def tick(self, worker: int) -> None:
        """``worker`` completed a push."""
        self.clocks[worker] += 1

    def gap(self, worker: int) -> int:
        """How many clocks ``worker`` is ahead of the slowest live worker."""
        return self.clocks[worker] - min(self.clocks.values())

    def may_start(self, worker: int) -> bool:
        return self.bound is None or self.gap(worker) <= self.bound

    @property
    def gated(self) -> bool:
        """Does the gate bound clocks (bounded:K, sync)? Its workers then fetch at the start of every push."""
        return self.bound is not None


class Bounded(Consistency):
    name = "bounded"

    def __init__(self, k: int):
        super().__init__()
        self.bound = k


class Sync(Consistency):
    name = "sync"
    bound = 0
    sync = True


def make_consistency(spec: str | Spec) -> Consistency:
    """The gate for ``cluster.consistency`` (async | bounded:K | sync), a string or its parsed :class:`Spec`."""
    kind, args = parse_spec(spec, CONSISTENCY_FORMS, "cluster.consistency") if isinstance(spec, str) else spec
    if kind == "bounded":
        return Bounded(*args)
    return {"async": Consistency, "sync": Sync}[kind]()
