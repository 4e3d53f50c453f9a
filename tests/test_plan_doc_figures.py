"""docs/plan.md's figures are what `downpour plan` prints for the command quoted beside them: each case writes the
page's sentence from the plan's --json and looks for it in the page, so a figure the code has moved reads as stale
here, not to a reader. (The layout's search (idle.py's fewest shards) moved `--partitions 1` and `--bandwidth 10`,
and the untied kernel's kept receptive fields moved the activations; the page kept the earlier figures.)"""
import json
import re
from pathlib import Path

import pytest

from downpour.cli import main
from downpour.plan.units import human

pytestmark = pytest.mark.usefixtures("one_thread")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "plan.md"


def _page() -> str:
    """The page with its line breaks read as spaces, as a sentence wraps."""
    return re.sub(r"\s+", " ", PAGE.read_text(encoding="utf-8"))


def _plan(capsys, *argv: str) -> dict:
    main(["plan", *argv, "--json"])
    return json.loads(capsys.readouterr().out)


def test_one_partition_a_replica_of_the_papers_network_is_quoted_as_planned(capsys):
    plan = _plan(capsys, "--partitions", "1")
    said = (f"`--partitions 1`, with {plan['cluster']['replicas']} replicas: {plan['samples_per_s']:.0f}/s but "
            f"staleness {plan['staleness']:.0f}")
    assert said in _page()


def test_ten_gigabit_links_are_quoted_with_the_layout_planned(capsys):
    plan = _plan(capsys, "--bandwidth", "10")
    cluster = plan["cluster"]
    said = (f"(`--bandwidth 10`) gives {plan['samples_per_s']:,.0f}/s ({cluster['replicas']} replicas x "
            f"{cluster['partitions']} partitions + {cluster['shards']} shards, staleness {plan['staleness']:.1f}")
    assert said in _page()


def test_a_stages_own_pooled_term_off_is_quoted_as_its_rows_activations(capsys):
    argv = ("--config", "cat-demo", "--machines", "1")
    rows = [_plan(capsys, *argv, *extra)["stages"][1]["act_bytes"] * 32         # the table's acts (B=32)
            for extra in ((), ("--set", "objective.stage2/pooled_l2=0"))]
    said = f"stage 2's row {human(rows[0], 'B')} -> {human(rows[1], 'B')} of activations"
    assert said in _page()


def test_one_machines_processes_together_are_quoted_as_planned(capsys):
    plan = _plan(capsys, "--config", "cat-demo", "--machines", "1", "--cores", "2", "--replicas", "2",
                 "--shards", "2")
    said = f"and 64 GB ({human(plan['cluster']['memory_together_bytes'], 'B')} together, each process's own"
    assert said in _page()


def test_one_replica_split_81_ways_is_quoted_as_its_speed_up_over_one_partition(capsys):
    """The table against Dean et al.: the plan's step and its compute + halo alone at K = 81 over K = 1's."""
    one, split = (_plan(capsys, "--replicas", "1", "--partitions", k, "--machines", "2000")["times_s"]
                  for k in ("1", "81"))
    work = [t["compute"] + t["halo"] for t in (one, split)]
    said = f"| 81 | 12x | {one['step'] / split['step']:.1f}x | {work[0] / work[1]:.1f}x |"
    assert said in _page()
