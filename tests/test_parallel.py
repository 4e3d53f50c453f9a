"""Model parallelism: a replica's stages split into K blocks of output positions compute exactly what
the unpartitioned network computes (float64, 1e-10), and the shards line up with the partitions."""
import copy

import pytest
import torch

from downpour.batch import Batch
from downpour.cli import main
from downpour.models.registry import build, create_model
from downpour.config import load_config
from downpour.parallel import grid_shape, merge_model, partition_model, split_blocks
from downpour.parallel.partition import partition_bounds, partition_ranges
from downpour.train.flat import ParamLayout
from downpour.train.step import train_step


def test_blocks_tile_the_output_grid_and_their_windows_are_the_receptive_fields():
    assert [grid_shape(k) for k in (1, 2, 4, 6, 9, 7)] == [(1, 1), (2, 1), (2, 2), (3, 2), (3, 3), (7, 1)]
    # the shortest cuts on the grid at hand: a wide grid is cut into columns
    assert [grid_shape(8, (3, 40)), grid_shape(8, (40, 3)), grid_shape(8, (15, 33)), grid_shape(8, (25, 25))] == \
        [(1, 8), (8, 1), (2, 4), (4, 2)]
    blocks = split_blocks((25, 25), kernel=8, stride=2, k=9)
    seen = torch.zeros(25, 25, dtype=torch.int64)
    for b in blocks:
        seen[b.rows, b.cols] += 1
        # the first output row reads from row r0*s, the last one ends at (r1-1)*s + k
        assert b.in_rows == slice(b.rows.start * 2, (b.rows.stop - 1) * 2 + 8)
        assert b.in_size == ((b.out_size[0] - 1) * 2 + 8, (b.out_size[1] - 1) * 2 + 8)
    assert bool((seen == 1).all())
    with pytest.raises(ValueError, match="cannot split a 2x2 output grid into 9 blocks"):
        split_blocks((2, 2), 3, 1, 9)


def _pair(name: str, k: int, **options):
    torch.manual_seed(0)
    full = create_model(name, **options).double()
    part = partition_model(copy.deepcopy(full), k)
    return full, part


def _grads(model):
    """Every filter gradient of ``model`` as the unpartitioned (Ho, Wo, M, C, k, k) tensors, then every untied
    decoder's (or the tiled banks')."""
    decoders = [s.decoder_weight for s in model.stages if s.decoder_weight is not None]
    if not hasattr(model, "partitions"):
        return [s.filter.weight.grad for s in model.stages] + [d.grad for d in decoders]
    from downpour.parallel.partition import stitch

    def whole(banks, blocks_weight, blocks):
        return banks.grad if banks is not None else stitch([w.grad for w in blocks_weight], blocks, dims=(0, 1))
    return ([whole(s.filter.banks, s.filter.blocks_weight, s.filter.blocks) for s in model.stages]
            + [whole(d._banks[0] if d._banks else None, d.blocks_weight, d.blocks) for d in decoders])


# the untied decoder (the paper's W2, each block its positions' decoder weights; a tiled one's banks shared), under
# untied and tiled encoders, the weight penalty reading every block's (or the banks' once)
UNTIED_DECODER = ([("cat-demo", {"decoder": "untied"}, k) for k in (2, 4)]
                  + [("cat-demo", {"decoder": "untied", "tile": t}, k) for t, k in ((2, 2), (2, 4), (16, 2))]
                  + [("cat-3stage", {"maps": [4, 4, 4], "decoder": "untied"}, 4)])


# the last untied: stage 2's output is 3x12, which 8 partitions cut as 2x4 (stage 1's 15x33 too), not 4x2. Tiled
# (shared banks, their blocks' gradients summed): the main recipe's tile 2 (every block uses every bank); blocks
# smaller than the tile period (tile 4, K = 9: stage 2's 8x8 codes in blocks of 2-3 rows, each block a few of the
# banks; tile 16, K = 2: stage 1's 25 rows in blocks of 12 and 13, stage 2 untied, so partitions own its blocks
# and share stage 1's banks); a frozen Gabor first layer's banks
@pytest.mark.parametrize("name, options, k", [(name, options, k) for k in (1, 2, 4, 9)
                                               for name, options in (("cat-demo", {}), ("cat-3stage", {"maps": [4, 4, 4]}))]
                         + [("cat-demo", {"input_shape": (1, 22, 40)}, 8)]
                         + [("cat-demo", {"tile": t}, k) for t, k in ((2, 2), (2, 4), (4, 9), (16, 2))]
                         + [("cat-demo", {"tile": 2, "first_layer": "gabor"}, 2),
                            ("cat-3stage", {"maps": [4, 4, 4], "tile": 3}, 4)]
                         + UNTIED_DECODER)
