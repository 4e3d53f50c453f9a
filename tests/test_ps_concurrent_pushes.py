"""10,000 pushes rung at once from 4 processes at one shard: every push applied exactly once, the
parameters exactly what they must be, and a reader in a fifth process never sees a torn update.

The gradients are small integers, so every partial sum is exact in float32 and the expected
parameters do not depend on the order in which the pushes arrive: worker w pushes
(w + 1) * [1, 2, ..., 64, 1, 2, ...] (N values) 2,500 times, so with SGD at lr 1 element i ends at
-2,500 * (1+2+3+4) * (i % 64 + 1), and any consistent snapshot has the same params[i] / (i % 64 + 1) in
every element. N is large enough (64 KB) that an update takes long enough for a reader to land in it.
"""
from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest
import torch

from downpour.ps import shm
from downpour.ps.doorbell import Bell
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard
from downpour.ps.shard_server import ShardServer

pytestmark = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")

N, WORKERS, PUSHES = 16_384, 4, 2_500
INDEX = (np.arange(N) % 64 + 1).astype(np.float64)


def _ring(lanes, worker, out):
    """One worker's process: each push into its inbox, then a ring, then the answer."""
    inbox = shm.Segment(lanes["inbox"][worker], N)
    bell = Bell(lanes["bell"], lanes["reply"][worker])
    grad = ((worker + 1) * INDEX).astype(np.float32)
    accepted = 0
    for seq in range(PUSHES):
        inbox.put(grad, seq, 0)
        bell.ring(worker, seq, 0)
        accepted += bool(bell.answer(seq, timeout=120)["accepted"])
    out.put(("worker", worker, accepted))


def _read(path, stop, out):
    """A lock-free reader, as a co-located worker pulls: count snapshots that mix two versions."""
    seg = shm.Segment(path, N)
    snap = np.empty(N, dtype=np.float32)
    reads = torn = 0
    while not stop.is_set() or reads == 0:
        seg.read_into(snap)
        s = snap / INDEX
        torn += int(not np.all(s == s[0]))
        reads += 1
    out.put(("reader", reads, torn))


def test_ten_thousand_pushes_from_four_processes_are_each_applied_once_exactly(tmp_path):
    shard = Shard(0, torch.zeros(N), make_rule("sgd", 1.0), workers=range(WORKERS))
    server = ShardServer(shard, f"/dev/shm/downpour-test-{os.getpid()}-{tmp_path.name}", workers=WORKERS)
    ctx = mp.get_context("fork")      # the children use NumPy and pipes only, no torch threads
    out, stop = ctx.Queue(), ctx.Event()
    try:
        lanes = server.lanes()
        reader = ctx.Process(target=_read, args=(lanes["params"], stop, out))
        ringers = [ctx.Process(target=_ring, args=(lanes, w, out)) for w in range(WORKERS)]
        reader.start()
        for p in ringers:
            p.start()
        results = [out.get(timeout=300) for _ in ringers]
        stop.set()
        results.append(out.get(timeout=60))
        for p in [*ringers, reader]:
            p.join(timeout=60)
            assert p.exitcode == 0
    finally:
        stop.set()
        server.close()
    accepted = {w: n for kind, w, n in results if kind == "worker"}
    assert accepted == {w: PUSHES for w in range(WORKERS)}
    total = WORKERS * PUSHES
    assert shard.accepted == shard.applied == shard.version == total and not shard.rejected
    expected = -PUSHES * sum(w + 1 for w in range(WORKERS)) * INDEX
    assert np.array_equal(shard.params.numpy().astype(np.float64), expected)
    logged = {(w, seq) for w, seq, _, _ in shard.log.to_tensor().tolist()}
    assert len(shard.log) == total and logged == {(w, s) for w in range(WORKERS) for s in range(PUSHES)}
    _, reads, torn = next(r for r in results if r[0] == "reader")
    assert reads > 0 and torn == 0
