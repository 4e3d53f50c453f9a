"""Joining a Ray cluster (or starting a local one), and placing actors on its nodes.

    started = connect("")                 # a local Ray of this machine's cores; True: this call started it
    with held(""): ...                    # runs inside share one start-up (a run and its no-faces twin)
    place = placer(ray.nodes())           # place(i, cpus) -> actor options pinning actor i to a node with room
    i = spot("worker", w, workers, partitions)   # actor i: the plan's layout, one index over every kind
    nodes = gathered([a.node.remote() for a in actors], "worker actors", 600.0, {"CPU": 1.0}, pins=[pinned(o) ...])
    #   saying what it waits for; after 600 s with some not started, a RunError naming the room asked and free
    #   (on each node an actor not started was pinned to: pinned(options) its node, None where Ray chose)
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import ray
from ray.util.client import ray as client_ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from downpour.errors import RunError, first_line
from downpour.ps.address import env_address_note
from downpour.ps.head_token import token_hint
from downpour.ps.reach import CONNECT_TIMEOUT_S, head_question
from downpour.ps.reach import reachable as _reachable   # (the tests patch it here)
from downpour.ps.ray_chatter import quiet_dumps, quiet_start
from downpour.ps.silence import start_limit
from downpour.ps.shutdown_on_ray import shut_down
from downpour.train.signals import deliver

try:   # Ray's private printer of what its processes print (a Ray without it: the raylets' dumps print as Ray prints)
    from ray._private import ray_logging as _ray_logging
except ImportError:
    _ray_logging = None


def _quiet_dumps() -> None:
    """After ray.init: a raylet's [state-dump] lines said in one line each (ray_chatter.quiet_dumps)."""
    quiet_dumps(getattr(_ray_logging, "global_worker_stdstream_dispatcher", None))

__all__ = ["CONNECT_TIMEOUT_S", "connect", "gathered", "head_answers", "held", "joined", "pinned", "placer", "spot"]

log = logging.getLogger(__name__)


def connect(address: str) -> bool:
    """Join ``address`` or start a local Ray; returns True when this call started Ray.

    A plain run always starts its own local Ray (``address="local"``), so a stale
    /tmp/ray/ray_current_cluster left by a killed head, or a RAY_ADDRESS in the environment, does
    not redirect it; a RAY_ADDRESS set is warned of (`ray job submit` sets it for its entrypoint, and
    `downpour train --runner ray` there starts a second, local Ray in the job's process: said, not silent).
    Joining fails in one line, within :data:`CONNECT_TIMEOUT_S`, when nobody answers.
    A stop during the start (:func:`_own_stops`) ends it with Ray shut down again. Ray already up (runs that share
    one, :func:`held`) whose head no longer answers (:func:`head_answers`: a joined cluster's head stopped) is a
    RunError (the run's first question to it would wait until Ray ended the process)."""
    if ray.is_initialized():
        if not head_answers(CONNECT_TIMEOUT_S):   # (a joining's wait: a slow network's live head is not refused)
            raise RunError(_head_gone(address))
        return False
    try:
        with _own_stops():
            _init(address)
    except BaseException:
        if ray.is_initialized():
            shut_down()
        raise
    return True


def _head_gone(address: str) -> str:
    """Why Ray already up cannot be used: its head no longer answers. A local Ray (``address`` empty: runs that share
    the one a ``held("")`` started; its processes stopped, killed, or ended out of memory) is this process's own,
    which no `ray start --head` restarts: the refusal does not name "cluster.address=''" nor ask whether the head
    node is running."""
    if not address:
        return ("cannot go on with the local Ray this process started: its head (the GCS) no longer answers (its "
                "processes were stopped, killed, or ended out of memory?); a new command starts a new one")
    return (f"cannot reach the Ray cluster at cluster.address={address!r}: the head of the cluster this process joined "
            "no longer answers; is its head node running (`ray start --head`)?")


