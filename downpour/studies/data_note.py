"""What a study's cells did with data of the user's own (``--set data.source=folder --set data.path=DIR``).

Each cell trains in a temporary run folder, removed when it ends, so its ``data.json`` (the files it skipped,
unreadable or too small) goes with it, and the log names the first ``data.images.LOGGED`` bad files once per cell.
:func:`study_data` loads the first cell's data once more after cells ran, in memory as they do, and keeps every
file it skipped in study.json's ``data`` (the Data sentence of study.html, study.md and ``downpour study``'s output:
every cell skipped the same files, as skipping reads the files and ``data.size`` alone, which no study that takes
your data varies); a re-run whose cells are all
cached keeps the note study.json holds for the same settings (it described the data those cells read, and the
folder is not loaded again). A folder, video folder or array that streams (more than ``data.pipeline``'s 1 GiB
decoded) is not loaded here: its cells' workers meet its bad files as they read, and the log names them. The load
here says nothing of the files it skipped or enlarged (the cells' logs said it, and the note names every one): until
2026-12-06 the log repeated each warning after the cells'.
"""
from __future__ import annotations

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
    """``{"path", "n_images", "n_skipped", "skipped"}`` (every file skipped, each ``{"file", "reason"}``; until
    2026-12-06 the first 3, while the log names only the first 20 and the cells' data.json are gone) of ``cfg``'s
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


def study_data(study: Any, condition: Any, folder: Path, sets: Any, ran: bool) -> dict[str, Any] | None:
    """study.json's ``data`` for ``study`` run in ``folder`` with header ``sets``: None without a data.* --set;
    where no cell ran now (``ran`` false) the note ``folder``'s study.json keeps for the same ``sets``; otherwise
    :func:`data_note` of ``condition``'s seed-0 config (until 2026-12-06 loaded on every run, a cached study's too)."""
    if not any(key.startswith("data.") for key, _ in study.sets):
        return None
    if not ran:
        try:
            kept = json.loads((folder / "study.json").read_text(errors="replace"))
        except (OSError, ValueError):
            kept = None
        if isinstance(kept, dict) and "data" in kept and kept.get("sets") == sets:
            return kept["data"]
    return data_note(study.cell_config(condition, 0))


def data_sentence(note: dict[str, Any] | None) -> str:
    """The sentence for :func:`data_note`'s ``note`` that study.html, study.md and ``downpour study``'s output print
    ("" where there is none)."""
    if not note:
        return ""
    said = f"The cells read {plural(note['n_images'], 'image')} of {note['path']}"
    if not note["n_skipped"]:
        return said + "; none of its files was skipped."
    first = note["skipped"][0]
    return (f"{said}; {plural(note['n_skipped'], 'file')} skipped, unreadable or too small, by every cell (first: "
            f"{first['file']}: {first['reason']}); study.json's data names every one.")
