"""A study's cells: cached one JSON line each in ``cells.jsonl`` (so an interrupted study resumes
where it stopped), and run in parallel worker processes with progress on stderr.

The file starts with a header line (study, quick, the --set overrides, the conditions and what each
sets, the base preset: ``run.cells_header``); a study folder whose header differs is refused rather
than mixed. A last line cut short by a kill is
ignored and its cell run again. Each line records what its cell cost (wall and CPU seconds of the
process that ran it), so a study's cost is known however many times it was resumed and whatever
else the machine was doing; a cell that is another condition's run (``Study.same_run``) is
recorded under both names and costs nothing the second time.
"""
from __future__ import annotations

import importlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from downpour.config import ConfigError
from downpour.errors import Diverged, DownpourError
from downpour.parent_death import end_with
from downpour.studies.base import Cells, Condition, Study
from downpour.studies.diverged import counted_out
from downpour.studies.machine import install
from downpour.studies.same_as import runs
from downpour.studies.scratch import scratch_folder
from downpour.train.code_commit import code_commit
from downpour.train.machine import platform
from downpour.train.not_a_run import study_command

log = logging.getLogger(__name__)


def _row(line: str) -> dict[str, Any] | None:
    """One cached cell, or None for a line that is not one (cut short, damaged: a byte that was not
    UTF-8 reads as U+FFFD, missing a field, a figure that is not a number)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    ok = (isinstance(row, dict) and isinstance(row.get("condition"), str) and isinstance(row.get("seed"), int)
          and isinstance(row.get("figures"), dict) and isinstance(row.get("cost", {}), dict)
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row["figures"].values())
          and not any("\ufffd" in name for name in [row["condition"], *row["figures"]]))  # (read, or rewritten, as \ufffd)
    return row if ok else None


def cached_cells(path: Path) -> list[tuple[str, int]]:
    """The (condition, seed) of each whole cell line of a study's ``cells.jsonl`` (its header and damaged lines left
    out, as the cache reads them), read without the cache's checks of its header or its rewrite of the file: what the
    study index (:mod:`~downpour.studies.index`) counts as done."""
    lines = path.read_text(errors="replace").splitlines()[1:] if path.is_file() else []
    return list(dict.fromkeys((row["condition"], row["seed"]) for row in map(_row, lines) if row))


def _upgraded(old: dict[str, Any], header: dict[str, Any], path: Path) -> dict[str, Any]:
    """A header written before the cache recorded what defines each cell (``cells_defined``) and put the
    --set overrides in key order, or before it recorded what each cell's config resolves to (``resolved``):
    compared as if it had, with a warning (its cells are kept)."""
    if "resolved" not in old and "resolved" in header:
        up = _upgraded({**old, "resolved": header["resolved"]}, header, path)
        if up == header:
            log.warning("%s predates the record of each cell's resolved config; its cells are kept as they are", path)
            return up
        return old
    if "cells_defined" in old or "cells_defined" not in header:
        return old
    sets = [[k, v] for k, v in sorted(dict((k, v) for k, v in old.get("sets", [])).items())]
    up = {**old, "sets": sets, "cells_defined": header["cells_defined"]}
    if up != header:
        return old        # refused for what else differs
    log.warning("%s predates the record of what each condition sets; its cells are kept as they are", path)
    return up


def _same_configs(old: dict[str, Any], header: dict[str, Any], alike: dict[str, set[str]]) -> dict[str, Any]:
    """``old`` with each condition's hash that ``alike`` reads as the same config replaced by the header's."""
    was, now = old.get("resolved"), header.get("resolved") or {}
    if not isinstance(was, dict):
        return old
    return {**old, "resolved": {name: now[name] if name in now and digest in alike.get(name, ()) else digest
                                for name, digest in was.items()}}


def _whose(old: dict[str, Any], header: dict[str, Any]) -> str:
    """"the cells of `downpour study staleness --quick`: ", where the folder holds another study's or setting's cells.
    The differing header keys alone (``cells_defined, conditions, resolved, study``) would not tell a user who gave
    `study costs` the --out of `study staleness` which study the folder holds."""
    if old.get("study") == header.get("study") and old.get("quick") == header.get("quick"):
        return ""
    return f"the cells of {_command(old)}, not of {_command(header)}: "


def _sets_differ(old: Any, new: Any) -> str:
    """The --sets two headers differ in, each after "; ": "--set train.steps=3 in its cells, train.steps=4 in this
    command", "its cells ran with --set model.width=5, which this command leaves out", or the other way round."""
    def said(k: str, v: Any) -> str:
        return f"{k}={v if isinstance(v, str) else json.dumps(v)}"

    was, now = ({p[0]: p[1] for p in sets or [] if isinstance(p, list) and len(p) == 2} for sets in (old, new))
    parts = [f"--set {said(k, was[k])} in its cells, {said(k, now[k])} in this command"
             for k in sorted(was.keys() & now.keys()) if was[k] != now[k]]
    parts += [f"its cells ran with --set {said(k, was[k])}, which this command leaves out"
              for k in sorted(was.keys() - now.keys())]
    parts += [f"this command gives --set {said(k, now[k])}, which its cells ran without"
              for k in sorted(now.keys() - was.keys())]
    return "".join(f"; {part}" for part in parts)


