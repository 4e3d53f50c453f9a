"""downpour plan: the paper's network counted by hand, the arithmetic against footprint_table and
torch's FLOP counter, the staleness prediction against simulated runs, the cluster model, the CLI."""
import dataclasses
import json
import re
import sys

import pytest
import torch
from ctrl_c import ctrl_c_after_push
from torch.utils.flop_counter import FlopCounterMode

from downpour.batch import Batch
from downpour.cli import main
from downpour.config import ConfigError, load_config, save_config
from downpour.models.footprint import footprint_table
from downpour.models.registry import build, create_model, model_entry
from downpour.objectives import Objective
from downpour.ps.rules import make_rule
from downpour.plan import (Cluster, Rates, cat_footprint, check_simulated, network_of, plan_config, plan_for,
                           predict_staleness)
from downpour.parallel import partition_model
from downpour.parallel.partition import block_banks, partition_bounds, partition_ranges
from downpour.plan import cat_formulas
from downpour.plan.check import compare_run
from downpour.plan.counted import step_flops
from downpour.plan.one_machine import PROCESS_BYTES
from downpour.plan.partition import grid, partition, partition_stage

pytestmark = pytest.mark.usefixtures("one_thread")

# a process's own memory in GB (Python, torch, Ray's worker), which every process needs on its machine beside
# what it holds of the model: the small machines below are that and a few MB
OWN_GB = PROCESS_BYTES / 1e9


def test_the_paper_network_has_the_papers_billion_connections_within_30_percent():
    cfg, shape = plan_config("paper")
    net = network_of(cfg, shape, paper=True)
    # by hand: 200 -> 183 positions (18x18 fields, stride 1) -> 179 pooled (5x5, step 1) -> 162 -> 158 -> 141 -> 137
    by_hand = [183 ** 2 * 8 * 3 * 18 ** 2, 162 ** 2 * 8 * 8 * 18 ** 2, 141 ** 2 * 8 * 8 * 18 ** 2]
    assert [s.connections for s in net.stages] == by_hand
    assert [s.out_shape for s in net.stages] == [(8, 179, 179), (8, 158, 158), (8, 137, 137)]
    assert abs(net.connections / 1.15e9 - 1) <= 0.30          # 1.217e9: +5.8%
    assert net.params == 2 * net.connections                   # the paper's untied decoder W2 doubles what is trained


def test_a_stride_of_two_would_miss_the_papers_count():
    cfg, shape = plan_config("paper", ["model.strides=[2,2,2]"])
    assert network_of(cfg, shape).connections < 0.7 * 1.15e9


VARIANTS = [("cat-demo", {}), ("cat-3stage", {}), ("cat-demo", {"tile": 2, "decoder": "untied"}),
            ("cat-3stage", {"first_layer": "gabor", "decoder": "untied", "strides": (2, 1, 1), "pool_strides": (2, 1, 1)}),
            ("cat-demo", {"tile": 1, "pools": (2, 2), "pool_strides": (2, 2)})]


@pytest.mark.parametrize("name, options", VARIANTS)
def test_the_analytic_count_equals_footprint_table_on_the_built_network(name, options):
    entry = model_entry(name)
    measured = footprint_table(name, None, **options)
    counted = cat_footprint(dataclasses.replace(entry.config, **options), entry.input_shape)
    keys = ("layer", "out_shape", "params", "frozen", "param_bytes", "act_bytes", "flops_fwd", "flops_bwd")
    assert [{k: r[k] for k in keys} for r in counted] == [{k: r[k] for k in keys} for r in measured]


@pytest.mark.parametrize("decoder", ["untied", "tied"])
def test_training_flops_are_five_filter_passes_as_torch_counts_them(decoder):
    # torch's counter sees the locally connected contractions as bmm: encoder forward, decoder forward,
    # decoder weight and code gradients, encoder weight gradient (a stage's input is detached)
    model = create_model("cat-demo", None, decoder=decoder)
    objective = Objective.from_config(model_entry("cat-demo").objective)
    batch = 3
    with FlopCounterMode(display=False) as counter:
        total, _ = objective(model.forward_train(Batch(torch.randn(batch, 1, 32, 32))))
        total.backward()
    counts = counter.get_flop_counts()
    # LCN's window means are small banded products (bmm too): the counter files them under the stage's lcn
    lcn = sum(by_op.get(torch.ops.aten.bmm, 0) for name, by_op in counts.items() if name.endswith(".lcn"))
    lcn_mm = sum(by_op.get(torch.ops.aten.mm, 0) for name, by_op in counts.items() if name.endswith(".lcn"))
    # two window means per stage, each a (P x P) product on each side of the P x P map: 4·P²·2P per example; stage 1's
    # only: a step skips the LCN of its last stage, which feeds nothing (since 2026-12-06; the plan since that day too)
    assert lcn + lcn_mm == batch * sum(4 * p * p * 2 * p for p in (12,))
    bmm = counts["Global"][torch.ops.aten.bmm] - lcn
    filter_fwd = [25 * 25 * 8 * 2 * 64, 8 * 8 * 8 * 2 * 8 * 25]        # positions * maps * 2 * C*k*k
    assert bmm == batch * 5 * sum(filter_fwd)
    cfg, shape = plan_config("cat-demo", [f'model.decoder="{decoder}"'])
    stages = network_of(cfg, shape).stages
    assert [2 * s.connections for s in stages] == filter_fwd
    # on top of the five passes: pooling forward and backward, LCN forward (a few % here)
    for f, s in zip(filter_fwd, stages):
        assert 5 * f < s.flops_fwd_bwd < 1.1 * 5 * f


def _cached(model, x, cached: bool) -> None:
    """With ``cached``, run the step's forward on ``x`` until the frozen cache answers it (a miss keeps the rows, the
    next runs them twice as its shape check, then it hits): the next step on ``x`` reads the frozen stages."""
    for _ in range(2 if cached else 0):
        with torch.no_grad():
            model.forward_train(Batch(x))


def _torch_step_flops(cfg, shape, stage, batch=3, cached=False):
    """torch's count of one training step per example (matrix products only), ``stage`` trained (None: all);
    ``cached``: a step whose frozen stages come from the cache."""
    model, objective = build(cfg, shape)
    model.set_stage(stage)
    x = torch.rand(batch, *shape)
    _cached(model, x, cached)
    with FlopCounterMode(display=False) as counter:
        total, _ = objective(model.forward_train(Batch(x)))
        total.backward()
    return counter.get_total_flops() / batch