def test_partitioned_forward_backward_and_step_equal_the_whole_network(name, options, k):
    full, part = _pair(name, k, **options)
    norms = [0.9] + [1.0] * (len(full.stages) - 1)      # the main preset's stage-1 norm, one value per stage
    decay = ["objective.weight_l2=1e-3"] if options.get("decoder") == "untied" else []   # reads the whole decoder
    own = [(f"model.{key}", list(getattr(full.config, key))) for key in ("maps", "kernels", "pools")]   # not main's
    _, objective = build(load_config("main", [f"model.name={name}", ("model.filter_norm", norms), *own, *decay]),
                         full.input_shape)
    x = torch.randn(3, *full.input_shape, dtype=torch.float64)
    torch.testing.assert_close(part(x), full(x), rtol=0, atol=1e-10)
    results = [train_step(m, objective, Batch(x)) for m in (full, part)]
    assert abs(results[0].loss - results[1].loss) < 1e-10
    for a, b in zip(_grads(full), _grads(part)):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10)
    for m in (full, part):
        opt = torch.optim.Adagrad([p for p in m.parameters() if p.requires_grad], lr=0.05)
        opt.step()
    state = torch.random.get_rng_state()
    merged = merge_model(part)
    assert torch.equal(torch.random.get_rng_state(), state)      # what runs after it draws as after an unsplit run
    for s_full, s_merged in zip(full.stages, merged.stages):
        torch.testing.assert_close(s_merged.filter.weight, s_full.filter.weight, rtol=0, atol=1e-10)
        if s_full.decoder_weight is not None:
            torch.testing.assert_close(s_merged.decoder_weight, s_full.decoder_weight, rtol=0, atol=1e-10)
    torch.testing.assert_close(merged(x), full(x), rtol=0, atol=1e-10)
    assert set(merged.state_dict()) == set(full.state_dict())     # saved and analysed as the plain model


