"""A local Ray (tests/conftest.py's ``local_ray``, 2 CPUs) with no room: ``Hog``, another job's actor holding every
CPU, and ``workers_start_within``, a run's start left to fail on its worker (or partition) actors (the shards' own
wait kept long)."""
from typing import Any

import ray


@ray.remote(num_cpus=2)
class Hog:
    """Another job's actor holding every CPU of the module's local Ray (2)."""

    def ping(self):
        return 1


def workers_start_within(monkeypatch: Any, module: Any, seconds: float, what: str = "worker actors") -> None:
    """The start's limit (``downpour.ps.silence.start_limit``) ``seconds``, but for the waits of ``module`` (the one
    that calls ``gathered``) on anything but its ``what``, which keep 600 s: the shards' 0-CPU actors start, but
    a fresh process's imports took 4 s (load 7 on the 2 cores, 2026-12-05), and a loaded machine would fail the shards
    within a short limit, not the workers."""
    monkeypatch.setattr("downpour.ps.silence.FIRST_FLOOR", seconds)
    gathered = module.gathered
    monkeypatch.setattr(module, "gathered", lambda refs, asked, limit, *more, **named: gathered(
        refs, asked, limit if asked == what else 600.0, *more, **named))
