"""A push dropped unsent (a model-parallel replica whose partition died mid-cycle, restarted alone on Ray:
``ps.partition_restarts_on_ray``): what the replica trains next, and what the shards keep for it. Plain Python,
no Ray: the worker and the shard the Ray actors wrap."""
import pytest
import torch

from downpour.batch import Batch
from downpour.models.registry import create_model
from downpour.objectives import Objective
from downpour.ps.compensation import make_compensation
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard
from downpour.ps.worker import Worker


class PartitionDied(RuntimeError):
    """What a step whose partition actor died raises (Ray's ActorDiedError, here without Ray)."""


def _worker(batches, reread=True, dies_at=None):
    """Worker 0 of a small cat network, one shard, n_push 2, on ``batches``; its objective raises PartitionDied at
    the objective's call number ``dies_at`` (0-based: the step whose partition died)."""
    torch.manual_seed(0)
    model = create_model("cat-demo", (1, 16, 16), maps=[2, 2], kernels=[4, 3], tile=2)
    objective, calls = Objective.from_config({"reconstruction": 1.0}), []

    def cost(out):
        calls.append(1)
        if len(calls) - 1 == dies_at:
            raise PartitionDied("partition 1 of replica 0")
        return objective(out)
    flat = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
    worker = Worker(0, model, cost, iter(batches), [(0, flat.numel())], n_fetch=1, n_push=2, reread=reread)
    return worker, flat


def _push(worker, flat, steps=2):
    """``steps`` steps, each after a fetch (the same parameters: the shard moved nothing), then the push."""
    for _ in range(steps):
        worker.load([flat], [0])
        worker.step()
    return worker.take_push()


def test_a_dropped_push_has_its_batches_trained_again_and_the_stream_goes_on_after_them():
    """The replica drew batches 0 and 1 for a push, and the second step's partition died: the push is dropped
    (``drop_push``), its steps handed out again. Its next push trains batches 0 and 1 (as a replica that never
    failed trains them), with the dropped push's seq, and the one after it batches 2 and 3: none skipped, none twice.
    (Else the stream goes on past the dropped batches: the next push trains 2 and 3, and 0 and 1 are drawn and never
    trained.)"""
    torch.manual_seed(1)
    batches = [Batch(torch.randn(4, 1, 16, 16)) for _ in range(6)]
    worker, flat = _worker(batches, dies_at=1)
    worker.load([flat], [0])
    worker.step()
    with pytest.raises(PartitionDied):
        worker.step()
    dropped_seq = worker.seq
    worker.drop_push()
    again, after = _push(worker, flat), _push(worker, flat)
    fresh, _ = _worker(batches)
    first, second = _push(fresh, flat), _push(fresh, flat)
    assert again.seq == dropped_seq == first.seq and after.seq == second.seq
    assert torch.allclose(again.grads[0], first.grads[0]) and torch.allclose(after.grads[0], second.grads[0])
    assert not torch.allclose(first.grads[0], second.grads[0])    # (the batches differ: the check can tell them apart)


def test_a_dropped_push_leaves_dc_asgd_no_copy_for_good_and_the_retried_push_corrects_from_its_own_fetch():
    """DC-ASGD keeps worker 0's fetched copy per version until no push of it can be based on it. Its cycle fetched
    version 1 and was dropped (never pushed); its retried push, with the same seq, fetched version 2 afresh and lands
    at version 3: it is corrected with the copy of version 2 (not the dropped cycle's), and once it lands only that
    copy is kept: the dropped fetch's goes (a seq never pushed would hold every later copy for the rest of the run),
    since the retried push keeps the dropped seq (the test above)."""
    lr, lam = 0.5, 0.25
    shard = Shard(0, torch.zeros(3), make_rule("sgd", lr), make_compensation("dc-asgd", lam), workers=[0, 1])
    g = torch.tensor([1.0, -2.0, 0.5])
    shard.pull(0)
    shard.pull(1)
    assert shard.push(0, g, 0, 0).accepted                       # version 1
    shard.pull(0)                                                # the dropped cycle's fetch (version 1)
    assert shard.push(1, torch.ones(3), 0, 0).accepted           # version 2
    copy = shard.pull(0)[0].clone()                              # the retried cycle's fetch (version 2)
    assert shard.push(1, torch.ones(3), 1, 1).accepted           # version 3
    now = shard.params.clone()
    assert shard.push(0, g, 2, 1).accepted                       # the retried push: seq 1 again, based on version 2
    assert torch.allclose(shard.params, now - lr * (g + lam * g * g * (now - copy)))
    assert list(shard._backup[0]) == [2]


def _small_cat_cluster():
    """A small cat network's resolved config on the simulated cluster, and its ``ClusterSetup``."""
    from downpour.config import load_config
    from downpour.models.registry import resolve
    from downpour.ps.setup import set_up_cluster

    cfg = resolve(load_config("cat-demo", ["data.size=20", "model.kernels=[5,3]", "model.maps=[4,4]", "data.samples=40",
                                           "train.batch_size=8", "train.threads=1", "cluster.runner=simulated"]))
    return cfg, set_up_cluster(cfg)


def test_only_a_model_parallel_replica_keeps_its_pushs_batches():
    """``make_worker`` gives a replica whose parameters live elsewhere (its partition actors: the only push ever
    dropped) ``reread``; a whole replica, which never drops one, holds no batch past its step."""
    from downpour.ps.setup import make_worker

    cfg, setup = _small_cat_cluster()
    whole = make_worker(cfg, 0, setup.data, setup.bounds, gated=False)
    parts = make_worker(cfg, 0, setup.data, setup.bounds, gated=False, params=whole.params)
    assert parts.reread and not whole.reread


def test_a_whole_replica_on_a_gpu_keeps_no_batch_either(monkeypatch):
    """A GPU replica's parameters are a DeviceParams make_worker builds itself: it is a whole replica, whose push is
    never dropped, and holds no batch (on the GPU) past its step (as every GPU replica would if reread were read
    after the GPU branch set ``params``). (The device here is "meta": the branch
    taken without a GPU.)"""
    from downpour.ps import setup

    cfg, got = _small_cat_cluster()
    monkeypatch.setattr(setup, "resolve_device", lambda name: torch.device("meta"))
    gpu = setup.make_worker(cfg, 0, got.data, got.bounds, gated=False)
    assert isinstance(gpu.params, setup.DeviceParams) and not gpu.reread
