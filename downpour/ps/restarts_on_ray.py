"""Lost Ray workers: each noticed, and restarted (``cluster.restarts``) without holding up the others.

A mixin of :class:`~downpour.ps.cluster_on_ray.RayCluster`, which owns the state it reads
(``coord``, ``worker_actors``, ``partition_actors``, ``restarts``, ``_blocked``) and the calls it
makes (``_spawn``, ``_set_live``, ``_dispatch``, ``_open_channel``). Both driving loops (the task
loop and the piped one) wait on a restart's first answer beside their other futures
(:meth:`Restarts.restart_refs`, :meth:`Restarts.poll_restarts`).

The driver does not wait for the new actor to come up (up to ``RESTART_SECONDS``) before it goes on,
which would hold every survivor with it: their pushes unread, their next cycles not granted.
The new actor's first answer is one more future: the worker rejoins when it comes, and is given
up if it has not come within ``RESTART_SECONDS`` (Ray found it no room), or once the run is over (every
step applied). Not as soon as every step is handed out: a later loss hands steps back
(``Coordinator.returned``), and were the last survivors to die too, the run would end "every worker was
lost" with steps the given-up restart would have trained. A restart given up gives
``cluster.restarts`` back (it never came up: :func:`restarts_left` counts none either).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from downpour._names import node_named
from downpour.errors import DownpourError
from downpour.ps.connect_on_ray import CONNECT_TIMEOUT_S, head_answers
from downpour.ps.shards_on_ray import RESTART_SECONDS
from downpour.ps.recorder import ShardLost
from downpour.ps.silence import Silence, Silent
from downpour.train.signals import signals_held, signals_let_through

log = logging.getLogger("downpour.ps.cluster_on_ray")   # the driver's logger: its records go where the driver's do
WATCH_SECONDS = 1.0   # how often a worker waiting for the warm start is asked whether it lives (task loop)
WAITED = " while it waited for the warm start"   # a loss's reason, after its error's name, for a waiting worker


class Restarts:
    """``RayCluster``'s half that loses and restarts workers."""

    _starting: dict[int, tuple[Any, float]]     # worker -> (its new actor's first answer, when to give up)
    _seeded_at: dict[int, int]                  # worker -> the step its replacement's seeds were derived from
    _watching: dict[int, tuple[Any, float]]   # waiting worker -> (its "alive?" answer or None, asked at)
    _unread: list[Any]     # not come yet: "alive?" answers of workers that joined, silent ones' cycles

    def _lost(self, w: int, err: Exception) -> None:
        """Worker ``w``'s actor died: its push never left, so nothing of it is applied (one still waiting for the
        warm start: its reason says so, :data:`WAITED`). Start a new one
        if ``cluster.restarts`` allows (it rejoins when it answers), and let the others go on now. A worker
        that raised one of the project's own errors (a shard of files none of which can be read) ends the
        run with it, as the simulator does: a restart would meet it again, and the others train on without
        its data (the run is checkpointed on the way out)."""
        cause = err.cause if isinstance(err, RayTaskError) else None
        if isinstance(cause, DownpourError):
            raise cause
        before, why = set(self.coord.live), WAITED if w in self.coord.waiting else ""
        name = err.reason if isinstance(err, Silent) else type(err).__name__    # "silent for 312 s, limit 300 s"
        where = self.where("workers", [w])     # named as a lost shard's node is
        with signals_held():   # its cycles' ranges leave the flight and are given back together (not lost between)
            self.coord.lose(w, name + why, where)
        self.silence.forget(w)
        joined = self.coord.live - before    # the warm start's only worker died: the others start now
        log.warning("worker %d lost at step %d on %s: %s%s%s", w, self.coord.done, where, name, why,
                    f" ({type(cause).__name__}: {cause})" if cause is not None else "")
        self._set_live()          # now: a sync round it owed closes on the others before it rejoins
        self._kill_worker(w)
        self._blocked.discard(w)
        self.poll_restarts()      # first: one past its deadline gives its restart back, for this loss
        if not self._respawn(w):
            self.not_restarted(w)
        for _ in range(self.coord.depth):
            for v in sorted(self._blocked | joined):
                self._dispatch(v)
        self.poll_restarts()      # an actor already up rejoins at once

    def _kill_worker(self, w: int) -> None:
        """Worker ``w``'s actor (a cycle can fail with it alive, a lost partition: it holds its CPU) and its
        partition actors (their filters' memory, until the run ended)."""
        kill(self.worker_actors[w])
        for part in self.partition_actors.pop(w, []):
            kill(part)

    def _respawn(self, w: int) -> bool:
        """Start a new actor for lost worker ``w`` if ``cluster.restarts`` allows and steps are left. (Asked after
        ``coord.lose``, which hands ``w``'s uncomputed steps back: "none left" means ``w`` held none. A later loss
        that hands steps back restarts its own worker here, from the same budget, so refusing this one loses
        no step.)"""
        if self.restarts <= 0 or self.coord.handed_out:
            return False
        self._head_answers(w)
        self.restarts -= 1
        self._start_replacement(w)
        return True

    def _start_replacement(self, w: int) -> None:
        """A new actor for worker ``w`` (:meth:`RayCluster._spawn`), its first answer awaited beside the others'. Its
        batch order and torch's RNG are seeded from the step it starts at (``ps.seeds.batch_seed``, ``worker_seed``),
        which its ``worker-restarted`` event records as ``seed_step`` (it may rejoin steps later)."""
        self._seeded_at[w] = self.coord.done
        self.worker_actors[w] = self._spawn(w, self.next_seq.get(w, 0), self.coord.done)
        self._starting[w] = (self.worker_actors[w].start_report.remote(), time.monotonic() + RESTART_SECONDS)

    def _pinned_to_gone_node(self, w: int) -> tuple[str, int | None] | None:
        """The first of worker ``w``'s actors (its own, then its partitions in order) pinned to a node gone
        (``ray.nodes()`` has it dead, or not at all): ``(that node, None for the worker's own or the partition)``
        (None: none was); the head asked first (:meth:`_head_answers`). Not the node alone: a replacement's
        event and log would say a partition's node as the worker's own ("its node cccccccc gone"), the worker's
        node alive."""
        self._head_answers(w)
        alive = {nd["NodeID"] for nd in ray.nodes() if nd["Alive"]}
        gone = [(node, p) for (v, p), node in self.pins.items() if v == w and node is not None and node not in alive]
        return min(gone, key=lambda pin: -1 if pin[1] is None else pin[1]) if gone else None

    def _head_answers(self, w: int) -> None:
        """Before a restart asks Ray (its nodes, a new actor): a joined cluster's head that no longer answers (stopped:
        its actors died with it) makes worker ``w``'s loss the shards' (ShardLost), recorded as a lost shard's (a
        question to the gone head would wait until Ray ended the process after 60 s, exit 1, nothing recorded).
        The check may wait up to ``CONNECT_TIMEOUT_S`` (a host that drops connections unanswered) inside the task
        loop's held block, so it lets a Ctrl-C or SIGTERM through: the loss and its worker's kill are done
        by then, the restart not begun (the stop does not wait for the answer and the restart)."""
        with signals_let_through():
            answers = head_answers(CONNECT_TIMEOUT_S)
        if not answers:
            self._count_snapshotted()     # (the shards went with the head: the loss is at the step they held)
            raise ShardLost(f"the Ray cluster's head no longer answers (worker {w} lost at step {self.coord.done})",
                            step=self.coord.done)

    def _why_not_respawned(self) -> str:
        """Why :meth:`_respawn` started no new actor."""
        return "cluster.restarts spent" if self.restarts <= 0 else "no steps left for it"

    def not_restarted(self, w: int, why: str | None = None) -> None:
        """Lost worker ``w`` gets no replacement, none tried: a ``not-restarted`` event naming why (``why``, else
        ``cluster.restarts = 0``, ``cluster.restarts spent`` or ``no steps left for it``), so every ``worker-lost`` is
        followed by what came of it. (``restart-given-up`` is a replacement started and given up.) A ``worker-lost``
        alone would read the same as one whose replacement is still coming up (a checkpoint's), and a
        ``restart-given-up`` would make every loss with ``cluster.restarts = 0`` read as a restart tried and given
        up. Logged where a restart was asked for (cluster.restarts)."""
        asked = self.setup.cfg.cluster.restarts
        why = why or ("cluster.restarts = 0" if not asked else self._why_not_respawned())
        self.coord.events.append({"event": "not-restarted", "worker": w, "step": self.coord.done, "reason": why})
        if asked:
            log.warning("worker %d was not restarted (%s); the run goes on without it", w, why)

    def watch_waiting(self) -> None:
        """Task loop: ask each worker still waiting for the warm start whether it lives, one question at a time, at
        most every ``WATCH_SECONDS``; one whose answer is an error is lost now, at this step (and restarted, to wait
        again, if ``cluster.restarts`` allows). No cycle of its runs, so nothing else shows its death: else it is
        taken when it joins, or at the run's end, at its last step (scripted: worker 1 killed at step 20 of 120,
        warm start past the run: lost at step 120). (The piped loop sees its serve task end.)"""
        self._drop_watches()
        now = time.monotonic()
        waiting = self.coord.waiting
        # every question not yet answered looked at in one call (it was one ray.wait per waiting worker per turn)
        asked_refs = [ref for w in waiting if (ref := self._watching.get(w, (None, 0.0))[0]) is not None]
        answered = set(ray.wait(asked_refs, num_returns=len(asked_refs), timeout=0)[0]) if asked_refs else set()
        for w in waiting:
            # (a replacement, waiting again, is watched afresh: its lost actor's entry went with the loss, below, or
            # with _drop_watches while it was lost)
            ref, asked = self._watching.get(w, (None, -WATCH_SECONDS))
            if ref is not None:
                if ref not in answered:
                    continue
                try:
                    ray.get(ref)
                except RayError as err:
                    del self._watching[w]
                    self._lost(w, err)
                    continue
                ref = None
            if now - asked >= WATCH_SECONDS:
                ref, asked = self.worker_actors[w].node.remote(), now
            self._watching[w] = (ref, asked)

    def _drop_watches(self) -> None:
        """The questions asked of workers that have joined since, and a silent worker's cycles (``_lose_silent``):
        each read once answered, one unanswered at the join too. Tidiness, not a change of outcome: their only
        error is a killed actor's ``ActorDiedError``, which Ray does not print unread (measured on Ray 2.60; an actor
        task that raised is printed). (The death itself shows in the worker's cycles.)"""
        for w in [w for w in self._watching if w not in self.coord.waiting]:
            ref = self._watching.pop(w)[0]
            if ref is not None:
                self._unread.append(ref)
        if self._unread:
            ready, self._unread = ray.wait(self._unread, num_returns=len(self._unread), timeout=0)
            drain(ready)

    def restart_refs(self) -> list[Any]:
        """The first answers of the workers being restarted: futures the driving loop waits on too."""
        return [ref for ref, _ in self._starting.values()]

    def restart_timeout(self) -> float | None:
        """Seconds until the next restart is given up (None: none is under way; 0: the run is over, so
        :meth:`poll_restarts` gives them up now)."""
        if not self._starting:
            return None
        if self._over():
            return 0.0
        return max(0.0, min(deadline for _, deadline in self._starting.values()) - time.monotonic())

    def _over(self) -> bool:
        """Every step applied: nothing a restarted worker could train. (Every step *handed out* is not enough:
        a survivor that dies hands its uncomputed steps back, and the restart may be all that is left.)"""
        return self.coord.done >= self.coord.total

    def poll_restarts(self) -> None:
        """Rejoin every restarted worker whose actor has answered; give up those out of time, and all of
        them once the run is over."""
        if not self._starting:
            return
        refs = {ref: w for w, (ref, _) in self._starting.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in ready:
            self._restarted(refs[ref], ref)
        now = time.monotonic()
        for w, (_, deadline) in list(self._starting.items()):
            if now >= deadline or self._over():
                del self._starting[w]
                # never up: no restart, as restarts_left (a resume's, a shard restart's count) has it. Kept spent, a
                # later loss would not be restarted (restarts=1, worker 1's replacement never placed, worker 0 lost
                # at step 300: "every worker was lost" after 300 of 400; given back, 400 of 400)
                self.restarts += 1
                self._give_up(w, f"not up within {RESTART_SECONDS} s" if now >= deadline else "no steps left for it")

    def _restarted(self, w: int, ref: Any) -> None:
        del self._starting[w]
        node = self.pins.get((w, None))     # where it was pinned (None: Ray chose), until it answers with its node
        try:
            report = ray.get(ref)           # its node and install (start_report), as every actor's at the start
            node = report["node"]
            parts = self._place(w, node)
        except GetTimeoutError:      # up, but not its partition actors: given up, its restart given back (never up)
            self.restarts += 1
            self._give_up(w, f"its {'partition actors or ' if w in self.partition_actors else ''}device did not "
                             f"answer within {RESTART_SECONDS} s")
            return
        except RayError as err:      # the new actor (or a partition) died coming up: one more loss, restarted again
            if (pin := self._pinned_to_gone_node(w)) is not None:
                gone, p = pin
                whose = "" if p is None else f"partition {p}'s "       # its [partition 0's] node
                # pinned to a node that crashed before ray.nodes() said so (Ray 2.60 has it dead some 14 s after the
                # crash, the loss shows in 2-3 s as an ActorUnavailableError naming no node): the same restart, placed
                # again off it, once Ray has it dead: not a restart-failed, its restart spent; an event, not the
                # log alone, so a run's files tell why its restart came 10-14 s late
                self.coord.events.append({"event": "restart-placed-again", "worker": w, "step": self.coord.done,
                                          "reason": f"its {whose}node {gone[:8]} gone ({type(err).__name__})"})
                log.warning("worker %d's replacement%s was pinned to node %s, gone since (%s): placed again", w,
                            "" if p is None else f"'s partition {p}", gone[:8], type(err).__name__)
                self._kill_worker(w)
                self._start_replacement(w)
                return
            # named by its own node where known (answered, or pinned), never its predecessor's, so cluster.json's
            # placement does not keep the predecessor's node where the node answered first
            where = node_named(node, self.addresses) if node else ""
            self.coord.events.append({"event": "restart-failed", "worker": w, "step": self.coord.done,
                                      "reason": type(err).__name__, **({"where": where} if where else {})})
            log.warning("worker %d's restart died coming up%s: %s", w, f" on {where}" if where else "",
                        type(err).__name__)
            self._kill_worker(w)
            if not self._respawn(w):
                self._give_up(w, self._why_not_respawned())
            return
        self._came_up([report, *parts])
        self.silence.fresh(w)       # its first cycle is its warm-up
        if self.piped:
            self._open_channel(w)
        self.coord.rejoin(w, seed_step=self._seeded_at.pop(w))
        log.warning("worker %d restarted", w)
        self._set_live()
        for _ in range(self.coord.depth):
            self._dispatch(w)

    def _place(self, w: int, node: str) -> list[dict[str, Any]]:
        """cluster.json's placement and devices follow a restarted worker (and its partitions), placed as the actors
        they replace, elsewhere where those actors' node is gone (``RayCluster._placed``), not the first actor's node
        and device to the end. Its partition actors' first answers are waited for here (the worker's own came
        without them), with its device's: at most ``RESTART_SECONDS`` (GetTimeoutError), a wait
        that holds up every survivor (a plain ``ray.get`` would wait for good on partition actors Ray never started:
        0 CPUs, pinned to a node). Returns the partitions' start reports (their node and install)."""
        parts = self.partition_actors.get(w, [])
        self.placement["workers"][w] = node     # first: a replacement that dies before its device answers is its own
        device, *reports = ray.get([self.worker_actors[w].device.remote(), *[a.start_report.remote() for a in parts]],
                                   timeout=RESTART_SECONDS)
        self.devices[w] = device
        if parts:
            self.placement["partitions"][w * len(parts):(w + 1) * len(parts)] = [r["node"] for r in reports]
        return reports

    def _give_up(self, w: int, why: str) -> None:
        """Worker ``w``'s replacement is given up (``why``): a ``restart-given-up`` event, after its ``worker-lost``.
        Without it nothing in staleness.json says so: its ``worker-lost`` reads the same as one whose
        replacement is still coming up (a checkpoint's), and the report's faults line names no outcome."""
        self.coord.events.append({"event": "restart-given-up", "worker": w, "step": self.coord.done, "reason": why})
        log.warning("worker %d could not be restarted (%s); the run goes on without it", w, why)
        # its partition actors too (model parallelism): were the worker actor alone killed, a replacement's
        # partitions, placed where Ray found room, would hold its filters' memory to the run's end
        self._kill_worker(w)


def kill(actor: Any) -> None:
    """Best effort: the actor may be dead already."""
    try:
        ray.kill(actor)
    except Exception:  # noqa: BLE001
        pass


def silent_workers(silence: Silence, pending: dict[Any, Any], worker_of: Callable[[Any], int | None]
                   ) -> Iterator[tuple[int, Silent, list[Any]]]:
    """Each busy worker silent past its limit (:meth:`Silence.overdue`) none of whose futures in ``pending`` is ready:
    ``(w, its Silent, those futures)``, taken out of ``pending`` first (``worker_of``: the worker a future of it is a
    cycle or unit of, None for another kind). One that has answered is left, taken at the driver's next wait. The
    caller loses each as a dead one (its actor killed: the futures fail with ActorDiedError, which Ray does not
    print unread, :func:`drain`). Downpour's task loop and Sandblaster's pool on Ray."""
    for w, silent, limit in silence.overdue():
        refs = [ref for ref, what in pending.items() if worker_of(what) == w]
        if refs and ray.wait(refs, num_returns=1, timeout=0)[0]:
            continue
        for ref in refs:
            del pending[ref]
        yield w, Silent(w, silent, limit), refs


def first_ready(refs: list[Any], timeout: float | None) -> list[Any]:
    """The first of ``refs`` (in the order given) that is ready, as a list of one; none (``[]``) if none is within
    ``timeout`` seconds (None: no limit). Not ``ray.wait(refs, num_returns=1)`` alone, which answers with some ready
    one, not the first: a dead actor's failed call the driver had waited on while it ran, first in the list with three
    answers ready after it, came first in 4 of 12 tries (Ray 2.60, 2026-12-06; tests/test_ray_wait_order.py), and on
    a real multi-node Ray a crashed node's worker was seen lost 101-121 s after its cycles had failed, the survivor's
    answers read first each turn (tests/test_ps_ray_nodes.py). The wait first, then a look (``timeout=0``: the ready
    ones in the order given) only at those before the one it gave, none where it gave the first: a look that finds
    fewer ready than it asks for costs ~120-150 us, a wait answered at once ~10 us (bench/wait_order.py, 2026-12-06).
    So the wait comes first, not a look at them all with the wait only where none is ready: two looks where none is."""
    if not refs:
        return []
    ready = ray.wait(refs, num_returns=1, timeout=timeout)[0]       # some ready one, or none within the timeout
    if not ready:
        return []
    before = refs[:refs.index(ready[0])]
    if before:      # a look (timeout 0) at those before it only; ready ones come in the order given
        earlier = ray.wait(before, num_returns=len(before), timeout=0)[0]
        if earlier:
            return earlier[:1]
    return ready


def drain(refs: list[Any]) -> None:
    """Get each of ``refs`` and drop it, an error too: Ray prints an actor task's error never got as an "Unhandled
    error" traceback when its ref is dropped (a killed actor's ActorDiedError it does not: measured on Ray 2.60)."""
    for ref in refs:
        try:
            ray.get(ref)
        except RayError:
            pass

