"""A model-parallel replica's partition actors (``ps/partitions_on_ray.py``) run in this process (their classes under
Ray's decorator, ``ray.get`` answering at once): what the replica and a partition keep after a step, and a partition's
RNG."""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import Tensor

from downpour.batch import Batch
from downpour.config import load_config
from downpour.models.registry import build, create_model
from downpour.parallel import partition_model
from downpour.ps.seeds import partition_seed, worker_seed
from downpour.train.step import NonFiniteLoss, train_step
from test_parallel_ray import _Recorded


def _replica(k: int, seed: int = 0, **model: str):
    """cat-demo (``model``'s keys) in float64, split in ``k``: the whole network, and the replica whose filters are in
    ``k`` partition actors run in this process (loaded with the whole network's filters), and the actors."""
    from downpour.ps.partitions_on_ray import PartitionActor, remote_replica, stage_specs

    torch.manual_seed(0)
    full = create_model("cat-demo", **model).double()
    local = partition_model(copy.deepcopy(full), k)
    actors = [PartitionActor.__ray_metadata__.modified_class(0, p, stage_specs(local, p), [], [], [], 0.0, 1, seed)
              for p in range(k)]
    for actor, part in zip(actors, local.partitions):
        if len(part.weights):
            actor.load(torch.cat([w.detach().reshape(-1) for w in part.parameters() if w.requires_grad]))
    replica = copy.deepcopy(local)
    remote_replica(replica, [_Recorded(a, []) for a in actors])
    return full, replica, actors


def _held_bytes(module: torch.nn.Module) -> int:
    """The bytes of the plain tensors (not parameters or buffers) that ``module``'s submodules keep as attributes."""
    return sum(t.nbytes for m in module.modules() for t in vars(m).values() if isinstance(t, Tensor))


def test_a_remote_stage_keeps_no_codes_or_reconstruction_after_a_step(actors_in_process):
    """The replica's stand-in for a stage's filters (RemoteFilter) hands its reconstruction to the stage's decode and
    keeps neither it nor the codes, which would otherwise stay until the next step's forward (the main job's, batch
    32 in float32: 984 kB over its two stages; 185 kB here in float64, batch 3). Two steps (the second forward finds
    nothing left over), each the whole network's loss."""
    full, replica, _ = _replica(2, tile=0)
    anchors = sum(stage.filter.anchor.nbytes for stage in replica.stages)     # what each stage keeps for good
    _, objective = build(load_config("main"), full.input_shape)
    for _ in range(2):
        x = torch.randn(3, *full.input_shape, dtype=torch.float64)
        a, b = train_step(full, objective, Batch(x)), train_step(replica, objective, Batch(x))
        assert a.loss == pytest.approx(b.loss, abs=1e-10)
        assert _held_bytes(replica) == anchors


def test_a_partition_actor_keeps_no_copy_of_a_frozen_stages_filters(actors_in_process):
    """A frozen Gabor first layer's block of filters comes with the stage's specs (the shards hold only what trains)
    and is copied into the partition's weights; the actor does not keep the specs as they came, that block a second
    time (a NumPy array: in float32, 614 kB and 666 kB in cat-demo's two partitions). The weights hold the whole
    network's block."""
    full, replica, actors = _replica(2, first_layer="gabor", tile=0)
    for p, actor in enumerate(actors):
        assert not [k for s in actor.specs for k, v in s.items() if isinstance(v, np.ndarray)]
        block = replica.stages[0].filter.blocks[p]
        torch.testing.assert_close(actor.weights[actor.own[0]].detach(),
                                   full.stages[0].filter.weight.detach()[block.rows, block.cols], rtol=0, atol=0)


def test_a_partition_actor_seeds_torch_and_its_calls_draw_nothing(actors_in_process):
    """A partition seeds its process's torch RNG from the run's seed, its worker, its index and the step it started at
    (``partition_seed``; else a draw added to it would not repeat with ``--seed``), a
    seed apart from every worker's and partition's; and a trained call (encode, backward, add_grads) draws nothing:
    the state it was seeded to is left as it was."""
    from downpour.ps.partitions_on_ray import PartitionActor, stage_specs

    seeds = {partition_seed(7, w, p, step) for w in range(4) for p in range(4) for step in (0, 1, 500)}
    assert len(seeds) == 48 and not seeds & {worker_seed(7, w, step) for w in range(4) for step in (0, 1, 500)}
    seed = partition_seed(7, 1, 1, 500)
    local = partition_model(create_model("cat-demo", tile=0), 2)
    actor = PartitionActor.__ray_metadata__.modified_class(1, 1, stage_specs(local, 1), [], [], [], 0.0, 1, seed)
    assert actor.seed == seed and torch.initial_seed() == seed
    seeded = torch.get_rng_state()
    block = local.stages[0].filter.blocks[1]
    x = torch.ones(3, *local.input_shape)[:, :, block.in_rows, block.in_cols].contiguous()
    codes, recon = actor.encode(0, x.numpy(), True, True)
    actor.backward(0, np.ones_like(codes), np.ones_like(recon))
    actor.add_grads()
    assert torch.equal(torch.get_rng_state(), seeded)


