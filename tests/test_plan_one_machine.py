"""``downpour plan --machines 1``: every process of a layout on one machine (one box, a local Ray), sharing its cores
and memory with no network between them (downpour/plan/one_machine.py). Until 2026-12-06 it was refused: every process
had a machine of its own, so 1 replica and 1 shard needed 2."""
import json

import pytest

from downpour.cli import main
from downpour.plan import Cluster, plan_for
from downpour.plan.one_machine import PROCESS_BYTES

pytestmark = pytest.mark.usefixtures("one_thread")


def _layout(capsys, more):
    main(["plan", "--config", "cat-demo", "--machines", "1", "--cores", "2", *more])
    return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cluster: "))


LOCAL = ["plan", "--config", "cat-demo", "--machines", "1", "--cores", "2", "--replicas", "2", "--shards", "2"]


def test_one_machine_plans_its_processes_on_it_and_the_layout_line_says_so(capsys):
    assert main(LOCAL) == 0
    text = capsys.readouterr().out
    layout = next(line for line in text.splitlines() if line.startswith("cluster: "))
    assert ("2 replicas x 1 partition (1x1 blocks) + 2 shards = 4 processes on the one machine, sharing its 2 cores"
            in layout)
    assert "Gbit/s" not in layout and "--bandwidth not read" in layout
    # what it assumes, said (until 2026-12-06 a worker's cores and the copies' rate went unsaid)
    assert "(each of its 2 workers computes on 1 of them)" in layout and "shared memory at 2.00 GB/s a core" in layout
    assert "computes on 0.667 of them, taking turns" in _layout(capsys, ["--replicas", "3"])
    split = _layout(capsys, ["--replicas", "2", "--partitions", "2"])    # (each replica's own process: no machine)
    assert "+ 2 replica processes (each replica's own process" in split and "replica machine" not in split
    # the run it plans is a local Ray's: no head to join
    assert ("to train this layout on this machine (a local Ray): downpour train --config cat-demo --runner ray "
            "--workers 2 --shards 2") in text
    assert main([*LOCAL, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["cluster"]["one_machine"] and plan["cluster"]["processes"] == 4
    assert plan["cluster"]["machines_used"] == 1
    # no links between its processes: the machine's cores bound the cycle instead
    assert set(plan["cycle_bounds_s"]) == {"worker step", "shard apply", "machine's cores"}


def test_workers_on_one_machine_split_its_cores_as_on_machines_of_their_share():
    """2 replicas on one machine of 2 cores compute as 2 replicas on machines of 1 core each (the Ray runner gives a
    worker cpu_count // workers threads); only the transfers differ (copies, not the network)."""
    one = plan_for(None, (), Cluster(machines=1, cores=2, replicas=2, shards=2), config="cat-demo")
    apart = plan_for(None, (), Cluster(machines=4, cores=1, replicas=2, shards=2), config="cat-demo")
    assert one["times_s"]["compute"] == pytest.approx(apart["times_s"]["compute"], rel=1e-12)
    assert one["times_s"]["push"] < apart["times_s"]["push"]      # 2 GB/s copies, not 1 Gbit/s


def test_one_machines_memory_is_every_process_together(capsys):
    """A partition of cat-demo needs 76.70 MB (its frozen cache at most 67.11 MB) and its process's own ~262.14 MB: 2
    replicas on one machine need twice that and the shards, where each process fitted a machine of its own."""
    plan = plan_for(None, (), Cluster(machines=1, replicas=2, shards=1, memory_gb=0.4), config="cat-demo")
    part = plan["partition"]["memory_bytes"] + PROCESS_BYTES
    assert part < 0.4e9 < 2 * part and plan["cluster"]["memory_together_bytes"] > 2 * part
    assert plan["fits"]["partition"] and not plan["fits"]["together"]
    assert main(["plan", "--config", "cat-demo", "--machines", "1", "--replicas", "2", "--shards", "1",
                 "--memory", "0.4"]) == 1      # printed, and its status says it does not fit
    assert "MB counted)  ** does not fit **; no network" in capsys.readouterr().out


def test_one_machines_cores_count_one_push_a_cycle_of_n_push_steps():
    """A cycle of p = n_push steps copies p/f fetches and one push a worker (the runner pushes every n_push steps),
    counted by hand; the machine's bound counted p pushes a cycle until 2026-12-06 (the builder's first draft)."""
    sets = ("cluster.n_push=4", "cluster.n_fetch=2")
    plan = plan_for(None, sets, Cluster(machines=1, cores=2, replicas=2, shards=2), config="cat-demo")
    t, r, s, p, f = plan["times_s"], 2, 2, 4, 2
    assert plan["n_push"] == p and plan["n_fetch"] == f and plan["cluster"]["partitions"] == 1
    worked = (r * p * (t["compute"] + t["replica_compute"]) * 1.0 + r * s * t["apply_one"]
              + r * (p / f * t["fetch"] + t["push"]) + r * p * (t["windows"] + t["halo"] + t["lend"]))
    assert plan["cycle_bounds_s"]["machine's cores"] == pytest.approx(worked / 2, rel=1e-12)