def _init(address: str) -> None:
    quiet_start()   # Ray's lines that say nothing about the run (a local Ray's token, "Started a local Ray instance")
    if not address:
        if env := os.environ.get("RAY_ADDRESS", "").strip():   # (Ray's own default, and what `ray job submit` sets)
            log.warning("%s", env_address_note(env, os.cpu_count() or 1))
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True)
        _quiet_dumps()
        return
    _reachable(address, CONNECT_TIMEOUT_S)
    try:
        ray.init(address=address, log_to_driver=True)
        _quiet_dumps()
    except (ConnectionError, RuntimeError, ValueError) as err:   # e.g. a token-protected cluster without the token
        first = first_line(err) or type(err).__name__
        hint = (" (a cluster started with authentication needs its token in this environment: see "
                "docs/parameter-server.md#faults)") if any(w in str(err).lower() for w in ("token", "auth")) else ""
        if not hint and address.startswith("ray://") and "timeout" in str(err).lower():   # (the GCS port, 36 s on)
            hint = (" (ray:// joins through the head's Ray Client server, port 10001 unless `ray start --head "
                    "--ray-client-server-port` set another, not the port `ray start --head --port` set: HOST:PORT "
                    "without ray:// joins at that one)")
        if not hint:
            hint = token_hint(auto=address == "auto")   # Ray's ConnectionError does not say why
        raise RunError(f"could not join the Ray cluster at cluster.address={address!r}: {first}{hint}") from None


def head_answers(timeout: float = 2.0) -> bool:
    """Whether the head of the Ray cluster this process joined (its GCS) answers as a head's GCS does within
    ``timeout``: the question a join asks first (:func:`downpour.ps.reach.head_question`: a connection, then HTTP/2's
    preface, or TLS's ClientHello where Ray's TLS is on; a live head answers at once), not a connection alone: a head
    whose gcs_server got SIGTERM but whose port still accepts, answering nothing, would read as alive. A
    question to Ray's GCS (``ray.nodes()``) once the head is gone blocks until Ray ends the process (its core
    worker gives the GCS 60 s, then exits 1): a run whose head was stopped would sit 60 s after saying where its resume
    goes on and never write cluster.json. True where the address cannot be read, and on a Ray Client
    connection (ray://): its address is the one the cluster's own nodes use (a private IP, a port the client does not
    reach: a live head read as gone), and Ray is asked through the Ray Client server. True where Ray is not
    up: nothing is asked (reading the address started a local Ray)."""
    if not ray.is_initialized() or client_ray.is_connected():
        return True
    try:
        host, _, port = ray.get_runtime_context().gcs_address.rpartition(":")
        where = (host.strip("[]"), int(port))
    except Exception:  # noqa: BLE001
        return True
    try:
        return head_question(*where, time.monotonic() + timeout) is None
    except OSError:
        return False


def joined(address: str) -> dict[str, Any]:
    """Which Ray the run ran on, for its cluster.json (``ray``): ``address`` as the config gave it (empty: a local
    Ray), ``head`` the address of the head's GCS as Ray resolved it (the one its nodes join: for ``auto``, a host
    name, a ``ray://`` client, the cluster actually used; None where Ray cannot say) and Ray's ``version``: more
    than what was typed (config.toml's ``cluster.address``)."""
    try:
        head = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001   (an answer lost with the head: the run goes on to its own end)
        head = None
    return {"address": address, "head": head, "version": ray.__version__}


