"""Code that must finish once started: SIGINT and SIGTERM wait for it.

    with signals_held():     # the optimiser's in-place update and the step count; a simulator's event
        ...
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM (Ctrl-C, a scheduler's stop) wait until the block ends, then act: code that
    must finish once started (an optimiser's in-place update and the step count) is not cut in two.

    The block's own handlers only note a signal; the ones it replaced get it at the end. (Masking the
    signals was not enough: the kernel hands a process's signal to any thread that does not mask it,
    torch's own threads included, and Python then runs the handler in the main thread all the same.)
    A no-op off the main thread, where Python cannot set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if caught:
            _deliver(caught[0], old[caught[0]])


def _deliver(signum: int, handler: Any) -> None:
    """What the handler ``signal.signal`` returned would have done with ``signum``."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)     # the default action (SIGTERM: end the process), the handler now restored