def test_the_driver_seeds_each_partition_actor_by_its_worker_index_and_start_step(monkeypatch):
    """``RayCluster._spawn`` (no Ray: stand-in actors) starting worker 1 of 2 x 2 at step 30 (a resume's, or a
    replacement's) hands its partition p ``partition_seed(seed, 1, p, 30)``."""
    from scripted_ray import ScriptedCluster, coordinator, scripted_runtime, stubbed_spawns

    from downpour.ps import partitions_on_ray
    from downpour.ps.cluster_on_ray import RayCluster
    from downpour.ps.connect_on_ray import placer

    rt = scripted_runtime(monkeypatch, nodes=["a" * 56])
    cluster = ScriptedCluster(rt, coordinator(2, 40), partitions=2)
    stubbed_spawns(monkeypatch, cluster, 2, 2)
    seeds: list[int] = []
    started = SimpleNamespace(remote=lambda *args: seeds.append(args[-1]))
    monkeypatch.setattr(partitions_on_ray, "PartitionActor", SimpleNamespace(options=lambda **options: started))
    cluster.place, cluster.pins, cluster._incarnation[1] = placer(rt.nodes()), {}, 0
    RayCluster._spawn(cluster, 1, 0, 30)
    assert seeds == [partition_seed(cluster.setup.cfg.seed, 1, p, 30) for p in range(2)]


def _pushed(nan_first: str | None) -> tuple[list, list]:
    """One push of a Worker over cat-demo at tile 16 (stage 1's banks the replica's, shard 2; stage 2's blocks the
    partitions', shards 0 and 1) split in 2 in float64, whose steps run in this process: with ``nan_first`` a first
    step skipped ('cost': a NaN cost; 'banks': a finite cost with a NaN gradient of the replica's banks; 'codes': of
    stage 2's codes, so of the partitions' filters), then one finite step. The push's slices, and each partition's
    kept graphs after the skipped step."""
    from downpour.ps.partitions_on_ray import PartitionParams
    from downpour.ps.worker import LocalParams, Worker

    _, replica, actors = _replica(2, tile=16)
    for actor in actors:
        n = actor.params.numel
        actor.bounds, actor.links = [(0, n)], [_link(n)]
    sizes = [a.params.numel for a in actors] + [LocalParams(replica.shared_banks, 0.0, 1).numel]
    bounds = [(sum(sizes[:j]), sum(sizes[:j + 1])) for j in range(3)]
    params = PartitionParams([_Recorded(a, []) for a in actors], [[0], [1]], bounds[-1][1])
    params.link_shared(replica, 0, [None] * 3, [None] * 3, bounds, 0.0, 1)
    _, objective = build(load_config("main"), replica.input_shape)
    banks = replica.shared_banks["0"]

    def spoilt(out):
        total, parts = objective(out)
        if nan_first == "cost":
            return total * math.nan, parts
        return total + _nan_gradient(banks if nan_first == "banks" else list(out.values())[-1].codes), parts

    torch.manual_seed(1)
    xs = [torch.randn(3, *replica.input_shape, dtype=torch.float64) for _ in range(2)]
    batches = iter([Batch(x) for x in (xs if nan_first else xs[1:])])
    worker = Worker(0, replica, lambda out: spoilt(out) if worker.steps == 1 and nan_first else objective(out),
                    batches, bounds, params=params)
    worker.load([], [0, 0, 0])
    kept = []
    if nan_first:
        worker.step()
        kept = [len(a._graphs) for a in actors]
    worker.step()
    push = worker.take_push()
    assert push.skipped == (1 if nan_first else 0) and push.steps == (2 if nan_first else 1)
    return push.grads, kept


def _nan_gradient(t: Tensor) -> Tensor:
    """0, whose gradient of ``t`` is NaN: sqrt's at 0 is inf, times 0."""
    return 0.0 * torch.sqrt(0.0 * t.sum())


def _link(n: int):
    from downpour.ps.on_ray import ShardLink

    return ShardLink(None, None, 0, n)      # no lane: a push's slice is handed back


@pytest.mark.parametrize("nan_first", ["banks", "codes", "cost"])
def test_a_skipped_step_leaves_the_partitions_nothing_of_it(actors_in_process, nan_first):
    """A step the replica skips (``Worker.step``: a NaN cost, or a finite cost with a NaN gradient of the replica's
    shared banks or of the partitions' filters) leaves the partition actors no gradient and no graph: the next finite
    step's push equals a fresh run's. Else the partitions' gradients stay (the replica's ``zero_grad`` does not reach
    them, and no ``add_grads`` takes them), and the next backward adds onto them; a NaN cost's graphs stay until the
    next forward; and a NaN gradient of the partitions' filters goes unseen: the step is not skipped, its NaN goes
    into the push."""
    fresh, _ = _pushed(None)
    got, kept = _pushed(nan_first)
    assert kept == [0, 0]
    for a, b in zip(got, fresh):
        torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=0, atol=1e-12)


def test_a_partitions_non_finite_gradient_is_the_steps(actors_in_process):
    """The replica's check sees only its own parameters (cat-demo untied split in 2: none); a NaN gradient of the
    filters in the partition actors is found in their backward, and ``train_step`` says which, with the cost."""
    _, replica, _ = _replica(2, tile=0)
    _, objective = build(load_config("main"), replica.input_shape)

    def spoilt(out):
        total, parts = objective(out)
        return total + _nan_gradient(list(out.values())[-1].codes), parts

    with pytest.raises(NonFiniteLoss, match=r"^finite cost [0-9.]+ but a gradient no rule could apply \(NaN, Inf or too "
                       r"large\) of stage 2's filters in partition 0, stage 2's filters in partition 1: parts \{"):
        train_step(replica, spoilt, Batch(torch.randn(3, *replica.input_shape, dtype=torch.float64)))
