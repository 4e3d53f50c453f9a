"""Shared-memory lanes: seqlocked parameter reads and the one-gradient inbox handshake."""
import os
from pathlib import Path

import numpy as np
import pytest

from downpour.ps import shm

pytestmark = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")


@pytest.fixture
def prefix(tmp_path):
    return f"/dev/shm/downpour-test-{os.getpid()}-{tmp_path.name}"


def test_reader_sees_the_writers_values_and_version(prefix):
    owner = shm.Segment(f"{prefix}-p", 5, create=True)
    reader = shm.Segment(f"{prefix}-p", 5)
    with owner.writing():
        owner.data[:] = np.arange(5)
        owner.set_version(3)
    out = np.empty(5, dtype=np.float32)
    assert reader.read_into(out) == 3 and out.tolist() == [0, 1, 2, 3, 4]
    assert owner.header[0] % 2 == 0          # the seqlock is released
    owner.close()
    assert not owner.path.exists()


def test_a_write_left_open_by_a_dead_shard_times_the_reader_out(prefix):
    """A shard killed mid-write leaves the seqlock odd: the worker's fetch spun forever."""
    owner = shm.Segment(f"{prefix}-d", 4, create=True)
    reader = shm.Segment(f"{prefix}-d", 4)
    owner.header[0] += 1                     # a write begun and never finished
    with pytest.raises(TimeoutError, match="stayed mid-write for 0.05 s"):
        reader.read_into(np.empty(4, dtype=np.float32), timeout=0.05)
    owner.header[0] += 1
    assert reader.read_into(np.empty(4, dtype=np.float32), timeout=0.05) == 0
    owner.close()


def test_inbox_holds_one_gradient_until_taken(prefix):
    shard_side = shm.Segment(f"{prefix}-i", 3, create=True)
    worker_side = shm.Segment(f"{prefix}-i", 3)
    assert shard_side.take() is None
    worker_side.put(np.array([1, 2, 3], dtype=np.float32), seq=7, base=2)
    data, seq, base, stages = shard_side.take()
    assert data.tolist() == [1, 2, 3] and (seq, base, stages) == (7, 2, None)   # None: it trained every stage
    with pytest.raises(TimeoutError, match="never took push 7"):
        worker_side.put(np.zeros(3, dtype=np.float32), seq=8, base=3, timeout=0.01)  # the slot is still full
    shard_side.release()
    worker_side.put(np.zeros(3, dtype=np.float32), seq=8, base=3, stages=(3, 1))
    assert shard_side.take()[1:] == (8, 3, (1, 3))             # the greedy stages the push trained
    shard_side.close()


def test_a_put_waiting_on_a_dead_shards_inbox_fails_at_once_not_at_its_timeout(prefix):
    """The shard's process created the inbox, a gradient waits in it, and the process ended (killed, as a lost shard
    is): nothing will take that gradient. The worker's next put sees the shard gone and says so (else it waits its
    whole timeout, on Ray RESTART_SECONDS + 60 s, its actor answering nothing meanwhile, and a stop's 5 s wait for
    its data report misses it)."""
    import subprocess
    import sys

    path = f"{prefix}-gone"
    shard = ("import os, sys, numpy as np; from downpour.ps import shm; s = shm.Segment(sys.argv[1], 3, create=True); "
             "shm.Segment(sys.argv[1], 3).put(np.ones(3, dtype=np.float32), seq=4, base=0); os._exit(0)")
    subprocess.run([sys.executable, "-c", shard, path], check=True)   # (os._exit: the file stays, as a kill leaves it)
    worker_side = shm.Segment(path, 3)
    try:
        assert worker_side.header[0] == 1                                # push 4 waits, never to be taken
        with pytest.raises(shm.ShardGone, match="no longer runs: push 4 waiting there will never be taken"):
            worker_side.put(np.zeros(3, dtype=np.float32), seq=5, base=1, timeout=30)
    finally:
        worker_side.close()
        Path(path).unlink(missing_ok=True)


def test_a_process_that_runs_is_told_from_one_that_ended():
    import os
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert shm.runs(os.getpid()) and shm.runs(0)                          # (0: a segment that names none)
    assert not shm.runs(int(ended.stdout))


def test_stage_bits_round_trip_and_refuse_what_a_word_cannot_hold():
    for stages in (None, (), (1,), (1, 2, 62)):
        assert shm.bits_stages(shm.stage_bits(stages)) == stages
    with pytest.raises(ValueError, match="stages 0..62"):
        shm.stage_bits((63,))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc")
def test_a_put_waiting_on_an_inbox_whose_shards_pid_went_to_another_process_fails_too(prefix):
    """A shard ended and its pid went to another process (pids are reused): the owner check asking the pid alone would
    take the shard for running, and the put wait its whole timeout. The header keeps the shard's start time beside
    its pid; one that differs (as a reused pid's does) says the shard is gone within the look's 0.5 s."""
    import os

    shard_side = shm.Segment(f"{prefix}-reused", 3, create=True)
    worker_side = shm.Segment(f"{prefix}-reused", 3)
    try:
        worker_side.put(np.ones(3, dtype=np.float32), seq=4, base=0)     # waits, never to be taken
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])   # field 22
        assert worker_side.header[4] == os.getpid() and worker_side.header[5] == started
        worker_side.header[5] = started + 1        # this process's pid, another process's start: the pid reused
        with pytest.raises(shm.ShardGone, match="no longer runs: push 4 waiting there"):
            worker_side.put(np.zeros(3, dtype=np.float32), seq=5, base=1, timeout=20)
    finally:
        worker_side.close()
        shard_side.close()


def test_a_process_is_told_by_its_pid_and_start_time_and_by_its_pid_alone_without_proc(monkeypatch, tmp_path):
    """With /proc a pid and a start time that differs from the process's are another process; without /proc (macOS)
    the start time is unknown (0) and the pid alone answers: an ended one still reads as ended."""
    import os
    import subprocess
    import sys

    me, started = os.getpid(), shm.start_time(os.getpid())
    assert shm.runs(me, started) and not shm.runs(me, started + 1) and shm.runs(me)
    ended = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                               capture_output=True, text=True).stdout)
    monkeypatch.setattr(shm, "PROC", tmp_path / "no-proc")
    assert shm.start_time(me) == 0
    assert shm.runs(me, started + 1) and not shm.runs(ended, started)
