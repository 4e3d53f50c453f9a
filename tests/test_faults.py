"""Faults on real local Ray: a shard killed mid-run is restarted from the last checkpoint and the run
finishes, with every accepted push applied once and nothing left in /dev/shm."""
import os
import threading
import time

import pytest
import ray
from ray_kill import held_until, kill_when

from downpour.config import load_config
from downpour.ps.checkpoint import load_server
from downpour.ps.shm import sweep_stale_segments
from downpour.ps.shm import SHM_DIR
from downpour.runners import train
from downpour.train.rundir import RunDir

BASE = ["cluster.runner=ray", "data.samples=600", "train.batch_size=16", "train.tensorboard=false",
        "train.log_every=5"]


def test_a_killed_shard_is_restarted_from_the_checkpoint_and_the_run_finishes(tmp_path, local_ray, monkeypatch):
    # A timed checkpoint alone (0.5 s) can come after a fast machine's whole run, and the kill then finds no shard
    # left to kill. A checkpoint comes by push 40 whatever the clock says, and the driver holds still 10 pushes past
    # its last checkpoint (2 rows logged
    # past it, to be truncated and logged once again) until the shard is killed: the kill lands mid-run however
    # fast the machine, 50 steps or more before the end. (One worker: the shards are the point, and two actors fewer
    # start, twice. Push 100, 30 pushes and 300 steps would be the same moments, three times the steps.)
    # The kill waits for the hold: killed as soon as step 40 was logged with a checkpoint on disk, the shard could
    # go down just after the checkpoint of step 40, before the hold, and the loss came at the checkpoint's own step
    # (lost_at 40, restarted from 40: 1 run in the suite on three processes, 2026-12-07)
    steps, killed, holding = 100, threading.Event(), threading.Event()
    held_until(monkeypatch, killed, lambda rec: rec.coord.done >= 40 and rec.checkpoints and rec._since_ckpt >= 10,
               holding)
    cfg = load_config("ufldl-sae", [*BASE, f"train.steps={steps}", "cluster.workers=1", "cluster.shards=2",
                                    "cluster.checkpoint_seconds=0.5", "cluster.checkpoint_every=40"])
    run = RunDir.create(tmp_path / "s", cfg)
    earlier = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
    out = {}
    thread = threading.Thread(target=lambda: out.update(train(cfg, run)))
    thread.start()
    try:
        # (300 s: at 1 update a second, a 2-core VM also running a study and the suite, step 100 and its checkpoint
        # came after kill_when's default 120 s, counted from before the actors start)
        victim = kill_when(run, 40, "-shard1", earlier, timeout=300.0, checkpointed=True) \
            if holding.wait(300) else None
    finally:
        killed.set()
    thread.join(timeout=240)
    assert victim is not None, "the run ended before a checkpoint and a kill"
    assert not thread.is_alive() and out, "the run did not finish"
    # went on from a checkpoint, not from 0; said in staleness.json's events (resumed_from is the user's own
    # start: the summary said "resumed_from" the checkpoint's step of a run nobody resumed)
    restarted = [e for e in run.read_json("staleness.json")["events"] if e["event"] == "shards-restarted"]
    assert out["steps"] == steps and out["resumed_from"] == 0 and len(restarted) == 1 and restarted[0]["step"] > 0
    assert "-shard1" in restarted[0]["reason"] or "lost" in restarted[0]["reason"]
    # its step the checkpoint's it went back to, lost_at the loss's past it (the driver held past the checkpoint), as
    # the simulator's record has them
    assert restarted[0]["lost_at"] > restarted[0]["step"]
    assert out["accepted"] == out["applied"] and out["lost_workers"] == []
    states, meta = load_server(run.checkpoints / "server")
    for tensors, _ in states:
        rows = tensors["log"].tolist()
        assert len({(w, seq) for w, seq, _, _ in rows}) == len(rows)   # no push applied twice
    logged = [r["step"] for r in run.metrics()]
    assert logged == sorted(set(logged)) and logged[-1] == steps      # metrics past the checkpoint logged once
    assert not list(SHM_DIR.glob(f"downpour-{os.getpid()}-*"))         # nothing left in /dev/shm


def test_segments_of_a_dead_driver_are_swept(tmp_path):
    dead = 2 ** 22 + 12345                     # above pid_max's default: no such process
    stale = SHM_DIR / f"downpour-{dead}-abcdef-shard0.params"
    mine = SHM_DIR / f"downpour-{os.getpid()}-abcdef-shard0.params"
    stale.write_bytes(b"x")
    mine.write_bytes(b"x")
    try:
        assert sweep_stale_segments() >= 1
        assert not stale.exists() and mine.exists()       # a live driver's files are left alone
    finally:
        stale.unlink(missing_ok=True)
        mine.unlink(missing_ok=True)


