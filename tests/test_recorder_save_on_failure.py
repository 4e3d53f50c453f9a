"""What ``Recorder.save_on_failure`` says of a stop's checkpoint, one case each: the whole state's standing, saved,
failed, or the lost shard gone, on a stop and on a lost shard (whose words leave "stopped" and ``--resume`` to
run_cluster). The trained runs that reach these lines: test_cluster_resume_edges.py, test_sim_faults.py."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from downpour.ps.recorder import Recorder, ShardLost

STOPPED = ConnectionError("the head is gone")
LOST = ShardLost("shard 1 lost at step 12", step=12)


def _recorder(whole: bool, saves: BaseException | None) -> SimpleNamespace:
    """A recorder at step 12 with pushes since its last checkpoint unless ``whole`` (the simulator's whole state,
    checkpointed at this step); its checkpoint raises ``saves`` (None: it saves)."""
    settled = []

    def checkpoint():
        if saves is not None:
            raise saves
    return SimpleNamespace(driver=SimpleNamespace(settle=settled.append), _saved_on_failure=False, _whole=whole,
                           _since_ckpt=0 if whole else 3, coord=SimpleNamespace(done=12), run=SimpleNamespace(
                               path=Path("runs/r")), checkpoint=checkpoint, on_push=None, settled=settled,
                           _kept=lambda: "--resume runs/r goes on from the last checkpoint, at step 8")


@pytest.mark.parametrize("whole, saves, err, said", [
    (True, None, STOPPED, "stopped at step 12; the server checkpoint of that step stands: --resume runs/r goes on "
                          "from it"),
    (True, None, LOST, None),
    (False, None, STOPPED, "stopped at step 12; the server checkpoint was saved: --resume runs/r goes on from it"),
    (False, None, LOST, "the server was checkpointed at step 12"),
    (False, OSError("disk full"), STOPPED, "stopped at step 12; could not checkpoint the server (OSError: disk full); "
                                           "--resume runs/r goes on from the last checkpoint, at step 8"),
    (False, OSError("disk full"), LOST, "could not checkpoint the server at step 12 (OSError: disk full)"),
    (False, ShardLost("shard 1 is lost"), LOST, None),
    (False, ShardLost("shard 1 is lost"), STOPPED, "stopped at step 12; could not checkpoint the server (ShardLost: "
                                                   "shard 1 is lost); --resume runs/r goes on from the last "
                                                   "checkpoint, at step 8"),
], ids=["stands", "stands-lost", "saved", "saved-lost", "failed", "failed-lost", "gone-lost", "gone-stopped"])
def test_save_on_failure_says_what_became_of_the_checkpoint_in_the_words_of_a_stop_or_a_lost_shard(
        caplog, whole, saves, err, said):
    rec = _recorder(whole, saves)
    with caplog.at_level(logging.WARNING, logger="downpour.ps.recorder"):
        Recorder.save_on_failure(rec, err)
        Recorder.save_on_failure(rec, err)          # once per run
    assert [r.getMessage() for r in caplog.records] == ([said] if said else [])
    # a lost shard's answers in hand are not recorded (its stop is at the step it was found lost): no settle
    assert len(rec.settled) == (0 if whole or isinstance(err, ShardLost) else 1)
