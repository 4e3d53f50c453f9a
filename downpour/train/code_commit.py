"""The commit of downpour's code this process runs (:func:`code_commit`): a study cell's ``commit``
(:mod:`downpour.studies.code_commit` says what a study's page makes of it) and a run folder's environment.json's."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

_COMMIT: str | None = None
_PACKAGE = Path(__file__).resolve().parent.parent      # the downpour package's folder


# the variables that point git at a repository (set in a git hook, say): with them git would read the user's own
_LOCATING = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY",
             "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES")


def _git(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in _LOCATING}
    return subprocess.run(["git", "-C", str(_PACKAGE), *args], capture_output=True, text=True, timeout=20,
                          check=True, env=env).stdout.strip()


def code_commit() -> str:
    """The short commit of the checkout holding the package (``+changes`` where the package's files differ from it, or
    one is untracked and not ignored: a new module changes the code that ran), or "" outside a git checkout or without
    git (git asked once a process)."""
    global _COMMIT
    if _COMMIT is None:
        try:            # (the package tracked by the checkout: a venv inside some other repository is not downpour's)
            _git("ls-files", "--error-unmatch", "__init__.py")
            head = _git("rev-parse", "--short=8", "HEAD")
            changed = _git("status", "--porcelain", "--untracked-files=normal", "--", ".")
            _COMMIT = head + ("+changes" if changed else "")
        except (OSError, subprocess.SubprocessError):
            _COMMIT = ""
    return _COMMIT
