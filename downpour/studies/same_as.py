"""The runs behind a study's cells: a ``same_as`` cell (a condition that trains as another does, on the same seed)
reuses its original's result and cost, so it is counted as its original's run, once, even where the original is not
among the cells summarised; where the original is gone (its line of ``cells.jsonl`` dropped as damaged, whose re-run
then copied the copy), the run's cost is unknown, not lost: such a cell counts under the "unknown" commit and platform
in study.json, not under none."""
from __future__ import annotations

from typing import Any, Iterable

Key = tuple[str, int]


def _origin(costs: dict[Key, dict[str, Any]], key: Key) -> Key:
    """The cell whose run ``key`` is: itself, or the end of its ``same_as`` chain (the first missing cell, or the least
    of a loop, when the chain ends in none that ran)."""
    seen: list[Key] = []
    while key in costs and "same_as" in costs[key] and key not in seen:
        seen.append(key)
        key = (str(costs[key]["same_as"]), key[1])
    return min(seen[seen.index(key):]) if key in seen else key


def runs(costs: dict[Key, dict[str, Any]], keys: Iterable[Key]) -> list[dict[str, Any]]:
    """The cost of each run behind the cells ``keys``, once a run, in the order of its cell; ``{}`` for a run whose
    cost is gone (its original missing, or a loop of copies)."""
    found: dict[Key, dict[str, Any]] = {}
    for key in sorted(set(keys)):
        origin = _origin(costs, key)
        cost = costs.get(origin, {})
        found.setdefault(origin, {} if "same_as" in cost else cost)
    return list(found.values())
