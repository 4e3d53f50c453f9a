"""What a study's cells did with data of the user's own (``--set data.source=folder --set data.path=DIR``).

Each cell trains in a temporary run folder, removed when it ends, so its ``data.json`` (the files it skipped,
unreadable or too small) goes with it, and the log names the first ``data.images.LOGGED`` bad files once per cell.
:func:`study_data` loads the data once more after cells ran, in memory as they do, once per data setting among its
conditions (their seed-0 configs' ``data`` section but the keys of ``AFTER_READING``, which act on the images once
read), and keeps every file it skipped in study.json's ``data`` (the Data sentence of study.html, study.md and
``downpour study``'s output). Where the settings skipped the same files it says "by every cell"; where they did not
(patch mode skips an image smaller than ``data.size``, crops mode enlarges it: a study whose conditions vary
``data.size`` or ``data.mode``), the note's ``settings`` and the sentence say what each setting, and which
conditions, read and skipped (the first condition's load does not stand for every cell, nor the sentence say
"by every cell" whatever the others' settings). A re-run whose cells are all
cached keeps the note study.json holds for the same settings (it described the data those cells read, and the
folder is not loaded again). A folder, video folder or array that streams (more than ``data.pipeline``'s 1 GiB
decoded) is not loaded here: its cells' workers meet its bad files as they read, and the log names them. The load
here says nothing of the files it skipped or enlarged (the cells' logs said it, and the note names every one), so the
log does not repeat each warning after the cells'.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from downpour._names import plural
from downpour.config import RunConfig
from downpour.config.sections import FILE_SOURCES
from downpour.data.images import skip
from downpour.data.patches import say_enlarged
from downpour.data.pipeline import choose_pipeline, open_data

_SAID_BY_THE_CELLS = {skip.__name__, say_enlarged.__name__}   # the warnings the note's load keeps to itself


def _not_said_again(record: logging.LogRecord) -> bool:
    return record.funcName not in _SAID_BY_THE_CELLS


def data_note(cfg: RunConfig) -> dict[str, Any] | None:
    """``{"path", "n_images", "n_skipped", "skipped"}`` (every file skipped, each ``{"file", "reason"}``, not the first
    few: the log names only the first 20 and the cells' data.json are gone) of ``cfg``'s
    data where it reads files of the user's and is held in memory; None where it is built in or streams."""
    if cfg.data.source not in FILE_SOURCES or choose_pipeline(cfg.data)[0] != "memory":
        return None
    log = logging.getLogger("downpour.data")
    log.addFilter(_not_said_again)
    try:
        info = open_data(cfg.data, cfg.seed).info
    finally:
        log.removeFilter(_not_said_again)
    return {"path": str(cfg.data.path), "n_images": int(info.get("n_images", 0)),
            "n_skipped": int(info.get("n_skipped", 0)), "skipped": list(info.get("skipped", []))}


# data keys that act on the images once read (drawing, normalising, whitening, augmenting, ordering them): conditions
# differing in these alone read and skip the same files, so their data are loaded once for the note (flat-skipping's
# whitened and unwhitened cells). A key left off this list costs a load more, never a wrong "by every cell".
AFTER_READING = ("samples", "normalize", "whiten", "zca_eps", "spectral_strength", "shift", "scale", "flip", "split")


def _reading(cfg: RunConfig) -> tuple[tuple[str, Any], ...]:
    """What of ``cfg``'s data decides which files its cells read and skip (its data section but ``AFTER_READING``)."""
    return tuple((k, v) for k, v in sorted(dataclasses.asdict(cfg.data).items()) if k not in AFTER_READING)


def study_data(study: Any, conditions: Any, folder: Path, sets: Any, ran: bool) -> dict[str, Any] | None:
    """study.json's ``data`` for ``study``'s ``conditions`` run in ``folder`` with header ``sets``: None without a
    data.* --set; where no cell ran now (``ran`` false) the note ``folder``'s study.json keeps for the same ``sets``;
    otherwise :func:`settings_note` of the conditions' seed-0 configs (every condition's, not the first's alone,
    and not loaded again for a cached study)."""
    if not any(key.startswith("data.") for key, _ in study.sets):
        return None
    if not ran:
        try:
            kept = json.loads((folder / "study.json").read_text(errors="replace"))
        except (OSError, ValueError):
            kept = None
        if isinstance(kept, dict) and "data" in kept and kept.get("sets") == sets:
            return kept["data"]
    return settings_note({c.name: study.cell_config(c, 0) for c in conditions})


def settings_note(configs: dict[str, RunConfig]) -> dict[str, Any] | None:
    """:func:`data_note` of each data setting among ``configs`` (condition -> its config), loaded once per setting
    (:func:`_reading`). The same skipped files in every setting (or one setting): that note, as every cell read and
    skipped them. Otherwise the note of all of them (``n_skipped``, ``skipped``: each file any setting skipped, once)
    with ``settings``: per setting, its ``conditions``, the data keys that tell it from the others (``differs``) and
    its own ``n_images``, ``n_skipped`` and ``skipped``. None where no setting is read here (built in, or streams)."""
    groups: dict[tuple[tuple[str, Any], ...], list[str]] = {}
    for name, cfg in configs.items():
        groups.setdefault(_reading(cfg), []).append(name)
    notes = [data_note(configs[names[0]]) for names in groups.values()]
    if all(n is None for n in notes):
        return None
    read = [None if n is None else (n["n_images"], n["skipped"]) for n in notes]
    if len(groups) == 1 or (read[0] is not None and read.count(read[0]) == len(read)):
        return notes[0]
    keys = [dict(k) for k in groups]
    differs = sorted(k for k in keys[0] if len({repr(d.get(k)) for d in keys}) > 1)
    known = [n for n in notes if n is not None]
    every = {e["file"]: e for n in known for e in n["skipped"]}
    settings = [{"conditions": names, "differs": {k: keys[i][k] for k in differs},
                 **({"streams": True} if note is None else {k: note[k] for k in ("n_images", "n_skipped", "skipped")})}
                for i, (names, note) in enumerate(zip(groups.values(), notes))]
    return {"path": known[0]["path"], "n_images": max(n["n_images"] for n in known), "n_skipped": len(every),
            "skipped": list(every.values()), "settings": settings}


def data_sentence(note: dict[str, Any] | None) -> str:
    """The sentence for :func:`data_note`'s or :func:`settings_note`'s ``note`` that study.html, study.md and
    ``downpour study``'s output print ("" where there is none)."""
    if not note:
        return ""
    if "settings" in note:
        return _settings_sentence(note)
    said = f"The cells read {plural(note['n_images'], 'image')} of {note['path']}"
    if not note["n_skipped"]:
        return said + "; none of its files was skipped."
    first = note["skipped"][0]
    return (f"{said}; {plural(note['n_skipped'], 'file')} skipped, unreadable or too small, by every cell (first: "
            f"{first['file']}: {first['reason']}); study.json's data names every one.")


def _settings_sentence(note: dict[str, Any]) -> str:
    """Per data setting: which conditions, what they read and skipped (cells whose settings skip different files)."""
    parts = []
    for s in note["settings"]:
        where = f"{', '.join(s['conditions'])} ({', '.join(f'data.{k} = {v}' for k, v in s['differs'].items())})"
        if s.get("streams"):
            parts.append(f"{where} streamed it, and the log names the files its cells skipped")
        elif not s["n_skipped"]:
            parts.append(f"{where} read {plural(s['n_images'], 'image')}, none skipped")
        else:
            first = s["skipped"][0]
            parts.append(f"{where} read {plural(s['n_images'], 'image')}, {plural(s['n_skipped'], 'file')} skipped, "
                         f"unreadable or too small (first: {first['file']}: {first['reason']})")
    return (f"The cells' data settings skipped different files of {note['path']}: {'; '.join(parts)}; study.json's "
            f"data names every one.")
