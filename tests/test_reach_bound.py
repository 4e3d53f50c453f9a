"""The questions asked of ``cluster.address`` before Ray is (a TCP connection, what answers there, whether the head
wants a token) share one bound, and a listener that accepts and says nothing is refused in one line at its end. With
10 s for each question, such a listener costs 20 s of probing (10 s for the handshake, 10 s for the token question),
then Ray's own join, which prints "Failed to connect to GCS ... within 5 seconds" warnings for
minutes (a bare socket that accepted and never answered, `ray.init` still waiting after 130 s, 2026-12-06)."""
import socket
import threading
import time

import pytest

from downpour.errors import RunError
from downpour.ps import reach

# a Ray 2.60 head's GCS answers HTTP/2's client preface with its SETTINGS frame (as in test_reliability.py)
GCS_SETTINGS = b"\x00\x00\x18\x04\x00\x00\x00\x00\x00\x00\x04\x00@\x00\x00\x00\x05\x00@\x00"


def _listener(delay: float | None):
    """A listener that answers as a head's GCS opens ``delay`` s after the preface (None: never), holding the
    connection open until the test is over."""
    server, over = socket.create_server(("127.0.0.1", 0)), threading.Event()

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            if delay is not None:
                time.sleep(delay)
                conn.sendall(GCS_SETTINGS)
            over.wait(10.0)
    threading.Thread(target=serve, daemon=True).start()
    return server, over


@pytest.mark.parametrize("scheme, port_said", [("", "usually 6379"), ("ray://", "10001")])
def test_a_listener_that_says_nothing_is_refused_in_one_line(monkeypatch, scheme, port_said):
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    server, over = _listener(None)
    address = f"{scheme}127.0.0.1:{server.getsockname()[1]}"
    with server, pytest.raises(RunError) as err:
        try:
            reach.reachable(address, 0.5)
        finally:
            over.set()
    said = str(err.value)
    assert said.startswith(f"cannot join the Ray cluster at cluster.address={address!r}: something accepts "
                           "connections there, but it said nothing within 0.5 s")
    assert port_said in said and "\n" not in said


def test_the_token_question_gets_what_the_handshake_left_of_the_one_bound(monkeypatch):
    """A head that answers 0.6 s into a 1 s bound: the token question is given the 0.4 s left, not 1 s more."""
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    given = []
    monkeypatch.setattr(reach, "token_problem", lambda host, port, timeout: given.append(timeout))
    server, over = _listener(0.6)
    with server:
        try:
            reach.reachable(f"127.0.0.1:{server.getsockname()[1]}", 1.0)
        finally:
            over.set()
    assert len(given) == 1 and given[0] < 0.5
