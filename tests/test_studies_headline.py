"""A verdict opens with the study's claim (its question answered from its rows, tests/test_studies_claims.py), then
Holm's count over the study's comparisons with the one of smallest Holm p and its number; the index of a folder of
studies shows the claim: verdicts opened with their setup or a paragraph of every figure (mechanisms' ran to 700
characters in the index), then with the count alone, the same prefix on every line (until 2026-12-07)."""
import json

from downpour import studies
from downpour.studies.claims import change
from downpour.studies.headline import COUNT, headline
from downpour.studies.index import write_index
from downpour.studies.run import run_study
from downpour.studies.holm import holm
from downpour.studies.stats import paired_test
from planted_study import Planted, planted  # noqa: F401 (a fixture)


def _rows(*tests):
    """One row per (condition, key, reading, p, interval), each a comparison against "a"."""
    rows = []
    for condition, key, reading, p, triple in tests:
        rows.append({"condition": condition, "figures": {key: triple},
                     "tests": {key: {"reading": reading, "p": p, "against": "a"}}})
    holm(rows)
    return rows


def test_the_count_names_how_many_comparisons_hold_and_the_smallest_holm_p():
    rows = _rows(("b", "delta_heldout_recon", "higher", 0.001, [0.27, 0.26, 0.28]),
                 ("c", "delta_probe_digits", "lower", 0.04, [-0.1, -0.2, -0.01]),
                 ("d", "delta_gap", "inconclusive", 0.5, [0.0, -1.0, 1.0]))
    assert headline(rows) == (f"{COUNT}: 1 of the 3 comparisons holds (family-wise 5%); smallest Holm p: b against a: "
                              "held-out reconstruction error higher (Δ +0.27 [+0.26, +0.28]).")
    rows = _rows(("b", "delta_stage1_cost", "higher", 0.001, [5316.2, 5159.0, 5473.0]),
                 ("c", "delta_probe_digits", "lower", 0.002, [-0.1, -0.2, -0.01]))
    assert headline(rows) == (f"{COUNT}: 2 of the 2 comparisons hold (family-wise 5%); smallest Holm p: b against a: "
                              "final stage-1 cost higher (Δ +5316 [+5159, +5473]).")
    assert COUNT == "Holm's count over every comparison"     # (the claim before it is the study's answer)
    rows = [{"condition": "more", "figures": {"hoyer_gap_rank_correlation": [-0.8, -0.9, -0.7]},     # (a ρ, not a Δ)
             "tests": {"hoyer_gap_rank_correlation": {"reading": "lower", "p": 0.001, "correlation": True}}}]
    holm(rows)
    assert headline(rows).endswith("its one comparison, more: rank correlation of Hoyer sparsity and the gap "
                                   "negative (ρ -0.8 [-0.9, -0.7]), holds (Holm p 0.001).")


def test_where_none_holds_the_count_says_so_with_the_smallest_holm_p():
    rows = _rows(("b", "delta_probe_digits", "lower", 0.03, [-0.159, -0.175, -0.143]),
                 ("c", "delta_gap", "inconclusive", 0.5, [0.0, -1.0, 1.0]))
    assert headline(rows) == (f"{COUNT}: none of the 2 comparisons holds (family-wise 5%); smallest Holm p, 0.06: "
                              "b against a: digits probe accuracy lower (Δ -0.159 [-0.175, -0.143]).")
    rows = _rows(("c", "delta_gap", "inconclusive", 0.5, [0.0, -1.0, 1.0]),
                 ("d", "delta_gap", "inconclusive", 0.6, [0.0, -1.0, 1.0]))
    assert headline(rows) == f"{COUNT}: none of the 2 comparisons reads higher or lower."
    rows = _rows(("c", "delta_gap", "inconclusive", 0.5, [0.0, -1.0, 1.0]))
    assert headline(rows) == f"{COUNT}: its one comparison reads neither higher nor lower."
    rows = _rows(("b", "delta_gap", "lower", 0.07, [-0.2, -0.3, -0.1]))
    assert headline(rows) == (f"{COUNT}: its one comparison, b against a: over-fitting gap lower (Δ -0.2 [-0.3, "
                              "-0.1]), does not hold (Holm p 0.07).")
    assert headline([{"condition": "a", "figures": {}}]) == ""       # no comparison: the study's own words lead


class Compared(Planted):
    """The planted study with b's x compared against a's, paired on each seed; its claim says how b's x reads."""

    def summarise(self, conditions, cells, seeds):
        rows = super().summarise(conditions, cells, seeds)
        a, b = ([cells[(c, s)]["x"] for s in seeds] for c in ("a", "b"))
        rows[1]["figures"]["delta_x"], _ = paired_test(rows[1], "delta_x", a, b, 0.1, against="a")
        return rows

    def claim(self, rows):
        return f"Against a, b {change(rows[1], 'delta_x', 'x')}."


def test_the_index_shows_the_claim_first_and_the_verdict_keeps_the_rest(planted, tmp_path, monkeypatch):
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:Compared")
    folder = run_study("planted", tmp_path / "one", quick=True, seeds=3, jobs=1)
    paragraphs = json.loads((folder / "study.json").read_text())["verdict"].split("\n\n")
    claim, count = paragraphs[1].split(" Holm's", 1)
    # (b's x is a's plus 1 on every seed: no interval on 3 seeds, so no reading)
    assert claim == "Against a, b has an inconclusive effect on x (Δ +1.000, no interval: too few seeds to tell)."
    assert count.startswith(COUNT.removeprefix("Holm's"))
    assert paragraphs[2] == "b minus a: 1.0"
    write_index(tmp_path)
    line = next(line for line in (tmp_path / "index.md").read_text().splitlines() if line.startswith("| [one"))
    assert f"| {claim} |" in line and COUNT not in line
