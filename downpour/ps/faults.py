"""The faults a simulated run is told to have (``cluster.faults``): ``"worker W at N"`` loses worker W, ``"shard S at
N"`` shard S, at the first push that brings the run to step N (or past it: n_push > 1), through the paths a
real loss takes (a worker: :meth:`~downpour.ps.simulated.SimulatedCluster.lose`, restarted up to ``cluster.restarts``
times as on Ray, else the run goes on without it; a shard: :class:`~downpour.ps.recorder.ShardLost`, every
shard restarted from the last server checkpoint up to ``cluster.shard_restarts`` times). A run is a pure function of
its config, so a fault run repeats, and the fault's event names the item (its ``reason``), which keeps it from firing
again in a restart's or a resume's go. A worker may be lost again (its replacement) where its earlier loss is
restarted; an item that finds it lost still (its replacement not rejoined) loses nothing: a ``fault-missed`` event.

    faults = parse_faults(cfg)           # ConfigError naming cluster.faults and the item
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from downpour._names import plural
from downpour.config import ConfigError, RunConfig

KEY = "cluster.faults"
KINDS = ("worker", "shard")
_FORM = re.compile(r"(\S+)\s+(\S+)\s+at\s+(?:step\s+)?(\S+)")
USAGE = "'worker W at N' or 'shard S at N' (N a step, 1 to train.steps - 1)"


@dataclass(frozen=True)
class Fault:
    kind: str     # worker | shard
    index: int
    step: int
    item: str     # as written (its reason names it)

    @property
    def reason(self) -> str:
        """Why the worker or shard was lost, as its event says."""
        return f"{KEY} {self.item!r}"

    def fired(self, events: list[dict[str, Any]]) -> bool:
        """Whether the run's ``events`` hold this fault's loss, or its ``fault-missed`` (a restart's or a resume's go:
        not again)."""
        return any(self.reason in str(e.get("reason", "")) for e in events)


def parse_faults(cfg: RunConfig) -> list[Fault]:
    """``cfg``'s ``cluster.faults``, each checked against its workers, shards and steps, sorted by step (ConfigError
    naming the key and the item: a form or kind unknown, an index or step out of range, a duplicate)."""
    c, faults = cfg.cluster, []
    for item in c.faults:
        form = _FORM.fullmatch(item.strip())
        if not form:
            raise ConfigError(f"{KEY}: {item!r} is not a fault; write {USAGE}", key=KEY)
        kind, index, step = form.groups()
        if kind not in KINDS:
            raise ConfigError(f"{KEY}: {item!r}: unknown kind {kind!r}; write {USAGE}", key=KEY)
        if not (index.isdigit() and step.isdigit()):
            raise ConfigError(f"{KEY}: {item!r}: the {kind} and the step are whole numbers; write {USAGE}", key=KEY)
        count = c.workers if kind == "worker" else c.shards
        if int(index) >= count:
            raise ConfigError(f"{KEY}: {item!r}: the run has {plural(count, kind)} (cluster.{kind}s = {count}), "
                              f"numbered 0 to {count - 1}", key=KEY)
        if not 0 < int(step) < cfg.train.steps:
            raise ConfigError(f"{KEY}: {item!r}: step {step} is outside the run's steps 1 to {cfg.train.steps - 1} "
                              f"(train.steps = {cfg.train.steps})", key=KEY)
        fault = Fault(kind, int(index), int(step), item.strip())
        twin = next((f for f in faults if f.kind == kind and f.index == fault.index and f.step == fault.step), None)
        if twin is not None:
            raise ConfigError(f"{KEY}: {item!r} repeats {twin.item!r} (the same loss twice)", key=KEY)
        faults.append(fault)
    faults.sort(key=lambda f: f.step)
    _check_lost_again(faults, c.restarts)
    return faults


def _check_lost_again(faults: list[Fault], restarts: int) -> None:
    """A worker lost again needs its earlier loss restarted: the worker losses take ``cluster.restarts`` in step
    order, so one past them is refused here (ConfigError naming the item). Whether its replacement has rejoined by the
    later step is the run's to say (:meth:`~downpour.ps.simulated.SimulatedCluster._fault`: a ``fault-missed`` event
    where not), so the rule is conservative: every worker item counts as a loss here, though one that finds its
    worker lost still spends no restart in the run. A worker's second item is refused only where its first is past
    the first ``restarts`` losses."""
    losses = [f for f in faults if f.kind == "worker"]
    for i, fault in enumerate(losses):
        again = next((f for f in losses[i + 1:] if f.index == fault.index), None)
        if again is not None and i >= restarts:
            # (at 0, "no worker loss": not "restarts the first 0 worker losses in step order")
            first = ("no worker loss" if restarts == 0 else "the first worker loss in step order" if restarts == 1
                     else f"the first {restarts} worker losses in step order")
            raise ConfigError(f"{KEY}: {again.item!r} loses worker {fault.index} again, but its loss by {fault.item!r} "
                              f"is not restarted: cluster.restarts = {restarts} restarts {first}, and {fault.item!r} "
                              f"is loss {i + 1}; set cluster.restarts = {i + 1} or more", key=KEY)


def check_faults(cfg: RunConfig) -> None:
    """ConfigError for ``cluster.faults`` where it cannot run: on a runner other than the simulator, on Sandblaster,
    or malformed (:func:`parse_faults`)."""
    c = cfg.cluster
    if not c.faults:
        return
    if c.runner == "ray":
        raise ConfigError(f"{KEY} = {c.faults!r} is the simulator's: on Ray faults are real (a killed actor, a lost "
                          "node), and cluster.restarts and cluster.shard_restarts say what comes of them; use "
                          "--runner simulated to reproduce a fault run", key=KEY)
    if c.runner != "simulated":
        raise ConfigError(f"{KEY} = {c.faults!r} needs --runner simulated: the {c.runner} runner has no workers or "
                          "shards to lose", key=KEY)
    if c.algorithm != "downpour":
        raise ConfigError(f"{KEY} = {c.faults!r}: the simulator loses Downpour's workers and shards, and this run "
                          f"trains with {c.algorithm}", key=KEY)
    parse_faults(cfg)
