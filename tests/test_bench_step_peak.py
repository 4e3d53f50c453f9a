"""bench/step_peak.py: a step's memory peak, measured from torch.profiler's CPU memory events."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from step_peak import peak  # noqa: E402

from downpour.plan import plan_config
from downpour.plan.counted import step_held_bytes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_steps_peak_holds_its_saved_tensors_at_the_end_of_its_forward_and_leaves_its_gradients():
    """Every tensor the step saves is alive when its forward ends (ufldl-sae keeps no buffer: all of them are made
    in the step), and what is left after it is the parameters' gradients; the peak the docs quote lies above both."""
    cfg, shape = plan_config(config="ufldl-sae")
    top, top_forward, grads = peak(cfg, shape, cfg.train.batch_size, None)
    saved = step_held_bytes(cfg, shape, cfg.train.batch_size)[0]
    assert top_forward >= saved and top >= top_forward and grads == 4 * 3289


def test_the_plans_peak_note_says_what_the_bench_measured_and_points_to_its_table(capsys):
    """The note under the plan's table says what the bench measures and points to its table in docs/plan.md, with no
    hard-coded figures (such as "measured from 23% under to 38% over acts + gradient"): the bench compares acts +
    copies + gradient with a lower bound of the peak."""
    from downpour.cli import main
    assert main(["plan", "--config", "tica-8x8", "--machines", "2"]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if "transient peak" in line)
    assert "acts + copies + gradient" in note and "lower bound" in note and "%" not in note
    docs = (Path(__file__).resolve().parents[1] / "docs" / "plan.md").read_text()
    section = docs[docs.index("What this excludes"):]
    assert "bench/step_peak.py" in section[:1000] and "| step | batch | planned | peak | peak − planned |" in section
