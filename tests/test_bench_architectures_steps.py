"""bench/architectures_steps.py summary: per arm, each figure's paired change between its two step counts, Holm's p
over the family, a figure the arm lacks (NaN) left out, and a cells file it cannot pair refused by name."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import architectures_steps as steps  # noqa: E402


def _cells(path, arm, counts, figure):
    with open(path, "a") as fh:
        for seed in range(4):
            for n in counts:
                row = {f: 0.5 for f in steps.FIGURES + steps.EXTRA}
                row.update(arm=arm, seed=seed, steps=n, wall_s=1.0, cpu_s=1.0, edge_fraction=float("nan"))
                row[figure] = 0.5 + (0.1 + 0.01 * seed if n == counts[1] else 0.0)   # up by 0.1-0.13 at the larger
                fh.write(json.dumps(row) + "\n")


def test_summary_pairs_each_arm_and_leaves_out_a_figure_it_lacks(tmp_path, capsys):
    cells = tmp_path / "cells.jsonl"
    _cells(cells, "rbm", (700, 3500), "face_owed_controls")
    _cells(cells, "rnn", (28, 140), "probe_lfw")
    steps.main(["summary", str(cells)])
    out = capsys.readouterr().out
    rbm, rnn = out.split("rnn: ")
    assert rbm.startswith("rbm: 4 paired seeds (0-3)") and "700 steps, 3500 steps" in rbm
    assert "face_owed_controls: +0.500 [+0.500, +0.500]  +0.615 [" in rbm       # 0.6, 0.61, 0.62, 0.63
    assert "probe_lfw: +0.500" in rnn and "+0.115 [" in rnn.split("probe_lfw:")[1]
    assert "edge_fraction" not in out                                           # NaN in every cell: no figure
    assert "final_loss" in rbm and "Holm" not in rbm.split("final_loss")[1].splitlines()[0]   # outside the family


def test_holm_adjusted_is_step_down_and_monotone():
    assert steps.holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_a_cells_file_at_three_step_counts_is_refused_naming_the_counts(tmp_path):
    cells = tmp_path / "cells.jsonl"
    _cells(cells, "cat", (300, 1500), "probe_lfw")
    _cells(cells, "cat", (300, 900), "probe_lfw")
    with pytest.raises(SystemExit, match=r"cat cells are at \[300, 900, 1500\] steps, not two counts"):
        steps.main(["summary", str(cells)])


@pytest.mark.parametrize("text", ["700", "700,3500,7000", "3500,700", "0,300", "a,b"])
def test_run_refuses_steps_that_are_not_two_increasing_counts(text):
    with pytest.raises(SystemExit, match=r"--steps .* is not two step counts A,B with 0 < A < B"):
        steps.main(["run", "--steps", text, "--out", "/dev/null", "0"])
