"""A shard served to the other processes of its machine: shared-memory lanes, a doorbell, one lock.

:class:`ShardServer` is plain Python; the Ray runner's ``ShardActor`` is this class as a Ray actor
(:mod:`downpour.ps.shards_on_ray`). Two threads touch the shard: the actor's own (its methods, called by
the driver, and by workers on other machines) and the doorbell's (pushes rung by a driver on this
machine, :mod:`downpour.ps.doorbell`). Every access to the :class:`~downpour.ps.shard.Shard` holds
``_lock``; every change of the parameters is also inside the segment's seqlock, which is what the
lock-free readers (workers pulling out of shared memory) rely on.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

from downpour.ps import shm
from downpour.ps.checkpoint import ShardState
from downpour.ps.doorbell import Doorbell
from downpour.ps.laps import Laps
from downpour.ps.shard import PushResult, Shard


class ShardServer:
    """A :class:`~downpour.ps.shard.Shard`, served to other processes.

    With ``lane_prefix`` (and /dev/shm available) its parameters live in shared memory, every one
    of ``workers`` has an inbox there (:mod:`downpour.ps.shm`), and a doorbell thread applies
    pushes rung on ``<lane_prefix>-s<j>-bell``; without, only the method calls serve it. DC-ASGD
    needs to see every pull, so it never gets lanes.
    """

    def __init__(self, shard: Shard, lane_prefix: str = "", workers: int = 0):
        self.shard = shard
        self.seg: shm.Segment | None = None
        self.inboxes: dict[int, shm.Segment] = {}
        self.bell: Doorbell | None = None
        self.laps = Laps()       # "apply": seconds spent applying pushes (under the lock); the process's CPU
        self._lock = threading.Lock()
        # worker -> its inboxes given up by new_inbox: a writer of a superseded incarnation (a killed worker or
        # partition actor still running a moment) may yet write there; what it leaves is refused ("fenced"). One
        # is let go once its writer is gone (_let_go)
        self._retired: dict[int, list[shm.Segment]] = {}
        if lane_prefix and shm.available() and not shard.compensation.needs_backup:
            n, j = shard.params.numel(), shard.index
            self.seg = shm.Segment(f"{lane_prefix}-s{j}-params", n, create=True)
            shard.adopt(torch.from_numpy(self.seg.data))
            self.seg.set_version(shard.version)
            self.inboxes = {w: shm.Segment(f"{lane_prefix}-s{j}-w{w}", n, create=True) for w in range(workers)}
            self.bell = Doorbell(f"{lane_prefix}-s{j}-bell", self.push_inbox)
            for w, inbox in self.inboxes.items():
                self.bell.reply_to(w, f"{inbox.path}-bell")

    def lanes(self) -> dict[str, Any] | None:
        """Where processes on this machine find the shard's shared memory and doorbell, or None."""
        if self.seg is None or self.bell is None:
            return None
        return {"params": str(self.seg.path), "inbox": {w: str(s.path) for w, s in self.inboxes.items()},
                "bell": str(self.bell.path), "reply": self.bell.replies()}

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The lock, and around a change of the parameters the seqlock (and the version word)."""
        with self._lock:
            if self.seg is None:
                yield
                return
            with self.seg.writing():
                yield
                self.seg.set_version(self.shard.version)

    def pull(self, worker: int | None = None) -> tuple[np.ndarray, int]:
        with self._lock:
            params, version = self.shard.pull(worker)
            # shared parameters are copied here, under the lock: the doorbell may change them
            # while the caller serialises its answer
            return (params.numpy().copy() if self.seg is not None else params.numpy()), version

    def push(self, worker: int, grad: np.ndarray, base: int, seq: int,
             stages: tuple[int, ...] | None = None) -> dict[str, Any]:
        """Apply ``grad``, which trained greedy ``stages`` (None: every stage), from the object store."""
        with self._writing():
            t = time.perf_counter()
            result = self.shard.push(worker, torch.from_numpy(grad), base, seq, stages).as_dict()  # zero-copy view
            self.laps.add("apply", t)
            self.laps.count("pushes")
            return result

    def push_inbox(self, worker: int, base: int, seq: int) -> dict[str, Any]:
        """Apply the gradient ``worker`` left in its inbox for push ``seq``, with the stages it trained written
        beside it (also the doorbell's job)."""
        with self._writing():
            self._fence(worker)
            inbox = self.inboxes.get(worker)
            item = inbox.take() if inbox is not None else None
            if item is None or item[1:3] != (seq, base):
                self.shard.rejected["inbox"] += 1   # nothing (or something else) is waiting: never guess
                return PushResult(False, "inbox", self.shard.version, self.shard.version - base).as_dict()
            t = time.perf_counter()
            result = self.shard.push(worker, torch.from_numpy(item[0]), base, seq, item[3])
            inbox.release()
            self.laps.add("apply", t)
            self.laps.count("pushes")
            return result.as_dict()

    def drop_inbox(self, worker: int, seq: int) -> bool:
        """Push ``seq`` of ``worker`` will never be rung (its cycle failed after some of its slices were staged: a
        model-parallel replica whose partition died, ``ps.partition_restarts_on_ray``): what it left in the inbox goes,
        so the replica's next push, with the same seq, finds the inbox free (an inbox is never overwritten: its
        ``put`` waited for the shard to take the stale slice, which no ring would ever ask, for INBOX_WAIT_SECONDS,
        and failed). One of an earlier seq goes too: asked once the driver had every push it took rung or its
        ``push_inbox`` sent before this call, what still waits is a dropped cycle's (one queued behind the failed one
        that did push, its partition slow, not dead). A later seq stays. Returns whether one went."""
        with self._lock:
            self._fence(worker)
            inbox = self.inboxes.get(worker)
            item = inbox.take() if inbox is not None else None
            if item is None or item[1] > seq:
                return False
            inbox.release()
            return True

    def new_inbox(self, worker: int, incarnation: int) -> dict[str, Any] | None:
        """A new incarnation of ``worker``'s writer here (a restarted worker, or a model-parallel replica's partition
        restarted alone: ``ps.partition_restarts_on_ray``) gets a fresh inbox (and reply pipe), at a new path: its
        predecessor, killed but possibly still running for a moment (or judged dead for not answering, and still
        running), may yet write into the old one. What waits in the old one now was staged before the restart: it
        goes, as ``drop_inbox`` drops it. The old one is kept, unlinked, while its writer runs, and what lands in it
        is refused (:meth:`_fence`): were a partition restarted alone to keep its inbox, a late write of its killed
        predecessor, after ``drop_inbox``, would make the new one's push of the same seq wait INBOX_WAIT_SECONDS
        and fail. Retired inboxes whose writer is gone are let go here (:meth:`_let_go`). Returns the lanes."""
        with self._lock:
            if worker in self.inboxes:
                self._fence(worker)
                old = self.inboxes[worker]
                old.path.unlink(missing_ok=True)
                if old.take() is not None:
                    old.release()           # staged before the restart: its push is dropped (not a late write)
                self._retired.setdefault(worker, []).append(old)
                self.inboxes[worker] = shm.Segment(f"{old.path}-r{incarnation}", old.n, create=True)
                if self.bell is not None:
                    self.bell.reply_to(worker, f"{self.inboxes[worker].path}-bell")
            self._let_go()
        return self.lanes()

    def _let_go(self) -> None:
        """Close the retired inboxes whose writer is gone (``shm.Segment.writer_gone``), what it left there refused
        first (:meth:`_fence`): nothing more can land in one (unlinked, no process attaches to it again), so its
        memory, a push's size, goes back, not mapped until the shard closes: one per shard of a partition per
        restart, for the whole run. The writer is asked before the fence: asked after, a slice it
        staged in between and then died would be lost uncounted. One whose writer still runs is kept (a late write
        may yet come, to be counted); keeping only the K newest instead would let a live writer's late write go
        uncounted, and that writer wait its put's timeout on a slot nobody frees. Under the lock."""
        for olds in self._retired.values():
            kept = []
            for old in olds:
                if old.writer_gone():
                    self._refuse(old)
                    old.close()
                else:
                    kept.append(old)
            olds[:] = kept

    def _fence(self, worker: int | None = None) -> int:
        """Refuse what a superseded writer left in ``worker``'s retired inboxes (every worker's: None) since they were
        retired: never applied, each counted in the shard's ``rejected["fenced"]`` (staleness.json's ``rejected``), and
        its inbox freed, so that writer, if it still runs, does not wait either. Under the lock; returns how many."""
        return sum(self._refuse(old) for w, olds in self._retired.items() if worker is None or w == worker
                   for old in olds)

    def _refuse(self, old: shm.Segment) -> bool:
        """What waits in retired inbox ``old``, refused and counted (:meth:`_fence`); whether one was."""
        if old.take() is None:
            return False
        old.release()
        self.shard.rejected["fenced"] += 1   # (only here: a Counter's += 0 would add the key, "fenced: 0" everywhere)
        return True

    def profile(self) -> dict[str, Any]:
        """This shard's :class:`~downpour.ps.laps.Laps` report: seconds applying pushes, pushes, CPU seconds."""
        with self._lock:
            return self.laps.report()

    def set_workers(self, workers: list[int]) -> None:
        with self._writing():
            self.shard.set_workers(workers)

    def flush(self) -> None:
        """End of run: a partly filled sync round is applied (:meth:`Shard.flush`)."""
        with self._writing():
            self.shard.flush()

    def state_dict(self) -> ShardState:
        with self._writing():    # a sync round still open is saved as it is
            self._fence()        # (a late write since the last push counted in what is saved)
            self._let_go()
            tensors, meta = self.shard.state_dict()
            return {k: v.clone() for k, v in tensors.items()}, meta

    def close(self) -> None:
        """Stop the doorbell (pushes rung before are answered first), unlink the shared-memory files
        and pipes (mappings stay valid in processes that hold them)."""
        if self.bell is not None:
            self.bell.close()     # not under the lock: the thread may be waiting for it
        with self._lock:
            for seg in (self.seg, *self.inboxes.values()):
                if seg is not None:
                    seg.path.unlink(missing_ok=True)
            self._retired.clear()   # (unlinked already: their mappings go with them)
