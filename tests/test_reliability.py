"""Nothing of the user's is lost and every mistake is one line: the cases of issue 14 a user meets
before any cluster process runs."""
import os
import stat
import time

import numpy as np
import pytest
from PIL import Image

from downpour.cli import main
from downpour.data.folder import load_folder
from downpour.ps import shm

TINY = ["--config", "ufldl-sae", "--steps", "4", "--no-report", "--set", "data.samples=300",
        "--set", "train.tensorboard=false"]


def test_a_folder_with_the_users_own_files_is_never_written_into(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "config.toml").write_text("# my own config\n")
    assert main(["train", *TINY, "--out", str(out)]) == 2
    assert "not an empty folder (notes.txt)" in capsys.readouterr().err
    assert (out / "config.toml").read_text() == "# my own config\n" and sorted(p.name for p in out.iterdir()) == [
        "config.toml", "notes.txt"]


def test_resume_with_out_is_refused_not_ignored(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path / "r")]) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "--steps", "8", "--out", str(tmp_path / "elsewhere")]) == 2
    assert "--out with --resume" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    import downpour.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    args = cli.build_parser().parse_args(["presets"])
    args.func = interrupted          # as if Ctrl-C came in the middle of a command
    monkeypatch.setattr(cli, "_parse", lambda argv: args)     # (main parses with _parse: parse_known_args)
    assert main(["presets"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "downpour: interrupted" and "Traceback" not in err


def test_a_config_error_names_the_file_that_set_the_value(tmp_path, capsys):
    bad = tmp_path / "wrong_type.toml"
    bad.write_text('base = "ufldl-sae"\n[train]\nsteps = "many"\n')
    assert main(["train", "--config", str(bad), "--dry-run"]) == 2
    assert f"{bad}: train.steps must be int" in capsys.readouterr().err
    assert main(["train", "--config", "ufldl-sae", "--dry-run", "--set", "cluster.delay=exponential:inf"]) == 2
    assert "--set cluster.delay=exponential:inf: cluster.delay" in capsys.readouterr().err


def test_shared_memory_is_readable_by_its_owner_only(tmp_path):
    seg = shm.Segment(tmp_path / "seg", 4, create=True)
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "seg").st_mode) == 0o600
    finally:
        seg.close()


def test_hidden_files_count_as_ignored(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / "readme.txt").write_text("x")
    assert load_folder(tmp_path).info["n_ignored"] == 2


def test_an_unreachable_address_fails_fast_in_one_line_and_the_folder_can_be_reused(tmp_path, capsys):
    out = tmp_path / "r"
    t0 = time.monotonic()
    assert main(["train", *TINY, "--runner", "ray", "--address", "127.0.0.1:1", "--out", str(out)]) == 2
    assert time.monotonic() - t0 < 60
    err = capsys.readouterr().err
    assert "cannot reach the Ray cluster at cluster.address='127.0.0.1:1'" in err and "Traceback" not in err
    assert main(["train", *TINY, "--runner", "simulated", "--out", str(out)]) == 0   # the same folder, taken over


