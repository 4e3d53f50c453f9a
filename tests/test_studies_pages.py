"""What study.html and study.md show a reader: a page that names no machine's path, conditions columns headed in
words (the key kept findable), and a measure that read the same in every seed marked in its figure."""
import json

from downpour.studies.run import run_study
from planted_study import planted  # noqa: F401 (a fixture)


def test_a_page_gives_its_command_without_this_machines_path(planted, tmp_path):
    """"Reproduce with `downpour study costs ... --out /tmp/q/real/costs`" named one machine's folder on a page read
    moved or copied: the folder's name is given, run where the folder is."""
    folder = run_study("planted", tmp_path / "one", quick=True, seeds=2, jobs=1)
    assert str(tmp_path) in json.loads((folder / "study.json").read_text())["command"]     # (study.json keeps it)
    html, md = (folder / "study.html").read_text(), (folder / "study.md").read_text()
    assert str(tmp_path) not in html and str(tmp_path) not in md
    said = "downpour study planted --quick --seeds 2 --out one"
    assert f"Reproduce with <code>{said}</code> in the folder that holds this one." in html
    assert f"Reproduce with `{said}` in the folder that holds this one." in md


def test_a_relative_out_is_given_as_it_was_run(planted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = run_study("planted", "studies/one", quick=True, seeds=2, jobs=1)
    assert "Reproduce with `downpour study planted --quick --seeds 2 --out studies/one`. " in (
        folder / "study.md").read_text()
