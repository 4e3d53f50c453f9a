"""What a refused command line is told beside argparse's "unrecognized arguments": the nearest flag the command
takes (:func:`nearest_flag`), or that the shell split a ``--set`` value at a space (:func:`split_set`). Read by
``cli._parse``; tests/test_cli.py runs each case through the command."""
from __future__ import annotations

import argparse

from downpour._names import closest


# one layout, two commands' words: `downpour plan` lays out replicas, `downpour train` starts that many workers
SAME_AS = {"--replicas": "--workers", "--workers": "--replicas"}


def nearest_flag(flag: str, flags: list[str]) -> str:
    """' (did you mean '--x'?)' for the long flag nearest ``flag``, or ''; matched without the dashes, which every
    long flag shares (with them `downpour plan --frobnicate` would be told "did you mean '--replicas'?")."""
    if not flag.startswith("--"):
        return ""
    if SAME_AS.get(flag) in flags:   # (train --replicas, plan --workers: not unknown, nor "--cores?")
        return f" (this command calls them {SAME_AS[flag]})"
    match = closest(flag[2:], [f[2:] for f in flags if f.startswith("--")])
    return f" (did you mean {'--' + match!r}?)" if match else ""


def split_set(words: list[str], after: list[str]) -> str:
    """' (...)' where ``after`` begins with the rest of a --set value the shell split at a space (`--set
    model.maps=[4, 4]` unquoted, not "unrecognized arguments: 4]" alone), else ''."""
    at = next((i for i in range(1, len(words)) if words[i] == after[0]
               and (words[i - 1].startswith("--set=") or i > 1 and words[i - 2] == "--set")), None)
    if at is None:
        return ""
    value = [words[at - 1].removeprefix("--set=")]
    for word in words[at:]:        # the words up to the one that closes its brackets or quotes (a stray word after
        if _closed(" ".join(value)) or word.startswith("--"):      # it is another leftover)
            break
        value.append(word)
    if len(value) == 1:
        return ""
    return f" (the shell split a --set value at a space: quote it whole, --set '{' '.join(value)}')"


def _closed(value: str) -> bool:
    """Whether every bracket and double quote ``value`` opens it also closes (as counted, not parsed)."""
    return value.count("[") + value.count("{") <= value.count("]") + value.count("}") and value.count('"') % 2 == 0


def flags_of(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string ``parser`` takes (argparse has no public list: tests/test_cli.py's refusals guard it)."""
    return [flag for action in parser._actions for flag in action.option_strings]
