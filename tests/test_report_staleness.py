"""The report's "Staleness" paragraph (analysis/report_staleness.py): a cluster run's staleness histogram comes with
its mean, its bound and the setting that made it."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from downpour.analysis.report_staleness import staleness_paragraph
from downpour.config import load_config
from downpour.train.rundir import RunDir
from sim_run import simulated_run
from nesting import nested

pytestmark = pytest.mark.usefixtures("one_thread")   # (the run trains in this process)


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory) -> Path:
    """ufldl-sae, 24 steps on a simulated cluster of 4 workers and 2 shards, delay constant:1.5."""
    return simulated_run(tmp_path_factory.mktemp("staleness") / "run", "ufldl-sae", [
        "train.steps=24", "data.samples=800", "cluster.workers=4", "cluster.shards=2", 'cluster.delay="constant:1.5"'])


def test_the_paragraph_gives_staleness_jsons_numbers_and_the_settings_in_words(sim_run):
    said = staleness_paragraph(RunDir.open(sim_run))
    report = json.loads((sim_run / "staleness.json").read_text())
    overall, shards = report["overall"], report["per_shard"]
    means = {int(w): v["mean"] for w, v in report["per_worker"].items()}
    low, high = min(means, key=lambda w: (means[w], w)), max(means, key=lambda w: (means[w], -w))
    assert said.startswith("<p><b>Staleness</b> (simulated cluster, 4 workers, 2 shards, async, delay constant:1.5 "
                           "in virtual time, n_fetch 1, n_push 1, no compensation): ")
    assert f"mean {overall['mean']:.2f}, max {overall['max']}, over {overall['pushes']} shard updates " \
           f"({shards['0']['pushes']} pushes, each applied by both shards)" in said
    assert f"per-worker means from {means[low]:.2f} (worker {low}) to {means[high]:.2f} (worker {high})" in said
    # the hand value (docs/parameter-server.md: N·⌈T⌉ + w) is each worker's commonest staleness, once running
    commonest = [max(v["histogram"].items(), key=lambda kv: kv[1])[0] for _, v in sorted(report["per_worker"].items())]
    assert commonest == ["8", "9", "10", "11"] and "by hand (docs/parameter-server.md) 8 to 11 for workers 0 to 3" in said
    assert "clock gap" not in said                                       # async: no bound to say


def test_a_bounded_ray_run_says_its_bound_queue_and_refused_pushes(sim_run, tmp_path):
    cfg = load_config("ufldl-sae", ['cluster.runner="ray"', "cluster.workers=4", 'cluster.consistency="bounded:1"',
                                    "cluster.n_push=4", 'cluster.compensation="dc-asgd"'])
    run = RunDir.create(tmp_path / "r", cfg)
    report = {**json.loads((sim_run / "staleness.json").read_text()), "max_clock_gap": 1, "rejected": {"nan": 3}}
    run.write_json("staleness.json", report)
    said = staleness_paragraph(run)
    assert ("(Ray cluster, 4 workers, 2 shards, bounded:1, n_fetch 1, n_push 4, compensation dc-asgd at lambda 0.04)"
            in said)
    assert "max clock gap 1 (bound 1)" in said and "3 shard pushes refused and not counted (nan: 3)" in said
    assert "by hand" not in said and "delay" not in said
    run = RunDir.create(tmp_path / "a", load_config("ufldl-sae", ['cluster.runner="ray"', "cluster.queue_depth=1"]))
    run.write_json("staleness.json", report)
    assert ", async, queue_depth 1: 1 queued push cycle per worker, n_fetch 1," in staleness_paragraph(run)
    # the default's 0 says it is the default, beside the 2 it means (cluster.json records the 2)
    run = RunDir.create(tmp_path / "d", load_config("ufldl-sae", ['cluster.runner="ray"']))
    run.write_json("staleness.json", report)
    assert ", async, the default queue_depth 0: 2 queued push cycles per worker," in staleness_paragraph(run)
    assert nested(staleness_paragraph(run)) == [] and nested(said) == []      # (its settings sit in a parenthesis)


@pytest.mark.parametrize("sets", [[], ['cluster.runner="simulated"', 'cluster.algorithm="sandblaster"']])
def test_a_local_or_sandblaster_run_has_no_staleness_paragraph(sim_run, tmp_path, sets):
    run = RunDir.create(tmp_path / "r", load_config("ufldl-sae", sets))
    shutil.copy(sim_run / "staleness.json", run.path / "staleness.json")    # (even with a staleness.json beside it)
    assert staleness_paragraph(run) == ""
    simulated = RunDir.create(tmp_path / "s", load_config("ufldl-sae", ['cluster.runner="simulated"']))
    assert staleness_paragraph(simulated) == ""                          # no staleness.json: nothing to say
    (simulated.path / "staleness.json").write_text('{"overall": ')
    assert staleness_paragraph(simulated) == ""                          # nor where it cannot be read (cut short)
    shutil.copy(sim_run / "staleness.json", simulated.path / "staleness.json")
    assert re.search(r"<b>Staleness</b> .*: mean \d+\.\d\d, max \d+", staleness_paragraph(simulated))


def test_no_hand_value_where_a_push_was_refused(sim_run, tmp_path):
    """A refused push makes no version, so the rule's value is not exact after it: the paragraph gives none (not
    beside the refused pushes)."""
    shutil.copytree(sim_run, tmp_path / "r")
    run = RunDir.open(tmp_path / "r")
    run.write_json("staleness.json", {**run.read_json("staleness.json"), "rejected": {"non-finite": 3}})
    said = staleness_paragraph(run)
    assert "3 shard pushes refused and not counted (non-finite: 3)" in said and "by hand" not in said


def test_a_replaced_partitions_late_writes_are_not_called_shard_pushes(sim_run, tmp_path):
    """A fenced slice is a write a killed partition staged into its retired inbox, not a push: the paragraph does
    not read "2 shard pushes refused and not counted (fenced: 2)"."""
    shutil.copytree(sim_run, tmp_path / "r")
    run = RunDir.open(tmp_path / "r")
    run.write_json("staleness.json", {**run.read_json("staleness.json"), "rejected": {"fenced": 2}})
    said = staleness_paragraph(run)
    assert "late writes of a replaced partition refused: 2" in said and "shard push" not in said
    run.write_json("staleness.json", {**run.read_json("staleness.json"), "rejected": {"fenced": 2, "non-finite": 3}})
    said = staleness_paragraph(run)
    assert ("3 shard pushes refused and not counted (non-finite: 3); late writes of a replaced partition refused: 2"
            in said)


def test_a_ray_runs_report_names_its_nodes_what_each_held_and_the_start_beside_the_training(sim_run, tmp_path):
    """From cluster.json's node_ids, node_addresses, placement and start_seconds (not only "Ray cluster, 2 workers, 2
    shards"); a run whose cluster.json has none of them (older, simulated) gets no note."""
    import html

    from downpour.analysis.report_placement import placement_note
    from downpour.analysis.report_training import training_section

    assert placement_note(RunDir.open(sim_run)) == ""
    run = tmp_path / "run"
    shutil.copytree(sim_run, run)
    summary = json.loads((run / "cluster.json").read_text())
    a, b = "a" * 56, "b" * 56
    summary.update(nodes=2, node_ids=[a, b], node_addresses=["10.0.0.1", ""], start_seconds=8.34, seconds=42.1,
                   placement={"shards": [0, 1], "workers": [1, 0, 1, 1]})
    (run / "cluster.json").write_text(json.dumps(summary))
    said = html.unescape(placement_note(RunDir.open(run)))
    batch = load_config(str(run / "config.toml")).train.batch_size
    assert summary["steps"] == 24 and batch > 1       # the rate: the 4 replicas' 24 steps of `batch` over 42.1 s
    last = RunDir.open(run).metrics()[-1]
    assert last["step"] == 24 and last["time"] < 2     # of the 42.1 s, those after the last step's row
    assert said == ('<p class="note">Placement (cluster.json): 2 nodes; node aaaaaaaa at 10.0.0.1: shard 0, worker 1; '
                    "node bbbbbbbb: shard 1, worker 0, worker 2, worker 3; start 8.3 s (joining Ray, every actor up), "
                    f"training 42.1 s ({24 * batch:,} samples, {24 * batch / 42.1:.0f} samples/s over those seconds: "
                    f"the whole training, its start left out; {42.1 - last['time']:.1f} s of them after its last "
                    "step, saving the server and the model and closing the actors: "
                    f"{24 * batch / last['time']:,.0f} samples/s up to it).</p>")
    assert "Placement (cluster.json): 2 nodes" in training_section(RunDir.open(run), {})
    # a rate past 999 is grouped as the samples are (a 2-node cat-demo run read "6,400 samples, 1698 samples/s")
    (run / "cluster.json").write_text(json.dumps({**summary, "seconds": 24 * batch / 1698}))
    assert "samples, 1,698 samples/s over those seconds" in html.unescape(placement_note(RunDir.open(run)))
    summary["placement"]["workers"][0] = 2            # an index past node_ids: nothing said rather than a wrong node
    (run / "cluster.json").write_text(json.dumps(summary))
    assert placement_note(RunDir.open(run)) == ""