@contextmanager
def _own_stops() -> Iterator[None]:
    """Ray's start with this process's own stop handlers. ``ray.init`` puts in its own SIGTERM handler
    (``sys.exit(15)``): a scheduler's stop in the start's first seconds exited 15 instead of the CLI's
    "terminated" and 143. Ray's is kept out, so a SIGTERM or Ctrl-C acts at once through the process's handler
    (a group's SIGTERM also ends Ray's own head processes: a start waited on would hang 60 s); one that the start
    swallows (raised inside logging's at-fork hook, the run went on) is acted on again as the start ends. Not
    covered: the core worker's failure handler, put in for the start's last second or so, answers a SIGTERM
    there with an abort. Off the main thread there is no handler to keep."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised: list[int] = []
    handled = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]

    def act(signum: int, frame: object) -> None:
        if not callable(old[signum]):
            signal.signal(signum, old[signum])       # the default action: the process ends here
        try:
            deliver(signum, old[signum])
        except BaseException:
            raised.append(signum)
            raise

    old = {s: signal.signal(s, act) for s in handled}
    utils = ray._private.utils
    rays = getattr(utils, "set_sigterm_handler", None)
    if rays is not None:
        utils.set_sigterm_handler = lambda handler: None
    propagated = False
    try:
        yield
    except BaseException:
        propagated = True
        raise
    finally:
        if rays is not None:
            utils.set_sigterm_handler = rays
        for s, handler in old.items():
            signal.signal(s, handler)
        if raised and not propagated:             # swallowed inside the start: acted on now
            deliver(raised[0], old[raised[0]])


@contextmanager
def held(address: str) -> Iterator[None]:
    """Ray joined (or started) for everything inside, so that several runs pay one start-up; shut down
    afterwards when this call started it. A run inside finds Ray up and leaves it so."""
    started = connect(address)
    try:
        yield
    finally:
        if started:
            shut_down()


def spot(kind: str, i: int, workers: int, partitions: int) -> int:
    """The index :func:`placer` places actor ``i`` of ``kind`` by: one running index over every kind, in the plan's
    layout (docs/plan.md, ``downpour.plan.hub.machines_of``): the R x K partitions first (``"partition"``, ``i`` =
    w·K + p: worker w's partition p), then the R replicas' own processes (``"worker"``: R·K + w; with K = 1 the
    replica's process is its partition, w), then the S shards (``"shard"``: R·K + R + j, R + j where K = 1). So on a
    cluster of the plan's R·K + R + S nodes (R + S where K = 1) every actor has a node of its own, and on fewer the
    index wraps round-robin. Were each kind to count from the first node (shard j on node j, worker w on node w,
    its partition p on node w·K + p), replica 0's process would always share a node with its partition 0 and
    shard 0, and the higher nodes of a cluster the plan's size would stay empty. On fewer nodes a replica's process may
    wrap onto a node of one of its own partitions; that is left so (docs/plan.md): the two take turns (the process
    waits for its partitions' answers, they for its calls), where another node's actors compute while it does."""
    k = max(1, partitions)
    own = workers if k > 1 else 0       # the replicas' own processes, a node each beside their partitions
    start = {"partition": 0, "worker": workers * k if k > 1 else 0, "shard": workers * k + own}
    if kind not in start:
        raise ValueError(f"no such actor kind {kind!r} (one of {', '.join(start)})")
    return start[kind] + i


def live_cpus(nodes_info: list[dict[str, Any]]) -> dict[str, float]:
    """Each live node's CPUs, by its id, from ``ray.nodes()``: what :func:`placer` pins by and what the worker actors'
    share is fitted to (:func:`downpour.ps.setup.worker_cpus`)."""
    return {nd["NodeID"]: float(nd["Resources"].get("CPU", 0.0)) for nd in nodes_info if nd["Alive"]}


def placer(nodes_info: list[dict[str, Any]]) -> Callable[[int, float], dict[str, Any]]:
    """Round-robin over the nodes, by the running index of :func:`spot`. Pinned (hard affinity: Ray's soft affinity
    ignores the node for actors that need no CPU) only where the node has room; otherwise Ray chooses."""
    node_cpus = live_cpus(nodes_info)
    nodes = sorted(k for k, c in node_cpus.items() if c > 0)
    load: dict[str, float] = {}

    def place(i: int, cpus: float) -> dict[str, Any]:
        if len(nodes) < 2:
            return {}
        node = nodes[i % len(nodes)]
        if load.get(node, 0.0) + cpus > node_cpus[node]:
            return {}
        load[node] = load.get(node, 0.0) + cpus
        return pin_to(node)

    return place


def pin_to(node: str) -> dict[str, Any]:
    """The actor options that pin an actor to ``node`` (hard affinity: see :func:`placer`)."""
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}


def replacing(pin: str | None, i: int, cpus: float, nodes_info: list[dict[str, Any]],
              avoid: frozenset[str | None] = frozenset(), coming: dict[str, float] | None = None,
              silent: bool = False) -> dict[str, Any]:
    """The options of an actor restarted in place of one pinned to ``pin`` (None: Ray chose its node), placed as
    that one was: Ray chooses again where Ray chose (a GPU worker, a one-node cluster, a node with no room at the
    start); pinned to the same node where ``nodes_info`` (``ray.nodes()`` read at the restart) has it alive (the room
    the lost actor held); else round-robin over the nodes alive now with ``cpus`` free (Ray's count,
    :func:`_free_per_node`, less ``coming``: node -> CPUs of replacements pinned there and not up yet, which Ray's
    count may not show), ``i`` the actor's index, those not in ``avoid`` first (a replacement's partitions: the
    nodes its other partitions are on, so they spread as at the start); Ray chooses where one node is alive or none
    has the room. ``silent``: ``pin``'s node, listed alive, does not answer (its raylet: a crash Ray has not seen yet,
    :func:`~downpour.ps.placing_on_ray.unanswered`): placed as where its node is gone, over the other nodes, and
    pinned to it still where none of them has the room. The Ray driver's restarted workers and their partition actors.
    Why not simpler: left to Ray, or placed round-robin afresh, a restarted worker and its partitions lose their
    pins; a pin whose node is gone, sent round-robin over the nodes alive by their size alone, puts a worker on a
    full node while another has room (it waits there until given up; Ray, choosing, would start it), and stacks a
    replacement's partition on the node of another of its partitions while a node free of them is alive."""
    if pin is None:
        return {}
    alive = sorted(nd["NodeID"] for nd in nodes_info if nd["Alive"] and nd["Resources"].get("CPU", 0) > 0)
    if pin in alive and not silent:
        return pin_to(pin)
    if pin not in alive and len(alive) < 2:
        return {}
    free = _free_per_node() if cpus > 0 else {}
    coming = coming or {}
    room = [node for node in alive if node != pin and
            (cpus <= 0 or free.get(node, {}).get("CPU", 0.0) - coming.get(node, 0.0) >= cpus)]
    spread = [node for node in room if node not in avoid] or room
    if spread:
        return pin_to(spread[i % len(spread)])
    return pin_to(pin) if pin in alive else {}     # (a silent node with the only room: Ray may have it back)


def pinned(options: dict[str, Any]) -> str | None:
    """The node actor options (a :func:`placer` ``place``'s, :func:`replacing`'s) pin an actor to (None: Ray
    chooses)."""
    strategy = options.get("scheduling_strategy")
    return strategy.node_id if isinstance(strategy, NodeAffinitySchedulingStrategy) else None


def gathered(refs: list[Any], what: str, limit: float, asks: dict[str, float] | None = None,
             every: float = 60.0, longer: str | None = "cluster.silent_seconds",
             pins: list[str | None] | None = None, waited: float = 0.0) -> list[Any]:
    """``ray.get(refs)`` (the first answers of actors just started), saying every ``every`` seconds what it
    still waits for: an actor Ray has no room for (a full cluster, one still adding nodes) waits, and
    the run would sit silent before its first step. Bounded (unbounded, it would wait for good): after ``limit``
    seconds (:func:`downpour.ps.silence.start_limit`) with some still not started, RunError naming what each
    asks (``asks``: resource -> amount) and what the cluster has free, and the setting that waits ``longer`` (None:
    none does; Sandblaster's run refuses cluster.silent_seconds, so its error must not ask for it). ``pins``: the node
    each actor was pinned to (:func:`pinned`), where the error names the room of the nodes the actors not started
    were pinned to: an actor needs what it asks on one node, and the cluster's free room, summed over its nodes,
    would read "CPU 4 of 8 free" for a worker pinned to a full node. The warning every ``every`` seconds names the
    same room, not the cluster's CPUs summed over its nodes. ``waited``: seconds of ``limit`` spent on these refs
    already (a kept actor's rebuild that :func:`~downpour.ps.keeping_on_ray.died` saw hang for all of it: one look
    more, then the error), so a start waits ``limit`` once."""
    pending = list(refs)
    asked = [k for k, v in (asks or {}).items() if v > 0]     # (none: shards, partitions, 0-CPU workers)
    while pending:
        wait = min(every, limit - waited)
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=wait)
        if not pending:
            break
        waited += wait
        room = _room(asks or {}, _pins_of(pending, refs, pins))
        if waited >= limit:
            keys = "cluster.workers, cluster.worker_gpus" if "GPU" in asked else "cluster.workers"
            fewer = f", ask for less ({keys})" if asked else ""   # (fewer shards or partitions, 0 CPUs, make no room)
            later = (f"set {longer} over {limit:.0f} (the start waits the larger of it and {start_limit(0.0):.0f} s)"
                     if longer else f"start the run once it has them (the start waits {limit:.0f} s)")
            # (actors that ask nothing are not told to "free room": none is missing for them)
            free = ("Free room on the cluster (another job's actors, a node gone)" if asked else
                    "They ask for no room, so their processes did not start (a loaded machine, a node gone)")
            raise RunError(f"Ray could not start {len(pending)} of {len(refs)} {what} within {waited:.0f} s: "
                           f"{room}. {free}{fewer}, or, for a cluster still adding nodes, {later}")
        # an actor that asks nothing (a shard, a partition) is not waiting for room, and Ray holds the room of one it
        # placed while its process starts: "it has no room for them yet" alone would be said of 4 shards (no CPU
        # asked, "CPU 2 of 2 free") and of 2 one-CPU workers ("CPU 0 of 2 free", their own) on a loaded 2-core
        # machine, whose processes were only slow to start
        why = ("it has no room for them yet, or holds it for them while their processes start (slow on a loaded "
               "machine)" if asked else
               "they ask for no room, so their processes are still starting (slow on a loaded machine)")
        log.warning("still waiting for Ray to start %d of %d %s after %.0f s (%s): %s",
                    len(pending), len(refs), what, waited, room, why)
    return ray.get(refs)


