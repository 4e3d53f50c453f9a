"""A whole node of a Downpour run removed mid-run, or added during its start, on a real two-node Ray
(``ray.cluster_utils.Cluster`` on this machine, tests/two_nodes.py: a head and one added node, 1 CPU each), the run
joined by address as a user's is (`downpour train --address`). The added node (the one a cluster can lose: the head
cannot be removed) crashes, its processes killed, not stopped gracefully, every actor on it gone at once
(tests/test_ps_ray_lost_workers.py kills one actor; tests/test_ps_ray_nodes.py crashes a node of runs that restart
what it held).

The placer puts worker w at index w and shard j at index R + j (R workers) of the nodes sorted by id, round-robin
(``downpour.ps.connect_on_ray.spot``); which of the two the added node is, first or second, is Ray's draw, so a test
picks R from it. Only workers on the added node: the run finishes on the head's, and cluster.json, the log and the
report's Faults line name the workers lost. A shard and a worker on it: the run stops with the one line
docs/parameter-server.md gives a lost shard with restarts off, naming the shard and its node, and `--resume` finishes
the run on the head alone from the checkpoint it names. A worker on it with a restart left: its replacement goes to
the head, not to the crashed node that Ray lists alive still (the restart's one read of the nodes made to say so).

A node added while a run starts, after its one ``ray.nodes()`` read, to the head alone (its 1 CPU held by another
job's actor, ``Hog``): the run's one worker, with no room on the head, starts on the new node, away from the shard and
the driver. It has no inbox on the shard's node to stage its pushes in, so its cycles must go as Ray tasks, not over a
channel (the piped loop, :mod:`downpour.ps.piped_on_ray`): the start chooses from where the shards and the workers said
they run, not from the nodes it read (one node, there: the piped loop's channel handed to that worker failed its first
cycle, the run ending with every worker lost).

The module's head has a crashed node dead in seconds (tests/test_ps_ray_nodes.py's FAST_DEATH). Its tests share it in
their order: the workers' test crashes the added node, the replacement's test adds one (anew until it sorts first)
and crashes it, the start's test finds the head alone and adds the node the shard's test loses (a test run alone
removes or adds the node it needs, some 4 s; a head of its own cost 7 s, 2026-12-07 at load 9-12)."""
import html
import logging
import re
import shlex
import time

import pytest
from test_ps_ray_nodes import FAST_DEATH
from two_nodes import STORE, two_node_cluster

from downpour.cli import main
from downpour.config import load_config
from downpour.ps import starting_on_ray
from downpour.ps.cluster import run_cluster
from downpour.train.rundir import RunDir

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, LOST_AT = 200, 20
# after the crash each cycle granted waits PACE_S until the driver has the loss (2-5 s with FAST_DEATH): the survivors
# alone would finish 180 tiny steps first on a fast machine, and no worker would be lost; a loss not seen within
# SEEN_WITHIN_S stops the pacing, and the test fails saying so
PACE_S, SEEN_WITHIN_S = 0.2, 60
# the shard's test: SHARD_STEPS, its crash at step SHARD_LOST_AT, each cycle after it paced SHARD_PACE_S until the run
# stops. Unpaced, at 60 steps its run once finished, exit 0 and nothing lost (1 of 5 runs, load 12-16, 2026-12-07; the
# crashed node's shard may answer a moment after its node is removed, and 40 tiny steps take 1-2 s): 200 steps (4-9 s)
# were its margin, and the resume's 180 steps its price. Paced, the 35 cycles left take 17 s or more, and the resume
# trains some 40 (the stop comes when Ray has the node dead, paced or not: the pacing costs a cycle's 0.5 s at most).
# The crash comes between two checkpoints (every 10): one written with a push in flight counts it (step 21), and a
# crash at step 20, just after it, stopped the run at step 20, before the checkpoint it kept (paced, 1 run of 1)
SHARD_STEPS, SHARD_PACE_S, SHARD_LOST_AT = 60, 0.5, 25
TINY = ["--config", "ufldl-sae", "--runner", "ray", "--no-report",
        *[a for o in ["data.samples=256", "train.batch_size=16", "train.log_every=4", "train.tensorboard=false",
                      "train.threads=1"] for a in ("--set", o)]]


@pytest.fixture(scope="module")
def cluster():
    """The module's cluster (tests/two_nodes.py), its head having a crashed node dead in seconds."""
    yield from two_node_cluster(FAST_DEATH)


