"""How the Ray driver's actors come up: Ray started or joined, every actor started at once (shards, workers, their
partitions), their first answers awaited with a bounded wait (:func:`~downpour.ps.connect_on_ray.gathered`), and where
each came up (environment.json's nodes: :func:`~downpour.ps.node_environments.node_environments`), at the start and
after a restart. A mixin of :class:`~downpour.ps.cluster_on_ray.RayCluster`, which declares most of the state it
sets (``piped``, ``pusher``, ``reports``, ``nodes``, ...; the rest: :class:`Starting`) and, through its other
mixins, the calls it makes (``_placed``, which sets ``pins``, ``_threads``, ``_spawn_partitions``:
:mod:`downpour.ps.placing_on_ray`; ``_open_channel``: :mod:`downpour.ps.piped_on_ray`)."""
from __future__ import annotations

import logging
import os
import uuid
from functools import partial
from typing import Any, Iterator

import ray

from downpour.ps.asking_on_ray import node_addresses
from downpour.ps.connect_on_ray import connect, gathered, joined, live_cpus, pin_to, pinned, placer, spot
from downpour.ps.keeping_on_ray import died, kept
from downpour.ps.node_answers_on_ray import this_node
from downpour.ps.node_environments import node_environments
from downpour.ps.seeds import worker_rng
from downpour.ps.setup import worker_cpus, worker_gpus
from downpour.ps.shard import Shard
from downpour.ps.shards_on_ray import ShardActor, ShardPush
from downpour.ps.shm import sweep_stale_segments
from downpour.ps.silence import start_limit
from downpour.ps.worker_actor_on_ray import WorkerActor
from downpour.train.flat import frozen_params

log = logging.getLogger("downpour.ps.cluster_on_ray")   # the driver's logger


