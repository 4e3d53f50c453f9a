"""``index.html`` and ``index.md`` of a folder of study folders (``studies/`` by default): one line per study folder
beside them, so that several studies read on one page. Each line gives the study's question (its Q number and topic,
:mod:`~downpour.studies.about`), its setting and the first sentence of its verdict (the quick setting's warning, which
the setting says, left out), its seeds, its cells done and owed, when its study.json was written, the commits and
installs its cells ran at, links to its study.html and study.md, and its figures (study.json's ``figures``: in
index.html a thumbnail each, linking the image; in index.md a link each, by the figure's name).

A study rewrites the index of its folder's parent after its own pages, where that parent holds folders alone
(:func:`refresh_index`, from :func:`~downpour.studies.run.run_study`, a resumed one too); ``downpour study index [--out DIR]`` rewrites it by hand
(:func:`write_index`). A folder that holds none of :data:`STUDY_FILES` is left out; one whose study.json cannot be
read is listed as unreadable, naming the file; one with cells and no study.json yet (stopped, or running) as
unfinished. The index names no machine's path: its links are relative to its folder, its messages name a file by
its study folder (``torn/study.json``), so the folder reads the same moved or copied. Each file is written whole or
not at all, and an ``index.html`` or ``index.md`` that this module did not write (it lacks :data:`MARK`) is never
overwritten.
"""
from __future__ import annotations

import html
import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from downpour._names import plural
from downpour.config import ConfigError
from downpour.studies import table
from downpour.studies.about import question_number, topic
from downpour.studies.cells import cached_cells
from downpour.studies.html import html_table, page
from downpour.studies.markdown import md_table
from downpour.train.model_file import replace_text
from downpour.train.not_a_run import study_command

INDEX = ("index.html", "index.md")
STUDY_FILES = ("cells.jsonl", "context.json", "study.json")    # what marks a folder as a study's (its own or another's)
MARK = "<!-- the index of these study folders: `downpour study index` writes it again -->"
HEAD = ["study", "Q", "question", "setting", "verdict (its first sentence)", "seeds", "cells", "written", "commits",
        "installs", "figures"]
WRITTEN = "%Y-%m-%d %H:%M UTC"     # study.json's ``written`` (run.py), and a file's time said as one
TEXT = len(HEAD)        # every column is text (left-aligned)
# a folder's line: its ``folder``, ``pages`` ("yes" where study.html is there), HEAD's cells (``figures`` the figures'
# paths in the study folder, " "-separated, as study.json names them; the pages make them links)
Entry = dict[str, str]


def write_index(parent: Path) -> tuple[Path, Path]:
    """index.html and index.md of the study folders in ``parent``; a ConfigError where ``parent`` is not a folder or
    holds an index this module did not write."""
    if not parent.exists():   # (the default 'studies' before any study ran: "not a folder" read as a wrong path)
        raise ConfigError(f"{str(parent)!r} does not exist: no study has written its folder there yet (`downpour "
                          "study list` names them); or give --out, the folder that holds the study folders")
    if not parent.is_dir():
        raise ConfigError(f"{str(parent)!r} is not a folder: give the folder that holds the study folders")
    paths = parent / INDEX[0], parent / INDEX[1]
    for path in paths:
        if path.is_file() and MARK not in path.read_text(errors="replace"):
            raise ConfigError(f"{str(path)!r} was not written by `downpour study index`: left as it is")
    # (Q1 first, Q7 before a Q10; folders of no known question last, by name)
    entries = sorted(entries_of(parent), key=lambda e: (e["Q"] == "", int(e["Q"][1:] or 0), e["folder"]))
    # (not its absolute path, which a copy of the folder would carry as a false one: "in /tmp/q/real")
    said = f"{plural(len(entries), 'study folder')} in this folder ({parent.resolve().name})"
    replace_text(paths[0], page(f"downpour studies: {parent.resolve().name}", _html(entries, said)))
    replace_text(paths[1], _markdown(entries, said))
    return paths


def refresh_index(parent: Path) -> None:
    """:func:`write_index` after a study's pages, where ``parent`` holds folders alone (besides its index and hidden
    entries): a study run with ``--out q6`` in a project's checkout or ``--out /tmp/q6`` writes no index.md among
    their files unasked (``downpour study index --out DIR`` does). An index that cannot be written (another's
    index.html, a folder not writable) is said on stderr and left, never raised: the study's own pages are written."""
    try:
        files = sorted(p.name for p in parent.iterdir()
                       if not p.name.startswith(".") and p.name not in INDEX and not p.is_dir())
        if files:
            print(f"downpour study: no index written in {str(parent)!r}: it holds {plural(len(files), 'file')} beside "
                  f"its folders ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''}); `downpour study index "
                  f"--out {shlex.quote(str(parent))}` writes it there", file=sys.stderr, flush=True)
            return
        write_index(parent)
    except (OSError, ConfigError) as err:
        print(f"downpour study: the index of {str(parent)!r} is not written: {err}", file=sys.stderr, flush=True)


