"""bench/sandblaster.py machines: Downpour and Sandblaster on one model at each worker count, each method
with the same budget at every count, and the virtual time each took to a cost."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import sandblaster  # noqa: E402

from downpour.batch import Batch  # noqa: E402
from downpour.models.registry import build  # noqa: E402
from downpour.ps.setup import set_up_cluster  # noqa: E402
from downpour.train.rundir import RunDir  # noqa: E402
from downpour.train.step import train_step  # noqa: E402

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


def test_machines_final_cost_is_each_saved_models_cost_on_the_whole_training_set(tmp_path, capsys):
    # Downpour's rows log a mean over mini-batches at the workers' fetched copies, not its model's cost: the
    # final costs of the two methods are compared on one footing, the saved model on every training example
    sandblaster.main(["machines", "--out", str(tmp_path), "--workers", "2", "--samples", "200", "--units", "4",
                      "--downpour-steps", "30", "--sandblaster-steps", "3", "--target", "1e9", "--lr", "0.02"])
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    for m in ("downpour", "sandblaster"):
        run = RunDir.open(tmp_path / f"w2-{m}")
        x = set_up_cluster(run.config).data.x          # (200, 1, 8, 8): every training example
        step = train_step(run.load_model(), build(run.config, tuple(x.shape[1:]))[1], Batch(x, None))
        assert row[m]["final_cost"] == pytest.approx(step.loss, rel=1e-5)
        assert row[m]["final_logged"] == pytest.approx(list(run.metrics())[-1]["loss"], rel=1e-5)
    # Sandblaster's last row is the whole set's cost already (its units sum to it); Downpour's is not its model's
    assert row["sandblaster"]["final_cost"] == pytest.approx(row["sandblaster"]["final_logged"], rel=1e-5)
    assert row["downpour"]["final_cost"] != pytest.approx(row["downpour"]["final_logged"], rel=1e-3)


def test_the_machines_figure_says_its_targets_as_the_text_does_and_marks_those_never_reached():
    """sandblaster-machines.png's legend says the text's 4.63 and 3.89 (not "cost 4.6345" and "cost 3.893"), and a
    count whose run never reached a cost is marked, not left out of its line with nothing to say so."""
    at = lambda v: {"vtime": v}                                               # noqa: E731
    table = [{"workers": w, "downpour": {"reached": {"4.6345": at(50) if w < 16 else None, "3.893": at(500) if w < 8
                                                     else None}},
              "sandblaster": {"reached": {"4.6345": at(520 / w), "3.893": at(1664 / w)}}} for w in (1, 2, 4, 8, 16)]
    ax = sandblaster.machines_figure(table, [4.6345, 3.893]).axes[0]
    said = [t.get_text() for t in ax.get_legend().get_texts()]
    assert said == ["downpour, cost 4.63", "downpour, cost 4.63: not reached", "downpour, cost 3.89",
                    "downpour, cost 3.89: not reached", "sandblaster, cost 4.63", "sandblaster, cost 3.89"]
    missed = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()
              if line.get_label().endswith("not reached")}
    assert missed == {"downpour, cost 4.63: not reached": [16], "downpour, cost 3.89: not reached": [8, 16]}
