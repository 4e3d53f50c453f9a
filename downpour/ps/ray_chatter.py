"""Ray's own start-up lines that say nothing about the run, kept off the user's terminal.

    quiet_start()      # before ray.init: Ray's logging drops the lines of CHATTER, every other record is kept

Each ``ray.init`` of a local Ray (a plain ``--runner ray`` run) printed two lines of Ray's between the run's first line
and its first step (until 2026-12-06):

    ... WARNING authentication_token_setup.py:85 -- Token authentication is enabled for this Ray cluster. Set ...
    ... INFO worker.py:2038 -- Started a local Ray instance.

The first says that the Ray this process started for itself (or found here, ``--address auto``) takes a token, which
Ray's start set up on its own; the second what the run's first line said. A ``ray://`` join printed a third (until
2026-12-06), whatever the run passes: ``... INFO client_builder.py:262 -- Passing the following kwargs to ray.init()
on the server: log_to_driver`` (Ray 2.60's ``ray.init`` sets ``log_to_driver``, default None, to True before it
hands the Ray Client server every argument that differs from the default). Only records that begin with those words
(the third: that say just those words, so a join that hands the server more arguments still says which) are
dropped, on the logger that writes them: Ray's errors and its other warnings (a worker that died, a token missing or
refused, "Token authentication is disabled for this Ray cluster") still print.
"""
from __future__ import annotations

import logging

__all__ = ["CHATTER", "WHOLE", "quiet_start"]

CHATTER = {   # logger -> how a record of it that says nothing about the run begins
    "ray._private.authentication.authentication_token_setup": "Token authentication is enabled for this Ray cluster",
    "ray._private.worker": "Started a local Ray instance",
    # every ray:// join: Ray's ray.init turns its own default (log_to_driver None) into True, then hands the server
    # each argument that differs from the default, and says so
    "ray.client_builder": "Passing the following kwargs to ray.init() on the server: log_to_driver",
}
WHOLE = {"ray.client_builder"}   # loggers whose CHATTER line is dropped only word for word, not as a beginning


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
