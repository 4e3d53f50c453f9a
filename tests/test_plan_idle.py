"""downpour plan's unset shards: the fewest that give the machines left's samples/s (within 1%), and the machines
a layout leaves idle said with why (downpour/plan/idle.py)."""
import json

import pytest

from downpour.cli import main
from downpour.plan import Cluster, plan_for
from downpour.plan import calls

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]


def test_where_a_shards_applies_bind_the_plan_leaves_the_shards_that_add_nothing_idle_and_says_why(monkeypatch):
    """An apply of 1 ms caps cat-demo at 1,000 pushes a second whatever the shards: 3 replicas + 13 shards filled 16
    machines where 1 shard gave the same samples/s, a plan read as "buy 13 parameter servers"."""
    monkeypatch.setitem(calls.APPLY_S, "adagrad", 1e-3)
    plan = plan_for(None, config="cat-demo", cluster=Cluster(machines=16))
    c = plan["cluster"]
    full = plan_for(None, config="cat-demo", cluster=Cluster(machines=16, replicas=c["replicas"],
                                                              shards=16 - c["replicas"]))
    assert c["shards"] < 16 - c["replicas"] and c["machines_used"] == c["replicas"] + c["shards"] < 16
    assert c["machines_idle"] == 16 - c["machines_used"]
    assert plan["samples_per_s"] >= 0.99 * full["samples_per_s"]
    assert c["idle_why"].startswith(f"uses {c['machines_used']} of 16 machines: {16 - c['replicas']} shards")
    assert "a shard's applies bind (1.00k pushes a second, adagrad's own 1.0 ms an apply" in c["idle_why"]
    assert "--set cluster.n_push" in c["idle_why"]


def test_the_chosen_layouts_full_and_fewest_shards_are_timed_once_each(monkeypatch):
    """fewest_shards timed the full-shard layout twice (its floor, its end's comparison), the idle note once more, and
    the shards chosen twice more after the bisection had timed them: cat-demo on 16 machines, 3 replicas, 13 shards
    timed 4 times, 1 shard 3 times. Once each after the layouts' rates (the full one is among them)."""
    from downpour.plan import predict

    monkeypatch.setitem(calls.APPLY_S, "adagrad", 1e-3)    # (the layout of the test above: 1 of 13 shards kept)
    timed, timing = [], predict.layout_timing
    monkeypatch.setattr(predict, "layout_timing", lambda net, part, cl, r, k, s, *a: timed.append((r, k, s))
                        or timing(net, part, cl, r, k, s, *a))
    c = plan_for(None, config="cat-demo", cluster=Cluster(machines=16))["cluster"]
    r, k = c["replicas"], c["partitions"]
    assert (k, c["shards"], c["machines_used"]) == (1, 1, r + 1)
    assert timed.count((r, k, 16 - r)) == 2 and timed.count((r, k, 1)) == 1


def test_the_main_job_on_1000_machines_uses_the_machines_that_add_samples_per_s(capsys):
    """105 replicas + 895 shards was the main job's layout on 1,000 machines, its cycle the worker's step: 10 shards
    carry its pushes as fast. The printout and --json say the machines used, and the apply's cap past them. (The main
    job of then, with the paper's pooled top: main-pooled.)"""
    assert main(["plan", "--config", "main-pooled", "--machines", "1000", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["cluster"]
    assert c["shards"] < 100 and c["machines_used"] == c["replicas"] + c["shards"] < 200
    assert c["machines_idle"] == 1000 - c["machines_used"] and "a shard's applies bind" in c["idle_why"]
    assert main(["plan", "--config", "main-pooled", "--machines", "1000"]) == 0
    assert f"  uses {c['machines_used']} of 1,000 machines: " in capsys.readouterr().out


def test_a_layout_whose_shards_link_binds_keeps_its_shards_and_says_nothing_idle(capsys):
    """The paper's network on 1,000 machines: its 472 shards' links bind the cycle, 1% fewer give 1% less."""
    c = plan_for("paper")["cluster"]
    assert (c["shards"], c["machines_used"], c["machines_idle"], c["idle_why"]) == (472, 1000, 0, "")
    assert main(["plan"]) == 0 and "  uses " not in capsys.readouterr().out
