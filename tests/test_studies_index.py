"""The index of a folder of study folders (index.html, index.md), written after every study and by
`downpour study index`: each study's line, its links, a damaged study.json, a folder that is not a study's, and an
index that is another's."""
import json
import re

import pytest

from downpour import studies
from downpour.cli import main
from downpour.studies import about
from downpour.studies.index import write_index
from downpour.studies.run import run_study
from planted_study import planted  # noqa: F401 (a fixture)


def rows(folder):
    """index.md's table as {the study column: its cells}, each row's first cell the link (or the name)."""
    lines = [line for line in (folder / "index.md").read_text().splitlines() if line.startswith("| ")][2:]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split(" | ")] for line in lines)}


@pytest.fixture
def numbered(monkeypatch):
    """The planted study as Q8 of the docs, its question's topic "Planted figures"."""
    monkeypatch.setitem(about.ABOUT, "planted", (8, "a second"))
    monkeypatch.setitem(studies.QUESTIONS, "planted", "Planted figures: does b beat a?")


def test_two_studies_are_listed_with_their_question_number_seeds_cells_and_links(planted, numbered, tmp_path):
    run_study("planted", tmp_path / "one", quick=True, seeds=3, jobs=1)
    run_study("planted", tmp_path / "two", quick=True, seeds=2, jobs=1)
    listed = rows(tmp_path)
    assert list(listed) == ["[one (planted)](one/study.md)", "[two (planted)](two/study.md)"]
    one, two = listed.values()
    assert one[:3] == ["Q8", "Planted figures", "quick (a smoke test)"]
    # the quick warning, which the verdict begins with, left out: the setting says it
    assert json.loads((tmp_path / "one" / "study.json").read_text())["verdict"].startswith("This is the quick setting")
    assert one[3] == "b minus a: 1.0" and two[3] == "b minus a: 1.0"
    assert one[4:6] == ["3 paired seeds per condition (seeds 0 to 2)", "6 done, 0 owed"]
    assert two[4:6] == ["2 paired seeds per condition (seeds 0 and 1)", "4 done, 0 owed"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", one[6])
    page = (tmp_path / "index.html").read_text()
    links = re.findall(r'<a href="([^"]+)">', page)
    assert links == ["one/study.html", "two/study.html"] and all((tmp_path / link).is_file() for link in links)
    assert "<td class=l>Q8</td><td class=l>Planted figures</td>" in page
    assert "<style>" in page and "td.l,th.l{text-align:left}" in page      # study.html's style


def test_each_study_says_its_own_question_number_in_question_order(planted, tmp_path):
    """study.json's own study names the line's Q number and topic (the registry's), Q1 first."""
    folder = run_study("planted", tmp_path / "zz", quick=True, seeds=2, jobs=1)
    result = json.loads((folder / "study.json").read_text())
    for name in ("costs", "staleness"):
        (tmp_path / name).mkdir()
        verdict = "The rate 0.07 helps (e.g. here). Then it does not." if name == "costs" else result["verdict"]
        (tmp_path / name / "study.json").write_text(json.dumps({**result, "study": name, "verdict": verdict,
                                                                "quick": False}))
    write_index(tmp_path)
    listed = rows(tmp_path)
    assert list(listed) == ["staleness", "costs", "[zz (planted)](zz/study.md)"]     # (no study.html: no link)
    assert listed["staleness"][:3] == ["Q1", "Local optima", "full"]
    # a full study's verdict from its first paragraph, its first sentence: "0.07" and "e.g. here" go on
    assert listed["costs"][:4] == ["Q6", "Cost-function design", "full", "The rate 0.07 helps (e.g. here)."]
    assert listed["staleness"][3].startswith("This is the quick setting")


def test_a_damaged_study_json_is_listed_unreadable_and_a_folder_that_is_no_study_is_left_out(planted, tmp_path):
    for name, text in (("torn", '{"study": "costs", "cel'), ("list", "[1, 2]"), ("edited", '{"study": "costs"}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.json").write_text(text)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("read the papers")
    run_study("planted", tmp_path / "one", quick=True, seeds=2, jobs=1)     # finishes, its pages written
    assert (tmp_path / "one" / "study.html").is_file()
    listed = rows(tmp_path)
    assert sorted(listed) == ["[one (planted)](one/study.md)", "edited", "list", "torn"]
    # each file named within the folder, not by this machine's path (until 2026-12-07 "unreadable: /tmp/.../torn/...")
    assert listed["torn"][3].startswith("unreadable: torn/study.json (Unterminated string")
    assert listed["list"][3] == "unreadable: list/study.json (not a JSON object)"
    assert listed["edited"][3] == "unreadable: edited/study.json (no readable 'question', 'verdict', 'seeds')"
    assert "notes" not in (tmp_path / "index.html").read_text()


def test_the_index_is_written_again_when_a_study_resumes_with_its_cells_done_and_owed(planted, tmp_path):
    one = run_study("planted", tmp_path / "one", quick=True, seeds=2, jobs=1)
    assert list(rows(tmp_path)) == ["[one (planted)](one/study.md)"]
    (tmp_path / "stopped").mkdir()      # a study stopped before its study.json: its cells so far
    (tmp_path / "stopped" / "cells.jsonl").write_text((one / "cells.jsonl").read_text())
    run_study("planted", one, quick=True, seeds=3, jobs=1)          # resumed with a third seed
    listed = rows(tmp_path)
    assert listed["[one (planted)](one/study.md)"][4:6] == ["3 paired seeds per condition (seeds 0 to 2)",
                                                           "6 done, 0 owed"]
    assert listed["stopped (planted)"][2:6] == [
        "quick (a smoke test)", f"no study.json yet (stopped, or still running): `downpour study planted --quick "
                                "--out stopped`, run here, finishes it", "", "4 cells done"]
    run_study("planted", one, quick=True, seeds=2, jobs=1)          # summarised at fewer seeds than it holds
    assert rows(tmp_path)["[one (planted)](one/study.md)"][5] == ("4 done, 0 owed; cells.jsonl holds 2 more, which "
                                                                  "study.json leaves out")
    lines = (one / "cells.jsonl").read_text().splitlines()
    dropped = next(i for i, line in enumerate(lines) if '"seed": 1' in line)
    (one / "cells.jsonl").write_text("\n".join(lines[:dropped] + lines[dropped + 1:]) + "\n")
    result = json.loads((one / "study.json").read_text())
    del result["written"]                       # a study.json written before it recorded when
    for row in result["cells"]:                 # rows that are not the cells' conditions (flat-skipping's)
        row["condition"] += "/lfw"
    (one / "study.json").write_text(json.dumps(result))
    write_index(tmp_path)
    cells = rows(tmp_path)["[one (planted)](one/study.md)"]
    assert cells[5].startswith("3 done, 1 owed") and cells[6].endswith(" UTC (the file's time)")
    (one / "cells.jsonl").unlink()
    write_index(tmp_path)
    assert rows(tmp_path)["[one (planted)](one/study.md)"][5] == "not known: one/cells.jsonl is gone"


def test_an_index_another_wrote_is_left_as_it_is(planted, tmp_path, capsys):
    (tmp_path / "index.html").write_text("<p>my own notes</p>")
    run_study("planted", tmp_path / "one", quick=True, seeds=2, jobs=1)     # finishes all the same
    assert "was not written by `downpour study index`: left as it is" in capsys.readouterr().err
    assert (tmp_path / "index.html").read_text() == "<p>my own notes</p>" and not (tmp_path / "index.md").exists()
    assert main(["study", "index", "--out", str(tmp_path)]) == 2


def test_a_folder_holding_files_beside_its_study_gets_no_index_unasked(planted, tmp_path, capsys):
    """`--out q6` in a project's checkout wrote index.html and index.md among its files."""
    (tmp_path / "README.md").write_text("my project")
    run_study("planted", tmp_path / "q6", quick=True, seeds=2, jobs=1)
    assert (f"no index written in {str(tmp_path)!r}: it holds 1 file beside its folders (README.md); `downpour study "
            f"index --out {tmp_path}` writes it there") in capsys.readouterr().err
    assert not (tmp_path / "index.html").exists() and not (tmp_path / "index.md").exists()
    assert main(["study", "index", "--out", str(tmp_path)]) == 0
    assert list(rows(tmp_path)) == ["[q6 (planted)](q6/study.md)"]


def test_study_index_writes_it_by_hand_and_refuses_a_studys_flags(planted, numbered, tmp_path, capsys):
    run_study("planted", tmp_path / "one", quick=True, seeds=2, jobs=1)
    (tmp_path / "index.html").unlink()
    (tmp_path / "index.md").unlink()
    capsys.readouterr()
    assert main(["study", "index", "--out", str(tmp_path)]) == 0
    assert f"written to {tmp_path / 'index.html'} (and index.md beside it)" in capsys.readouterr().out
    assert rows(tmp_path)["[one (planted)](one/study.md)"][0] == "Q8"
    assert main(["study", "index", "--out", str(tmp_path), "--seeds", "3", "--quick"]) == 2
    assert "--quick, --seeds: `downpour study index` only writes the index" in capsys.readouterr().err
    assert main(["study", "index", "--out", str(tmp_path / "none")]) == 2   # (it read "is not a folder")
    assert "none' does not exist: no study has written its folder there yet" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main(["study", "index", "--out", str(tmp_path / "a-file")]) == 2
    assert "a-file' is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):                   # the command's help, not "unknown study 'index'"
        main(["study", "index", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "'index' (index.html and index.md of the study folders in --out, default studies" in said


def test_no_study_is_named_as_a_word_of_the_command():
    assert not {"list", "index"} & set(studies.STUDIES)


def test_each_line_links_its_figures_and_the_index_names_no_machines_path(planted, tmp_path):
    """The index linked no figure, and said "2 study folders in /tmp/..." (a path a copied folder carries as a false
    one): its figures are linked (thumbnails in index.html) relative to the index, and no absolute path is in it."""
    one = run_study("planted", tmp_path / "one", quick=True, seeds=2, jobs=1)
    (one / "figures").mkdir()
    (one / "figures" / "x.png").write_bytes(b"\x89PNG planted")
    result = json.loads((one / "study.json").read_text())
    (one / "study.json").write_text(json.dumps({**result, "figures": ["figures/x.png", "/etc/y.png"]}))
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "cells.jsonl").write_text((one / "cells.jsonl").read_text())
    write_index(tmp_path)
    assert rows(tmp_path)["[one (planted)](one/study.md)"][-1] == "[x](one/figures/x.png)"   # (/etc's left out)
    page = (tmp_path / "index.html").read_text()
    assert '<a href="one/figures/x.png"><img src="one/figures/x.png" alt="x" title="x"' in page
    for name in ("index.html", "index.md"):
        text = (tmp_path / name).read_text()
        assert str(tmp_path) not in text and "/etc/" not in text, name
        assert f"1 study folder in this folder ({tmp_path.name})" in text or "2 study folders in this folder" in text
