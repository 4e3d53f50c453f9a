"""What a study's cells did with data of the user's own (``--set data.source=folder --set data.path=DIR``).

Each cell trains in a temporary run folder, removed when it ends, so its ``data.json`` (the files it skipped,
unreadable or too small) goes with it and the log names each bad file once per cell. :func:`data_note` loads the
first cell's data once more before the cells run, in memory as they do, and keeps what it skipped for study.json's
``data`` and study.html's Data sentence: every cell skipped the same files. A folder, video folder or array that
streams (more than ``data.pipeline``'s 1 GiB decoded) is not loaded here: its cells' workers meet its bad files as
they read, and the log names them.
"""
from __future__ import annotations

from typing import Any

from downpour._names import plural
from downpour.config import RunConfig
from downpour.config.sections import FILE_SOURCES
from downpour.data.pipeline import choose_pipeline, open_data

FIRST = 3          # bad files study.json names (it counts them all)


def data_note(cfg: RunConfig) -> dict[str, Any] | None:
    """``{"path", "n_images", "n_skipped", "skipped"}`` (the first :data:`FIRST` of the files skipped, each
    ``{"file", "reason"}``) of ``cfg``'s data where it reads files of the user's and is held in memory; None
    where it is built in or streams."""
    if cfg.data.source not in FILE_SOURCES or choose_pipeline(cfg.data)[0] != "memory":
        return None
    info = open_data(cfg.data, cfg.seed).info
    return {"path": str(cfg.data.path), "n_images": int(info.get("n_images", 0)),
            "n_skipped": int(info.get("n_skipped", 0)), "skipped": list(info.get("skipped", []))[:FIRST]}


def data_sentence(note: dict[str, Any] | None) -> str:
    """study.html's sentence for :func:`data_note`'s ``note`` ("" where there is none)."""
    if not note:
        return ""
    said = f"The cells trained on {note['n_images']} images of {note['path']}"
    if not note["n_skipped"]:
        return said + "; none of its files was skipped."
    first = note["skipped"][0]
    return (f"{said}; {plural(note['n_skipped'], 'file')} skipped, unreadable or too small, by every cell (first: "
            f"{first['file']}: {first['reason']}); study.json's data names the first {FIRST}, and the log each.")
