"""A cell whose run diverged is counted out by the framework, in every study: not only the measured studies'
(tests/test_study_owed.py), whose train_and_measure counted theirs out itself."""
import dataclasses
import json

import pytest

from downpour import studies
from downpour.studies import costs
from downpour.studies.base import Condition
from downpour.studies.costs import CostsStudy
from downpour.studies.first_layer import FirstLayerStudy
from downpour.studies.flat_skipping import FlatSkippingStudy
from downpour.studies.designs import costs as costs_design
from downpour.studies.run import run_study
from downpour.studies.stats import mean_ci

from planted_study import Planted

pytestmark = pytest.mark.usefixtures("one_thread")

RUNAWAY_CELL = ("more/weight_l2=0.001", 0)


class CostsWithARunaway(CostsStudy):
    """The quick costs study at 6 steps, a row a step, on one penalty (weight decay), its cell of seed 0 with
    10,000 patches at Adam's rate 10,000: its loss 0.8998 at step 1 -> 1.805e+08 at step 6, every number finite
    (runners.train's summary says it diverged; the study measured it as trained until 2026-12-06)."""

    log_every: int | None = 1

    def cell_config(self, condition, seed):
        cfg = super().cell_config(condition, seed)
        train = {"steps": 6, **({"log_every": self.log_every} if self.log_every else {}),
                 **({"lr": 1e4} if (condition.name, seed) == RUNAWAY_CELL else {})}
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


class CostsWithARunawayAtItsRate(CostsWithARunaway):
    """The same at the study's own train.log_every (50): one row, at step 6, the mean of the 6 steps, which until
    2026-12-06 had nothing to compare with (its first step's loss is model.json's first_trained since)."""

    log_every = None


@pytest.mark.parametrize("study", ["CostsWithARunaway", "CostsWithARunawayAtItsRate"])
def test_a_costs_cell_whose_loss_ran_away_is_counted_out_and_named_and_the_study_finishes(monkeypatch, tmp_path,
                                                                                          caplog, study):
    for module in (costs, costs_design):
        monkeypatch.setattr(module, "QUICK_PENALTIES", {"weight_l2": (1e-3,)})
    monkeypatch.setitem(studies.STUDIES, "costs", f"{__name__}:{study}")
    run_study("costs", tmp_path, quick=True, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    row = next(r for r in result["cells"] if r["condition"] == RUNAWAY_CELL[0])
    assert row["diverged"] == 1 and all("diverged" not in r for r in result["cells"] if r is not row)
    assert "the loss ran away: left out of every trained figure's interval above): more/weight_l2=0.001 (1 of 2 " \
           "seeds)." in result["verdict"]
    assert row["missing"]["heldout_recon"] == 1 and row["missing"]["hoyer"] == 1     # seed 1's alone
    assert row["extra"]["probe_digits_raw_pixels"] > 0      # seed 1's (the raw pixels' probe was NaN for the row)
    cells = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()[1:]]
    assert [c["figures"] for c in cells if (c["condition"], c["seed"]) == RUNAWAY_CELL] == [{"diverged": 1.0}]
    assert "study costs: cell 'more/weight_l2=0.001', seed 0 diverged: its loss grew from 0.8998 at step 1" in caplog.text


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


class FirstLayerPlanted(FirstLayerStudy):
    """The quick first-layer study's figures planted, no training: gabor's seed 0 and every random seed diverged;
    gabor reaches the learned layer's cost in seeds 1 and 2 of the three it trained."""

    def run_cell(self, condition, seed, context):
        from downpour.errors import Diverged
        from downpour.studies.first_layer import LAYERS, PROBE_SETS
        from downpour.studies.trained import OWED

        k = condition.name
        if k == "random" or (k, seed) == ("gabor", 0):
            raise Diverged("every one of the 16 steps 1..16 had a non-finite cost")
        s = self.steps()
        end = 1.0 if k != "gabor" else (1.05 if seed in (1, 2) else 2.0)
        figures = {"edge_fraction": 0.5, "train_seconds": 1.0 + seed, "face_auc_lfw": 0.6, "face_auc_controls": 0.55,
                   **{f: 0.01 * seed for f in OWED}, "stage1_cost": end,
                   **{f"probe_{p}_{layer}": 0.5 + 0.01 * seed for p in PROBE_SETS for layer in (*LAYERS, "raw")}}
        for step in (8, s):
            figures[f"stage1_cost@{step}"] = end + (s - step) * 0.1
            figures[f"stage1_seconds@{step}"] = 0.1 * step
        return figures


