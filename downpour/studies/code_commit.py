"""The commit of downpour's code a study's cell ran (its ``commit``, in the cell's ``cost`` in ``cells.jsonl``), and
what a study's page says of it beside the command that reproduces it.

A cell is bit for bit reproducible from its commit, seed and config on one platform (docs/studies.md). Without the
commit a verdict cited from a folder cannot be traced to the code that made it, and a folder resumed after a pull
mixes cells of two commits unsaid (study folders written before 2026-12-06 record none: the docs' "cells at 4bb55163
and bc9970f8" were written by hand). The commit
(:func:`downpour.train.code_commit.code_commit`) is git's, of the checkout that
holds the ``downpour`` package, with ``+changes`` where its files differ from that commit or a file of it is new, not
yet tracked and not ignored (a cell of uncommitted code, a new module's too, is not reproducible from the commit alone);
an install outside a git checkout (or in one that does not track it) records
none, said as unknown.
"""
from __future__ import annotations

from typing import Any, Iterable

from downpour._names import plural
from downpour.studies.same_as import runs


def commits(costs: dict[tuple[str, int], dict[str, Any]], keys: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    """The commits the cells ``keys`` ran at (``costs``: each cell's ``cost``), each with its number of cells, most
    cells first, and last, where there are any, ``{"commit": "unknown", "cells": n}`` for the cells that recorded none
    (cached before 2026-12-06, or run outside a git checkout); a ``same_as`` copy is its original's run, counted once
    at its commit (:func:`~downpour.studies.same_as.runs`), and unknown where the original is gone."""
    counts: dict[str, int] = {}
    for cost in runs(costs, keys):
        commit = cost.get("commit") or "unknown"
        counts[commit] = counts.get(commit, 0) + 1
    known = sorted((c for c in counts if c != "unknown"), key=lambda c: (-counts[c], c))
    return [{"commit": c, "cells": counts[c]} for c in known + (["unknown"] if "unknown" in counts else [])]


def commits_sentence(result: dict[str, Any]) -> str:
    """What the page says after "Reproduce with `...`": the commit its cells ran at, or each with its cells; empty for a
    study.json written before ``commits`` was."""
    found = result.get("commits")
    if not found:
        return ""
    changes = any(c["commit"].endswith("+changes") for c in found)
    caveat = (" (+changes: the package's files differed from that commit, or it held a file git did not track, so the "
              "commit alone does not reproduce those cells)" if changes else "")
    if len(found) == 1:
        one = found[0]["commit"]
        return ("Its cells recorded no commit of downpour's code (run outside a git checkout, cached by "
                "older code that did not record it, or copies of a cell whose line is gone)." if one == "unknown"
                else f"Its cells ran at commit {one} of downpour's code{caveat}.")
    named = {"unknown": "no recorded commit"}
    each = ", ".join(f"{named.get(c['commit'], c['commit'])} ({plural(c['cells'], 'cell')})" for c in found)
    return (f"Its cells ran at {len(found)} commits of downpour's code: {each}{caveat}; each cell is reproducible from "
            "its own commit, seed and config.")
