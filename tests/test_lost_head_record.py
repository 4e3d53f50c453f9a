"""A Ray run stopped by a lost shard, or by its cluster's head gone (the shards' restart cannot rejoin it), writes a
short cluster.json (where and why it stopped, what a resume goes on from): it says which Ray the run ran on (``ray``:
address, head, version) as a whole run's cluster.json does. And a restart that fails does not log "resuming RUN at step
16" before its driver fails to start, then the stop. The simulated runner stands in for Ray's driver, its ``ray_info``
set as RayCluster sets it."""
import json
import logging

import pytest
from test_cluster_resume_edges import _losing_shard_1, _restart_driver, _run

from downpour.errors import RunError
from downpour.ps.simulated import SimulatedCluster

ON_RAY = {"address": "127.0.0.1:6399", "head": "192.0.2.2:6399", "version": "2.60.0"}
LOSSY = ("cluster.consistency=async", "cluster.checkpoint_every=8")


@pytest.fixture
def on_ray(monkeypatch):
    monkeypatch.setattr(SimulatedCluster, "ray_info", ON_RAY, raising=False)


def test_a_restart_that_cannot_rejoin_a_lost_head_says_which_ray_the_run_ran_on(tmp_path, monkeypatch, on_ray, caplog):
    def unreachable(*args):
        raise RunError("cannot reach the Ray cluster at cluster.address='127.0.0.1:6399': the head of the cluster this "
                       "process joined no longer answers")

    _restart_driver(monkeypatch, unreachable)
    _losing_shard_1(monkeypatch, [20])
    with caplog.at_level(logging.INFO, logger="downpour.ps.cluster"), pytest.raises(RunError) as stop:
        _run(tmp_path / "r", *LOSSY, "cluster.shard_restarts=3")
    assert "restarting the shards failed" in str(stop.value)
    summary = json.loads((tmp_path / "r/cluster.json").read_text())
    assert summary["ray"] == ON_RAY and summary["stopped"]["step"] == 20
    said = [r.getMessage() for r in caplog.records]
    assert any("restarting every shard from the checkpoint at step 16" in m for m in said)
    assert not [m for m in said if m.startswith("resuming")]    # the restart never resumed


def test_a_lost_shard_with_no_restart_left_says_which_ray_the_run_ran_on(tmp_path, monkeypatch, on_ray):
    _losing_shard_1(monkeypatch, [20])
    with pytest.raises(RunError, match=r"shard restarts are off \(cluster\.shard_restarts = 0\)"):
        _run(tmp_path / "r", *LOSSY, "cluster.shard_restarts=0")
    assert json.loads((tmp_path / "r/cluster.json").read_text())["ray"] == ON_RAY


def test_a_restart_that_starts_says_it_resumes_and_off_ray_the_stop_names_no_ray(tmp_path, monkeypatch, caplog):
    _losing_shard_1(monkeypatch, [20, 30])
    with caplog.at_level(logging.INFO, logger="downpour.ps.cluster"), pytest.raises(RunError):
        _run(tmp_path / "r", *LOSSY, "cluster.shard_restarts=1")
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming")] == [
        f"resuming {tmp_path / 'r'} at step 16"]
    assert "ray" not in json.loads((tmp_path / "r/cluster.json").read_text())