def test_more_ray_processes_than_memory_holds_is_refused_before_any_starts(monkeypatch, capsys, tmp_path):
    import downpour.cluster_checks as cluster_checks

    monkeypatch.setattr(cluster_checks, "_available_mb", lambda: 2000.0)     # a 2 GB machine
    assert main(["train", *TINY, "--runner", "ray", "--shards", "8", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    # each value named as typed (not "cluster.shards=8, cluster.workers=2" for `--shards 8`)
    assert "--shards 8 and cluster.workers=2 start 10 Ray processes" in err and not (tmp_path / "r").exists()
    assert main(["train", *TINY, "--runner", "ray", "--set", "cluster.workers=9", "--dry-run"]) == 2
    assert "cluster.shards=2 and --set cluster.workers=9 start 11 Ray processes" in capsys.readouterr().err
    assert main(["train", *TINY, "--runner", "ray", "--shards", "2", "--dry-run"]) == 0   # 4 processes fit


@pytest.mark.parametrize("address", [":6379", "localhost:abc", "http://head:8265", "head", "head:70000", "ray://head:0"])
def test_a_malformed_address_is_one_line_naming_it(tmp_path, capsys, address):
    """`--address :6379` let Ray's own parser print a traceback before the error, which also blamed a
    missing authentication token."""
    pytest.importorskip("ray")
    assert main(["train", *TINY, "--runner", "ray", "--address", address, "--out", str(tmp_path / "r")]) == 2
    captured = capsys.readouterr()
    assert f"cluster.address={address!r} is not a Ray address" in captured.err
    assert "Traceback" not in captured.err + captured.out and "token" not in captured.err
    # refused with the config's checks, as a --dry-run refuses it, not at Ray's start, the folder made
    assert not (tmp_path / "r").exists()
    assert main(["train", *TINY, "--runner", "ray", "--address", address, "--dry-run"]) == 2
    assert f"--address {address}: cluster.address={address!r} is not a Ray address" in capsys.readouterr().err


def test_addresses_ray_resolves_itself_are_left_to_it():
    """A client module's scheme (anyscale://NAME) and ray://HOST (the client's default port) are Ray's to
    resolve: not refused as malformed."""
    pytest.importorskip("ray")
    from downpour.ps.connect_on_ray import _reachable

    for address in ("auto", "anyscale://my-cluster", "ray://head"):
        _reachable(address, 0.1)


def test_an_ipv6_head_address_is_reached(tmp_path):
    """`--address [::1]:PORT` kept the brackets in the host and failed the name lookup ("cannot reach")
    though the head was listening."""
    import socket
    import threading

    pytest.importorskip("ray")
    from downpour.ps.connect_on_ray import _reachable

    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    def answer():   # as a head's GCS opens (a silent listener is refused: test_reach_bound.py)
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            conn.sendall(GCS_SETTINGS)
    threading.Thread(target=answer, daemon=True).start()
    with server:
        _reachable(f"[::1]:{server.getsockname()[1]}", 1.0)


def test_joining_ray_keeps_the_processs_sigterm_handler(monkeypatch):
    """ray.init puts in its own SIGTERM handler (sys.exit(15)): a Ray run stopped by SIGTERM exited 15 or
    aborted, without its "terminated" and status 143. The handler before it is put back."""
    import signal

    ray = pytest.importorskip("ray")
    from downpour.ps import connect_on_ray

    def init(**kwargs):                       # what Ray's does to the handler, without starting Ray
        signal.signal(signal.SIGTERM, lambda signum, frame: None)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    mine = lambda signum, frame: None         # noqa: E731
    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert connect_on_ray.connect("") and signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize("swallowed", [False, True])
def test_a_stop_during_rays_start_is_the_processs_own_and_one_the_start_swallows_is_acted_on_after(monkeypatch,
                                                                                                   swallowed):
    """ray.init's first act is its own SIGTERM handler (sys.exit(15)): a scheduler's stop in a Ray run's first
    seconds (5.5-10 s into `downpour train --runner ray` on a loaded 2-core VM) exited 15 without the CLI's
    "terminated" and 143, or was swallowed inside logging's at-fork hook and the run went on. Ray's handler is
    kept out: the process's own acts at once; one the start swallows is acted on again as it ends, Ray shut down."""
    import inspect
    import signal
    import sys

    ray = pytest.importorskip("ray")
    from ray._private import worker

    from downpour.ps import connect_on_ray
    from downpour.train.signals import Terminated, sigterm_as_interrupt

    assert "set_sigterm_handler(" in inspect.getsource(worker.init)   # what Ray's start does first; the fake does too
    rays = ray._private.utils.set_sigterm_handler
    up, down = [], []

    def init(**kwargs):
        ray._private.utils.set_sigterm_handler(lambda signum, frame: sys.exit(signum))
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)                                             # (the handler runs in the main thread)
        except BaseException:
            if not swallowed:
                raise
        up.append(True)                                                 # swallowed: the start goes on to its end

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: bool(up) and not down)
    monkeypatch.setattr(ray, "shutdown", lambda: down.append(True))
    with sigterm_as_interrupt() as received:
        mine = signal.getsignal(signal.SIGTERM)
        with pytest.raises(Terminated):
            connect_on_ray.connect("")
        assert signal.getsignal(signal.SIGTERM) is mine
    assert received == [signal.SIGTERM] * (2 if swallowed else 1) and up == down == ([True] if swallowed else [])
    assert ray._private.utils.set_sigterm_handler is rays


