"""Each Ray node's install beside the driver's (downpour.ps.node_environments): one warning per node whose versions
differ, naming it, the package and both versions; environment.json's ``nodes``; and a real local Ray run's record."""
import json
import logging

from downpour.ps.node_environments import node_environments, start_report
from downpour.train.environment import environment, record_environment

NODE_A, NODE_B = "a" * 56, "b" * 56        # Ray's node ids: 56 hex digits
ADDRESSES = {NODE_A: "10.0.0.4", NODE_B: "10.0.0.5"}


def _actor_on(node, **other):
    """A stand-in actor's start answer: this install's record, ``other`` versions in place of its own."""
    report = start_report(node)
    report["environment"].update(other)
    return report


def test_a_node_with_another_numpy_is_warned_of_once_and_recorded(caplog):
    here = environment()
    reports = [_actor_on(NODE_A), _actor_on(NODE_B, numpy="1.26.4"), _actor_on(NODE_B, numpy="1.26.4")]
    with caplog.at_level(logging.WARNING, logger="downpour.ps.node_environments"):
        nodes = node_environments(reports, ADDRESSES)
    assert nodes == {"10.0.0.4": {}, "10.0.0.5": {"numpy": "1.26.4"}}
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1      # one for node b (two actors there), none for node a
    assert "node bbbbbbbb at 10.0.0.5" in warned[0] and f"numpy 1.26.4 (driver {here['numpy']})" in warned[0]


def test_another_commit_and_torch_are_named_in_the_one_warning(caplog):
    here = {**environment(), "commit": "1234abcd", "torch": "2.13.0+cpu"}
    other = _actor_on(NODE_A, commit="feedbeef", torch="2.12.1+cpu")
    with caplog.at_level(logging.WARNING, logger="downpour.ps.node_environments"):
        nodes = node_environments([other], {}, here)
    assert nodes == {NODE_A: {"commit": "feedbeef", "torch": "2.12.1+cpu"}}    # no address known: the node's id
    (line,) = [r.getMessage() for r in caplog.records]
    assert "commit feedbeef (driver 1234abcd)" in line and "torch 2.12.1+cpu (driver 2.13.0+cpu)" in line


def test_another_cpu_is_recorded_but_not_warned_of(caplog):
    with caplog.at_level(logging.WARNING, logger="downpour.ps.node_environments"):
        nodes = node_environments([_actor_on(NODE_A, cpu="Some Other CPU")], ADDRESSES)
    assert nodes == {"10.0.0.4": {"cpu": "Some Other CPU"}} and not caplog.records


def test_actors_of_one_node_that_differ_are_each_recorded():
    nodes = node_environments([_actor_on(NODE_A), _actor_on(NODE_A, scipy="1.0.0")], ADDRESSES)
    assert nodes == {"10.0.0.4 (1 of 2)": {}, "10.0.0.4 (2 of 2)": {"scipy": "1.0.0"}}


def test_two_nodes_at_one_address_are_told_apart_by_their_ids():
    nodes = node_environments([_actor_on(NODE_A), _actor_on(NODE_B, numpy="1.26.4")],
                              {NODE_A: "10.0.0.4", NODE_B: "10.0.0.4"})
    assert nodes == {"10.0.0.4 aaaaaaaa": {}, "10.0.0.4 bbbbbbbb": {"numpy": "1.26.4"}}


def test_the_nodes_go_into_environment_json_and_a_resume_on_the_same_nodes_keeps_the_record(tmp_path):
    nodes = {"10.0.0.5": {"numpy": "1.26.4"}}
    record_environment(tmp_path, 0, nodes)
    first = json.loads((tmp_path / "environment.json").read_text())
    assert first["nodes"] == nodes and first["step"] == 0
    record_environment(tmp_path, 40, nodes)
    assert json.loads((tmp_path / "environment.json").read_text()) == first     # nothing but the step changed
    record_environment(tmp_path, 80, {"10.0.0.5": {}})                          # the node's numpy upgraded
    again = json.loads((tmp_path / "environment.json").read_text())
    assert again["nodes"] == {"10.0.0.5": {}} and again["earlier"][0]["nodes"] == nodes


def test_a_run_on_a_local_ray_records_its_node(tmp_path, local_ray):
    import ray

    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir
    from ray_runs import run_cfg

    cfg = run_cfg("train.steps=8", "cluster.workers=1", "cluster.shards=1")
    run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
    record = json.loads((tmp_path / "r" / "environment.json").read_text())
    here = ray.get_runtime_context().get_node_id()
    address = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == here)
    assert record["nodes"] == {address: {}}     # one node, its install the driver's
