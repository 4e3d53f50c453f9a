"""A head started with token authentication refuses a driver that presents no token: the join (and its --dry-run) asks
the head's own gRPC method first and refuses in one line, with what to do. Ray's join alone prints a
`gcs_client.cc` warning a second for about 20 s ("Failed to get cluster ID from GCS server: Unauthenticated") before
its error, which does not say why where no token is set up here. A grpcio server stands in for the head's GCS."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from downpour.cli import main

grpc = pytest.importorskip("grpc")
TINY = ["train", "--config", "ufldl-sae", "--steps", "4", "--set", "train.tensorboard=false", "--dry-run"]


@pytest.fixture
def head(request, monkeypatch):
    """HOST:PORT of a stand-in GCS whose GetClusterId answers as a head with token authentication on (param True)
    or off; this driver's environment as a user's shell: no RAY_AUTH_MODE, no token, Ray's TLS off."""
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_USE_TLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")            # (no ~/.ray/auth_token)
    asked = []

    def cluster_id(request_bytes, context):
        asked.append(1)
        if request.param:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken: Authentication token is missing")
        return b""
    handler = grpc.method_handlers_generic_handler("ray.rpc.NodeInfoGcsService", {
        "GetClusterId": grpc.unary_unary_rpc_method_handler(cluster_id)})
    server = grpc.server(ThreadPoolExecutor(1), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", asked
    server.stop(None)


@pytest.mark.parametrize("head", [True], indirect=True)
def test_a_head_that_wants_a_token_is_refused_in_one_line_saying_how_to_present_it(capsys, head, monkeypatch):
    address, asked = head
    assert main([*TINY, "--address", address]) == 2
    err = capsys.readouterr().err
    assert (f"cannot join the Ray cluster at cluster.address={address!r}: the head requires token authentication, and "
            "this driver presents no token (run with RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN") in err
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")      # said as such
    assert main([*TINY, "--address", address]) == 2
    assert "RAY_AUTH_MODE=disabled is set here, so this driver presents no token" in capsys.readouterr().err
    monkeypatch.setenv("RAY_AUTH_MODE", "token")         # it presents one: whether it is right is Ray's to find
    assert main([*TINY, "--address", address]) == 0 and len(asked) == 2


@pytest.mark.parametrize("head", [False], indirect=True)
def test_a_head_without_token_authentication_is_not_refused(capsys, head):
    address, asked = head
    assert main([*TINY, "--address", address]) == 0
    assert f"a Ray head answers at cluster.address={address!r}" in capsys.readouterr().err and asked == [1]
