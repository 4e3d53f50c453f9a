"""The doorbell: a shard applies a staged push when rung through a named pipe, exactly as
``push_inbox`` would (once, refusing NaN and repeats), from any number of ringers; close() stops it."""
import os
import threading

import numpy as np
import pytest
import torch

from downpour.ps import shm
from downpour.ps.doorbell import Bell
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard
from downpour.ps.shard_server import ShardServer

pytestmark = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")

N = 6


@pytest.fixture
def server(tmp_path):
    shard = Shard(0, torch.zeros(N), make_rule("sgd", 1.0), workers=[0, 1])
    srv = ShardServer(shard, f"/dev/shm/downpour-test-{os.getpid()}-{tmp_path.name}", workers=2)
    yield srv
    srv.close()


class Client:
    """What the driver does for one worker: the gradient into the inbox, then a ring."""

    def __init__(self, server, worker):
        lanes = server.lanes()
        self.worker = worker
        self.inbox = shm.Segment(lanes["inbox"][worker], N, writer=True)
        self.bell = Bell(lanes["bell"], lanes["reply"][worker])

    def push(self, grad, seq, base):
        self.inbox.put(np.asarray(grad, dtype=np.float32), seq, base)
        return self.ring(seq, base)

    def ring(self, seq, base):
        self.bell.ring(self.worker, seq, base)
        return self.bell.answer(seq, timeout=30)


def test_a_ring_applies_the_staged_push_once(server):
    c = Client(server, 0)
    assert c.push(np.ones(N), seq=0, base=0) == {"accepted": True, "reason": "", "version": 1, "staleness": 0}
    assert server.shard.params.tolist() == [-1.0] * N
    # the same ring again: the inbox is empty now, so nothing is applied (and it is counted)
    assert c.ring(seq=0, base=0) == {"accepted": False, "reason": "inbox", "version": 1, "staleness": 1}
    # the same push number staged again: the shard refuses it as a repeat
    assert c.push(np.ones(N), seq=0, base=0)["reason"] == "duplicate"
    assert server.shard.params.tolist() == [-1.0] * N and server.shard.version == 1
    assert server.shard.rejected == {"inbox": 1, "duplicate": 1}


def test_a_nan_gradient_is_refused_and_the_parameters_are_untouched(server):
    c = Client(server, 1)
    grad = np.ones(N)
    grad[3] = np.nan
    assert c.push(grad, seq=0, base=0) == {"accepted": False, "reason": "non-finite", "version": 0, "staleness": 0}
    assert server.shard.params.tolist() == [0.0] * N and server.shard.rejected == {"non-finite": 1}
    assert c.push(np.ones(N), seq=1, base=0)["accepted"]      # the inbox was freed for the next push