@pytest.fixture
def two_nodes(cluster):
    """The module's cluster with its added node alive (one added in place of one a test before removed), the nodes'
    ids sorted, and the added node's; Ray shut down after the test."""
    cluster, _ = cluster
    if not cluster.worker_nodes:
        cluster.add_node(num_cpus=1, object_store_memory=STORE)
        cluster.wait_for_nodes()
    added = next(iter(cluster.worker_nodes))
    yield cluster, sorted(node.node_id for node in cluster.list_all_nodes()), added
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def head_alone(cluster):
    """The module's cluster with its head alone (an added node, where one is alive, removed); Ray shut down after the
    test."""
    cluster, _ = cluster
    for node in list(cluster.worker_nodes):
        cluster.remove_node(node)
    yield cluster
    if ray.is_initialized():
        ray.shutdown()


def _removing(monkeypatch, cluster, node, when, seen, pace=PACE_S):
    """The driver removes ``node`` (a crash) before it grants the first cycle at which ``when(driver)`` holds, and
    paces every cycle after it (``pace`` s) until ``seen(driver)`` (at most :data:`SEEN_WITHIN_S`). Returns a dict
    that holds the step of the removal (``at``) and, past SEEN_WITHIN_S, the step the pacing stopped at (``unseen``)."""
    from downpour.ps.cluster_on_ray import RayCluster

    real, crash = RayCluster._dispatch, {}

    def dispatch(self, w):
        if not crash and when(self):
            crash.update(at=self.coord.done, t=time.monotonic())
            cluster.remove_node(node, allow_graceful=False)      # its processes killed, the actors on it with them
        if crash and not seen(self):
            if time.monotonic() - crash["t"] < SEEN_WITHIN_S:
                time.sleep(pace)
            else:
                crash.setdefault("unseen", self.coord.done)
        real(self, w)

    monkeypatch.setattr(RayCluster, "_dispatch", dispatch)
    return crash