def test_a_sandblaster_ray_runs_report_names_its_nodes_from_sandblaster_json(tmp_path):
    """A Sandblaster run writes sandblaster.json, no cluster.json: the note reads it, so a Sandblaster run's report says
    where it ran (a 3-node Ray run: 2 workers, 2 shards)."""
    import html

    from downpour.analysis.report_placement import placement_note

    cfg = load_config("tica-8x8", ['model.name="rica-8x8"', 'cluster.algorithm="sandblaster"', 'cluster.runner="ray"'])
    run = RunDir.create(tmp_path / "r", cfg)
    a, b, c = "a" * 56, "b" * 56, "c" * 56
    run.write_json("sandblaster.json", {"steps": 40, "seconds": 10.9, "nodes": 3, "node_ids": [a, b, c],
                                        "node_addresses": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                                        "placement": {"shards": [2, 0], "workers": [0, 1]}})
    assert html.unescape(placement_note(run)) == (
        '<p class="note">Placement (sandblaster.json): 3 nodes; node aaaaaaaa at 10.0.0.1: shard 1, worker 0; '
        "node bbbbbbbb at 10.0.0.2: worker 1; node cccccccc at 10.0.0.3: shard 0.</p>")


def test_a_failed_sandblaster_runs_note_says_its_start_its_lost_workers_and_what_stopped_it(tmp_path):
    """A Sandblaster run's sandblaster.json written by its failure (its ``stopped``) or with a worker lost: the note
    says the start beside the training (Ray's ``start_seconds``) and marks the lost worker with its reason; where and
    by what the run stopped is the stop note's (every runner's, said once: tests/test_report_stop.py)."""
    import html

    from downpour.analysis.report_placement import placement_note
    from downpour.analysis.report_stop import stop_note

    cfg = load_config("tica-8x8", ['model.name="rica-8x8"', 'cluster.algorithm="sandblaster"', 'cluster.runner="ray"'])
    run = RunDir.create(tmp_path / "r", cfg)
    a, b = "a" * 56, "b" * 56
    run.write_json("sandblaster.json", {
        "steps": 3, "seconds": 10.9, "start_seconds": 4.25, "nodes": 2, "node_ids": [a, b],
        "node_addresses": ["10.0.0.1", "10.0.0.2"], "placement": {"shards": [1, 0], "workers": [0, 1]},
        "lost_workers": {"1": "ActorDiedError"},
        "stopped": {"step": 3, "steps": 10,
                    "by": "RunError: sandblaster shard 0 was lost on node bbbbbbbb\n  and a line more"}})
    assert html.unescape(placement_note(run)) == (
        '<p class="note">Placement (sandblaster.json): 2 nodes; node aaaaaaaa at 10.0.0.1: shard 1, worker 0; '
        "node bbbbbbbb at 10.0.0.2: shard 0, worker 1 (lost: ActorDiedError); start 4.2 s (joining Ray, every actor "
        "up), training 10.9 s.</p>")
    assert stop_note(run) == ('<p class="note">Stopped after L-BFGS iteration 3 of 10: RunError: sandblaster shard 0 '
                              "was lost on node bbbbbbbb.</p>")     # (the first line of ``by``, which keeps it whole)


