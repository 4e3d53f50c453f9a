"""A greedy cat step's frozen stages come from the frozen cache once a stage has seen its rows (models/frozen.py):
the plan counts what the runner runs, a forward pass only on a miss (docs/plan.md, "The frozen stages' cache")."""
import json
import math
from dataclasses import replace

import pytest
import torch

from downpour.cli import main
from downpour.config import load_config
from downpour.data import Dataset, build_dataset
from downpour.models.frozen import FrozenCache
from downpour.plan import network_of, plan_config, plan_for
from downpour.plan.cache_hits import fill_batches, frozen_runs, with_frozen_runs
from downpour.plan.partition import partition
from downpour.plan.cluster import Cluster


def _plan(capsys, *argv: str) -> dict:
    assert main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_stage_2_step_reads_stage_1_from_the_cache_once_it_has_seen_every_row_counted_by_hand(capsys):
    """cat-demo: 1,500 steps of 32, stage 2 the last 750, starting 750 x 32 rows into the batch stream; its rows
    counted here from the data it trains on. Stage 2 runs stage 1 forward on the rest of the epoch it starts in and
    on the next epoch's batches that hold a row it has not seen (a repeated row's bytes seen once are held), the first
    batch whose rows are all held twice (the cache's shape check), and reads the rest: the plan counted stage 1's
    forward on all 750."""
    cfg = load_config("cat-demo")
    x = build_dataset(cfg.data, cfg.seed).x
    rows, distinct = len(x), len({r.numpy().tobytes() for r in x})
    offset = 750 * 32 % rows                                   # into an epoch when stage 2 starts
    unseen = offset * distinct / rows                          # of them, not held through a copy seen since
    fill = math.ceil((rows - offset) / 32) + rows / 32 * (1 - (1 - unseen / rows) ** 32)
    runs = (fill + 2) / 750
    plan = _plan(capsys, "--config", "cat-demo", "--machines", "4", "--cores", "2", "--replicas", "1")
    assert plan["cluster"]["partitions"] == 1 and plan["cluster"]["replicas"] == 1     # (R: the last test)
    assert plan["network"]["frozen_runs"] == pytest.approx([1.0, runs], rel=1e-12)
    one, two = plan["stages"]
    by_stage = plan["partition"]["flops_by_stage"]
    assert by_stage == pytest.approx([one["flops_fwd_bwd"], runs * one["flops_fwd"] + two["flops_fwd_bwd"]], rel=1e-12)
    assert plan["network"]["flops_train"] == pytest.approx(sum(by_stage) / 2, rel=1e-12)
    # stage 2's step is timed from those FLOPs: shorter than one that runs stage 1 on every step by its forward
    t, rate = plan["times_s"], 2 * plan["rates"]["flops_per_core"] / 32       # --cores 2, batch 32
    pool_rate = 2 * plan["rates"]["pool_lcn_flops_per_core"] / 32
    pool = plan["partition"]["pool_lcn_flops_by_stage"]
    step2 = (by_stage[1] - pool[1]) / rate + pool[1] / pool_rate + t["fetch"]
    assert t["step_by_stage"][1] == pytest.approx(step2, rel=1e-9)
    assert f"forward passes of them per step of stage 2: {runs:.3g} (1: every step;" in " ".join(
        plan["network"]["assumptions"])


def test_split_or_joint_or_augmented_every_step_runs_the_frozen_stages(capsys):
    """The cache is dropped where the replica is cut into partitions (remote actors), nothing is frozen in a joint
    run, and augmented rows never recur: each step runs the stages below its own."""
    base = load_config("cat-demo")
    cfg, shape = plan_config(None, ["model.tile=0"], "cat-demo")
    net = with_frozen_runs(network_of(cfg, shape), base)
    assert 0 < net.frozen_runs[1] < 1
    every = replace(net, frozen_runs=())
    for k, same in ((1, False), (2, True)):
        a, b = (partition(n, k, 32, "adam") for n in (net, every))
        assert (a["flops_by_stage"] == b["flops_by_stage"]) is same and (a["flops_train"] == b["flops_train"]) is same
    assert partition(net, 1, 32, "adam")["flops_by_stage"][1] < partition(every, 1, 32, "adam")["flops_by_stage"][1]
    split = _plan(capsys, "--config", "cat-demo", "--machines", "8", "--partitions", "2")
    assert split["cluster"]["partitions"] == 2 and split["network"]["frozen_runs"] == []
    joint = _plan(capsys, "--config", "cat-demo", "--machines", "4", "--set", "train.schedule=joint")
    assert joint["network"]["frozen_runs"] == []
    shifted = replace(base, data=replace(base.data, shift=2))
    assert with_frozen_runs(network_of(cfg, shape), shifted).frozen_runs == ()