def test_a_survivor_outwaits_the_drivers_wait_for_a_restarted_worker():
    """While the driver waits for a restarted worker's actor (up to RESTART_SECONDS) it rings no shard;
    the other workers' pushes wait in the inboxes. At 60 s each would give up and be lost: a replacement Ray
    cannot place at once would take the whole run down (measured: 'every worker was lost' after 520 steps;
    with the longer wait the survivor trained on to the end, 135 s)."""
    pytest.importorskip("ray")
    from downpour.ps.on_ray import INBOX_WAIT_SECONDS, RESTART_SECONDS

    assert INBOX_WAIT_SECONDS >= RESTART_SECONDS + 30


def _joining_fails(monkeypatch, error: Exception) -> None:
    """connect_on_ray joining an address that answers, where ``ray.init`` raises ``error``."""
    from downpour.ps import connect_on_ray

    def init(**kwargs):
        raise error
    monkeypatch.setattr(connect_on_ray, "_reachable", lambda address, timeout: None)
    monkeypatch.setattr(connect_on_ray.ray, "init", init)


@pytest.mark.parametrize("token_file, auth_mode, hinted", [(True, None, True), (False, None, False), (True, "token", False)])
def test_a_refused_join_where_a_token_is_set_up_says_how_to_present_it(tmp_path, monkeypatch, token_file, auth_mode, hinted):
    """`ray start --head` turns token authentication on by itself where ~/.ray/auth_token exists (any local Ray
    run writes it), and a driver given an address presents no token unless RAY_AUTH_MODE=token: the documented
    `ray start --head` + `--address` failed with Ray's "Failed to connect", which names no token."""
    pytest.importorskip("ray")
    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    if token_file:
        (home / ".ray" / "auth_token").write_text("secret")
    monkeypatch.setenv("HOME", str(home))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    if auth_mode:
        monkeypatch.setenv("RAY_AUTH_MODE", auth_mode)
    _joining_fails(monkeypatch, ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6390"))
    with pytest.raises(RunError, match="could not join the Ray cluster at cluster.address='127.0.0.1:6390'") as err:
        connect_on_ray.connect("127.0.0.1:6390")
    assert ("run with RAY_AUTH_MODE=token, or start the head with RAY_AUTH_MODE=disabled" in str(err.value)) == hinted
    with pytest.raises(RunError) as err:                 # "auto" presents the token by itself: no such advice
        connect_on_ray.connect("auto")
    assert "RAY_AUTH_MODE" not in str(err.value)


def test_an_empty_address_is_refused_not_a_local_run(tmp_path, capsys):
    """`--address "$HEAD"` with HEAD unset trained on the preset's local runner without a word."""
    assert main(["train", *TINY, "--address", "", "--out", str(tmp_path / "r")]) == 2
    assert "--address is empty" in capsys.readouterr().err and not (tmp_path / "r").exists()
    # a resume's empty --address is the way back to a local Ray (as --set cluster.address= is): kept
    from downpour.cli import build_parser
    from downpour.cli_train import _overrides

    args = build_parser().parse_args(["train", "--resume", str(tmp_path / "run"), "--address", ""])
    assert ("cluster.address", "") in [tuple(o) for o in _overrides(args)]


def test_an_address_whose_host_is_unknown_says_so_not_that_the_head_is_down():
    """`--address HEAD:6379` copied from the docs is told the host is unknown, not "cannot reach ... within 10 s
    (gaierror: ...); is its head node running?": the host is no name at all, which no head started would mend."""
    pytest.importorskip("ray")
    from downpour.errors import RunError
    from downpour.ps.connect_on_ray import _reachable

    with pytest.raises(RunError) as err:
        _reachable("no-such-head.invalid:6379", 5.0)
    assert "no host named 'no-such-head.invalid' is known here" in str(err.value)
    assert "cluster.address='no-such-head.invalid:6379'" in str(err.value) and "within" not in str(err.value)


def test_a_ray_client_address_that_times_out_names_the_client_port(monkeypatch):
    """`--address ray://HEAD:PORT` with the port `ray start --head --port` set (the GCS's, not the Ray Client
    server's) names the client port, not only "ray client connection timeout" after 36 s."""
    pytest.importorskip("ray")
    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    _joining_fails(monkeypatch, ConnectionError("ray client connection timeout"))
    with pytest.raises(RunError, match="cluster.address='ray://127.0.0.1:6390': ray client connection timeout") as err:
        connect_on_ray.connect("ray://127.0.0.1:6390")
    assert "port 10001 unless" in str(err.value) and "without ray:// joins at that one" in str(err.value)


def test_a_host_lookup_that_failed_for_now_is_not_said_to_be_no_such_host(monkeypatch):
    """A name lookup that failed for the time being (EAI_AGAIN: no DNS server answered) read "no host named 'h' is
    known here ... give the head node's name or IP address": the name may be right."""
    pytest.importorskip("ray")
    import socket

    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    def lookup_failed(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    monkeypatch.setattr(socket, "create_connection", lookup_failed)
    with pytest.raises(RunError, match=r"cluster.address='head.example:6379': looking up the host 'head.example' "
                                       r"failed \(Temporary failure in name resolution\)") as err:
        connect_on_ray._reachable("head.example:6379", 5.0)
    assert "no host named" not in str(err.value)


@pytest.mark.timeout(90)
def test_an_address_where_a_web_server_answers_is_refused_in_one_line(tmp_path, capsys, web_server):
    """`--address HOST:8265` (the dashboard's port copied for the head's 6379) passed the TCP check, and ray.init
    waited over 2 minutes printing Ray's "Timed out while waiting for GCS" warnings. The folder is left as one that
    never started, as for an address nobody answers."""
    pytest.importorskip("ray")
    out = tmp_path / "r"
    assert main(["train", *TINY, "--runner", "ray", "--address", web_server, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (f"cannot join the Ray cluster at cluster.address={web_server!r}: something answers there, but it is not "
            "a Ray head") in err
    assert "the Ray dashboard, port 8265" in err and "usually 6379" in err and "Traceback" not in err
    assert main(["train", *TINY, "--runner", "simulated", "--out", str(out)]) == 0   # the same folder, taken over


# what a Ray 2.60 head's GCS answers HTTP/2's client preface with: its SETTINGS frame (measured 2026-12-06)
GCS_SETTINGS = b"\x00\x00\x18\x04\x00\x00\x00\x00\x00\x00\x04\x00@\x00\x00\x00\x05\x00@\x00"


@pytest.mark.parametrize("answer, port, problem", [
    (GCS_SETTINGS, 6379, None),
    (b"\x15\x03\x03\x00\x02\x02\x46", 6379, None),                      # a TLS alert: a head with Ray's TLS on
    (b"", 6379, None),                                                   # silence, or dropped: Ray's to judge
    (b"HTTP/1.1 400 Bad Request\r\n", 6379, "the Ray dashboard, port 8265 by default"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", 8265, "this answered 'SSH-2.0-OpenSSH_9.6', at the Ray dashboard's port 8265"),
    (GCS_SETTINGS[:4], 6379, None),                                     # a frame header cut short: Ray's to judge
    (b"\x15", 6379, None),                                              # a TLS record's first byte alone
    (b"HTTP", 6379, "this answered 'HTTP'"),                             # cut short, but no frame header begins so
    (b"SSH-2.0-OpenSSH_9.6\r\n", 22, "this answered 'SSH-2.0-OpenSSH_9.6'"),
    (b"-ERR unknown command\r\n", 6379, "this answered '-ERR unknown command'")])   # a Redis (Ray before 2.0)
def test_what_answers_at_a_head_address_tells_a_ray_head_from_another_listener(answer, port, problem):
    """A head's GCS speaks gRPC (HTTP/2): another listener's answer is refused before ray.init waits on it; an
    answer that cannot tell is left to Ray."""
    from downpour.ps.handshake import not_a_head

    said = not_a_head(answer, port)
    assert said is None if problem is None else problem in said and "not a Ray head" in said
    if said and "web server" in said:   # (only where it answered as one: an SSH banner at 8265 was said to)
        assert answer.startswith(b"HTTP/")


def test_a_head_whose_settings_frame_comes_in_two_pieces_is_not_refused():
    """A gRPC head whose first bytes arrive cut short (a proxy's or a loaded link's segments), the rest after the
    probe gives up waiting, is not refused as "not a Ray head" on the bytes it has."""
    import socket
    import threading

    pytest.importorskip("ray")
    from downpour.ps.connect_on_ray import _reachable

    server, done = socket.create_server(("127.0.0.1", 0)), threading.Event()

    def answer():
        conn, _ = server.accept()
        with conn:
            conn.sendall(GCS_SETTINGS[:4])
            done.wait(10.0)
    threading.Thread(target=answer, daemon=True).start()
    with server:
        try:
            _reachable(f"127.0.0.1:{server.getsockname()[1]}", 0.5)
        finally:
            done.set()


def test_a_ray_client_address_where_the_dashboard_answers_names_the_client_servers_port(web_server):
    """`ray://HOST:8265`: the refusal asked for "the head's port, usually 6379", which ray:// does not join."""
    pytest.importorskip("ray")
    from downpour.errors import RunError
    from downpour.ps.connect_on_ray import _reachable

    with pytest.raises(RunError, match="the Ray Client server that ray:// joins speaks gRPC") as err:
        _reachable(f"ray://{web_server}", 5.0)
    assert "Ray Client server port, 10001" in str(err.value) and "6379" not in str(err.value)


def test_a_refused_join_with_auth_disabled_says_how_to_present_a_token(monkeypatch):
    """RAY_AUTH_MODE=disabled set here and a cluster that wants a token: Ray's "Failed to connect to Ray cluster
    at ..." (after 20 s of InvalidAuthToken warnings) came with no hint, which was given only where RAY_AUTH_MODE
    was unset."""
    pytest.importorskip("ray")
    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    _joining_fails(monkeypatch, ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6390"))
    for address in ("127.0.0.1:6390", "auto"):
        with pytest.raises(RunError, match=rf"could not join the Ray cluster at cluster.address='{address}'") as err:
            connect_on_ray.connect(address)
        assert "RAY_AUTH_MODE=disabled is set here, so this driver presents no token" in str(err.value)
        assert "run with RAY_AUTH_MODE=token" in str(err.value)


def test_a_head_with_rays_tls_on_is_sent_nothing_in_the_clear(monkeypatch):
    """RAY_USE_TLS=1: a head's GCS answers the HTTP/2 preface sent in the clear with "Handshake failed with fatal
    error SSL_ERROR_SSL ... WRONG_VERSION_NUMBER" in its gcs_server.err, which Ray shows on every driver joined to the
    cluster (a local Ray 2.60 with TLS on, 2026-12-06): such a head is asked only with TLS, and only with Ray's
    certificate to present (tests/test_head_tls.py); without one, as here, it is reached, not asked."""
    import socket
    import threading

    pytest.importorskip("ray")
    from downpour.ps.connect_on_ray import _reachable

    monkeypatch.setenv("RAY_USE_TLS", "1")
    for name in ("RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY"):
        monkeypatch.delenv(name, raising=False)
    server, heard = socket.create_server(("127.0.0.1", 0)), []

    def listen():
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5.0)
            heard.append(conn.recv(64))
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    with server:
        _reachable(f"127.0.0.1:{server.getsockname()[1]}", 1.0)
        listener.join(10.0)
    assert heard == [b""]
