"""A study folder says which commit of downpour's code its cells ran: a verdict cited from it can be traced to its
code."""
import html
import json
import subprocess
from pathlib import Path

import pytest

from downpour import studies
from downpour.studies.run import run_study

from planted_study import Planted  # noqa: F401 (the planted study, by name below)

ROOT = Path(__file__).resolve().parent.parent


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def here():
    """The commit the test's checkout is at, as git says it (``+changes`` where the package differs from it)."""
    try:
        head = _git("rev-parse", "HEAD")[:8]
        changed = _git("status", "--porcelain", "--", "downpour")    # (a new, untracked module of it too)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return head + ("+changes" if changed else "")


def test_each_cell_records_its_commit_and_the_page_says_it_beside_the_command(monkeypatch, tmp_path, here):
    """Until 2026-12-06 a folder recorded the command, seeds and platform of its cells but not the code they ran:
    docs/studies.md's "cells at 4bb55163 and bc9970f8" were written by hand, and a folder resumed after a pull mixed
    two commits unsaid."""
    monkeypatch.setitem(studies.STUDIES, "planted", "planted_study:Planted")
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    path = tmp_path / "cells.jsonl"
    header, *lines = path.read_text().splitlines()
    cells = [json.loads(line) for line in lines]
    assert [c["cost"]["commit"] for c in cells] == [here] * 4
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["commits"] == [{"commit": here, "cells": 4}]
    said = f"Its cells ran at commit {here} of downpour's code"
    assert said in (tmp_path / "study.md").read_text() and html.escape(said) in (tmp_path / "study.html").read_text()

    cells[0]["cost"]["commit"] = cells[1]["cost"]["commit"] = "0123abcd"   # resumed after a pull: two commits
    del cells[2]["cost"]["commit"]                                          # and a cell cached before it was recorded
    path.write_text("\n".join([header, *map(json.dumps, cells)]) + "\n")
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["commits"] == [{"commit": "0123abcd", "cells": 2}, {"commit": here, "cells": 1},
                                 {"commit": "unknown", "cells": 1}]
    said = (f"Its cells ran at 3 commits of downpour's code: 0123abcd (2 cells), {here} (1 cell), "
            "no recorded commit (1 cell)")
    assert said in (tmp_path / "study.md").read_text()


def their_repository(folder, name):
    """A user's own git repository at ``folder`` with one commit tracking the file ``name``."""
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    (folder / name).write_text("")
    subprocess.run(["git", "-C", str(folder), "add", name], check=True)
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "theirs"],
                   check=True)


def test_a_package_another_repository_does_not_track_records_no_commit(monkeypatch, tmp_path, here):
    """An install in a venv inside the user's own repository would have recorded that repository's commit."""
    from downpour.train import code_commit

    their_repository(tmp_path, "README")
    package = tmp_path / "venv" / "downpour"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(code_commit, "_PACKAGE", package)
    monkeypatch.setattr(code_commit, "_COMMIT", None)
    assert code_commit.code_commit() == ""
    monkeypatch.setattr(code_commit, "_PACKAGE", ROOT / "downpour")
    monkeypatch.setattr(code_commit, "_COMMIT", None)
    assert code_commit.code_commit() == here


def test_git_is_asked_of_the_package_not_of_a_repository_the_environment_names(monkeypatch, tmp_path):
    """Inside a git hook (GIT_DIR and GIT_INDEX_FILE set) git read the user's repository, whatever folder it was given:
    a package outside any checkout recorded the user's commit where their repository tracks an __init__.py."""
    from downpour.train import code_commit

    theirs = tmp_path / "theirs"
    their_repository(theirs, "__init__.py")
    package = tmp_path / "site-packages" / "downpour"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setenv("GIT_DIR", str(theirs / ".git"))
    monkeypatch.setattr(code_commit, "_PACKAGE", package)
    monkeypatch.setattr(code_commit, "_COMMIT", None)
    assert code_commit.code_commit() == ""


def test_a_new_untracked_module_in_the_package_says_changes_and_git_is_asked_once(monkeypatch, tmp_path):
    """Until 2026-12-06 git was asked with --untracked-files=no: a cell run with a new module of the package, not yet
    added, recorded the bare commit, though that commit alone does not hold the code that ran."""
    from downpour.train import code_commit

    their_repository(tmp_path, "__init__.py")         # the package's checkout, clean
    monkeypatch.setattr(code_commit, "_PACKAGE", tmp_path)
    monkeypatch.setattr(code_commit, "_COMMIT", None)
    head = code_commit.code_commit()
    assert len(head) == 8 and "+" not in head
    (tmp_path / "newmodule.py").write_text("X = 1\n")
    monkeypatch.setattr(code_commit, "_COMMIT", None)
    asked = []
    real = code_commit._git
    monkeypatch.setattr(code_commit, "_git", lambda *args: asked.append(args) or real(*args))
    assert code_commit.code_commit() == head + "+changes"
    calls = len(asked)
    assert code_commit.code_commit() == head + "+changes" and len(asked) == calls    # once a process


def test_a_same_as_cell_counts_once_at_its_originals_commit_or_unknown_when_it_is_gone():
    """A ``same_as`` cell was skipped as "counted at its original": where the original was not among the cells
    summarised, or gone (its line dropped as damaged, whose re-run then copied the copy: each names the other), the
    run was counted under no commit at all, and study.json's ``commits`` summed to fewer cells than ran."""
    from downpour.studies.code_commit import commits
    from downpour.studies.machine import platforms_note

    costs = {("a", 0): {"commit": "1111aaaa", "platform": {"cpu": "x"}}, ("b", 0): {"same_as": "a"},
             ("b", 1): {"same_as": "a"},                                   # its original (a, 1) is gone
             ("c", 2): {"same_as": "d"}, ("d", 2): {"same_as": "c"}}       # a loop: the original's line was dropped
    assert commits(costs, [("a", 0), ("b", 0)]) == [{"commit": "1111aaaa", "cells": 1}]    # one run, as before
    assert commits(costs, [("b", 0)]) == [{"commit": "1111aaaa", "cells": 1}]              # its original not summarised
    assert commits(costs, [("b", 1)]) == [{"commit": "unknown", "cells": 1}]
    assert commits(costs, [("c", 2), ("d", 2)]) == [{"commit": "unknown", "cells": 1}]
    assert platforms_note(costs, [("b", 1), ("c", 2), ("d", 2)])[0] == [{"id": "unknown", "cells": 2}]
