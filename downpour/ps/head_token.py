"""Whether a Ray head wants a token this driver will not present, asked before Ray is (Ray-free: grpcio's generic
call, the head's own gRPC method, no Ray import), and what to do about it.

A cluster started with token authentication (Ray >= 2.52; Ray 2.60's `ray start --head` turns it on by itself where
~/.ray/auth_token exists, and any local Ray run writes that file) refuses a driver without its token. Ray's own join
then prints a `gcs_client.cc` warning a second for about 20 s ("Failed to get cluster ID from GCS server:
Unauthenticated ...") before its error, which does not say why (`downpour train --config ufldl-sae --address
127.0.0.1:PORT` against `ray start --head --port PORT`: 20 warnings, 31.6 s in all, 2026-12-06). The head answers
the same question from here in milliseconds (26 ms measured): "UNAUTHENTICATED".

    problem = token_problem("head", 6379, 10.0)   # None: it takes this driver, or it cannot tell (Ray's to judge)
    hint = token_hint()                          # what to do where a token is the likely cause ("" otherwise)
"""
from __future__ import annotations

import os

from downpour.ps.handshake import ray_tls

__all__ = ["token_hint", "token_problem"]

# the GCS's first question from a joining driver (ray/core/generated/gcs_service_pb2_grpc.py); its request is empty
_CLUSTER_ID = "/ray.rpc.NodeInfoGcsService/GetClusterId"
_ASK = (" (run with RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN: `ray get-auth-token` on the head "
        "prints it; docs/parameter-server.md#faults)")


def _mode() -> str:
    return os.environ.get("RAY_AUTH_MODE", "").strip().lower()


def token_problem(host: str, port: int, timeout: float) -> str | None:
    """Why the head at ``host:port`` refuses this driver for want of a token, or None: asked only where the driver
    presents none (``RAY_AUTH_MODE`` is not ``token``: a token set up here but not asked for, or a wrong one, is Ray's
    to find) and Ray's TLS is off (a question in the clear would be logged as a failed handshake by the head). Any
    other answer, or none within ``timeout``, is left to Ray."""
    if _mode() == "token" or ray_tls():
        return None
    import grpc   # (Ray's own dependency; imported here only: the config checks do not pay for it)

    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(_CLUSTER_ID)(b"", timeout=timeout)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                said = "the head requires token authentication, and this driver presents no token"
                return f"{said}{token_hint() or _ASK}"
    return None


def _token_here() -> bool:
    """Whether Ray would find an authentication token here (its env variables, or the default file)."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or os.path.isfile(os.path.expanduser("~/.ray/auth_token")))


def token_hint(auto: bool = False) -> str:
    """What to do about a refused join where a token is the likely cause (or, from :func:`token_problem`, the known
    one), as this environment stands: a token set up here and ``RAY_AUTH_MODE`` unset (not where ``auto``, the
    address joined, presents it), or ``RAY_AUTH_MODE=disabled`` ("" otherwise)."""
    if not auto and "RAY_AUTH_MODE" not in os.environ and _token_here():
        # `ray start --head` turns token auth on by itself when ~/.ray/auth_token exists (any local ray.init, e.g. a
        # plain `--runner ray` run, writes it), and a driver given an explicit address never presents it unless
        # RAY_AUTH_MODE=token
        return (" (a token is set up on this machine, which a driver given an address presents only with "
                "RAY_AUTH_MODE=token, and `ray start --head` turns token authentication on by itself where "
                "~/.ray/auth_token exists: run with RAY_AUTH_MODE=token, or start the head with "
                "RAY_AUTH_MODE=disabled; docs/parameter-server.md#faults)")
    if _mode() == "disabled":   # the driver presents no token: say so
        return (" (RAY_AUTH_MODE=disabled is set here, so this driver presents no token; a cluster started "
                "with token authentication refuses such a driver: run with RAY_AUTH_MODE=token and the cluster's "
                "token (RAY_AUTH_TOKEN, or ~/.ray/auth_token); docs/parameter-server.md#faults)")
    return ""
