"""SIGTERM as Ctrl-C, and code that must finish once started: SIGINT and SIGTERM wait for it.

    with sigterm_as_interrupt() as received:   # the CLI: a scheduler's stop checkpoints like Ctrl-C
        ...
    with signals_held():     # the optimiser's in-place update and the step count; a simulator's event
        ...
    with stop_record():      # a stopped run's checkpoint and records: a second Ctrl-C waits, a third leaves
        ...
        with signals_let_through():   # inside it, a wait a stop may cut (a question to a host that may not answer)
            ...
    quit_at_next_stop(130)   # the CLI, all saved and about to say "interrupted": a further stop ends the process
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from downpour.errors import Terminated


# the held blocks open, outermost first: each one's signals noted and the handlers it replaced
_open: list[tuple[list[int], dict[int, Any]]] = []

# said on stderr when a stop comes while a stopped run writes what it did (:func:`stop_record`), naming what it writes
WAITING = ("downpour: stopping: saving {saving} first; "
           "press Ctrl-C again to quit at once, unsaved (the last checkpoint written stays whole)")


@contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM raised as :class:`Terminated` in the block; yields the SIGTERMs received, which tell the
    caller's ``except KeyboardInterrupt`` a stop from a Ctrl-C even where Ray re-raised the interrupt as
    a bare KeyboardInterrupt (a SIGTERM while the driver waited for its actors to start). At its end the handler
    before it is put back, unless the block set another (:func:`quit_at_next_stop`: that one stays). A SIGTERM that
    comes while the code that opened the block handles a stop (the CLI's ``except KeyboardInterrupt``, its exit not
    armed yet) waits for the block's end and acts then, through the handler in place (the exit's), instead of
    raising there, a traceback (one more acts at once). A no-op off the main thread, where Python cannot set
    handlers."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    opener = _opener()
    late: list[int] = []

    def terminate(signum: int, frame: object) -> None:
        received.append(signum)
        if frame is not None and not late and _stop_handled_by(opener):   # (frame None: one deliver() hands on)
            late.append(signum)
            return
        raise Terminated(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield received
    finally:
        # a handler set in the block stays: the command's exit (:func:`quit_at_next_stop`); put back to SIG_DFL until
        # the CLI set it again, a SIGTERM in between would end the process unsaid
        if signal.getsignal(signal.SIGTERM) is terminate:
            signal.signal(signal.SIGTERM, before)
        if late:
            deliver(late[0], signal.getsignal(signal.SIGTERM))


def _opener() -> Any:
    """The frame whose ``with`` opened the :func:`sigterm_as_interrupt` block calling this: the first outside it and
    contextlib (its ``__enter__``, an ``ExitStack``'s ``enter_context``). A tracer (coverage, a debugger) adds no frame.
    """
    frame = sys._getframe(2)      # (1: sigterm_as_interrupt's generator)
    while frame is not None and frame.f_code.co_filename == contextlib.__file__:
        frame = frame.f_back
    return frame


def _stop_handled_by(opener: Any) -> bool:
    """Whether the stop being handled (a KeyboardInterrupt in an ``except`` or ``finally``) has reached ``opener`` or a
    function it called directly (the CLI's ``_run``): the head of its traceback is the frame handling it. A stop
    handled deeper (a runner saving its checkpoint) is not: a further SIGTERM there acts at once."""
    stop = sys.exc_info()[1]
    where = stop.__traceback__.tb_frame if isinstance(stop, KeyboardInterrupt) and stop.__traceback__ else None
    return where is not None and opener in (where, where.f_back)


def quit_at_next_stop(code: int) -> None:
    """The process's exit once a stopped command said so (``downpour: interrupted``): what it had to save is saved
    (:func:`stop_record`), and the rest (threads joined, the ``atexit`` hooks: Ray's shutdown, torch's) may take a
    while; a Ctrl-C or SIGTERM then ends the process at once with ``code``, said in one line, instead of raising
    into whichever hook runs ("Exception ignored in atexit callback ... KeyboardInterrupt" and its traceback). A no-op
    off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return

    def leave(signum: int, frame: object) -> None:
        _say("downpour: quit at once, its exit cut short (what was saved stays)")
        try:
            sys.stdout.flush()
        except (RuntimeError, OSError, ValueError):
            pass
        os._exit(code)

    for s in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(s) != signal.SIG_IGN:
            signal.signal(s, leave)


@contextmanager
def stop_record(saving: str = "the run's checkpoint and stop record") -> Iterator[None]:
    """Around what a stopped run writes on its way out (its last checkpoint, data.json, cluster.json: ``saving``, as
    the line names it): a stop that comes meanwhile (an impatient second Ctrl-C) waits for the block's end, said in one
    line (:data:`WAITING`, naming what this runner writes: a lost shard's stop writes no checkpoint and
    Sandblaster's no stop record), and acts then; one more acts at once, so a
    write that hangs (a stalled file system) never keeps the user in (SIGKILL always ends it too). Every file written
    there is replaced whole (a temporary file renamed), so a cut one keeps the one before. A second Ctrl-C that cut the
    record would lose the stop's checkpoint and data.json."""
    with signals_held(waiting=WAITING.format(saving=saving)):
        yield


@contextmanager
def signals_held(waiting: str | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM (Ctrl-C, a scheduler's stop) wait until the block ends, then act: code that
    must finish once started (an optimiser's in-place update and the step count) is not cut in two.

    The block's own handlers only note a signal; the ones it replaced get it at the end. (Masking the
    signals was not enough: the kernel hands a process's signal to any thread that does not mask it,
    torch's own threads included, and Python then runs the handler in the main thread all the same.)
    ``waiting`` (:func:`stop_record`): the first signal is said to wait (that line, on stderr), a second acts at
    once. A no-op off the main thread, where Python cannot set handlers, and inside another held block, whose
    handlers are those that act (a stop in the inner block waited for the outer's end all the same)."""
    if threading.current_thread() is not threading.main_thread() or _holding():
        yield
        return
    caught: list[int] = []

    def note(signum: int, frame: object) -> None:
        caught.append(signum)
        if waiting is None:
            return
        if len(caught) > 1:     # the user insists: acted on now, not again at the block's end
            caught.clear()
            signal.signal(signum, old[signum])      # (SIG_DFL's default action is raised with it in place)
            deliver(signum, old[signum])
        else:
            _say(waiting)

    # a signal the process ignores stays ignored: held, it was noted first and delivered to its "ignore" in place
    # of a SIGTERM that came after it (a cross-fit's fold, which ignores the terminal's SIGINT, trained on)
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]
    old: dict[int, Any] = {}
    _noting.append(note)
    _open.append((caught, old))
    try:
        for s in held:     # (in the try: a stop that acts at once as they are set still puts those set back)
            old[s] = signal.signal(s, note)
        yield
    finally:
        _open.pop()
        _noting.pop()
        _put_back(old)
        if caught:
            deliver(caught[0], old[caught[0]])


@contextmanager
def signals_let_through() -> Iterator[None]:
    """Inside :func:`signals_held`: a wait that may be long, which a stop may cut (the head check of a lost worker's
    restart, up to 10 s on a host that drops connections unanswered, which a Ctrl-C need not wait for). The
    held block's signals act here as they would outside it, one it noted before at once; at the end they are held
    again. (A stop raised here leaves the held block with it: only a wait whose cut leaves nothing half done belongs
    here.) A no-op outside a held block and off the main thread."""
    if threading.current_thread() is not threading.main_thread() or not _open:
        yield
        return
    old = _open[0][1]      # the outermost block's: what a signal would do outside them all
    noting = {s: signal.signal(s, handler) for s, handler in old.items()}
    try:
        noted = [s for caught, _ in _open for s in caught]
        for caught, _ in _open:
            caught.clear()       # (acted on here: not again at the held blocks' end)
        if noted:
            deliver(noted[0], old[noted[0]])
        yield
    finally:
        for s, handler in noting.items():
            signal.signal(s, handler)


# the noting handlers of the held blocks open, outermost first
_noting: list[Any] = []


def _holding() -> bool:
    """Whether a held block's handler is the one in place (inside one, and not in a :func:`signals_let_through`)."""
    return any(signal.getsignal(s) in _noting for s in (signal.SIGINT, signal.SIGTERM))


def _put_back(handlers: dict[int, Any]) -> None:
    """Each of ``handlers`` in place again. A stop that one put back raises at once (a Ctrl-C that comes then) puts
    the rest back before it goes on: else the held block's noting handler stays on SIGTERM, every SIGTERM after it
    noted into a block long gone (the process not stopped by one)."""
    try:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    except BaseException:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        raise


def _say(line: str) -> None:
    """``line`` on stderr from a signal handler: a print it interrupts (a log line) makes the stream refuse a
    second writer, and then it is left out rather than raised into the code the block protects."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (RuntimeError, OSError, ValueError):
        pass


def deliver(signum: int, handler: Any) -> None:
    """What the handler ``signal.signal`` returned would have done with ``signum``."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)     # the default action (SIGTERM: end the process), the handler now restored
