"""bench/tiled.py, bench/server_rules.py, bench/shard_apply.py, bench/face_test.py and bench/pool_lcn.py: a quick run
prints every row the docs read, and the tiled bench's forced paths are undone (the layer routes by lc.runs_banked again
afterwards)."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import pool_lcn  # noqa: E402
import server_rules  # noqa: E402
import shard_apply  # noqa: E402
import tiled  # noqa: E402

from downpour.layers import locally_connected as lc  # noqa: E402
from downpour.layers.locally_connected import LocallyConnected2d  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiled_prints_both_paths_per_shape_and_which_the_layer_takes(capsys):
    rule = lc.runs_banked
    tiled.main(["--shapes", "main", "--reps", "1", "--steps", "1"])
    assert lc.runs_banked is rule
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    shapes, summary = rows[:-1], rows[-1]
    assert [r["shape"] for r in shapes] == ["main stage 1", "main stage 2"]
    for r in shapes:
        assert r["banked_ms"] > 0 and r["expanded_ms"] > 0 and r["chosen"] == "expanded" and r["chosen_vs_best"] >= 1.0
        assert r["banks"] == 4 and len(r["banked_vs_expanded"]["range"]) == 2
    assert summary["summary"] and summary["shapes"] == 2 and 0 <= summary["rule_picked_faster"] <= 2


def test_forced_paths_route_a_tiled_layer_whichever_way_the_rule_would():
    layer = LocallyConnected2d(1, 8, 32, 8, tile=4)
    w = layer.effective_weight()
    for banked in (True, False):
        with tiled.forced(banked):
            assert layer._expanded(w, batch=32) is (not banked)


def test_tiled_inference_times_the_forward_and_the_rule_chooses_without_gradients(capsys):
    tiled.main(["--shapes", "main", "--reps", "1", "--steps", "1", "--inference"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    shapes, summary = rows[:-1], rows[-1]
    assert summary["inference"] and all(r["timed"] == "forward" for r in shapes)
    # without a weight gradient stage 1 (156 positions per bank) runs its convolutions, stage 2 (16) does not
    assert [r["chosen"] for r in shapes] == ["banked", "expanded"]


def test_shard_apply_prints_each_rules_fixed_cost_against_torch_and_checks_the_model(capsys):
    shard_apply.main(["--sizes", "1", "64", "65536", "--reps", "1", "--round-s", "0.001", "--rules", "sgd", "adam"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    *rules, summary = rows
    assert [r["rule"] for r in rules] == ["sgd", "adam"]
    for r in rules:
        assert set(r["us"]) == {"1", "64", "65536"}
        assert all(v[name]["median"] > 0 for v in r["us"].values() for name in ("shard", "rule", "torch"))
        assert r["fixed_us"] == r["us"]["1"]["shard"]["median"]      # a push of 1 value: the plan's APPLY_S
        # the model (fixed + bytes at the slope) is checked only between the sizes it was fitted to
        assert r["model_check"] is None or set(r["model_check"]) == {"64"}
    assert summary["fixed_us"] == {r["rule"]: r["fixed_us"] for r in rules}


@pytest.mark.parametrize("argv", [["--sizes", "8", "8"], ["--round-s", "0"], ["--rules", "rmsprop"]])
def test_shard_apply_refuses_sizes_that_give_no_rate_and_an_empty_round(argv):
    with pytest.raises(SystemExit):
        shard_apply.parse_args(argv)


def test_server_rules_prints_each_rule_against_torch(capsys):
    server_rules.main(["--numel", "2048", "--reps", "1", "--applies", "2"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["rule"], r["case"]) for r in rows] == [
        ("sgd", "dense"), ("momentum", "dense"), ("adagrad", "dense"), ("adam", "dense"),
        ("adam", "a quarter frozen (exact zeros)"), ("adam", "mixed step counts")]
    assert all(r["ours_ms"] > 0 and r["torch_ms"] > 0 and r["ratio"] >= 0 for r in rows)
    # ratio = ours / torch: above 1 exactly when ours took longer (a stall can round it to 0.0, never below)
    assert all((r["ratio"] - 1) * (r["ours_ms"] - r["torch_ms"]) >= 0 for r in rows)


def test_tiled_network_mode_times_each_tiling_on_both_paths(capsys):
    tiled.main(["--network", "--reps", "1", "--steps", "1"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["tile"] for r in rows] == [0, 4, 2, 1] and rows[0]["vs_untied"] == rows[0]["banked_vs_untied"] == 1.0
    assert all(r["step_ms"] > 0 and r["banked_step_ms"] > 0 for r in rows)


def test_tiled_sweep_prints_each_point_and_how_often_the_rule_is_near_the_faster_path(capsys, monkeypatch):
    monkeypatch.setattr(tiled, "SWEEP", [(1, 8, 16, 5, 2)])
    monkeypatch.setattr(tiled, "SWEEP_BATCHES", (1, 4))
    tiled.main(["--sweep"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["batch"] for r in rows[:-1]] == [1, 4] and all(r["chosen"] in ("banked", "expanded") for r in rows[:-1])
    assert rows[-1]["sweep"] and rows[-1]["points"] == 2 and 0 <= rows[-1]["rule_within_1.2x"] <= 2


def test_face_test_checks_both_auc_paths_against_ranking_and_prints_which_it_took(capsys, monkeypatch):
    import face_test

    monkeypatch.setattr(face_test, "SHAPES", {"small": (30, 15, 8), "large": (3000, 1500, 2)})   # pairs, then ranks
    face_test.main(["--reps", "1"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["shape"], r["path"]) for r in rows] == [("small", "pairs"), ("large", "ranks")]
    assert all(r["ms"]["ours"] > 0 and r["ms"]["rank"] > 0 for r in rows)


def test_pool_lcn_prints_every_row_the_docs_read(capsys):
    pool_lcn.main(["--reps", "1", "--shape", "main stage 2", "--shape", "one map of 804x804"])
    rows = {r["shape"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == {"main stage 2", "one map of 804x804"}
    for r in rows.values():
        assert all(v > 0 for v in r["ms"].values()) and r["lcn_max_error_f64"] < 1e-12
        # the ratio of the unrounded times, to 3 places; the printed times are rounded to 4 (0.825 against 0.826
        # recomputed from them failed a run under load)
        assert r["pool_vs_torch"] == pytest.approx(r["ms"]["pool"] / r["ms"]["pool_torch"], abs=2e-3)
        # pooling + LCN as a step runs them against the plan's filter rate, in the same run (docs/plan.md's default)
        assert r["pool_lcn_gflops"] > 0 and r["lc_gflops"] > 0
        assert r["pool_lcn_vs_lc"] == pytest.approx(r["pool_lcn_gflops"] / r["lc_gflops"], rel=1e-2, abs=2e-3)
    assert 0 < rows["main stage 2"]["share_of_step"] < 1 and "share_of_step" not in rows["one map of 804x804"]


def test_pool_lcn_times_a_step_without_its_unread_lcn_against_the_step_before_once_both_are_equal(capsys):
    rows = pool_lcn.main(["--reps", "2", "--unread-lcn"])
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows
    assert [(r["row"], r["stage"], r["equal"]) for r in rows] == [("unread_lcn", 1, True), ("unread_lcn", 2, True)]
    for r in rows:
        for key in ("", "cpu_"):                                          # wall, then CPU time
            assert r[f"{key}new_vs_old"] == pytest.approx(r[f"{key}ms_new"] / r[f"{key}ms_old"], abs=2e-3)
            assert r[f"{key}paired_range"][0] <= r[f"{key}paired_median"] <= r[f"{key}paired_range"][1]