def test_a_greedy_preset_is_planned_one_stage_per_step_as_torch_counts_it(capsys):
    """cat-demo trains greedily (stage 1, then stage 2 on stage 1's output); the plan counted every stage trained at
    every step: 4.42 MFLOP per example where its steps average 2.45 M of products (+ a few % of pooling and LCN)."""
    cfg = load_config("cat-demo")
    assert cfg.train.schedule == "greedy"
    shape = (1, 32, 32)
    f1, f2 = 25 * 25 * 8 * 2 * 64, 8 * 8 * 8 * 2 * 8 * 25           # positions * maps * 2 * C*k*k
    lcn1 = 4 * 12 * 12 * 2 * 12                                       # LCN's banded window products (P x P maps)
    by_stage = [_torch_step_flops(cfg, shape, 1), _torch_step_flops(cfg, shape, 2)]
    # stage 2's steps run stage 1 forward only; neither runs its trained stage's LCN, which feeds nothing (since
    # 2026-12-06, and the plan counts none since that day: test_the_plans_steps_run_each_lcn_a_step_runs_...)
    assert by_stage == [5 * f1, f1 + lcn1 + 5 * f2]
    # once the frozen cache holds a batch's rows, stage 2's step reads stage 1 (tests/test_plan_cache_hits.py)
    assert _torch_step_flops(cfg, shape, 2, cached=True) == 5 * f2
    assert main(["plan", "--config", "cat-demo", "--machines", "4", "--cores", "2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    runs = plan["network"]["frozen_runs"][1]                      # stage 1's forwards per stage-2 step
    by_stage[1] = runs * (f1 + lcn1) + 5 * f2
    mean = sum(by_stage) / 2
    assert plan["network"]["schedule"] == "greedy" and mean < plan["network"]["flops_train"] < 1.1 * mean
    assert plan["partition"]["flops_train"] == plan["network"]["flops_train"]       # (one partition)
    # a greedy step keeps one stage's activations for its backward, not every stage's
    acts = [s["partition"]["act_bytes_batch"] for s in plan["stages"]]
    assert plan["partition"]["act_bytes"] == pytest.approx(max(acts), abs=2)
    # each stage's step, timed from its own FLOPs (since 2026-12-04 the plan says them beside their mean): stage 1's
    # steps train stage 1, stage 2's run stage 1 forward only and train stage 2
    t, rate = plan["times_s"], 2 * plan["rates"]["flops_per_core"] * 32 ** -1     # --cores 2, batch 32
    pool_rate = 2 * plan["rates"]["pool_lcn_flops_per_core"] * 32 ** -1   # pooling and LCN's own (since 2026-12-06)
    for steps, pool, torch_count in zip(t["step_by_stage"], plan["partition"]["pool_lcn_flops_by_stage"], by_stage):
        flops = (steps - t["fetch"] - pool / pool_rate) * rate + pool         # one partition: no halo
        assert torch_count < flops < 1.1 * torch_count
    assert sum(t["step_by_stage"]) / 2 == pytest.approx(t["step"])


def _torch_products_outside_lcn(cfg, shape, stage, batch=3, cached=False):
    """torch's count of one training step per example, ``stage`` trained, less what it files under the stages' LCN
    (its banded window products): the filters' products alone; ``cached``: its frozen stages from the cache."""
    model, objective = build(cfg, shape)
    model.set_stage(stage)
    x = torch.rand(batch, *shape)
    _cached(model, x, cached)
    with FlopCounterMode(display=False) as counter:
        total, _ = objective(model.forward_train(Batch(x)))
        total.backward()
    counts = counter.get_flop_counts()
    lcn = sum(sum(by_op.values()) for name, by_op in counts.items() if name.endswith(".lcn"))
    return (counter.get_total_flops() - lcn) / batch


def _torchs_way(maps, codes, pool, stride, lcn):
    """(L2 pooling, LCN) FLOPs as torch's counter counts them: none of pooling's element-wise work, LCN's banded window
    products alone (two window means over the maps' sum, each a product on each side of the P_h x P_w map)."""
    ph, pw = (codes[0] - pool) // stride + 1, (codes[1] - pool) // stride + 1
    return 0, 4 * ph * pw * (ph + pw)


@pytest.mark.parametrize("config, sets, shape", [
    ("cat-demo", [], None), ("cat-demo", ["train.schedule=joint"], None),
    ("main", [], None), ("main", ["train.schedule=joint"], None),
    # the paper's network (untied, 18x18 fields, pooling 5 with step 1, LCN 5, joint) on a 64x64 crop, small enough
    # to build: its third stage's maps are 1x1
    (None, [], (3, 64, 64)), (None, ["train.schedule=greedy"], (3, 64, 64))])
def test_the_plans_steps_run_each_lcn_a_step_runs_as_torch_counts_them(monkeypatch, config, sets, shape):
    """A step skips the LCN of the last stage it runs (since 2026-12-06): a greedy step its trained stage's, a joint
    step its top stage's; the stages below a greedy step's run forward, LCN included. Counting element-wise work as
    torch's counter does, the plan's step is torch's count of a real training step (plan/counted.py), each greedy
    stage's and the joint one. Until 2026-12-06 the plan counted every trained stage's LCN: cat-demo's stage 1 step
    read 13,824 FLOPs per example of LCN products over torch's 3.2 M (the plan's own count: 122,112 of 3,358,108)."""
    cfg, planned_shape = plan_config("paper" if config is None else None, sets, config)
    shape = shape or planned_shape
    monkeypatch.setattr(cat_formulas, "pool_lcn_flops", _torchs_way)
    monkeypatch.setattr(cat_formulas, "normalising_flops", lambda weights, per_filter: (0, 0))    # element-wise
    net = network_of(cfg, shape)
    fwd, train = [s.flops_fwd for s in net.stages], [s.flops_fwd_bwd for s in net.stages]
    steps = ([sum(fwd[:i]) + t for i, t in enumerate(train)] if cfg.train.schedule == "greedy" else [sum(train)])
    assert steps == pytest.approx(step_flops(cfg, shape), rel=1e-12)
    assert net.flops_train == pytest.approx(sum(steps) / len(steps), rel=1e-12)


def test_the_plans_flops_say_what_they_count_the_cat_formulas_products_apart(capsys):
    """The cat formulas count element-wise work (pooling, LCN, normalising the filters) that torch's counter, which
    counts every other model's step, does not: cat-demo read 2.60 MFLOP, 6.3% over torch's 2.45 M of its built step,
    beside tica-8x8's products-only 57.3 k, with no word that the two count different things."""
    cfg = load_config("cat-demo")
    products = [_torch_products_outside_lcn(cfg, (1, 32, 32), stage) for stage in (1, 2)]
    read = _torch_products_outside_lcn(cfg, (1, 32, 32), 2, cached=True)      # stage 2's step, stage 1 from the cache
    # one replica: R replicas each fill their cache in 1/R of the steps (tests/test_plan_cache_hits.py), and the
    # default 1,000 machines lay out 656 of them for cat-demo's 1,500 steps (630 until 2026-12-06)
    assert main(["plan", "--config", "cat-demo", "--replicas", "1", "--json"]) == 0
    n = json.loads(capsys.readouterr().out)["network"]
    runs = n["frozen_runs"][1]                   # stage 1's forwards per stage-2 step (tests/test_plan_cache_hits.py)
    # greedy: the mean of the stages' steps
    assert n["products_train"] == pytest.approx((products[0] + runs * products[1] + (1 - runs) * read) / 2, rel=1e-12)
    # the element-wise work: 1.4% (3.8% with stage 1's pooling and LCN on every stage-2 step, until the frozen cache
    # was counted, 2026-12-06; 6.9% before that day, with the LCN a step skips)
    assert n["flops_train"] - n["products_train"] > 0.01 * n["products_train"]
    assert main(["plan", "--config", "cat-demo", "--replicas", "1"]) == 0
    assert "FLOPs counted on paper: 2.14M of the filters' matrix products" in capsys.readouterr().out
    assert main(["plan", "--config", "tica-8x8", "--json"]) == 0
    n = json.loads(capsys.readouterr().out)["network"]
    assert n["products_train"] == n["flops_train"]                               # torch's count: products only
    assert main(["plan", "--config", "tica-8x8"]) == 0
    assert "FLOPs as torch's counter counts a training step: matrix products" in capsys.readouterr().out



def test_a_built_models_rows_say_they_count_the_inference_path_not_the_training_step(capsys):
    """tica-8x8's rows read 16.38k under "FLOPs/ex", its first line 57.34k "FLOP per training example": the rows
    are the inference path's forward + backward, the first line torch's count of a training step (decoder, cost)."""
    assert main(["plan", "--config", "tica-8x8"]) == 0
    out = capsys.readouterr().out
    first, header, row = out.splitlines()[0], out.splitlines()[3], out.splitlines()[5]
    assert first.endswith("57.34k training step FLOPs/ex")
    assert "inference FLOPs/ex" in header and row.startswith("(model)") and " 16.38k " in row
    assert "(inference FLOPs/ex: forward + backward of one example through the layer on the inference path" in out
    assert main(["plan", "--config", "cat-demo"]) == 0                  # the cat rows sum to its first line's figure
    out = capsys.readouterr().out
    assert "FLOP per training example" in out.splitlines()[0] and "inference FLOPs/ex" not in out


def test_plan_json_names_a_rows_flops_after_what_they_count_not_as_the_training_steps(capsys):
    """Until 2026-12-05 `stages[i].flops_train` (a built model's: its inference path's forward + backward) shared its
    name with `network.flops_train` (the training step): ufldl-sae's read 6400 and 16000 under one name. The row's key
    is now `flops_fwd_bwd`, in the row's partition too."""
    assert main(["plan", "--model", "ufldl-sae", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    row = plan["stages"][0]
    assert row["stage"] == "(model)" and "flops_train" not in row and "flops_train" not in row["partition"]
    # W1 (25 x 64): the encoder's product forward and its weight gradient (no input gradient): the inference path
    assert row["flops_fwd_bwd"] == row["partition"]["flops_fwd_bwd"] == 2 * (2 * 25 * 64)
    # the step: the five products of an autoencoder's step (encoder and decoder forward, two weight gradients, the codes')
    assert plan["network"]["flops_train"] == plan["partition"]["flops_train"] == 5 * (2 * 25 * 64)
    # a cat stage's row is its training's forward + backward: trained jointly, the rows sum to the step
    assert main(["plan", "--config", "cat-demo", "--set", "train.schedule=joint", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert sum(s["flops_fwd_bwd"] for s in plan["stages"]) == pytest.approx(plan["network"]["flops_train"], rel=1e-12)

@pytest.mark.parametrize("preset, by_hand", [
    # W (64 x 64): encoder and decoder forward, the decoder's weight and code gradients, the encoder's weight
    # gradient, and the pooled L2 term's pooling product (64 x 64) forward and backward into the codes
    ("tica-8x8", 7 * 2 * 64 * 64),
    # W1 (25 x 64), W2 (64 x 25): the five products of an autoencoder's step (no input gradient)
    ("ufldl-sae", 5 * 2 * 64 * 25)])
def test_a_model_planned_from_its_layers_is_timed_by_its_training_step(capsys, preset, by_hand):
    """The plan timed these from their inference path (forward + backward of the encoder's layers): 16.4 k for
    tica-8x8 and 6.4 k for ufldl-sae, which left out the decoder and the cost's products."""
    cfg = load_config(preset)
    assert _torch_step_flops(cfg, (1, 8, 8), None) == by_hand
    assert main(["plan", "--config", preset, "--machines", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["network"]["flops_train"] == by_hand == plan["partition"]["flops_train"]
    assert plan["network"]["params"] == sum(p.numel() for p in build(cfg, (1, 8, 8))[0].parameters())


@pytest.mark.parametrize("batch", [64, 8])
def test_a_step_with_a_cost_per_step_is_counted_at_the_runs_batch(capsys, batch):
    """rbm-digits' 32 persistent chains cost the same 1.64 MFLOP a step whatever the batch: counted on 2 examples, the
    plan read 896 kFLOP per example where torch counts 102.4 k at its batch of 64 (281.6 k at 8)."""
    cfg = load_config("rbm-digits", [f"train.batch_size={batch}"])
    by_torch = _torch_step_flops(cfg, (1, 8, 8), None, batch=batch)
    assert by_torch == {64: 102400, 8: 281600}[batch]
    assert main(["plan", "--model", "rbm-digits", "--set", f"train.batch_size={batch}", "--machines", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["network"]["flops_train"] == by_torch == plan["partition"]["flops_train"]


def test_a_step_whose_count_is_no_line_in_the_batch_is_counted_at_the_batch(monkeypatch):
    """A cost pairing the batch's examples (b² products) has no per-step part to divide: counted at the batch itself."""
    from downpour.plan import counted

    def count(fake):    # both ways a step is counted: on the meta device, and on the built model where it cannot be
        for name in ("_count_on_meta", "_count"):
            monkeypatch.setattr(counted, name, fake)

    seen = []
    count(lambda model, objective, shape, b: seen.append(b) or 10.0 * b + b * b)
    cfg, shape = plan_config("tica-8x8", ["train.batch_size=16"])
    assert counted.step_flops(cfg, shape) == (10.0 + 16,) and seen == [1, 2, 3, 16]
    count(lambda model, objective, shape, b: 100.0 + 10.0 * b)   # a line: read at 16
    assert counted.step_flops(cfg, shape) == (100.0 / 16 + 10.0,)


def test_the_plans_help_names_every_key_a_plan_reads(capsys):
    """train.schedule joined the keys a plan reads on 2026-12-04; --help still listed the others only."""
    from downpour.plan.network import PLAN_READS

    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert [key for key in sorted(PLAN_READS) if key not in said] == []


def test_the_plans_help_names_what_the_simulated_check_trains_by_default(capsys):
    """--help named the check's default workers, shards and steps, not the preset it trains (2026-12-06)."""
    import inspect

    from downpour.plan.check import CHECK_RECIPE

    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    preset = inspect.signature(check_simulated).parameters["config"].default
    assert f"(default {preset}, at batch {dict(CHECK_RECIPE)['train.batch_size']})" in said


def test_partitions_split_the_untied_weights_and_pay_a_halo():
    cfg, shape = plan_config("paper")
    stage = network_of(cfg, shape).stages[0]             # 183x183 codes
    one, four = partition_stage(stage, 1), partition_stage(stage, 4)
    assert grid(4) == (2, 2) and grid(8) == (4, 2) and grid(9) == (3, 3)
    assert one["halo_floats"] == 0 and one["params"] == stage.params
    assert four["params"] == pytest.approx(stage.params * 92 * 92 / 183 ** 2)   # the largest block: ceil(183/2)^2 positions
    # input window of a 92x92 block: 91 + 18 = 109 rows, against 100 rows owned: 3 channels
    assert four["halo_floats"] >= 3 * (109 ** 2 - 100 ** 2)


@pytest.mark.parametrize("delay, expected", [("constant:0", 3.0), ("constant:1", 7.0), ("exponential:2", 11.0)])
def test_steady_staleness_of_four_workers(delay, expected):
    # p = f = 1: d = 0 is the non-pipelined N - 1; d = 1 adds N·d (Little's law, ties split evenly);
    # exponential arrivals never tie: N·(1 + d) - 1
    assert predict_staleness(4, 100_000, delay=delay).steady == pytest.approx(expected)


def test_integer_delays_above_one_land_before_the_fetch():
    # the simulator schedules a landing push at t - d and the step that fetches at t - 1: for d = 4 the
    # whole burst at the fetch instant is already applied: N·d + (N - 1)/2, not N·(1 + d) - 1
    assert predict_staleness(4, 100_000, delay="constant:4").steady == pytest.approx(4 * 4 + 1.5)


@pytest.mark.parametrize("sets, tolerance", [
    ((), 0.001),                                                                  # constant delays: exact
    ((("cluster.delay", "exponential:2"), ("cluster.n_push", 2), ("cluster.n_fetch", 3)), 0.25),
])
def test_the_prediction_matches_a_50_worker_simulated_run(tmp_path, sets, tolerance):
    result = check_simulated(workers=50, shards=4, steps=1000, sets=[("train.log_every", 10_000), *sets],
                             out=tmp_path / "run")
    assert result["measured"]["pushes"] == 4 * 1000 / dict(sets).get("cluster.n_push", 1)
    assert abs(result["relative_error"]) <= tolerance, result


@pytest.mark.parametrize("sets", [
    (("cluster.consistency", "bounded:0"), ("cluster.n_fetch", 16)),         # a gate fetches every cycle anyway
    (("cluster.consistency", "bounded:1"), ("cluster.delay", "constant:2"), ("cluster.warm_start", 200)),
    (("cluster.consistency", "bounded:2"), ("cluster.n_push", 2), ("cluster.n_fetch", 3)),
], ids=["n_fetch", "warm_start", "n_push"])
def test_a_gated_run_is_predicted_as_it_fetches_and_waits(tmp_path, sets):
    """Under bounded:K the prediction read n_fetch (+1,051% on the first) and let the warm start's lone
    worker pipeline (+67% on the second), though a gated worker fetches every cycle and waits for its push."""
    result = check_simulated(workers=4, shards=2, steps=400, sets=[("train.log_every", 10_000), *sets],
                             out=tmp_path / "run")
    assert abs(result["relative_error"]) <= 0.01, result


def test_a_faster_network_and_more_replicas_move_the_prediction_the_right_way():
    slow = plan_for("paper", cluster=Cluster(bandwidth_gbit=1, replicas=10, partitions=16, shards=200))
    fast = plan_for("paper", cluster=Cluster(bandwidth_gbit=10, replicas=10, partitions=16, shards=200))
    many = plan_for("paper", cluster=Cluster(bandwidth_gbit=10, replicas=40, partitions=16, shards=200))
    # the bytes' part of a push: its call's own cost (plan/calls.py) does not shrink with the link
    bytes_s = [plan["times_s"]["push"] - plan["times_s"]["call"] for plan in (fast, slow)]
    assert fast["samples_per_s"] > slow["samples_per_s"] and bytes_s[0] == pytest.approx(bytes_s[1] / 10, rel=1e-12)
    assert fast["times_s"]["call"] == slow["times_s"]["call"] > 0
    assert many["staleness"] > 3 * fast["staleness"]
    assert fast["push_bytes_replica"] == 4 * 2 * 1_216_858_464


def test_a_model_no_partition_count_fits_is_planned_at_the_most_partitions_that_can_be_laid_out():
    """0.05 GB: no count fits, and the fallback (512 partitions) has no layout on 1,000 machines: the plan blamed
    the shards ("use fewer partitions"), not the memory."""
    plan = plan_for("paper", cluster=Cluster(memory_gb=0.05))
    assert plan["cluster"]["partitions"] == 256 and plan["cluster"]["shards"] >= 256
    assert not plan["fits"]["partition"] and plan["fits"]["machines"]


def test_calibrate_reaches_the_prediction(monkeypatch):
    slow = Rates(1e9, 1e8, "test")
    monkeypatch.setattr("downpour.plan.report.calibrate", lambda rule: slow)
    measured = plan_for("paper", cluster=Cluster(replicas=10, partitions=16, shards=200), measure=True)
    default = plan_for("paper", cluster=Cluster(replicas=10, partitions=16, shards=200))
    assert measured["rates"]["source"] == "test"
    assert measured["times_s"]["compute"] == pytest.approx(default["times_s"]["compute"] * 17)


def test_the_calibration_measures_something():
    from downpour.plan.calibrate import apply_rate, layer_rate

    assert layer_rate(repeats=1, batch=2, channels=2, size=12, kernel=4) > 0
    assert apply_rate(repeats=1, numel=1000) > 0


def test_the_apply_rate_is_measured_with_the_runs_rule_and_a_default_of_another_rule_says_so(monkeypatch):
    """--calibrate measured Adagrad's apply for an Adam run, and the line said "Adagrad" with no word of it."""
    from downpour.plan import format_plan
    from downpour.plan.calibrate import apply_rate
    seen = []
    module = sys.modules["downpour.plan.calibrate"]            # (the package's name "calibrate" is the function)
    monkeypatch.setattr(module, "make_rule", lambda rule, lr: seen.append(rule) or make_rule(rule, lr))
    assert apply_rate(repeats=1, numel=1000, rule="adam") > 0 and seen == ["adam"]
    monkeypatch.setattr("downpour.plan.report.calibrate", lambda rule: Rates(1e9, 1e8, "test", rule))
    measured = format_plan(plan_for("paper", ["cluster.rule=adam"], measure=True))
    assert "(shard apply, adam): test" in measured
    default = format_plan(plan_for("paper", ["cluster.rule=adam"]))
    assert "(shard apply, adagrad's rate, not the run's adam: --calibrate measures adam's)" in default
    assert "(shard apply, adagrad): defaults" in format_plan(plan_for("paper"))


def test_the_cli_prints_the_table_and_json(capsys):
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "stage1" in out and "stage3" in out and "1.22G connections" in out and "assumptions:" in out
    assert main(["plan", "--model", "ufldl-sae", "--machines", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["network"]["params"] == 64 * 25 * 2 + 25 + 64 and plan["cluster"]["machines_used"] <= 4


def test_a_model_the_runner_cannot_split_is_planned_whole_and_a_mode_refuses_the_others_flags(capsys):
    assert main(["plan", "--model", "ufldl-sae", "--json"]) == 0       # it chose 512 partitions of 3,289 weights
    assert json.loads(capsys.readouterr().out)["cluster"]["partitions"] == 1
    assert main(["plan", "--model", "ufldl-sae", "--partitions", "2"]) == 2
    assert "model parallelism splits the locally connected stages of the cat network" in capsys.readouterr().err
    # (--config is the plan's too since 2026-12-02, planning what a preset trains: --out stands for a check's flag)
    for argv, named in ((["--out", "x"], "--out: not read by the plan itself"),
                        (["--check-simulated", "--model", "cat-demo", "--partitions", "4"],
                         "--model, --partitions: not read by plan --check-simulated"),
                        (["--check-run", "x", "--steps", "5"], "--steps: not read by plan --check-run")):
        assert main(["plan", *argv]) == 2
        assert named in capsys.readouterr().err


@pytest.mark.parametrize("sets", [(), ("model.tile=100",), ('model.first_layer="gabor"',), ("model.tile=2",),
                                  ('model.decoder="untied"',)])
def test_the_plan_splits_a_cat_network_exactly_when_the_runner_does(sets):
    """The runner itself is the reference: partition_model on the built network (tile 100 is >= the codes grid,
    so untied, and split; a frozen Gabor first layer is split too)."""
    cfg, shape = plan_config("cat-demo", sets)
    try:
        partition_model(build(cfg, shape)[0], 2)
        runner = ""
    except ValueError as err:
        runner = str(err)
    uncut = network_of(cfg, shape).uncut
    assert bool(uncut) == bool(runner) and uncut in runner
    assert (plan_for("cat-demo", sets, Cluster(machines=16))["cluster"]["partitions"] == 1) if runner else \
        plan_for("cat-demo", sets, Cluster(machines=16, partitions=2))["cluster"]["partitions"] == 2


@pytest.mark.parametrize("sets", [(), ("model.tile=2",), ("model.tile=16",), ("model.tile=16", 'model.first_layer="gabor"'),
                                  ('model.decoder="untied"',), ("model.tile=2", 'model.decoder="untied"'),
                                  ("model.tile=16", 'model.decoder="untied"')])
def test_the_plan_lays_out_the_shards_the_runner_takes_for_a_split_network(sets):
    """The fewest shards K partitions run on, the runner's (partition_bounds on the built network) the reference:
    K for untied filters; 1 where every stage is tiled (the main job's tile 2: the partitions own nothing, the
    replica pushes the shared banks), which the plan refused as fewer shards than partitions; K + 1 at tile 16
    (stage 1's banks shared, stage 2 untied and split), where the plan laid out K shards the runner refuses; K again
    when those banks are a frozen Gabor layer's (no shard holds them)."""
    cfg, shape = plan_config("cat-demo", sets)
    model = partition_model(build(cfg, shape)[0], 2)
    for shards in (1, 2, 3):
        try:
            partition_bounds(partition_ranges(model), shards)
            runner = ""
        except ValueError as err:
            runner = str(err)
        try:
            plan = plan_for("cat-demo", sets, Cluster(machines=16, partitions=2, shards=shards))
            assert plan["cluster"]["shards"] == shards
            planned = ""
        except ConfigError as err:
            planned = str(err)
        assert bool(planned) == bool(runner), (shards, planned, runner)
        assert "the model-parallel runner refuses it" in planned if planned else True
    chosen = plan_for("cat-demo", sets, Cluster(machines=6, partitions=2))["cluster"]   # shards left unset
    partition_bounds(partition_ranges(model), chosen["shards"])                        # the runner takes them


@pytest.mark.parametrize("sets", [("model.tile=2",), ("model.tile=16",), ("model.tile=16", 'model.first_layer="gabor"'),
                                  ("model.tile=2", 'train.schedule="greedy"'), ("model.tile=16", 'train.schedule="greedy"'),
                                  (), ('model.decoder="untied"',), ("model.tile=16", 'model.decoder="untied"'),
                                  ("model.tile=2", 'model.decoder="untied"', 'train.schedule="greedy"'),
                                  ('model.first_layer="gabor"', 'model.decoder="untied"'),
                                  ("model.tile=2", 'model.first_layer="gabor"', 'model.decoder="untied"')])
def test_a_split_networks_traffic_is_what_the_runner_moves(sets):
    """Counted off the built network split in 2, the runner's way (ps/partitions_on_ray.py): each partition fetches
    and pushes its own untied filters (partition_ranges); the replica the shared banks, once; and every call of a
    tiled stage lends each block its banks (block_banks), a trained one's gradient coming back: joint, every stage
    trained; greedy, stage i's step runs the stages below it forward only. Until 2026-12-05 the plan booked each
    block's banks into its partition's fetch and push (the main job's tile 2: 8.19 kB + 25.6 kB a partition where the
    partitions push nothing), and no bytes between the replica and its partitions."""
    cfg, shape = plan_config("cat-demo", sets)
    model = partition_model(build(cfg, shape)[0], 2)
    ranges = partition_ranges(model)
    sent, back, forward = [], [], []
    for stage in model.stages:
        f = stage.filter
        lent = [block_banks(f.banks, b).numel() for b in f.blocks] if f.banks is not None else [0]
        decoder = [block_banks(bk, b).numel() for bk in getattr(stage.decoder_weight, "_banks", []) for b in f.blocks]
        sent.append(sum(lent) + sum(decoder))        # an untied decoder's banks lent with the filters' (2026-12-05)
        back.append((sum(lent) if f.banks is not None and f.banks.requires_grad else 0) + sum(decoder))
        forward.append(sum(lent))                    # forward only, nothing decoded: the filters' alone (2026-12-05)
    steps = ([sum(sent) + sum(back)] if cfg.train.schedule != "greedy" else
             [sum(forward[:i]) + sent[i] + back[i] for i in range(len(sent))])
    plan = plan_for("cat-demo", sets, Cluster(machines=16, partitions=2, shards=3))
    assert plan["push_bytes_partition"] == 4 * max(b - a for a, b in ranges[:-1])
    assert plan["push_bytes_shared"] == 4 * (ranges[-1][1] - ranges[-1][0])
    assert plan["push_bytes_replica"] == 4 * ranges[-1][1]
    assert plan["lend_bytes_replica"] == pytest.approx(4 * sum(steps) / len(steps))
    assert (plan["lend_bytes_replica"] > 0) == any(sent)
    # each call's windows and code blocks, to and from the replica over the runner's own blocks (RemoteFilter): a trained
    # stage sends the window, gets codes and the window's reconstruction, sends both gradients; forward only, greedy's
    # stages below the trained one, the window and its codes; a frozen stage trained at its cost, no gradients, unless
    # its untied decoder trains (a frozen Gabor layer's: the replica sends the reconstruction's gradient,
    # RemoteFilter.anchor, and not the codes', which the frozen encoder would drop: since 2026-12-05)
    trained, forward = [], []
    for stage in model.stages:
        f = stage.filter
        win = [f.in_channels * (b.in_rows.stop - b.in_rows.start) * (b.in_cols.stop - b.in_cols.start) for b in f.blocks]
        codes = [f.maps * (b.rows.stop - b.rows.start) * (b.cols.stop - b.cols.start) for b in f.blocks]
        learns = f.trainable or stage.decoder_weight is not None
        trained.append(sum(2 * w + c + w * learns + c * f.trainable for w, c in zip(win, codes)))
        forward.append(sum(w + c for w, c in zip(win, codes)))
    steps = ([sum(trained)] if cfg.train.schedule != "greedy" else
             [sum(forward[:i]) + trained[i] for i in range(len(trained))])
    assert plan["partition"]["window_bytes_replica"] == pytest.approx(4 * sum(steps) / len(steps))
    assert plan["partition"]["halo_bytes"] == 0      # the runner's partitions exchange nothing among themselves


def test_a_split_replicas_calls_go_through_its_own_process_counted_by_hand():
    """The main job (cat-demo, tile 2, greedy, batch 32) split in 2 (2x1 blocks): stage 1 (1x32x32 in, 8x8 fields,
    25x25 codes) cuts codes rows 0-12 and 12-25, windows rows 0-19 and 12-32; stage 2 (8x12x12 in, 5x5, 8x8 codes)
    rows 0-4 and 4-8, windows 8 rows each. Per example, a trained stage 3 windows + 2 code blocks, forward only a window
    + a code block: stage 1 trained 3·608 + 2·2,400 = 6,624 and 3·640 + 2·2,600 = 7,120, forward 3,008 and 3,240;
    stage 2 trained 3·768 + 2·256 = 2,816, forward 1,024, each block. Greedy: stage 1's step, then stage 1 forward +
    stage 2's. The largest partition: (7,120 + 3,240 + 2,816) / 2 = 6,588 floats; the replica's link (13,744 + 6,248 +
    5,632) / 2 = 12,812. Until 2026-12-05 the plan counted DistBelief's halo between the partitions, 2,976 B per
    example, and nothing through the replica, whose process had no machine."""
    plan = plan_for(None, (), Cluster(machines=8, partitions=2), config="main")
    part = plan["partition"]
    assert (part["window_bytes"], part["window_bytes_replica"], part["halo_bytes"]) == (4 * 6588, 4 * 12812, 0)
    assert part["window_by_stage"] == [4 * 13744, 4 * (6248 + 5632)]
    bw = 1e9 / 8
    assert plan["times_s"]["windows"] == pytest.approx(32 * 4 * 12812 / bw)
    assert plan["cycle_bounds_s"]["replica link"] == pytest.approx(
        (part["shared_bytes"] + 32 * 4 * 12812 + part["lend_bytes_replica"]) / bw)
    assert plan["cluster"]["replica_machines"] == plan["cluster"]["replicas"]
    # the paper's network is planned as DistBelief's pipeline: halos between partitions, no replica's process
    paper = plan_for("paper", (), Cluster(machines=1000, partitions=16))
    assert paper["partition"]["halo_bytes"] > 0 and paper["partition"]["window_bytes_replica"] == 0
    assert paper["cluster"]["replica_machines"] == 0 and "replica link" not in paper["cycle_bounds_s"]


def test_a_split_partition_holds_only_its_blocks_filter_work_counted_by_hand():
    """The main job split in 2 (blocks above; batch 32, greedy, tile 2, tied decoder): a partition actor keeps from a
    trained call to its backward its input window, its codes block and the window's reconstruction, stage 1's largest
    640 + 2,600 + 640 = 3,880 floats per example, stage 2's 768 + 256 + 768 = 1,792; pooling, LCN and the cost run in
    the replica's process. Its copies: the lent banks expanded to its block, saved once (the tied decoder uses the
    same tensor), stage 1's 8 maps x 64 x 13·25 positions = 166,400 floats, stage 2's 8 x 200 x 4·8 = 51,200. Greedy:
    the larger step's, stage 1's. Until 2026-12-05 it was DistBelief's partition: the stage's activations over K with
    the pooling and LCN halos (1.02 MB), the replica's copies over K (1.33 MB) and its block's share of the buffers."""
    plan = plan_for(None, (), Cluster(machines=8, partitions=2), config="main")
    part = plan["partition"]
    assert [s["partition"]["act_bytes_batch"] for s in plan["stages"]] == [32 * 4 * 3880, 32 * 4 * 1792]
    assert (part["act_bytes"], part["copy_bytes"]) == (32 * 4 * 3880, 4 * 166400)
    assert part["state_bytes"] == 0        # the masks and LCN taps are the replica's (its block's share was counted)


def test_a_split_replicas_own_process_memory_is_counted_and_checked_by_hand(capsys):
    """The same split's replica's process holds the shared banks (2,048 + 6,400 floats) and their gradient (the
    optimiser's state is the shards'), the model's buffers (masks 32·32 and 12·12, LCN taps 5 + 5: 1,178 floats), what
    the whole replica's maps keep but for the input its partitions keep (stage 1 14,352 − 1,024 = 13,328 floats per
    example, stage 2 3,904 − 1,152 = 2,752; greedy: the larger) and a step's windows and codes to and from its
    partitions (stage 1's step 13,744, stage 2's 6,248 + 5,632 = 11,880 floats per example: the larger), and its
    LocalParams of the banks: the fetch vector and the push's summed gradient (8,448 floats each). It was not
    counted until 2026-12-05: a machine of 2 MB fits the partitions (1.23 MB) but not the replica's 3.61 MB."""
    plan = plan_for(None, (), Cluster(machines=8, partitions=2, memory_gb=OWN_GB + 0.002), config="main")
    part = plan["partition"]
    assert (part["replica_weight_bytes"], part["replica_grad_bytes"], part["replica_state_bytes"]) == (
        4 * 8448, 4 * 8448, 4 * 1178)
    assert (part["replica_act_bytes"], part["replica_calls_bytes"]) == (32 * 4 * 13328, 32 * 4 * 13744)
    assert part["replica_fetch_push_bytes"] == 4 * 2 * 8448
    assert part["replica_memory_bytes"] == 4 * (4 * 8448 + 1178 + 32 * 13328 + 32 * 13744) == 3_605_096
    assert plan["fits"]["partition"] and not plan["fits"]["replica"]
    assert main(["plan", "--config", "main", "--partitions", "2", "--machines", "8", "--memory", f"{OWN_GB + 0.002:g}"]
                ) == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("memory of each replica's process"))
    assert line.startswith("memory of each replica's process: 3.61 MB (shared banks 33.79 kB") and \
        line.endswith("** does not fit **")
    # chosen, a count whose replica's process does not fit is not taken: at 3 MB none fits (each replica's holds the
    # whole replica's maps, whatever K), where 2 partitions were taken; at 4 MB 2 are
    assert not plan_for(None, (), Cluster(machines=40, memory_gb=OWN_GB + 0.003), config="main")["fits"]["replica"]
    four = plan_for(None, (), Cluster(machines=40, memory_gb=OWN_GB + 0.004), config="main")
    assert four["cluster"]["partitions"] == 2
    # one partition runs no such process, and the paper's pipeline has none
    whole = plan_for(None, (), Cluster(machines=8, partitions=1), config="main")
    assert whole["partition"]["replica_memory_bytes"] == 0
    assert plan_for("paper", (), Cluster(machines=1000, partitions=16))["partition"]["replica_memory_bytes"] == 0


def test_a_split_replicas_own_process_computes_its_pooling_lcn_and_banks_norm_in_the_step_counted_by_hand(capsys):
    """The main job split in 2 (tile 2, greedy, batch 32): the replica's process runs every stage's pooling, LCN and the
    tiled banks' normalising itself, between its partitions' calls (they compute while it waits, and it while they
    do), on the whole replica's maps. Stage 1 (codes 8x25x25 pooled 3/2 to 8x12x12, LCN 5): pooling 5,000 + 1,152·11
    = 17,672, LCN 2·(2·8·25)·144 + 6·1,152 = 122,112, the banks' norm 196 forward, 652 trained; stage 2 (8x8x8 to
    8x6x6): 3,680, 30,528, 604 and 2,012. Greedy steps, each skipping its trained stage's LCN (its output feeds
    nothing; the plan counted it until 2026-12-06: 168,994 per example, replica's process 61.8 µs): stage 1's
    2·17,672 + 652 = 35,996; stage 2's 17,672 + 122,112 + 196 below it and 2·3,680 + 2,012: their mean 92,674. The largest
    partition runs its block's products alone (stage 1 13/25 of 3.2 M, stage 2 half of 1.024 M, stage 1 forward 13/25
    of 640 k below it). Until 2026-12-05 the step counted the largest partition's share of every stage's FLOPs,
    pooling and LCN included, and nothing of the replica's process (compute 157.9 µs; then 147.6 + 19.9 µs). Of the
    92,674, all but the banks' norm ((652 + 196 + 2,012) / 2 = 1,430) is pooling and LCN, at their own rate since
    2026-12-06 (until then the layer's: 19.9 µs; now 33.7 µs at the defaults)."""
    plan = plan_for(None, (), Cluster(machines=8, partitions=2), config="main")
    part, t = plan["partition"], plan["times_s"]
    assert part["replica_flops"] == (35_996 + 17_672 + 122_112 + 196 + 2 * 3_680 + 2_012) / 2 == 92_674
    assert part["flops_train"] == pytest.approx((13 / 25 * 3_200_000 + 13 / 25 * 640_000 + 1_024_000 / 2) / 2)
    rate, pool_rate = 16 * plan["rates"]["flops_per_core"], 16 * plan["rates"]["pool_lcn_flops_per_core"]
    assert part["pool_lcn_replica_flops"] == 92_674 - 1_430
    assert t["replica_compute"] == pytest.approx(32 * (1_430 / rate + (92_674 - 1_430) / pool_rate))
    assert t["step"] == pytest.approx(t["compute"] + t["replica_compute"] + t["windows"] + t["lend"] + t["fetch"])
    assert sum(t["step_by_stage"]) / 2 == pytest.approx(t["step"])      # each greedy stage's step has its own
    # untied filters are normalised by the partitions that own them, not by the replica's process
    untied = plan_for(None, (), Cluster(machines=8, partitions=2), config="cat-untied")
    net = network_of(*plan_config(None, (), "cat-untied"))
    (one, two) = net.stages          # greedy: stage 2's step normalises stage 1's filters forward, its own trained
    assert one.norm_fwd and untied["partition"]["replica_flops"] == pytest.approx(
        net.flops_train - net.products_train - (one.norm_train + one.norm_fwd + two.norm_train) / 2)
    # one partition is the replica: its step is the whole network's, no process beside it
    whole = plan_for(None, (), Cluster(machines=8, partitions=1), config="main")
    assert whole["times_s"]["replica_compute"] == 0
    assert whole["partition"]["flops_train"] == whole["network"]["flops_train"]
    # (counted without the frozen cache; with it, less by the forwards of stage 1 it answers: test_plan_cache_hits.py)
    assert network_of(*plan_config(None, (), "main")).flops_train == 2_524_674
    assert main(["plan", "--config", "main", "--partitions", "2", "--machines", "8"]) == 0
    assert "step (batch 32): compute 147.6 µs + replica's process 33.7 µs + windows 13.1 ms + " in capsys.readouterr().out


def test_a_split_partition_counts_its_fetch_vector_and_push_beside_its_filters_and_their_gradient(capsys):
    """cat-untied split in 2 (untied filters, the partitions' own: 217,600 floats the largest's, its shards' 870.4 kB):
    its actor's LocalParams keeps a fetch vector apart from the filters (PartitionActor.flat) and the push's summed
    gradient beside the step's .grad, 2 x 870.4 kB the plan left out until 2026-12-05 (2.95 MB, where it holds 4.69
    MB). A whole replica's worker (K = 1) is another process, counted as before."""
    part = plan_for(None, (), Cluster(machines=8, partitions=2), config="cat-untied")["partition"]
    assert part["server_bytes"] == part["weight_bytes"] == 4 * 217_600
    assert part["fetch_push_bytes"] == 2 * 4 * 217_600 and part["replica_fetch_push_bytes"] == 0
    assert part["memory_bytes"] == (part["weight_bytes"] + part["grad_bytes"] + part["fetch_push_bytes"]
                                    + part["act_bytes"] + part["copy_bytes"])
    assert plan_for(None, (), Cluster(machines=8, partitions=1), config="cat-untied")["partition"]["fetch_push_bytes"] == 0
    assert main(["plan", "--config", "cat-untied", "--partitions", "2", "--machines", "8"]) == 0
    assert "gradient 870.40 kB, fetch vector and push 1.74 MB, " in capsys.readouterr().out


def test_each_machines_process_needs_its_own_memory_beside_the_models(capsys):
    """A partition of cat-demo holds 71.58 MB of the model, but its process holds Python, torch and Ray's worker too:
    on 2 nodes of a Ray cluster (2026-12-07, 2 workers, 2 shards) the worker actors' RSS peaked at 360 MB and the
    shards' at 310 MB, where a shard holds 33.79 kB of the model. Until 2026-12-07 a plan of many machines compared the
    model's share alone with --memory, so machines of 0.1 GB "fit"; the one-machine plan counted each process's own."""
    argv = ["plan", "--config", "cat-demo", "--machines", "4", "--replicas", "2", "--shards", "2", "--partitions", "1"]
    small = plan_for(None, (), Cluster(machines=4, replicas=2, shards=2, partitions=1, memory_gb=0.1),
                     config="cat-demo")
    assert small["partition"]["memory_bytes"] < 0.1e9 and not small["fits"]["partition"]
    assert small["shard_bytes"] < 0.1e9 and not small["fits"]["shard"]
    assert main([*argv, "--memory", "0.1"]) == 1
    out = capsys.readouterr().out
    assert out.count("** does not fit **") == 2 and "each process's own ~262.14 MB (Python, torch, Ray's worker)" in out
    fitting = plan_for(None, (), Cluster(machines=4, replicas=2, shards=2, partitions=1,
                                         memory_gb=(small["partition"]["memory_bytes"] + PROCESS_BYTES) / 1e9),
                       config="cat-demo")
    assert fitting["fits"]["partition"] and fitting["fits"]["shard"]
    assert main([*argv, "--memory", "0.4"]) == 0


def test_where_no_partition_count_fits_the_plan_takes_the_one_whose_largest_process_needs_least(capsys):
    """The main job on 40 machines of 3 MB: no count fits (each replica's process holds the whole replica's maps, and
    its windows and codes grow with K). The plan took the most partitions that can be laid out, 36, whose replica's
    process needs 6.34 MB, where 2 partitions' needs 3.61 MB (a partition's 1.23 MB); it takes 2 now, and says why."""
    plan = plan_for(None, (), Cluster(machines=40, memory_gb=OWN_GB + 0.003), config="main")
    assert plan["cluster"]["partitions"] == 2 and plan["memory_fallback"]
    assert plan["partition"]["replica_memory_bytes"] == 3_605_096 and not plan["fits"]["replica"]
    assert not plan_for(None, (), Cluster(machines=40, memory_gb=OWN_GB + 0.004), config="main")["memory_fallback"]
    assert not plan_for(None, (), Cluster(machines=40, partitions=36, memory_gb=OWN_GB + 0.003),
                        config="main")["memory_fallback"]
    assert main(["plan", "--config", "main", "--machines", "40", "--memory", f"{OWN_GB + 0.003:g}"]) == 1   # no fit
    assert ("no partition count that can be laid out fits a machine's 0.265144 GB: planned 2 partitions, whose largest "
            "process (a partition, or each replica's own) needs the least") in capsys.readouterr().out


def test_where_no_partition_count_fits_the_plan_takes_one_the_machines_lay_out_and_says_what_it_needs(capsys):
    """The main job on 3 machines of 0.1 MB: nothing fits (2 partitions need 3.61 MB for each replica's process, one
    71.58 MB). The fallback took the count that needs the least of those with shards enough, 2, which needs 4 machines,
    and was refused "give --machines 4", where 4 would not fit it either; it takes one that the 3 machines lay out, 1
    partition, and says what it needs against the machine's memory. Where a count fits the memory but not the
    machines (0.004 GB: 2 partitions' 3.61 MB), the sum is still refused: more machines would fit it."""
    plan = plan_for(None, (), Cluster(machines=3, memory_gb=0.0001), config="main")
    assert plan["memory_fallback"] and plan["cluster"]["partitions"] == 1 and plan["cluster"]["machines_used"] == 3
    assert main(["plan", "--config", "main", "--machines", "3", "--memory", "0.0001"]) == 1
    assert ("no partition count that can be laid out fits a machine's 0.0001 GB: planned 1 partition, the count whose "
            "partitions need the least: 71.58 MB a partition, each process with its own ~262.14 MB, against 0.0001 GB "
            "a machine") in capsys.readouterr().out
    assert main(["plan", "--config", "main", "--machines", "40", "--memory", f"{OWN_GB + 0.003:g}"]) == 1
    assert ("needs the least: each replica's process 3.61 MB, a partition 1.23 MB, each process with its own "
            "~262.14 MB, against 0.265144 GB a machine" in capsys.readouterr().out)
    assert main(["plan", "--config", "main", "--machines", "3", "--memory", f"{OWN_GB + 0.004:g}"]) == 2
    assert "2 partitions (the fewest that fit a machine's memory)" in capsys.readouterr().err


def test_a_split_frozen_layers_untied_decoder_is_sent_only_what_it_uses_counted_by_hand():
    """The main job's split in 2 (above) under a frozen Gabor first layer with untied decoders (tile 2: 4 banks a
    block, stage 1's of 8·1·8·8 = 512 floats, stage 2's of 8·8·5·5 = 1,600, as many decoder banks). Stage 1's step
    sends the window and its reconstruction's gradient, not its codes' (the frozen encoder drops it): 3·608 + 2,400
    = 4,224 and 3·640 + 2,600 = 4,520 a block, where it read 6,624 and 7,120; stage 2 as above. Replica (8,744 +
    6,248 + 5,632) / 2 = 10,312 floats per example, the largest (4,520 + 3,240 + 2,816) / 2 = 5,288. Lent per step and
    block: stage 1's step its 2,048 filter and 2,048 decoder floats, the decoder's gradient back (6,144); stage 2's
    step stage 1 forward only, its filters' 2,048 (no decoder: 4,096 until 2026-12-05), and stage 2's 2·6,400 out and
    back (25,600): the largest (6,144 + 27,648) / 2 = 16,896 floats, the replica's twice that."""
    plan = plan_for(None, ('model.first_layer="gabor"', 'model.decoder="untied"'), Cluster(machines=8, partitions=2),
                    config="main")
    part = plan["partition"]
    assert (part["window_bytes"], part["window_bytes_replica"]) == (4 * 5288, 4 * 10312)
    assert part["window_by_stage"] == [4 * 8744, 4 * (6248 + 5632)]
    assert (plan["lend_bytes_partition"], plan["lend_bytes_replica"]) == (4 * 16896, 4 * 2 * 16896)


def test_the_table_of_a_split_on_the_runners_way_gives_each_stages_calls_not_a_halo(capsys):
    """The main job split in 2 has no halo between its partitions (the summary says so), so its table's column gives
    each stage's trained call through the replica, the largest block's (hand counts above: 7,120 and 2,816 floats);
    until 2026-12-05 it read "halo/ex" with DistBelief's halo, 2.05 kB and 1.86 kB. The paper's split keeps its halo."""
    assert main(["plan", "--config", "main", "--partitions", "2", "--machines", "8"]) == 0
    out = capsys.readouterr().out
    header, _, one, two = out.splitlines()[3:7]
    assert "calls/ex" in header and "halo/ex" not in header and "no halo between partitions" in out
    assert one.split()[-4:-2] == ["28.48", "kB"] and two.split()[-4:-2] == ["11.26", "kB"]
    assert main(["plan", "--config", "main", "--partitions", "2", "--machines", "8", "--json"]) == 0
    stages = json.loads(capsys.readouterr().out)["stages"]
    assert [(s["partition"]["calls_bytes"], s["partition"]["halo_bytes"]) for s in stages] == [(4 * 7120, 0),
                                                                                               (4 * 2816, 0)]
    assert main(["plan", "--partitions", "16", "--machines", "1000"]) == 0
    paper = capsys.readouterr().out.splitlines()
    assert "halo/ex" in paper[4] and "calls/ex" not in paper[4]


def test_every_planned_partition_has_a_shard_of_its_own(capsys):
    """17 machines were planned as 1 replica x 9 partitions + 8 shards, a layout the model-parallel runner
    refuses (and whose staleness the plan's own formula understates: a shared shard takes R·K/S pushes)."""
    for machines in (17, 40, 100):
        assert main(["plan", "--machines", str(machines), "--json"]) == 0
        cluster = json.loads(capsys.readouterr().out)["cluster"]
        assert cluster["shards"] >= cluster["partitions"] and cluster["machines_used"] <= machines
    assert main(["plan", "--partitions", "16", "--shards", "4", "--replicas", "2"]) == 2
    assert "--shards 4 is fewer than --partitions 16: each partition needs a shard of its own" in capsys.readouterr().err


def test_too_few_machines_for_the_workers_is_said_as_arithmetic_with_its_fix(capsys):
    """--replicas 7 --partitions 3 --machines 10 said "add machines or shards": the cause was 7 x 3 = 21 workers on
    10 machines, and shards are machines too (3 at least, one per partition): 24 are needed, and 24 plan."""
    assert main(["plan", "--replicas", "7", "--partitions", "3", "--machines", "10"]) == 2
    err = capsys.readouterr().err
    assert "--replicas 7 x --partitions 3 = 21 worker machines, plus 3 shards" in err
    assert "= 24 machines; give --machines 24 or more, or fewer replicas or partitions" in err
    assert "add machines or shards" not in err
    assert main(["plan", "--partitions", "8", "--machines", "10"]) == 2      # replicas unset: 1 at least
    assert "1 replica (the fewest) x --partitions 8 = 8 worker machines, plus 8 shards" in capsys.readouterr().err
    for machines, rc in ((23, 2), (24, 0)):
        assert main(["plan", "--replicas", "7", "--partitions", "3", "--machines", str(machines), "--json"]) == rc
    assert json.loads(capsys.readouterr().out)["cluster"]["machines_used"] == 24


def test_each_split_replicas_own_process_is_a_machine_of_the_layout(capsys):
    """The Ray runner starts, for K >= 2, each replica's worker actor beside its K partition actors
    (ps/starting_on_ray.py: R + R·K + S actors); the plan gave it no machine: --replicas 3 --partitions 2 --shards 2 read 3 x 2 + 2 = 8
    machines, where 3 x 2 + 3 + 2 = 11 are used. With K = 1 that process is the partition: 3 + 2."""
    for k, used in ((2, 11), (1, 5)):
        assert main(["plan", "--config", "main", "--replicas", "3", "--partitions", str(k), "--shards", "2",
                     "--machines", str(used), "--json"]) == 0
        cluster = json.loads(capsys.readouterr().out)["cluster"]
        assert (cluster["machines_used"], cluster["replica_machines"]) == (used, 3 if k > 1 else 0)
    assert main(["plan", "--config", "main", "--replicas", "3", "--partitions", "2", "--shards", "2",
                 "--machines", "10"]) == 1
    assert ("3 replicas x 2 partitions (2x1 blocks) + 3 replica machines (each replica's own process: pooling, LCN, cost, "
            "shared banks) + 2 shards = 11 machines  ** more than the cluster has **") in capsys.readouterr().out
    assert main(["plan", "--config", "main", "--partitions", "2", "--shards", "2", "--machines", "4"]) == 2
    assert ("1 replica (the fewest) x --partitions 2 = 2 worker machines, plus 1 replica machine (each replica's own "
            "process beside its partitions), plus --shards 2 = 5 machines; give --machines 5 or more") in capsys.readouterr().err
    for machines in (9, 12, 40):      # a chosen layout of 2 partitions fits the machines given, the replicas' too
        assert main(["plan", "--config", "main", "--partitions", "2", "--machines", str(machines), "--json"]) == 0
        c = json.loads(capsys.readouterr().out)["cluster"]
        assert c["replicas"] * 3 + c["shards"] == c["machines_used"] <= machines


def test_the_paper_plan_says_its_split_has_no_replica_machine_and_why(capsys):
    """--model paper split in 16 read "33 replicas x 16 partitions + 472 shards", no replica machine, where every other
    split network counts one per replica, and nothing said why: it is planned as DistBelief's pipeline (halos between
    its partitions, no replica process), not as downpour's Ray runner would split it. Its assumptions now say so, in
    --json too."""
    assert main(["plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["cluster"]["partitions"] > 1 and plan["cluster"]["replica_machines"] == 0
    said = [line for line in plan["network"]["assumptions"] if "DistBelief's pipeline" in line]
    assert len(said) == 1 and "no replica machine" in said[0] and "halos" in said[0]
    assert main(["plan", "--config", "main", "--partitions", "2", "--machines", "8", "--json"]) == 0
    assert not [line for line in json.loads(capsys.readouterr().out)["network"]["assumptions"] if "DistBelief" in line]


def test_a_chosen_layout_uses_only_the_machines_there_are(capsys):
    """--shards 990 was planned as 1 replica x 512 partitions + 990 shards = 1,502 of 1,000 machines (no replica
    fitted, read as 1, and the most partitions won), though 5 x 2 + 990 fits; --machines 1 planned 2 (since
    2026-12-06 it plans every process on the one machine: test_plan_one_machine.py)."""
    for shards in (990, 999):
        assert main(["plan", "--shards", str(shards), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["cluster"]["machines_used"] <= 1000
    assert main(["plan", "--machines", "2", "--shards", "2"]) == 2
    assert ("--machines 2 is too few: 1 replica (the fewest) x 1 partition (the fewest) = 1 worker machine, plus "
            "--shards 2 = 3 machines; give --machines 3 or more, or fewer shards") in capsys.readouterr().err


@pytest.mark.parametrize("given, need", [([], 2), (["--replicas", "3"], 4), (["--shards", "5"], 6)])
def test_too_few_machines_for_any_layout_names_the_fewest_that_fit(capsys, given, need):
    """--machines 1 said "no layout fits" with no count: then the sum of the smallest layout, and that count plans
    where one fewer is refused alike (since 2026-12-06 one machine plans every process on it: not refused)."""
    for machines in range(2, need):
        assert main(["plan", "--machines", str(machines), *given]) == 2
        assert f"= {need} machines; give --machines {need} or more" in capsys.readouterr().err
    assert main(["plan", "--machines", str(need), *given, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cluster"]["machines_used"] == need


def test_too_few_machines_where_no_partition_count_fits_the_memory_names_the_fewest_that_plan(capsys):
    """Where no partition count fits a machine's memory and none lays out on the machines given, the refusal sums the
    smallest layout: 1 partition and --shards 4 on 5 machines, which plan it (the fallback takes a count the machines
    given lay out). It summed the count that needs the least (4 partitions, the paper's shrinking with K: "give
    --machines 8 or more") where 5 machines already plan; the main job on 2 machines with --shards 2 was told "give
    --machines 5" (2 partitions, a replica machine and the shards) where 3 plan. Fewer shards lay out 1 partition on
    fewer machines, so they are offered."""
    assert main(["plan", "--machines", "4", "--shards", "4", "--memory", "0.0001"]) == 2
    err = capsys.readouterr().err
    assert "1 replica (the fewest) x 1 partition (the fewest) = 1 worker machine, plus --shards 4 = 5 machines" in err
    assert err.rstrip().endswith("give --machines 5 or more, or fewer shards")
    assert main(["plan", "--machines", "5", "--shards", "4", "--memory", "0.0001"]) == 1      # the fewest: no fit
    assert main(["plan", "--config", "main", "--machines", "2", "--shards", "2", "--memory", "0.0001"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("= 3 machines; give --machines 3 or more, or fewer shards")
    assert main(["plan", "--config", "main", "--machines", "3", "--shards", "2", "--memory", "0.0001"]) == 1


def test_too_few_machines_offers_fewer_shards_only_above_one_per_partition(capsys):
    """--partitions 2 --shards 2 on 3 machines: fewer shards than partitions are refused, so "or fewer partitions or
    shards" offered one that cannot help; --shards 3 can go to 2."""
    assert main(["plan", "--machines", "3", "--partitions", "2", "--shards", "2"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("give --machines 4 or more, or fewer partitions")
    assert main(["plan", "--machines", "4", "--partitions", "2", "--shards", "3"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("give --machines 5 or more, or fewer partitions or shards")


def test_a_greedy_replica_on_one_machine_counts_its_frozen_stages_cache(capsys):
    """A greedy cat step takes the frozen stages' output from a per-row cache of up to 64 MiB in the replica's process
    (models/frozen.py); the plan left it out of the memory (until 2026-12-05). Not where the replica is cut into
    partitions (remote: the cache is dropped there), nor in a joint run (nothing is frozen)."""
    from downpour.models.frozen import CACHE_BYTES

    def partition(*sets: str, cut: tuple[str, ...] = ()) -> dict:
        argv = ["plan", "--config", "cat-demo", "--machines", "4", "--cores", "2", *cut]
        assert main(argv + [a for s in sets for a in ("--set", s)] + ["--json"]) == 0
        return json.loads(capsys.readouterr().out)["partition"]

    greedy = partition()
    assert greedy["frozen_cache_bytes"] == CACHE_BYTES
    assert greedy["memory_bytes"] == pytest.approx(sum(greedy[k] for k in (
        "weight_bytes", "frozen_bytes", "state_bytes", "grad_bytes", "act_bytes", "copy_bytes", "frozen_cache_bytes")))
    assert partition('train.schedule="joint"')["frozen_cache_bytes"] == 0
    cut = partition("model.tile=0", cut=("--partitions", "2", "--replicas", "1", "--shards", "2", "--machines", "5"))
    assert cut["frozen_cache_bytes"] == 0 and partition("model.tile=0")["frozen_cache_bytes"] == CACHE_BYTES
    assert main(["plan", "--config", "cat-demo", "--machines", "4", "--cores", "2"]) == 0
    assert "the frozen stages' cache at most 67.11 MB)" in capsys.readouterr().out


def test_a_frozen_first_layer_is_held_by_its_partition_but_not_pushed(capsys):
    plans = {}
    for kind in ("learned", "gabor"):
        argv = ["plan", "--set", f'model.first_layer="{kind}"', "--partitions", "16", "--replicas", "33", "--json"]
        assert main(argv) == 0
        plans[kind] = json.loads(capsys.readouterr().out)
    learned, gabor = plans["learned"]["partition"], plans["gabor"]["partition"]
    assert learned["frozen_bytes"] == 0 and gabor["frozen_bytes"] > 0
    assert gabor["weight_bytes"] + gabor["frozen_bytes"] == pytest.approx(learned["weight_bytes"])   # held: all of them
    assert gabor["grad_bytes"] == pytest.approx(learned["grad_bytes"] - gabor["frozen_bytes"])   # no gradient for them
    # nor a normalised copy, nor its input and pooled maps for the backward (tests/test_plan_held.py has the bytes)
    assert gabor["copy_bytes"] < learned["copy_bytes"] and gabor["act_bytes"] < learned["act_bytes"]
    assert gabor["memory_bytes"] == pytest.approx(sum(gabor[k] for k in ("weight_bytes", "frozen_bytes", "state_bytes",
                                                                         "grad_bytes", "act_bytes", "copy_bytes")))
    assert plans["gabor"]["push_bytes_partition"] == gabor["grad_bytes"] < learned["grad_bytes"]


def test_a_run_resumed_past_its_end_is_not_checked_against_one_schedule(tmp_path, capsys):
    run = str(tmp_path / "run")
    base = ["train", "--config", "ufldl-sae", "--runner", "simulated", "--workers", "8", "--shards", "2",
            "--set", "train.tensorboard=false", "--no-report", "--out", run]
    assert main([*base, "--steps", "16"]) == 0 and main(["plan", "--check-run", run]) == 0
    assert main(["train", "--resume", run, "--steps", "32"]) == 0
    capsys.readouterr()
    assert main(["plan", "--check-run", run]) == 2        # was: a 50% error against one 32-step schedule
    assert "was resumed past its end" in capsys.readouterr().err


def test_the_cli_checks_a_simulated_run(tmp_path, capsys):
    assert main(["plan", "--check-simulated", "--replicas", "20", "--shards", "4", "--steps", "200",
                 "--out", str(tmp_path / "run")]) == 0
    assert "predicted mean staleness" in capsys.readouterr().out
    assert main(["plan", "--check-run", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["workers"] == 20
    # the same --out again: plan has no --resume, which it was told to use ("already holds a run; resume it with
    # --resume or pick another --out")
    assert main(["plan", "--check-simulated", "--replicas", "20", "--shards", "4", "--steps", "200",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"`downpour plan --check-run {tmp_path / 'run'}`" in err and "--resume" not in err


def test_a_run_whose_pushes_were_mostly_refused_does_not_pass_the_check(tmp_path, capsys):
    """A diverged run's staleness is that of its few applied pushes: the check passed it silently
    (teacher-student at lr 50: 369 of 400 pushes refused as non-finite, "relative error +6%", rc 0)."""
    run = str(tmp_path / "run")
    assert main(["train", "--config", "teacher-student", "--runner", "simulated", "--workers", "4", "--steps", "400",
                 "--set", "train.lr=50", "--set", "train.tensorboard=false", "--no-report", "--out", run]) == 0
    capsys.readouterr()
    assert main(["plan", "--check-run", run]) == 1
    out = capsys.readouterr().out
    assert "the shards refused 9" in out and "non-finite): the prediction assumes every push is applied" in out
    result = compare_run(run)
    assert result["rejected_share"] > 0.5 and result["measured"]["rejected"]["non-finite"] > 200
    assert abs(result["relative_error"]) <= 0.25          # the staleness alone would have passed


def test_checking_a_sandblaster_run_says_it_has_no_staleness(tmp_path):
    run = tmp_path / "lbfgs"
    run.mkdir()
    save_config(load_config("cat-demo", ["cluster.algorithm=sandblaster", "cluster.runner=simulated"]), run / "config.toml")
    with pytest.raises(ConfigError, match="is a sandblaster run: it has no stale pushes"):   # was: staleness.json does not exist
        compare_run(run)


@pytest.mark.parametrize("runner, why", [
    ("ray", "on Ray staleness comes from the machines' real timing"),
    ("local", "the local runner has one worker and no parameter server: no push is ever stale")])   # was Ray's reason
def test_checking_a_run_not_on_the_simulator_says_why_it_cannot_be_predicted(tmp_path, runner, why):
    run = tmp_path / runner
    run.mkdir()
    save_config(load_config("cat-demo", [f"cluster.runner={runner}"]), run / "config.toml")
    with pytest.raises(ConfigError, match=f"ran on the '{runner}' runner; the prediction is for the simulated one "
                                          f"\\({why}\\)$"):
        compare_run(run)


@pytest.mark.parametrize("key, named", [
    ("cluster.restarts=3", "only the ray runner reads it"),
    ("train.optimizer=sgd", "only the local runner reads it"),
    ("analysis.layer=nosuch", "analysis.layer = 'nosuch' is not a feature layer"),
])
def test_the_simulated_check_refuses_what_train_refuses(tmp_path, capsys, key, named):
    """plan --check-simulated's --set keys went unchecked: saved in its run's config.toml and read by nothing."""
    argv = ["plan", "--check-simulated", "--steps", "20", "--replicas", "2", "--shards", "2", "--set", key,
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2 and named in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, value", [("cluster.runner", "ray"), ("cluster.algorithm", "sandblaster")])
def test_the_staleness_check_names_the_key_that_takes_it_off_downpour_on_the_simulator(key, value):
    from downpour.plan.check import check_simulated

    with pytest.raises(ConfigError, match=rf"{key} = '{value}': the staleness check runs Downpour on the simulated"):
        check_simulated(workers=4, shards=2, steps=20, sets=[(key, value)])


@pytest.mark.parametrize("argv, named", [
    # the --set came after the flags and won: 5 workers and 100 steps ran, --replicas 50 and --steps 200 unread
    (["--replicas", "50", "--set", "cluster.workers=5"],
     "--set cluster.workers: the check sets it from --replicas; give --replicas 5 instead"),   # it read "(N)"
    (["--steps", "200", "--set", "train.steps=100"], "--set train.steps: the check sets it from --steps"),
    (["--set", "cluster.shards=3"], "--set cluster.shards: the check sets it from --shards"),
    # TOML's floats: the flag takes the whole number ("give --replicas 1000.0 instead" until 2026-12-06, refused)
    (["--set", "cluster.workers=1e3"], "give --replicas 1000 instead"),
    (["--set", "cluster.shards=2.5"], "give --shards N (a whole number; 2.5 is not one) instead"),
    (["--steps", "-3"], "--steps -3: train.steps must be >= 1"),            # was "the command line: train.steps ..."
])
def test_the_simulated_check_takes_its_workers_shards_and_steps_from_its_flags(tmp_path, capsys, argv, named):
    assert main(["plan", "--check-simulated", *argv, "--out", str(tmp_path / "run")]) == 2
    assert named in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting, flag", [
    ("cluster.workers=1e3", "--replicas 1000"), ("cluster.shards=4.0", "--shards 4"),
    ("cluster.partitions=1.5", "--partitions N (a whole number; 1.5 is not one)")])
def test_a_plan_given_its_layout_by_set_names_the_flag_with_a_whole_number(capsys, setting, flag):
    """TOML reads 1e3 as 1000.0: the advice was "give --replicas 1000.0 instead", which the flag refuses."""
    assert main(["plan", "--set", setting]) == 2
    assert f"the plan lays out the cluster from its flags: give {flag} instead" in capsys.readouterr().err


def test_a_preset_is_planned_as_it_trains_not_at_its_models_registry_defaults(capsys):
    """`--model cat-demo` plans the registry's untied cat-demo (422 k parameters, batch 64); the preset trains
    tile 2 at batch 32 (8.45 k), and the plan had no way to plan it."""
    assert main(["plan", "--config", "cat-demo", "--machines", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["batch"] == 32 and plan["network"]["params"] == 8448 and plan["network"]["name"].startswith("cat-demo (")
    assert main(["plan", "--model", "cat-demo", "--machines", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["network"]["params"] == 422400
    assert main(["plan", "--model", "cat-demo", "--config", "main"]) == 2
    assert "--model and --config: one names the network to plan" in capsys.readouterr().err


def test_a_run_stopped_and_not_resumed_is_predicted_for_the_steps_it_did(tmp_path, monkeypatch, capsys):
    """A run stopped at step 878 of 100,000 was predicted for 100,000 steps ("+351% off", exit 1). Stopped at push
    123 of 8 workers (15 whole rounds and 3 pushes of the 16th), then resumed to its end: exact both times."""
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae", ["cluster.runner=simulated", "cluster.workers=8", "cluster.shards=2", "train.steps=400",
                                    "train.batch_size=10", "train.tensorboard=false", "train.log_every=1000"])
    path = tmp_path / "run"
    ctrl_c_after_push(monkeypatch, 123)
    with pytest.raises(KeyboardInterrupt):
        run_cluster(cfg, RunDir.create(path, cfg))
    monkeypatch.undo()
    stopped = compare_run(path)
    assert stopped["steps_done"] == 123 and stopped["steps"] == 400 and stopped["measured"]["pushes"] == 2 * 123
    assert stopped["predicted"]["mean"] == pytest.approx(stopped["measured"]["mean"], abs=1e-3)   # was 14.7 vs 14.02
    assert main(["plan", "--check-run", str(path)]) == 0
    assert "stopped at step 123 of 400" in capsys.readouterr().out
    run_cluster(load_config(str(path / "config.toml")), RunDir.open(path), resume=True)
    resumed = compare_run(path)
    assert resumed["steps_done"] == 400 and resumed["predicted"]["mean"] == pytest.approx(resumed["measured"]["mean"], abs=1e-3)


def test_a_last_round_only_some_workers_pushed_is_predicted_exactly(tmp_path):
    """403 steps on 8 workers: the last round holds workers 0-2, who each see all but the first w + 1 pushes of the
    burst landing at their fetch, not half of it (the prediction was 0.1% under; 1,025 steps on 50: 0.3%)."""
    result = check_simulated(workers=8, shards=2, steps=403, sets=[("train.log_every", 10_000)], out=tmp_path / "run")
    assert result["predicted"]["mean"] == pytest.approx(result["measured"]["mean"], abs=1e-3)


@pytest.mark.parametrize("table, named", [
    ('[cluster]\nconsistency = "sync"\n', "cluster.consistency = 'sync': the plan models asynchronous replicas"),
    ('[cluster]\nconsistency = "bounded:2"\n', "cluster.consistency = 'bounded:2': the plan models asynchronous"),
    ('[cluster]\nalgorithm = "sandblaster"\n', "cluster.algorithm = 'sandblaster': the plan models Downpour SGD only"),
])
def test_a_config_whose_cluster_the_plan_does_not_model_is_refused(tmp_path, capsys, table, named):
    """A sync config was planned with the async formula (staleness 18.1; a sync run's is 0), as was a Sandblaster one;
    --set cluster.consistency is refused, and the file's key now is too."""
    path = tmp_path / "gated.toml"
    path.write_text('base = "main"\n' + table)
    assert main(["plan", "--config", str(path), "--machines", "4", "--cores", "2", "--memory", "8"]) == 2
    err = capsys.readouterr().err
    assert f"downpour plan --config {path}: {named}" in err


def test_a_configs_layout_the_plan_does_not_read_is_said(tmp_path, capsys, caplog):
    """cluster.workers = 8 and a delay in the file were dropped without a word: the plan chooses its own layout."""
    path = tmp_path / "eight.toml"
    path.write_text('base = "cat-demo"\n[cluster]\nrunner = "simulated"\nworkers = 8\ndelay = "constant:2"\n')
    with caplog.at_level("WARNING", logger="downpour.plan.network"):
        assert main(["plan", "--config", str(path), "--machines", "20"]) == 0
    assert "the file's cluster.workers = 8 (--replicas sets it), cluster.delay = 'constant:2' are not read" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="downpour.plan.network"):
        assert main(["plan", "--config", "cat-demo", "--machines", "20"]) == 0      # nothing of the kind set
    assert "not read" not in caplog.text


def test_a_base_less_files_default_the_network_refuses_is_said_as_train_says_it(tmp_path, capsys):
    """A file with no base = "PRESET" plans cat-demo on 8x8 data, whose pool the model refuses: train said why (the
    defaults) and what to add; the plan only said "stage 1's pool 3 is larger than its filter output" (2026-12-06)."""
    path = tmp_path / "bare.toml"
    path.write_text("[train]\nbatch_size = 64\n")
    assert main(["plan", "--config", str(path), "--machines", "8"]) == 2
    err = capsys.readouterr().err
    assert "stage 1's pool 3 is larger than its filter output 1x1" in err
    assert f"(model.pools is a default: {path} has no base = \"PRESET\"" in err and 'base = \"cat-demo\"' in err
    path.write_text('base = "cat-demo"\n[model]\npools = [30, 3]\n')     # a key the file sets: no hint, no repeat
    assert main(["plan", "--config", str(path), "--machines", "8"]) == 2
    err = capsys.readouterr().err
    assert f"downpour plan --config {path}: model.pools: stage 1's pool 30" in err and "is a default" not in err


def _connections_by_hand(strides, pool_strides):
    """The paper's encoder weights counted from the geometry alone: 200x200x3 in, 18x18 fields, 8 maps, 5x5 pools."""
    side, maps_in, total = 200, 3, 0
    for stride, step in zip(strides, pool_strides):
        out = (side - 18) // stride + 1
        total += out * out * 8 * maps_in * 18 * 18
        side, maps_in = (out - 5) // step + 1, 8
    return total


def test_the_paper_plans_bound_on_a_larger_step_holds_for_every_single_larger_step():
    """The assumption line said "any larger step gives < 0.8 billion weights"; filter stride 2 at stage 3 alone gives
    0.909 billion, and the top stage's pooling step moves no weight at all. Its bound now holds, checked by hand."""
    line = next(a for a in network_of(*plan_config(None), paper=True).assumptions if "filter stride" in a)
    bound = float(re.search(r"([0-9.]+) billion", line).group(1)) * 1e9
    paper = _connections_by_hand((1, 1, 1), (1, 1, 1))
    counts = {}
    for key in ("strides", "pool_strides"):
        for stage in range(3):
            steps = [1, 1, 1]
            steps[stage] = 2
            cfg, shape = plan_config(None, [f"model.{key}={steps}".replace(" ", "")])
            counted = sum(s.connections for s in network_of(cfg, shape, paper=True).stages)
            by_hand = _connections_by_hand(steps if key == "strides" else (1, 1, 1),
                                           steps if key == "pool_strides" else (1, 1, 1))
            assert counted == by_hand
            counts[key, stage] = by_hand
    assert counts.pop(("pool_strides", 2)) == paper and "top stage's pooling step aside" in line
    assert max(counts.values()) == counts["strides", 2] > 0.9e9 and max(counts.values()) <= bound < paper


def test_a_run_folder_given_as_the_plans_config_names_its_config_as_a_line_that_runs(tmp_path, capsys):
    """`downpour plan --config RUN` said "(a run folder: --resume it, or start from its config with --config
    RUN/config.toml)": plan has no --resume, and RUN was not the folder typed (2026-12-06)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text('base = "cat-demo"\n')
    assert main(["plan", "--config", str(run), "--machines", "4"]) == 2
    err = capsys.readouterr().err
    assert f"a folder, not a TOML file or a preset (a run folder: its config is --config {run}/config.toml;" in err
    assert "--resume it" not in err and f"`downpour train --resume {run}`" in err
    assert main(["plan", "--config", f"{run}/config.toml", "--machines", "4"]) == 0     # the line it names runs


def test_the_paper_plans_assumptions_say_what_a_set_changed(capsys):
    """Its fixed lines ("18x18 untied fields, 8 maps per position", "filter stride 1", "mini-batch of 100") and the
    header "paper (Le et al. 2012)" were printed whatever --set changed, in --json too."""
    sets = ["--set", "model.strides=[2,2,2]", "--set", "model.maps=[16,16,16]", "--set", "train.batch_size=7",
            "--set", 'model.decoder="tied"', "--set", "model.tile=4"]
    assert main(["plan", *sets, "--json"]) == 0
    network = json.loads(capsys.readouterr().out)["network"]
    lines = "\n".join(network["assumptions"])
    for said in ("tiled 4x4, 16 maps per position (set by --set model.tile, model.maps; the paper: untied; 8 maps",
                 "filter stride 2 and pooling step 1 (set by --set model.strides;", ": filter stride 1)",
                 "the decoder: tied, W2 = W1ᵀ", "mini-batch of 7 examples per step (set by --set train.batch_size"):
        assert said in lines
    assert "8 maps per position (the paper)" not in lines and "filter stride 1 and" not in lines
    assert network["name"] == "paper (Le et al. 2012) with --set model.maps, model.strides, model.tile, model.decoder"
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("paper (Le et al. 2012): ") and "set by" not in out
    assert "18x18 fields, untied, 8 maps per position (the paper)" in out and "mini-batch of 100 examples" in out


def test_with_only_shards_or_replicas_given_the_other_counts_are_chosen():
    """--shards 10 filled the machines with replicas (110 x 9 + 10, staleness 110) though the 10 shards' links bound
    the rate, so 2 replicas gave the same samples/s (staleness 2): the fewest replicas within 5% are chosen."""
    chosen = plan_for("paper", cluster=Cluster(shards=10))
    crowded = plan_for("paper", cluster=Cluster(shards=10, replicas=110, partitions=9))
    assert chosen["cluster"]["shards"] == 10 and chosen["cluster"]["replicas"] <= 2
    assert chosen["samples_per_s"] >= 0.95 * crowded["samples_per_s"] and chosen["staleness"] < 5
    given = plan_for("paper", cluster=Cluster(replicas=2))      # its partitions chosen, its shards the machines left
    assert given["cluster"]["replicas"] == 2 and given["cluster"]["machines_used"] == 1000
    assert given["cluster"]["partitions"] > 1


@pytest.mark.parametrize("sets", [(), (("cluster.n_push", 3), ("cluster.delay", "constant:3")), (("cluster.n_fetch", 3),)],
                         ids=["default", "n_push", "n_fetch"])
def test_a_greedy_runs_stages_are_each_predicted_as_a_fresh_start(tmp_path, sets):
    """A greedy run starts stage 2 only once every push of stage 1 has landed, so its staleness starts up twice:
    cat-untied on 20 workers, 400 steps, logged 35.10 where one schedule of 400 steps predicted 37.05 (+5.6%; on 2
    workers, 20 steps: +12.5%). 8 workers, 130 steps: each stage ends in a partial round. With n_fetch = 3 a
    worker's first stage-2 steps read a copy of stage 1 fetched before it finished (20 workers, 400 steps: 53.58
    measured against 48.15): a worker now fetches at its first step of a new stage."""
    result = check_simulated("cat-untied", workers=8, shards=2, steps=130, sets=[("train.log_every", 10_000), *sets],
                             out=tmp_path / "run")
    p = dict(sets).get("cluster.n_push", 1)
    assert result["stage_switches"] == [-(-65 // p) * p]        # the first cycle that starts in stage 2
    assert result["predicted"]["mean"] == pytest.approx(result["measured"]["mean"], abs=1e-3), result


def test_the_greedy_switches_are_the_cycles_the_coordinator_holds():
    from downpour.plan.staleness import greedy_switches
    from downpour.train.setup import stage_for_step
    for total, stages, p in ((130, 2, 1), (130, 2, 3), (1000, 3, 7), (10, 3, 4), (5, 3, 1)):
        held = [j for j in range(p, total, p)
                if stage_for_step(j, total, stages, "greedy") > stage_for_step(j - p, total, stages, "greedy")]
        assert greedy_switches(total, stages, p) == held, (total, stages, p)


def test_a_cluster_too_large_to_search_is_refused_unless_its_replicas_are_given(capsys):
    """--machines 99999999999999999999 tried every replica count from 1 up, silently, for ever (10^7: a minute)."""
    with pytest.raises(ConfigError, match="--machines 100000000000000000000: the plan tries every replica count"):
        Cluster(machines=10 ** 20)
    assert main(["plan", "--machines", str(10 ** 20)]) == 2
    assert "give --replicas too, or --machines 100000 or fewer" in capsys.readouterr().err
    assert plan_for("paper", cluster=Cluster(machines=10 ** 20, replicas=2))["cluster"]["replicas"] == 2


def test_the_simulated_check_holds_its_run_folders_lock_while_it_trains(tmp_path, monkeypatch):
    """`plan --check-simulated --out RUN` trained RUN unlocked: a `downpour train --resume RUN` from another terminal
    found no checkpoint yet and trained it again beside the check's run."""
    import downpour.plan.check as check
    from downpour.train.lock import check_not_training
    from downpour.train.rundir import NotARunError

    real, refused = check.run_cluster, []

    def run_cluster(cfg, run):
        with pytest.raises(NotARunError, match="being trained now") as err:
            check_not_training(run.path)
        refused.append(err.value)
        return real(cfg, run)

    monkeypatch.setattr(check, "run_cluster", run_cluster)
    check_simulated(workers=4, shards=2, steps=20, sets=[("train.log_every", 10_000)], out=tmp_path / "run")
    assert len(refused) == 1


def test_the_cluster_line_counts_one_of_each_in_the_singular(capsys):
    """It printed '1 replicas x 1 partitions ... + 1 shards' and '1 cores'."""
    assert main(["plan", "--config", "tica-8x8", "--machines", "2", "--cores", "1", "--replicas", "1"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("cluster: "))
    assert "2 machines x 1 core," in line and "; 1 replica x 1 partition (1x1 blocks) + 1 shard = 2 machines" in line


def test_a_step_that_skips_a_stages_lcn_receives_no_lcn_halo_for_it():
    """The paper's pipeline (halos between neighbouring partitions, 4 x 4 at K = 16): a joint step skips its top
    stage's LCN, so its partitions receive no LCN halo for it: stage 3's pooled 8 x 137 x 137 in blocks of 35 x 35,
    LCN 5 reading 39 x 39. Until 2026-12-06 the plan counted it: 180.38 kB per example where a step moves 170.91 kB."""
    cfg, shape = plan_config("paper")
    net = network_of(cfg, shape, paper=True)
    as_before = dataclasses.replace(net, stages=tuple(dataclasses.replace(s, lcn_trained=True) for s in net.stages))
    halo = [partition(n, 16, 100, "adagrad")["halo_bytes"] for n in (as_before, net)]
    assert halo[0] - halo[1] == 4 * 8 * (39 * 39 - 35 * 35)


def test_a_plan_of_a_config_reads_the_file_once(monkeypatch):
    """plan_for read its --config twice: plan_config for the model and the cluster, then again for the data a greedy
    step's frozen cache counts on. plan_config's config carries the file's data (and its steps as --set gave them)."""
    import downpour.plan.network as network_module

    reads = []

    def counted(*args, **kwargs):
        reads.append(args)
        return load_config(*args, **kwargs)
    monkeypatch.setattr(network_module, "load_config", counted)
    cfg, _ = plan_config(None, ("train.steps=100",), "cat-demo")
    assert reads == [("cat-demo",)] and cfg.data == load_config("cat-demo").data and cfg.train.steps == 100
    plan = plan_for(None, ("train.steps=100",), Cluster(machines=4, cores=1), config="cat-demo")
    assert reads == [("cat-demo",)] * 2 and plan["network"]["frozen_runs"]
