"""The runner-independent bookkeeping of a cluster run: who may start a push cycle, the step
budget, warm start, lost workers.

The simulator and the Ray driver both ask :meth:`Coordinator.begin_cycle` before they let a
worker compute, and tell :meth:`Coordinator.end_cycle` / :meth:`Coordinator.lose` what happened,
so both runners schedule identically.
"""
from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path
from typing import Any, Callable

from downpour._names import plural
from downpour.ps.consistency import Consistency

log = logging.getLogger(__name__)


class Coordinator:
    """``total_steps``: training steps over all workers (``train.steps``); the run ends there.

    ``warm_start``: worker 0 trains alone until that many steps are done, then the rest join.
    ``depth``: cycles a worker may have queued at once under async (the Ray runner queues the next
    cycle before the current one returns, so a worker never idles waiting for the driver).
    ``stage_of``: a greedy run's stage of each step index (None: every stage); the first cycle of a
    stage waits until every step handed out before it has been applied (see :meth:`begin_cycle`).
    """

    def __init__(self, gate: Consistency, workers: int, total_steps: int, n_push: int = 1,
                 start_step: int = 0, warm_start: int = 0, clocks: dict[int, int] | None = None, depth: int = 1,
                 stage_of: Callable[[int], int | None] | None = None):
        self.gate, self.workers, self.total, self.n_push = gate, workers, total_steps, n_push
        self.stage_of = stage_of
        self.done = self.dispatched = start_step   # dispatched: one past the highest step index handed out
        # (first, steps) of cycles a lost worker never computed: handed out again before any new index, lowest
        # first. (Lowering ``dispatched`` on a loss instead would make the next grants repeat indices still in
        # flight elsewhere and never hand out the lost ones.)
        self.returned: list[tuple[int, int]] = []
        self.warm_start = warm_start
        self.live: set[int] = set()
        self.lost: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.gaps: dict[int, int] = {}         # clock gap each worker's last computed cycle started with
        self._inflight: dict[int, list[tuple[int, int, int]]] = {}  # per worker, (steps, clock gap, first step) of each queued cycle
        self.max_gap = 0                                          # the largest clock gap any cycle started with
        self._unapplied: dict[int, int] = {}   # pushes a worker sent that are not applied yet
        self._sent: dict[int, list[tuple[int, int]]] = {}   # their (first, steps), oldest first (see unapplied_state)
        self._clocks = clocks or {}
        self._lost_clock: dict[int, int] = {}  # the clock a lost worker died with (see rejoin)
        self._lost_waiting: set[int] = set()   # lost before the warm start let them join (see rejoin)
        self.depth = depth if gate.bound is None else 1
        # a resume's workers with a saved clock first: one without (lost before the checkpoint, which Ray starts afresh)
        # then joins level with the slowest of them, as a restarted worker does (:meth:`rejoin`). Worker 0 joined
        # first at the empty gate's 0: every other worker's clock gap was its whole clock (max_clock_gap that
        # run's pushes, not a stall), and under bounded:K none of them could start until worker 0 caught up alone
        joining = [0] + (list(range(1, workers)) if start_step >= warm_start else [])
        for w in sorted(joining, key=lambda w: w not in self._clocks):
            self._join(w)

    def _join(self, w: int) -> None:
        self.live.add(w)
        self._lost_waiting.discard(w)   # joined: a later loss of it is a live worker's (see rejoin)
        self.gate.join(w, self._clocks.get(w))

    def begin_cycle(self, w: int) -> int:
        """Steps worker ``w`` may run now (<= n_push), or 0 if it must wait (gate, budget, not joined).

        Under async a worker starts its next cycle while its last push is still on its way (as
        DistBelief's workers did); under bounded/sync it first waits for that push to be applied,
        so its clock is current when the gate is asked. The cycle's first step index is :meth:`first_step`:
        a range a lost worker never computed (:meth:`lose`) is handed out again before new steps.
        """
        if w not in self.live or len(self._inflight.get(w, ())) >= self.depth or self.handed_out:
            return 0
        if self.gate.bound is not None and self._unapplied.get(w):
            return 0
        if not self.gate.may_start(w) or self._before_stage_switch():
            return 0
        if self.returned:
            first, left = self.returned[0]
            k = min(self.n_push, left)
            self.returned[:1] = [(first + k, left - k)] if k < left else []
        else:
            first, k = self.dispatched, min(self.n_push, self.total - self.dispatched)
            self.dispatched += k
        self._inflight.setdefault(w, []).append((k, self.gate.gap(w), first))
        return k

    def first_step(self, w: int) -> int:
        """The run's index of the first step of the cycle :meth:`begin_cycle` just granted ``w`` (each step's
        greedy stage, and its data seed on a resume, follow from it)."""
        return self._inflight[w][-1][2]

    @property
    def handed_out(self) -> bool:
        """Every step of the budget is handed out (none new, none given back by a loss): nothing left to grant."""
        return self.dispatched >= self.total and not self.returned

    def _outstanding(self) -> int:
        """Steps handed out (computing, or pushed) and not applied yet."""
        return self.dispatched - sum(k for _, k in self.returned) - self.done

    def _before_stage_switch(self) -> bool:
        """Is the next cycle a greedy stage's first (its first step in a later stage than the previous cycle's,
        which began ``n_push`` steps before it) while steps handed out before it are not applied yet?

        Then it waits for them: stage 2 starts from a finished stage 1, as on the local runner, and a push
        of stage 1 never lands among stage 2's. Without this, pushes landing out of order (Ray; the simulator
        with random delays) put stage-2 pushes into the rows before the switch and late stage-1 pushes into
        those after it (cat-demo, 40 steps on Ray: the rows at steps 20 and 30 each averaged both stages),
        and trained stage 1 on while stage 2 was learning from its outputs."""
        if self.stage_of is None or self._outstanding() <= 0:
            return False
        nxt = self.returned[0][0] if self.returned else self.dispatched
        now, before = self.stage_of(nxt), self.stage_of(max(nxt - self.n_push, 0))
        return now is not None and before is not None and now > before

    def end_compute(self, w: int) -> int:
        """``w`` finished computing its oldest queued cycle and sent its push; returns the push's step
        count (and sets ``gaps[w]`` to the clock gap that cycle started with)."""
        k, self.gaps[w], first = self._inflight[w].pop(0)
        self.max_gap = max(self.max_gap, self.gaps[w])
        self._unapplied[w] = self._unapplied.get(w, 0) + 1
        self._sent.setdefault(w, []).append((first, k))
        return k

    def end_cycle(self, w: int, steps: int) -> list[int]:
        """``w``'s push of ``steps`` steps was applied; returns workers that join now (warm start over)."""
        self.done += steps
        self._unapplied[w] -= 1
        if self._sent.get(w):   # (a simulator's resumed travelling push has none: its checkpoint is whole)
            self._sent[w].pop(0)
        if w in self.live:   # a lost worker's last push still lands, but it has no clock any more
            self.gate.tick(w)
        elif w in self._lost_clock:     # (its replacement starts past the round this push went into)
            self._lost_clock[w] += 1
            if not self.holds_round(w):
                self.gate.leave(w)
        joined = []
        if self.done >= self.warm_start:
            for v in range(self.workers):
                if v not in self.live and v not in self.lost:
                    self._join(v)
                    joined.append(v)
        if joined:
            self.events.append({"event": "joined", "workers": joined, "step": self.done})
        return joined

    def lose(self, w: int, reason: str, where: str = "") -> None:
        """``w`` died (``where``: the node it ran on, as Ray's driver names it; kept in its event): the step
        ranges of its uncomputed cycles are handed out again (:attr:`returned`), and it
        no longer holds anyone back.

        (Pushes it already sent are not the worker's any more: they are applied, and counted, as usual.)
        A worker still waiting for the warm start (:attr:`waiting`) is lost too: it will not join, and a run it
        never joined (``warm_start`` past ``train.steps``) lists it in ``lost_workers``.
        """
        if w in self.lost:
            return          # its other queued cycles failed too: already counted
        if w not in self.live:
            self._lost_waiting.add(w)
        self.drop_cycles(w)
        self.live.discard(w)
        self.lost.append(w)
        self._lost_clock[w] = self.gate.clocks.get(w, 0)
        if not self.holds_round(w):
            self.gate.leave(w)
        self.events.append({"event": "worker-lost", "worker": w, "step": self.done, "reason": reason,
                            **({"where": where} if where else {})})
        if self.live or self.done >= self.total:
            return
        # the warm start's only worker died: the others start now (not once every step is done: the run's end asks
        # who lives, and a "joined" there trained nothing), and a replacement of one lost while it waited joins when
        # it is up, as does one that had joined here and died since. (Waiting for cluster.warm_start still, it would
        # idle: scripted, warm_start 100, worker 0 lost at step 30, worker 1's replacement idle to 100.)
        self._lost_waiting.clear()
        waiting = self.waiting
        if waiting:
            for v in waiting:
                self._join(v)
            self.events.append({"event": "joined", "workers": waiting, "step": self.done})

    def unapplied(self, w: int) -> int:
        """Pushes ``w`` sent that are not applied yet (the simulator's travelling ones; a lost worker's still land)."""
        return self._unapplied.get(w, 0)

    def holds_round(self, w: int) -> bool:
        """Does lost worker ``w`` keep its clock in a sync gate: a push of its still travels (the simulator's; on Ray a
        sent push is at the shards already), into the shards' open round, which waits for it. Until it lands no
        survivor starts the next round: were the gate to let them, their pushes into the round still open would be
        rejected ("round"), their clocks a round ahead of the shards' from then on."""
        return self.gate.name == "sync" and self.unapplied(w) > 0

    def drop_cycles(self, w: int) -> int:
        """``w``'s queued cycles will push nothing (lost with it, or dropped where one of its partitions died: Ray's
        ``partition-restarted``): their step ranges are handed out again (:attr:`returned`); returns their steps."""
        cycles = self._inflight.pop(w, [])
        self.returned = sorted(self.returned + [(first, k) for k, _, first in cycles])
        return sum(k for k, _, _ in cycles)

    def rejoin(self, w: int, **more: Any) -> None:
        """A lost worker was restarted: live again, level with the slowest (like a late joiner), but never
        behind the clock it died with: under sync the round it pushed into may still be open, and a
        second push of its into that round would count it twice. One lost while it waited for the warm start
        (noticed when it died) waits again while the warm start runs. ``more``: the
        ``worker-restarted`` event's other fields (Ray's ``seed_step``)."""
        self.lost.remove(w)
        self.events.append({"event": "worker-restarted", "worker": w, "step": self.done, **more})
        if w in self._lost_waiting and self.done < self.warm_start and self.live:
            return          # lost while it waited for the warm start: it waits again, and joins with the others
        self._lost_waiting.discard(w)
        self.live.add(w)
        slowest = min(self.gate.clocks.values()) if self.gate.clocks else 0
        self.gate.join(w, max(slowest, self._lost_clock.pop(w, 0)))

    def resumed(self, **more: Any) -> dict[str, Any]:
        """A resume (or a shard restart) has started its workers: a ``resumed`` event with the step and the workers
        running again, so each loss before it is followed by what came of it. Ray starts every worker afresh, ones
        lost for good too; the simulator goes on exactly where its checkpoint stood, its lost workers still lost.
        Recorded here for every runner alike (Ray's driver records none of its own).
        ``more``: its other fields (``n``, its number among the run's resumes); returns it."""
        self.events.append({"event": "resumed", "step": self.done,
                            "workers": [w for w in range(self.workers) if w not in self.lost], **more})
        return self.events[-1]

    def unapplied_state(self, landed: dict[int, int] | None = None) -> dict[str, Any]:
        """For a Ray server checkpoint, whose resume starts the workers afresh: ``dispatched`` and the ranges
        ``(first, steps)`` handed out and not applied, ``unapplied`` (given back by a loss, in a cycle not pushed
        yet: lost with the actors, or in a push sent (:meth:`end_compute`) that the shards never applied).
        ``landed``: per worker, how many of its oldest sent pushes the shards applied all the same (their answers
        not read yet: in the snapshot, counted in its step). :meth:`restore_unapplied` hands them out again before
        any new index. A sent push is kept too: left out, one the stop cut before the shards applied it (Ray's
        driver, between :meth:`end_compute` and its held block) would be neither applied nor handed out again, and
        the resumed run would end a step short of ``train.steps``, unfinished for good (each rerun resuming at its
        last step and training nothing)."""
        sent = [r for w, rs in self._sent.items() for r in rs[(landed or {}).get(w, 0):]]
        ranges = self.returned + sent + [(first, k) for cycles in self._inflight.values() for k, _, first in cycles]
        return {"dispatched": self.dispatched, "unapplied": [list(r) for r in sorted(ranges)]}

    def restore_unapplied(self, saved: dict[str, Any], where: str | Path) -> None:
        """Take back :meth:`unapplied_state` (clipped to the budget: a resume may lower it) from ``saved``, the
        checkpoint file ``where``'s JSON (named by the warning of a repair). A checkpoint written before
        2026-12-04 kept only the step: new indices go on from it, as that run's did (the indices of the cycles in
        flight at the stop that landed out of order were trained twice and those still in flight never)."""
        if "unapplied" in saved:    # (a hand-damaged range could train steps twice: ValueError, named by the caller)
            ranges, dispatched = [tuple(r) for r in saved["unapplied"]], saved["dispatched"]
            if type(dispatched) is not int or not all(len(r) == 2 and all(type(v) is int for v in r) and r[0] >= 0
                                                      and r[1] >= 1 and sum(r) <= dispatched for r in ranges):
                raise ValueError(f"'unapplied' = {saved['unapplied']!r} with 'dispatched' = {dispatched!r}: not "
                                 "(first, steps) ranges of whole steps within the steps handed out")
            ranges = sorted(ranges + self._untracked(ranges, dispatched, where))
            self.dispatched = min(dispatched, self.total)
            self.returned = [(f, min(k, self.total - f)) for f, k in ranges if f < self.total]

    def _untracked(self, ranges: list[tuple[int, int]], dispatched: int, where: str | Path) -> list[tuple[int, int]]:
        """The steps a checkpoint counts as handed out (``dispatched``) but neither applied (its step, :attr:`done`)
        nor in its unapplied ``ranges``: a push a stop cut before the shards applied it, in a checkpoint written
        before 2026-12-06 (:meth:`unapplied_state`). Which indices they were is not kept: the highest not in
        ``ranges`` are handed out again in their place, so the run still trains ``train.steps`` and finishes (left
        so, such a run ends a push short, and every resume after trains nothing and writes its model again).
        Consecutive indices go back as one range, so a cycle takes up to ``n_push`` of them: a lost push of 10
        steps (``n_push`` 10) comes back as one cycle, not 10 cycles of one step each (9 more hand-offs and shard
        applies)."""
        missing = dispatched - self.done - sum(k for _, k in ranges)
        if missing <= 0:
            return []
        covered = {i for f, k in ranges for i in range(f, f + k)}
        free = sorted(islice((i for i in range(dispatched - 1, -1, -1) if i not in covered), missing))
        one = missing == 1
        log.warning("checkpoint file %r counts %s handed out ('dispatched': %d) that %s neither applied ('step': %d) "
                    "nor kept to hand out again ('unapplied') (a stop before 2026-12-06 could lose a push so): step %s "
                    "%s %s handed out again in %s place", str(where), plural(missing, "step"), dispatched,
                    "was" if one else "were", self.done, "index" if one else "indices",
                    ", ".join(map(str, free)) if len(free) <= 8 else f"{free[0]} to {free[-1]}",
                    "is" if one else "are", "its" if one else "their")
        runs: list[list[int]] = []
        for i in free:
            if runs and runs[-1][0] + runs[-1][1] == i:
                runs[-1][1] += 1
            else:
                runs.append([i, 1])
        return [(first, k) for first, k in runs]

    def members(self) -> set[int]:
        """Whom a shard takes pushes from: the live workers, and a lost one while a push it sent is on its way
        (the simulator's travel; on Ray a sent push is at the shards already)."""
        return self.live | {w for w in self._unapplied if self.unapplied(w)}

    @property
    def waiting(self) -> list[int]:
        """The workers waiting for the warm start to end: neither live nor lost."""
        return [v for v in range(self.workers) if v not in self.live and v not in self.lost]

    @property
    def finished(self) -> bool:
        return self.done >= self.total or not self.live

    def clocks(self) -> dict[int, int]:
        return dict(self.gate.clocks)


def restarts_left(restarts: int, events: list[dict[str, Any]]) -> int:
    """``cluster.restarts`` less the restarts the run already used (a shard restart builds a new driver, a resume a
    new one, Ray's or the simulator's): a partition restarted alone (``partition_restarts_on_ray``) spends one too."""
    return restarts - sum(1 for e in events if e["event"] in ("worker-restarted", "restart-failed",
                                                              "partition-restarted"))