def test_the_placement_note_names_each_partition_by_its_replica(sim_run, tmp_path):
    """cluster.json lists worker w's partition p at w·K + p; the note says "partition p of replica w", as the fault
    events do (not "partition 2", the flat index, which leaves the replica to the reader)."""
    import html

    from downpour.analysis.report_placement import placement_note

    run = tmp_path / "run"
    shutil.copytree(sim_run, run)
    a, b = "a" * 56, "b" * 56
    summary = json.loads((run / "cluster.json").read_text())
    summary.update(nodes=2, node_ids=[a, b], node_addresses=["10.0.0.1", "10.0.0.2"], start_seconds=None,
                   placement={"shards": [1, 0], "workers": [0, 1], "partitions": [0, 1, 1, 0, 0, 1]})   # 2 x 3
    (run / "cluster.json").write_text(json.dumps(summary))
    said = html.unescape(placement_note(RunDir.open(run)))
    assert said == ('<p class="note">Placement (cluster.json): 2 nodes; node aaaaaaaa at 10.0.0.1: shard 1, worker 0, '
                    "partition 0 of replica 0, partition 0 of replica 1, partition 1 of replica 1; node bbbbbbbb at "
                    "10.0.0.2: shard 0, worker 1, partition 1 of replica 0, partition 2 of replica 0, partition 2 of "
                    "replica 1.</p>")


