"""``downpour study NAME``: run (or resume) a study in a folder and write what it found.

    path = run_study("staleness", "studies/staleness", quick=True)

The folder gets ``cells.jsonl`` (the cache, one line per cell), ``context.json`` (the study's
calibration, if any), ``study.json`` (``study``, ``question``, ``command``, ``seeds``, ``cells``:
one row per condition with its parameters and every figure with its 95% interval, and ``tests``: each
comparison the verdict reads with its reading, ``p`` and Holm's ``p_holm`` over the study; ``verdict``,
whose last paragraph says which readings hold under Holm's correction),
``figures/*.png`` and ``study.html``. ``seconds`` is this invocation's wall time, ``cells_run`` the cells it
ran and ``jobs`` the processes that ran them (1: this one; 0: none ran); ``cells_cost`` the wall and CPU
seconds its cells took over every invocation (a resumed study counts them all once; ``unknown``, where any, the
runs with no cost recorded); ``platforms`` the machines and
library installs its cells ran on (each with its number of cells and its short ``id``,
and ``{"id": "unknown", ...}`` for cells cached before they recorded one), and ``platforms_note`` the sentence that
says, on stderr and in study.html, that its cells ran on several (empty where they ran on one), since a cell
reproduces bit for bit from its seed on its own platform only; ``installs`` and ``installs_note`` the same of the rest
of their install (downpour's version, the OS, scikit-image, safetensors, pillow, ray:
:func:`~downpour.studies.machine.install`); ``written``, when (UTC, to the minute). After its pages, the index of the
folder's parent is written again (``index.html``, ``index.md``: :mod:`~downpour.studies.index`).
"""
from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from downpour._names import plural
from downpour.cli_flags import check_sets
from downpour.config import ConfigError, FlagValue, Override, parse_override
from downpour.objectives import make_term
from downpour.preflight import check_run_config
from downpour.studies import STUDIES, study_class
from downpour.studies.base import Cells
from downpour.studies.cells import CellCache, default_jobs, run_cells
from downpour.studies.cell_hash import digest, digests
from downpour.studies.code_commit import commits
from downpour.studies.diverged import summarised
from downpour.studies.compare import VERSIONS_APART, FigureMissing, versions_apart
from downpour.studies.data_note import study_data
from downpour.studies.headline import headline
from downpour.studies.html import write_html
from downpour.studies.index import STUDY_FILES, WRITTEN, refresh_index
from downpour.studies.markdown import write_markdown
from downpour.studies.machine import installs_note, platforms_note
from downpour.studies.holm import family_paragraph, holm
from downpour.studies.stats import DIVERGED, nothing_trained, within_range
from downpour.train.folders import RunExistsError, folder_to_write, make_folder
from downpour.train.model_file import replace_text



def command_line(name: str, quick: bool, seeds: int, sets: list[Override], out: str) -> str:
    """The command that reproduces the study (and resumes it, in the same folder)."""
    parts = ["downpour", "study", name] + (["--quick"] if quick else []) + ["--seeds", str(seeds), "--out", out]
    for item in sets:
        parts += ["--set", item if isinstance(item, str) else f"{item[0]}={item[1]}"]
    return shlex.join(parts)


