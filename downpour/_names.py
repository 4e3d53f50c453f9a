"""Helpful errors: the nearest valid name to a wrong one."""
from __future__ import annotations

import difflib
from typing import Iterable


def closest(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The valid choice nearest to ``word`` (difflib's ratio at least ``cutoff``), or None."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return match[0] if match else None


def nearest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest valid choice, or ''."""
    match = closest(word, choices)
    return f" (did you mean {match!r}?)" if match else ""
