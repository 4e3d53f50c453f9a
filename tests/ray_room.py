"""A local Ray (tests/conftest.py's ``local_ray``, 2 CPUs) with no room: ``Hog``, another job's actor holding every
CPU, and ``workers_start_within``, a run's start left to fail on its worker (or partition) actors (the shards' own
wait kept long). ``two_nodes_one_full``: a stand-in two-node Ray for ``gathered`` (one machine has one node)."""
from types import SimpleNamespace
from typing import Any, Callable

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


A_NODE, B_NODE = "a" * 56, "b" * 56


def two_nodes_one_full(monkeypatch: Any, ready: Callable[[Any], bool] = lambda ref: False) -> SimpleNamespace:
    """A stand-in Ray of two nodes of 4 CPUs, :data:`A_NODE` with none free (another job's actors), :data:`B_NODE`
    with all 4, put where :func:`downpour.ps.connect_on_ray.gathered` calls it: a ref is answered where ``ready``
    says so (none by default), at once (a wait takes no time); ``get`` gives the refs back. Returned: the stand-in."""
    from downpour.ps import connect_on_ray

    stand_in = SimpleNamespace(
        wait=lambda refs, num_returns, timeout: ([r for r in refs if ready(r)], [r for r in refs if not ready(r)]),
        get=lambda refs: refs,
        nodes=lambda: [{"NodeID": n, "Alive": True, "Resources": {"CPU": 4.0}} for n in (A_NODE, B_NODE)],
        available_resources=lambda: {"CPU": 4.0}, cluster_resources=lambda: {"CPU": 8.0})
    monkeypatch.setattr(connect_on_ray, "ray", stand_in)
    monkeypatch.setattr(connect_on_ray, "_free_per_node", lambda: {A_NODE: {}, B_NODE: {"CPU": 4.0}})
    return stand_in
