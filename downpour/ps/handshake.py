"""Whether what answers at a head's address (one that accepts a TCP connection) speaks as a Ray head does, asked
before ``ray.init`` (Ray-free: sockets only). A head's GCS, and the Ray Client server of ``ray://``, are gRPC
servers: HTTP/2, whose server opens with a SETTINGS frame; with Ray's TLS on (:func:`ray_tls`), HTTP/2 over TLS,
which a gRPC server always chooses by ALPN ("h2"). Given another listener (the dashboard's port 8265 copied for the
head's 6379), ``ray.init`` waits over 2 minutes printing Ray's "Timed out while waiting for GCS" warnings, with Ray's
TLS on or off (seen 2026-12-06).

    with socket.create_connection((host, port), 10.0) as sock:
        problem = head_problem(sock, port, 10.0, host=host)   # None: a Ray head, or an answer that cannot tell
"""
from __future__ import annotations

import os
import socket
import ssl
import time

__all__ = ["DASHBOARD_PORT", "first_answer", "head_problem", "not_a_head", "ray_tls", "tls_answer"]

DASHBOARD_PORT = 8265
# HTTP/2's client preface, then the client's (empty) SETTINGS frame: a gRPC server answers with its own SETTINGS
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_FRAME_HEADER = 9


def ray_tls() -> bool:
    """Whether Ray's TLS is on in this environment (``RAY_USE_TLS``, read as Ray reads it; a driver joins a head with
    TLS on only with it set). Such a head is asked with TLS (:func:`tls_answer`), never in the clear: its GCS drops
    HTTP/2's preface sent in the clear and logs "Handshake failed with fatal error SSL_ERROR_SSL ...
    WRONG_VERSION_NUMBER" in its gcs_server.err, which Ray shows on every driver joined to the cluster (measured
    2026-12-06 on a local Ray 2.60 with RAY_USE_TLS=1)."""
    return os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")


def head_problem(sock: socket.socket, port: int, timeout: float, client: bool = False,
                 host: str | None = None) -> str | None:
    """Why the listener on ``sock`` (connected to ``port``) is no Ray head, or None: asked with TLS where
    :func:`ray_tls`, else in the clear; up to ``timeout`` for its answer. ``client``: as :func:`not_a_head`'s.
    ``host``: the address's host, named in the ClientHello as Ray's gRPC client names it (:func:`tls_answer`).
    A listener that says nothing at all within ``timeout`` is refused too (left to Ray, its join prints
    "Failed to connect to GCS ... within 5 seconds" warnings for minutes): a head's gRPC server
    answers at once (its SETTINGS frame, or its TLS ServerHello)."""
    # (in the clear, the answer to HTTP/2's preface is all there is to judge: as if TLS had chosen "h2")
    answer, chosen = tls_answer(sock, timeout, host) if ray_tls() else (first_answer(sock, timeout), "h2")
    if answer is None:
        return _silent(client, timeout)
    if problem := not_a_head(answer, port, client):   # another protocol's answer (to the ClientHello: a web page)
        return problem
    if chosen in (None, "h2"):
        return None
    said = _said(client, "with Ray's TLS on, HTTP/2 over TLS, which gRPC chooses as 'h2' in the TLS handshake")
    dashboard = f", at the Ray dashboard's port {DASHBOARD_PORT}" if port == DASHBOARD_PORT else ""
    chose = repr(chosen) if chosen else "no protocol"
    return f"{said}; this speaks TLS but chose {chose}{dashboard}): {_where(client)}"


def first_answer(sock: socket.socket, timeout: float) -> bytes | None:
    """The first bytes (an HTTP/2 frame header's worth, or fewer where the other end stops) the listener on
    ``sock`` answers HTTP/2's client preface with; empty where it drops the connection, None where it says nothing
    within ``timeout``."""
    answer = b""
    try:
        sock.settimeout(timeout)
        sock.sendall(_PREFACE)
        while len(answer) < _FRAME_HEADER:
            more = sock.recv(64)
            if not more:
                break
            answer += more
    except TimeoutError:   # (socket.timeout) an answer cut short is judged on what came
        return answer or None
    except OSError:
        pass
    return answer


