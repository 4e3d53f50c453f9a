"""The cluster a plan lays a network out on: its machines, their cores, memory and links, and the layout's counts
given (replicas, partitions, shards; each left out is chosen by :func:`~downpour.plan.predict.predict`), checked as
they are given."""
from __future__ import annotations

import math
from dataclasses import dataclass

from downpour.errors import ConfigError

__all__ = ["Cluster"]

CHOSEN = ("--replicas", "--partitions", "--shards")   # left out: the plan chooses them
MOST_SEARCHED = 100_000    # machines whose replica counts the plan tries one by one (5 s on a 2-core VM; 10^6: 26 s;
# a greedy --config counts each R's frozen forwards: cat-demo on 100,000 took 6.9 s, 4.1 s without, 2026-12-06)


@dataclass(frozen=True)
class Cluster:
    machines: int = 1000
    cores: int = 16
    memory_gb: float = 64.0
    bandwidth_gbit: float = 1.0
    replicas: int | None = None      # None: chosen (see :func:`~downpour.plan.predict.predict`)
    partitions: int | None = None    # None: chosen among the counts that fit in memory
    shards: int | None = None        # None: the fewest of the machines left after R·K (and the replicas' own,
    # hub.replica_machines) that give their samples/s (idle.py)

    def __post_init__(self) -> None:
        for flag, value, low in (("--machines", self.machines, 1), ("--cores", self.cores, 1),
                                 ("--replicas", self.replicas, 1), ("--partitions", self.partitions, 1),
                                 ("--shards", self.shards, 1)):
            if value is not None and value < low:
                raise ConfigError(f"{flag} must be >= {low}"
                                  + (" (or left out: the plan chooses it; a check takes its default)"
                                     if flag in CHOSEN else "") + f", got {value}")
        for flag, value in (("--memory", self.memory_gb), ("--bandwidth", self.bandwidth_gbit)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag} must be a positive number, got {value}")
        if self.replicas is None and self.machines > MOST_SEARCHED:   # (--machines 10**20 ran for ever, silent)
            raise ConfigError(f"--machines {self.machines}: the plan tries every replica count from 1 up, too many "
                              f"above {MOST_SEARCHED:,} machines; give --replicas too, or --machines {MOST_SEARCHED} "
                              "or fewer")

    @property
    def bandwidth(self) -> float:    # bytes/s
        return self.bandwidth_gbit * 1e9 / 8
