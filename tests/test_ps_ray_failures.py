"""What a failure or a stop leaves on a local Ray (2 CPUs): a dead shard is an error, not a hang; a driver that
fell over, or a Ctrl-C while the shards apply a push, checkpoints what the shards applied; a shard's shared memory
is warned of only where some may be left."""
import os
import time
from pathlib import Path

import pytest
from ray_runs import run_cfg

from downpour.config import load_config
from downpour.ps.checkpoint import load_server
from downpour.ps.cluster import run_cluster
from downpour.train.rundir import RunDir

ray = pytest.importorskip("ray")


def test_the_driver_rings_co_located_shards_and_a_dead_shard_is_an_error(tmp_path, local_ray):
    import numpy as np
    import torch

    from downpour.ps import shm
    from downpour.ps.on_ray import ShardActor, ShardLink, ShardPush
    from downpour.ps.rules import make_rule
    from downpour.ps.shard import Shard

    if not shm.available():
        pytest.skip("no writable /dev/shm")
    prefix = f"/dev/shm/downpour-test-{os.getpid()}-{tmp_path.name}"
    actor = ShardActor.remote(Shard(0, torch.zeros(4), make_rule("sgd", 1.0), workers=[0]), prefix, 1)
    lanes = ray.get(actor.lanes.remote())
    link, pusher = ShardLink(actor, lanes, 0, 4), ShardPush([actor], [lanes])
    assert link.stage(np.ones(4, dtype=np.float32), seq=0, base=0) is None       # into the inbox
    answers = pusher.apply(0, 0, [0], [None], [True])
    assert answers == [{"accepted": True, "reason": "", "version": 1, "staleness": 0}]   # rung: no object ref
    pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
    ray.kill(actor)
    for _ in range(600):   # the process outlives ray.kill's return (and Ray's "actor died") for a moment
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    try:
        link.stage(np.ones(4, dtype=np.float32), seq=1, base=1)
        with pytest.raises(ConnectionError):        # its process is gone: an error, not a hang
            pusher.apply(0, 1, [1], [None], [True])
    finally:
        pusher.close()
        for name in (lanes["bell"], lanes["params"], *lanes["inbox"].values(), *lanes["reply"].values()):
            Path(name).unlink(missing_ok=True)


def test_a_driver_failure_checkpoints_the_server_before_the_actors_go(tmp_path, local_ray, monkeypatch):
    from downpour.ps.cluster import Recorder

    real = Recorder.on_push

    def on_push(self, push, record):
        real(self, push, record)
        if self.pushes == 20:
            raise RuntimeError("the driver fell over")

    cfg = run_cfg("train.steps=60", "cluster.workers=1")  # (the two shards' checkpoints are the point, not the workers)
    with monkeypatch.context() as m:
        m.setattr(Recorder, "on_push", on_push)
        with pytest.raises(RuntimeError, match="fell over"):
            run_cluster(cfg, RunDir.create(tmp_path / "f", cfg))
    states, meta = load_server(tmp_path / "f/checkpoints/server")
    assert meta["step"] >= 20 and all(m["version"] >= 20 for _, m in states)
    # (resumed on the simulator: the checkpoint is the runners' one format, and 3 actors fewer to start)
    cfg = load_config(str(tmp_path / "f/config.toml"), ["cluster.runner=simulated"])
    resumed = run_cluster(cfg, RunDir.open(tmp_path / "f"), resume=True)
    assert resumed["steps"] == 60 and resumed["resumed_from"] == meta["step"]


