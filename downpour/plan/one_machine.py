"""One machine running every process of a layout (``--machines 1``: one box, a local Ray): its R·K workers, the
replicas' own processes and the S shards share the machine's cores and memory, and no network lies between them.

What changes from a cluster of a machine per process (:mod:`downpour.plan.timing`):

    cores      each worker process computes on cores / (its R·K + the replicas' own processes) of them. Unsplit
               (K = 1, no replica processes) that is the Ray runner's share: a one-node run's worker gets
               cpu_count // R torch threads, at least 1 (ps/placing_on_ray.py, worker_threads; train.threads, which
               the plan does not read, overrides it). Split, the runner gives each partition actor 1 thread and each
               replica's own process (its worker actor) cpu_count // R; the plan shares the cores evenly among all
               R·K + R processes instead. A bound is added, the machine's cores: every process's core-seconds of a
               cycle (the workers' steps, the shards' apply of R pushes at one thread each, the copies of the pushes
               and fetches) / cores
    transfers  pushes, fetches, windows and halos are copies through shared memory (the runner's lanes, ps/shm.py)
               at :data:`COPY_BYTES_PER_S`, one core each, not --bandwidth
    memory     every process's memory together against the one machine's, each process's own ~250 MiB too (the
               local Ray run's own check, cluster_checks.py)

Were every process given a machine of its own, ``--machines 1`` would be refused ("1 replica x 1 partition = 1
worker machine, plus 1 shard = 2 machines"), and the commonest case, one box, could not be planned.
"""
from __future__ import annotations

from typing import Any

from downpour._names import plural
from downpour.cluster_checks import PROCESS_MB
from downpour.plan.units import human

__all__ = ["COPY_BYTES_PER_S", "PROCESS_BYTES", "on_one_machine", "processes", "cores_each", "one_machine_words"]

# a process's own memory (Python, torch, Ray's worker), beside what it holds of the model: what a local Ray run's
# check refuses past the machine's available memory by (cluster_checks.py, ~250 MiB a process)
PROCESS_BYTES = PROCESS_MB * 2**20

# a shared-memory copy, one thread: torch's copy_ of cat-untied's 1.69 MB gradient (422,400 values; cat-demo's own is
# 8,448, 33.8 KB), 2.05 GB/s of wall time on the project's 2-core VM under a load of 17 (2026-12-06). A core's own rate
# is higher: bench/shm_copy.py (docs/benchmarks.md, `shm_copy`) copies a gradient into a ps/shm.py Segment as
# Segment.put does, as fast as into private memory, at 12.9 GB/s of the process's CPU time in cache and 6.0 GB/s from
# main memory (cat-demo's 28 and 5.1; load 17-24, 2026-12-07). The plan counts the copies' core-seconds, so this rate
# is ~3x low out of cache and ~6x in cache; kept, as every --machines 1 plan and its tests read it
COPY_BYTES_PER_S = 2.0e9


def on_one_machine(machines: int) -> bool:
    """Whether the layout's processes share one machine (``--machines 1``)."""
    return machines == 1


def processes(workers: int, replica_processes: int, shards: int) -> int:
    """The layout's processes on the one machine: the R·K workers, the replicas' own processes and the shards."""
    return workers + replica_processes + shards


def cores_each(cores: int, workers: int) -> float:
    """The cores one worker process computes on: the machine's split among the workers (a fraction where there are
    more workers than cores: they take turns)."""
    return cores / max(1, workers)


def one_machine_words(plan: dict[str, Any]) -> str:
    """The layout line's end on one machine: its processes, what each worker computes on, their memory together and
    the copies' rate, what the plan assumes of one box (the cores a worker gets and the copies' rate said, not just
    "sharing its 2 cores and 64 GB")."""
    c = plan["cluster"]
    workers, hubs = c["replicas"] * c["partitions"], c["replica_machines"]
    each = cores_each(c["cores"], workers + hubs)
    who = (("its worker" if workers == 1 else f"each of its {workers} workers") if not hubs
           else f"each of its {workers} workers and {plural(hubs, 'replica process', 'replica processes')}")
    return (f"{plural(c['processes'], 'process', 'processes')} on the one machine, sharing its "
            f"{plural(c['cores'], 'core')} ({who} computes on {each:.3g} of them"
            f"{', taking turns' if each < 1 else ''}) "
            f"and {c['memory_gb']:g} GB ({human(c['memory_together_bytes'], 'B')} together, each process's own "
            f"~{human(PROCESS_BYTES, 'B')} counted)" + ("" if plan["fits"]["together"] else "  ** does not fit **")
            + f"; no network between them: pushes and fetches are copies through shared memory at "
            f"{human(COPY_BYTES_PER_S, 'B/s')} a core, --bandwidth not read")
