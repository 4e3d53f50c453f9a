"""The install and machine a run was trained with: ``environment.json`` in its folder, and the warning of a resume or
an analysis under other package versions.

A run is bit for bit reproducible from its config and seed on one machine and install, not across installs: the
reference run (``downpour train --runner local --steps 20 --set train.log_every=5 --no-report``) wrote a
model.safetensors of md5 6fd43a75... at commit 2b189024 on 2026-12-06 and c0608b13... at that commit and at ce8e367f
on 2026-12-07, the code the same and the .venv installed afresh (pyproject.toml pins only torch < 2.14), and its
folder did not say which versions made which. ``environment.json`` says it::

    {"commit": "ce8e367f", "downpour": "0.1.0", "os": "Linux-...", "numpy": "2.4.6", "torch": "2.13.0+cpu", ...,
     "cpu": "...", "simd": "fma avx2", "blas": "...", "step": 0}

:func:`~downpour.train.machine.platform` (what a study's cell records) plus :data:`PACKAGES`, downpour's version
and commit (:func:`~downpour.train.code_commit.code_commit`) and the OS; ``step``: the step the run started (or was
resumed) from under it; ``nodes``: a Ray run's nodes, each with what its install has that the driver's has not
(:mod:`downpour.ps.node_environments`; a worker or partition restarted mid-run on another node or install adds its
own: :func:`record_nodes`); ``start_weights``: a fingerprint of the weights the run started from
(:mod:`~downpour.train.start_weights`), the first go's, which a resume keeps. A resume under another record keeps the
old one in ``earlier`` (oldest first). It is a
file of its own, not a key of model.json: model.json and the safetensors files keep their bytes, so two runs of one
seed on one install still write the same files, whatever commit string (``+changes``) or OS each records.
"""
from __future__ import annotations

import json
import logging
import platform as host
from pathlib import Path
from typing import Any

from downpour.train.code_commit import code_commit
from downpour.train.machine import platform, versions
from downpour.train.model_file import replace_text
from downpour.train.start_weights import KEY as START

log = logging.getLogger("downpour.train.environment")

FILE = "environment.json"
# the packages a run's bytes can depend on: torch's kernels; numpy and scipy (the whitening's FFTs and ZCA, the
# analysis); scikit-image (lfw_subset.npy and the photographs ship in its wheel); scikit-learn (the probes);
# safetensors (the files' bytes); pillow (decoding and resizing); ray (the cluster runner)
PACKAGES = ("python", "torch", "numpy", "scipy", "scikit-image", "scikit-learn", "safetensors", "pillow", "ray")


def environment() -> dict[str, Any]:
    """This process's record: what :func:`record_environment` writes, less ``step``."""
    return {"commit": code_commit() or "unknown", "os": host.platform(), **platform(),
            **versions(("downpour", *PACKAGES))}


def recorded(path: str | Path) -> dict[str, Any] | None:
    """The record of the run in ``path``, None where it has none (trained before environment.json was written) or
    one that is not a JSON object."""
    try:
        record = json.loads((Path(path) / FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def differences(record: dict[str, Any], now: dict[str, str]) -> list[str]:
    """``"numpy 2.3.1 (here 2.4.6)"`` for each of :data:`PACKAGES` whose version in ``record`` is not the one ``now``
    holds; a package the record lacks is not a difference."""
    return [f"{name} {record[name]} (here {now[name]})" for name in PACKAGES
            if name in record and name in now and record[name] != now[name]]


def warn_if_other(path: str | Path, doing: str, *, rewritten: bool = False) -> None:
    """One WARNING where the run in ``path`` was trained with other versions of :data:`PACKAGES` than this process's
    (``doing``: what goes on under them, "the resume trains" or "the analysis runs"), or where its record is there but
    unreadable (cut short, edited), so that the check cannot run; nothing for a run without a record.
    ``rewritten``: the caller writes the record again next (a resume, :func:`record_environment`), which that
    warning then says."""
    record = recorded(path)
    if record is None:
        _warn_if_damaged(Path(path) / FILE, doing, rewritten)
        return
    found = differences(record, versions(PACKAGES))
    if found:
        log.warning("%s was trained with other package versions than this install's: %s; %s under these, so its "
                    "floats need not match the same run on its own install (recorded in %s)",
                    path, ", ".join(found), doing, Path(path) / FILE)


def _warn_if_damaged(file: Path, doing: str, rewritten: bool) -> None:
    """One WARNING where ``file`` is there but no record: read as none, silently, a run trained under other package
    versions was analysed or resumed without a word (and a resume wrote a new record over the damaged one)."""
    try:
        json.loads(file.read_text())
        why = "not a JSON object"
    except FileNotFoundError:
        return
    except (OSError, ValueError) as err:
        why = f"{type(err).__name__}: {err}"
    then = "; it is written again, with this install's" if rewritten else ""
    log.warning("%s is not a record downpour wrote (%s): the package versions the run was trained with are unknown, "
                "so whether %s under other ones is not checked%s", file, why, doing, then)


def record_environment(path: str | Path, step: int, nodes: dict[str, dict[str, Any]] | None = None,
                       start_weights: dict[str, Any] | None = None) -> None:
    """Write environment.json at a run's start (``step`` 0) or resume (``step``: its checkpoint's): the old record is
    kept as it is where nothing but ``step`` would change, and moved into ``earlier`` where something would.
    ``nodes``: a Ray run's nodes, each with what its install has that the driver's has not
    (:mod:`downpour.ps.node_environments`); ``start_weights``: a new run's fingerprint of its starting weights
    (:func:`~downpour.train.start_weights.fingerprint`); None (a resume) keeps the old record's, the first go's."""
    now, old = environment(), recorded(path)
    if nodes is not None:
        now["nodes"] = nodes
    if start_weights is None and old is not None and START in old:
        start_weights = old[START]
    if start_weights is not None:
        now[START] = start_weights
    if old is not None:
        earlier = old.pop("earlier", [])
        if {k: v for k, v in old.items() if k != "step"} == now:
            return
        now["earlier"] = [*earlier, old] if isinstance(earlier, list) else [old]
    replace_text(Path(path) / FILE, json.dumps({**now, "step": step}, indent=1, sort_keys=True))


def record_nodes(path: str | Path, nodes: dict[str, dict[str, Any]]) -> None:
    """environment.json's ``nodes`` replaced by ``nodes``, the rest of its record as it is: a Ray run's worker or
    partition restarted mid-run on a node, or under an install, that its start did not list
    (:mod:`downpour.ps.node_environments`). Whole or not at all; a run without a record gets none. A write that
    fails (a full disk, a folder gone) is one WARNING naming the file, not an error: it comes mid-run, and a record is
    not worth the run it records (the file keeps the nodes it held)."""
    record = recorded(path)
    if record is None or record.get("nodes") == nodes:
        return
    file = Path(path) / FILE
    try:
        replace_text(file, json.dumps({**record, "nodes": nodes}, indent=1, sort_keys=True))
    except OSError as err:
        log.warning("could not rewrite %s with a restarted actor's node or install (%s): the run trains on, the "
                    "file's nodes those it held before", file, err)
