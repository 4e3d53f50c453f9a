"""The Ray driver: :class:`RayCluster` starts Ray (or joins ``cluster.address``), places one actor
per shard, worker and partition (:mod:`downpour.ps.on_ray`, :mod:`downpour.ps.partitions_on_ray`; where each goes:
:mod:`downpour.ps.placing_on_ray`),
drives the coordinator's budget and tears everything down, whatever happened. Also what a run on
Ray needs around that: joining with a bounded wait, and sweeping the shared memory of dead drivers.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any, Callable

import ray
from ray.exceptions import RayError

from downpour._names import node_named
from downpour.data.loader import listing_digest
from downpour.data.stream import StreamingData
from downpour.ps import channel
from downpour.ps.checkpoint import ShardState
from downpour.ps.asking_on_ray import Asking, node_addresses
from downpour.ps.connect_on_ray import connect, gathered, head_answers, joined, live_cpus, pinned, placer, spot
from downpour.ps.coordinator import Coordinator, restarts_left
from downpour.ps.laps import Laps
from downpour.ps.node_environments import node_environments
from downpour.ps.on_ray import ShardActor, ShardPush, WorkerActor
from downpour.ps.partition_restarts_on_ray import PartitionRestarts
from downpour.ps.piped_on_ray import PipedRun
from downpour.ps.placing_on_ray import Placing
from downpour.ps.recorder import ShardLost
from downpour.ps.restarts_on_ray import Restarts, kill
from downpour.ps.setup import ClusterSetup, worker_cpus, worker_gpus, worker_rng
from downpour.ps.tasks_on_ray import TaskRun
from downpour.ps.shard import Shard
from downpour.ps.shm import SHM_DIR, sweep_stale_segments
from downpour.ps.silence import Silence, start_limit
from downpour.ps.worker import OnPush, Push, push_record
from downpour.train.flat import frozen_params
from downpour.train.signals import signals_held, signals_let_through

log = logging.getLogger(__name__)


class RayCluster(TaskRun, PipedRun, Restarts, PartitionRestarts, Placing, Asking):
    """The Ray driver, shaped like :class:`~downpour.ps.simulated.SimulatedCluster`: built with the
    cluster's setup and restored shards, it starts Ray (or joins ``cluster.address``), one actor per
    shard and per worker; :meth:`run` drives the coordinator's budget; :meth:`close` kills every actor
    and removes the shared memory, whatever happened, so nothing is left running on a shared cluster.

    The driving loop is Ray's parameter-server example (:mod:`downpour.ps.tasks_on_ray`): ``pending`` maps
    each future to what it is (a worker's cycle, or the shards' answers to a push), and ``ray.wait`` takes the next one.
    On a one-node Ray with shared memory (a local Ray: the common case) the cycles go over each
    worker's channel instead (``piped``, :mod:`downpour.ps.piped_on_ray`): the same coordinator calls in the
    same order, without a Ray task per cycle.
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
        self.pusher: ShardPush | None = None
        self.started = False                             # set in _start: this driver started Ray (close shuts it down)
        self._incarnation = [0] * cfg.cluster.workers
        self._partition_lives: dict[tuple[int, int], int] = {}   # partition_restarts_on_ray: each one's restarts
        self._pending: dict[Any, tuple[str, int]] = {}   # future -> ("cycle" | "push", worker)
        self._grads: dict[Any, list[Any]] = {}           # a cycle's metadata ref -> its gradient refs
        self._owner: dict[Any, Any] = {}                 # a cycle's metadata ref -> the worker actor running it
        self._pushes: dict[Any, tuple[list[Any], dict[str, Any]]] = {}   # last answer ref -> (all answers, metadata)
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
        # a resume's new streams report from its step on, and so do data.json's sums: until 2026-12-07 nothing said
        # so (a run resumed at step 133 of 300 recorded 5,344 samples, its last 167 steps' alone)
        if self.listing and start_step:
            setup.data.info["counted_from_step"] = start_step
        try:
            self._start(shards, start_step)
        except BaseException:
            self.close()
            raise

    # -- actors -----------------------------------------------------------------------------------
    def _start(self, shards: list[Shard], start_step: int) -> None:
        """Ray (started or joined), then every actor at once: shards, workers and their partitions (which wait
        themselves for the shards' shared-memory lanes), their first answers awaited shards first.
        Ray and actors are started here and in :meth:`_spawn` only: tests/scripted_ray.py overrides both (no Ray)."""
        cfg, n = self.setup.cfg, self.setup.cfg.cluster.workers
        self.started = connect(cfg.cluster.address)
        self.ray_info = joined(cfg.cluster.address)   # cluster.json's record of which Ray
        sweep_stale_segments()
        self.run_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"   # the driver's pid: what the sweep checks
        nodes = ray.nodes()   # read once: the workers' CPU share and the placer fit the same nodes
        self.per_worker = worker_cpus(n, list(live_cpus(nodes).values()))   # (until 2026-12-06 total / n)
        self.gpus = worker_gpus(cfg, float(ray.cluster_resources().get("GPU", 0.0)))   # ConfigError: too few for cuda
        self.threads, self.node_cpus = cfg.train.threads, live_cpus(nodes)   # (0: each worker's node's share)
        self.place = placer(nodes)     # each actor by its index in the plan's layout (connect_on_ray.spot)
        self.placed_first = {w: self._placed((w, None), spot("worker", w, n, cfg.cluster.partitions), self.per_worker,
                                             None) for w in range(n)}   # every worker first: its threads share its node
        options = [self.place(spot("shard", j, n, cfg.cluster.partitions), 0.0) for j in range(len(shards))]
        for j, s in enumerate(shards):
            self.shard_actors.append(ShardActor.options(name=f"downpour-{self.run_id}-shard{j}", num_cpus=0,
                                                        **options[j])
                                     .remote(s, f"/dev/shm/downpour-{self.run_id}", n))
        # every actor starts now, the workers and their partitions beside the shards (each a fresh process importing
        # torch: ~5.6 s of ~8 at load 12, 2026-12-06); until 2026-12-06 the workers were started only once every shard
        # had answered. They are handed the shards' answers to come (object refs) and wait for them themselves before
        # they link to the shards (on_ray.lanes_of): none fetches before the shards hold the weights, as before
        self.lanes = [a.lanes.remote() for a in self.shard_actors]
        for w in range(n):
            self.worker_actors.append(self._spawn(w, self.next_seq.get(w, 0), start_step))
        limit = start_limit(cfg.cluster.silent_seconds)
        self.lanes = gathered(self.lanes, "shard actors", limit, pins=[pinned(o) for o in options])
        here = ray.get_runtime_context().get_node_id()
        self.piped = (len([nd for nd in ray.nodes() if nd["Alive"]]) == 1 and cfg.cluster.partitions == 1
                      and all(ln is not None and ln["node"] == here for ln in self.lanes))
        self.pusher = ShardPush(self.shard_actors, self.lanes)
        # each actor's node and the install there, in the answer placement waits for (no round trip of its own)
        reports = {"shards": ray.get([a.start_report.remote() for a in self.shard_actors]),
                   "workers": gathered([a.start_report.remote() for a in self.worker_actors], "worker actors", limit,
                                       {"CPU": self.per_worker, "GPU": self.gpus},
                                       pins=[self.pins[w, None] for w in range(n)])}
        self.addresses = node_addresses()   # read now: a lost shard's node is named where the head may not answer
        self.devices = ray.get([a.device.remote() for a in self.worker_actors])
        if self.partition_actors:   # worker w's partitions, in order: w*K .. w*K + K-1 (a worker's start does not
            #                         wait for them: until 2026-12-05 a plain ray.get waited here for good)
            parts = [a for w in sorted(self.partition_actors) for a in self.partition_actors[w]]
            reports["partitions"] = gathered([a.start_report.remote() for a in parts], "partition actors", limit,
                                             pins=[self.pins[w, p] for w in sorted(self.partition_actors)
                                                   for p in range(len(self.partition_actors[w]))])
        self.placement = {kind: [r["node"] for r in answers] for kind, answers in reports.items()}
        self.reports = [r for answers in reports.values() for r in answers]
        self.nodes = node_environments(self.reports, self.addresses)
        for w in range(n if self.piped else 0):   # last: a serving actor answers nothing else until it stops
            self._open_channel(w)

    def _spawn(self, w: int, seq: int, step: int) -> Any:
        """Start (or restart: new name, new inboxes, placed as the actor it replaces: :meth:`_placed`) worker ``w``'s
        actor: a GPU worker wherever Ray finds a free GPU, a CPU one by its index in the plan's layout
        (:func:`~downpour.ps.connect_on_ray.spot`: after every replica's partitions where K >= 2): at the start as
        ``_start`` placed it already (``placed_first``), else placed here. Its torch threads: :meth:`_threads`."""
        setup = self.setup
        name, nodes = f"downpour-{self.run_id}-worker{w}", None
        if self._incarnation[w]:
            name, nodes = f"{name}-restart{self._incarnation[w]}", ray.nodes()
            self.lanes[:] = ray.get([a.new_inbox.remote(w, self._incarnation[w]) for a in self.shard_actors])
        self._incarnation[w] += 1
        n = setup.cfg.cluster.workers
        options = (self.placed_first.pop(w) if nodes is None and w in self.placed_first else
                   self._placed((w, None), spot("worker", w, n, setup.cfg.cluster.partitions), self.per_worker, nodes))
        parts = self._spawn_partitions(w, name, nodes, step) if setup.cfg.cluster.partitions > 1 else None
        actor = (WorkerActor.options(name=name, num_cpus=self.per_worker, num_gpus=self.gpus, **options)
                 .remote(setup.cfg, w, setup.data.shard(w, n), setup.bounds, setup.gate.gated, step, seq,
                         self.shard_actors, self.lanes, self._threads(w, nodes), parts, setup.shards_of,
                         frozen_params(setup.model), worker_rng(setup.rng, setup.cfg.seed, w, step)))
        return actor

    def _came_up(self, reports: list[dict[str, Any]]) -> None:
        """Restarted actors' start reports (a worker's, its partitions', or a partition's alone): where one came up on
        a node, or under an install, that no actor of the run had, environment.json's ``nodes`` anew (``on_nodes``),
        warned of as at the start where its code or packages are not the driver's (:func:`node_environments`).
        Until 2026-12-07 a restart was asked its node alone: one on another machine or install went unrecorded."""
        if any(r["node"] not in self.addresses for r in reports):      # a node that joined the cluster since
            self.addresses = {**self.addresses, **node_addresses()}
        nodes = node_environments(self.reports, self.addresses, new=reports)
        self.reports += reports
        if nodes != self.nodes:
            self.nodes = nodes
            if self.on_nodes is not None:
                self.on_nodes(nodes)

    def _set_live(self) -> None:   # waited for, so no worker fetches before the shards know who is live
        ray.get([a.set_workers.remote(sorted(self.coord.live)) for a in self.shard_actors])

    def _dead_shards(self) -> list[int]:
        """The shards whose actor no longer answers (asked after a failure, to tell a lost shard,
        which every worker's next fetch trips over, from a lost worker). Up to 10 s a shard, asked inside the task
        loop's held block, so a Ctrl-C or SIGTERM is let through: the failure is handled by then and the question only
        reads (until 2026-12-06 the stop waited for every answer)."""
        dead = []
        with signals_let_through():
            for j, a in enumerate(self.shard_actors):
                try:
                    ray.get(a.node.remote(), timeout=10)
                except (RayError, ray.exceptions.GetTimeoutError):
                    dead.append(j)
        return dead

    def _shard_lost(self, err: BaseException) -> None:
        """Raise :class:`ShardLost` if a shard died (``err`` the failure that showed it); else return."""
        dead = self._dead_shards()
        if dead:
            # where they ran (until 2026-12-06 unsaid: a stopped run's cluster.json has no placement)
            raise ShardLost(f"shard {', '.join(map(str, dead))} lost at step {self.coord.done} on "
                            f"{self.where('shards', dead)} ({type(err).__name__})", step=self.coord.done,
                            placed={**self.placed(self.addresses), "lost_shards": dead}) from err

    def where(self, kind: str, indices: list[int]) -> str:
        """The nodes the actors ``indices`` of ``kind`` (a key of ``placement``: "shards", "workers") ran on, as a
        loss names them: "node abcd1234 at 10.0.0.5" (:func:`~downpour._names.node_named`)."""
        nodes = sorted({self.placement[kind][i] for i in indices})
        return ", ".join(node_named(x, self.addresses) for x in nodes)

    # -- the driving loop ---------------------------------------------------------------------------
    def _dispatch(self, w: int) -> None:
        # held: the count handed out and the cycle in flight change together (a restart's or a loss's dispatch runs
        # outside the loops' held blocks, and a stop between the two lost the cycle's steps as end_compute's did)
        with signals_held():
            k = self.coord.begin_cycle(w)
        if k == 0:
            self._blocked.add(w)
            return
        self._blocked.discard(w)
        self.silence.busy(w)
        m, first = len(self.shard_actors), self.coord.first_step(w)   # each step's greedy stage follows from it
        t = time.perf_counter()
        if self.piped:
            self._channels[w].grant(k, first)
            self._credits[w] += 1
            self.laps.add("dispatch", t)
            return
        refs = self.worker_actors[w].cycle.options(num_returns=m + 1).remote(k, first)
        self.laps.add("dispatch", t)
        self._grads[refs[m]] = refs[:m]
        self._owner[refs[m]] = self.worker_actors[w]
        self._pending[refs[m]] = ("cycle", w)

    def _applied(self, w: int, results: list[dict[str, Any]], meta: dict[str, Any], on_push: OnPush) -> None:
        """Every shard answered push ``meta["seq"]`` of worker ``w``: record it, dispatch who may go on."""
        joined = self._record(w, results, meta, on_push)
        for v in sorted(self._blocked | set(joined) | {w}):
            self._dispatch(v)

    def _record(self, w: int, results: list[dict[str, Any]], meta: dict[str, Any], on_push: OnPush) -> list[int]:
        """Push ``meta["seq"]`` of worker ``w`` into the coordinator and ``on_push``; the workers it let join."""
        joined = self.coord.end_cycle(w, meta["steps"])
        if joined:
            self._set_live()
        push = Push(w, meta["seq"], [], meta["base"], meta["steps"], meta["samples"], meta["loss"], meta["parts"],
                    meta["skipped"], meta["clock_gap"])
        t = time.perf_counter()
        on_push(push, push_record(results, meta["clock_gap"]))
        self.laps.add("record", t)
        return joined

    def settle(self, on_push: OnPush) -> None:
        """On a stop, before the checkpoint: record the pushes handed to the shards whose answers were not
        read yet (object refs: a shard on another node, DC-ASGD), dispatching nothing. Each shard runs the
        driver's calls in order, so they are in the snapshot: their steps, clocks and metrics row must be
        in the checkpoint's counters too, or a resume trains those steps again."""
        for ref, (kind, w) in list(self._pending.items()):
            if kind == "push":
                del self._pending[ref]
                answers, meta = self._pushes.pop(ref)
                self._record(w, ShardPush.results(answers), meta, on_push)

    def _pushed(self, w: int, meta: dict[str, Any], grads: list[Any], on_push: OnPush) -> None:
        """Worker ``w`` finished a cycle (``meta``; ``grads``: per shard None, staged in its inbox, or
        the gradient's object ref): have the shards apply its push, and dispatch its next cycle."""
        t = time.perf_counter()
        # rung shards have applied it when this returns; the others answer with object refs. The next
        # cycle is dispatched once the push is on its way, before the answers are read (async: the
        # worker computes while this push is applied; the coordinator hears of the push, end_cycle,
        # only after the answers, as before)
        assert self.pusher is not None
        # a stop between the shards' apply and its record would checkpoint a push the shards hold as not
        # made (a resume trains its steps again): the two finish first, as a simulator's event does
        with signals_held():   # (and the push sent: until 2026-12-06 a stop just before this block lost its steps)
            self.coord.end_compute(w)
            meta["clock_gap"] = self.coord.gaps[w]
            self.next_seq[w] = meta["seq"] + 1
            answers = self.pusher.apply(w, meta["seq"], meta["base"], grads, meta["inbox"],
                                        meanwhile=lambda: self._dispatch(w), stages=meta.get("stages"))
            self.laps.add("push_apply", t)
            refs = [x for x in answers if not isinstance(x, dict)]
            if not refs:
                self._applied(w, answers, meta, on_push)
                return
            self._pushes[refs[-1]] = (answers, meta)
            self._pending[refs[-1]] = ("push", w)  # each shard runs the driver's calls in order; wait on all below

    def run(self, on_push: OnPush) -> None:
        """Dispatch cycles, hand finished gradients to the shards (by doorbell where it can), record
        each push, and restart up to ``cluster.restarts`` lost workers, until the budget is done; then
        apply a partly filled sync round, as the simulator does."""
        self._drive(on_push)
        ray.get([a.flush.remote() for a in self.shard_actors], timeout=60)

    def _drive(self, on_push: OnPush) -> None:
        self.laps.mark()
        for _ in range(self.coord.depth):
            for w in sorted(self.coord.live):
                self._dispatch(w)
        if self.piped:
            try:
                self._run_piped(on_push)
            except ShardLost:
                raise
            except (RayError, ConnectionError, OSError) as err:   # a closed doorbell
                self._shard_lost(err)
                raise
            return
        self._run_tasks(on_push)

    # -- the driver protocol's other half -----------------------------------------------------------
    def snapshot(self) -> list[ShardState]:
        """The shards' states now (after :meth:`run`: final, a partial sync round applied)."""
        return ray.get([a.state_dict.remote() for a in self.shard_actors], timeout=60)

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The step and clocks the shards' snapshot holds. A push whose answers the driver has not read yet
        (object refs: a shard on another node, DC-ASGD; :meth:`settle` reads them on a stop) is in it (a
        shard runs the driver's calls in order, the push before the snapshot) but not yet in the
        coordinator: counted here, or a resume trains its steps again. A resume starts the workers afresh:
        the ranges of their cycles in flight, lost with the actors, are kept to be handed out again first."""
        step, clocks, landed = self.coord.done, self.coord.clocks(), {}
        for ref, (kind, w) in self._pending.items():
            if kind == "push":
                step += self._pushes[ref][1]["steps"]
                landed[w] = landed.get(w, 0) + 1
                if w in clocks:
                    clocks[w] += 1
        return {"step": step, "clocks": {str(w): c for w, c in clocks.items()}, **self.coord.unapplied_state(landed),
                **({"listing": self.listing} if self.listing else {})}, {}

    def close(self) -> None:
        """Best effort (Ray itself may be going down); safe to call twice."""
        if self.pusher is not None:
            self.pusher.close()
        for end in self._channels.values():
            end.close()
        self._channels = {}
        # the workers and partitions killed before the shards remove their segments: a start that failed can leave one
        # linking to them still (they start beside the shards since 2026-12-06), whose traceback followed the error
        for a in (*self.worker_actors, *(a for actors in self.partition_actors.values() for a in actors)):
            kill(a)
        unclosed = False
        if self.shard_actors:
            try:
                ray.get([a.close.remote() for a in self.shard_actors], timeout=30)
            except Exception:  # noqa: BLE001
                unclosed = True     # (a lost shard: its segments on this node are removed below)
        for a in self.shard_actors:
            kill(a)
        self.shard_actors, self.worker_actors, self.partition_actors, self.pusher = [], [], {}, None
        for path in SHM_DIR.glob(f"downpour-{getattr(self, 'run_id', '-')}-*"):   # what a dead shard left here
            path.unlink(missing_ok=True)
        if unclosed and _other_nodes():   # it warned on one node too, where nothing was left after the line above
            log.warning("a shard could not remove its shared memory: /dev/shm/downpour-%s-* may be left on the "
                        "cluster's other nodes", getattr(self, "run_id", "-"))
        if self.started:
            ray.shutdown()
            self.started = False


def _other_nodes() -> bool:
    """Whether the Ray cluster has a live node besides this one (False where Ray cannot say: its head gone too)."""
    if not head_answers():
        return False
    try:
        return sum(1 for n in ray.nodes() if n.get("Alive")) > 1
    except Exception:  # noqa: BLE001
        return False
