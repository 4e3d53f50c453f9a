"""bench/sim_rng.py: a quick run prints the swapped and the plain steps, their ratio and the swap's own cost."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import sim_rng  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sim_rng_prints_the_swapped_step_against_the_plain_one(capsys):
    rows = sim_rng.main(["--config", "rbm-digits", "--steps", "2", "--reps", "1", "--workers", "3"])
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows
    (row,) = rows
    assert row["bench"] == "sim_rng" and row["workers"] == 3 and row["reps"] == 1
    assert set(row["ms_per_step"]) == {"swapped", "plain"} and row["ratio"]["of_medians"] > 0
    assert row["cpu_ratio"]["of_medians"] > 0 and row["swap_us"] > 0 and row["swap_cpu_us"] >= 0
