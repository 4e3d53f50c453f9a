"""A run's metrics.jsonl: one JSON object per logged step (``{"step": int, "time", "loss", ...}``),
appended by :class:`~downpour.train.telemetry.Telemetry`, read back by a resume, the analysis and the
report. A torn last line (a kill mid-write) is no row; any other line that is not a row is a
NotARunError naming the file and the line (it gave a traceback wherever the rows were read).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from downpour.errors import NotARunError
from downpour.settings import is_count


def has_row(path: Path) -> bool:
    """Whether ``path`` holds at least one row; reads only up to the first, so it is cheap on a long run."""
    if not path.is_file():
        return False
    with path.open(errors="replace") as lines:
        for line in lines:
            try:
                if line.strip() and isinstance(json.loads(line), dict):
                    return True
            except json.JSONDecodeError:
                continue
    return False


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of ``path`` (none when it does not exist); a torn last line is left out."""
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise NotARunError(f"{str(path)!r} is not text (a byte at {err.start} is not UTF-8): not a metrics file "
                           "downpour wrote") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]   # (n: the file's own)
    last = lines[-1][0] if lines else 0
    rows = []
    for n, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n < last:
                raise NotARunError(f"{str(path)!r} line {n} is not JSON") from None
            continue
        step = row.get("step") if isinstance(row, dict) else None
        if not is_count(step):
            raise NotARunError(f"{str(path)!r} line {n} is not a metrics row (a JSON object with a step number)")
        rows.append(row)
    return rows


def truncate_rows(path: Path, step: int) -> int:
    """Drop the rows of ``path`` logged after ``step``, and a torn last line; rewrites it atomically.
    Returns the rows dropped."""
    if not path.is_file():
        return 0
    rows = read_rows(path)                                   # (checks every line first)
    written = sum(1 for line in path.read_text().splitlines() if line.strip())
    keep = [row for row in rows if row["step"] <= step]
    if len(keep) < written:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in keep))   # as Telemetry writes them
        os.replace(tmp, path)
    return written - len(keep)
