"""Helpful errors: the nearest valid name to a wrong one, a path as a command to paste takes it, and a flag's whole
number, a Ray node as a log line names it, counted nouns and lists in a sentence's words."""
from __future__ import annotations

import argparse
import difflib
import shlex
from pathlib import Path
from typing import Iterable


def closest(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The valid choice nearest to ``word`` (difflib's ratio at least ``cutoff``), or None."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return match[0] if match else None


def nearest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest valid choice, or ''."""
    match = closest(word, choices)
    return f" (did you mean {match!r}?)" if match else ""


def node_named(node: str, addresses: dict[str, str]) -> str:
    """``node abcd1234 at 10.0.0.5``: a Ray node as a log line names it (its id's first 8 characters, as the placement
    lines do), with its IP address where ``addresses`` knows it; the report names them so too."""
    return f"node {node[:8]}" + (f" at {addresses[node]}" if addresses.get(node) else "")


def pasted(path: str | Path) -> str:
    """``path`` as a command an error suggests takes it, pasted into a shell (quoted where it holds a space or a quote:
    given bare, `--resume runs/my run` would be two words)."""
    return shlex.quote(str(path))


def listed(words: Iterable[str], last: str = "and") -> str:
    """``words`` as a sentence lists them: "a", "a and b", "a, b and c" (``last``: "or" for "a, b or c"). Joined with
    " and " alone, three or more would read "a and b and c"."""
    words = list(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}" if len(words) > 1 else "".join(words)


def plural(n: int, noun: str, many: str | None = None) -> str:
    """'1 image', '2 images' ('1 replica', '3 replicas'); ``many`` where adding an s does not make it ('1 child')."""
    return f"{n} {noun if n == 1 else many or noun + 's'}"


def none_could(n: int, noun: str, done: str) -> str:
    """"none of its 3 image files could be read", or of one "its one image file could not be read" (not "none of its
    1 image files"): what a source says where ``n`` files were tried and none was ``done``."""
    return f"its one {noun} could not {done}" if n == 1 else f"none of its {plural(n, noun)} could {done}"


def whole_number(value: object) -> int | None:
    """The whole number ``value`` means where a whole number is asked for: an int itself, a float that is one (1e3 and
    1000.0 are TOML's floats, and "2.0" a spec's part read as one: 1000 and 2 were meant); None otherwise (2.5, a bool,
    a word)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def whole_flag(flag: str, value: object) -> str:
    """``flag`` with ``value``, a ``--set`` key's, for a flag that takes a whole number: ``--replicas 1000`` for
    ``--set cluster.workers=1e3`` (TOML reads it as the float 1000.0, and the advice does not say
    "--replicas 1000.0", which the flag refuses); ``--shards N (a whole number; 2.5 is not one)``."""
    meant = None if isinstance(value, str) else whole_number(value)   # (a --set value; a word is not a number)
    return f"{flag} N (a whole number; {value!r} is not one)" if meant is None else f"{flag} {meant}"


def whole(value: str) -> int:
    """argparse's type for a flag that takes a whole number: ``1e3`` and ``2.0`` read as 1000 and 2 (as ``--set``
    reads them); anything else is refused with what the flag takes, after argparse's "argument --cores:" (not
    argparse's bare "invalid int value: '1.5'" for ``--cores 1.5``)."""
    try:
        return int(value)       # (exact: a float's reading of 9007199254740993 is ...992)
    except ValueError:
        meant = whole_number(value)
    if meant is None:
        raise argparse.ArgumentTypeError(f"takes a whole number; {value!r} is not one")
    return meant
