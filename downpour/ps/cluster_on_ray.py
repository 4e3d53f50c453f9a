"""The Ray driver: :class:`RayCluster` starts Ray (or joins ``cluster.address``), places one actor
per shard, worker and partition (:mod:`downpour.ps.on_ray`, :mod:`downpour.ps.partitions_on_ray`; how they start:
:mod:`downpour.ps.starting_on_ray`; where each goes: :mod:`downpour.ps.placing_on_ray`),
drives the coordinator's budget (:mod:`downpour.ps.driving_on_ray`) and tears everything down, whatever happened.
Its other parts are mixins, one idea each, of the state it declares here and of what its start sets
(:class:`~downpour.ps.starting_on_ray.Starting` names it).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import ray
from ray import ObjectRef   # (bound here: the tests' stand-ins for ``ray`` have no ObjectRef)

from downpour._names import node_named, plural
from downpour.data.loader import listing_digest
from downpour.data.stream import StreamingData
from downpour.ps import channel
from downpour.ps.asking_on_ray import Asking, answering
from downpour.ps.checkpoint import ShardState
from downpour.ps.connect_on_ray import head_answers
from downpour.ps.coordinator import Coordinator, restarts_left
from downpour.ps.driving_on_ray import Driving
from downpour.ps.keeping_on_ray import Keeping, kept
from downpour.ps.laps import Laps
from downpour.ps.shards_on_ray import ShardPush
from downpour.ps.partition_restarts_on_ray import PartitionRestarts
from downpour.ps.piped_on_ray import PipedRun
from downpour.ps.placing_on_ray import Placing
from downpour.ps.recorder import ShardLost
from downpour.ps.restarts_on_ray import Restarts, kill
from downpour.ps.setup import ClusterSetup
from downpour.ps.shard import Shard
from downpour.ps.shm import SHM_DIR
from downpour.ps.shutdown_on_ray import shut_down
from downpour.ps.silence import Silence
from downpour.ps.starting_on_ray import Starting
from downpour.ps.tasks_on_ray import TaskRun
from downpour.train.signals import signals_let_through

log = logging.getLogger(__name__)


class RayCluster(Starting, Driving, TaskRun, PipedRun, Restarts, PartitionRestarts, Placing, Asking):
    """The Ray driver, shaped like :class:`~downpour.ps.simulated.SimulatedCluster`: built with the
    cluster's setup and restored shards, it starts Ray (or joins ``cluster.address``), one actor per
    shard and per worker; :meth:`run` drives the coordinator's budget; :meth:`close` kills every actor
    and removes the shared memory, whatever happened, so nothing is left running on a shared cluster.

    The driving loop is Ray's parameter-server example (:mod:`downpour.ps.tasks_on_ray`): ``pending`` maps
    each future to what it is (a worker's cycle, or the shards' answers to a push), and ``ray.wait`` takes the next one.
    Where every shard (with shared memory) and every worker says at its start that it runs on the driver's node (a
    local Ray: the common case) the cycles go over each worker's channel instead (``piped``,
    :mod:`downpour.ps.piped_on_ray`): the same coordinator calls in the same order, without a Ray task per cycle.
    ``laps`` times the driver's phases (``wait`` in ``ray.wait``, ``get_meta``, ``push_apply``: ring
    the shards and read their answers, ``dispatch``: submit a cycle, ``record``: the recorder);
    :meth:`info` (:mod:`downpour.ps.asking_on_ray`) reports them with every actor's own (``profile``).
    """

    def __init__(self, setup: ClusterSetup, shards: list[Shard], coord: Coordinator,
                 stage_of: Callable[[int], int | None], start_step: int = 0, seqs: dict[int, int] | None = None,
                 saved: dict[str, Any] | None = None):
        cfg = setup.cfg
        self.setup, self.coord = setup, coord   # (stage_of: each worker actor asks its steps' stages itself)
        self.restarts = restarts_left(cfg.cluster.restarts, coord.events)
        self.next_seq = dict(seqs or {})                 # per worker, one past the last push the driver received
        self.shard_actors: list[Any] = []
        self.worker_actors: list[Any] = []
        self.partition_actors: dict[int, list[Any]] = {}   # model parallelism: each worker's partitions
        # (worker, None) for worker w's actor, (worker, p) for its partition p -> the node its latest actor was pinned
        # to (None: Ray chose): read by _start's wait, and by a restart, placed as the actor it replaces (_placed)
        self.pins: dict[tuple[int, int | None], str | None] = {}
        self.silent_nodes: set[str] = set()   # listed alive, their raylet silent at a restart's question (_placed)
        self.pusher: ShardPush | None = None
        self.started = False                             # set in _start: this driver started Ray (close shuts it down)
        self.run_id = "-"                                # set in _start: its actors', shared memory's, channels' names
        self.per_worker = 0.0                            # set in _start: the CPUs each worker actor asks
        self.place: Callable[[int, float], dict[str, Any]] | None = None   # set in _start: connect_on_ray.placer's
        self.lanes: list[Any] = []                       # set in _start: per shard its lanes (ShardActor.lanes) or None
        self.placement: dict[str, list[str]] = {}        # set in _start: each actor's node, by kind ("shards", ...)
        self.shard_pins: list[str | None] = []           # set in _start: the node each shard is pinned to (None: Ray's)
        self.reused: dict[Any, Any] = {}                 # set in _start: the kept actors it takes (keeping_on_ray)
        self.reborn: dict[int, Any] = {}                 # by worker: a kept one's rebuild's answer (start report)
        self.anew: dict[tuple[str, int], Any] = {}       # set in _start: a kept one's new actor, should it have died
        self.actor_starts: dict[str, list[str]] = {}     # set in _start in a keeping: each actor kept or fresh, by kind
        self.ran = False                                 # set by run once the budget is done: close may keep the actors
        self._incarnation = [0] * cfg.cluster.workers
        self._partition_lives: dict[tuple[int, int], int] = {}   # partition_restarts_on_ray: each one's restarts
        self._pending: dict[Any, tuple[str, int]] = {}   # future -> ("cycle" | "push", worker)
        self._grads: dict[Any, list[Any]] = {}           # a cycle's metadata ref -> its gradient refs
        self._owner: dict[Any, Any] = {}                 # a cycle's metadata ref -> the worker actor running it
        self._pushes: dict[Any, tuple[list[Any], dict[str, Any]]] = {}   # last answer ref -> (all answers, metadata)
        self._snapshotted: dict[Any, int] = {}   # answer ref -> worker: the pushes out at the last snapshot (snapshot)
        self._uncounted = 0     # pushes sent that a lost shard's step does not count (_count_snapshotted): no snapshot
        self._blocked: set[int] = set()
        self.laps = Laps()
        self.silence = Silence(cfg.cluster.silent_seconds, cfg.cluster.workers)   # a busy worker silent this long is lost
        self.piped = False                               # set in _start: cycles over channels, not Ray tasks
        self.gpus, self.devices = 0.0, []                # set in _start: GPUs per worker actor; each one's device
        self.threads, self.node_cpus = 0, {}             # set in _start: train.threads; each live node's CPUs (Ray's)
        self.placed_first: dict[int, dict[str, Any]] = {}   # set in _start: each worker's options, until it starts
        self.reports: list[dict[str, Any]] = []          # set in _start, with restarts': every start_report
        self.nodes: dict[str, dict[str, Any]] | None = None   # set in _start: environment.json's nodes (_came_up)
        self.addresses: dict[str, str] = {}              # set in _start: node id -> IP address
        # set by run_cluster once environment.json is written: called with its nodes anew after a restart (_came_up)
        self.on_nodes: Callable[[dict[str, dict[str, Any]]], None] | None = None
        self._channels: dict[int, channel.DriverEnd] = {}
        self._credits: dict[int, int] = {}               # piped: cycles granted to each worker, not reported yet
        self._serving: dict[Any, tuple[int, Any]] = {}   # piped: serve task ref -> (worker, its actor)
        self._starting: dict[int, tuple[Any, float]] = {}   # restarts_on_ray: worker -> (first answer, give-up time)
        self._seeded_at: dict[int, int] = {}   # restarts_on_ray: worker -> the step its replacement was seeded from
        self._watching: dict[int, tuple[Any, float]] = {}   # restarts_on_ray: the warm start's waiting workers
        self._unread: list[Any] = []                     # restarts_on_ray: their questions left when they joined, and
        #                                                  tasks_on_ray: a silent worker's cycles, read once they fail
        # streamed: the file list's fingerprint, kept in the checkpoint. A resume starts new streams, but a changed
        # list gives each worker other files (the shards are cut from it): said, and recorded in data.json
        self.listing = listing_digest(setup.data.items) if isinstance(setup.data, StreamingData) else None
        if self.listing and (saved or {}).get("listing", self.listing) != self.listing:
            log.warning("the data's file list changed since the checkpoint (%d items now): each worker's share of the "
                        "files changed, and the run will not reproduce from its start", len(setup.data))
            setup.data.info["listing_changed_on_resume"] = True
        # a resume's new streams report from its step on, and so do data.json's sums: counted_from_step says so (else a
        # run resumed at step 133 of 300 records 5,344 samples, its last 167 steps' alone, unexplained)
        if self.listing and start_step:
            setup.data.info["counted_from_step"] = start_step
        try:
            self._start(shards, start_step)
        except BaseException:
            self.close()
            raise

    # -- who is live, which shards are lost ---------------------------------------------------------
    def _set_live(self) -> None:   # waited for, so no worker fetches before the shards know who is live
        ray.get([a.set_workers.remote(sorted(self.coord.live)) for a in self.shard_actors])

    def _dead_shards(self) -> list[int]:
        """The shards whose actor no longer answers (asked after a failure, to tell a lost shard,
        which every worker's next fetch trips over, from a lost worker). All asked at once, 10 s for them all
        (:func:`~downpour.ps.asking_on_ray.answering`; one after another, up to 10 s each, would take 80 s for 8
        silent shards), inside the task loop's held block, so a Ctrl-C or SIGTERM is let through: the failure is
        handled by then and the question only reads (else the stop would wait for every answer)."""
        with signals_let_through():
            alive = answering(self.shard_actors, timeout=10)
        return [j for j, ok in enumerate(alive) if not ok]

    def _shard_lost(self, err: BaseException) -> None:
        """Raise :class:`ShardLost` if a shard died (``err`` the failure that showed it); else return."""
        dead = self._dead_shards()
        if dead:
            self._count_snapshotted()
            # where they ran (a stopped run's cluster.json has no placement to say it)
            raise ShardLost(f"shard {', '.join(map(str, dead))} lost at step {self.coord.done} on "
                            f"{self.where('shards', dead)} ({type(err).__name__})", step=self.coord.done,
                            placed={**self.placed(self.addresses), "lost_shards": dead}) from err

    def where(self, kind: str, indices: list[int]) -> str:
        """The nodes the actors ``indices`` of ``kind`` (a key of ``placement``: "shards", "workers") ran on, as a
        loss names them: "node abcd1234 at 10.0.0.5" (:func:`~downpour._names.node_named`)."""
        nodes = sorted({self.placement[kind][i] for i in indices})
        return ", ".join(node_named(x, self.addresses) for x in nodes)

    # -- the driver protocol's other half -----------------------------------------------------------
    def snapshot(self) -> list[ShardState]:
        """The shards' states now (after :meth:`run`: final, a partial sync round applied). The pushes whose answers
        are still out are in every one (a shard runs the driver's calls in order): kept, for a loss after it to count
        as the checkpoint counts them (:meth:`state`, :meth:`_count_snapshotted`). After a lost shard (the checkpoint on
        the way out), refused where pushes its step does not count were sent: a shard taken for lost (silent 10 s)
        that answers holds them, so a checkpoint counting them is ahead of the stop (a stop at step 21 whose resume
        went on "from step 22"), and one at the loss's step would hold their updates and counters all the same."""
        if self._uncounted:
            raise RuntimeError(f"the shards hold {plural(self._uncounted, 'push')} sent after step {self.coord.done}, "
                               "the lost shard's, whose answers were not read")
        out = {ref: w for ref, (kind, w) in self._pending.items() if kind == "push"}
        states = ray.get([a.state_dict.remote() for a in self.shard_actors], timeout=60)
        self._snapshotted = out
        return states

    def _count_snapshotted(self) -> None:
        """Before a lost shard is raised: the pushes whose answers are still out that a snapshot found in every shard
        are recorded in the coordinator, their answers unread (a lost shard's never come), so that the loss's step is
        the one the server held, as its checkpoint counted it (:meth:`state`); else a checkpoint written at step 20
        with a push in flight held step 21, and a shard lost just after it stopped the run "at step 20", before the
        checkpoint it kept (a 2-node Ray, 2026-12-07). Those no snapshot saw are not counted: no checkpoint holds
        them (none is taken after this where they were sent: :meth:`snapshot`), and the restart or the resume trains
        them again."""
        for ref, w in self._snapshotted.items():
            if ref in self._pushes:     # not read yet, or its read failed (the task loop's: it stays there)
                self._pending.pop(ref, None)
                self.coord.end_cycle(w, self._pushes.pop(ref)[1]["steps"])
        self._snapshotted, self._uncounted = {}, len(self._pushes)

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The step and clocks the shards' last snapshot holds. A push whose answers the driver had not read at it
        (object refs: a shard on another node, DC-ASGD; :meth:`settle` reads them on a stop) is in it (a
        shard runs the driver's calls in order, the push before the snapshot) but not yet in the
        coordinator: counted here, or a resume trains its steps again. A resume starts the workers afresh:
        the ranges of their cycles in flight, lost with the actors, are kept to be handed out again first."""
        step, clocks, landed = self.coord.done, self.coord.clocks(), {}
        for ref, w in self._snapshotted.items():
            if ref in self._pushes:     # (one read since is in the coordinator's count)
                step += self._pushes[ref][1]["steps"]
                landed[w] = landed.get(w, 0) + 1
                if w in clocks:
                    clocks[w] += 1
        return {"step": step, "clocks": {str(w): c for w, c in clocks.items()}, **self.coord.unapplied_state(landed),
                **({"listing": self.listing} if self.listing else {})}, {}

    def close(self) -> None:
        """Best effort (Ray itself may be going down); safe to call twice (the second one kills nothing kept)."""
        if self.pusher is not None:
            self.pusher.close()
        for end in self._channels.values():
            end.close()
        self._channels = {}
        # the workers and partitions killed before the shards remove their segments: a start that failed can leave one
        # linking to them still (they start beside the shards), whose traceback would follow the error
        keeping = self._keeping()   # the keeping its actors go to (the next run's start takes them), or None
        for a in (*(() if keeping else self.worker_actors), *(a for ps in self.partition_actors.values() for a in ps),
                  *self.reused.values()):   # (kept ones a start that failed took and did not reach)
            kill(a)
        self.reused = {}
        # a shard still coming up (a start stopped before it answered) is killed, not waited for only to be closed:
        # its process's imports took 10 s of test_ps_ray_start's 13 s at load 30 (2026-12-07). Gone before this
        # node's segments are removed below, it makes none after; on another node some may be left (said below)
        starting = _still_starting(self.shard_actors, self.lanes)
        _gone(starting)
        unclosed = bool(starting)
        if up := [a for j, a in enumerate(self.shard_actors) if j not in starting]:
            try:
                ray.get([a.close.remote() for a in up], timeout=30)
            except Exception:  # noqa: BLE001
                unclosed = True     # (a lost shard: its segments on this node are removed below)
        if keeping is not None and not unclosed:
            keeping.give(dict(zip(self.kept_keys(), [*self.shard_actors, *self.worker_actors])))
        else:
            for a in (*(self.worker_actors if keeping else ()), *self.shard_actors):
                kill(a)
        self.shard_actors, self.worker_actors, self.partition_actors, self.pusher = [], [], {}, None
        # its actors handed over or killed: a second close keeps nothing, so it cannot hand the keeping an empty run
        # (``give`` kills what the first one gave), not only ``shard_pins``, left set
        self.ran = False
        for path in SHM_DIR.glob(f"downpour-{self.run_id}-*"):   # what a dead shard left here
            path.unlink(missing_ok=True)
        if unclosed and _other_nodes():   # it warned on one node too, where nothing was left after the line above
            log.warning("a shard could not remove its shared memory: /dev/shm/downpour-%s-* may be left on the "
                        "cluster's other nodes", self.run_id)
        if self.started:
            shut_down()
            self.started = False

    def _keeping(self) -> Keeping | None:
        """The keeping in force (:mod:`downpour.ps.keeping_on_ray`) where this run may leave it its actors: it ran
        its budget, no worker was lost or restarted, no partitions, no GPUs, and every actor answers; else None."""
        keeping = kept()
        if keeping is None or not self.ran or self.coord.lost or self.partition_actors or self.gpus or self.started:
            return None
        whole = all(i == 1 for i in self._incarnation) and len(self.shard_actors) == len(self.shard_pins)
        return keeping if whole and Keeping.keepable(self.worker_actors + self.shard_actors) else None


def _still_starting(shards: list[Any], lanes: list[Any]) -> dict[int, Any]:
    """The shard actors (by index) whose first answer, their ``lanes`` (:meth:`ShardActor.lanes` or ``again``), is
    still an object ref not ready: their processes are still coming up. {} where the start got no refs yet."""
    refs = {j: ref for j, ref in enumerate(lanes[:len(shards)]) if isinstance(ref, ObjectRef)}
    ready = set(ray.wait(list(refs.values()), num_returns=len(refs), timeout=0)[0]) if refs else set()
    return {j: shards[j] for j, ref in refs.items() if ref not in ready}


def _gone(actors: dict[int, Any], timeout: float = 30.0) -> None:
    """``actors`` killed, and awaited until a call to each fails (``ray.kill`` returns before the process is gone;
    a process still starting could go on making its shared memory), ``timeout`` seconds at most."""
    for a in actors.values():
        kill(a)
    answering(list(actors.values()), timeout)     # (a dead actor's answer is its error: one wait for them all)


def _other_nodes() -> bool:
    """Whether the Ray cluster has a live node besides this one (False where Ray cannot say: its head gone too)."""
    if not head_answers():
        return False
    try:
        return sum(1 for n in ray.nodes() if n.get("Alive")) > 1
    except Exception:  # noqa: BLE001
        return False