def run_study(name: str, out: str | Path, quick: bool = False, seeds: int | None = None,
              sets: list[Override] | None = None, jobs: int | None = None) -> Path:
    """Run the cells of study ``name`` not yet in ``out``, then write study.json, figures and study.html."""
    cls = study_class(name)
    sets = list(sets or [])
    study = cls(quick=quick, sets=[_pair(s) for s in sets])
    conditions = study.conditions()
    names = [c.name for c in conditions]
    if len(set(names)) != len(names):
        raise AssertionError(f"study {name}: condition names repeat: {names}")
    _check_sets(study, conditions)
    n = seeds if seeds is not None else (cls.seeds_quick if quick else cls.seeds_full)
    if n < 2:   # a paired interval needs two seeds: with one, every interval is infinite and the figures fail
        raise ConfigError(f"--seeds must be >= 2 (every comparison is paired over seeds), got {n}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be >= 1 (or left out: the cores available), got {jobs}")
    seed_list = list(range(n))
    folder = folder_to_write(Path(out), "the study's folder")
    if (folder / "config.toml").is_file():          # its cells, context and figures would mix into the run
        raise ConfigError(f"--out {str(folder)!r} holds a training run (config.toml); a study writes its own folder")
    _refuse_a_foreign_folder(folder)
    make_folder(folder, "the study's folder")
    header = cells_header(study, conditions, [_pair(s) for s in sets])
    cache = CellCache(folder / "cells.jsonl", header, digests(study, conditions))
    if cache.taken_over:        # (a context.json written before its digest would read as this study's)
        (folder / "context.json").unlink(missing_ok=True)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # the calibration's tiny ops, like the cells: extra threads only add overhead
    try:
        context = _context(study, folder, header, vouched=bool(cache.cells))
    finally:
        torch.set_num_threads(threads)
    todo = [(c.name, s) for s in seed_list for c in conditions if (c.name, s) not in cache.cells]
    print(f"downpour study {name}: {plural(len(conditions), 'condition')} x {plural(n, 'seed')}; "
          f"{plural(len(todo), 'cell')} to run (cells whose conditions make the same run share one), "
          f"{len(conditions) * n - len(todo)} cached in {folder}",
          file=sys.stderr, flush=True)
    unused = sorted({s for (c, s) in cache.cells if s >= n and c in names})
    if unused:                  # (a re-run without --seeds: the summary and study.json would quietly hold fewer)
        print(f"downpour study {name}: {str(folder)!r} also holds {'seed' if len(unused) == 1 else 'seeds'} {', '.join(map(str, unused))}, left out of "
              f"this summary; --seeds {unused[-1] + 1} uses them", file=sys.stderr, flush=True)
    try:
        workers = run_cells(study, todo, context, cache, jobs or default_jobs())
    except KeyboardInterrupt:   # (Ctrl-C or SIGTERM: what is kept, not "downpour: interrupted" alone)
        kept = sum((c, s) in cache.cells for c in names for s in seed_list)
        print(f"downpour study {name}: stopped; {kept} of {len(names) * n} cells are kept in {str(folder)!r} "
              f"(cells.jsonl): `{command_line(name, quick, n, sets, str(out))}` resumes it, running only the others",
              file=sys.stderr, flush=True)
        raise
    try:                        # (every cell is in cells.jsonl now: a stop from here on loses none)
        cells = {key: cache.cells[key] for key in ((c, s) for c in names for s in seed_list)}
        # (the cells' runs, and their data.json, are gone: where the data are the user's, what they skipped is said once)
        data = study_data(study, conditions, folder, header["sets"], ran=bool(todo))
        platforms, mixed = platforms_note(cache.costs, cells)
        installs, installs_mixed = installs_note(cache.costs, cells)
        for note in (mixed, installs_mixed):
            if note:
                print(f"downpour study {name}: {str(cache.path)!r}: {note}", file=sys.stderr, flush=True)
        try:                # (a diverged cell read as not measured, counted out: studies/diverged.py)
            rows, cells = summarised(study, conditions, cells, seed_list)
        except KeyError as err:           # a cached line whose figure was renamed or lost (an edit, a damaged byte), or
            # one measured before the figure was recorded (compare.FigureMissing, not read as a seed left out)
            refused = (_lacking(err.args[0], cells, cache.path, spare_diverged=isinstance(err, FigureMissing))
                       if err.args else None)
            if refused is None:
                raise
            raise refused from None
        within_range(rows)          # (before the verdict, the figures and study.json read them)
        note_missing(rows, cells, seed_list)
        holm(rows)
        trained = not rows or not all(r.get(DIVERGED) == r["n"] for r in rows)
        figures = study.figures(rows, cells, folder / "figures") if trained else []
        result: dict[str, Any] = {
            "study": name, "question": cls.question, "command": command_line(name, quick, n, sets, str(out)),
            "quick": quick, "seeds": seed_list, "sets": header["sets"], "context": context,
            "cells": rows,
            "verdict": verdict_text(study, rows, trained, "train.lr" not in _varied(study, conditions)),
            "figures": [str(p.relative_to(folder)) for p in figures],
            "seconds": round(time.perf_counter() - start, 1), "cells_run": len(todo), "jobs": workers,
            "cells_cost": cache.total_cost(cells), "platforms": platforms, "platforms_note": mixed,
            "installs": installs, "installs_note": installs_mixed, "data": data,
            "commits": commits(cache.costs, cells),
            "written": time.strftime(WRITTEN, time.gmtime()),     # (the study index's "written")
        }
        # whole or not at all (a stop or kill mid-write would leave a torn study.json, and study.html)
        replace_text(folder / "study.json", json.dumps(result, indent=1, allow_nan=True) + "\n")
        write_html(result, folder / "study.html", study.shown, study.headings)
        write_markdown(result, folder / "study.md", study.shown, study.headings)
        refresh_index(folder.parent)    # the index of the studies beside it (studies/index.html by default)
    except KeyboardInterrupt:   # (a Ctrl-C while the pages are written: what is kept, not "interrupted" alone)
        print(f"downpour study {name}: stopped while writing its pages; all {plural(len(names) * n, 'cell')} are kept in "
              f"{str(folder)!r} (cells.jsonl): `{command_line(name, quick, n, sets, str(out))}` writes the pages, running "
              "no cell again", file=sys.stderr, flush=True)
        raise
    return folder


