"""Sandblaster on a real two-node Ray (``ray.cluster_utils.Cluster`` on this machine: a head and one node, 1 CPU each,
started once for the module), joined by address as a user does (`downpour train --address`). The placer puts worker
w on node w and shard j on node (2 + j) mod 2 of the nodes sorted by id: a worker and a shard on each
(docs/sandblaster.md, "On Ray the actors are placed"; tests/test_sandblaster_ray.py checks that rule on stand-in
nodes). A run finishes, its sandblaster.json and its report name both nodes; worker 1's actor, on the second node,
killed between two of its units leaves the run to worker 0, which finishes it, the lost worker named in both; shard
1's actor, on the second node, killed in the second iteration ends the run naming that shard and that node, keeps the
first iteration's checkpoint, and `--resume` goes on from it on both nodes, to the steps asked for."""
import json
import logging

import pytest
from ray_kill import kill_and_wait
from sandblaster_runs import SMALL
from two_nodes import two_node_cluster

from downpour.cli import main
from downpour.train.rundir import RunDir

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.usefixtures("one_thread")

# RICA-16 on 300 patches (tests/sandblaster_runs.py), 2 workers, 2 shards, 4 units an evaluation
TINY = [a for o in [*SMALL, "sandblaster.units=4"] if not o.startswith("cluster.runner=") for a in ("--set", o)]

# the report's analysis at settings that cost seconds less (tests/test_cli.py's: an analysis's own tests are elsewhere)
FAST_ANALYSIS = [a for o in ["analysis.splits=1", "analysis.probes=[]", "analysis.stimulus_steps=5",
                             "analysis.stimulus_restarts=1", "analysis.bootstrap=200", "analysis.control_draws=1",
                             "analysis.random_filters=50"] for a in ("--set", o)]


two_nodes = pytest.fixture(scope="module")(two_node_cluster)   # (cluster, node ids sorted)


def _train(two_nodes, out, steps, *more):
    """`downpour train` of the tiny run, Sandblaster, joining the module's cluster by its address; its exit status."""
    cluster, _ = two_nodes
    return main(["train", "--config", "tica-8x8", "--address", cluster.address, "--workers", "2", "--shards", "2",
                 "--steps", str(steps), "--out", str(out), *TINY, *more])


def _on_both_nodes(record, ids):
    """sandblaster.json's nodes: the two, by id, a worker and a shard on each."""
    assert record["nodes"] == 2 and record["node_ids"] == ids
    assert record["placement"] == {"shards": [0, 1], "workers": [0, 1]}


def test_a_run_joined_by_address_finishes_and_its_record_and_report_name_both_nodes(tmp_path, two_nodes):
    """The run trains its 3 iterations; sandblaster.json places a worker and a shard on each node and says which
    cluster it joined, and the report's placement note names each node by id and address with what it held."""
    cluster, ids = two_nodes
    assert _train(two_nodes, tmp_path / "r", 3, "--report", *FAST_ANALYSIS) == 0
    record = json.loads((tmp_path / "r" / "sandblaster.json").read_text())
    assert record["steps"] == 3 and "stopped" not in record and record["lost_workers"] == {}
    _on_both_nodes(record, ids)
    assert record["ray"]["address"] == cluster.address
    first, second = (f"node {n[:8]} at {a}" for n, a in zip(ids, record["node_addresses"]))
    report = (tmp_path / "r" / "report.html").read_text()
    assert (f"Placement (sandblaster.json): 2 nodes; {first}: shard 0, worker 0; {second}: shard 1, worker 1; "
            "start ") in report


