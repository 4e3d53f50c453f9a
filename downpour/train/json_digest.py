"""The SHA-256 a checkpoint's or a model's JSON records of its own content (``json_sha256``).

The tensors file of a pair is checked against the SHA-256 its JSON records (``safetensors_sha256``); this is the
JSON's own: over the canonical JSON of every other field (keys sorted, no spaces), so a changed digit in
``"step"`` or in an optimiser setting is refused on load instead of resumed from. A file written before
2026-12-05 records none and is read unchecked; so that deleting the field is not the way past the check, the tensors
file written with a digested JSON says in its safetensors metadata that its JSON records one (:data:`MARK`), and
a JSON without one beside such a file is refused as an edited one is.

    meta = digested({"step": 40})            # {"step": 40, "json_sha256": "..."}
    digest_problem(meta)                     # None: it matches
    digest_problem(meta, tensors_path)       # and where it records none, its tensors file must not say it does
    rewrite_json(path, step=41)              # an edit made on purpose: the digest written anew
    rewrite_json(path, lambda r: r.pop("row"))   # or any change in place; rewrite_json(path, record): a whole one
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Callable

JSON_KEY = "json_sha256"
MARK = {JSON_KEY: "recorded"}   # a tensors file's safetensors metadata: the JSON written with it records its digest


def json_digest(record: dict[str, Any]) -> str:
    """SHA-256, hex, of ``record`` less :data:`JSON_KEY`, as canonical JSON; taken of what reading the record back
    gives (a tuple is a list there, an integer key a string), so the same on save and on load."""
    body = json.loads(json.dumps({k: v for k, v in record.items() if k != JSON_KEY}))
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def digested(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with :data:`JSON_KEY` set to its digest (one it had already replaced)."""
    return {**record, JSON_KEY: json_digest(record)}


def digest_problem(record: dict[str, Any], tensors: Path | None = None) -> str | None:
    """What is wrong with ``record``'s own digest, said for an error naming its file; None where it matches, or
    where it records none (written before 2026-12-05) and ``tensors``, the tensors file written with it, does not
    say it does (:func:`marked`: a JSON whose digest was deleted with an edit is refused, not passed
    as an old file), or is not the tensors file it records the SHA-256 of (a save cut between the two: the pair's own
    check says so)."""
    if JSON_KEY not in record:
        if tensors is None or not marked(tensors) or _of_other_tensors(record, tensors):
            return None
        return (f"its content is not what it held when it was written: it records no SHA-256 of itself ({JSON_KEY}, "
                f"over every other field of it), and {str(tensors)!r}, written with it, says it was written with one "
                "(a field edited by hand and the digest deleted, or bytes changed on disk since)")
    if record[JSON_KEY] == json_digest(record):
        return None
    return (f"its content is not what it held when it was written: the SHA-256 it records of itself ({JSON_KEY}, "
            "over every other field of it) does not match (a field edited by hand, or bytes changed on disk since)")


def marked(tensors: Path) -> bool:
    """Whether the safetensors file ``tensors`` records :data:`MARK` in its metadata (its JSON was written with its
    digest); False for one written before 2026-12-05, and one missing or whose header cannot be read. Read from the
    header alone, so a file cut short in its data still says it: 8 bytes of header length, then the header's JSON."""
    try:
        with open(tensors, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size)) if size <= MAX_HEADER else None
    except (OSError, struct.error, ValueError):
        return False
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(meta, dict) and meta.get(JSON_KEY) == MARK[JSON_KEY]


MAX_HEADER = 100_000_000   # safetensors' own limit on a header: a larger length is not a safetensors file


def _of_other_tensors(record: dict[str, Any], tensors: Path) -> bool:
    """Whether ``record`` records the SHA-256 of other tensors than ``tensors``, whole (``safetensors_sha256``): a save
    cut between its two files leaves the JSON of the save before beside the tensors written since, and the mark is
    theirs, not its: the pair's own check names that as a cut write, where calling a pair written before digests
    and cut so by a later resume a JSON edited by hand would say it was "written with" tensors it was not. Tensors
    cut short are not told apart so: a JSON beside them is refused as an edited one."""
    from downpour.train.checkpoint import PAIR_KEY, readable_tensors, sha256_of   # (checkpoint imports this module)

    return PAIR_KEY in record and readable_tensors(tensors) and record[PAIR_KEY] != sha256_of(tensors)


def rewrite_json(path: str | Path, edit: Callable[[dict[str, Any]], Any] | dict[str, Any] | None = None,
                 **changes: Any) -> None:
    """Change the JSON object at ``path`` on purpose and write it with its digest anew: ``edit`` applied (a function
    that changes the record in place, what it returns not used; or a dict, the whole record to write instead), then
    ``changes`` set."""
    path = Path(path)
    record = json.loads(path.read_text()) if not isinstance(edit, dict) else dict(edit)
    if callable(edit):
        edit(record)
    path.write_text(json.dumps(digested({**record, **changes}), indent=1, sort_keys=True))