def verdict_text(study: Any, rows: list[dict[str, Any]], trained: bool, lr_fixed: bool) -> str:
    """study.json's verdict: the quick setting's warning first (:meth:`~downpour.studies.base.Study.quick_paragraph`,
    here once for every study), the study's own reading of its rows (where every cell diverged: that nothing trained;
    ``lr_fixed``: the study does not vary train.lr) after its claim in one sentence (:meth:`~downpour.studies.base.
    Study.claim`) and Holm's count over its comparisons (:func:`~downpour.studies.headline.headline`), the conditions
    that diverged, and which readings hold under Holm's correction. (A quick study whose every cell diverged gets the
    warning too: its verdict, printed alone by ``downpour study``, says it is the quick setting's few steps and
    seeds.)"""
    reading = study.verdict(rows) if trained else nothing_trained(rows, lr_fixed)
    # its first sentence, the index's: the study's answer, then Holm's count over every comparison, before the figures
    claim = " ".join(s for s in (study.claim(rows), headline(rows)) if s) if trained else ""
    return "\n\n".join(p for p in (study.quick_paragraph(rows), claim, reading, study.diverged_paragraph(rows),
                                    family_paragraph(rows)) if p)


def _refuse_a_foreign_folder(folder: Path) -> None:
    """A folder that holds things but none of a study's files (``--out docs``, a home folder) is refused: the
    study would write its cells.jsonl, context.json, study.json, study.html and figures/ among them, and
    figures/*.png over any of the same name. Hidden entries (.gitkeep) do not count."""
    if not folder.is_dir():
        return
    held = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if held and not any(name in STUDY_FILES for name in held):
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise RunExistsError(f"--out {str(folder)!r} holds {shown} and no study (no {', '.join(STUDY_FILES)}); "
                             "a study writes its files and figures/ into its folder: pick a new or empty --out")