def test_the_placement_note_says_where_the_shards_were_before_each_restart_and_the_stop(sim_run, tmp_path):
    """cluster.json's ``shard_events`` keep each ended go's placement (a restarted shard's previous node): the note
    says them in one line, the lost shards marked (not the last go's placement alone, and
    something for a stopped run too, whose cluster.json has no top-level placement)."""
    import html

    from downpour.analysis.report_placement import placement_note

    run = tmp_path / "run"
    shutil.copytree(sim_run, run)
    a, b = "a" * 56, "b" * 56
    gone = {"nodes": 2, "node_ids": [a, b], "node_addresses": ["10.0.0.1", "10.0.0.2"],
            "placement": {"shards": [0, 1], "workers": [1, 0]}}
    events = [{"event": "shards-restarted", "step": 20, "n": 1, **gone, "lost_shards": [1]},
              {"event": "shards-lost", "step": 30, "n": 2, "nodes": 1, "node_ids": [a], "node_addresses": ["10.0.0.1"],
               "placement": {"shards": [0, 0], "workers": [0, 0]}, "lost_shards": [0, 1]},
              {"event": "shards-restarted", "step": 9, "n": 3}]          # (off Ray: no placement, left out)
    summary = json.loads((run / "cluster.json").read_text())
    summary.update(nodes=1, node_ids=[a], node_addresses=["10.0.0.1"], placement={"shards": [0, 0], "workers": [0, 0]},
                   shard_events=events[:1], start_seconds=None)
    (run / "cluster.json").write_text(json.dumps(summary))
    said = html.unescape(placement_note(RunDir.open(run)))
    assert said == ('<p class="note">Placement (cluster.json): 1 node; node aaaaaaaa at 10.0.0.1: shard 0, shard 1, '
                    "worker 0, worker 1. Shards before each restart or stop (cluster.json shard_events): restart at "
                    "step 20: shard 0 on node aaaaaaaa at 10.0.0.1, shard 1 (lost) on node bbbbbbbb at 10.0.0.2.</p>")
    (run / "cluster.json").write_text(json.dumps({"runner": "ray", "shard_events": events}))     # a stop's
    said = html.unescape(placement_note(RunDir.open(run)))
    assert said == ('<p class="note">Shards before each restart or stop (cluster.json shard_events): restart at step '
                    "20: shard 0 on node aaaaaaaa at 10.0.0.1, shard 1 (lost) on node bbbbbbbb at 10.0.0.2; stop at "
                    "step 30: shard 0 (lost) on node aaaaaaaa at 10.0.0.1, shard 1 (lost) on node aaaaaaaa at "
                    "10.0.0.1.</p>")


