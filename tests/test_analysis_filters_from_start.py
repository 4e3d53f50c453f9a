"""How far training moved the first-layer filters from the weights it started from (analysis.json's
filters.from_start, the report's note under the filters): cnn-faces' conv1 after its 400 steps keeps a cosine of
0.90 with its start (seed 0), so its picture is mostly the random initialisation, which the edge test alone did not
say (0% edge-like, as noise). The start it compares with is rebuilt from the run's seed and checked against the
fingerprint training recorded of its start (environment.json's start_weights)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from downpour.analysis.filter_stats import from_start, start_part
from downpour.analysis.options import open_run
from downpour.analysis.report_notes import moved_note
from downpour.analysis.run import random_twin
from downpour.config import load_config
from downpour.ps.cluster import run_cluster
from downpour.train.environment import FILE
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir
from downpour.train.start_weights import KEY, digest

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
    run, model = _trained(tmp_path / "r", runner)
    filters = model.first_layer_filters().numpy()
    m = from_start(filters, random_twin(run, 4).first_layer_filters().numpy(),
                   random_twin(run, 5).first_layer_filters().numpy())
    assert m["min"] == pytest.approx(1.0, abs=1e-6) and abs(m["other_draw"]) < 0.3
    # ... and the fingerprint training recorded of its start is the rebuilt start's
    recorded = json.loads((run.path / FILE).read_text())[KEY]
    assert recorded == digest(random_twin(run, 4).first_layer_filters()) != digest(model.first_layer_filters() * 2)


def _trained(path, runner="local", *more):
    """cnn-faces after one step of lr 1e-12 (its filters: their start), seed 4; (its RunDir, its model)."""
    sets = ["train.steps=1", "train.lr=1e-12", "train.tensorboard=false", "seed=4", *more]
    sets += ["cluster.runner=simulated", "cluster.workers=2", "cluster.shards=2"] if runner == "simulated" else []
    cfg = load_config("cnn-faces", sets)
    (run_local if runner == "local" else run_cluster)(cfg, RunDir.create(path, cfg))
    return open_run(path)


def _start_part(run, model):
    """analysis.json's filters part of ``from_start`` for the run, as the analysis computes it."""
    return start_part(run.path, model.first_layer_filters(), random_twin(run, 4).first_layer_filters(),
                      random_twin(run, 5).first_layer_filters(), 4)


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_start_that_is_not_the_recorded_one_leaves_from_start_out_saying_why(tmp_path, runner):
    """A rebuilt start that is not the one training began from (a torch draw put before the model is built, a run
    trained by another version) would read as "moved as far as another draw" for filters that never moved: left out,
    the reason in analysis.json and the report. Matching, it is said verified; a run from before the fingerprint keeps
    from_start, unverified."""
    run, model = _trained(tmp_path / "r", runner)
    assert _start_part(run, model)["from_start"]["verified"] is True
    record = json.loads((run.path / FILE).read_text())
    (run.path / FILE).write_text(json.dumps({**record, KEY: {**record[KEY], "sha256": "0" * 64}}))
    part = _start_part(run, model)
    assert "from_start" not in part
    why = part["from_start_left_out"]
    assert why.startswith("the starting weights rebuilt from seed 4 are not the ones training started from: ")
    assert f"{run.path / FILE}'s {KEY} records 000000000000..." in why
    assert f"The{why[3:]}." in moved_note(part).replace("&#x27;", "'") and "trained under" not in why
    stale = {**record, KEY: {**record[KEY], "sha256": "0" * 64}, "torch": "1.0.0+stand-in"}
    (run.path / FILE).write_text(json.dumps(stale))                  # ... and the install it was trained under, named
    assert _start_part(run, model)["from_start_left_out"].endswith("(trained under torch 1.0.0+stand-in (here "
                                                                  f"{record['torch']}))")
    (run.path / FILE).write_text(json.dumps({**record, KEY: "stand-in"}))       # damaged: named, not trusted
    assert f"{KEY} is 'stand-in', not a {{sha256, shape}}" in _start_part(run, model)["from_start_left_out"]
    (run.path / FILE).write_text(json.dumps({k: v for k, v in record.items() if k != KEY}))   # a run from before
    m = _start_part(run, model)["from_start"]
    assert m["verified"] is False and m["min"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_resume_keeps_the_first_go_s_fingerprint_under_the_same_install_and_another(tmp_path, runner):
    """What a resume builds or restores is not the run's start: its environment.json keeps the first go's
    fingerprint (a stand-in here, so that one recorded again would show), also where another install moves the old
    record into ``earlier``."""
    run, _ = _trained(tmp_path / "r", runner, "train.checkpoint_every=1")
    record = json.loads((run.path / FILE).read_text())
    kept = {"sha256": "1" * 64, "shape": record[KEY]["shape"]}
    (run.path / FILE).write_text(json.dumps({**record, KEY: kept}))
    resume = run_local if runner == "local" else run_cluster
    resume(load_config(str(run.path / "config.toml"), ["train.steps=2"]), RunDir.open(run.path), resume=True)
    assert json.loads((run.path / FILE).read_text())[KEY] == kept
    (run.path / FILE).write_text(json.dumps({**record, KEY: kept, "numpy": "1.0.0"}))      # another install's
    resume(load_config(str(run.path / "config.toml"), ["train.steps=3"]), RunDir.open(run.path), resume=True)
    again = json.loads((run.path / FILE).read_text())
    assert again[KEY] == kept and again["earlier"][0]["numpy"] == "1.0.0" and again["step"] == 2


def test_the_report_says_how_near_the_start_the_pictured_filters_are():
    said = moved_note({"from_start": {"mean": 0.896, "min": 0.681, "max": 0.979, "other_draw": -0.107}})
    assert "cosine 0.90 on average, 0.68–0.98" in said and "another random draw (the random twin&#x27;s), -0.11" \
        in said.replace("'", "&#x27;")
    assert moved_note({}) == ""                                   # a given first layer, or an older analysis.json
