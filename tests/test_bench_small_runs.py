"""One real run per bench that had only its --help tested, at its smallest options (each a second or two): the
rows the docs read come out, and the checks the bench makes on the way hold. (Slower benches: their --help only,
tests/test_bench_protocol.py.)"""
import json
import logging
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import checkpoint_save  # noqa: E402
import filter_norm  # noqa: E402
import locally_connected  # noqa: E402
import model_parallel  # noqa: E402
import rank_interval  # noqa: E402
import step_check  # noqa: E402
import step_peak  # noqa: E402
import tie_calibration  # noqa: E402
import tie_null  # noqa: E402


def _rows(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_filter_norm_times_the_plain_and_the_normed_layer():
    row = filter_norm.main(["--reps", "1", "--batch", "1", "--size", "8", "--kernel", "3", "--maps", "1"])
    assert row["shape"] == "1x1x8x8" and row["plain_ms"] > 0 and row["normed_ms"] > 0
    assert row["ratio_paired"] == row["ratio"] == pytest.approx(row["normed_ms"] / row["plain_ms"], rel=0.02)  # (1 rep)


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
