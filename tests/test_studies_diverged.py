"""A cell whose run diverged is counted out by the framework, in every study: not only the measured studies'
(tests/test_study_owed.py), whose train_and_measure counted theirs out itself."""
import dataclasses
import json

import pytest

from downpour import studies
from downpour.studies import costs
from downpour.studies.base import Condition
from downpour.studies.costs import CostsStudy
from downpour.studies.designs import costs as costs_design
from downpour.studies.run import run_study
from downpour.studies.stats import mean_ci

from test_studies_framework import Planted

pytestmark = pytest.mark.usefixtures("one_thread")

RUNAWAY_CELL = ("more/weight_l2=0.001", 0)


class CostsWithARunaway(CostsStudy):
    """The quick costs study at 6 steps, a row a step, on one penalty (weight decay), its cell of seed 0 with
    10,000 patches at Adam's rate 10,000: its loss 0.8998 at step 1 -> 1.805e+08 at step 6, every number finite
    (runners.train's summary says it diverged; the study measured it as trained until 2026-12-06)."""

    def cell_config(self, condition, seed):
        cfg = super().cell_config(condition, seed)
        train = {"steps": 6, "log_every": 1, **({"lr": 1e4} if (condition.name, seed) == RUNAWAY_CELL else {})}
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def test_a_costs_cell_whose_loss_ran_away_is_counted_out_and_named_and_the_study_finishes(monkeypatch, tmp_path,
                                                                                          caplog):
    for module in (costs, costs_design):
        monkeypatch.setattr(module, "QUICK_PENALTIES", {"weight_l2": (1e-3,)})
    monkeypatch.setitem(studies.STUDIES, "costs", f"{__name__}:CostsWithARunaway")
    run_study("costs", tmp_path, quick=True, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    row = next(r for r in result["cells"] if r["condition"] == RUNAWAY_CELL[0])
    assert row["diverged"] == 1 and all("diverged" not in r for r in result["cells"] if r is not row)
    assert "the loss ran away: left out of every trained figure's interval above): more/weight_l2=0.001 (1 of 2 " \
           "seeds)." in result["verdict"]
    assert row["missing"]["heldout_recon"] == 1 and row["missing"]["hoyer"] == 1     # seed 1's alone
    cells = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()[1:]]
    assert [c["figures"] for c in cells if (c["condition"], c["seed"]) == RUNAWAY_CELL] == [{"diverged": 1.0}]
    assert "study costs: cell 'more/weight_l2=0.001', seed 0 diverged: its loss grew from" in caplog.text


class DivergesInSeed0(Planted):
    """Planted whose summary reads a trained figure of every cell (as costs', first-layer's and flat-skipping's do),
    its cells of seed 0 raising Diverged (every step non-finite), or every cell's with ``EVERY``."""

    every = False

    def conditions(self):
        return [Condition("a", {}, ()), Condition("b", {"vs": "a"}, ())]

    def run_cell(self, condition, seed, context):
        from downpour.errors import Diverged

        if seed == 0 or self.every:
            raise Diverged("every one of the 3 steps 1..3 had a non-finite cost")
        return {"x": float(seed) + (condition.name == "b")}

    def summarise(self, conditions, cells, seeds):
        return [{"condition": c.name, "group": "", "params": c.params, "n": len(seeds),
                 "figures": {"x": list(mean_ci([cells[(c.name, s)]["x"] for s in seeds]))}} for c in conditions]


class EveryCellDivergesUnread(DivergesInSeed0):
    every = True


def test_a_diverged_cell_of_a_study_that_reads_every_cells_figures_is_counted_out(monkeypatch, tmp_path):
    """Diverged ended the study (its cells done kept); now its cell is {"diverged": 1.0}, a NaN to the summary."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:DivergesInSeed0")
    run_study("planted", tmp_path, quick=True, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    assert [r["diverged"] for r in result["cells"]] == [1, 1] and "a (1 of 3 seeds); b (1 of 3 seeds)" in result["verdict"]
    assert [r["figures"]["x"][0] for r in result["cells"]] == [1.5, 2.5]      # seeds 1 and 2
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:EveryCellDivergesUnread")
    run_study("planted", tmp_path / "every", quick=True, jobs=1)
    result = json.loads((tmp_path / "every" / "study.json").read_text())
    assert "Every one of the 6 cells diverged" in result["verdict"] and result["figures"] == []
    assert [r["diverged"] for r in result["cells"]] == [3, 3] and all(not r["figures"] for r in result["cells"])
