"""shutdown_on_ray.shut_down: a Ray this process started goes down whole, its autoscaler monitor before the GCS."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from conftest import RAY  # noqa: E402
from downpour.ps.shutdown_on_ray import MONITOR, shut_down  # noqa: E402


def test_a_local_rays_monitor_is_gone_before_its_gcs_is_stopped_and_every_process_after(monkeypatch):
    from ray._private import node as node_module

    ray.init(**RAY)
    try:
        node = ray._private.worker._global_node
        processes = [info.process for infos in node.all_processes.values() for info in infos]
        monitors = [info.process for info in node.all_processes[MONITOR]]
        assert monitors, "a local Ray runs an autoscaler monitor: there is nothing to check without one"
        alive_at_gcs_stop: list[bool] = []
        stop = node_module.Node._kill_process_type

        def noted(self, kind, *a, **k):
            if kind == "gcs_server":   # ray.shutdown() stops the raylet, then the GCS, then the monitor
                alive_at_gcs_stop.append(any(m.poll() is None for m in monitors))
            return stop(self, kind, *a, **k)

        monkeypatch.setattr(node_module.Node, "_kill_process_type", noted)
        shut_down()
    finally:
        if ray.is_initialized():
            ray.shutdown()
    # ray.shutdown() alone reaches the GCS's stop with the monitor alive: its SIGTERM handler then writes to a
    # GCS that is gone, and Ray waits out its 1 s grace before it kills it
    assert alive_at_gcs_stop == [False]
    assert not ray.is_initialized()
    assert [p.pid for p in processes if p.poll() is None] == []


def test_no_ray_up_starts_none():
    assert not ray.is_initialized()
    shut_down()
    assert not ray.is_initialized()
