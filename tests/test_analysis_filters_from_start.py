"""How far training moved the first-layer filters from the weights it started from (analysis.json's
filters.from_start, the report's note under the filters): cnn-faces' conv1 after its 400 steps keeps a cosine of
0.90 with its start (seed 0), so its picture is mostly the random initialisation, which the edge test alone did not
say (0% edge-like, as noise)."""
from __future__ import annotations

import numpy as np
import pytest

from downpour.analysis.filter_stats import from_start
from downpour.analysis.options import open_run
from downpour.analysis.report_notes import moved_note
from downpour.analysis.run import random_twin
from downpour.config import load_config
from downpour.ps.cluster import run_cluster
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")   # a tiny net: see conftest.py


def test_the_cosine_to_the_start_is_one_when_unmoved_and_that_of_an_unrelated_draw_otherwise():
    rng = np.random.default_rng(0)
    start, other = rng.normal(size=(2, 16, 1, 5, 5))
    same = from_start(3.0 * start, start, other)                   # scaled: unmoved but for scale
    assert same["mean"] == pytest.approx(1.0) and same["min"] == pytest.approx(1.0)
    assert abs(same["other_draw"]) < 0.2                          # two random draws: about 0 (25 weights a filter)
    half = start.copy()
    half[:8] = -half[:8]                                          # 8 of 16 turned over
    moved = from_start(half, start, other)
    assert (moved["mean"], moved["min"], moved["max"]) == pytest.approx((0.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="differ"):
        from_start(start[:4], start, other)


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_run_s_start_is_its_architecture_built_with_its_own_seed(tmp_path, runner):
    """What the analysis compares with is what training began from: after one Adam step of 1e-12 the filters are
    their start, and another seed's draw is unrelated (a start rebuilt wrong would read as moved). The cluster's
    start is built on its driver (set_up_cluster, the simulator's and Ray's alike), after the run's seed."""
    sets = ["train.steps=1", "train.lr=1e-12", "train.tensorboard=false", "seed=4"]
    sets += ["cluster.runner=simulated", "cluster.workers=2", "cluster.shards=2"] if runner == "simulated" else []
    cfg = load_config("cnn-faces", sets)
    run = RunDir.create(tmp_path / "r", cfg)
    (run_local if runner == "local" else run_cluster)(cfg, run)
    run, model = open_run(tmp_path / "r")
    filters = model.first_layer_filters().numpy()
    m = from_start(filters, random_twin(run, 4).first_layer_filters().numpy(),
                   random_twin(run, 5).first_layer_filters().numpy())
    assert m["min"] == pytest.approx(1.0, abs=1e-6) and abs(m["other_draw"]) < 0.3


def test_the_report_says_how_near_the_start_the_pictured_filters_are():
    said = moved_note({"from_start": {"mean": 0.896, "min": 0.681, "max": 0.979, "other_draw": -0.107}})
    assert "cosine 0.90 on average, 0.68–0.98" in said and "another random draw (the random twin&#x27;s), -0.11" \
        in said.replace("'", "&#x27;")
    assert moved_note({}) == ""                                   # a given first layer, or an older analysis.json