def test_a_worker_lost_on_the_second_node_leaves_the_run_to_the_other_which_finishes(
        tmp_path, two_nodes, monkeypatch, caplog):
    """Worker 1's actor, on the second node, killed once it is free after its second unit, so that its third (in the
    second evaluation or later) goes to a dead actor: docs/sandblaster.md, a worker that dies does not end the run,
    its units go back to the queue. Backups off, so that the queue is the only way that unit is computed (without the
    requeue the run ends "every worker was lost", exit 2). The command exits 0 with its 3 iterations, the log says the
    worker was lost and its units go to the others, sandblaster.json lists it in `lost_workers` with its reason, its
    placement on the second node, the lost copy uncounted, and the report's training section marks it lost there in
    its placement note (the section, not a report: the test above writes a whole report, whose analysis costs seconds
    and reads no placement)."""
    from downpour.analysis.report_training import training_section
    from downpour.sandblaster.on_ray import RayPool

    _, ids = two_nodes
    real, handed, killed = RayPool._dispatch, [], []

    def kill_as_its_third_is_handed(self, w, *args):
        if w == 1 and len(handed) == 2 and not killed:   # (before the call, so that the unit cannot finish first)
            killed.append(self.placement["workers"][1])
            kill_and_wait(self.worker_actors[1])
        before = len(self._pending)
        real(self, w, *args)
        if w == 1 and len(self._pending) > before:
            handed.append(w)

    monkeypatch.setattr(RayPool, "_dispatch", kill_as_its_third_is_handed)
    run = tmp_path / "r"
    with caplog.at_level(logging.WARNING, logger="downpour.sandblaster.on_ray"):
        assert _train(two_nodes, run, 3, "--set", "sandblaster.backup_after=1", "--no-report") == 0
    assert killed == [ids[1]] and len(handed) == 3      # (no unit handed to it once lost)
    assert "sandblaster worker 1 lost (ActorDiedError); its units go to the others" in caplog.text
    record = json.loads((run / "sandblaster.json").read_text())
    assert record["steps"] == 3 and "stopped" not in record and record["lost_workers"] == {"1": "ActorDiedError"}
    _on_both_nodes(record, ids)
    assert record["backups"] == 0 and record["uncounted_copies"] == 1
    assert record["per_worker"]["1"]["units"] == 2
    assert [r["step"] for r in RunDir.open(run).metrics()] == [1, 2, 3]
    second = f"node {ids[1][:8]} at {record['node_addresses'][1]}"
    assert f"{second}: shard 1, worker 1 (lost: ActorDiedError); start " in training_section(RunDir.open(run), {})


def test_a_shard_lost_on_the_second_node_ends_the_run_naming_it_and_the_resume_goes_on_on_both(
        tmp_path, two_nodes, monkeypatch, capsys, caplog):
    """Shard 1's actor, on the second node, killed in the second iteration (as its node's loss would): the
    command exits 2 with one line naming shard 1 and the second node (docs/sandblaster.md: a lost shard is not
    restarted, the run ends), the log says the checkpoint of iteration 1 is kept and `--resume RUN` goes on from it,
    and sandblaster.json keeps where each actor ran and what stopped the run. The resume starts its shards again on
    both nodes and trains on to the 3 iterations asked (3, not 4: its two, 2 and 3, train on both nodes as three
    would)."""
    from downpour.sandblaster import lbfgs

    _, ids = two_nodes
    real, commits, killed = lbfgs.Coordinator.commit, [], []

    def kill_in_the_second(self, step):
        real(self, step)
        commits.append(step.move)
        if len(commits) == 2:     # (in the first, iteration 1's checkpoint, which the resume needs, is not yet saved)
            killed.append(self.shards.nodes[1])
            kill_and_wait(self.shards.actors[1])

    monkeypatch.setattr(lbfgs.Coordinator, "commit", kill_in_the_second)
    run = tmp_path / "r"
    with caplog.at_level(logging.WARNING, logger="downpour.sandblaster.run"):
        assert _train(two_nodes, run, 3, "--set", "cluster.checkpoint_every=1", "--no-report") == 2
    assert killed == [ids[1]]
    record = json.loads((run / "sandblaster.json").read_text())
    _on_both_nodes(record, ids)
    said = f"sandblaster shard 1 was lost on node {ids[1][:8]} at {record['node_addresses'][1]} (ActorDiedError): "
    error = capsys.readouterr().err
    assert f"downpour: error: {said}the shards hold the parameters" in error
    # iteration 2's step was taken (the kill came after it), its checkpoint not: the resume goes on from iteration 1
    assert record["stopped"]["step"] == 2 and record["stopped"]["by"].startswith(f"RunError: {said}")
    assert f"the checkpoint of L-BFGS iteration 1 is kept: --resume {run} goes on from it" in caplog.text

    monkeypatch.setattr(lbfgs.Coordinator, "commit", real)
    assert main(["train", "--resume", str(run), "--no-report"]) == 0
    record = json.loads((run / "sandblaster.json").read_text())
    assert record["steps"] == 3 and record["resumed_from"] == 1 and "stopped" not in record
    _on_both_nodes(record, ids)
    assert [r["step"] for r in RunDir.open(run).metrics()] == [1, 2, 3]
