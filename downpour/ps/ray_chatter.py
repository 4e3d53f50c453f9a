"""Ray's own start-up lines that say nothing about the run, kept off the user's terminal.

    quiet_start()      # before ray.init: Ray's logging drops the lines of CHATTER, every other record is kept

Each ``ray.init`` of a local Ray (a plain ``--runner ray`` run) prints two lines of Ray's between the run's first line
and its first step, unfiltered:

    ... WARNING authentication_token_setup.py:85 -- Token authentication is enabled for this Ray cluster. Set ...
    ... INFO worker.py:2038 -- Started a local Ray instance.

The first says that the Ray this process started for itself (or found here, ``--address auto``) takes a token, which
Ray's start set up on its own; the second what the run's first line said. A ``ray://`` join prints a third, whatever
the run passes: ``... INFO client_builder.py:262 -- Passing the following kwargs to ray.init()
on the server: log_to_driver`` (Ray 2.60's ``ray.init`` sets ``log_to_driver``, default None, to True before it
hands the Ray Client server every argument that differs from the default). Only records that begin with those words
(the third: that say just those words, so a join that hands the server more arguments still says which) are
dropped, on the logger that writes them: Ray's errors and its other warnings (a worker that died, a token missing or
refused, "Token authentication is disabled for this Ray cluster") still print.

    quiet_dumps(dispatcher)   # after ray.init: the raylet's state dumps it forwards are said in one line each

Ray forwards what its processes print to the driver (``log_to_driver``): a worker's own lines (``(WorkerActor
pid=...)``, the run's), and each node's raylet's stderr, ``raylet.err`` (``(raylet)``, ``(raylet, ip=...)``). When a
node dies the raylets dump their state there, ``[state-dump]`` line after line: 42 of the driver's 78 lines in a run
over 2 nodes that lost one, unfiltered. A batch of the raylet's loses its ``[state-dump]`` lines alone and
says how many in one line of its own, naming where they are kept (that node's ``raylet.err``); its other lines, and
every line of any other process, print as they come.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

__all__ = ["CHATTER", "DUMP", "WHOLE", "quiet_dumps", "quiet_start", "undumped"]

CHATTER = {   # logger -> how a record of it that says nothing about the run begins
    "ray._private.authentication.authentication_token_setup": "Token authentication is enabled for this Ray cluster",
    "ray._private.worker": "Started a local Ray instance",
    # every ray:// join: Ray's ray.init turns its own default (log_to_driver None) into True, then hands the server
    # each argument that differs from the default, and says so
    "ray.client_builder": "Passing the following kwargs to ray.init() on the server: log_to_driver",
}
WHOLE = {"ray.client_builder"}   # loggers whose CHATTER line is dropped only word for word, not as a beginning
DUMP = "[state-dump]"            # what each line of a raylet's state dump holds
PRINTER = "ray_print_logs"       # the name Ray's ray.init gives the dispatcher's handler that prints the lines


class _Unsaid(logging.Filter):
    """Drops a record whose message begins with ``start`` (is ``start``, where ``whole``): its text as logged, before
    any arguments are put in (a record whose arguments do not fit its text raised out of Ray's own logging call, where
    logging prints a "Logging error" and goes on)."""

    def __init__(self, start: str, whole: bool = False) -> None:
        super().__init__()
        self.start, self.whole = start, whole

    def filter(self, record: logging.LogRecord) -> bool:
        said = str(record.msg)
        return not (said == self.start if self.whole else said.startswith(self.start))


def quiet_start() -> None:
    """Keep :data:`CHATTER` off the terminal from now on, in this process (once: calling again adds nothing)."""
    for name, start in CHATTER.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Unsaid) and f.start == start for f in logger.filters):
            logger.addFilter(_Unsaid(start, name in WHOLE))


def undumped(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` (what Ray's log monitor forwards: ``pid``, ``ip``, ``lines``, ...) without its ``[state-dump]``
    lines where it is the raylet's, one line in their place saying how many and where they are kept; any other
    batch as it is."""
    lines = batch.get("lines") or []
    dumped = sum(DUMP in line for line in lines) if batch.get("pid") == "raylet" else 0
    if not dumped:
        return batch
    at = f" on {batch['ip']}" if batch.get("ip") else ""
    said = (f"[downpour] {dumped} {DUMP} lines of the raylet{at} left out here: they are in raylet.err in that "
            "node's Ray log folder (/tmp/ray/session_latest/logs)")
    return {**batch, "lines": [line for line in lines if DUMP not in line] + [said]}


def quiet_dumps(dispatcher: Any) -> None:
    """Have Ray's ``dispatcher`` (``ray._private.ray_logging.global_worker_stdstream_dispatcher``, after ray.init)
    print each batch :func:`undumped` (once: calling again wraps nothing; a ray:// join, which has no such handler,
    is left as it is)."""
    def wrapped(handle: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        def handler(batch: dict[str, Any]) -> None:
            handle(undumped(batch))
        handler.undumps = True    # type: ignore[attr-defined]
        return handler

    if not isinstance(getattr(dispatcher, "handlers", None), list):   # (None, or a Ray whose printer differs)
        return
    dispatcher.handlers = [(name, wrapped(handle) if name == PRINTER and not getattr(handle, "undumps", False)
                            else handle) for name, handle in dispatcher.handlers]
