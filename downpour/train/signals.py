"""SIGTERM as Ctrl-C, and code that must finish once started: SIGINT and SIGTERM wait for it.

    with sigterm_as_interrupt() as received:   # the CLI: a scheduler's stop checkpoints like Ctrl-C
        ...
    with signals_held():     # the optimiser's in-place update and the step count; a simulator's event
        ...
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, SLURM, ``docker stop``, ``kill``) raised as an interrupt, so a run stopped that way
    checkpoints what it has done exactly as on Ctrl-C, instead of dying with nothing saved since its start."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM raised as :class:`Terminated` in the block; yields the SIGTERMs received, which tell the
    caller's ``except KeyboardInterrupt`` a stop from a Ctrl-C even where Ray re-raised the interrupt as
    a bare KeyboardInterrupt (a SIGTERM while the driver waited for its actors to start). A no-op off the
    main thread, where Python cannot set handlers."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def terminate(signum: int, frame: object) -> None:
        received.append(signum)
        raise Terminated(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, before)


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
    # a signal the process ignores stays ignored: held, it was noted first and delivered to its "ignore" in place
    # of a SIGTERM that came after it (a cross-fit's fold, which ignores the terminal's SIGINT, trained on)
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if caught:
            deliver(caught[0], old[caught[0]])


def deliver(signum: int, handler: Any) -> None:
    """What the handler ``signal.signal`` returned would have done with ``signum``."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)     # the default action (SIGTERM: end the process), the handler now restored