def tls_answer(sock: socket.socket, timeout: float, host: str | None = None) -> tuple[bytes | None, str | None]:
    """What the listener on ``sock`` answers a TLS ClientHello offering HTTP/2 (ALPN "h2") with: the bytes it first
    sent (a TLS record, or another protocol's answer, such as a web server's page: what :func:`not_a_head` judges;
    empty where it dropped the connection, None where it said nothing within ``timeout``), and, where the handshake
    completed, the protocol it chose ("h2": HTTP/2; "" where it chose none), else None. The handshake presents Ray's own
    certificate and key (``RAY_TLS_SERVER_CERT``, ``RAY_TLS_SERVER_KEY``: Ray's TLS is mutual, a head refuses a
    driver without them; where they are not there to present, nothing is sent) and does not check the listener's
    certificate (Ray does, with ``RAY_TLS_CA_CERT``): it asks what is spoken there, not who speaks. Its bytes go
    through memory buffers, so an answer that is not TLS is seen as it came. ``host`` (a name; not an IP address) is
    named in the ClientHello (SNI), as Ray's gRPC client names it: a proxy that routes by it (an ingress's TLS
    passthrough) answers one that names none from its own default server, which would refuse a head."""
    if (context := _tls_context()) is None:
        return b"", None               # not asked: see _tls_context
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        tls = context.wrap_bio(incoming, outgoing, server_hostname=host or None)
    except ValueError:                 # a name no ClientHello can carry (an empty or 64-letter label): none
        tls = context.wrap_bio(incoming, outgoing)
    answer = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:   # (its next flight written to outgoing, it waits for the listener's)
                sock.sendall(outgoing.read())
            sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            more = sock.recv(16384)
            if not more:
                return answer, None
            answer += more
            if not _tls_record(answer):   # another protocol's answer: as it came
                return answer, None
            incoming.write(more)
        sock.sendall(outgoing.read())  # the last flight (its certificate, Finished): the head's handshake done
        chosen = tls.selected_alpn_protocol() or ""
        try:
            tls.unwrap()                # a close_notify: the head sees a connection closed, not one broken
        except ssl.SSLError:
            pass
        sock.sendall(outgoing.read())
    except TimeoutError:
        return answer or None, None
    except OSError:   # ssl.SSLError (TLS spoken, the handshake refused: a certificate, a version)
        return answer, None   # (Ray's to judge)
    return answer, chosen


def _tls_context() -> ssl.SSLContext | None:
    """A client context for :func:`tls_answer`: ALPN "h2", Ray's certificate and key; None where Ray's environment
    does not name them or they do not load, an encrypted key too (Ray names what is wrong with them, and a head logs
    a handshake without a client certificate as failed: "PEER_DID_NOT_RETURN_A_CERTIFICATE", grpcio 1.85)."""
    cert, key = os.environ.get("RAY_TLS_SERVER_CERT"), os.environ.get("RAY_TLS_SERVER_KEY")
    if not (cert and key):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:   # (no pass phrase: OpenSSL's own prompt would stop a run at a terminal on an encrypted key)
        context.load_cert_chain(cert, key, password=b"")
    except (OSError, ssl.SSLError):
        return None
    return context


def not_a_head(answer: bytes, port: int, client: bool = False) -> str | None:
    """Why a listener that answered ``answer`` (:func:`first_answer`) at ``port`` is no Ray head, or None: an HTTP/2
    frame (a gRPC server), a TLS record (a head with Ray's TLS on), and silence or a dropped connection are left to
    Ray to judge; so is an answer cut short (fewer bytes than a frame header, a slow link's or a proxy's) that begins
    as either does. ``client``: the address is ``ray://`` (the head's Ray Client server, not its GCS)."""
    if not answer:
        return None
    head = answer[:_FRAME_HEADER]   # (judged on the bytes there are: a frame's type, stream 0)
    http2 = (len(head) < 4 or head[3] < 10) and (len(head) < 6 or not head[5] & 0x7F) and not head[6:9].strip(b"\0")
    if http2 or _tls_record(answer):
        return None
    said, where = _said(client), _where(client)
    if answer.startswith(b"HTTP/") or answer.lstrip().startswith(b"<"):
        return (f"{said}; this answered as a web server does, such as the Ray dashboard, port {DASHBOARD_PORT} by "
                f"default): {where}")
    if port == DASHBOARD_PORT:
        return f"{said}; this answered {_shown(answer)}, at the Ray dashboard's port {DASHBOARD_PORT}): {where}"
    return f"{said}; this answered {_shown(answer)}): is the port the one `ray start --head` printed?"


def _silent(client: bool, timeout: float) -> str:
    """The refusal of a listener that said nothing within ``timeout`` (a head's gRPC server answers at once)."""
    server, port = (("the Ray Client server that ray:// joins", "its port (10001 unless `ray start --head "
                     "--ray-client-server-port` set another)") if client else
                    ("a head's GCS", "the port `ray start --head` printed (usually 6379)"))
    return (f"something accepts connections there, but it said nothing within {round(timeout, 1):g} s of being asked "
            f"as {server} is (it answers at once): is this {port}, and is that node up and not overloaded?")


def _tls_record(answer: bytes) -> bool:
    """Whether ``answer`` (not empty) begins as a TLS record does: a handshake's or an alert's, TLS's version 3.x."""
    return answer[0] in (0x15, 0x16) and answer[1:2] in (b"", b"\x03")


def _said(client: bool, speaks: str = "") -> str:
    """The start of a refusal: what a head speaks (the Ray Client server where ``client``), left open."""
    server = "the Ray Client server that ray:// joins" if client else "a head's GCS"
    return f"something answers there, but it is not a Ray head ({server} speaks gRPC{': ' + speaks if speaks else ''}"


def _where(client: bool) -> str:
    """Which port to give instead."""
    if client:
        return ("give the head's Ray Client server port, 10001 unless `ray start --head --ray-client-server-port` set "
                "another")
    return "give the head's port, usually 6379, as `ray start --head` printed it (`ray start --address='IP:PORT'`)"


def _shown(answer: bytes) -> str:
    """The start of an answer, readable in one line."""
    text = answer.split(b"\n", 1)[0].rstrip(b"\r").decode("ascii", "replace")
    return repr("".join(c if c.isprintable() else "?" for c in text)[:40])
