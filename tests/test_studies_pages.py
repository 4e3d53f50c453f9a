"""What study.html and study.md show a reader: a page that names no machine's path, conditions columns headed in
words (the key kept findable), and a measure that read the same in every seed marked in its figure."""
import json
from html import unescape

from downpour import studies
from downpour.studies.run import run_study
from planted_study import Planted, planted  # noqa: F401 (a fixture)


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


def test_an_absolute_out_is_said_as_the_folders_name_in_either_of_its_forms():
    """``--out=/tmp/q/real/costs`` named the machine's folder where ``--out /tmp/q/real/costs`` did not."""
    from downpour.studies import table

    where = " in the folder that holds this one"
    for given, said in [("--out /tmp/q/real/costs", "--out costs"), ("--out=/tmp/q/real/costs/", "--out=costs"),
                        ("'--out=/tmp/my runs/costs'", "--out=costs")]:
        command = f"downpour study costs --quick --seeds 2 {given} --set train.steps=4"
        assert table.reproduce({"command": command}) == (
            f"downpour study costs --quick --seeds 2 {said} --set train.steps=4", where)
    for relative in ["--out studies/costs", "--out=studies/costs", "--seeds 2"]:    # (as run: no machine's path)
        command = f"downpour study costs {relative}"
        assert table.reproduce({"command": command}) == (command, "")


def test_the_conditions_columns_are_headed_in_words_their_keys_kept_findable():
    """The conditions tables were headed "delta_heldout_recon", "probe_lfw_stage1": the keys study.json stores. They
    read in words; study.html's heading carries its key as its title, and both pages list each key under the table."""
    from downpour.studies import table

    rows = [{"condition": "more/l1", "params": {"samples": 500}, "n": 3,
             "figures": {"heldout_recon": [0.2, 0.1, 0.3], "delta_heldout_recon": [0.05, 0.01, 0.09],
                         "probe_lfw_stage1": [0.8, 0.7, 0.9], "inv_shift_censored": [1.0, 0.0, 2.0]},
             "extra": {"d_probe_digits": "lower"}}]
    head, _, _ = table.conditions(rows, markup=table.MARKDOWN)
    assert head == ["condition", "samples", "n", "held-out reconstruction error", "Δ held-out reconstruction error",
                    "lfw probe accuracy on stage 1", "translation range: seeds at the sweep's end",
                    "Δ digits probe accuracy"]
    html_head, _, _ = table.conditions(rows, markup=table.HTML)
    assert html_head[4] == '<span title="delta_heldout_recon">Δ held-out reconstruction error</span>'
    assert html_head[1] == "samples"        # (words that are the key: no title)
    note = table.keys_note(rows)
    assert "Δ held-out reconstruction error: delta_heldout_recon;" in note and "samples:" not in note
    assert "Δ: a paired difference" in note
    own = table.keys_note(rows, {"heldout_recon": "error on held-out patches"})
    assert "error on held-out patches: heldout_recon;" in own


class DeltaPlanted(Planted):
    """The planted study, its figure stored as a paired difference's key."""

    def summarise(self, conditions, cells, seeds):
        return [{**row, "figures": {**row["figures"], "delta_probe_digits": row["figures"]["x"]}}
                for row in super().summarise(conditions, cells, seeds)]


def test_both_pages_show_the_words_and_the_keys(planted, tmp_path, monkeypatch):
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:DeltaPlanted")
    folder = run_study("planted", tmp_path / "one", quick=True, seeds=2, jobs=1)
    html, md = (folder / "study.html").read_text(), (folder / "study.md").read_text()
    assert '<th><span title="delta_probe_digits">Δ digits probe accuracy</span></th>' in html
    assert "| condition | k | n | x | Δ digits probe accuracy |" in md
    for page in (unescape(html), md):
        assert "Columns by study.json's keys: Δ digits probe accuracy: delta_probe_digits." in page


def test_a_table_whose_headings_are_its_keys_has_no_keys_note_on_either_page(planted, tmp_path):
    """study.html wrote an empty ``<p><small></small></p>`` under such a table; study.md wrote nothing."""
    folder = run_study("planted", tmp_path / "one", quick=True, seeds=2, jobs=1)
    html, md = (folder / "study.html").read_text(), (folder / "study.md").read_text()
    assert "| condition | k | n | x |" in md and "<th>x</th>" in html      # (every heading is its key)
    assert "<small></small>" not in html and "<p></p>" not in html
    assert "Columns by study.json's keys" not in html and "Columns by study.json's keys" not in md


class Drawn(Planted):
    """Planted with two figures: its x per condition with intervals, and a curve of x over the conditions."""

    def figures(self, rows, cells, folder):
        from downpour.studies.figures import interval_bars
        from downpour.studies.plots import curves

        names = [r["condition"] for r in rows]
        return [interval_bars(names, [r["figures"]["x"] for r in rows], folder / "x.png", "x (95% intervals)",
                              "planted x", reference=0.0),
                curves({"x": ([1, 2], [r["figures"]["x"][0] for r in rows])}, folder / "x_curve.png", "x", "k", "x")]


def test_each_figure_is_captioned_with_what_it_draws_and_the_seeds_of_the_study_it_reads(monkeypatch, tmp_path):
    """study.html showed its figures with no caption (the lower-bound note aside): each now says what it plots, what
    its points, bars and lines are, from the numbers it drew, and the study's seeds from its own study.json (3, as
    run_study was asked: not the 2 seeds every other test here runs)."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:Drawn")
    folder = run_study("planted", tmp_path / "one", quick=True, seeds=3, jobs=1)
    html, md = unescape((folder / "study.html").read_text()), (folder / "study.md").read_text()
    bars = "Each point: a condition's mean planted x over its seeds, for 2 conditions; its bar: the 95% interval of that"
    curve = "x against k, one line per series: x."
    seeds = "Seeds: 3 paired seeds per condition (seeds 0 to 2)."
    assert html.count("<figcaption>") == 2
    for said in (bars, "dashed line: 0.", curve, seeds):
        assert said in html and said in md, said
    assert html.count(seeds) == 2 and md.count(seeds) == 2        # under each figure
