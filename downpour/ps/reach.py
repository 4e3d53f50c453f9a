"""Whether a Ray head answers at ``cluster.address``, asked before Ray is (Ray-free: sockets only), so that the run's
join and ``downpour train --dry-run`` refuse the same addresses in the same one line: a dry run that never asked
would pass ``--address 127.0.0.1:PORT`` where nobody listens ("config checked"), and the run then refuse it. And
whether a node's raylet answers, which a replacement's placement asks of the node its lost actor was on.

    reachable("head:6379", CONNECT_TIMEOUT_S)   # RunError: "cannot reach the Ray cluster at cluster.address=..."
    answers_at("10.0.0.2", 41234, RAYLET_TIMEOUT_S)   # False: nothing accepts a connection there within the time
"""
from __future__ import annotations

import socket
import time

from downpour.errors import RunError
from downpour.ps.address import address_problem, host_port
from downpour.ps.handshake import head_problem
from downpour.ps.head_token import token_problem

__all__ = ["CONNECT_TIMEOUT_S", "RAYLET_TIMEOUT_S", "answers_at", "head_question", "reachable"]

CONNECT_TIMEOUT_S = 10.0
# a live raylet accepts at once (a LAN's round trip); a crashed node's port refuses at once, or, its machine gone,
# nothing answers: a replacement's start waits this long at most for each node it asks about
RAYLET_TIMEOUT_S = 2.0
_NO_SUCH_HOST = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)}


def reachable(address: str, timeout: float) -> None:
    """Raise RunError for an address that is no Ray address (Ray's parser prints a traceback), unless
    ``host:port`` (``ray://host:port`` too) accepts a TCP connection, and where what answers there is no Ray head or
    says nothing (:func:`downpour.ps.handshake.head_problem`; asked with TLS where Ray's TLS is on): ``ray.init``
    itself waits minutes on an address nobody answers, and on one where the dashboard does. A head
    that wants a token this driver will not present is refused too (:func:`downpour.ps.head_token.token_problem`;
    Ray's join says so after 20 s of warnings, and not why). The three questions share the one ``timeout``: with
    one each, a listener that accepts and says nothing would cost the handshake's 10 s and the token question's
    10 s, then Ray's own wait."""
    parts = host_port(address)
    if parts is None:
        return                   # forms Ray resolves itself
    if problem := address_problem(address):   # Ray's own parser printed a traceback
        raise RunError(problem)
    scheme, host, port = parts
    deadline = time.monotonic() + timeout
    try:
        problem = head_question(host, int(port), deadline, client=scheme == "ray")
    except socket.gaierror as err:
        # no such host (the docs' HEAD:6379, copied as it is) is not a head that is down; a lookup that failed for now
        # (no name server answered) is said as such
        if err.errno not in _NO_SUCH_HOST:
            raise RunError(f"cannot reach the Ray cluster at cluster.address={address!r}: looking up the host "
                           f"{host!r} failed ({err.strerror}); is this machine's name service reachable?") from None
        raise RunError(f"cannot reach the Ray cluster at cluster.address={address!r}: no host named {host!r} is known "
                       f"here ({err.strerror}); give the head node's name or IP address, as `ray start --head` "
                       "printed it (`ray start --address='IP:PORT'`)") from None
    except OSError as err:
        raise RunError(f"cannot reach the Ray cluster at cluster.address={address!r} within {timeout:g} s "
                       f"({type(err).__name__}: {err}); is its head node running (`ray start --head`)?") from None
    if not problem and scheme != "ray":   # (a Ray Client server asks no token of its own)
        problem = token_problem(host, int(port), _left(deadline))
    if problem:
        raise RunError(f"cannot join the Ray cluster at cluster.address={address!r}: {problem}")


def head_question(host: str, port: int, deadline: float, client: bool = False) -> str | None:
    """Why what listens at ``host:port`` is no Ray head (:func:`downpour.ps.handshake.head_problem`: one that says
    nothing too; asked with TLS where Ray's TLS is on), or None: the connection and its answer both by ``deadline``
    (``time.monotonic()``'s). OSError where no connection opens. ``client``: the address is ``ray://``. Asked before a
    join (:func:`reachable`) and of a joined head (``connect_on_ray.head_answers``)."""
    with socket.create_connection((host, port), timeout=_left(deadline)) as sock:
        return head_problem(sock, port, _left(deadline), client=client, host=host)


def answers_at(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` seconds (a node's raylet, at the
    ``NodeManagerAddress`` and ``NodeManagerPort`` that ``ray.nodes()`` lists)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 1e-3)