def entries_of(parent: Path) -> list[Entry]:
    """One entry per study folder in ``parent`` (in no order), those whose files cannot be read among them."""
    found = []
    for folder in parent.iterdir():
        try:
            if not (folder.is_dir() and any((folder / name).is_file() for name in STUDY_FILES)):
                continue
        except OSError:             # a folder this user cannot look into: not known to be a study's
            continue
        try:
            found.append(_entry(folder))
        except OSError as err:      # (its message names the file)
            found.append(_blank(folder, f"unreadable: {_here(folder, err)}"))
    return found


def _entry(folder: Path) -> Entry:
    path = folder / "study.json"
    if not path.is_file():
        return _unfinished(folder)
    try:
        result = json.loads(path.read_text(errors="replace"))
        _check(result)
    except ValueError as err:       # (json's JSONDecodeError is one)
        return _blank(folder, f"unreadable: {_here(folder, path)} ({err})")
    cells = _cells(folder / "cells.jsonl", result["seeds"])
    name = result["study"]
    sets = " ".join(f"--set {k}={v}" for k, v in _pairs(result.get("sets")))
    return {**_blank(folder, first_sentence(result)), "pages": "yes" if (folder / "study.html").is_file() else "",
            "study": name, "Q": question_number(name), "question": topic(name) or result["question"].split(":")[0],
            "setting": ("quick (a smoke test)" if result.get("quick") else "full") + (f", {sets}" if sets else ""),
            "seeds": table.seeds_said(result["seeds"]), "cells": cells, "written": _written(result, path),
            "commits": _counted(result.get("commits"), "commit"), "installs": _installs(result.get("installs")),
            "figures": " ".join(_figures(result.get("figures")))}


def _figures(names: Any) -> list[str]:
    """study.json's ``figures``, the paths in its folder of the study's images (a name with a space, or one reaching
    out of the folder, left out: the index links each within the folder)."""
    names = names if isinstance(names, list) else []
    return [n for n in names if isinstance(n, str) and n and " " not in n and not n.startswith(("/", ".."))]


def _here(folder: Path, said: object) -> str:
    """``said`` (a path, or an error naming one) with the folder's parent left out of it: "torn/study.json"."""
    return str(said).replace(str(folder.parent) + "/", "")


def _check(result: Any) -> None:
    """A ValueError naming what the index reads of study.json and this one lacks (a hand edit, another program's)."""
    if not isinstance(result, dict):
        raise ValueError("not a JSON object")
    kinds = {"study": str, "question": str, "verdict": str, "seeds": list}
    wrong = [key for key, kind in kinds.items() if not isinstance(result.get(key), kind)]
    if not wrong and not all(isinstance(seed, int) for seed in result["seeds"]):
        wrong.append("seeds")
    if wrong:
        raise ValueError(f"no readable {', '.join(map(repr, wrong))}")


def _cells(path: Path, seeds: list[int]) -> str:
    """"6 done, 0 owed": the cells of study.json's seeds, each condition cells.jsonl's header names (a study's rows
    need not be its cells' conditions: flat-skipping's are each condition's figures per image set) on each seed, done
    where cells.jsonl holds it; and any more it holds, which study.json leaves out."""
    try:
        conditions = _header(path).get("conditions")
    except ValueError as err:
        return f"unreadable: {_here(path.parent, path)}'s first line ({err})"
    if not isinstance(conditions, list):
        return f"not known: {_here(path.parent, path)} {'names no conditions' if path.is_file() else 'is gone'}"
    grid = {(c, seed) for c in conditions for seed in seeds}
    cached = {key for key in cached_cells(path) if key[0] in conditions}
    done = len(grid & cached)
    # (a resume with more --seeds stopped before its study.json, or a folder summarised at fewer)
    extra = f"; cells.jsonl holds {len(cached - grid)} more, which study.json leaves out" if cached - grid else ""
    return f"{done} done, {len(grid) - done} owed{extra}"


def _header(path: Path) -> dict[str, Any]:
    """cells.jsonl's first line, the study's settings ({} where there is no cells.jsonl); a ValueError where it is
    damaged."""
    if not path.is_file():
        return {}
    with open(path, errors="replace") as f:     # (its first line alone: cached_cells reads the rest)
        header = json.loads(f.readline())
    if not isinstance(header, dict):
        raise ValueError("not a JSON object")
    return header


def first_sentence(result: dict[str, Any]) -> str:
    """The verdict's first sentence; of a quick study's, the first after its warning (which the runner puts first, a
    paragraph of its own: the setting column says it)."""
    paragraphs = [p for p in result["verdict"].split("\n\n") if p.strip()]
    if result.get("quick") and len(paragraphs) > 1:
        paragraphs = paragraphs[1:]
    # a sentence ends at ".", "!" or "?" before a space and a capital: "0.07" and "e.g. the" go on
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraphs[0].strip(), maxsplit=1)[0] if paragraphs else ""


