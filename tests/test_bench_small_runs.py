"""One real run per bench that had only its --help tested, at its smallest options (a few seconds each): the
rows the docs read come out, each figure beside its baseline with a finite, positive ratio (no time value is
asserted on), and the checks the bench makes on the way hold.

Left at their --help (tests/test_bench_protocol.py), each costing well over the ~8 s a test here may take on 2 cores:
start_up (the main job's data built 4 times and more, no smaller size in its tile mode: 107 s on 2 loaded cores),
spectral_fit (the same builds, for the same reason),
split_threads (4 fresh ``downpour train`` processes: 76 s at --steps 2 --reps 1), and the Ray benches:
parameter_server (a Ray of its own: 46 s at --sizes 0.01 --repeats 1 --reps 1; its start is checked below),
wait_order (a Ray of its own too, its start checked below), training_throughput and partitions_ray (2-3 Ray runs
a repetition; their processes are stood in for in tests/test_bench_throughput.py and
tests/test_bench_partitions_ray.py)."""
import json
import logging
import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import analysis_repeats  # noqa: E402
import checkpoint_save  # noqa: E402
import edge_metric  # noqa: E402
import filter_norm  # noqa: E402
import frozen_cache  # noqa: E402
import help_start_up  # noqa: E402
import invariance_ci  # noqa: E402
import invariance_sweep  # noqa: E402
import layer_responses  # noqa: E402
import locally_connected  # noqa: E402
import model_parallel  # noqa: E402
import optimiser_start_up  # noqa: E402
import parameter_server  # noqa: E402
import probe_blas  # noqa: E402
import rank_interval  # noqa: E402
import sandblaster  # noqa: E402
import scaling  # noqa: E402
import step_check  # noqa: E402
import step_peak  # noqa: E402
import tie_calibration  # noqa: E402
import tie_null  # noqa: E402
import wait_order  # noqa: E402


