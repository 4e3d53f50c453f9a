"""A study's quick setting, run once per test module, and what it must have written (issue 10): the
shared part of the tests/test_study_*.py modules; check_owed only for the face-test studies with twins; what
check_written reads for parentheses inside one another: tests/nesting.py."""
import contextlib
import html
import json
import math
import re
import unittest.mock

import pytest

from downpour.studies import design_class
from downpour.studies.about import ABOUT
from downpour.studies.run import run_study
from nesting import check_verdict_nests_nothing, nested

KEYS = ("study", "question", "cells", "seeds", "verdict", "command")


def run_quick(name, tmp_path_factory, seeds=2):
    """(folder, study.json) of ``downpour study NAME --quick --seeds 2`` in a fresh folder, its cells run in this
    process (``--jobs 1``): a pool of 2 worker processes cost the costs study 25 s of CPU where this process alone
    took 13 s (its fork server imports torch and the study again, each worker sets the study up anew; 2026-12-06),
    on a suite whose 2 cores are already busy with xdist's 2 processes. The pool is tested by
    tests/test_studies_running.py::test_cells_run_in_worker_processes."""
    folder = run_study(name, tmp_path_factory.mktemp(name), quick=True, seeds=seeds, jobs=1)
    return folder, json.loads((folder / "study.json").read_text())


def check_written(folder, result, name, seeds=2):
    """study.json's keys, one row per condition with its params and every figure as [value, low, high],
    study.html and every figure file; the verdict says it is the quick setting."""
    for key in KEYS:
        assert key in result, key
    assert result["study"] == name and result["seeds"] == list(range(seeds))
    assert "--quick" in result["command"]
    for row in result["cells"]:
        assert row["params"] and row["n"] == seeds
        for figure, triple in row["figures"].items():
            assert len(triple) == 3, (row["condition"], figure)
    assert (folder / "study.html").is_file()
    assert result["figures"] and all((folder / f).is_file() for f in result["figures"])
    check_markdown(folder, result)
    # first, before any reading (it came after the conclusions it qualifies: read last, if at all, in a terminal)
    assert result["verdict"].startswith("This is the quick setting (")
    assert f", {seeds} seeds): a smoke test of the machinery, not an answer.\n\n" in result["verdict"]
    assert result["verdict"].count("This is the quick setting") == 1    # (the runner's alone, not the study's too)
    # both pages say where the answer is: the full setting, its seeds and time (not "too few seeds" alone)
    full = (f"the answer is the full setting's, without --quick: {design_class(name).seeds_full} paired seeds per "
            f"condition, {ABOUT[name][1]} on 2 cores;")     # (no parenthesis around it: the time holds one)
    assert full in (folder / "study.md").read_text() and html.escape(full) in (folder / "study.html").read_text()
    # no parenthesis inside another: the page's words (its table's cells and the quoted verdict aside) and the verdict
    # from its rows as they are, with every interval unbounded and every reading a lead (tests/nesting.py)
    page = [line for line in (folder / "study.md").read_text().splitlines() if not line.startswith(("|", ">"))]
    assert nested("\n\n".join(page)) == []
    check_verdict_nests_nothing(name, result["cells"])


def check_markdown(folder, result):
    """study.md: the verdict word for word (each paragraph quoted), one table line per condition with as many cells as
    its heading, every figure linked by its path in the folder."""
    page = (folder / "study.md").read_text()
    for paragraph in result["verdict"].split("\n\n"):
        assert f"> {paragraph}" in page
    lines = page.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("| condition |")))
    width = lines[head].count(" | ")
    rows = lines[head + 2:head + 2 + len(result["cells"])]
    assert [r.split(" | ")[0] for r in rows] == [f"| {c['condition']}" for c in result["cells"]]
    assert all(r.replace("\\|", "").count(" | ") == width for r in rows)
    assert all(f"]({f})" in page for f in result["figures"])


def check_owed(folder, result):
    """A face-test study (Q2, Q4, Q5, Q7): every cell had its no-faces twin, its rows carry what the faces gave
    (the mean of the per-seed differences is the difference of the means), the verdict and a figure say it."""
    assert "What the faces gave" in result["verdict"] and (folder / "figures/face_owed_controls.png").is_file()
    for row in result["cells"]:
        f = row["figures"]
        assert math.isfinite(f["face_owed_controls"][0]), row["condition"]
        assert f["face_owed_controls"][0] == pytest.approx(f["face_auc_controls"][0] - f["face_auc_controls_no_faces"][0])


@contextlib.contextmanager
def drawn_not_saved():
    """Every figure drawn by Agg, each artist as ``savefig`` draws it, but not laid out tight and written: the drawing
    is where a figure fails; the layout and the PNG were 60% of mechanisms' 6 sets of figures (24 of 30 s of CPU
    in savefig, 2026-12-06). The study's own figures are saved and checked in each module's quick test."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with unittest.mock.patch.object(Figure, "savefig", lambda fig, *args, **kwargs: FigureCanvasAgg(fig).draw()):
        yield


def check_every_condition_may_diverge(folder, name, tmp_path):
    """The study's rows, verdict and figures from its own quick cells with one condition diverged in every seed
    (what a measured cell records then: only ``diverged``), for each condition in turn: the verdicts indexed a
    figure such a row lacked (KeyError 'params', 'flops_fwd', 'train_flops') after every cell had run."""
    from downpour.studies import study_class
    from downpour.studies.diverged import summarised
    from downpour.studies.run import note_missing
    from downpour.studies.holm import holm
    from downpour.studies.stats import diverged_paragraph

    study = study_class(name)(quick=True)
    lines = (folder / "cells.jsonl").read_text().splitlines()[1:]
    cells = {(r["condition"], r["seed"]): r["figures"] for r in map(json.loads, lines)}
    seeds = sorted({s for _, s in cells})
    from downpour.studies.measure import DESIGN_FIGURES

    design = (*DESIGN_FIGURES, "steps", "train_flops")    # what a diverged cell keeps (steps: the architectures')
    for victim in [c.name for c in study.conditions()]:
        for kept in ((), design):         # a cell cached without the kept figures, and one with them
            planted = {**cells, **{(victim, s): {"diverged": 1.0, **{k: v for k, v in cells[(victim, s)].items()
                                                                     if k in kept}} for s in seeds}}
            rows, planted = summarised(study, study.conditions(), planted, seeds)
            note_missing(rows, planted, seeds)
            holm(rows)
            text = study.verdict(rows)
            assert text and f"{victim} ({len(seeds)} of {len(seeds)} seeds)" in diverged_paragraph(rows)
            assert not kept or not re.search(r"\bnan\b", text), text     # its parameters and FLOPs are said
            with drawn_not_saved():
                study.figures(rows, planted, tmp_path / victim / str(len(kept)))
    # every condition at once: what run_study reads to give its nothing-trained verdict in place of the study's
    every = {key: {"diverged": 1.0, **{k: v for k, v in got.items() if k in design}} for key, got in cells.items()}
    rows, _ = summarised(study, study.conditions(), every, seeds)
    assert all(r["diverged"] == r["n"] for r in rows) and all(math.isfinite(r["figures"]["params"][0]) for r in rows)