def _pins_of(pending: list[Any], refs: list[Any], pins: list[str | None] | None) -> list[str | None]:
    """The node each of ``pending`` (some of ``refs``) was pinned to (None: Ray chose; all None without ``pins``)."""
    index = {ref: i for i, ref in enumerate(refs)}
    return [pins[index[ref]] if pins else None for ref in pending]


def _room(asks: dict[str, float], pins: list[str | None]) -> str:
    """Each resource an actor asks for (CPU always) beside what there is of it free and in all: on each node
    actors not started (``pins``) were pinned to, and, for those Ray places itself, on the whole cluster (summed
    over its nodes, said where there are several: an actor needs what it asks on one)."""
    asked = {"CPU": 0.0, **{k: v for k, v in asks.items() if v > 0}}
    each = ", ".join(f"{k} {v:g}" for k, v in asked.items() if v > 0) or "no CPU"

    def has(free: dict[str, float], total: dict[str, float]) -> str:
        return ", ".join(f"{k} {free.get(k, 0):g} of {total[k]:g} free" if k in total else f"no {k}" for k in asked)

    where, nodes = [], {nd["NodeID"]: nd for nd in ray.nodes()}
    if any(pins):
        free = _free_per_node()
        for node in sorted({p for p in pins if p}):
            alive = nodes.get(node, {}).get("Alive")
            there = f"has {has(free.get(node, {}), nodes[node]['Resources'])}" if alive else "is gone"
            where.append(f"{pins.count(node)} pinned to node {node[:8]}, which {there}")
    if None in pins:
        alive = sum(1 for nd in nodes.values() if nd["Alive"])
        summed = f" (summed over its {alive} nodes: an actor needs what it asks on one)" if alive > 1 else ""
        others = "the others: " if where else ""
        where.append(f"{others}the cluster has {has(ray.available_resources(), ray.cluster_resources())}{summed}")
    return f"each asks {each}; " + "; ".join(where)


def _free_per_node() -> dict[str, dict[str, float]]:
    """Each node's free resources (Ray's own count: ``ray.available_resources`` is their sum)."""
    return ray._private.state.available_resources_per_node()