def _rows(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _timed_against_its_baseline(row, figure, new, old, ratio="ratio"):
    """``row[figure]`` holds both ways' medians, finite and positive, and ``row[ratio]`` is a finite, positive
    new / old (no time value is asserted on)."""
    assert set(row[figure]) == {new, old}
    assert all(0 < row[figure][way]["median"] < math.inf for way in (new, old))
    assert 0 < row[ratio]["of_medians"] < math.inf and 0 < row[ratio]["paired"]["median"] < math.inf


def test_filter_norm_times_the_plain_and_the_normed_layer():
    row = filter_norm.main(["--reps", "1", "--batch", "1", "--size", "8", "--kernel", "3", "--maps", "1"])
    assert row["shape"] == "1x1x8x8" and row["plain_ms"] > 0 and row["normed_ms"] > 0
    assert row["ratio_paired"] == row["ratio"] == pytest.approx(row["normed_ms"] / row["plain_ms"], rel=0.02)  # (1 rep)


def test_edge_metric_times_edge_like_beside_the_four_tests():
    row = edge_metric.main(["--reps", "1", "--filters", "500"])
    assert row["filters"] == 500 and row["same_decisions"]
    assert set(row["wall_s"]) == {"four_tests", "edge_like", "unfiltered"}
    assert row["edge_like_vs_four_tests"]["of_medians"] > 0 and row["unfiltered_vs_four_tests"]["of_medians"] > 0


def test_checkpoint_save_times_each_digest_against_none(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["checkpoint_save.py", "--reps", "1", "--mb", "0.01", "--out", str(tmp_path)])
    checkpoint_save.main()
    (row,) = _rows(capsys)
    assert row["model_mb"] == 0.01 and row["reps"] == 1
    assert set(row["seconds"]) == {"digest", "no_digest", "sha256_only", "json_digest_only"}
    assert row["digest_vs_none"]["paired"]["median"] > 0


def test_step_check_times_a_checked_step_against_a_plain_one():
    (row,) = step_check.main(["--reps", "1", "--batch", "1", "--config", "tica-8x8"])
    assert row["config"] == "tica-8x8" and row["batch"] == 1 and row["params"] > 0
    assert row["plain_ms"] > 0 and row["checked_ms"] > 0


def test_tie_calibration_prints_one_row_per_cell(capsys):
    tie_calibration.main(["--ties", "2", "--sizes", "2", "--aucs", "0.7", "--images", "30"])
    (row,) = _rows(capsys)
    assert (row["auc"], row["T"], row["n"], row["ties"]) == (0.7, 2, "30+30", 2)
    assert all(0 <= row[rule] <= 1 for rule in ("boot", "delong", "logit", "pooled", "asin", "half_pair"))


def test_locally_connected_agrees_with_the_naive_layer_and_times_all_three(capsys):
    locally_connected.main(["--reps", "1", "--batch", "1", "--size", "8", "--kernel", "3", "--maps", "1",
                            "--no-memory"])
    (row,) = _rows(capsys)
    assert row["shape"]["out"] == [6, 6] and set(row["median_ms"]) == {"ours", "naive", "conv2d"}
    assert all(err < 1e-4 for err in row["rel_err"].values())


def test_rank_interval_scores_every_method_in_every_scenario_at_both_sizes(tmp_path, capsys):
    cells = tmp_path / "cells.jsonl"
    rng = random.Random(0)
    cells.write_text("".join(json.dumps({"condition": f"{size}/{c}", "seed": s,
                                         "figures": {"hoyer": rng.random(), "gap": rng.random()}}) + "\n"
                             for size in ("less", "more") for c in "abcd" for s in range(rank_interval.SEEDS)))
    rank_interval.main([str(cells), "--draws", "2"])
    rows = _rows(capsys)
    methods = {r["method"] for r in rows}
    assert {"percentile", "basic", "BC", "BCa", "per-seed t"} <= methods
    assert sorted((r["size"], r["scenario"]) for r in rows) == sorted(
        (size, scenario) for size in ("less", "more") for scenario in ("planted", "null-flat", "null-shuffled")
        for _ in methods)
    assert all(r["draws"] == 2 for r in rows)


def test_model_parallel_splits_the_step_and_checks_it_against_the_whole(capsys):
    model_parallel.main(["--model", "cat-demo", "--reps", "1", "--batch", "1", "--steps", "1",
                         "--partitions", "1", "2"])
    whole, split = _rows(capsys)
    assert (whole["partitions"], split["partitions"]) == (1, 2) and split["same_as_k1"] is True
    assert split["bytes_exchanged_per_step"] > 0 and split["ms_per_step"] > 0


def test_tie_null_checks_the_ranks_against_the_pairs_and_times_both_rules(monkeypatch, capsys):
    """(Its two smallest shapes: the 80- and 137-unit ones take seconds.)"""
    monkeypatch.setattr(tie_null, "SHAPES", dict(list(tie_null.SHAPES.items())[:2]))
    tie_null.main(["--reps", "1"])
    rows = _rows(capsys)
    assert [r["shape"] for r in rows] == ["2 units, 60 + 60", "20 units, 100 + 100"]
    assert all(set(r["ms"]) == {"old", "new", "ranks", "pairs"} for r in rows)


def test_step_peak_measures_a_step_above_what_it_saves(monkeypatch, capsys):
    """(One small step of STEPS: the whole list, cat-3stage's among them, takes long.)"""
    monkeypatch.setattr(step_peak, "STEPS", [("config", "tica-8x8", [], None)])
    try:
        step_peak.main([])
    finally:
        logging.disable(logging.NOTSET)          # (main silences warnings process-wide)
    (row,) = _rows(capsys)
    assert row["step"] == "config tica-8x8" and row["planned"] > 0 and row["saved"] > 0
    assert row["peak"] >= row["peak_forward"] > 0 and row["gap"] == round(row["peak"] - row["planned"])


def test_probe_blas_times_the_probes_on_one_blas_thread_against_scipys_default_with_the_same_scores(capsys):
    (row,) = probe_blas.main(["--reps", "1"])
    assert _rows(capsys) == [row] and row["same_scores"] is True and set(row["dims"]) == {"input", "stage2/codes"}
    _timed_against_its_baseline(row, "wall_s", "before", "after", ratio="speedup")


def test_invariance_sweep_times_the_new_sweep_against_the_old(capsys):
    (row,) = invariance_sweep.main(["--reps", "1"])
    assert _rows(capsys) == [row] and row["warps"] == {"new": 83, "old": 47}
    _timed_against_its_baseline(row, "wall_s", "new", "old")


def test_invariance_ci_times_the_bootstrap_against_the_sweep_it_reads(capsys):
    (row,) = invariance_ci.main(["--reps", "1"])
    assert _rows(capsys) == [row] and row["replicates"] == 500 and 0 <= row["with_interval"] <= 4
    _timed_against_its_baseline(row, "wall_s", "bootstrap", "sweep")


def test_frozen_cache_runs_a_short_schedule_against_the_uncached_one(capsys):
    """--steps runs a short schedule, not only the main job's 1,500 steps (and 100 of warm-up) each way."""
    rows = frozen_cache.main(["--reps", "1", "--steps", "2"])
    assert _rows(capsys) == rows and [(r["row"], r["steps"]) for r in rows] == [("stage2", 1), ("greedy", 2)]
    for row in rows:
        _timed_against_its_baseline(row, "ms_per_step", "cached", "plain")


def test_analysis_repeats_times_both_repeats_on_a_few_images_against_the_old_ways(capsys):
    """--images keeps a few of the 60 held-out images (all of them take 18 s on 2 cores)."""
    rows = analysis_repeats.main(["--reps", "1", "--images", "3"])
    assert _rows(capsys) == rows and [r["row"] for r in rows] == ["sweeps", "probe_figures"]
    for row in rows:
        assert (row["faces"], row["others"]) == (3, 3) and row["passes"] == {"new": 168, "old": 344}
        _timed_against_its_baseline(row, "wall_s", "new", "old")
        _timed_against_its_baseline(row, "driver_cpu_s", "new", "old", "cpu_ratio")


def test_optimiser_start_up_times_downpours_first_step_against_torchs(capsys):
    """Each optimiser costs two fresh interpreters: --optimisers runs fewer than all three."""
    optimiser_start_up.main(["--reps", "1", "--optimisers", "sgd"])
    (row,) = _rows(capsys)
    assert row["row"] == "sgd" and row["reps"] == 1
    for figure, ratio in (("first_step_s", "first_step_ratio"), ("wall_s", "wall_ratio"), ("child_cpu_s", "cpu_ratio")):
        _timed_against_its_baseline(row, figure, "downpour", "torch", ratio)


def test_help_start_up_times_a_studys_help_against_it_after_the_old_imports(monkeypatch, capsys):
    """(One of its COMMANDS, one with the baseline: each is a fresh interpreter, the baseline's with torch.)"""
    monkeypatch.setattr(help_start_up, "COMMANDS", (["study", "staleness", "--help"],))
    help_start_up.main(["--reps", "1"])
    (row,) = _rows(capsys)
    assert row["row"] == "study staleness --help" and row["reps"] == 1
    _timed_against_its_baseline(row, "wall_s", "now", "old_imports", "wall_ratio")


def test_sandblaster_backups_times_a_straggler_batch_against_the_normal_clusters(monkeypatch, tmp_path, capsys):
    """Its batch times carry their unit (virtual steps of the simulator's clock, not seconds)."""
    monkeypatch.setattr(sys, "argv", ["sandblaster.py", "backups", "--workers", "2", "--units", "2", "--steps", "1",
                                      "--backup-after", "1", "--out", str(tmp_path)])
    sandblaster.main()
    normal, straggler = (json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{"))
    assert (normal["cluster"], straggler["cluster"]) == ("normal", "straggler x10") and normal["ratio_to_normal"] == 1
    for row in (normal, straggler):
        assert row["time_unit"] == "virtual steps" and 0 < row["batch_time_mean"] <= row["batch_time_max"] < math.inf
    assert 0 < straggler["ratio_to_normal"] < math.inf


class _Started(Exception):
    """Raised by a stand-in ``ray.init``: the test stops there, before any Ray starts."""


@pytest.mark.parametrize("start", [lambda: parameter_server.main(["--sizes", "0.01"]),
                                   lambda: next(scaling.ps_points((0.01,), 1)), lambda: wait_order.main([])],
                         ids=["parameter_server", "scaling", "wait_order"])
def test_the_ray_benches_start_a_ray_of_their_own(start, monkeypatch):
    """Their ``ray.init(num_cpus=2)`` starts a Ray of their own: else it joins a Ray another process on the machine
    started (`ray start`, another session's run) and fails there ("num_cpus ... must not be provided")."""
    import ray

    asked = {}

    def init(**kwargs):
        asked.update(kwargs)
        raise _Started

    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(_Started):
        start()
    assert asked["address"] == "local" and asked["num_cpus"] == 2


def test_layer_responses_times_the_one_pass_read_against_a_pass_per_layer(capsys):
    """--draws and --replicates make the face test small: 5 images per face for each control and 2,000 replicates and
    random filters take two minutes on 2 loaded cores."""
    rows = layer_responses.main(["--reps", "1", "--draws", "1", "--replicates", "10"])
    assert _rows(capsys) == rows and [r["row"] for r in rows] == ["read", "face_controls"]
    for row in rows:
        assert row["images"] == 140 + 60 + 4 * 30 and len(row["layers"]) == 6
        _timed_against_its_baseline(row, "wall_s", "one_pass", "per_layer")