def _command(header: dict[str, Any]) -> str:
    return f"`{study_command(header)}`"


class CellCache:
    def __init__(self, path: Path, header: dict[str, Any], alike: dict[str, set[str]] | None = None):
        """``alike``: each condition's hashes of the same config (written before a key was added, or while it was
        hashed), read as the header's."""
        self.path = path
        self.taken_over = False      # a folder of other settings with no cell: its context.json is theirs too
        self.cells: Cells = {}
        self.costs: dict[tuple[str, int], dict[str, Any]] = {}   # (condition, seed) -> seconds, cpu_seconds (or same_as)
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        if lines:                   # (an empty file holds nothing to keep: a new cache)
            try:
                old = json.loads(lines[0]) if lines else None
                if lines and not isinstance(old, dict):
                    raise json.JSONDecodeError("not a JSON object", lines[0], 0)
            except json.JSONDecodeError:
                raise ConfigError(f"{str(path)!r}: its first line, the study's settings, is damaged; restore it, or "
                                  f"delete the folder to start again") from None
            if isinstance(old, dict):
                old = _upgraded(_same_configs(old, header, alike or {}), header, path)
            if old != header and not any(_row(line) for line in lines[1:]):
                old = header       # no cell ran under those settings (a run refused before its first): nothing to keep
                self.taken_over = True
            if old != header:
                differs = sorted(k for k in header if (old or {}).get(k) != header[k])
                was = (old or {}).get("resolved") or {}
                moved = [name for name, digest in header.get("resolved", {}).items() if was.get(name, digest) != digest]
                why = (f"; the configs of {', '.join(moved)} resolve differently now (a preset's file or a default "
                       "changed since those cells ran)" if moved and differs == ["resolved"] else "")
                if "sets" in differs:           # which --set changed, not only that "sets" differ
                    why += _sets_differ((old or {}).get("sets"), header.get("sets"))
                if "measured_by" in differs:    # the measure changed under the same configs: say from what to what
                    why += (f"; its cells were measured by {(old or {}).get('measured_by', 'an unnamed earlier measure')!r}, "
                            f"this version measures {header.get('measured_by', 'without naming one')!r}, and the two are not mixed")
                # (another study's folder: every key of its header differs, the measure too, which would say "its
                # cells were measured by 'an unnamed earlier measure'" of a study that names none)
                other = (old or {}).get("study") != header.get("study")
                raise ConfigError(f"{str(path.parent)!r} holds {_whose(old or {}, header)}"
                                  + ("another study's folder" if other else
                                     f"a study run with other settings ({', '.join(differs)} differ{why})")
                                  + "; use another --out, or delete that folder to start again")
            damaged = 0
            for line in lines[1:]:
                row = _row(line)
                if row is None:                   # a line cut short by a kill, or damaged: that cell runs again
                    damaged += 1
                    continue
                self.cells[(row["condition"], row["seed"])] = row["figures"]
                self.costs[(row["condition"], row["seed"])] = row.get("cost", {})
            if damaged:
                log.warning("%s: %d damaged line(s) dropped; their cells run again", path, damaged)
            self._rewrite(header)                 # drop a cut line, so appended lines stay whole
        else:
            self._rewrite(header)

    def _rewrite(self, header: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(json.dumps(header) + "\n")
            for (name, seed), figures in self.cells.items():
                f.write(self._line(name, seed, figures, self.costs.get((name, seed), {})))
        tmp.replace(self.path)

    @staticmethod
    def _line(name: str, seed: int, figures: dict[str, float], cost: dict[str, Any]) -> str:
        return json.dumps({"condition": name, "seed": seed, "figures": figures, "cost": cost}) + "\n"

    def add(self, name: str, seed: int, figures: dict[str, float], cost: dict[str, Any] | None = None) -> None:
        self.cells[(name, seed)] = figures
        self.costs[(name, seed)] = cost or {}
        with self.path.open("a") as f:
            f.write(self._line(name, seed, figures, cost or {}))

    def total_cost(self, keys: Iterable[tuple[str, int]]) -> dict[str, float]:
        """Wall and CPU seconds of the runs behind the cells ``keys`` (the study's own seeds, not every seed the
        folder ever ran), each run once: what the cells cost to compute. A ``same_as`` copy adds nothing of its own:
        one run answers every name that trains alike (:func:`_run_all`), or the copy is taken from the cache
        (:func:`_distinct`); it is never run again. ``unknown``, only where there are any: the runs whose cost is gone
        (the original's line dropped as damaged, its re-run then copied from its copy: :mod:`.same_as`; or a cell
        cached before cells recorded their cost), which the sums leave out: they read 0 s for such a run."""
        costs = runs(self.costs, keys)
        total: dict[str, float] = {k: round(sum(float(c.get(k, 0.0)) for c in costs), 1)
                                   for k in ("seconds", "cpu_seconds")}
        unknown = sum("seconds" not in c for c in costs)
        return total | ({"unknown": unknown} if unknown else {})


# --- running cells in worker processes -------------------------------------------------------------
PRELOAD = ["torch", "downpour.train.loop", "downpour.analysis.run", "downpour.studies.trained"]  # what every cell reads
_STUDY: Study | None = None
_CONTEXT: dict[str, Any] = {}
_BY_NAME: dict[str, Condition] = {}
_FAILED: BaseException | None = None


def _init(target: str, quick: bool, sets: list[tuple[str, Any]], context: dict[str, Any],
          env: dict[str, str] | None = None, scratch: str | None = None) -> None:
    """A worker process's set-up: the parent's environment as it is now (``env``: a worker forks from a fork
    server, which holds the environment of its own start), the study's folder for temporary files
    (``scratch``), the study class by its ``module:Class`` path (so a study defined anywhere importable runs),
    one intra-op thread. A failure here is raised by the first cell, in the parent: a pool whose initializer
    raises would restart its workers for ever."""
    global _STUDY, _CONTEXT, _BY_NAME, _FAILED
    _FAILED = None                                 # (jobs=1 runs it in this process: a study's failure, not the next's)
    if env is not None and env != os.environ:
        os.environ.clear()
        os.environ.update(env)
    if scratch is not None:
        tempfile.tempdir = scratch
    try:
        import torch

        torch.set_num_threads(1)                   # one process per core
        module, cls = target.split(":")
        _STUDY = getattr(importlib.import_module(module), cls)(quick=quick, sets=sets)
        _CONTEXT = context
        _BY_NAME = {c.name: c for c in _STUDY.conditions()}
    except BaseException as err:                   # noqa: BLE001 (re-raised by _run)
        _FAILED = err


def _init_worker(study: int, *args: Any) -> None:
    """A pool worker's :func:`_init`, ended when the study's process ``study`` dies (:func:`end_with`): a SIGKILLed
    study left its workers for ever (idle ones blocked on the pool's queue, whose writing end they hold too).

    A pool's worker is daemonic, and a daemonic process may start none (multiprocessing's "daemonic processes are not
    allowed to have children"): a cell that streams its data with ``data.loader_workers`` >= 1 (data of the user's
    over 1 GiB, or ``data.pipeline = "stream"``, at ``--jobs`` 2 or more) failed at its first batch. Its loader's
    processes end with it, as a streamed run's do (DataLoader's workers watch their parent); the pool still ends the
    worker itself (its object in the study's process stays daemonic)."""
    multiprocessing.current_process().daemon = False
    end_with(study)
    _init(*args)


Result = tuple[str, int, dict[str, float], dict[str, float]]    # name, seed, figures, cost


def _run(task: tuple[str, int]) -> Result:
    if _FAILED is not None:
        raise _FAILED
    assert _STUDY is not None
    name, seed = task
    wall, cpu = time.perf_counter(), time.process_time()
    where = f"study {_STUDY.name}: cell {name!r}, seed {seed}"
    try:
        figures = _STUDY.run_cell(_BY_NAME[name], seed, _CONTEXT)
    except Diverged as err:        # counted out, in every study, not the measured studies' alone
        figures = counted_out(where, err)
    except StopIteration as err:   # escaping into map/imap it reads as "no more results": every cell after it lost, unsaid
        raise RuntimeError(f"study {_STUDY.name}: cell {name!r}, seed {seed}: StopIteration {err}".rstrip()) from err
    except Exception as err:       # which cell: the CLI's one line for the user's errors, a note under a bug's traceback
        if isinstance(err, DownpourError) and err.args and isinstance(err.args[0], str):
            err.args = (f"{where}: {err.args[0]}", *err.args[1:])
        else:
            err.add_note(where)
        raise
    return name, seed, figures, {"seconds": round(time.perf_counter() - wall, 4),
                                 "cpu_seconds": round(time.process_time() - cpu, 4), "platform": platform(),
                                 "install": install(), "commit": code_commit()}


def _distinct(study: Study, tasks: list[tuple[str, int]], cache: CellCache) -> dict[tuple[str, int], list[str]]:
    """The runs ``tasks`` need: (representative name, seed) -> every name that run answers. A task whose
    run is already cached under another name is copied into the cache here and needs none."""
    by_name = {c.name: c for c in study.conditions()}
    cached = {(study.same_run(by_name[n]), s): (n, s) for (n, s) in cache.cells if n in by_name}
    runs: dict[tuple[Any, int], list[str]] = {}
    for name, seed in tasks:
        key = (study.same_run(by_name[name]), seed)
        if key in cached:
            cache.add(name, seed, cache.cells[cached[key]], {"same_as": cached[key][0]})
        else:
            runs.setdefault(key, []).append(name)
    return {(names[0], key[1]): names for key, names in runs.items()}


def run_cells(study: Study, tasks: list[tuple[str, int]], context: dict[str, Any], cache: CellCache,
              jobs: int) -> int:
    """Run ``tasks`` (condition name, seed), each result appended to ``cache`` as it comes; returns the worker
    processes that ran them (0: none, every task cached or another's run; 1: this process)."""
    runs = _distinct(study, tasks, cache)
    if not runs:
        return 0
    progress, jobs = _Progress(study.name, len(runs)), min(jobs, len(runs))   # (an idle worker imports torch: ~0.3 GB)
    # every temporary folder of the cells (their runs: studies/trained.py) under one of the study's own, which
    # is removed as the cells end however they end: a worker killed mid-cell (Ctrl-C, a stop, another cell's failure:
    # the pool is terminated) removed nothing, and each left its run, up to 6.6 MB; a study SIGKILLed, the next removes
    scratch = scratch_folder(study.name)
    args = (f"{type(study).__module__}:{type(study).__qualname__}", study.quick, study.sets, context, dict(os.environ),
            scratch)
    try:
        _run_all(runs, args, cache, progress, jobs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return jobs


def _run_all(runs: dict[tuple[str, int], list[str]], args: tuple[Any, ...], cache: CellCache, progress: "_Progress",
             jobs: int) -> None:
    """Each run in ``runs`` in this process (jobs 1) or in ``jobs`` worker processes (``args``: :func:`_init`'s)."""

    def record(results: Iterable[Result]) -> None:
        for name, seed, figures, cost in results:
            first, *others = runs[(name, seed)]
            cache.add(first, seed, figures, cost)
            for other in others:
                cache.add(other, seed, figures, {"same_as": first})
            progress.tick()

    if jobs <= 1:
        before, environ = tempfile.tempdir, dict(os.environ)
        try:
            _init(*args)
            record(map(_run, runs))
        finally:
            # what the cells set goes with them, as it goes with a worker: torch's first optimiser step sets
            # TORCHINDUCTOR_CACHE_DIR to a folder in the temporary one, here the study's, and every process started
            # after it (a test's subprocess, the next study's workers) made that folder again, the study's with it,
            # once the study had removed it (one a test run, named by its process's id, would never be swept)
            tempfile.tempdir = before
            for key in os.environ.keys() - environ.keys():
                del os.environ[key]
            os.environ.update(environ)
        return
    # not fork: a forked child of a process that has started torch's thread pools can hang. A fork server is a
    # fresh interpreter that only imports (PRELOAD and the study's module, once per process that runs studies,
    # and it stays up until that process ends); each worker forks from it instead of importing torch, scikit-learn
    # and the study again (spawn: 3-6 s of CPU per worker, per study)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([*PRELOAD, args[0].split(":")[0]])
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(os.getpid(), *args)) as pool:
        record(pool.imap_unordered(_run, list(runs), chunksize=max(1, min(16, len(runs) // (8 * jobs)))))


def default_jobs() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


class _Progress:
    """One line on stderr every ~10 s (and at the end): runs done (conditions that make the same run share
    one: fewer than the cells to run), rate, time left."""

    def __init__(self, name: str, total: int):
        self.name, self.total, self.done = name, total, 0
        self.start = self.last = time.perf_counter()

    def tick(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last < 10 and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        print(f"downpour study {self.name}: {self.done}/{self.total} runs, {1 / rate:.2f} s each, "
              f"~{left / 60:.1f} min left", file=sys.stderr, flush=True)