def cells_header(study: Any, conditions: list[Any], sets: list[tuple[str, Any]]) -> dict[str, Any]:
    """What a study folder's cells depend on, the first line of cells.jsonl: the study, quick, the --set
    overrides (the last of a repeated key, in key order: the same settings in another order are the
    same study), the conditions and what each sets, the base preset and its overrides, the measure's
    version. JSON-shaped, so it compares equal with the line read back."""
    header = {"study": study.name, "quick": study.quick, "sets": sorted(dict(sets).items()),
              "conditions": [c.name for c in conditions],
              "cells_defined": {"base": study.base, "base_sets": study.base_sets,
                                "conditions": {c.name: c.sets for c in conditions}},
              # what each cell's config resolves to: a preset's file or a default that changed since (a pull, an
              # edit of presets/*.toml) changes it, where the names above stay the same
              "resolved": {c.name: digest(study.cell_config(c, 0)) for c in conditions},
              **({"measured_by": study.measured_by} if study.measured_by else {})}
    return json.loads(json.dumps(header))


def note_missing(rows: list[dict[str, Any]], cells: dict[tuple[str, int], dict[str, float]], seeds: list[int]) -> None:
    """A row's figure whose interval left out seeds (a non-finite cell: a diverged run, a test with no
    eligible unit) gets ``row["missing"][figure]``, the seeds left out, so ``n`` does not overstate it."""
    for row in rows:
        got = [cells[(row["condition"], s)] for s in seeds if (row["condition"], s) in cells]
        missing = {k: sum(1 for g in got if not math.isfinite(g.get(k, math.nan))) for k in row["figures"]
                   if any(k in g for g in got)}      # (a diverged first seed's cell has none of the figures)
        if any(missing.values()):    # (beside what summarise noted itself: stats.note_left_out)
            row["missing"] = {**{k: m for k, m in missing.items() if m}, **row.get("missing", {})}


def _pair(item: Override) -> tuple[str, Any]:
    """``(key, value)`` of a --set; one typed as a string names itself in errors, not "the command line"."""
    path, value = parse_override(item)
    return FlagValue(".".join(path), value, f"--set {item}") if isinstance(item, str) else (".".join(path), value)


SETTINGS = "settings_digest"        # context.json's key for the settings it was computed for

MEASURED_BY_THE_STUDY = ("a study measures its cells itself (studies/measure.py, trained.py: its own layers, images "
                         "and splits), so no [analysis] key reaches them; to measure a concept of your own images, "
                         "train one run (downpour train, with your --set data.*) and analyse it: downpour analyze RUN "
                         "--set analysis.dataset=DIR --set analysis.positive=CLASS (docs/analysis.md)")


def _varied(study: Any, conditions: list[Any]) -> set[str]:
    """The keys a study sets in its cells itself (its conditions' and ``varied_in_cells``): refused as --set."""
    return {key for c in conditions for key, _ in c.sets} | set(study.varied_in_cells)


def _lacking(key: Any, cells: Cells, path: Path, spare_diverged: bool = False) -> ConfigError | None:
    """The refusal of a summary's KeyError ``key``: the cells that ran and lack the figure, named, where another seed of
    their condition holds it (some conditions never measure that figure); None where no cell does. ``spare_diverged``:
    a diverged cell is not named, the KeyError being :class:`~downpour.studies.compare.FigureMissing`, of a measured
    study, whose diverged cell holds its design's figures alone (else it is named: a staleness cell's ``diverged``, an
    outcome, comes with every figure, so its edited line is named, not a bare KeyError). Cells that hold a figure in
    its stead, which the cells holding ``key`` lack, were edited or measured by another version
    (:func:`~downpour.studies.compare.versions_apart`)."""
    measured = dict.fromkeys(c for (c, _), figures in cells.items() if key in figures)
    lacking = {(c, s): figures for (c, s), figures in cells.items()
               if c in measured and key not in figures and not (spare_diverged and figures.get(DIVERGED))}
    if not lacking:
        return None
    instead = list(dict.fromkeys(k for c in measured for k in versions_apart(
        [f for (d, _), f in lacking.items() if d == c], [f for (d, _), f in cells.items() if d == c and key in f])))
    named = ", ".join(f"{c} seed {s}" for c, s in lacking)
    if instead:
        return ConfigError(f"{str(path)!r}: the cell(s) {named} lack figure {key!r} and hold "
                           f"{', '.join(map(repr, instead))}, which the cells holding {key!r} lack: {VERSIONS_APART}")
    return ConfigError(f"{str(path)!r}: the cell(s) {named} lack figure {key!r}, which the study's summary reads "
                       "(measured before the figure was recorded, or edited or damaged lines); delete those lines and "
                       "run again: their cells run again")


