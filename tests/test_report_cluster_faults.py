"""What the report says of a cluster run's staleness and faults: why it has no staleness histogram, and the faults
line (workers lost and restarted, a replacement placed again, a shard restart and its resume, a resume that started
no worker)."""
from __future__ import annotations

import pytest

from downpour.config import load_config
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings and analyses run in this process)


@pytest.mark.parametrize("sets, said", [
    ([], "Not a cluster run"),
    (["cluster.runner=simulated", "cluster.algorithm=sandblaster"], "Sandblaster L-BFGS"),
    (["cluster.runner=simulated"], "No staleness.json in this run"),
])
def test_the_report_says_why_a_run_has_no_staleness_histogram(tmp_path, sets, said):
    from downpour.analysis.report_cluster import no_staleness as _no_staleness

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", sets))
    assert said in _no_staleness(run)


def test_the_report_names_a_cluster_runs_lost_and_restarted_workers(tmp_path):
    """staleness.json records a worker lost at step 167: the report says it was lost, when, and whether it came back
    (not only the histogram, worker 0's bars smaller). A shard restart at step 0 is from the start (not "from the
    checkpoint of step 0", where the run has none: its log says "no checkpoint yet")."""
    import json

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    assert _cluster_faults(run) == ""                                    # no staleness.json: nothing said
    events = [{"event": "joined", "workers": [1], "step": 3},
              {"event": "worker-lost", "worker": 0, "step": 167, "reason": "ActorDiedError: the actor died\nmore"},
              {"event": "worker-restarted", "worker": 0, "step": 170},
              {"event": "shards-restarted", "step": 0, "reason": "ActorDiedError"}, {"event": "worker-lost"},
              {"event": "restart-given-up", "worker": 1, "step": 200, "reason": "not up within 120 s"}]
    (run.path / "staleness.json").write_text(json.dumps({"events": events}))
    assert _cluster_faults(run) == ('<p class="note">Faults: worker 0 lost at step 167 (ActorDiedError: the actor '
                                    'died), restarted at step 170; the shards restarted from the start, '
                                    'step 0 (ActorDiedError); worker ? lost at step ?; worker 1&#x27;s restart '
                                    'given up at step 200 (not up within 120 s).</p>')
    lost = {"event": "shards-lost", "step": 63, "reason": "shard 1 lost at step 63 (ConnectionError)"}
    (run.path / "staleness.json").write_text(json.dumps({"events": [lost]}))
    assert _cluster_faults(run) == ('<p class="note">Faults: the run stopped at step 63, a shard lost with '
                                    'cluster.shard_restarts spent (shard 1 lost at step 63 (ConnectionError)).</p>')
    on = {**events[1], "where": "node bbbbbbbb at 10.0.0.2"}    # Ray's: the node it ran on
    (run.path / "staleness.json").write_text(json.dumps({"events": [on]}))
    assert "worker 0 lost at step 167 on node bbbbbbbb at 10.0.0.2 (ActorDiedError: the actor died)" in \
        _cluster_faults(run)
    (run.path / "staleness.json").write_text(json.dumps({"events": events[1:2] * 300}))
    assert _cluster_faults(run).count("lost at step 167") == 10 and "; and 290 more (staleness.json" in _cluster_faults(run)
    (run.path / "staleness.json").write_text(json.dumps({"events": []}))
    assert _cluster_faults(run) == ""


def test_the_faults_line_says_a_replacement_placed_again_in_its_losss_entry(tmp_path):
    """A replacement pinned to a node that crashed before Ray said so is started again off it (restarts_on_ray): its
    ``restart-placed-again`` is said in the loss's entry, which stays open for what came of it."""
    import json

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    events = [{"event": "worker-lost", "worker": 1, "step": 20, "reason": "ActorUnavailableError"},
              {"event": "restart-placed-again", "worker": 1, "step": 31,
               "reason": "its node cccccccc gone (ActorDiedError)"},
              {"event": "worker-restarted", "worker": 1, "step": 33}]
    (run.path / "staleness.json").write_text(json.dumps({"events": events}))
    assert _cluster_faults(run) == ('<p class="note">Faults: worker 1 lost at step 20 (ActorUnavailableError), its '
                                    'replacement placed again at step 31 (its node cccccccc gone (ActorDiedError)), '
                                    'restarted at step 33.</p>')


