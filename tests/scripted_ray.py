"""The Ray driver (:class:`~downpour.ps.cluster_on_ray.RayCluster`) run outside Ray, on stand-in actors
whose deaths a test scripts: every restart decision (when to respawn, which step ranges a replacement
is handed, when it is given up) then has one outcome, where on a real Ray the same scenario has as many
as Ray's timing allows.

What stands in (task path only: the piped path's channels are real shared memory):

- ``Runtime`` for the ``ray`` module of ``cluster_on_ray``, ``starting_on_ray``, ``driving_on_ray``,
  ``asking_on_ray``, ``partition_restarts_on_ray``, ``restarts_on_ray`` and ``tasks_on_ray`` (``wait``, ``get``,
  ``kill``, ``nodes``: one node unless a test gives several, ``lose_node`` marking one dead) and for ``time`` in
  ``restarts_on_ray`` and ``silence``: a future is ready when it is made, or when its ``when`` holds (a held first
  answer); a death is told some waits late (``Worker.told``: Ray tells
  of a death a moment after it, and the driver may look at its restarts in between). ``wait`` returns the
  ready ones in the order it is given them, as Ray's does; when fewer than asked are ready it first takes the
  deaths told meanwhile (one by one, until enough are ready), then, still short, moves its clock on by the
  timeout (a restart's deadline comes at once). ``get`` with a timeout on a future held for good waits it out
  and raises ``GetTimeoutError``. ``tick``: seconds every wait takes besides. Waiting with no timeout on nothing that can
  answer is a hang: ``Hang`` is raised.
- ``Worker`` for a worker actor: a cycle of ``k`` steps from ``first`` "trains" at once and labels its
  push (``parts``: ``first``, ``steps``, ``life``: the actor's number, 0 the first), unless ``dies``
  says this actor dies at it (then it and every later call fail with ``ActorDiedError``, as Ray's
  queued calls on a dead actor do).
- ``Shard`` for a shard actor, ``Pusher`` for the driver's pusher: a push is applied when the driver hands it over.

``ScriptedCluster`` is the real ``RayCluster`` with ``_start`` and ``_spawn`` (the only places it makes
actors) giving it these instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

from ray.exceptions import ActorDiedError, GetTimeoutError

from downpour.ps import (asking_on_ray, cluster_on_ray, driving_on_ray, partition_restarts_on_ray, restarts_on_ray,
                         silence, starting_on_ray, tasks_on_ray)
from downpour.ps.cluster_on_ray import RayCluster
from downpour.ps.connect_on_ray import pinned, placer
from downpour.ps.consistency import make_consistency
from downpour.ps.coordinator import Coordinator
from downpour.ps.node_environments import start_report


class Hang(AssertionError):
    """The driver waits, with no timeout, on futures none of which can ever answer: a real run hangs there."""


class Ref:
    """A future: ready from the runtime's ``at``-th wait on (a death is told a wait after it happened), and
    while ``when`` holds (None: always); ``due``: the runtime's time at which ``when`` comes to hold (a cycle that
    takes that long), where a wait with a longer timeout returns then."""

    def __init__(self, value: Any = None, error: Exception | None = None, when: Callable[[], bool] | None = None,
                 at: int = 0, due: float | None = None):
        self.value, self.error, self.when, self.at, self.due = value, error, when, at, due
        self.read = False        # whether the driver got it (Ray prints an actor task's error never got)

    def held(self) -> bool:
        return self.when is not None and not self.when()


def last_ready(ready: list[Any], n: int) -> list[Any]:
    """The last ``n`` of ``ready``, as a stand-in's wait answers: Ray's may answer with any ready ones, and these make
    a loop relying on the first fail (tests/test_ray_wait_order.py)."""
    return ready[len(ready) - n:] if len(ready) > n else ready


class Runtime:
    """``ray`` (wait, get, kill) and ``time`` (monotonic) as the driver sees them. ``waits`` counts the driver's
    waits: the moments it looks."""

    def __init__(self, tick: float = 0.0, nodes: list[str] | None = None) -> None:
        self.now, self.waits = 0.0, 0
        self.tick = tick         # seconds each wait takes: a busy driver's clock moves while a push is always ready
        self.alive = {node: True for node in nodes or ["node-a"]}

    def nodes(self) -> list[dict[str, Any]]:
        """``ray.nodes()``: each node, alive or not, of 4 CPUs."""
        return [{"NodeID": node, "Alive": alive, "Resources": {"CPU": 4.0}} for node, alive in self.alive.items()]

    def lose_node(self, node: str) -> None:
        self.alive[node] = False

    def monotonic(self) -> float:
        return self.now

    def ready(self, ref: Ref) -> bool:
        return ref.at <= self.waits and not ref.held()

    def later(self, waits: int) -> int:
        """The wait at which a death happening now is told to the driver, ``waits`` waits on."""
        return self.waits + waits

    def wait(self, refs: list[Ref], num_returns: int = 1, timeout: float | None = None) -> tuple[list[Ref], list[Ref]]:
        """``num_returns`` of the ready ones, in the order given, the LAST ones where more are ready: Ray answers
        with any ready ones (tests/test_ray_wait_order.py), so a loop that needs the first must look at those
        before the one it got (``restarts_on_ray.first_ready``). None ready: a death not told yet comes first (unless
        this is only a look, ``timeout=0``), then the timeout passes (a restart's deadline comes at once)."""
        self.waits += 1
        self.now += self.tick
        ready = last_ready([r for r in refs if self.ready(r)], num_returns)
        coming = [r.at for r in refs if r.at > self.waits and not r.held()]
        while len(ready) < num_returns and coming and timeout != 0:    # the next one told, until enough are
            self.waits = min(coming)
            ready = last_ready([r for r in refs if self.ready(r)], num_returns)
            coming = [r.at for r in refs if r.at > self.waits and not r.held()]
        dues = [r.due for r in refs if r.due is not None and r.held()]
        if len(ready) < num_returns and dues and timeout != 0 and (timeout is None or min(dues) <= self.now + timeout):
            self.now = min(dues)         # a slow cycle's answer comes before the timeout: the wait returns then
            return self.wait(refs, num_returns, 0)
        if not ready and timeout is None:
            raise Hang(f"the driver waits with no timeout on {len(refs)} futures, none of which can answer")
        if len(ready) < num_returns and timeout:
            self.now += timeout          # (Ray's wait waits its timeout out for the ones missing)
        return ready, [r for r in refs if r not in ready]

    def get(self, refs: Ref | list[Ref], timeout: float | None = None) -> Any:
        if isinstance(refs, list):
            held = [r for r in refs if r.held()]
            if held and timeout is not None:
                self.now += timeout
                raise GetTimeoutError(f"{len(held)} of {len(refs)} not ready within {timeout} s")
            return [self.get(r) for r in refs]
        refs.read = True
        if refs.at > self.waits and not refs.held():     # (Ray's get waits for it)
            self.waits = refs.at
        if refs.held() and timeout is not None:            # one that never answers, asked with a timeout
            self.now += timeout
            raise GetTimeoutError(f"not ready within {timeout} s")
        assert self.ready(refs), "get on a future that cannot answer: a real driver would block here"
        if refs.error is not None:
            raise refs.error
        return refs.value

    def kill(self, actor: Any) -> None:
        actor.killed = True


class _Method:
    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def options(self, **_: Any) -> _Method:
        return self

    def remote(self, *args: Any) -> Any:
        return self.fn(*args)


@dataclass
class Worker:
    """Worker ``w``'s actor number ``life`` (0: the first; 1: its first replacement ...).

    ``dies(n, first, k)``: whether it dies at its ``n``-th cycle (0-based), of steps first .. first+k-1;
    ``fails(n, first, k)``: whether that cycle fails, the actor alive (one of its partitions died: the test kills the
    partition's stand-in); ``replaced``: the partitions the driver handed it anew (``replace_partition``), in order;
    ``takes(n, first, k)``: seconds of the runtime's clock that cycle takes (0: it is done when granted);
    ``hangs(n, first, k)``: whether that cycle never returns (a node gone silent, a deadlock): it, and every later
    call, answers only once the actor is killed, with ``ActorDiedError`` (as Ray's calls on a killed actor do);
    ``up``: when its first answer comes (None: at once; a replacement held back until something happened);
    ``dead_on_arrival``: it dies coming up (its first answer is ActorDiedError); ``told``: the driver's wait that
    first sees its death, counted from the death (2: its next wait, which may be a look at its restarts, sees
    nothing yet: Ray tells of a death a moment after it); ``starts``: the driver's wait that first sees its first
    answer, counted from its spawn (0: at once)."""

    rt: Runtime
    w: int
    life: int
    seq: int
    shards: int
    dies: Callable[[int, int, int], bool] = lambda n, first, k: False
    hangs: Callable[[int, int, int], bool] = lambda n, first, k: False
    fails: Callable[[int, int, int], bool] = lambda n, first, k: False
    takes: Callable[[int, int, int], float] = lambda n, first, k: 0.0
    up: Callable[[], bool] | None = None
    dead_on_arrival: bool = False
    told: int = 2
    starts: int = 0
    cycles: int = 0
    dead: bool = False
    killed: bool = False
    hung: bool = False
    broken: bool = False      # a cycle of it failed (``fails``) and no new partition was handed it since
    busy_until: float = 0.0
    computed: list[tuple[int, int]] = field(default_factory=list)   # (first, steps) of each cycle it trained
    replaced: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dead = self.dead_on_arrival
        self.cycle = _Method(self._cycle)
        self.node = _Method(lambda: self._answer("node-a", self.up, self.rt.later(self.starts)))
        self.start_report = _Method(lambda: self._answer(start_report("node-a"), self.up, self.rt.later(self.starts)))
        self.device = _Method(lambda: self._answer("cpu"))
        self.data_report = _Method(lambda: self._answer({"worker": self.w}))
        self.profile = _Method(lambda: self._answer({}))
        self.buffers = _Method(lambda: self._answer({}))
        self.replace_partition = _Method(self._replace_partition)

    def _replace_partition(self, p: int, actor: Any) -> Ref:
        self.replaced.append(p)
        self.broken = False
        return self._answer(self.seq)       # (the seq of the push dropped: the next one's)

    def _answer(self, value: Any, when: Callable[[], bool] | None = None, at: int = 0) -> Ref:
        return self._died() if self.dead or self.killed else Ref(value, when=when, at=at)

    def _died(self) -> Ref:
        return Ref(error=ActorDiedError(), at=self.rt.later(self.told))

    def _cycle(self, k: int, first: int) -> list[Ref]:
        if not self.dead and self.dies(self.cycles, first, k):
            self.dead = True
        self.hung = self.hung or (not self.dead and self.hangs(self.cycles, first, k))
        seconds = self.takes(self.cycles, first, k)
        self.cycles += 1
        # a failed cycle's partition is dead: its cycles queued behind fail too, until the driver hands it a new one
        self.broken = self.broken or (not self.dead and self.fails(self.cycles - 1, first, k))
        if self.dead or self.killed or self.broken:
            return [self._died() for _ in range(self.shards + 1)]
        if self.hung:
            return [Ref(error=ActorDiedError(), when=lambda: self.killed) for _ in range(self.shards + 1)]
        self.computed.append((first, k))
        meta = {"seq": self.seq, "base": [0] * self.shards, "steps": k, "samples": k, "loss": 1.0,
                "parts": {"first": first, "steps": k, "life": self.life}, "skipped": 0, "clock_gap": 0,
                "inbox": [True] * self.shards}
        self.seq += 1
        self.busy_until = done = max(self.rt.now, self.busy_until) + seconds
        if done > self.rt.now:     # done that long after the previous cycle (an actor runs its calls one at a time)
            return [Ref(value, when=lambda: self.rt.now >= done, due=done) for value in [None] * self.shards + [meta]]
        return [Ref(None) for _ in range(self.shards)] + [Ref(meta)]


class Shard:
    """A shard actor (or a partition actor): ``told`` the live sets it was told, in order; ``up``: when its first
    answer comes (None: at once); ``node``: where it runs."""

    def __init__(self, up: Callable[[], bool] | None = None, node: str = "node-a") -> None:
        self.told, self.killed = [], False
        self.set_workers = _Method(lambda ws: self._note(ws))
        self.dead = False        # (a partition's stand-in the test killed: its answers are ActorDiedError)
        self.flush = _Method(lambda: Ref(None))
        self.close = _Method(lambda: Ref(None))
        self.node = _Method(lambda: Ref(error=ActorDiedError()) if self.dead else Ref(node, when=up))
        self.start_report = _Method(lambda: Ref(error=ActorDiedError()) if self.dead
                                    else Ref(start_report(node), when=up))
        self.profile = _Method(lambda: Ref({}))
        self.dropped: list[tuple[int, int]] = []     # (worker, seq) of each push it was told to drop from its inbox
        self.drop_inbox = _Method(lambda w, seq: self.dropped.append((w, seq)) or Ref(True))
        self.renewed: list[tuple[int, int]] = []     # (worker, incarnation) of each fresh inbox it was asked for
        self.new_inbox = _Method(lambda w, n: self.renewed.append((w, n)) or Ref(None))

    def _note(self, ws: list[int]) -> Ref:
        self.told.append(list(ws))
        return Ref(None)


class Pusher:
    """The driver's ``ShardPush``: a push is applied by every shard when the driver hands it over."""

    def __init__(self, n: int):
        self.n, self.version = n, 0

    def close(self) -> None:
        pass

    def apply(self, w: int, seq: int, bases: list[int], grads: list[Any], inbox: list[bool],
              meanwhile: Callable[[], None] | None = None, stages: Any = None) -> list[dict[str, Any]]:
        if meanwhile is not None:
            meanwhile()
        self.version += 1
        return [{"staleness": 0, "accepted": 1, "version": self.version}] * self.n


def stub_setup(workers: int, restarts: int = 0, silent_seconds: float = 0.0) -> SimpleNamespace:
    """What the driver reads of its ``ClusterSetup`` outside :meth:`~RayCluster._start` and ``_spawn``: the cluster keys
    (in-memory data: no file list)."""
    cluster = SimpleNamespace(restarts=restarts, workers=workers, address=None, partitions=1,
                              silent_seconds=silent_seconds)
    return SimpleNamespace(cfg=SimpleNamespace(cluster=cluster), data=[])


def stubbed_spawns(monkeypatch: Any, cluster: RayCluster, workers: int, partitions: int) -> list[str | None]:
    """Stub the actors ``RayCluster._spawn`` itself starts (worker and partition actors, no Ray) and what it reads of
    ``cluster``'s setup (``workers`` replicas of ``partitions`` partitions, no shard); the list returned gets the node
    each actor started is pinned to (None: Ray chooses), in the order started."""
    from downpour.ps import partitions_on_ray

    made: list[str | None] = []

    class Actor:
        @staticmethod
        def options(**options: Any) -> SimpleNamespace:
            made.append(pinned(options))
            return SimpleNamespace(remote=lambda *args: None)

    for module, name in ((starting_on_ray, "WorkerActor"), (partitions_on_ray, "PartitionActor")):
        monkeypatch.setattr(module, name, Actor)
    monkeypatch.setattr(partitions_on_ray, "stage_specs", lambda model, p: None)
    monkeypatch.setattr(starting_on_ray, "frozen_params", lambda model: None)
    keys = SimpleNamespace(workers=workers, partitions=partitions, n_fetch=1)
    cluster.setup = SimpleNamespace(cfg=SimpleNamespace(cluster=keys, train=SimpleNamespace(lr=0.1), seed=0),
                                    data=SimpleNamespace(shard=lambda w, n: None), bounds=[],
                                    gate=SimpleNamespace(gated=None), model=None, shards_of=[[]] * partitions, rng=None)
    cluster.shard_actors, cluster.per_worker, cluster.gpus, cluster.threads = [], 1.0, 0.0, 1
    return made


class HandedCluster(RayCluster):
    """``RayCluster`` built by its own constructor (every field it declares is there, one it gains too: a stub that set
    the fields by hand on ``object.__new__`` broke at each) on actors handed to it: ``shard_actors`` and ``workers``
    (any stand-ins, one per worker), each worker on node "n" with a CPU. Its ``_start`` starts nothing (no Ray); a test
    puts a stand-in for ``ray`` in the driver's modules itself where the driver calls it."""

    def __init__(self, coord: Coordinator, shard_actors: list[Any], workers: list[Any], restarts: int = 0):
        self._handed = list(workers)
        super().__init__(stub_setup(len(workers), restarts), list(shard_actors), coord, lambda step: None)

    def _start(self, shards: list[Any], start_step: int) -> None:
        self.shard_actors, self.worker_actors = shards, self._handed
        self.placement = {"shards": ["n"], "workers": ["n"] * len(self._handed)}
        self.devices = [{"device": "cpu", "gpus": []}] * len(self._handed)     # (one per worker, as the start reads)


class ScriptedCluster(RayCluster):
    """``RayCluster`` on stand-in actors. ``script[(w, life)]``: the keyword arguments of that :class:`Worker`
    (``dies``, ``up``, ``dead_on_arrival``; ``parts_up``: its partition actors' ``up``, else up where the driver's
    own placement, ``_partition_places``, put them on a node alive); ``pushes``: every push the driver had applied, as
    (worker, life, first, steps) in order; ``on_push``: also called with the cluster after each push
    (a checkpoint's :meth:`state` in the middle of a restart). With ``partitions`` K, partition p holds the shards
    j with j % K == p (``setup.shards_of``: a partition restarted alone renews their inboxes)."""

    def __init__(self, rt: Runtime, coord: Coordinator, restarts: int = 1, shards: int = 1,
                 script: dict[tuple[int, int], dict[str, Any]] | None = None, saved: dict[str, Any] | None = None,
                 partitions: int = 0, silent_seconds: float = 0.0):
        self.rt, self.script, self.lives, self.pushes = rt, script or {}, [], []
        self.partitions, self.parts = partitions, []
        setup = stub_setup(coord.workers, restarts, silent_seconds)
        setup.shards_of = [[j for j in range(shards) if j % partitions == p] for p in range(partitions)]
        if saved:       # what a resume left unapplied, handed out first: restored before the driver, as _run_once does
            coord.restore_unapplied(saved, "checkpoints/server.json")
        super().__init__(setup, [None] * shards, coord, lambda step: None, coord.done, None, saved)

    def _start(self, shards: list[Any], start_step: int) -> None:
        self.run_id, self.piped, self.lanes = "scripted", False, [None] * len(shards)
        self.shard_actors = [Shard() for _ in shards]
        self.place = placer(self.rt.nodes())
        for w in range(self.setup.cfg.cluster.workers):
            self.worker_actors.append(self._spawn(w, self.next_seq.get(w, 0), start_step))
        self.pusher = Pusher(len(shards))
        self.placement = {"shards": ["node-a"], "workers": ["node-a"] * len(self.worker_actors)}
        if self.partitions:
            self.placement["partitions"] = ["node-a"] * len(self.worker_actors) * self.partitions
        self.devices = ["cpu"] * len(self.worker_actors)

    def _spawn(self, w: int, seq: int, step: int) -> Worker:
        life = self._incarnation[w]
        self._incarnation[w] += 1
        script = dict(self.script.get((w, life), {}))
        parts_up = script.pop("parts_up", None)
        actor = Worker(self.rt, w, life, seq, len(self.shard_actors) or 1, **script)
        self.lives.append(actor)
        if self.partitions:
            at = self.rt.nodes() if life else None      # (a restart's, as RayCluster._spawn reads them)
            nodes = [pinned(o) or "node-a" for o in self._partition_places(w, self.partitions, at)]
            self.partition_actors[w] = [Shard(parts_up or (lambda node=node: self.rt.alive.get(node, True)), node)
                                        for node in nodes]
            self.parts.append(self.partition_actors[w])
        return actor

    def run_scripted(self, on_push: Callable[[ScriptedCluster], None] = lambda c: None) -> None:
        def record(push: Any, rec: dict[str, Any]) -> None:
            self.pushes.append((push.worker, push.parts["life"], push.parts["first"], push.parts["steps"]))
            on_push(self)

        self.run(record)

    def trained(self) -> list[int]:
        """Every step index the applied pushes trained, sorted (a step trained twice is there twice)."""
        return sorted(s for _, _, first, k in self.pushes for s in range(first, first + k))


def scripted_runtime(monkeypatch: Any, tick: float = 0.0, nodes: list[str] | None = None) -> Runtime:
    """Put a :class:`Runtime` (``tick``: seconds a wait takes; ``nodes``: its nodes' ids, one unless given) where the
    driver's modules call Ray and read the clock."""
    rt = Runtime(tick, nodes)
    for module in (cluster_on_ray, starting_on_ray, driving_on_ray, asking_on_ray, partition_restarts_on_ray,
                   restarts_on_ray, tasks_on_ray):
        monkeypatch.setattr(module, "ray", SimpleNamespace(wait=rt.wait, get=rt.get, kill=rt.kill, nodes=rt.nodes,
                                                           exceptions=module.ray.exceptions))
    for module in (restarts_on_ray, silence, asking_on_ray):
        monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=rt.monotonic))
    return rt


def coordinator(workers: int, steps: int, consistency: str = "async", n_push: int = 1, depth: int = 2,
                warm_start: int = 0, start: int = 0, events: list[dict[str, Any]] | None = None) -> Coordinator:
    """A run's coordinator as ``run_cluster`` makes it for Ray (``start``, ``events``: a resume's)."""
    coord = Coordinator(make_consistency(consistency), workers, steps, n_push, start_step=start, warm_start=warm_start,
                        depth=depth)
    coord.events = list(events or [])
    return coord
