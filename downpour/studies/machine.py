"""The machine a study's cell ran on (its ``platform``, in the cell's ``cost`` in ``cells.jsonl``), and what a study
says when its cells ran on several.

A cell is bit for bit reproducible from its seed on one machine and library install (an ufldl-sae and an rbm-288 cell,
3 runs each, at 9824c72 and at HEAD, equal to the last digit), but not across them: MKL's float32 matrix products take
another kernel on another CPU (MKL_CBWR=COMPATIBLE on this VM: sae seed 0's lfw probe 0.817 -> 0.783, its face AUC 0.830
-> 0.893; the cat network's figures unmoved), so Q7's sae lfw probe read 0.860 on the VM of 9824c72's run, 0.840 on the
next one (docs/studies.md, Q7). Each cell's line records where it ran, so a folder resumed elsewhere says so. The record
is beside the cell's figures, not in its key: a cell cached before it (or before one of its fields) is kept, its
machine unknown. The record is :func:`downpour.train.machine.platform`'s (a run folder's environment.json holds it
too).

The platform holds the versions of the libraries a cell's training and measures compute with (torch, numpy, scipy,
scikit-learn, python); the rest of the install a run folder's environment.json records (downpour's version, the OS,
scikit-image, safetensors, pillow, ray: :func:`install`) is the cell's ``install``, beside it in the cost, not in the
platform: a platform's ``id`` is its record's hash, and cells cached before the install was recorded (2026-12-07) keep
theirs, as do new cells on their platform. :func:`installs_note` says where a study's cells ran under several installs
(a scikit-image whose photographs or lfw_subset differ, another pillow's resizing: other inputs, other figures).
"""
from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any, Iterable

from downpour.studies.same_as import runs
from downpour.train.environment import environment
from downpour.train.machine import platform


def platform_id(record: dict[str, Any]) -> str:
    """A short stable name for a platform record: the first 8 hex digits of its sorted JSON's SHA-256."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:8]


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two platform records agree on every key both hold: a cell cached before a key was recorded (``cpu_id``, recorded
    from 2026-12-05; ``simd``, ``onednn``, from 2026-12-06) is not another platform for lacking it."""
    return all(a[k] == b[k] for k in a.keys() & b.keys())


def install() -> dict[str, Any]:
    """This process's install beside its platform: environment.json's record (:func:`~downpour.train.environment.
    environment`) less the platform's keys and the commit (a cell's ``commit``, :mod:`downpour.studies.code_commit`).
    Read once a process, as the platform is: every cell records it, and reading ten packages' metadata took 25 ms."""
    return dict(_install())


@cache
def _install() -> dict[str, Any]:
    here = platform()
    return {k: v for k, v in environment().items() if k not in here and k != "commit"}


def _grouped(costs: dict[tuple[str, int], dict[str, Any]], keys: Iterable[tuple[str, int]],
             field: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records ``field`` ("platform", "install") of the runs behind the cells ``keys``, each with its ``id`` and
    number of cells, records alike (:func:`_same`) counted as one; and the same list with, last where there are any,
    ``{"id": "unknown", "cells": n}`` for the cells that recorded none (study.json's ``platforms``, ``installs``)."""
    seen: list[dict[str, Any]] = []
    unknown = 0
    for cost in runs(costs, keys):
        record = cost.get(field)
        if not isinstance(record, dict):
            unknown += 1
            continue
        match = next((p for p in seen if _same(p[field], record)), None)
        if match is None:
            seen.append({"id": platform_id(record), field: record, "cells": 1})
        else:
            match["cells"] += 1
    return seen, seen + ([{"id": "unknown", "cells": unknown}] if unknown else [])


def _differ(seen: list[dict[str, Any]], field: str) -> str:
    """"cpu, numpy differ: 1a2b3c4d: Another CPU, 0.0 (4 cells); ...": the keys of ``field`` whose values differ among
    the records ``seen``, and each record's values of them."""
    first = seen[0][field]
    differ = sorted({k for p in seen for k in p[field].keys() & first.keys() if p[field][k] != first[k]})
    each = "; ".join(f"{p['id']}: " + ", ".join(str(p[field].get(k)) for k in differ) + f" ({p['cells']} cells)"
                     for p in seen)
    return f"{', '.join(differ)} differ: {each}"


def platforms_note(costs: dict[tuple[str, int], dict[str, Any]],
                   keys: Iterable[tuple[str, int]]) -> tuple[list[dict[str, Any]], str]:
    """The platforms the cells ``keys`` ran on (``costs``: each cell's ``cost``), each with its ``id`` and number of
    cells, and last, where there are any, ``{"id": "unknown", "cells": n}`` for the cells that recorded none (cached
    before 2026-12-05; a ``same_as`` copy is its original's run, counted once on its platform, unknown where the
    original is gone: :func:`~downpour.studies.same_as.runs`); and, where the known ones are
    several, one sentence naming them and what differs between them (empty otherwise)."""
    seen, listed = _grouped(costs, keys, "platform")
    note = ""
    if len(seen) >= 2:
        note = (f"its cells ran on {len(seen)} platforms ({_differ(seen, 'platform')}); a cell's figures are "
                "reproducible from its seed on its own platform only, so seeds run on one need not match those run on "
                "another, in their last digits and, after long training, by as much as the seeds' spread "
                "(docs/studies.md, Q7)")
    return listed, note


def installs_note(costs: dict[tuple[str, int], dict[str, Any]],
                  keys: Iterable[tuple[str, int]]) -> tuple[list[dict[str, Any]], str]:
    """:func:`platforms_note` for the cells' ``install`` (:func:`install`): the installs the cells ``keys`` ran under,
    ``{"id": "unknown", "cells": n}`` last for those that recorded none (cached before 2026-12-07), and where the
    known ones are several, one sentence naming what differs between them (empty otherwise)."""
    seen, listed = _grouped(costs, keys, "install")
    note = ""
    if len(seen) >= 2:
        note = (f"its cells ran under {len(seen)} installs ({_differ(seen, 'install')}); a cell's figures are "
                "reproducible from its seed under its own install only (another package's version can read, decode or "
                "compute otherwise), so seeds run under one need not match those run under another")
    return listed, note
