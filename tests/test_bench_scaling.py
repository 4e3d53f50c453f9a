"""bench/scaling.py: the quick run prints every row the docs read, and its fits are right on exact power laws."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import scaling  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_run_prints_points_and_one_fit_per_curve(capsys):
    scaling.main(["--quick", "--curves", "stage", "simulator", "--pushes", "60"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["what"] == "machine" and len(rows[0]["load_avg"]) == 3
    stage = [r for r in rows if r["what"] == "stage"]
    assert [r["side"] for r in stage] == list(scaling.QUICK["stage"])
    for r in stage:
        assert r["ms"] > 0 and r["params"] > 0 and r["expected_gflop"] > 0
        assert r["peak_mb"] is None or r["peak_mb"] > 0
        assert r["gemm_ms"] > 0 and r["copy_ms"] > 0        # same-run baselines
        assert r["vs_gemm"] == pytest.approx(r["ms"] / r["gemm_ms"], rel=0.05)
        assert r["vs_copy"] == pytest.approx(r["ms"] / r["copy_ms"], rel=0.05)
    sim = [r for r in rows if r["what"] == "simulator"]
    assert [r["workers"] for r in sim] == list(scaling.QUICK["simulator"]) and all(r["pushes"] == 60 for r in sim)
    fits = {r["curve"]: r for r in rows if r["what"] == "fit"}
    assert set(fits) == {"stage", "simulator"} and fits["stage"]["points"] == 3
    # positions (side - 17)² grow faster than side² at these sides: the arithmetic's exponent is above 1
    assert fits["stage"]["expected_exponent"] > 1.2 and isinstance(fits["stage"]["exponent"], float)
    assert fits["simulator"]["expected_exponent"] == 0.0


def test_points_the_paper_network_cannot_take_are_skipped_with_the_reason():
    row = scaling.cat_point("network", 32, 1, 1, max_gb=8)
    assert "stage 2's filter side 18 is larger than its 11x11 input" in row["skipped"] and "ms" not in row
    row = scaling.cat_point("network", 200, 1, 1, max_gb=8)
    assert row["params"] == 2_433_716_928 and "over --max-gb 8" in row["skipped"]   # W1 + W2, the plan's count


def test_exponent_of_exact_power_laws():
    xs = [1, 4, 16, 64]
    assert scaling.exponent(xs, [3 * x ** 1.5 for x in xs]) == pytest.approx(1.5)
    assert scaling.exponent([1], [2]) is None


def test_bad_arguments_name_the_flag():
    with pytest.raises(SystemExit):
        scaling.main(["--batch", "0"])


def test_a_curve_warms_up_on_a_point_it_measures_not_on_a_skipped_one(capsys, monkeypatch):
    # the full network curve starts at 32, which the paper's network cannot take (a skipped row, built nothing):
    # warming up on it left the one-time allocations in the 64 point's peak (`--curves network`)
    calls = []

    def fake(what, side, batch, steps, max_gb):
        calls.append(side)
        row = {"bench": "scaling", "what": what, "side": side}
        if side == 32:
            return {**row, "skipped": "stage 2's field does not fit"}
        return {**row, "ms": 1.0, "peak_mb": 1.0, "expected_gflop": side / 10, "expected_mb": side / 10}

    monkeypatch.setattr(scaling, "cat_point", fake)
    monkeypatch.setitem(scaling.FULL, "network", (32, 64, 128))
    scaling.main(["--curves", "network"])
    assert calls[:-3] == [32, 64] and calls[-3:] == [32, 64, 128]   # the warm-up reached a measuring point
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["side"] for r in rows if r["what"] == "network"] == [32, 64, 128]      # reported once each


def test_a_points_planned_flops_are_those_of_its_batch():
    """Normalising the filters is once a step, so per example it is divided by the step's batch: a + n/b. Planning
    every batch as batch 1 overstates it (`--batch 100`: the paper network's 24.44 GFLOP per example, where its steps
    of 100 take 12.39)."""
    flops = {b: scaling.cat_point("network", 64, b, 1, max_gb=0)["expected_gflop"] for b in (1, 2, 4)}
    once_a_step = 2 * (flops[1] - flops[2])                  # n, from b = 1 and 2
    assert once_a_step > 0
    assert flops[4] == pytest.approx(flops[1] - once_a_step * 3 / 4, abs=2e-4)     # (rounded to 0.1 MFLOP)


def test_the_plot_fits_a_docs_page_at_its_own_size(tmp_path):
    """docs/scaling.png was 1760 px wide (four panels in a row): a page shows it at half that, its legends at 4 pt."""
    from PIL import Image

    scaling.plot("docs/scaling.jsonl", str(tmp_path / "scaling.png"))
    assert Image.open(tmp_path / "scaling.png").size[0] <= 1000
