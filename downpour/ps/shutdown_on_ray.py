"""Shutting down the local Ray this process started, without the second Ray's own order waits out.

``ray.shutdown()`` stops a local Ray's processes one after another, each sent SIGTERM and given a second to exit:
the raylet, then the GCS, then the autoscaler's monitor. The monitor's SIGTERM handler first writes "the autoscaler
failed" to the GCS, which is gone by then: it never exits by itself, and Ray kills it once its second is out
(Ray 2.60: its fixed one-second grace, waited out whole: 1.01 s of a 20-step ``tica-8x8`` run's 2.2 s close at
load 20-33 on 2 cores; docs/benchmarks.md#ray_close).
A local Ray's monitor (``max_workers: 0``, a read-only node provider) has nothing to clean up, and its handler's
write never lands: it is killed first here, SIGKILL as Ray ends it, a second sooner, and ``ray.shutdown()`` stops
the rest in its own order (the raylet first, which ends the actors' processes).

A joined cluster (``cluster.address``) runs no monitor of ours: ``ray.shutdown()`` alone disconnects from it.
"""
from __future__ import annotations

import contextlib
import subprocess
from typing import Any

import ray

MONITOR = "monitor"   # ray._private.ray_constants.PROCESS_TYPE_MONITOR: the autoscaler's, on a head this process ran


def shut_down() -> None:
    """``ray.shutdown()``, the local head's autoscaler monitor killed first (where this process started one)."""
    for process in _own_monitors():
        with contextlib.suppress(Exception):   # (best effort: already gone, or not ours to signal)
            process.kill()
            process.wait(timeout=1)            # reaped: ray.shutdown() skips a process that has exited
    ray.shutdown()


def _own_monitors() -> list[Any]:
    """The monitor processes (``subprocess.Popen``) of the Ray head this process started; [] where it started none
    (a joined cluster, Ray not up) or where Ray's private node record reads otherwise (another Ray version)."""
    try:
        node = ray._private.worker._global_node
        if node is None or not node.is_head():
            return []
        return [info.process for info in node.all_processes.get(MONITOR, [])
                if isinstance(info.process, subprocess.Popen)]
    except Exception:  # noqa: BLE001
        return []
