"""The planted study the study framework's tests run (tests/test_studies_*.py, test_study_stops.py): two
conditions whose figures are known functions of the seed, no training; the ``planted`` fixture that registers it
(its cells' calls in ``CALLS``), one whose every cell diverged, and the edits of a folder's cells.jsonl."""
import json

import pytest

from downpour import studies
from downpour.studies.base import Condition, Study
from downpour.studies.stats import mean_ci

CALLS: list[tuple[str, int]] = []


class Planted(Study):
    """Two conditions whose figures are known functions of the seed; no training."""

    name = "planted"
    question = "Does b beat a?"
    base = "teacher-student"
    seeds_quick = 3
    quick_what = "planted figures"

    def conditions(self):
        return [Condition("a", {"k": 1}, (("train.lr", 0.1),)), Condition("b", {"k": 2}, (("train.lr", 0.2),))]

    def run_cell(self, condition, seed, context):
        CALLS.append((condition.name, seed))
        cfg = self.cell_config(condition, seed)
        return {"lr": cfg.train.lr, "seed": float(cfg.seed), "x": float(seed % 2) + (condition.name == "b"),
                "steps": float(cfg.train.steps)}

    def summarise(self, conditions, cells, seeds):
        return [{"condition": c.name, "group": "", "params": c.params, "n": len(seeds),
                 "figures": {"x": list(mean_ci([cells[(c.name, s)]["x"] for s in seeds]))}} for c in conditions]

    def verdict(self, rows):
        return f"b minus a: {rows[1]['figures']['x'][0] - rows[0]['figures']['x'][0]:.1f}"


def quick_warning(seeds):
    """What the runner puts first in a quick verdict of :class:`Planted` (run.verdict_text)."""
    return f"This is the quick setting (planted figures, {seeds} seeds): a smoke test of the machinery, not an answer."


@pytest.fixture
def planted(monkeypatch):
    """Planted as the study "planted" (by this module's name, which a worker process imports), its calls cleared."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:Planted")
    CALLS.clear()


def edit_cells(folder, edit):
    """A study folder's cells.jsonl rewritten with ``edit(row)`` applied to each cell's line, as a hand edit would."""
    path = folder / "cells.jsonl"
    header, *rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        edit(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *rows]))


def rename(row, figure, to):
    row["figures"][to] = row["figures"].pop(figure)


class EveryCellDiverges(Planted):
    """Every cell diverged, as a measured cell records it (its design's figures alone); the verdict and the
    figures read a trained figure, as every measured study's do."""

    def conditions(self):
        return [Condition("a", {}, ()), Condition("b", {"vs": "a"}, ())]

    def run_cell(self, condition, seed, context):
        return {"diverged": 1.0, "params": 5.0 + (condition.name == "b")}

    def summarise(self, conditions, cells, seeds):
        from downpour.studies.compare import compare_rows

        return compare_rows(conditions, cells, seeds, {"x": 0.1})

    def figures(self, rows, cells, folder):
        return [folder / f"{rows[0]['figures']['x'][0]}.png"]
