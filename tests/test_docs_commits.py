"""The commits README.md, docs/**/*.md, bench/*.py and downpour/**/*.py cite (``measured at 7071082``, ``(34970d89)``)
are in the checkout's history, so that a reader of a clone can check out the code behind a figure. A branch rebased or
cherry-picked onto main gets new ids: a figure measured on it and cited by the old id names a commit no clone has.

A cited id is any run of 7-40 hex digits with a letter and a digit (or digits alone right after ``commit``), except one
followed by ``...`` (an md5 or sha256 prefix) or after ``node`` (a Ray node's id). The history is read with one
``git rev-list HEAD``: reachable from HEAD, not merely present (a rebase leaves the old commits in a working
repository's objects for weeks, where a fresh clone has none of them). Skipped without git history (an sdist, a
shallow clone)."""
import functools
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "bench").glob("*.py")),
         *sorted((ROOT / "downpour").rglob("*.py"))]
HEX = re.compile(r"(?<![\w./#-])[0-9a-f]{7,40}(?![\w-]|\.\.\.|…)")
NODE = re.compile(r"node `{0,2}$")
# ids the text itself says are not main's, each with where it says so
NOT_IN_HISTORY = {
    "4bb55163": "docs/studies/history.md: 'a helper branch's commit that is not on main' (faf77181's code plus two)",
    "240f5c8": "docs/sandblaster.md: 26f8d488 'then 240f5c8 on a helper branch'",
    "ca0264f": "docs/benchmarks.md: 5ccb0d29 'measured as ca0264f on a helper branch'",
    "aeca304": "docs/benchmarks.md: 2c83b2d 'measured as aeca304, the same change before it was rebased'",
    "8c941ee": "docs/benchmarks.md: 91ea5a4 'measured as 8c941ee'",
    "1a2b3c4d": "a made-up machine key in an example message (docs/studies/history.md, studies/machine.py)",
    "5e6f7a8b": "a made-up machine key in an example message (docs/studies/history.md)",
}


def _an_id(text: str, m: re.Match) -> bool:
    """Hex with a letter and a digit, or digits alone after ``commit`` (a number otherwise); not a node's id."""
    before, h = text[max(0, m.start() - 10):m.start()], m.group(0)
    if h.isdigit():
        return before.endswith("commit ")
    return not h.isalpha() and not NODE.search(before)


@functools.cache
def _cited() -> dict[str, list[str]]:
    """Each cited id and where: ``path:line``."""
    where: dict[str, list[str]] = {}
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for m in HEX.finditer(text):
            if _an_id(text, m):
                line = text.count("\n", 0, m.start()) + 1
                where.setdefault(m.group(0), []).append(f"{path.relative_to(ROOT)}:{line}")
    return where


def _history() -> list[str]:
    """Every commit reachable from HEAD (full ids); skips where there is no such history to read."""
    try:
        top = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--show-toplevel", "--is-shallow-repository"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        if Path(top[0]).resolve() != ROOT:       # an unpacked sdist inside some other repository
            pytest.skip(f"{ROOT} is not the top of a git checkout")
        if top[1] == "true":
            pytest.skip("a shallow clone: the cited commits' history is not here")
        return subprocess.run(["git", "-C", str(ROOT), "rev-list", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")


def test_the_docs_cite_commits_and_the_pattern_finds_them():
    cited = _cited()
    # a change of the pattern that found nothing would make the test below pass on nothing
    assert len(cited) >= 100 and "7071082" in cited and "34970d89" in cited
    assert not {"c7adc348", "cf8051e6"} & cited.keys()         # an md5 prefix (c7adc348...), a node's id


def test_every_cited_commit_is_in_the_history():
    history = _history()
    cited = _cited()
    known = {h[:n] for h in history for n in {len(i) for i in cited}}
    missing = {i: where for i, where in cited.items() if i not in known and i not in NOT_IN_HISTORY}
    assert not missing, (
        "commits cited but not in HEAD's history (a rebase or cherry-pick gave them new ids: find the copy with the "
        "same subject and author date, `git log --format='%h %ad %s' --date=iso | grep ...`, or say in the text what "
        "the id is and add it to NOT_IN_HISTORY): "
        + "; ".join(f"{i} at {', '.join(where[:3])}" for i, where in sorted(missing.items())))


def test_each_id_said_not_to_be_in_the_history_is_still_cited():
    stale = NOT_IN_HISTORY.keys() - _cited().keys()
    assert not stale, f"NOT_IN_HISTORY lists ids no doc cites any more: {sorted(stale)}"
