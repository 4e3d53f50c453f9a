"""Whether what answers at a head's address (one that accepts a TCP connection) speaks as a Ray head does, asked
before ``ray.init`` (Ray-free: sockets only). A head's GCS, and the Ray Client server of ``ray://``, are gRPC
servers: HTTP/2, whose server opens with a SETTINGS frame (TLS where Ray's TLS is on). Given another listener
(the dashboard's port 8265 copied for the head's 6379), ``ray.init`` waited over 2 minutes printing Ray's "Timed
out while waiting for GCS" warnings (until 2026-12-06).

    with socket.create_connection((host, port), 10.0) as sock:   # (not asked where ray_tls(): Ray's TLS on)
        problem = not_a_head(first_answer(sock, 10.0), port)   # None: a Ray head, or an answer that cannot tell
"""
from __future__ import annotations

import os
import socket

__all__ = ["DASHBOARD_PORT", "first_answer", "not_a_head", "ray_tls"]

DASHBOARD_PORT = 8265
# HTTP/2's client preface, then the client's (empty) SETTINGS frame: a gRPC server answers with its own SETTINGS
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_FRAME_HEADER = 9


def ray_tls() -> bool:
    """Whether Ray's TLS is on in this environment (``RAY_USE_TLS``, read as Ray reads it; a driver joins a head with
    TLS on only with it set). Such a head is not asked: its GCS drops HTTP/2's preface sent in the clear and logs
    "Handshake failed with fatal error SSL_ERROR_SSL ... WRONG_VERSION_NUMBER" in its gcs_server.err, which Ray shows
    on every driver joined to the cluster (measured 2026-12-06 on a local Ray 2.60 with RAY_USE_TLS=1)."""
    return os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")


def first_answer(sock: socket.socket, timeout: float) -> bytes:
    """The first bytes (an HTTP/2 frame header's worth, or fewer where the other end stops) the listener on
    ``sock`` answers HTTP/2's client preface with; empty where it says nothing within ``timeout`` or drops the
    connection."""
    answer = b""
    try:
        sock.settimeout(timeout)
        sock.sendall(_PREFACE)
        while len(answer) < _FRAME_HEADER:
            more = sock.recv(64)
            if not more:
                break
            answer += more
    except OSError:   # (socket.timeout too)
        pass
    return answer


def not_a_head(answer: bytes, port: int, client: bool = False) -> str | None:
    """Why a listener that answered ``answer`` (:func:`first_answer`) at ``port`` is no Ray head, or None: an HTTP/2
    frame (a gRPC server), a TLS record (a head with Ray's TLS on), and silence or a dropped connection are left to
    Ray to judge; so is an answer cut short (fewer bytes than a frame header, a slow link's or a proxy's) that begins
    as either does. ``client``: the address is ``ray://`` (the head's Ray Client server, not its GCS)."""
    if not answer:
        return None
    head = answer[:_FRAME_HEADER]   # (judged on the bytes there are: a frame's type, stream 0)
    http2 = (len(head) < 4 or head[3] < 10) and (len(head) < 6 or not head[5] & 0x7F) and not head[6:9].strip(b"\0")
    tls = answer[0] in (0x15, 0x16) and answer[1:2] in (b"", b"\x03")
    if http2 or tls:
        return None
    server = "the Ray Client server that ray:// joins" if client else "a head's GCS"
    said = f"something answers there, but it is not a Ray head ({server} speaks gRPC"
    where = ("give the head's Ray Client server port, 10001 unless `ray start --head --ray-client-server-port` set "
             "another" if client else
             "give the head's port, usually 6379, as `ray start --head` printed it (`ray start --address='IP:PORT'`)")
    if answer.startswith(b"HTTP/") or answer.lstrip().startswith(b"<"):
        return (f"{said}; this answered as a web server does, such as the Ray dashboard, port {DASHBOARD_PORT} by "
                f"default): {where}")
    if port == DASHBOARD_PORT:
        return f"{said}; this answered {_shown(answer)}, at the Ray dashboard's port {DASHBOARD_PORT}): {where}"
    return f"{said}; this answered {_shown(answer)}): is the port the one `ray start --head` printed?"


def _shown(answer: bytes) -> str:
    """The start of an answer, readable in one line."""
    text = answer.split(b"\n", 1)[0].rstrip(b"\r").decode("ascii", "replace")
    return repr("".join(c if c.isprintable() else "?" for c in text)[:40])
