"""A joined Ray cluster whose head is gone (its GCS answers no more): the driver's wrap-up asks Ray nothing that
blocks until Ray ends the process. Ray-free: the runtime context and ray.nodes are stood in for."""
import socket
from types import SimpleNamespace

import pytest

ray = pytest.importorskip("ray")

from downpour.ps import cluster_on_ray, connect_on_ray  # noqa: E402  (ray needed)


def _context(monkeypatch, address: str) -> None:
    """Ray up, joined to a cluster whose GCS is at ``address``."""
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(gcs_address=address))


def _closed_port() -> int:
    with socket.socket() as s:       # bound, never listening: a connection is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_head_that_is_gone_is_not_asked_for_its_nodes(monkeypatch):
    """The close of a run whose head was stopped does not ask ray.nodes(), which waits until Ray's core worker gives
    the GCS up after 60 s and ends the process (exit 1, no cluster.json)."""
    _context(monkeypatch, f"127.0.0.1:{_closed_port()}")
    asked = []
    monkeypatch.setattr(ray, "nodes", lambda: asked.append(1) or [{"Alive": True}, {"Alive": True}])
    assert cluster_on_ray._other_nodes() is False
    assert asked == []


def test_a_head_that_answers_is_asked(monkeypatch, gcs_like):
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    _context(monkeypatch, gcs_like)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}, {"Alive": False}])
    assert connect_on_ray.head_answers()
    assert cluster_on_ray._other_nodes() is True


def test_a_head_that_accepts_connections_but_says_nothing_is_gone(monkeypatch):
    """A head whose gcs_server got SIGTERM while its port still accepted connections, answering nothing, is asked as a
    join asks (the handshake), within the check's bound: a connection alone would read it as alive, the run go on to
    ask it, and Ray end the run after 60 s (exit 1, no shards-lost record, no cluster.json)."""
    import time

    from downpour.errors import RunError

    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    with socket.create_server(("127.0.0.1", 0)) as server:   # listening, never answering: accepted by the kernel
        _context(monkeypatch, f"127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setattr(ray, "nodes", lambda: pytest.fail("the silent head was asked for its nodes"))
        began = time.monotonic()
        assert connect_on_ray.head_answers(0.5) is False
        assert time.monotonic() - began < 2.0
        assert cluster_on_ray._other_nodes() is False
        monkeypatch.setattr(connect_on_ray, "CONNECT_TIMEOUT_S", 0.5)
        with pytest.raises(RunError, match="the head of the cluster this process joined no longer answers"):
            connect_on_ray.connect("HEAD:6379")


def test_where_the_heads_address_cannot_be_read_ray_is_asked_as_before(monkeypatch):
    """Where the runtime context has no GCS address to read, the head is taken to answer: the lost shard's warning
    still asks Ray, as before head_answers. (A Ray Client connection has one, not this machine's to judge by: below.)"""
    def unreadable():
        raise RuntimeError("no GCS address in client mode")
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_runtime_context", unreadable)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}])
    assert connect_on_ray.head_answers() and cluster_on_ray._other_nodes() is True


def test_ray_already_up_whose_head_is_gone_is_not_joined_again(monkeypatch):
    """Runs that share one Ray (a run and its twin, a cross-fit's folds: connect_on_ray.held) joined to a cluster
    whose head stopped: a shard restart or the next run finding Ray up gets a RunError, which a shard restart records
    as the stop (else it asks Ray for its resources, which waits until Ray's core worker ends the process: exit 1,
    nothing recorded)."""
    from downpour.errors import RunError

    _context(monkeypatch, f"127.0.0.1:{_closed_port()}")
    with pytest.raises(RunError, match=r"cluster.address='HEAD:6379': the head of the cluster this process joined no "
                                       r"longer answers"):
        connect_on_ray.connect("HEAD:6379")


def test_ray_already_up_whose_head_answers_is_used(monkeypatch, gcs_like):
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    _context(monkeypatch, gcs_like)
    assert connect_on_ray.connect("HEAD:6379") is False


def test_a_ray_client_connection_is_not_judged_by_the_clusters_own_gcs_address(monkeypatch):
    """Over ray:// the runtime context's GCS address is the one the cluster's nodes use (a private IP, a port only
    they reach), which need not answer this machine: a live head was read as gone, and Ray already up refused."""
    from ray.util.client import ray as client_ray

    monkeypatch.setattr(client_ray, "is_connected", lambda: True)
    _context(monkeypatch, f"127.0.0.1:{_closed_port()}")      # (the cluster's internal address: no answer here)
    assert connect_on_ray.head_answers() and connect_on_ray.connect("ray://HEAD:10001") is False


def test_ray_not_up_is_asked_nothing(monkeypatch):
    """With no Ray up (a fake one's tests, a driver whose start failed), reading the runtime context's GCS address
    starts a local Ray instance (measured: `head_answers()` in a fresh process printed "Started a local Ray
    instance"), so it is not read."""
    asked = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: asked.append(1) or SimpleNamespace(gcs_address="x:1"))
    assert connect_on_ray.head_answers() and asked == []


def test_a_local_ray_whose_head_is_gone_is_not_said_to_be_a_joined_clusters(monkeypatch):
    """Runs sharing the local Ray a held("") started (a run and its twin, a cross-fit's folds), its head killed: the
    refusal read "cluster.address='': the head of the cluster this process joined ...; is its head node running
    (`ray start --head`)?", a cluster the user never joined nor started."""
    from downpour.errors import RunError

    _context(monkeypatch, f"127.0.0.1:{_closed_port()}")
    with pytest.raises(RunError, match=r"^cannot go on with the local Ray this process started: its head") as err:
        connect_on_ray.connect("")
    assert "ray start" not in str(err.value) and "cluster.address" not in str(err.value)
