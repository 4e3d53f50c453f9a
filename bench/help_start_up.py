"""Start-up of the help commands: wall seconds of ``python -m downpour ARGS``, each in a fresh interpreter.

    .venv/bin/python bench/help_start_up.py [--reps 5]

``downpour study NAME --help`` imports that study's design for its conditions (studies/designs/: no torch), not the
study's module, which brings torch, numpy and the machinery its cells run. Its rows run it against a baseline
measured in the same run, interleaved (bench/_protocol.py): the same command after ``import`` of that study's module
(``old_imports``, what it imported before 2026-12-05). ``ratio`` < 1: the help starts faster without it. The other
rows (``--help``, ``train --help``, ``analyze --help``, ``study --help``) import no study and are timed alone. One
JSON line per row.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _protocol import interleave, ratio, reps_and_threads, summary  # noqa: E402

COMMANDS = (["--help"], ["train", "--help"], ["analyze", "--help"], ["study", "--help"],
            ["study", "mechanisms", "--help"], ["study", "costs", "--help"], ["study", "staleness", "--help"])


def old_imports(name: str) -> tuple[str, ...]:
    """What ``downpour study NAME --help`` imported before 2026-12-05: the study's own module (torch with it)."""
    from downpour.studies import STUDIES

    return (STUDIES[name].split(":")[0],)


def help_of(argv: list[str], imports: tuple[str, ...] = ()) -> dict:
    """Run ``downpour argv`` in a fresh interpreter after importing ``imports`` (its output discarded)."""
    code = "".join(f"import {m}\n" for m in imports) + f"from downpour.cli import main\nmain({argv!r})\n"
    subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, check=True)
    return {}


def main(argv: list[str] | None = None) -> None:
    args = reps_and_threads(__doc__.split("\n")[0], threads=None).parse_args(argv)
    for command in COMMANDS:
        configs = {"now": lambda r, c=command: help_of(c)}
        if command[0] == "study" and len(command) == 3:
            configs["old_imports"] = lambda r, c=command: help_of(c, old_imports(c[1]))
        reps = interleave(configs, args.reps)
        row = {"row": " ".join(command), **summary(reps, "wall_s")}
        row.pop("driver_cpu_s")     # (this process's: the command runs in a child)
        if "old_imports" in configs:
            row["wall_ratio"] = ratio(reps, "wall_s", "now", "old_imports")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