@pytest.mark.parametrize("path", ["doorbell", "object-store"])
def test_a_stop_while_the_shards_apply_a_push_checkpoints_it_counted(tmp_path, local_ray, monkeypatch, path):
    """Ctrl-C (SIGTERM on the object-store path) while the driver waits for the shards' answers to a push: the shards
    apply it, and the checkpoint counts it (else step and clocks are one push short, and a resume trains its steps
    again; on the object-store path, DC-ASGD, the recorder's pushes one short). The stop is recorded as the other
    runners record theirs on a built-in set (tests/test_report_stop.py): data.json's ``stopped`` at the checkpoint's
    step (a Ctrl-C writes no cluster.json: only a lost shard's stop does), and the report's training section says it
    first."""
    import html
    import os
    import signal

    from downpour.analysis.report_training import training_section
    from downpour.ps import doorbell, on_ray
    from downpour.train.signals import sigterm_as_interrupt

    calls = [0]
    if path == "doorbell":
        real = doorbell.Bell.answer

        def answer(self, seq, timeout=60.0):
            calls[0] += 1
            if calls[0] == 60:
                os.kill(os.getpid(), signal.SIGINT)       # the user presses Ctrl-C now
            return real(self, seq, timeout)

        monkeypatch.setattr(doorbell.Bell, "answer", answer)
        extra = ()
    else:
        real = on_ray.ShardPush.apply

        def apply(self, *args, **kwargs):
            answers = real(self, *args, **kwargs)
            calls[0] += 1
            if calls[0] == 30:
                os.kill(os.getpid(), signal.SIGTERM)      # (`timeout`, SLURM, `docker stop`)
            return answers

        monkeypatch.setattr(on_ray.ShardPush, "apply", apply)
        extra = ('cluster.compensation="dc-asgd"', "cluster.rule=sgd", "train.lr=0.01")
    # (the two shards are the point)
    cfg = run_cfg("train.steps=5000", "train.log_every=10", "cluster.workers=1", *extra)
    with pytest.raises(KeyboardInterrupt) as stop, sigterm_as_interrupt():    # (the CLI's handler, as `train` sets it)
        run_cluster(cfg, RunDir.create(tmp_path / "r", cfg))
    states, meta = load_server(tmp_path / "r/checkpoints/server")
    applied = [m["applied"] for _, m in states]
    assert applied[0] == applied[1] == meta["step"] == meta["recorder"]["pushes"] == sum(meta["clocks"].values())
    run = RunDir.open(tmp_path / "r")
    raised, by = ("KeyboardInterrupt",) * 2 if path == "doorbell" else ("Terminated", "terminated (SIGTERM)")
    assert stop.type.__name__ == raised
    assert run.read_json("data.json")["stopped"] == {"step": meta["step"], "steps": 5000, "by": by}
    assert not (run.path / "cluster.json").exists()
    said = html.unescape(training_section(run, {}))
    line = f"Stopped after step {meta['step']} of 5000: {by}."
    assert said.count("Stopped after") == 1
    assert said.split("</h2>")[1].lstrip().startswith(f'<p class="note">{line}</p>')       # the section's first words


def test_closing_after_a_shard_died_warns_of_shared_memory_only_where_some_may_be_left(local_ray, monkeypatch, caplog):
    """A lost shard cannot remove its segments; the driver removes this node's right after. The warning that one
    'could not remove its shared memory' came on one node too, where nothing was left."""
    from scripted_ray import HandedCluster

    from downpour.ps import cluster_on_ray
    from downpour.ps.consistency import make_consistency
    from downpour.ps.coordinator import Coordinator

    @ray.remote(num_cpus=0)
    class Dead:
        def close(self):
            return None

    actor = Dead.remote()      # (one dead shard for both closes: an actor start fewer than one each)
    ray.get(actor.close.remote())
    ray.kill(actor)
    for _ in range(600):     # ray.kill returns before the actor is gone: a call may still be answered (CI did)
        try:
            ray.get(actor.close.remote(), timeout=10)
        except ray.exceptions.RayError:
            break
        time.sleep(0.05)
    for nodes, said in ((False, False), (True, True)):
        cluster = HandedCluster(Coordinator(make_consistency("async"), 1, 1), [actor], [])    # (no pusher, no channel)
        cluster.run_id = "test-close"
        monkeypatch.setattr(cluster_on_ray, "_other_nodes", lambda: nodes)
        caplog.clear()
        with caplog.at_level("WARNING", logger="downpour.ps.cluster_on_ray"):
            cluster.close()
        assert ("could not remove its shared memory" in caplog.text) == said