def test_a_split_replica_runs_its_blocks_on_the_worker_threads_as_the_whole_layer_runs_its_rows(monkeypatch):
    """With 2 torch threads, cat-demo's 25-row stage 1 is split into 2 row ranges run on the kernel's worker
    threads; split in 2, each 12-13-row block is too short for two ranges (k = 8), and its one range ran on the
    caller's thread: 30 steps on a loaded machine took 5-60x longer (docs/benchmarks.md). Every GEMM of the
    kernel, whole or split, runs on a worker."""
    import threading
    real_bmm, seen = torch.bmm, []

    def bmm(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real_bmm(*args, **kwargs)

    full, part = _pair("cat-demo", 2)
    _, objective = build(load_config("main", ["model.name=cat-demo"]), full.input_shape)
    x = torch.randn(3, *full.input_shape, dtype=torch.float64)
    monkeypatch.setattr(torch, "bmm", bmm)
    before = torch.get_num_threads()   # (this module runs on the process's threads: put them back)
    torch.set_num_threads(2)
    try:
        for m in (full, part):
            seen.clear()
            train_step(m, objective, Batch(x))
            assert seen and all(name.startswith("downpour-lc") for name in seen), (m is part, seen)
    finally:
        torch.set_num_threads(before)


def test_each_partition_is_one_contiguous_range_and_every_shard_serves_one_partition():
    _, part = _pair("cat-demo", 4)
    ranges = partition_ranges(part)
    layout = ParamLayout(part)
    assert ranges[0][0] == 0 and ranges[-1][1] == layout.numel
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    bounds = partition_bounds(ranges, 6)      # 4 partitions, 6 shards: 2, 2, 1, 1
    assert len(bounds) == 6 and bounds[0][0] == 0 and bounds[-1][1] == layout.numel
    owner = [next(p for p, (a, b) in enumerate(ranges) if a <= s0 and s1 <= b) for s0, s1 in bounds]
    assert owner == [0, 0, 1, 1, 2, 3]
    with pytest.raises(ValueError, match="fewer than cluster.partitions"):
        partition_bounds(ranges, 3)


def test_models_that_cannot_be_partitioned_say_why():
    with pytest.raises(ValueError, match="model.top = 'gru'"):
        partition_model(create_model("cat-demo", top="gru"), 2)
    with pytest.raises(ValueError, match="has none"):
        partition_model(create_model("ufldl-sae"), 2)


def test_tiled_banks_are_one_shared_range_after_the_partitions_and_their_shards_serve_them_alone():
    """The main recipe's tile 2: every block uses every bank, so the partitions own nothing and both of
    main's shards hold the shared banks (one copy on the server, the blocks' gradients summed before a push).
    Tile 16: stage 2 is untied (its 8x8 codes within the period), so each partition owns its block of it."""
    _, part = _pair("cat-demo", 2, tile=2)
    n = ParamLayout(part).numel
    assert partition_ranges(part) == [(0, 0), (0, 0), (0, n)]
    assert partition_bounds(partition_ranges(part), 2) == [(0, n // 2), (n // 2, n)]
    _, mixed = _pair("cat-demo", 2, tile=16)
    ranges = partition_ranges(mixed)
    assert ranges[0][1] == ranges[1][0] > 0 and ranges[2] == (ranges[1][1], ParamLayout(mixed).numel)
    assert partition_bounds(ranges, 3) == ranges
    with pytest.raises(ValueError, match="cluster.shards = 2 is fewer than the 3 groups of parameters"):
        partition_bounds(ranges, 2)
    for model in (part, mixed):      # the greedy rules hold each stage's tensors by this map: every one is in it
        names = [name for name, p in model.named_parameters() if p.requires_grad]
        assert sorted(model.param_stages()) == sorted(names)
    assert mixed.param_stages() == {"partitions.0.weights.0": 2, "partitions.1.weights.0": 2, "shared_banks.0": 1}


def test_an_untied_decoder_is_each_partitions_own_with_its_filters_and_a_tiled_ones_banks_are_shared():
    """Partition p's range holds its block's filters and decoder weights (the server shards them with it, and its
    fetch and push carry them); a tiled stage's decoder banks join the shared range, after the encoder's banks."""
    _, part = _pair("cat-demo", 2, decoder="untied")
    ranges, layout = partition_ranges(part), ParamLayout(part)
    assert ranges[2] == (layout.numel, layout.numel) and ranges[0] == (0, ranges[1][0])
    assert ranges[0][1] - ranges[0][0] == 2 * sum(w.numel() for w in part.partitions[0].weights)
    assert part.param_stages() == {f"partitions.{p}.{kind}.{j}": j + 1 for p in (0, 1) for kind in ("weights", "decoders")
                                   for j in (0, 1)}
    _, mixed = _pair("cat-demo", 2, decoder="untied", tile=16)
    names = [name for name, p in mixed.named_parameters() if p.requires_grad]
    assert sorted(mixed.param_stages()) == sorted(names)
    assert names[-2:] == ["shared_banks.0", "shared_decoders.0"]
    ranges = partition_ranges(mixed)
    assert ranges[2][1] - ranges[2][0] == 2 * mixed.shared_banks["0"].numel()
    assert set(merge_model(mixed).state_dict()) == set(create_model("cat-demo", decoder="untied", tile=16).state_dict())


def test_a_simulated_run_of_the_main_recipe_split_in_two_trains_what_the_whole_replica_trains(tmp_path):
    """The main recipe (tile 2: both partitions compute with every shared bank; Adam on the server, 2 workers,
    2 shards) shrunk to tiny crops, on the simulator with cluster.partitions = 2 and 1. The blocks' bank gradients
    are summed in the replica before its push, so the server applies Adam once per push to the same sum, to
    float32 rounding (the blocks add their positions' terms in another order). When written: losses equal to 1e-7
    relative, weights to 6e-8 of 0.39."""
    a, b = _simulated_whole_and_split(tmp_path, "main", ["analysis.no_faces_twin=false"])
    assert a.keys() == b.keys() == {"stages.0.filter.weight", "stages.1.filter.weight"}   # saved as the plain model


def test_a_simulated_run_with_the_untied_decoder_split_in_two_trains_what_the_whole_replica_trains(tmp_path):
    """cat-untied with the paper's untied decoder (each partition pushes its block's filters and decoder weights to
    its own shard; 2 workers, 2 shards), on the simulator with cluster.partitions = 2 and 1."""
    a, b = _simulated_whole_and_split(tmp_path, "cat-untied", ["model.decoder=untied", "cluster.workers=2",
                                                               "cluster.shards=2", "objective.weight_l2=1e-3",
                                                               "model.filter_norm=0"])
    assert a.keys() == b.keys() == {f"stages.{i}.{w}" for i in (0, 1) for w in ("filter.weight", "decoder_weight")}


def _simulated_whole_and_split(tmp_path, config: str, sets: list[str]) -> tuple[dict, dict]:
    """6 steps of ``config`` shrunk to tiny crops, on the simulator with cluster.partitions = 1 and 2: the losses equal
    to 1e-6 relative and the saved weights to 1e-6 (float32: the blocks add their positions' terms in another order).
    Returns the two runs' saved models."""
    from test_runner_equivalence import TINY_CAT, _losses, _model

    args = ["train", "--config", config, "--runner", "simulated", "--steps", "6", "--no-report",
            *[a for o in [*TINY_CAT, "train.log_every=1", *sets] for a in ("--set", o)]]
    threads = torch.get_num_threads()
    try:
        for k in (1, 2):
            assert main([*args, "--set", f"cluster.partitions={k}", "--out", str(tmp_path / str(k))]) == 0
    finally:
        torch.set_num_threads(threads)      # the simulator set train.threads in this process
    (steps, whole), (split_steps, split) = zip(*_losses(tmp_path / "1")), zip(*_losses(tmp_path / "2"))
    assert steps == split_steps == (1, 2, 3, 4, 5, 6) and split == pytest.approx(whole, rel=1e-6)
    a, b = _model(tmp_path / "1"), _model(tmp_path / "2")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")
    return a, b
