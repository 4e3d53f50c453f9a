"""The names of downpour's temporary folders: ``downpour-KIND-HOST-PID-RANDOM``, KIND one of ``study-NAME`` (a study's
cells' folder), ``cell`` (a cell's run) and ``plan`` (`downpour plan --check`'s run without ``--out``), HOST this
machine and pid namespace (:func:`host_mark`), PID the process that made it. A process killed by SIGKILL removes
none of its folders; the next study removes those of this host whose process is gone
(:func:`downpour.studies.scratch.sweep_left`), by these names.

On the ground floor, so that plan/ (below studies/) names its folders as studies/ does and its folders are swept
with theirs. ``downpour-plan-*`` folders made before 2026-12-07 name neither host nor process: the sweep leaves them.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
from functools import cache

# each kind of folder, with who makes it as a sentence says so (one, several)
MAKERS = {"study": ("a study", "studies"), "cell": ("a cell", "cells"), "plan": ("a plan check", "plan checks")}
# the kinds as a name holds them: a study's is "study-NAME" (NAME may hold a '-': HOST, PID and RANDOM do not)
KINDS = "|".join(f"{kind}-.+" if kind == "study" else kind for kind in MAKERS)


@cache
def host_mark() -> str:
    """This machine and its pid namespace, as 8 hex digits (no '-': the field is told apart from NAME's end): a
    digest of the host name and ``/proc/self/ns/pid`` (two containers of one host name can have a pid namespace
    each; where there is no /proc, the host name alone)."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return hashlib.sha256(f"{socket.gethostname()}\n{pid_ns}".encode()).hexdigest()[:8]


def prefix(kind: str) -> str:
    """The start of a new temporary folder's name of ``kind`` (``"cell"``, ``"plan"``, ``"study-NAME"``) for this
    process: ``downpour-KIND-HOST-PID-`` (``tempfile`` adds the random end)."""
    if not re.fullmatch(KINDS, kind):
        raise ValueError(f"temporary folder kind {kind!r}: not one of cell, plan, study-NAME")
    return f"downpour-{kind}-{host_mark()}-{os.getpid()}-"


def owner(name: str) -> int | None:
    """The process id a folder named ``name`` was made by, where :func:`prefix` named it on this host; else None
    (another host's or pid namespace's, or one named before its host was: their ids mean nothing here)."""
    m = re.fullmatch(rf"downpour-(?:{KINDS})-{host_mark()}-(\d{{1,9}})-[^-]+", name)
    return int(m.group(1)) if m else None
