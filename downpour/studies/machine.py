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
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from downpour.studies.same_as import runs


def platform_id(record: dict[str, Any]) -> str:
    """A short stable name for a platform record: the first 8 hex digits of its sorted JSON's SHA-256."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:8]


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two platform records agree on every key both hold: a cell cached before a key was recorded (``cpu_id``, since
    2026-12-05; ``simd``, ``onednn``, since 2026-12-06) is not another platform for lacking it."""
    return all(a[k] == b[k] for k in a.keys() & b.keys())


def platforms_note(costs: dict[tuple[str, int], dict[str, Any]],
                   keys: Iterable[tuple[str, int]]) -> tuple[list[dict[str, Any]], str]:
    """The platforms the cells ``keys`` ran on (``costs``: each cell's ``cost``), each with its ``id`` and number of
    cells, and last, where there are any, ``{"id": "unknown", "cells": n}`` for the cells that recorded none (cached
    before 2026-12-05; a ``same_as`` copy is its original's run, counted once on its platform, unknown where the
    original is gone: :func:`~downpour.studies.same_as.runs`); and, where the known ones are
    several, one sentence naming them and what differs between them (empty otherwise)."""
    seen: list[dict[str, Any]] = []
    unknown = 0
    for cost in runs(costs, keys):
        record = cost.get("platform")
        if not isinstance(record, dict):
            unknown += 1
            continue
        match = next((p for p in seen if _same(p["platform"], record)), None)
        if match is None:
            seen.append({"id": platform_id(record), "platform": record, "cells": 1})
        else:
            match["cells"] += 1
    note = ""
    if len(seen) >= 2:
        differ = sorted({k for p in seen for k in p["platform"].keys() & seen[0]["platform"].keys()
                         if p["platform"][k] != seen[0]["platform"][k]})
        each = "; ".join(f"{p['id']}: " + ", ".join(str(p["platform"].get(k)) for k in differ) + f" ({p['cells']} cells)"
                         for p in seen)
        note = (f"its cells ran on {len(seen)} platforms ({', '.join(differ)} differ: {each}); a cell's figures are "
                "reproducible from its seed on its own platform only, so seeds run on one need not match those run on "
                "another, in their last digits and, after long training, by as much as the seeds' spread "
                "(docs/studies.md, Q7)")
    return seen + ([{"id": "unknown", "cells": unknown}] if unknown else []), note
