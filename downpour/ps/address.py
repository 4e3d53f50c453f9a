"""The forms of ``cluster.address`` (Ray-free, so a config check reads it before the run's folder exists and
``--dry-run`` refuses what the run would: ``--address foo`` fails the dry run, not Ray's start after the run
folder is made).

    problem = address_problem("foo")      # "cluster.address='foo' is not a Ray address: ..." (None: a form Ray takes)
    said = env_address_note("10.0.0.5:6379", 8)   # what a run without --address says of a RAY_ADDRESS set
"""
from __future__ import annotations

from downpour._names import plural

__all__ = ["address_problem", "env_address_note", "host_port"]


def host_port(address: str) -> tuple[str, str, str] | None:
    """(scheme, host, port) of an address to reach over TCP; None for forms Ray resolves itself (auto, local,
    a client module's scheme such as anyscale://, ray://HOST with the client's default port)."""
    scheme, sep, target = address.rpartition("://")
    if address in ("auto", "local") or (sep and scheme.isidentifier() and scheme not in ("ray", "http", "https")):
        return None
    host, _, port = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")     # an IPv6 head: [::1]:6379
    if scheme == "ray" and not port.isdigit() and target:
        return None
    return scheme, host, port


def address_problem(address: str) -> str | None:
    """Why ``address`` is no Ray address (Ray's own parser printed a traceback), or None."""
    parts = host_port(address)
    if parts is None:
        return None
    scheme, host, port = parts
    if scheme not in ("", "ray") or not host or not port.isdigit() or not 0 < int(port) < 65536:   # (head:70000 passed)
        web = (" (http is the dashboard's or job submission's; a driver joins the head's port, 6379)"
               if scheme.startswith("http") else "")
        if not web and host and port.isdigit():   # (a port past 65535: said, not a bare form error)
            web = f" (its port, {int(port)}, is outside 1-65535)"
        return f"cluster.address={address!r} is not a Ray address: HOST:PORT, ray://HOST:PORT or auto (empty: a local Ray){web}"
    return None


def env_address_note(env: str, cores: int) -> str:
    """What a run without ``cluster.address`` says of a ``RAY_ADDRESS`` set to ``env`` (Ray's own default address;
    `ray job submit` sets it to the cluster's head for its entrypoint), which it does not follow: it starts a local
    Ray of this machine's ``cores``. An http(s) address (the dashboard's, which the `ray job` commands read, and which
    Ray's job docs have users export) is no driver's: ``--address auto`` hands it to Ray, which refuses it ("Invalid
    Ray address ... set RAY_ADDRESS to the GCS address"), so the note offers ``--address auto`` only
    for an address that is not http(s)."""
    start = (f"RAY_ADDRESS={env!r} is set here, but a run joins a Ray cluster only where --address (cluster.address) "
             f"says: this one starts a local Ray of this machine's {plural(cores, 'core')}")
    if env.lower().startswith(("http://", "https://")):
        return (f"{start}; RAY_ADDRESS names a dashboard (what `ray job` commands read), where no driver joins: to run "
                "on that cluster, give --address HEAD:PORT, the head's port (usually 6379) as `ray start --head` "
                "printed it")
    return f"{start}; --address auto joins the cluster RAY_ADDRESS names"