def test_the_first_layer_study_counts_its_seeds_that_reached_the_cost_among_those_it_trained(monkeypatch, tmp_path):
    """Its verdict said gabor reached the cost 'in 3 of 4 seeds' (2 of the 3 measured, times 4), and a kind diverged
    in every seed stopped the study (round(nan)); one seed counted out made its raw-pixel probe and its cost curve NaN."""
    from downpour.studies import first_layer

    monkeypatch.setitem(studies.STUDIES, "first-layer", f"{__name__}:FirstLayerPlanted")
    drawn = {}
    real = first_layer.curves
    monkeypatch.setattr(first_layer, "curves", lambda series, *args, **kw: drawn.update(series) or real(series, *args, **kw))
    run_study("first-layer", tmp_path, quick=True, seeds=4, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    by = {r["condition"]: r for r in result["cells"]}
    assert by["gabor"]["diverged"] == 1 and by["random"]["diverged"] == 4
    assert "gabor in 2 of 3 seeds measured at step 16 on average" in result["verdict"]
    assert "random not measured (its run or the learned layer's diverged in every seed)" in result["verdict"]
    assert by["gabor"]["extra"]["probe_digits_raw_pixels"] == pytest.approx(0.52)   # seeds 1-3
    assert drawn["gabor"] == ([8, 16], [pytest.approx(4.1 / 3 + 0.8), pytest.approx(4.1 / 3)])   # seeds 1-3


class FlatSkippingPlanted(FlatSkippingStudy):
    """The quick flat-skipping study's figures planted, no training: its seed 0 diverged."""

    def run_cell(self, condition, seed, context):
        from downpour.errors import Diverged
        from downpour.studies.flat_skipping import MEASURED, SETS

        if seed == 0:
            raise Diverged("every one of the 32 steps 1..32 had a non-finite cost")
        out = {"layer_flops_share": 0.3}
        for key in ("off", *(f"{t:g}" for t in self.thresholds())):
            out.update({f"{key}/face_auc_lfw": 0.6, f"{key}/face_auc_controls": 0.55 + 0.01 * seed})
            for name in SETS:
                out.update({f"raw_flat/{name}": 0.25, f"{key}/{name}/probe": 0.5 + 0.01 * seed,
                            **{f"{key}/{name}/{f}": 0.5 for f in MEASURED if key != "off" and f != "probe"}})
        return out


def test_the_flat_skipping_studys_flat_area_is_its_measured_seeds_not_nan_for_one_counted_out(monkeypatch, tmp_path):
    """The raw images' flat area needs no training, but was the mean over every seed: one counted out read 'lfw nan%'."""
    monkeypatch.setitem(studies.STUDIES, "flat-skipping", f"{__name__}:FlatSkippingPlanted")
    run_study("flat-skipping", tmp_path, quick=True, seeds=3, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    assert "Flat area before preparation (share of 8x8 fields under variance 1e-4): lfw 25%, padded 25%, digits 25%." \
        in result["verdict"] and all(r["diverged"] == 1 for r in result["cells"])
    # (its rows, one a threshold and image set, were not its condition's name: the seed went unnamed)
    assert "the loss ran away: left out of every trained figure's interval above): whitened (1 of 3 seeds)." \
        in result["verdict"]