class Starting:
    """``RayCluster``'s actors brought up: :meth:`_start` (every one, at the driver's start), :meth:`_spawn` (a
    worker's, at the start or a restart) and :meth:`_came_up` (where restarted ones came up).

    :meth:`_start` sets ``run_id``, ``per_worker``, ``place``, ``lanes``, ``placement`` and ``shard_pins``
    (``RayCluster.__init__`` declares them, empty; ``ray_info``: :class:`~downpour.ps.asking_on_ray.Asking`'s
    default): the other mixins (placing, restarts, partition restarts, piped, asking) read them, so none may run
    before it. Inside :func:`~downpour.ps.keeping_on_ray.keeping` it takes the actors an earlier run kept where they
    are placed as its own would be (``reused``), and has each rebuilt as a new one (``again``), not started anew; one
    that died since it was taken is replaced by a new one (:meth:`_replace_dead`; ``actor_starts`` says which)."""

    def _start(self, shards: list[Shard], start_step: int) -> None:
        """Ray (started or joined), then every actor at once: shards, workers and their partitions (which wait
        themselves for the shards' shared-memory lanes), their first answers awaited shards first.
        Ray and actors are started here and in :meth:`_spawn` only: tests/scripted_ray.py overrides both (no Ray)."""
        cfg, n = self.setup.cfg, self.setup.cfg.cluster.workers
        self.started = connect(cfg.cluster.address)
        self.ray_info = joined(cfg.cluster.address)   # cluster.json's record of which Ray
        sweep_stale_segments()
        self.run_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"   # the driver's pid: what the sweep checks
        nodes = ray.nodes()   # read once: the workers' CPU share and the placer see the same nodes
        live = live_cpus(nodes)
        self.per_worker = worker_cpus(n, list(live.values()))   # each node's share, not total / n
        self.gpus = worker_gpus(cfg, float(ray.cluster_resources().get("GPU", 0.0)))   # ConfigError: too few for cuda
        self.threads, self.node_cpus = cfg.train.threads, live   # (0: each worker's node's share)
        self.place = placer(nodes)     # each actor by its index in the plan's layout (connect_on_ray.spot)
        self.placed_first = {w: self._placed((w, None), spot("worker", w, n, cfg.cluster.partitions), self.per_worker,
                                             None) for w in range(n)}   # every worker first: its threads share its node
        options = [self.place(spot("shard", j, n, cfg.cluster.partitions), 0.0) for j in range(len(shards))]
        self.shard_pins = [pinned(o) for o in options]
        # an earlier run's actors, where one kept them: taken where placed as these would be, the rest killed now (they
        # hold their CPUs); none for a model-parallel run (a worker with partitions is started anew)
        keeping = kept()
        keys = [*self.kept_keys()] if cfg.cluster.partitions == 1 else []
        self.reused = {} if keeping is None else keeping.take(keys)
        lanes, prefix = [], f"/dev/shm/downpour-{self.run_id}"
        for j, s in enumerate(shards):
            anew = partial(ShardActor.options(name=f"downpour-{self.run_id}-shard{j}", num_cpus=0, **options[j]).remote,
                           s, prefix, n)
            actor = self.reused.pop(("shard", j, self.shard_pins[j]), None)
            if actor is None:
                actor = anew()
                lanes.append(actor.lanes.remote())
            else:        # a kept one (its name the run's that started it), rebuilt as a new one is
                lanes.append(actor.again.remote(s, prefix, n))
                self.anew["shard", j] = anew
            self.shard_actors.append(actor)
        self.lanes, limit = lanes, start_limit(cfg.cluster.silent_seconds)
        if keeping is not None:
            self.actor_starts = {"shards": ["kept" if ("shard", j) in self.anew else "fresh"
                                            for j in range(len(shards))]}
        # a kept shard that died since it was taken is replaced before any worker is handed the shards (the kept
        # workers' rebuilds wait for the shards' answers anyway)
        spent = self._replace_dead("shard", self.lanes, limit)
        # every actor starts now, the workers and their partitions beside the shards (each a fresh process importing
        # torch: ~5.6 s of ~8 at load 12, 2026-12-06), not one after the other once every shard has answered. They are
        # handed the shards' answers to come (object refs) and wait for them themselves before
        # they link to the shards (shards_on_ray.lanes_of): none fetches before the shards hold the weights
        for w in range(n):
            self.worker_actors.append(self._spawn(w, self.next_seq.get(w, 0), start_step))
        if keeping is not None:
            self.actor_starts["workers"] = ["kept" if w in self.reborn else "fresh" for w in range(n)]
        # the shards awaited before the kept workers' rebuilds (which wait for the shards' answers): a shard that hangs
        # fails the start here, not after the workers' wait for it too
        self.lanes = gathered(self.lanes, "shard actors", limit, pins=self.shard_pins, waited=spent)
        spent = self._replace_dead("worker", self.reborn, limit)
        self.pusher = ShardPush(self.shard_actors, self.lanes)
        # each actor's node and the install there, in the answer placement waits for (no round trip of its own)
        reports = {"shards": ray.get([a.start_report.remote() for a in self.shard_actors]),
                   "workers": gathered([self.reborn.pop(w) if w in self.reborn else a.start_report.remote()
                                        for w, a in enumerate(self.worker_actors)], "worker actors", limit,
                                       {"CPU": self.per_worker, "GPU": self.gpus},
                                       pins=[self.pins[w, None] for w in range(n)], waited=spent)}
        self.addresses = node_addresses()   # read now: a lost shard's node is named where the head may not answer
        self.devices = ray.get([a.device.remote() for a in self.worker_actors])
        if self.partition_actors:   # worker w's partitions, in order: w*K .. w*K + K-1 (a worker's start does not
            #                         wait for them: a plain ray.get here could wait for good)
            parts = [a for w in sorted(self.partition_actors) for a in self.partition_actors[w]]
            reports["partitions"] = gathered([a.start_report.remote() for a in parts], "partition actors", limit,
                                             pins=[self.pins[w, p] for w in sorted(self.partition_actors)
                                                   for p in range(len(self.partition_actors[w]))])
        self.placement = {kind: [r["node"] for r in answers] for kind, answers in reports.items()}
        self.reports = [r for answers in reports.values() for r in answers]
        self.nodes = node_environments(self.reports, self.addresses)
        self.piped = cfg.cluster.partitions == 1 and self._all_here()   # (a replica with partitions: the task loop)
        for w in range(n if self.piped else 0):   # last: a serving actor answers nothing else until it stops
            self._open_channel(w)

    def _all_here(self) -> bool:
        """Whether every shard has shared memory and every shard and every worker said at its start (``placement``)
        that it runs on the driver's node, where a worker's channel (:mod:`downpour.ps.piped_on_ray`) and the shards'
        inboxes are: what lets the cycles go over channels. Not from the start's one ``ray.nodes()`` read: a node that
        joins while the shards start is not in it, and a worker Ray places there, handed a channel, has no inbox to
        stage its push in (its first cycle fails, the worker lost)."""
        here = this_node()
        return (all(ln is not None for ln in self.lanes)
                and set(self.placement["shards"]) | set(self.placement["workers"]) == {here})

    def _spawn(self, w: int, seq: int, step: int) -> Any:
        """Start (or restart: new name, new inboxes, placed as the actor it replaces: :meth:`_placed`) worker ``w``'s
        actor: a GPU worker wherever Ray finds a free GPU, a CPU one by its index in the plan's layout
        (:func:`~downpour.ps.connect_on_ray.spot`: after every replica's partitions where K >= 2): at the start as
        ``_start`` placed it already (``placed_first``), else placed here (a piped run's on the driver's node: see
        :meth:`_all_here`). Its torch threads: :meth:`_threads`."""
        setup = self.setup
        name, nodes = f"downpour-{self.run_id}-worker{w}", None
        if self._incarnation[w]:
            name, nodes = f"{name}-restart{self._incarnation[w]}", ray.nodes()
            self.lanes[:] = ray.get([a.new_inbox.remote(w, self._incarnation[w]) for a in self.shard_actors])
        self._incarnation[w] += 1
        n = setup.cfg.cluster.workers
        options = (self.placed_first.pop(w) if nodes is None and w in self.placed_first else
                   self._placed((w, None), spot("worker", w, n, setup.cfg.cluster.partitions), self.per_worker, nodes))
        if nodes is not None and self.piped and len(live_cpus(nodes)) > 1:
            # a piped run's replacement on the driver's node, where its channel and the shards' inboxes are: left to
            # Ray (a one-node start's workers are), it could start on a node that joined since and fail its first
            # cycle. Not pinned with one node alive: there Ray has no other choice, and a hard pin to a node that can
            # never hold it fails at once (ActorUnschedulableError) where Ray's own choice waits for room. (pins keeps
            # what _placed says, Ray's choice: its torch threads are counted as the start counted them.)
            options = pin_to(this_node())
        parts = self._spawn_partitions(w, name, nodes, step) if setup.cfg.cluster.partitions > 1 else None
        args = (setup.cfg, w, setup.data.shard(w, n), setup.bounds, setup.gate.gated, step, seq, self.shard_actors,
                self.lanes, self._threads(w, nodes), parts, setup.shards_of, frozen_params(setup.model),
                worker_rng(setup.rng, setup.cfg.seed, w, step))
        anew = partial(WorkerActor.options(name=name, num_cpus=self.per_worker, num_gpus=self.gpus, **options).remote,
                       *args)
        actor = self.reused.pop(self.kept_key(w), None) if nodes is None and parts is None else None
        if actor is not None:    # a kept one (its name the run's that started it), rebuilt with what a new one is given
            self.reborn[w] = actor.again.remote(*args)
            self.anew["worker", w] = anew
            return actor
        return anew()

    def _replace_dead(self, kind: str, answers: dict[int, Any] | list[Any], limit: float) -> float:
        """The kept actors of ``kind`` ("shard" or "worker") whose rebuild (``answers``: by index, its ``again``'s
        answer) failed because they died after :meth:`Keeping.take <downpour.ps.keeping_on_ray.Keeping.take>` found them
        answering (:func:`~downpour.ps.keeping_on_ray.died`; a kill, a node gone): each replaced by an actor started as
        a start without a keeping starts it (``anew``), said once, and recorded in ``actor_starts``: the start would
        fail else, at the wait for the dead actor's answer. Returned: the seconds of ``limit`` spent, for the kind's
        wait (``gathered``'s ``waited``): all of it where a rebuild hangs (not ready within it), else none (every
        rebuild answered; the new actors are given the whole limit)."""
        kept_ones = {i: answers[i] for k, i in self.anew if k == kind}
        dead, hung = died(kept_ones, limit)
        for i, error in dead.items():
            log.warning("the kept %s %d (an earlier run's actor, taken for this run) died before its rebuild (%s): "
                        "a new one is started in its place", kind, i, type(error).__name__)
            actor = self.anew[kind, i]()
            if kind == "shard":
                self.shard_actors[i], self.lanes[i] = actor, actor.lanes.remote()
            else:
                self.worker_actors[i] = actor
                del self.reborn[i]      # its answer: the new actor's start_report
            self.actor_starts[kind + "s"][i] = "fresh: the kept one died"
        self.anew = {k: a for k, a in self.anew.items() if k[0] != kind}   # (each holds its actor's arguments)
        return limit if hung else 0.0

    def kept_key(self, w: int) -> tuple:
        """Worker ``w``'s key in a :class:`~downpour.ps.keeping_on_ray.Keeping`: its index, node, CPUs and GPUs."""
        return "worker", w, self.pins.get((w, None)), self.per_worker, self.gpus

    def kept_keys(self) -> Iterator[tuple]:
        """Every shard's and worker's key in a :class:`~downpour.ps.keeping_on_ray.Keeping`, shards first."""
        yield from (("shard", j, pin) for j, pin in enumerate(self.shard_pins))
        yield from (self.kept_key(w) for w in range(self.setup.cfg.cluster.workers))

    def _came_up(self, reports: list[dict[str, Any]]) -> None:
        """Restarted actors' start reports (a worker's, its partitions', or a partition's alone): where one came up on
        a node, or under an install, that no actor of the run had, environment.json's ``nodes`` anew (``on_nodes``),
        warned of as at the start where its code or packages are not the driver's (:func:`node_environments`).
        Its node alone would leave a restart on another machine or install unrecorded."""
        if any(r["node"] not in self.addresses for r in reports):      # a node that joined the cluster since
            self.addresses = {**self.addresses, **node_addresses()}
        nodes = node_environments(self.reports, self.addresses, new=reports)
        self.reports += reports
        if nodes != self.nodes:
            self.nodes = nodes
            if self.on_nodes is not None:
                self.on_nodes(nodes)
