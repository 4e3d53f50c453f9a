"""The head's address asked with Ray's TLS on (RAY_USE_TLS=1; downpour/ps/handshake.py): a TLS ClientHello offering
HTTP/2 ("h2"), as a gRPC client's. Only reached (a TCP connection), a web server there, or a TLS server that speaks
no HTTP/2, would go into ray.init's wait of minutes."""
from __future__ import annotations

import queue
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from downpour.errors import RunError


@pytest.fixture
def tls_env(monkeypatch, tmp_path) -> tuple[Path, Path]:
    """Ray's TLS on, its certificate and key (one self-signed pair, its own CA) named as Ray's environment names
    them: (cert, key)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if shutil.which("openssl"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    else:
        _made_with_cryptography(cert, key)
    for name, path in (("RAY_TLS_SERVER_CERT", cert), ("RAY_TLS_SERVER_KEY", key), ("RAY_TLS_CA_CERT", cert)):
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("RAY_USE_TLS", "1")
    return cert, key


def _made_with_cryptography(cert: Path, key: Path) -> None:
    pytest.importorskip("cryptography", reason="neither openssl nor cryptography here to make a certificate")
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    made = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=2)).sign(private, hashes.SHA256()))
    cert.write_bytes(made.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _server_context(cert: Path, key: Path, alpn: list[str]) -> ssl.SSLContext:
    """A TLS server's context that requires a client certificate from its CA (``cert``: self-signed) and chooses
    among ``alpn``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cert)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(alpn)
    return context


def _tls_server(cert: Path, key: Path, alpn: list[str], heard: queue.Queue, route=None) -> socket.socket:
    """A TLS server (Python's, :func:`_server_context`) for one connection; ``heard`` gets the protocol chosen (None:
    none) or the handshake's error. ``route``: its ``sni_callback`` (called with the host name the client asked for,
    None where it named none)."""
    context = _server_context(cert, key, alpn)
    context.sni_callback = route
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                heard.put(tls.selected_alpn_protocol())
        except (OSError, ssl.SSLError) as err:
            heard.put(f"{type(err).__name__}: {err}")
    threading.Thread(target=serve, daemon=True).start()
    return server


def test_with_rays_tls_on_a_web_server_at_the_head_address_is_refused(tls_env, web_server):
    """`python -m http.server` (or the dashboard, 8265) at the address: it answers the ClientHello with a page."""
    pytest.importorskip("ray")
    from downpour.ps.connect_on_ray import _reachable

    with pytest.raises(RunError, match="something answers there, but it is not a Ray head") as err:
        _reachable(web_server, 5.0)
    assert "answered as a web server does, such as the Ray dashboard" in str(err.value)


def test_with_rays_tls_on_a_tls_server_that_speaks_no_http2_is_refused(tls_env):
    """An HTTPS server (ALPN http/1.1 only) speaks TLS but not gRPC's HTTP/2: refused, saying what it chose."""
    pytest.importorskip("ray")
    from downpour.ps.connect_on_ray import _reachable

    web = _tls_server(*tls_env, ["http/1.1"], queue.Queue())
    with web, pytest.raises(RunError, match="not a Ray head") as err:
        _reachable(f"127.0.0.1:{web.getsockname()[1]}", 5.0)
    assert "HTTP/2 over TLS" in str(err.value) and "this speaks TLS but chose no protocol" in str(err.value)


def test_with_rays_tls_on_a_head_is_asked_with_rays_certificate_and_left_to_ray(tls_env, capfd):
    """A TLS server that chooses "h2" and requires a client certificate (Ray's TLS is mutual) completes the handshake
    with the certificate of RAY_TLS_SERVER_CERT and is not refused; nor is a gRPC server (grpcio, Ray's own
    dependency: the C core a head's GCS runs) with TLS and client certificates required, as a head with Ray's TLS on
    is, and it logs no failed handshake (a head's log lines reach every driver joined to it)."""
    pytest.importorskip("ray")
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from downpour.ps.connect_on_ray import _reachable

    heard: queue.Queue = queue.Queue()
    head = _tls_server(*tls_env, ["h2"], heard)
    with head:
        _reachable(f"127.0.0.1:{head.getsockname()[1]}", 5.0)
        assert heard.get(timeout=10.0) == "h2"   # the server's handshake completed too: the client certificate shown

    cert, key = (p.read_bytes() for p in tls_env)
    server = grpc.server(ThreadPoolExecutor(1))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)], root_certificates=cert,
                                                                             require_client_auth=True))
    server.start()
    try:
        _reachable(f"127.0.0.1:{port}", 5.0)
    finally:
        server.stop(None)
    assert "andshake failed" not in capfd.readouterr().err