@pytest.mark.parametrize("before", [0, 13, 40])
def test_the_plans_frozen_forwards_are_the_caches_own_on_a_batch_stream(before):
    """Independent of the formula: the real cache on the real batch stream (Dataset.batches), a stage of 100 steps
    starting ``before`` batches of 8 into it (an earlier stage's), over 200 rows of which 150 distinct, counting every
    call of the frozen stack; at an epoch's start the count is exact, else an expectation (within 10%)."""
    rows, batch, steps = 200, 8, 100
    x = torch.randn(150, 1, 4, 4)
    data = Dataset(torch.cat([x, x[:50]]))
    cache, calls = FrozenCache(), []

    def frozen(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return 2 * x

    stream = data.batches(batch, torch.Generator().manual_seed(0))
    for _ in range(before):
        next(stream)
    for _ in range(steps):
        cache([torch.ones(1)], next(stream).x, frozen)
    row = 4 * 16 * 2
    if before == 0:
        assert len(calls) == frozen_runs(rows, batch, 2 * steps, [0, row], distinct=150)[1] * steps == 25 + 2
    else:
        assert len(calls) == pytest.approx(fill_batches(rows, batch, before * batch % rows, 150 / rows) + 2, rel=0.1)
    # rows past the cache's bound are not kept: every batch misses, and the plan says so
    assert frozen_runs(rows, batch, 2 * steps, [0, row], limit=row * rows - 1)[1] == 1.0


def _frozen_calls(rows: int, distinct: int, batch: int, steps: int, limit: int) -> int:
    """The frozen stack's calls through the real cache (bound ``limit`` bytes) on ``steps`` batches of the real stream
    over ``rows`` rows of 1x4x4, the first ``distinct`` of them distinct, the rest repeats."""
    x = torch.randn(distinct, 1, 4, 4)
    data = Dataset(torch.cat([x, x[:rows - distinct]]))
    cache, calls = FrozenCache(limit), []

    def frozen(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return 2 * x

    stream = data.batches(batch, torch.Generator().manual_seed(0))
    for _ in range(steps):
        cache([torch.ones(1)], next(stream).x, frozen)
    return len(calls)


def test_a_cache_bound_that_holds_the_distinct_rows_but_not_every_row_still_answers_as_the_plan_counts():
    """A repeated row shares its entry: 200 rows of which 150 distinct fit a bound of 160 rows' bytes, and the cache
    answers after its fill. Until 2026-12-06 the plan weighed all 200 rows against the bound and counted every step."""
    row = 4 * 16 * 2                                        # key (the input row) + output, float32
    calls = _frozen_calls(200, 150, 8, 100, limit=160 * row)
    assert calls == 25 + 2 < 100                            # the real cache: one epoch's fill + the shape check
    assert frozen_runs(200, 8, 200, [0, row], limit=160 * row, distinct=150)[1] * 100 == calls


def test_patches_past_the_caches_bound_are_not_built_to_be_counted(monkeypatch):
    """data.samples random patches whose bytes pass the cache's bound: every step runs the frozen stages, said without
    building the data (a plan of 10**6 patches of 32x32 built 4 GB for minutes until 2026-12-06); a few are counted."""
    base = load_config("cat-demo")
    cfg, shape = plan_config(None, [], "cat-demo")
    net = network_of(cfg, shape)
    many = replace(base, data=replace(base.data, source="natural", mode="patches", samples=10**6))

    def refuse(*args, **kwargs):
        raise AssertionError("built the data")

    monkeypatch.setattr("downpour.data.build.build_dataset", refuse)
    planned = with_frozen_runs(net, many)
    assert planned.frozen_runs == () and "data.samples = 1,000,000 rows of" in planned.assumptions[-1]
    monkeypatch.undo()
    few = replace(many, data=replace(many.data, samples=500))
    assert 0 < with_frozen_runs(net, few).frozen_runs[1] < 0.2           # 500 rows, 750 steps of stage 2


def test_many_replicas_each_fill_their_own_cache_in_their_share_of_the_steps(capsys):
    """The plan lays out R replicas; each keeps its own cache over rows/R rows in S/R steps (the local and simulated
    runners' shards). cat-demo on 64 machines (40 replicas) ran stage 1 0.093 times a stage-2 step by one replica's
    count until 2026-12-06; on 1,000 (630 replicas of 1.19 stage-2 steps) 2.52, where a step runs it at most 1.5
    times (a miss, then the check's 2 on the next): the real cache on a shard of 2 rows, batches of 32."""
    rows, distinct = 1246, 1012
    plan = _plan(capsys, "--config", "cat-demo", "--machines", "64")
    r, row = plan["cluster"]["replicas"], 4 * 32 * 32 + 4 * math.prod(plan["stages"][0]["out_shape"])
    assert r > 1 and plan["cluster"]["partitions"] == 1
    assert plan["network"]["frozen_runs"][1] == pytest.approx(
        frozen_runs(rows, 32, 1500, [0, row], r, distinct=distinct)[1], rel=1e-12)
    assert plan["network"]["frozen_runs"][1] > 1.5 * frozen_runs(rows, 32, 1500, [0, row], distinct=distinct)[1]
    assert _frozen_calls(2, 2, 32, 2, limit=1 << 20) / 2 == 1.5 == frozen_runs(2, 32, 4, [0, row])[1]
    assert 1 < frozen_runs(rows, 32, 1500, [0, row], 630, distinct=distinct)[1] < 1.5


def test_a_cuda_run_has_no_frozen_cache_so_its_plan_runs_the_frozen_stages_every_step():
    """models/frozen.py keys CPU rows: a batch on the GPU runs the frozen stages (FrozenCache passes it through).
    Until 2026-12-06 a train.device = 'cuda' config was planned with the CPU's cache hits."""
    base = load_config("cat-demo")
    cfg, shape = plan_config(None, [], "cat-demo")
    net = network_of(cfg, shape)
    cuda = replace(base, train=replace(base.train, device="cuda"))
    planned = with_frozen_runs(net, cuda)
    assert planned.frozen_runs == () and "train.device = 'cuda'" in planned.assumptions[-1]
    assert with_frozen_runs(net, base).frozen_runs[1] < 1                        # the same on the CPU: counted
    cache, calls = FrozenCache(), []
    x = torch.rand(4, 1, 4, 4).to("meta")               # (any device but the CPU: the cache lets it through)
    for _ in range(3):
        cache([torch.ones(1)], x, lambda x: calls.append(1) or x)
    assert len(calls) == 3


def test_the_layout_is_chosen_on_each_replica_counts_own_frozen_forwards():
    """The plan keeps the fewest replicas within 5% of the most samples/s; each replica count's samples/s is its
    own R replicas' frozen count (the reference: every count given by --replicas, which plans it on its own count).
    Until 2026-12-06 every layout was judged on one replica's count and only the chosen one re-timed on its R: main on
    64 machines laid out 40 replicas (2.355 M samples/s), below 5% of the best, 41 to 63 (2.486 M at the most)."""
    chosen = plan_for(None, (), Cluster(machines=64), config="main")
    rates = {r: plan_for(None, (), Cluster(machines=64, replicas=r), config="main")["samples_per_s"]
             for r in range(1, 64)}
    best = max(rates.values())
    r = chosen["cluster"]["replicas"]
    assert chosen["cluster"]["partitions"] == 1 and chosen["samples_per_s"] == pytest.approx(rates[r], rel=1e-12)
    assert r == min(n for n, rate in rates.items() if rate >= 0.95 * best)
    assert chosen["network"]["frozen_runs"] == list(plan_for(None, (), Cluster(machines=64, replicas=r),
                                                             config="main")["network"]["frozen_runs"])


def test_a_set_of_train_steps_plans_the_run_of_that_length_as_a_file_of_it_does(capsys, tmp_path):
    """Until 2026-12-07 `--set train.steps=N` was refused, though the frozen cache's count reads the steps: a run of
    another length was planned only from a TOML file. The file is the reference; the --set must match it, and differ
    from the preset's 1,500 steps. A --model has no data, so nothing reads it there: refused, as is the plan's --steps
    (--check-simulated's), told the --set."""
    path = tmp_path / "short.toml"
    path.write_text('base = "cat-demo"\n[train]\nsteps = 600\n')
    argv = ("--machines", "4", "--cores", "2", "--replicas", "1")
    from_file = _plan(capsys, "--config", str(path), *argv)
    from_set = _plan(capsys, "--config", "cat-demo", "--set", "train.steps=600", *argv)
    preset = _plan(capsys, "--config", "cat-demo", *argv)
    assert from_set["network"]["frozen_runs"] == pytest.approx(from_file["network"]["frozen_runs"], rel=1e-12)
    assert from_set["network"]["frozen_runs"] != pytest.approx(preset["network"]["frozen_runs"], rel=1e-3)
    assert "600 steps of 32" in " ".join(from_set["network"]["assumptions"])
    assert "--set train.steps=600" in from_set["train_command"]
    assert main(["plan", "--model", "cat-demo", "--set", "train.steps=600"]) == 2
    assert "train.steps=600: the plan reads train.steps only with --config" in capsys.readouterr().err
    assert main(["plan", "--config", "cat-demo", "--steps", "600"]) == 2
    assert "--steps: not read by the plan itself; drop it (it belongs to --check-simulated); the plan's steps: --set " \
        "train.steps=600 with --config" in capsys.readouterr().err