def test_a_driver_killed_by_sigkill_leaves_a_run_that_resume_finishes(tmp_path, local_ray, capsys):
    import json
    import signal
    import subprocess
    import sys

    from downpour.cli import main

    out = tmp_path / "d"
    # the driver joins the module's Ray (a Ray of its own cost a start, some 5-9 s); its actors die with it all the
    # same (Ray ends a dead driver's job), and the segments its shards made are named by the driver's pid
    driver = subprocess.Popen([sys.executable, "-m", "downpour.cli", "train", "--config", "ufldl-sae", "--runner", "ray",
                               "--steps", "5000", "--no-report", "--out", str(out), "--set", "data.samples=600",
                               "--set", "train.batch_size=16", "--set", "train.tensorboard=false",
                               "--set", "cluster.checkpoint_seconds=0.5",
                               "--set", f"cluster.address={ray.get_runtime_context().gcs_address}",
                               "--set", "cluster.workers=1", "--set", "cluster.shards=1"],
                              # (one worker and one shard: 2 actors a run, not 4; one shard's segments are swept all
                              # the same, and the resume is from its checkpoint)
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while not (out / "checkpoints/server.json").is_file() and time.monotonic() - t0 < 120:
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    saved = json.loads((out / "checkpoints/server.json").read_text())["step"]
    assert 0 < saved < 5000
    # 20 steps past the checkpoint: the resume reads it, sweeps the dead driver's segments and trains on (100 were
    # 80 more steps for the same checks)
    assert main(["train", "--resume", str(out), "--steps", str(saved + 20)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["resumed_from"] >= saved and summary["steps"] == saved + 20
    assert summary["accepted"] == summary["applied"]
    assert not list(SHM_DIR.glob(f"downpour-{driver.pid}-*"))   # the dead driver's segments were swept


def test_a_checkpoint_pair_that_does_not_belong_together_is_refused(tmp_path):
    import torch

    from downpour.train.checkpoint import CheckpointError, load_state, save_state

    save_state(tmp_path / "a", {"x": torch.zeros(3)}, {"step": 1})
    save_state(tmp_path / "b", {"x": torch.ones(3)}, {"step": 2})
    assert load_state(tmp_path / "a")[1]["step"] == 1
    (tmp_path / "b.safetensors").replace(tmp_path / "a.safetensors")      # a's JSON, b's tensors
    with pytest.raises(CheckpointError, match="do not belong together"):
        load_state(tmp_path / "a")


@pytest.mark.parametrize("killed_after", ["tensors renamed", "nothing renamed", "prev half linked"])
def test_a_write_killed_between_its_files_leaves_the_previous_checkpoint_readable(tmp_path, monkeypatch, killed_after):
    """save_state's moment of truth is two renames: a kill between them (or before, or while it keeps the
    pair it replaces) leaves a checkpoint that load_state reads whole, new or previous, never a mix; a
    write that goes through removes the previous pair it kept (it stayed, doubling a run's checkpoints)."""
    import os

    import torch

    from downpour.train import checkpoint
    from downpour.train.checkpoint import load_state, save_state

    stem = tmp_path / "server"
    save_state(stem, {"x": torch.zeros(3)}, {"step": 1})
    save_state(stem, {"x": torch.ones(3)}, {"step": 2})
    real_replace, real_link, calls = os.replace, os.link, []

    def replace(src, dst):
        calls.append(dst)
        if killed_after == "nothing renamed" or len(calls) == 2:
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    def link(src, dst):
        if killed_after == "prev half linked" and str(dst).endswith(".json"):
            raise KeyboardInterrupt("killed")
        real_link(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    monkeypatch.setattr(checkpoint.os, "link", link)
    with pytest.raises(KeyboardInterrupt):
        save_state(stem, {"x": torch.full((3,), 3.0)}, {"step": 3})
    monkeypatch.undo()
    tensors, meta = load_state(stem)
    assert meta["step"] == 2 and torch.equal(tensors["x"], torch.ones(3))   # the last whole checkpoint
    save_state(stem, {"x": torch.full((3,), 4.0)}, {"step": 4})             # and the next write goes through
    assert load_state(stem)[1]["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.json", "server.safetensors"]   # no safety copy left