def test_a_node_holding_only_workers_removed_leaves_the_run_to_the_heads_which_finish_it(
        tmp_path, two_nodes, monkeypatch, caplog):
    """One shard, on the head's node; the workers at the added node's place in the round-robin (worker 1 where the
    added node sorts second: R = 2; workers 0 and 2 where it sorts first: R = 3, the shard at index 3) are lost with
    it at step 20 (no restarts: cluster.restarts = 0), and the head's worker trains the run to its end. cluster.json
    lists the lost workers and keeps the placement of the start, the log says each was lost and the run went on, and
    the report's Faults line names each with its step and its node."""
    from downpour.analysis.report_cluster import cluster_faults

    cluster, ids, added = two_nodes
    place = ids.index(added.node_id)          # the added node's index among the sorted nodes
    workers = 3 - place                       # the shard (index R) on the head's node, 1 - place
    lost = [w for w in range(workers) if w % 2 == place]
    crash = _removing(monkeypatch, cluster, added, lambda d: d.coord.done >= LOST_AT,
                      lambda d: set(lost) <= set(d.coord.lost))
    run = tmp_path / "r"
    with caplog.at_level(logging.WARNING, logger="downpour.ps"):
        code = main(["train", *TINY, "--steps", str(STEPS), "--address", cluster.address, "--workers", str(workers),
                     "--shards", "1", "--out", str(run)])
    assert "unseen" not in crash, f"the crash at step {crash['at']} was not seen in {SEEN_WITHIN_S} s"
    assert code == 0 and crash["at"] >= LOST_AT
    summary = RunDir.open(run).read_json("cluster.json")
    assert summary["steps"] == STEPS and sorted(summary["lost_workers"]) == lost and "stopped" not in summary
    assert summary["node_ids"] == ids and summary["placement"] == {"shards": [1 - place],
                                                                   "workers": [w % 2 for w in range(workers)]}
    where = rf"on node {added.node_id[:8]} at {re.escape(summary['node_addresses'][place])} \((Actor\w+Error)\)"
    faults = html.unescape(cluster_faults(RunDir.open(run)))
    for w in lost:
        said = re.search(rf"worker {w} was lost at step (\d+) {where}; the run went on without it", caplog.text)
        assert said and re.search(rf"worker {w} lost at step {said[1]} {where}, not restarted "
                                  rf"\(cluster\.restarts = 0\)", faults)
    assert caplog.text.count("; the run went on without it") == faults.count("lost at step") == len(lost)
    # the run's second half is the head's workers' alone. Not "every row past the loss": a row carries a step of the
    # range its cycle was granted, so the cycle a lost worker returned before it died can write rows a few steps past
    # the step it was found lost at (seen: lost at 23, rows at 24 and 28; at the step the crash was seen + 8, 1 run in
    # 2 on an idle machine)
    rows = RunDir.open(run).metrics()
    survivors = {w for w in range(workers) if w not in lost}
    assert {r["worker"] for r in rows if r["step"] > STEPS // 2} == survivors


def test_a_replacement_avoids_the_crashed_node_that_ray_still_lists_alive(tmp_path, two_nodes, monkeypatch, caplog):
    """One worker, on the added node (added anew until it sorts first: worker 0's place, the shard's on the head), one
    restart; the added node crashes at step 20. Ray's default health checks list a crashed node alive for some 14 s
    after its actors' loss shows: the restart's one ``ray.nodes()`` read is made to say so (this head has the node dead
    in seconds). The node's raylet no longer answers, so the replacement is pinned to the head, where the lost worker's
    CPU is free, said in the log: staleness.json holds no ``restart-placed-again`` (pinned to the crashed node, the
    replacement died coming up and was placed again: 1 run of 1 on the code before it), and the run ends 60 of 60 on
    the head."""
    from downpour.ps.cluster_on_ray import RayCluster

    cluster, _, added = two_nodes
    while sorted(node.node_id for node in cluster.list_all_nodes()).index(added.node_id):
        cluster.remove_node(added)
        added = cluster.add_node(num_cpus=1, object_store_memory=STORE)
        cluster.wait_for_nodes()
    head = cluster.head_node.node_id
    # (paced until the loss is seen: the crashed node's worker trained on some 36 tiny steps before its death showed)
    crash = _removing(monkeypatch, cluster, added, lambda d: d.coord.done >= LOST_AT,
                      lambda d: any(e["event"] == "worker-lost" for e in d.coord.events))
    spawn, nodes, listed = RayCluster._spawn, ray.nodes, []

    def spawned(self, w, seq, step):      # the restart's read lists the crashed node alive, once (as Ray would)
        with monkeypatch.context() as m:
            if self._incarnation[w] and not listed:
                listed.append(w)
                m.setattr(ray, "nodes", lambda: [{**nd, "Alive": True, "Resources": {"CPU": 1.0}}
                                                 if nd["NodeID"] == added.node_id else nd for nd in nodes()])
            return spawn(self, w, seq, step)

    monkeypatch.setattr(RayCluster, "_spawn", spawned)
    run = tmp_path / "r"
    with caplog.at_level(logging.WARNING, logger="downpour.ps"):
        code = main(["train", *TINY, "--steps", "60", "--address", cluster.address, "--workers", "1", "--shards", "1",
                     "--out", str(run), "--set", "cluster.restarts=1"])
    assert "unseen" not in crash, f"the crash at step {crash['at']} was not seen in {SEEN_WITHIN_S} s"
    assert code == 0 and listed == [0]
    summary = RunDir.open(run).read_json("cluster.json")
    events = [e["event"] for e in RunDir.open(run).read_json("staleness.json")["events"]]
    assert events == ["worker-lost", "worker-restarted"] and summary["steps"] == 60 and summary["lost_workers"] == []
    assert summary["node_ids"][summary["placement"]["workers"][0]] == head
    assert (f"worker 0's node {added.node_id[:8]} does not answer (Ray lists it alive): its replacement is pinned to "
            f"node {head[:8]}") in caplog.text


def test_a_worker_on_a_node_that_joined_during_the_start_gets_its_cycles_as_ray_tasks(
        tmp_path, head_alone, monkeypatch):
    from ray_room import Hog

    ray.init(address=head_alone.address)
    head = ray.get_runtime_context().get_node_id()
    hog = Hog.options(num_cpus=1).remote()      # the head's CPU: the worker waits for room
    ray.get(hog.ping.remote())
    real, added = starting_on_ray.gathered, []

    def gathered(refs, what, *more, **named):
        if what == "shard actors":     # after the start's ray.nodes() and the actors asked of Ray
            added.append(head_alone.add_node(num_cpus=1, object_store_memory=STORE).node_id)
            head_alone.wait_for_nodes()
        return real(refs, what, *more, **named)

    monkeypatch.setattr(starting_on_ray, "gathered", gathered)
    cfg = load_config("ufldl-sae", ["cluster.runner=ray", f"cluster.address={head_alone.address}", "data.samples=64",
                                    "train.batch_size=8", "train.steps=12", "cluster.workers=1", "cluster.shards=1",
                                    "train.tensorboard=false"])
    try:
        run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
    finally:
        ray.kill(hog)
    summary = RunDir.open(tmp_path / "r").read_json("cluster.json")
    where = {kind: [summary["node_ids"][i] for i in nodes] for kind, nodes in summary["placement"].items()}
    assert where == {"shards": [head], "workers": added}     # the shard beside the driver, the worker on the new node
    assert summary["applied"] == summary["accepted"] == [12]


def test_a_node_holding_a_shard_removed_stops_the_run_naming_it_and_the_resume_finishes_on_the_head(
        tmp_path, two_nodes, monkeypatch, capsys, caplog):
    """Two workers and two shards, a worker and a shard on each node; the added node is removed at step 25 or later,
    once a server checkpoint is written (every 10 pushes). With shard restarts off the command exits 2 with the one line
    docs/parameter-server.md gives ("shard J lost at step N on node ... (...), and shard restarts are off
    (cluster.shard_restarts = 0): the run stopped; --resume RUN goes on from its last server checkpoint, at step
    M ..."), cluster.json and staleness.json record the stop, and `--resume RUN` finishes the run on the head alone
    (its two workers sharing its CPU), from that checkpoint. The warning of the checkpoint on the way out, data.json and
    the report's stop line give the step the error gives (they said 24 of a shard lost at step 22: the checkpoint first
    recorded the two pushes whose answers were in hand)."""
    from downpour.analysis.report_stop import run_stop
    from downpour.ps.checkpoint import load_server

    cluster, ids, added = two_nodes
    place, run = ids.index(added.node_id), tmp_path / "r"
    crash = _removing(monkeypatch, cluster, added,
                      lambda d: d.coord.done >= SHARD_LOST_AT and (run / "checkpoints" / "server.json").is_file(),
                      lambda d: False, SHARD_PACE_S)     # (paced until the run stops: SHARD_STEPS)
    code = main(["train", *TINY, "--steps", str(SHARD_STEPS), "--address", cluster.address, "--workers", "2",
                 "--shards", "2", "--out", str(run), "--set", "cluster.checkpoint_every=10",
                 "--set", "cluster.shard_restarts=0"])
    error = capsys.readouterr().err
    assert code == 2 and crash["at"] >= SHARD_LOST_AT
    kept = load_server(run / "checkpoints" / "server", meta_keys=("step",))[1]["step"]
    summary = RunDir.open(run).read_json("cluster.json")
    (event,) = summary["shard_events"]
    assert event["event"] == "shards-lost" and event["lost_shards"] == [place] and event["node_ids"] == ids
    node = f"node {added.node_id[:8]} at {re.escape(event['node_addresses'][place])}"
    # (the loss shows as the dead actor's error, or as a worker's relayed ShardGone where its push's read shows it)
    lost = r"\((?:Actor\w+Error|RayTaskError\(ShardGone\))\)"
    said = re.search(rf"downpour: error: (shard {place} lost at step (\d+) on {node} {lost}), and shard "
                     r"restarts are off \(cluster\.shard_restarts = 0\): the run stopped; --resume "
                     rf"{re.escape(shlex.quote(str(run)))} goes on from its last server checkpoint, at step {kept} "
                     r"\(its cluster\.json and staleness\.json say what happened\)\n", error)
    assert said, error
    assert summary["stopped"] == {"step": int(said[2]), "steps": SHARD_STEPS, "by": f"ShardLost: {said[1]}"}
    assert summary["checkpoint"] == kept and crash["at"] - 10 <= kept <= int(said[2])     # (a checkpoint every 10)
    assert RunDir.open(run).read_json("staleness.json")["events"][-1] == event
    # (a shard taken for lost that answers is checkpointed on the way out, at the stop's step, where no push was sent
    # since the last snapshot; else the checkpoint is refused or fails, and says so)
    assert re.search(rf"(could not checkpoint the server|the server was checkpointed) at step {said[2]}\b", caplog.text)
    assert "stopped at step" not in caplog.text      # (the error says the run stopped; a restart would go on)
    stopped = RunDir.open(run).read_json("data.json")["stopped"]
    assert stopped["step"] == run_stop(RunDir.open(run))["step"] == int(said[2])

    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--no-report"]) == 0
    summary = RunDir.open(run).read_json("cluster.json")
    assert summary["steps"] == SHARD_STEPS and summary["resumed_from"] == kept and "stopped" not in summary
    assert summary["nodes"] == 1 and summary["node_ids"] == [ids[1 - place]]
    assert summary["applied"] == summary["accepted"] == [SHARD_STEPS, SHARD_STEPS]
    assert [r["step"] for r in RunDir.open(run).metrics()][-1] == SHARD_STEPS
