"""What a stream's position in a checkpoint must be for the loader to go on from it
(:meth:`downpour.data.loader.StreamBatches.position` writes it): read by every resume and by
``downpour train --resume --dry-run``, so it imports nothing heavier than the settings' checks."""
from __future__ import annotations

from typing import Any

from downpour.settings import is_count

# (key, least value); patches: 0 for a crop stream
_POSITION_COUNTS = (("epoch", 0), ("index", 0), ("skip", 0), ("batch", 0), ("samples", 0), ("patches", 0))


def position_problem(position: Any) -> str | None:
    """What is wrong with a stream position read back from a checkpoint, as a phrase (None: nothing): the
    table whose counts the resumed stream slices, adds and cuts by (a hand-edited ``"skip": 2.5`` would be a
    TypeError deep in the loader, ``"patches": true`` would cut 1 per image)."""
    if not isinstance(position, dict):
        return f"its stream position is {position!r}, not a table"
    for key, low in _POSITION_COUNTS:
        if key not in position and key in ("epoch", "index", "skip", "batch"):
            return f"its stream position has no {key!r}"
        if key in position and not is_count(position[key], low):
            return f"its stream position's {key} is {position[key]!r}, not a whole number >= {low}"
    if not isinstance(position.get("listing", ""), str):
        return f"its stream position's listing is {position['listing']!r}, not a fingerprint"
    skipped = position.get("skipped", [])
    if not isinstance(skipped, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[1], str) and (isinstance(e[0], str) or is_count(e[0]))
            for e in skipped):   # [file, reason] pairs (an item number for a file: checkpoints before 2026-12-03)
        return f"its stream position's skipped is {skipped!r}, not a list of [file, reason] pairs"
    truncated = position.get("truncated", [])
    if not isinstance(truncated, list) or not all(
            isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and is_count(e[1]) and isinstance(e[2], str)
            for e in truncated):
        return f"its stream position's truncated is {truncated!r}, not a list of [file, frames, reason] triples"
    upscaled = position.get("upscaled", [])
    if not isinstance(upscaled, list) or not all(isinstance(e, list) and len(e) == 2 and all(isinstance(v, str) for v in e)
                                                 for e in upscaled):
        return f"its stream position's upscaled is {upscaled!r}, not a list of [file, size] pairs"
    return None