def test_with_rays_tls_on_a_head_behind_a_proxy_that_routes_by_name_is_asked_by_that_name(tls_env):
    """A head reached by name through a TLS proxy that routes by the name the client asks for (SNI: an ingress with
    TLS passthrough, as a `ray://` head on Kubernetes often is) and answers a ClientHello naming no host from its own
    default server, an HTTPS one. Ray's gRPC client names the address's host, so it reaches the head, and the
    probe names it too (naming none, it meets the default server, no HTTP/2, and refuses a real head)."""
    pytest.importorskip("ray")
    from downpour.ps.connect_on_ray import _reachable

    cert, key = tls_env
    head = _server_context(cert, key, ["h2"])
    named: list[str | None] = []

    def route(tls: ssl.SSLObject, name: str | None, _default: ssl.SSLContext) -> None:
        named.append(name)
        if name == "localhost":
            tls.context = head

    heard: queue.Queue = queue.Queue()
    with _tls_server(cert, key, ["http/1.1"], heard, route) as proxy:
        _reachable(f"localhost:{proxy.getsockname()[1]}", 5.0)
        assert heard.get(timeout=10.0) == "h2"
    assert named == ["localhost"]


def test_with_rays_tls_on_a_key_that_asks_for_a_pass_phrase_is_not_asked_for_one_at_the_terminal(tmp_path):
    """RAY_TLS_SERVER_KEY names an encrypted key (Ray's gRPC takes no pass phrase). The probe takes the key
    as one that does not load (the head left to Ray): loaded with OpenSSL's own prompt, `downpour train --address ...`
    run at a terminal stops at "Enter PEM pass phrase:" before Ray is asked. Run at a
    terminal of its own (a pty), where OpenSSL prompts."""
    import sys

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if shutil.which("openssl"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-passout", "pass:secret", "-keyout",
                        str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"], check=True,
                       capture_output=True)
    else:
        _made_with_cryptography(cert, key)
        from cryptography.hazmat.primitives import serialization

        private = serialization.load_pem_private_key(key.read_bytes(), None)
        key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.BestAvailableEncryption(b"secret")))
    assert b"ENCRYPTED" in key.read_bytes()
    at_a_terminal = f"""
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.environ.update(RAY_USE_TLS="1", RAY_TLS_SERVER_CERT={str(cert)!r}, RAY_TLS_SERVER_KEY={str(key)!r})
    sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
    from downpour.ps import handshake
    print("context:", handshake._tls_context(), flush=True)
    os._exit(0)
said, end = b"", time.monotonic() + 60
while b"phrase" not in said and time.monotonic() < end:   # until it prompts, or ends (its terminal closed: EIO)
    if select.select([fd], [], [], 0.5)[0]:
        try:
            more = os.read(fd, 1024)
        except OSError:
            break
        if not more:
            break
        said += more
os.kill(pid, 9)
print(said.decode(errors="replace"))
"""
    done = subprocess.run([sys.executable, "-c", at_a_terminal], capture_output=True, text=True, timeout=120)
    assert "pass phrase" not in done.stdout and "context: None" in done.stdout, done.stdout + done.stderr


def test_with_rays_tls_on_a_joined_head_is_asked_with_tls_as_a_join_asks(tls_env, monkeypatch):
    """The check of a joined head while a run goes on (connect_on_ray.head_answers) asks what a join asks: with Ray's
    TLS on, a ClientHello with Ray's certificate. A TLS head that chooses "h2" answers; one that accepts connections
    and says nothing (its gcs_server sent SIGTERM, the port not yet closed) is gone (a connection alone would read
    it as alive, and Ray end the run after 60 s)."""
    ray = pytest.importorskip("ray")
    from types import SimpleNamespace

    from downpour.ps import connect_on_ray

    def joined_to(port: int) -> None:
        monkeypatch.setattr(ray, "is_initialized", lambda: True)
        monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(gcs_address=f"127.0.0.1:{port}"))

    heard: queue.Queue = queue.Queue()
    with _tls_server(*tls_env, ["h2"], heard) as head:
        joined_to(head.getsockname()[1])
        assert connect_on_ray.head_answers(5.0)
        assert heard.get(timeout=10.0) == "h2"
    with socket.create_server(("127.0.0.1", 0)) as silent:    # listening, never answering
        joined_to(silent.getsockname()[1])
        assert connect_on_ray.head_answers(0.5) is False