def test_two_ringers_at_once_are_both_applied(server):
    answers = {0: [], 1: []}

    def run(worker):
        c = Client(server, worker)
        for seq in range(50):
            answers[worker].append(c.push(np.full(N, 0.5), seq, 0))

    threads = [threading.Thread(target=run, args=(w,)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(a["accepted"] for w in (0, 1) for a in answers[w])
    assert server.shard.version == 100 and server.shard.params.tolist() == [-50.0] * N
    logged = {(w, seq) for w, seq, _, _ in server.shard.log.to_tensor().tolist()}
    assert logged == {(w, seq) for w in (0, 1) for seq in range(50)}


def test_close_stops_the_thread_and_removes_the_pipes(server):
    c = Client(server, 0)
    assert c.push(np.ones(N), seq=0, base=0)["accepted"]
    lanes = server.lanes()
    server.close()
    assert not server.bell.running
    assert not any(os.path.exists(p) for p in [lanes["bell"], *lanes["reply"].values(), lanes["params"]])
    with pytest.raises(ConnectionError):   # nobody listens any more: an error, not a hang
        c.ring(seq=1, base=1)
    server.close()                           # twice is fine


def test_a_restarted_worker_gets_a_new_reply_pipe(server):
    old = server.lanes()["reply"][0]
    lanes = server.new_inbox(0, 1)
    assert lanes["reply"][0] != old and not os.path.exists(old)
    assert Client(server, 0).push(np.ones(N), seq=0, base=0)["accepted"]


@pytest.mark.parametrize("by", ["doorbell", "object store"])
def test_a_push_says_in_the_inbox_which_greedy_stages_it_trained(tmp_path, by):
    """The shard's Momentum holds the tensors of a stage the push did not train and coasts a trained one
    whose gradient is 0: the stages travel beside the gradient (the inbox's header, or the push call),
    never read off its values (stage 1's half here is all 0 yet trained)."""
    shard = Shard(0, torch.zeros(N), make_rule("momentum", 1.0), workers=[0], stage_pieces={1: [(0, 3)], 2: [(3, N)]})
    shard.state["velocity"] += 1.0
    srv = ShardServer(shard, f"/dev/shm/downpour-test-{os.getpid()}-{tmp_path.name}", workers=1)
    try:
        grad = np.zeros(N, dtype=np.float32)
        if by == "doorbell":
            c = Client(srv, 0)
            c.inbox.put(grad, 0, 0, stages=(1,))
            assert c.ring(seq=0, base=0)["accepted"]
        else:
            assert srv.push(0, grad, 0, 0, [1])["accepted"]     # (JSON brings the stages as a list)
        assert srv.shard.state["velocity"].tolist() == pytest.approx([0.9] * 3 + [1.0] * 3)
        assert srv.shard.params.tolist() == pytest.approx([-0.9] * 3 + [0.0] * 3)
    finally:
        srv.close()


def test_a_push_dropped_after_staging_leaves_the_inbox_free_for_its_seq_again(tmp_path):
    """A model-parallel replica's cycle failed after a partition staged its slice (another partition died): the push
    is never rung, and its seq is the next push's. An inbox is never overwritten (the next put waits for the shard to
    take the stale slice, which nothing asks): ``drop_inbox`` of that seq frees it, and the next push of the same seq
    is applied, once (one of an earlier seq goes too, one of a later seq stays)."""
    shard = Shard(0, torch.zeros(N), make_rule("sgd", 1.0), workers=[0])
    srv = ShardServer(shard, f"/dev/shm/downpour-test-{os.getpid()}-{tmp_path.name}", workers=1)
    try:
        c = Client(srv, 0)
        c.inbox.put(np.full(N, 5.0, dtype=np.float32), 3, 0)          # push 3's slice, staged; its cycle then failed
        with pytest.raises(TimeoutError):
            c.inbox.put(np.ones(N, dtype=np.float32), 3, 0, timeout=0.0)   # (not overwritten)
        assert not srv.drop_inbox(0, 2) and c.inbox.take() is not None     # a later seq's: kept
        assert srv.drop_inbox(0, 3) and c.inbox.take() is None
        c.inbox.put(np.full(N, 5.0, dtype=np.float32), 2, 0, timeout=0.0)  # a dropped cycle's before it: dropped too
        assert srv.drop_inbox(0, 3) and c.inbox.take() is None
        c.inbox.put(np.ones(N, dtype=np.float32), 3, 0, timeout=0.0)       # the same seq, trained again
        assert c.ring(seq=3, base=0)["accepted"]
        assert srv.shard.params.tolist() == pytest.approx([-1.0] * N)      # the new slice, not the dropped one
    finally:
        srv.close()


def test_a_late_write_into_a_retired_inbox_is_refused_counted_and_never_waited_on(tmp_path):
    """A writer judged dead and killed (a partition actor that did not answer within ASK_SECONDS) may still run a
    moment and stage its slice of push 3 after the driver's ``drop_inbox``. Its successor was given a fresh inbox
    (``new_inbox``): the late slice lands in the retired one, is never applied and is counted (``fenced``, in what
    ``state_dict`` saves); the successor stages push 3 at once and its ring applies its own slice. (A restarted
    partition keeping the old inbox, a late write there would go unseen: the driver test is
    tests/test_ps_restarts_partitions.py's.)"""
    shard = Shard(0, torch.zeros(N), make_rule("sgd", 1.0), workers=[0])
    srv = ShardServer(shard, f"/dev/shm/downpour-test-{os.getpid()}-{tmp_path.name}", workers=1)
    try:
        killed = Client(srv, 0)
        killed.inbox.put(np.full(N, 5.0, dtype=np.float32), 3, 0)          # staged before it was judged dead
        srv.new_inbox(0, 1)
        assert not srv.drop_inbox(0, 3)                                     # (went with the retired inbox, uncounted)
        killed.inbox.put(np.full(N, 7.0, dtype=np.float32), 3, 0, timeout=0.0)   # the late write, after the drop
        successor = Client(srv, 0)
        successor.inbox.put(np.ones(N, dtype=np.float32), 3, 0, timeout=0.0)     # no wait on the late slice
        assert successor.ring(seq=3, base=0)["accepted"]
        assert srv.shard.params.tolist() == pytest.approx([-1.0] * N)
        assert srv.shard.rejected == {"fenced": 1}
        killed.inbox.put(np.full(N, 7.0, dtype=np.float32), 4, 0, timeout=0.0)   # freed: its writer never waits
        assert srv.state_dict()[1]["rejected"] == {"fenced": 2}
    finally:
        srv.close()


def test_a_fenced_slice_is_refused_but_not_counted_among_the_runs_pushes():
    """The run's summary counts its pushes as one shard's accepted and rejected ones; a slice a killed writer staged
    late (``fenced``, above) is no push a worker made: 3 pushes, not 4, where shard 0 also fenced one."""
    from downpour.ps.finish import _counts

    meta = {"accepted": 3, "version": 3, "applied": 3}
    states = [({}, {**meta, "rejected": {"fenced": 1}}), ({}, {**meta, "rejected": {}})]
    summary = _counts(states, {"rejected": {"fenced": 1}, "overall": {"mean": 0.0, "max": 0}})
    assert summary["pushes"] == 3 and summary["rejected"] == {"fenced": 1}


def _mapped(prefix):
    """How many mappings of files under ``prefix`` this process holds (retired inboxes are unlinked: '(deleted)')."""
    with open("/proc/self/maps") as f:
        return sum(prefix in line for line in f)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="no /proc")
def test_retired_inboxes_are_let_go_once_their_writers_ended_their_late_writes_counted_first(tmp_path):
    """A long run restarts worker 0's partition again and again: each restart retires an inbox, a push's size of
    shared memory, which must not stay mapped until the shard closes. Here each killed writer (a forked
    process) attached before its restart, writes late into its retired inbox and ends: the shard counts that write
    (``fenced``) and lets the inbox go at the next restart (or checkpoint). The last writer still runs: its inbox is
    kept, since a late write may yet come."""
    prefix = f"/dev/shm/downpour-test-{os.getpid()}-{tmp_path.name}"
    srv = ShardServer(Shard(0, torch.zeros(N), make_rule("sgd", 1.0), workers=[0]), prefix, workers=1)
    try:
        assert _mapped(prefix) == 2                                         # the parameters, the inbox
        for life in range(1, 4):
            go, ready = os.pipe(), os.pipe()
            pid = os.fork()
            if pid == 0:        # the writer of this incarnation: attaches, waits to be killed, writes late, ends
                code = 1
                try:
                    inbox = shm.Segment(srv.lanes()["inbox"][0], N, writer=True)
                    os.write(ready[1], b"x")
                    os.read(go[0], 1)
                    inbox.put(np.full(N, 7.0, dtype=np.float32), 3, 0, timeout=5.0)
                    code = 0
                finally:
                    os._exit(code)
            os.close(ready[1])
            os.close(go[0])
            assert os.read(ready[0], 1) == b"x"
            srv.new_inbox(0, life)          # the writer judged dead, its successor's inbox made: its own retired
            os.write(go[1], b"x")
            assert os.waitpid(pid, 0)[1] == 0
            os.close(ready[0])
            os.close(go[1])
            assert _mapped(prefix) == 3                                     # the one retired now, whose writer ended
        live = Client(srv, 0)                  # the last incarnation's writer, still running when it is retired
        srv.new_inbox(0, 4)
        live.inbox.put(np.full(N, 7.0, dtype=np.float32), 3, 0, timeout=0.0)
        assert srv.shard.rejected == {"fenced": 3}                          # each refused before its inbox went
        assert srv.state_dict()[1]["rejected"] == {"fenced": 4}
        assert _mapped(prefix) == 3 + 1                                     # (the test's own mapping of the kept one)
        assert srv.shard.params.tolist() == [0.0] * N                       # no late write applied
    finally:
        srv.close()