def _unfinished(folder: Path) -> Entry:
    """A study folder without study.json: its cells so far, and the command that finishes it (where its header,
    cells.jsonl's first line, says which study)."""
    path = folder / "cells.jsonl"
    try:
        header = _header(path)
    except ValueError as err:
        return _blank(folder, f"unreadable: {_here(folder, path)}'s first line, the study's settings ({err})")
    name = header.get("study") if isinstance(header.get("study"), str) else ""
    # (its --out the folder's name: run in the index's folder, wherever that is now)
    return {**_blank(folder, f"no study.json yet (stopped, or still running): `{study_command(header)} --out "
                             f"{shlex.quote(folder.name)}`, run here, finishes it"),
            "study": name, "Q": question_number(name), "question": topic(name),
            "setting": "" if not name else "quick (a smoke test)" if header.get("quick") is True else "full",
            "cells": f"{plural(len(cached_cells(path)), 'cell')} done"}


def _blank(folder: Path, verdict: str) -> Entry:
    return {"folder": folder.name, "pages": "", **dict.fromkeys(HEAD, ""), "verdict (its first sentence)": verdict}


def _pairs(sets: Any) -> list[tuple[Any, Any]]:
    return [(p[0], p[1]) for p in sets if isinstance(p, list) and len(p) == 2] if isinstance(sets, list) else []


def _written(result: dict[str, Any], path: Path) -> str:
    """When study.json was written: its ``written`` (UTC), or, for one written before it recorded that, the file's
    modification time, said so (a copy of the folder has the copy's)."""
    if isinstance(result.get("written"), str):
        return result["written"]
    return time.strftime(WRITTEN, time.gmtime(path.stat().st_mtime)) + " (the file's time)"


def _counted(found: Any, key: str) -> str:
    """"48b8cdae" of study.json's ``commits`` (or ``installs``, by ``id``), each with its cells where several."""
    found = [f for f in found if isinstance(f, dict) and key in f] if isinstance(found, list) else []
    if len(found) == 1:
        return str(found[0][key])
    return ", ".join(f"{f[key]} ({plural(f.get('cells', 0), 'cell')})" for f in found) or "not recorded"


def _installs(found: Any) -> str:
    """study.json's ``installs`` by ``id``, with the downpour version each records."""
    found = [dict(f, id=f"{f['id']} (downpour {f['install']['downpour']})")
             if isinstance(f.get("install"), dict) and "downpour" in f["install"] else f
             for f in found if isinstance(f, dict)] if isinstance(found, list) else []
    return _counted(found, "id")


def _html(entries: list[Entry], said: str) -> str:
    def cell(entry: Entry, column: str) -> str:
        if column == "study":     # (the folder's name is what the link opens; the study's, where it differs)
            shown = html.escape(entry["folder"]) + (f" <small>{html.escape(entry['study'])}</small>"
                                                    if entry["study"] not in ("", entry["folder"]) else "")
            return f'<a href="{html.escape(entry["folder"])}/study.html">{shown}</a>' if entry["pages"] else shown
        if column == "figures":      # (a thumbnail each, its name on hover, opening the image)
            return " ".join(f'<a href="{src}"><img src="{src}" alt="{stem}" title="{stem}" loading="lazy" '
                            f'style="height:48px;margin:0 2px"></a>'
                            for src, stem in ((html.escape(f"{entry['folder']}/{f}"), html.escape(Path(f).stem))
                                              for f in entry["figures"].split()))
        return html.escape(entry[column])
    rows = [[cell(e, c) for c in HEAD] for e in entries]
    return (f"{MARK}\n<h1>Studies</h1>\n<p>{html.escape(said)}, each a link to its study.html (its study.md "
            f"beside it) and its figures, a thumbnail each that opens the image. "
            f"{html.escape(_ABOUT)}</p>\n{html_table(HEAD, rows, TEXT) if rows else '<p>none</p>'}\n")


def _markdown(entries: list[Entry], said: str) -> str:
    escape = table.MARKDOWN.escape

    def cell(entry: Entry, column: str) -> str:
        if column == "study":
            shown = escape(entry["folder"]) + (f" ({escape(entry['study'])})"
                                               if entry["study"] not in ("", entry["folder"]) else "")
            return f"[{shown}]({entry['folder']}/study.md)" if entry["pages"] else shown
        if column == "figures":
            return ", ".join(f"[{escape(Path(f).stem)}]({entry['folder']}/{f})" for f in entry["figures"].split())
        return escape(entry[column])
    rows = [[cell(e, c) for c in HEAD] for e in entries]
    return "\n\n".join([MARK, "# Studies", f"{said}, each a link to its study.md and to each of its figures. {_ABOUT}",
                        md_table(HEAD, rows, TEXT) if rows else "none"]) + "\n"


_ABOUT = ("A quick study's verdict begins with its warning, left out here: its setting says it. Cells: each condition "
          "on each seed of study.json, done where cells.jsonl holds it; written: when study.json was. Every study "
          "rewrites this index when it finishes or is resumed.")
