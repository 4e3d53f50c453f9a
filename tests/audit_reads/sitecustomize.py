"""Test-only: log every file a Python process opens under one folder, with the process id.

Active when DOWNPOUR_READ_ROOT and DOWNPOUR_READ_LOG are set. A test puts this folder on
PYTHONPATH before a local Ray starts, so every Ray worker process (and the DataLoader processes
they fork, which inherit the hook) runs it at start-up; the test process itself calls
:func:`install`. The hook sits on Python's ``open`` audit event, below PIL, NumPy and our reader,
so a read counts wherever in the code it happens; it knows nothing of downpour.
"""
import os
import sys

_installed = False


def _hook(event, args):
    if event != "open" or not args or isinstance(args[0], int):
        return
    root, log = os.environ.get("DOWNPOUR_READ_ROOT"), os.environ.get("DOWNPOUR_READ_LOG")
    if not root or not log:
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    if path.startswith(root + os.sep):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)   # one write per line: atomic
        try:
            os.write(fd, f"{os.getpid()}\t{path}\n".encode())
        finally:
            os.close(fd)


def install():
    global _installed
    if not _installed:
        sys.addaudithook(_hook)   # (audit hooks cannot be removed: it is inert once the variables are unset)
        _installed = True


install()
