"""A child process that ends with the process that started it, on Linux; elsewhere nothing is asked, and the
parent's own stop ends it as before.

A SIGKILLed parent (the OOM killer, ``kill -9``) runs no clean-up: its cross-fit folds trained on as orphans (the
same command run again trained the same fold beside one), and a study's cell workers ran their cells, then waited on
the pool's queue for ever, with the fork server that started them. A fold asks Linux for SIGTERM when its parent dies
(:func:`die_with_parent`, ``prctl(PR_SET_PDEATHSIG)``); a cell worker, whose parent is the fork server, cannot: the
server exits when no process holds its "alive" pipe, and each of its children holds it (to start children of its
own), so it outlived the study as long as they did. A worker watches the study itself (:func:`end_with`).
"""
from __future__ import annotations

import ctypes
import os
import select
import signal
import threading

PR_SET_PDEATHSIG = 1   # prctl(2)


def die_with_parent(parent: int) -> None:
    """Have Linux send this process SIGTERM when its ``parent`` dies (a cross-fit's fold). One gone
    before the request was made (the child re-parented already, the signal never to come) ends it at once."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:      # it died before the request was made (re-parented: to 1, or a subreaper)
        os.kill(os.getpid(), signal.SIGTERM)


def end_with(watched: int) -> None:
    """SIGTERM to this process when process ``watched`` ends (a zombie has ended), ``watched`` not its parent: a
    daemon thread waits on its pidfd (Linux 5.3 and later; elsewhere, nothing). One gone already ends it at once."""
    try:
        pidfd = os.pidfd_open(watched)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    except (OSError, AttributeError):
        return

    def wait() -> None:
        select.select([pidfd], [], [])          # readable once ``watched`` has exited
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="downpour-end-with", daemon=True).start()
