"""How the ``downpour`` command prints log records: in the same form as its own lines ("downpour: study written to
...", "downpour: error: ..."), so a run's output reads as one voice::

    downpour: reading data.path '/data/imgs' as the run does before its first step      (INFO, any downpour.* logger)
    downpour: warning: RAY_ADDRESS='HOST:PORT' is set ...                                 (WARNING and above: its level)
    ray.worker: warning: ...                                                            (another library: its logger)
    downpour.twins: debug: ...                                        (--verbose: downpour's DEBUG, every logger's name)

Not ``"%(levelname)s %(name)s: %(message)s"``, which would print "INFO downpour.twins: ..." between the
command's own "downpour: ..." lines: a module's name is the code's business, not the user's.
"""
from __future__ import annotations

import logging
from typing import TextIO

__all__ = ["CliFormatter", "configure_logging"]


class CliFormatter(logging.Formatter):
    """"downpour: [level: ]message"; ``names``: every record under its logger's name (``--verbose``)."""

    def __init__(self, names: bool = False) -> None:
        super().__init__()
        self.names = names

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)       # the message, and a traceback after it where the record has one
        ours = record.name == "downpour" or record.name.startswith("downpour.")
        who = record.name if self.names or not ours else "downpour"
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{who}: {level}{text}"


def configure_logging(verbose: bool = False, stream: TextIO | None = None, force: bool = False) -> None:
    """The root logger's handler for a command's process (stderr, or ``stream``): INFO and up in :class:`CliFormatter`'s
    form, and with ``verbose`` downpour's own DEBUG records and every logger's name (other libraries stay at INFO: PIL's
    PngImagePlugin alone wrote a debug line for every chunk of every image read). As :func:`logging.basicConfig`,
    nothing where the root logger has a handler already, unless ``force``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(CliFormatter(names=verbose))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=force)
    if verbose:     # (else downpour's logger is left as it is: a caller's level on it, e.g. pytest's caplog, holds)
        logging.getLogger("downpour").setLevel(logging.DEBUG)
