"""A RAY_ADDRESS in the environment (Ray's own default address; `ray job submit` sets it for its entrypoint) does not
move a run without cluster.address off its own local Ray (a stale one must not redirect it), but it is said, with
how to join that cluster: else `RAY_ADDRESS=HEAD:PORT downpour train --runner ray` starts a local Ray unsaid, and
inside `ray job submit` a second Ray in the job's process."""
import logging

import pytest

ray = pytest.importorskip("ray")


@pytest.fixture
def init_asked(monkeypatch):
    """The keyword arguments each ``ray.init`` of connect_on_ray was given (Ray itself not started)."""
    from downpour.ps import connect_on_ray

    asked = []
    monkeypatch.setattr(connect_on_ray.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(connect_on_ray.ray, "init", lambda **kwargs: asked.append(kwargs))
    return asked


def test_a_ray_address_in_the_environment_is_said_and_the_run_starts_its_own_ray(monkeypatch, caplog, init_asked):
    from downpour.ps.connect_on_ray import connect

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with caplog.at_level(logging.WARNING, logger="downpour.ps.connect_on_ray"):
        assert connect("") is True
        assert not caplog.records                         # nothing to say without it
        monkeypatch.setenv("RAY_ADDRESS", "192.0.2.7:6390")
        assert connect("") is True
    assert [kw["address"] for kw in init_asked] == ["local", "local"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "RAY_ADDRESS='192.0.2.7:6390' is set here" in said[0]
    assert "starts a local Ray" in said[0] and "--address auto joins the cluster RAY_ADDRESS names" in said[0]


def test_a_dashboard_address_in_ray_address_is_not_offered_to_address_auto(monkeypatch, caplog, init_asked):
    """RAY_ADDRESS=http://HEAD:8265, as Ray's job docs have users export it for `ray job submit`: the note does not
    say "--address auto joins the cluster RAY_ADDRESS names", since `--address auto` hands it to Ray, which refuses it
    ("Invalid Ray address: 'http://127.0.0.1:8265' ... set RAY_ADDRESS to the GCS address", Ray 2.60, 2026-12-06)."""
    import os

    from downpour.ps.connect_on_ray import connect

    monkeypatch.setenv("RAY_ADDRESS", "http://192.0.2.7:8265")
    with caplog.at_level(logging.WARNING, logger="downpour.ps.connect_on_ray"):
        assert connect("") is True
    said = [r.getMessage() for r in caplog.records]
    assert [kw["address"] for kw in init_asked] == ["local"] and len(said) == 1
    assert f"starts a local Ray of this machine's {os.cpu_count()} cores" in said[0]
    assert "--address auto" not in said[0] and "give --address HEAD:PORT, the head's port (usually 6379)" in said[0]
