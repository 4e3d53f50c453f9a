"""What a path given as a run that is not one is told, beyond "not a run": a study's folder (which study, its report or
the command that finishes it), the nearest run's name beside a misspelt one
(:meth:`~downpour.train.rundir.RunDir.open`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from downpour._names import closest, pasted


def study_command(header: dict[str, Any]) -> str:
    """"downpour study NAME [--quick]" of a study folder's header (cells.jsonl's first line)."""
    return f"downpour study {_study_name(header)}{' --quick' if header.get('quick') is True else ''}"


def _study_name(header: dict[str, Any]) -> str:
    return header.get("study") if isinstance(header.get("study"), str) else "NAME"


def study_folder(path: Path) -> str:
    """What `analyze`, `report` or `--resume` of a `downpour study` folder says: which study, and its report or the
    command that finishes it, not "give the --out directory of a `downpour train` run", which would send the user
    looking for a run the study never kept."""
    try:
        header = json.loads((path / "cells.jsonl").read_text(errors="replace").partition("\n")[0])
    except ValueError:
        header = None
    header = header if isinstance(header, dict) else {}
    name = _study_name(header)
    command = (f"`{study_command(header)} --out {pasted(path)}`"
               + (" (with its --set flags)" if header.get("sets") else ""))
    if (path / "study.html").is_file():
        return (f"{str(path)!r} is a `downpour study {name}` folder, not a run: its report is "
                f"{str(path / 'study.html')!r} ({command} again writes it anew); a study keeps its cells' numbers, not their runs")
    return (f"{str(path)!r} is a `downpour study {name}` folder, not a run, stopped before its report: {command} again "
            "finishes it; a study keeps its cells' numbers, not their runs")


def nearest_run(path: Path) -> str:
    """'; did you mean 'runs/cat'?' for the run beside ``path`` whose name is nearest to its (a typo: `runs/cta`), or ''.
    Looks at the first 1,000 entries of its folder."""
    try:
        beside = [p.name for _, p in zip(range(1000), path.parent.iterdir()) if (p / "config.toml").is_file()]
    except OSError:
        return ""
    close = closest(path.name, beside, cutoff=0.6)
    return f"; did you mean {str(path.parent / close)!r}?" if close else ""