def _studies_taking_data(keys: Any) -> str:
    """Where a refused --set is a data.* key: the studies whose cells train on the data a --set gives (data.source
    neither varied nor kept by them), so a user with images of their own is told which to run instead."""
    if not any(key.startswith("data.") for key in keys):
        return ""
    takers = [name for name in STUDIES if not _picks_its_data(study := study_class(name)(quick=True, sets=[]),
                                                               study.conditions())]
    return f"; the studies that train on data of your own (--set data.source, data.path): {', '.join(takers)}"


def _picks_its_data(study: Any, conditions: list[Any]) -> bool:
    """Whether a study sets its cells' data.source itself (keeps it or varies it): none of them reads a data.path."""
    return any(key == "data.source" or "data.source".startswith(key + ".")
               for key in (*study.fixed, *_varied(study, conditions)))


def _check_sets(study: Any, conditions: list[Any]) -> None:
    """A --set on a key the study varies itself would be overwritten in every cell: refuse it; then build
    every condition's config, so a key one of its models does not take is named before any cell runs (the
    first condition's alone let a staleness study run 11 cells before its SAE arm refused a teacher key)."""
    if any(key == "seed" for key, _ in study.sets):
        raise ConfigError("--set seed: a study runs every condition on the paired seeds 0 .. N-1 itself; "
                          "choose how many with --seeds N")
    kept = {"analysis": MEASURED_BY_THE_STUDY, **study.fixed}
    fixed = {key: why for key, _ in study.sets for f, why in kept.items() if key == f or key.startswith(f + ".")}
    if fixed:
        raise ConfigError(f"--set {', '.join(sorted(fixed))}: study {study.name!r} keeps "
                          f"{'it' if len(fixed) == 1 else 'them'} as designed: {'; '.join(sorted(set(fixed.values())))}"
                          f"{_studies_taking_data(fixed)}")
    varied = _varied(study, conditions)
    # a key the study varies, or one inside or above it (objective.kl_sparsity.rho and objective.kl_sparsity)
    clash = sorted(key for key, _ in study.sets
                   if any(key == v or key.startswith(v + ".") or v.startswith(key + ".") for v in varied))
    if clash:
        raise ConfigError(f"--set {', '.join(clash)}: study {study.name!r} varies {'it' if len(clash) == 1 else 'them'} "
                          f"itself (its conditions set {', '.join(sorted(varied))}){_studies_taking_data(clash)}")
    # the study's refusal, and the studies that would train on the path: else building a cell refuses it with "set
    # data.source too", which this check then refuses as the study's own
    if any(key == "data.path" for key, _ in study.sets) and _picks_its_data(study, conditions):
        raise ConfigError(f"--set data.path: study {study.name!r} sets its cells' data.source itself, so none of them "
                          f"reads data.path{_studies_taking_data(['data.path'])}")
    blaster = sorted(key for key, _ in study.sets if key.startswith("sandblaster."))
    # a cost term's own key (objective.kl_sparsity.rho) where no cell gives that term a weight: read by nothing
    unweighted = {key.split(".")[1]: key for key, _ in study.sets
                  if key.startswith("objective.") and key.count(".") >= 2 and not key.endswith(".weight")}
    # a key the cells' runner, algorithm or data never read (cluster.workers on the local runner): refused where no
    # cell reads it (the staleness study's sync cells read no compensation, its async ones do); its first reason
    read_by_some: set[str] = set()
    unread: dict[str, str] = {}
    for condition in conditions:
        cfg = study.cell_config(condition, 0)
        if blaster and cfg.cluster.algorithm != "sandblaster":
            raise ConfigError(f"--set {', '.join(blaster)}: only Sandblaster L-BFGS reads [sandblaster], and study "
                              f"{study.name!r}'s cell {condition.name!r} trains with cluster.algorithm = "
                              f"{cfg.cluster.algorithm!r}")
        if study.sets:    # what `downpour train` checks (the model on the data's shape: a teacher wider than its input)
            try:
                cfg = check_run_config(cfg)
            except ConfigError as err:
                raise ConfigError(f"--set {', '.join(sorted(k for k, _ in study.sets))}: in study {study.name!r}, cell "
                                  f"{condition.name!r}: {err}", key=err.key) from None
        for key, value in (study.sets if "cluster.runner" in study.fixed else []):
            try:
                check_sets([(key, value)], cfg, runner_fixed=f"study {study.name!r} keeps its runner: "
                                                           f"{study.fixed['cluster.runner']}")
                read_by_some.add(key)
            except ConfigError as err:     # (the check's own "--set KEY: " said once)
                said = str(err).split(": ", 1)[1] if str(err).startswith("--set ") and ": " in str(err) else str(err)
                unread.setdefault(key, f"cell {condition.name!r}: {said}")
        for term in [t for t in unweighted if t in cfg.objective and make_term(t, cfg.objective[t]).weight]:
            del unweighted[term]
    refused = [key for key in unread if key not in read_by_some]
    if refused:
        raise ConfigError(f"--set {refused[0]}: no cell of study {study.name!r} reads it ({unread[refused[0]]})",
                          key=refused[0])
    if unweighted:
        raise ConfigError(f"--set {', '.join(sorted(unweighted.values()))}: no cell of study {study.name!r}"
                          f"{' (quick)' if study.quick else ''} gives {', '.join(sorted(unweighted))} a weight, so "
                          "nothing reads it")


