"""Shared-memory lanes: seqlocked parameter reads and the one-gradient inbox handshake."""
import numpy as np
import pytest

from downpour.ps import shm

pytestmark = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")


@pytest.fixture
def prefix(tmp_path):
    return f"/dev/shm/downpour-test-{tmp_path.name}"


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


def test_stage_bits_round_trip_and_refuse_what_a_word_cannot_hold():
    for stages in (None, (), (1,), (1, 2, 62)):
        assert shm.bits_stages(shm.stage_bits(stages)) == stages
    with pytest.raises(ValueError, match="stages 0..62"):
        shm.stage_bits((63,))
