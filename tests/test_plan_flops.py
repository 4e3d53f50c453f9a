"""downpour plan's counts: the paper's network counted by hand, the arithmetic against footprint_table and torch's
FLOP counter (a training step, a greedy stage, each LCN), what each row's FLOPs count, the paper plan's bound."""
import dataclasses
import json
import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from downpour.batch import Batch
from downpour.cli import main
from downpour.config import load_config
from downpour.models.footprint import footprint_table
from downpour.models.registry import build, create_model, model_entry
from downpour.objectives import Objective
from downpour.plan import cat_footprint, network_of, plan_config
from downpour.plan import cat_formulas
from downpour.plan.counted import step_flops

pytestmark = pytest.mark.usefixtures("one_thread")


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


def _counted_step(cfg, shape, stage, batch, cached):
    """torch's flop counter over one training step of ``batch`` examples, ``stage`` trained (None: all);
    ``cached``: a step whose frozen stages come from the cache."""
    model, objective = build(cfg, shape)
    model.set_stage(stage)
    x = torch.rand(batch, *shape)
    _cached(model, x, cached)
    with FlopCounterMode(display=False) as counter:
        total, _ = objective(model.forward_train(Batch(x)))
        total.backward()
    return counter


def _torch_step_flops(cfg, shape, stage, batch=3, cached=False):
    """torch's count of one training step per example (matrix products only), ``stage`` trained (None: all);
    ``cached``: a step whose frozen stages come from the cache."""
    return _counted_step(cfg, shape, stage, batch, cached).get_total_flops() / batch


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
    counter = _counted_step(cfg, shape, stage, batch, cached)
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