def _context(study: Any, folder: Path, header: dict[str, Any], vouched: bool) -> dict[str, Any]:
    """The study's calibration (``study.prepare()``), kept in context.json with a digest of the settings it was
    computed for: one computed for others (cells.jsonl deleted, the study run again with another --set) is
    computed again, not reused (it gave the controls another run's noise and momentum, unsaid). One without the
    digest (written before 2026-12-03, or the digest deleted) says nothing of its settings: kept where ``vouched``
    (cells.jsonl holds cells run with these settings, and with it: an old folder resumed), and given the digest;
    computed again where no cell vouches for it (not reused, for whatever settings, unsaid)."""
    path = folder / "context.json"
    made_for = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:16]
    if path.is_file():
        try:
            context = json.loads(path.read_text(errors="replace"))
        except json.JSONDecodeError:
            context = None
        if not isinstance(context, dict):
            raise ConfigError(f"{str(path)!r} is damaged: delete it, and the study computes it again from its settings")
        given = context.pop(SETTINGS, None)
        if given == made_for:
            return context
        if given is None and vouched:
            print(f"downpour study: {path} has no {SETTINGS} (written by older code, or edited): kept, as the "
                  "calibration of the cells cells.jsonl holds for these settings; its digest is written now",
                  file=sys.stderr)
            _keep(path, context, made_for)
            return context
        why = (f"has no {SETTINGS} (written by older code, or edited) and no cell of these settings was run with it"
               if given is None else "was computed for other settings")
        print(f"downpour study: {path} {why}: computing it again", file=sys.stderr)
    context = study.prepare()
    _keep(path, context, made_for)
    return context


def _keep(path: Path, context: dict[str, Any], made_for: str) -> None:
    """Write context.json whole or not at all (a kill mid-write left it damaged), with the settings' digest."""
    replace_text(path, json.dumps({**context, SETTINGS: made_for}, indent=1) + "\n")
