"""bench/sandblaster.py machines: Downpour and Sandblaster on one model at each worker count, each method
with the same budget at every count, and the virtual time each took to a cost."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import sandblaster  # noqa: E402

from downpour.train.rundir import RunDir  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_machines_runs_both_methods_at_each_count_on_one_budget(tmp_path, capsys):
    sandblaster.main(["machines", "--out", str(tmp_path), "--workers", "1", "2", "--samples", "200", "--units", "4",
                      "--downpour-steps", "50", "--sandblaster-steps", "3", "--target", "1e9", "1e-9", "--lr", "0.02"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["workers"] for r in rows] == [1, 2]
    for m in ("downpour", "sandblaster"):
        assert rows[0][m]["examples"] == rows[1][m]["examples"] > 0        # the same budget at each count
        assert all(r[m]["reached"]["1e-09"] is None for r in rows)         # a cost no run reaches: null
    assert rows[0]["downpour"]["examples"] == 50 * 100
    # Sandblaster's first row (cost 1e9 is reached at once) comes after the same units on half the workers:
    # 4 units of 50 examples, each 0.5 steps + the constant 1-step latency, so 6 -> 3 steps per evaluation
    one, two = (r["sandblaster"]["reached"]["1000000000.0"]["vtime"] for r in rows)
    assert two == pytest.approx(one / 2)
    # --lr reaches Downpour's server (it set train.lr, which tica-8x8's cluster.lr = 0.05 overrides on a cluster)
    assert RunDir.open(tmp_path / "w1-downpour").config.server_lr() == 0.02
    assert (tmp_path / "machines.png").exists() and (tmp_path / "w2-sandblaster" / "sandblaster.json").exists()
