"""Helpful errors: the nearest valid name to a wrong one."""
from __future__ import annotations

import difflib
from typing import Iterable


def nearest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest valid choice, or ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""
