"""What listing a folder leaves out, as data.json records it and the load says it: folders that cannot be listed,
symbolic links to a folder holding them (loops), second names of a file, files whose extension is no image's."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from downpour._names import plural
from downpour.data.images import log


def left_out(unlisted: list[dict[str, str]], aliases: list[dict[str, str]],
             others: list[Path] | None = None) -> dict[str, Any]:
    """What a listing records in a run's data.json (``info``) beside ``n_ignored``: the folders it could not list,
    the links to a folder holding them (``loops``: {link, to}), the names of files it read under another name, and
    how many files of each extension it left out as no image
    (``ignored_extensions``, "" for none; ``ignored_first``: the first, sorted); only those that happened."""
    kinds = Counter(p.suffix.lower() for p in others or [])
    ignored = {"ignored_extensions": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
               "ignored_first": str(others[0])} if others else {}
    loops = [{"link": e["folder"], "to": e["loop"]} for e in unlisted if "loop" in e]
    unlisted = [e for e in unlisted if "loop" not in e]
    return {**({"unlisted": unlisted} if unlisted else {}), **({"loops": loops} if loops else {}),
            **({"aliases": aliases} if aliases else {}), **ignored}


def say_left_out(root: str | Path, info: dict[str, Any]) -> None:
    """Log what :func:`left_out` recorded in ``info``: called by the data's load (in memory, or the stream's
    driver), once per listing a run trains on. The listings' own walks log nothing: a warning once per process
    would leave a second run in one Python (a study's next cell, a second ``main([...])``) with an unlisted folder,
    or an image under two names, unsaid while its data.json recorded them."""
    for entry in info.get("unlisted", []):
        log.warning("folder %s: cannot list %s (%s): its files are left out", root, entry["folder"], entry["reason"])
    loops = info.get("loops", [])
    if loops:
        each = "to a folder that holds it" if len(loops) == 1 else "each to a folder that holds it"
        log.warning("folder %s: %s not followed, %s, which would be read again (e.g. %s -> %s); data.json names %s "
                    "(loops)", root, plural(len(loops), "symbolic link"), each, loops[0]["link"], loops[0]["to"],
                    "it" if len(loops) == 1 else "them")
    aliases = info.get("aliases", [])
    if aliases:
        log.warning("folder %s: %s %s a file listed already (e.g. %s is %s); each file is read once", root,
                    plural(len(aliases), "file"), "names" if len(aliases) == 1 else "name", aliases[0]["file"],
                    aliases[0]["is"])
    kinds = info.get("ignored_extensions", {})
    if kinds:   # (said, not only counted in data.json's n_ignored: a folder's .heic photos are not left out unsaid)
        n = sum(kinds.values())
        each = ", ".join(f"{k} {ext or 'with no extension'}" for ext, k in kinds.items())
        log.info("folder %s: %s not read, %s no image Pillow decodes here (%s; e.g. %s); data.json counts them "
                 "(n_ignored, ignored_extensions)", root, plural(n, "file"), "its extension names" if n == 1 else
                 "their extensions name", each, info["ignored_first"])