def test_a_stopped_downpour_runs_note_says_the_step_it_stopped_at_and_what_stopped_it(sim_run, tmp_path):
    """A Downpour Ray run stopped by a lost shard writes a short cluster.json (``stopped``, ``shard_events``, no
    top-level placement): the note says where the shards were; the stop note says the stop, in steps, and the first
    line of ``by`` (as a failed Sandblaster run's says its L-BFGS iteration)."""
    import html

    from downpour.analysis.report_placement import placement_note
    from downpour.analysis.report_stop import stop_note

    run = tmp_path / "run"
    shutil.copytree(sim_run, run)
    a, b = "a" * 56, "b" * 56
    lost = {"event": "shards-lost", "step": 33, "n": 1, "nodes": 2, "node_ids": [a, b],
            "node_addresses": ["10.0.0.1", "10.0.0.2"], "placement": {"shards": [0, 1], "workers": [1, 0]},
            "lost_shards": [1]}
    by = "shard 1 lost at step 33 on node bbbbbbbb at 10.0.0.2 (ActorDiedError)\n  and a line more"
    stopped = {"step": 33, "steps": 60, "by": by}
    (run / "cluster.json").write_text(json.dumps({"runner": "ray", "checkpoint": 30, "shard_restarts": 0,
                                                  "shard_events": [lost], "stopped": stopped}))
    assert html.unescape(placement_note(RunDir.open(run))) == (
        '<p class="note">Shards before each restart or stop (cluster.json shard_events): stop at step 33: shard 0 on '
        "node aaaaaaaa at 10.0.0.1, shard 1 (lost) on node bbbbbbbb at 10.0.0.2.</p>")
    assert html.unescape(stop_note(RunDir.open(run))) == (
        '<p class="note">Stopped after step 33 of 60: shard 1 lost at step 33 on node bbbbbbbb at 10.0.0.2 '
        "(ActorDiedError).</p>")


def test_a_split_runs_paragraph_gives_each_partitions_staleness_on_its_own_shards(tmp_path):
    """cluster.json's ``partition_shards`` (each partition's shards, written by the runner) and staleness.json's
    per-shard means give each partition's staleness; a split whose filters are all tiled owns no shard and says so
    (not only "2 partitions per replica")."""
    import html

    tiny = ["data.size=20", "model.kernels=[5,3]", "model.maps=[2,2]", "train.batch_size=8", "train.steps=8",
            "data.samples=200", "cluster.workers=2", "cluster.shards=4", "cluster.partitions=2", "model.tile=0"]
    run = simulated_run(tmp_path / "untied", "cat-demo", tiny)
    summary = json.loads((run / "cluster.json").read_text())
    assert summary["partition_shards"] == [[0, 1], [2, 3]]      # 2 partitions' untied filters, 2 shards each
    report = json.loads((run / "staleness.json").read_text())
    report["per_shard"]["0"]["mean"], report["per_shard"]["1"]["mean"] = 1.0, 2.0     # (a Ray run's: each its own)
    report["per_shard"]["2"]["mean"], report["per_shard"]["3"]["mean"] = 0.5, 0.5
    (run / "staleness.json").write_text(json.dumps(report))
    assert "; per partition, on its own shards: partition 0 (shards 0, 1) 1.50, partition 1 (shards 2, 3) 0.50" \
           in staleness_paragraph(RunDir.open(run))
    tiled = simulated_run(tmp_path / "tiled", "cat-demo", [*tiny[:-1], "model.tile=2", "cluster.shards=2"])
    assert json.loads((tiled / "cluster.json").read_text())["partition_shards"] == [[], []]
    assert "the partitions own no shard (their stages' filters are the shared banks, pushed by the replica)" \
           in html.unescape(staleness_paragraph(RunDir.open(tiled)))