def test_the_faults_line_says_a_shard_restart_and_its_resume_in_one_entry(tmp_path):
    """A shard restart's ``resumed`` (same step, next event) goes into the restart's entry, the lost workers it
    brought back named there; a resume of the user's own stays an entry of its own, and a simulated resume that
    started one worker (the other still lost) says "1 worker" (not "its 1 workers")."""
    import json

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    events = [{"event": "worker-lost", "worker": 1, "step": 21, "reason": "ActorDiedError"},
              {"event": "not-restarted", "worker": 1, "step": 21, "reason": "cluster.restarts = 0"},
              {"event": "shards-restarted", "step": 16, "reason": "shard 0 lost at step 30 (ConnectionError)", "n": 1},
              {"event": "resumed", "step": 16, "workers": [0, 1]},
              {"event": "resumed", "step": 40, "workers": [0]}]
    (run.path / "staleness.json").write_text(json.dumps({"events": events}))
    assert _cluster_faults(run) == (
        '<p class="note">Faults: worker 1 lost at step 21 (ActorDiedError), not restarted (cluster.restarts = 0); '
        'the shards restarted from the checkpoint of step 16 (shard 0 lost at step 30 (ConnectionError)), its 2 '
        'workers started again (worker 1 back after its loss); the run resumed at step 40 with 1 worker started.</p>')


def test_a_resume_that_started_no_worker_says_none_not_its_0_workers(tmp_path):
    """A simulated resume whose workers were all lost starts none of them: the entry says so, not "with its 0 workers
    started"; an event without the list (which no runner writes) does not claim a count."""
    import json

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    events = [{"event": "resumed", "step": 40, "workers": []}, {"event": "resumed", "step": 50}]
    (run.path / "staleness.json").write_text(json.dumps({"events": events}))
    assert _cluster_faults(run) == ('<p class="note">Faults: the run resumed at step 40 with none of its workers started; '
                                    'the run resumed at step 50 with its workers started.</p>')


def test_the_faults_line_says_the_step_a_shard_was_lost_at_before_the_step_restarted_from(tmp_path):
    """A shard restart's ``step`` is the checkpoint's it restarted from; the step it was lost at (``lost_at``) was
    said only inside the reason, and not at all where the reason names no step (the simulator's dead shard: "shard 0
    is lost"). An event without ``lost_at`` reads as before."""
    import json

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    events = [{"event": "shards-restarted", "step": 16, "lost_at": 30, "reason": "shard 0 is lost", "n": 1},
              {"event": "resumed", "step": 16, "workers": [0, 1]},
              {"event": "shards-restarted", "step": 0, "lost_at": 7, "reason": "ActorDiedError", "n": 2},
              {"event": "shards-lost", "step": 63, "lost_at": 63, "reason": "shard 1 lost at step 63", "n": 3}]
    (run.path / "staleness.json").write_text(json.dumps({"events": events}))
    assert _cluster_faults(run) == (
        '<p class="note">Faults: a shard lost at step 30, the shards restarted from the checkpoint of step 16 (shard 0 '
        'is lost), its 2 workers started again; a shard lost at step 7, the shards restarted from the start, step 0 '
        '(ActorDiedError); the run stopped at step 63, a shard lost with cluster.shard_restarts spent (shard 1 lost '
        'at step 63).</p>')
    (run.path / "staleness.json").write_text(json.dumps({"events": [{**events[0], "lost_at": None}]}))
    assert _cluster_faults(run) == ('<p class="note">Faults: the shards restarted from the checkpoint of step 16 '
                                    '(shard 0 is lost).</p>')
