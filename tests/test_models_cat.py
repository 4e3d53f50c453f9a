"""The cat network's training cost, checked by hand: tied filters at a fixed norm, interior reconstruction, TICA."""
import copy
import math

import pytest
import torch

from downpour.batch import Batch
from downpour.layers.locally_connected import LocallyConnected2d, locally_connected_reference
from downpour.models.registry import create_model
from downpour.objectives import Objective


def _stage_by_hand(model, x):
    """Stage 1's codes, reconstruction and pooled codes computed without the model's own helpers."""
    stage = model.stages[0]
    v = stage.filter.weight.detach()
    c, m = x.shape[1], v.shape[2]
    r = math.sqrt(c / m)                                        # filter_norm 1, stride 1
    w = r * v / v.pow(2).sum(dim=(3, 4, 5), keepdim=True).sqrt()
    codes = locally_connected_reference(x, w, stride=1)         # (B, M, Ho, Wo)
    # the transpose of a linear map, by autograd: WᵀWx = d/dx <codes(x), codes>
    xr = x.clone().requires_grad_(True)
    (recon,) = torch.autograd.grad((locally_connected_reference(xr, w, 1) * codes).sum(), xr)
    # L2 pooling over 3x3 neighbourhoods, stride 2, by explicit windows
    ho = (codes.shape[2] - 3) // 2 + 1
    pooled = torch.stack([torch.stack([codes[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].pow(2).sum(dim=(2, 3))
                                       for j in range(ho)], dim=-1) for i in range(ho)], dim=-2).add(1e-8).sqrt()
    return codes, recon, pooled


def test_stage1_cost_parts_match_a_hand_computation():
    torch.manual_seed(0)
    model = create_model("cat-demo", (1, 16, 16), kernels=(6, 3), tile=0)    # stage 2 unused here
    objective = Objective.from_config({"reconstruction": 1.0, "pooled_l2": {"weight": 0.1, "eps": 1e-2}})
    x = torch.randn(3, 1, 16, 16)
    model.set_stage(1)
    _, parts = objective(model.forward_train(Batch(x)))
    codes, recon, pooled = _stage_by_hand(model, x)
    # interior: pixels 5..10 are covered by all 6 offsets of a 6-wide window on 16 pixels -> 6x6 of 256
    inside = torch.zeros(16, 16)
    inside[5:11, 5:11] = 1
    expected_recon = 0.5 * ((recon - x) ** 2 * inside * (256 / 36)).sum(dim=(1, 2, 3)).mean()
    expected_pooled = 0.1 * torch.sqrt(1e-2 + pooled ** 2).sum(dim=(1, 2, 3)).mean()
    assert parts["stage1/reconstruction"].item() == pytest.approx(expected_recon.item(), rel=1e-4)
    assert parts["stage1/pooled_l2"].item() == pytest.approx(expected_pooled.item(), rel=1e-4)


def test_the_interior_is_a_block_when_the_stride_does_not_divide_the_kernel():
    """With stride 3 and 8-pixel filters the windows over a pixel number 2 or 3 inside; "as many as any
    pixel" kept the lattice of 3s (196 of 1,024 pixels, weighted 5x), and the others cost nothing."""
    from downpour.models.cat_stage import _full_coverage

    def by_hand(n, k, s):   # every window that would cover the pixel exists, and at least one does
        n_out = (n - k) // s + 1
        windows = [[i for i in range(-n, 2 * n) if i * s <= p < i * s + k] for p in range(n)]
        return [bool(w) and all(0 <= i < n_out for i in w) for w in windows]

    for n, k, s in ((32, 8, 3), (14, 5, 2), (20, 10, 3), (16, 6, 1), (10, 3, 4)):
        assert _full_coverage(n, k, s).tolist() == by_hand(n, k, s), (n, k, s)
    # one window over the whole side (k >= 2 strides): no pixel has all its windows; the most covered stand in
    assert _full_coverage(8, 8, 2).all() and _full_coverage(10, 8, 2).tolist() == [False] * 2 + [True] * 6 + [False] * 2
    stage = create_model("cat-demo", strides=(3, 1), kernels=(8, 3), pools=(3, 1), pool_strides=(2, 1)).stages[0]
    rows = (stage.recon_weight[0, 0] > 0).nonzero()[:, 0].unique()
    assert rows.tolist() == list(range(5, 27))          # 22 x 22 contiguous, each weighted 1024 / 484


def test_the_interior_weight_is_exact_in_the_models_dtype():
    """The weight was computed once in float32: a model cast to float64 weighed its reconstruction by a scale
    2e-8 off (1024 / 324), in every float64 hand check of the cost."""
    for dtype in (torch.float32, torch.float64):
        for stage in create_model("cat-demo", (1, 32, 32)).to(dtype).stages:
            w = stage.recon_weight
            inside = int((w > 0).sum())
            assert w.dtype == dtype and torch.equal(w, (w > 0).to(dtype) * (w.numel() / torch.tensor(inside, dtype=dtype)))
            assert dtype == torch.float32 or w.max().item() == w.numel() / inside


def test_every_filter_is_used_at_the_norm_that_gives_the_tied_reconstruction_unit_gain():
    model = create_model("cat-demo", (1, 32, 32))
    for stage, (c, m) in zip(model.stages, ((1, 8), (8, 8))):
        norms = stage.filter.filters().flatten(1).norm(dim=1)
        assert torch.allclose(norms, torch.full_like(norms, math.sqrt(c / m)), rtol=1e-5)
    # 8 random unit-gain filters of a tied convolution reconstruct white noise at about its own size
    conv = create_model("cat-demo", (1, 64, 64), tile=1, kernels=(8, 5)).stages[0]
    x = torch.randn(8, 1, 64, 64)
    gain = conv.decode(conv.filter(x))[:, :, 8:-8, 8:-8].pow(2).mean() / x.pow(2).mean()
    assert 0.5 < gain.item() < 2.0


def test_filter_norm_is_one_radius_for_every_stage_or_one_per_stage():
    one = create_model("cat-demo", (1, 32, 32), filter_norm=0.9)        # a scalar, as saved configs hold it
    per = create_model("cat-demo", (1, 32, 32), filter_norm=[0.9, 1.0])
    for model, scales in ((one, (0.9, 0.9)), (per, (0.9, 1.0))):
        for stage, (c, m), scale in zip(model.stages, ((1, 8), (8, 8)), scales):
            norms = stage.filter.filters().flatten(1).norm(dim=1)
            assert torch.allclose(norms, torch.full_like(norms, scale * math.sqrt(c / m)), rtol=1e-5)
    assert one.config.filter_norm == (0.9,) and per.config.filter_norm == (0.9, 1.0)


def test_free_filters_and_full_reconstruction_are_still_reachable():
    model = create_model("cat-demo", (1, 32, 32), filter_norm=0.0, recon="all", decoder="untied")
    stage = model.stages[0]
    assert stage.filter.norm is None and stage.recon_weight is None and stage.decoder_weight is not None
    assert torch.equal(stage.filter.effective_weight(), stage.filter.weight)


@pytest.mark.parametrize("option,value,message", [
    ("recon", "border", "model.recon"), ("filter_norm", -1.0, "model.filter_norm"),
    ("filter_norm", float("nan"), "model.filter_norm"), ("filter_norm", [0.9, -1.0], "model.filter_norm"),
    ("filter_norm", [0.9, 1.0, 1.0], "filter_norm"), ("filter_norm", "x", "model.filter_norm"),
    # each per-stage value: 0 maps divided by zero, -8 took a square root of a negative, stride 0 blamed the norm
    ("maps", [0, 8], "every value of model.maps must be >= 1"), ("maps", [-8, 8], "model.maps"),
    ("strides", [0, 1], "model.strides"), ("kernels", [8, 0], "model.kernels"),
    ("pools", [3, -1], "model.pools"), ("pool_strides", [0, 1], "model.pool_strides"),
    ("maps", [], "at least one stage"),     # it passed the shape check, then failed on stages[0]
    # a stride that leaves a 1x1 output was blamed on the pool; a pool too large for the output is the pool's
    ("strides", [40, 1], r"model.strides: stage 1's pool 3 is larger than its filter output 1x1 \(filter side 8, stride 40"),
    ("pools", [40, 3], "model.pools: stage 1's pool 40 is larger than its filter output 25x25"),
])
def test_bad_cat_options_are_named(option, value, message):
    with pytest.raises(ValueError, match=message):
        create_model("cat-demo", (1, 32, 32), **{option: value})


def test_a_normalised_layer_ignores_its_parameters_scale_and_keeps_the_untied_layout():
    layer = LocallyConnected2d(2, 4, 10, 3, norm=0.5)
    x = torch.randn(2, 2, 10, 10)
    before = layer(x)
    with torch.no_grad():
        layer.weight.mul_(7.0)
    assert torch.allclose(layer(x), before, atol=1e-5)
    assert layer.effective_weight().stride() == layer.weight.stride()
    y = torch.randn_like(before)
    # the tied adjoint uses the normalised filters: <Wx, y> = <x, Wᵀy>
    assert torch.allclose((layer(x) * y).sum(), (x * layer.adjoint(y)).sum(), rtol=1e-4)
    with pytest.raises(ValueError, match="norm"):
        LocallyConnected2d(2, 4, 10, 3, norm=0.0)


def test_a_config_saved_with_one_filter_norm_resumes_as_the_same_run():
    from downpour.config import ConfigError, load_config
    from downpour.models.registry import resolve
    from downpour.resume_checks import check_resume

    old = load_config("cat-demo", ["model.filter_norm=1.0"])     # config.toml as written before per-stage norms
    check_resume(old, resolve(load_config("cat-demo", [])))      # the same run: no error
    with pytest.raises(ConfigError, match="model.filter_norm"):
        check_resume(old, resolve(load_config("cat-demo", ["model.filter_norm=[0.9,1.0]"])))


# --- the recurrent top stage (model.top = "gru") ---------------------------------------------------

def _gru_top():
    torch.manual_seed(0)
    return create_model("cat-demo", (1, 32, 32), tile=2, top="gru", top_hidden=16, top_code=12)


def test_a_gru_top_stage_reads_the_last_stage_and_is_the_networks_code():
    model = _gru_top()
    x = torch.randn(3, 1, 32, 32)
    assert model.n_stages == 3 and model.feature_layers()[-1] == "stage3/codes"
    assert model(x).shape == (3, 12) and torch.equal(model.features(x), model.features(x, "stage3/codes"))
    # the GRU reads stage 2's normalised 8x6x6 output row by row: 6 steps of 8·6 features
    assert (model.top.steps, model.top.feats) == (6, 48)
    assert torch.equal(model(x), model.top(model.features(x, "stage2")))


def test_features_at_reads_the_gru_top_and_the_stages_below_from_one_pass_as_features_does():
    model = _gru_top().eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        got = model.features_at(x, ["stage3/codes", "stage1/codes", "stage2"])
        for layer in got:
            assert torch.equal(got[layer], model.features(x, layer)), layer
        assert model.features_at(x, []) == {}
    with pytest.raises(KeyError, match="'stage4'"):
        model.features_at(x, ["stage1", "stage4"])


def test_the_top_stage_trains_alone_in_its_greedy_share_and_takes_only_the_reconstruction():
    model = _gru_top()
    objective = Objective.from_config({"reconstruction": 1.0, "pooled_l2": {"weight": 0.2, "eps": 1e-2}})
    model.set_stage(3)
    total, parts = objective(model.forward_train(Batch(torch.randn(4, 1, 32, 32))))
    assert list(parts) == ["stage3/reconstruction"]            # its code is not pooled: no TICA term
    total.backward()
    assert all(p.grad is not None for p in model.top.parameters())
    assert all(p.grad is None for p in model.stages.parameters())
    model.set_stage(None)
    _, parts = objective(model.forward_train(Batch(torch.randn(4, 1, 32, 32))))
    assert set(parts) == {"stage1/reconstruction", "stage1/pooled_l2", "stage2/reconstruction", "stage2/pooled_l2",
                          "stage3/reconstruction"}
    with pytest.raises(ValueError, match="model part 'stage3' takes only the cost terms"):   # it would never train
        Objective.from_config({"pooled_l2": 0.2})(model.forward_train(Batch(torch.randn(2, 1, 32, 32))))


def test_what_cannot_handle_the_top_stage_says_so():
    from downpour.errors import ConfigError
    from downpour.parallel import partition_model
    from downpour.plan.network import network_of
    from downpour.plan.run_config import plan_config

    from downpour.config import load_config

    with pytest.raises(ConfigError, match="model.top=gru: model.top = 'gru': the plan counts"):
        plan_config("cat-demo", ["model.top=gru"])       # refused naming the --set typed
    _, shape = plan_config("cat-demo", [])
    with pytest.raises(ConfigError, match="model.top = 'gru': the plan counts"):
        network_of(load_config("cat-demo", [("model.top", "gru")]), shape)    # and by network_of itself
    with pytest.raises(ValueError, match="recurrent top stage"):
        partition_model(create_model("cat-demo", (1, 32, 32), top="gru"), 2)


def test_weight_decay_on_fixed_norm_tied_filters_is_refused_and_allowed_on_free_ones():
    """weight_l2 saw the filters' free directions V (the layer computes with r·V/|V|): halving V quartered
    the logged term and changed nothing the network computes."""
    from downpour.config import ConfigError, load_config
    from downpour.preflight import check_run_config

    with pytest.raises(ConfigError, match=r"objective.weight_l2 on model 'cat-demo': stage\(s\) \[1, 2\] use"):
        check_run_config(load_config("cat-demo", [("objective.weight_l2", 1e-3)]))
    check_run_config(load_config("cat-demo", [("objective.weight_l2", 1e-3), ("model.filter_norm", 0.0)]))


def test_weight_decay_with_an_untied_decoder_decays_the_decoder_not_the_fixed_norm_filters():
    """With an untied decoder the run is allowed (the decoder's size matters), but the penalty still took
    the fixed-norm filters' V: a step on it alone moved the filters the network uses by 2e-8."""
    torch.manual_seed(0)
    model = create_model("cat-demo", (1, 32, 32), decoder="untied", maps=[4], kernels=[6], strides=[2], pools=[3],
                         pool_strides=[1], filter_norm=[1.0])
    stage = model.stages[0]
    (out,) = model.forward_train(Batch(torch.randn(2, 1, 32, 32))).values()
    assert [p.shape for p in out.weights] == [stage.decoder_weight.shape]
    _, parts = Objective.from_config({"weight_l2": 1.0})(model.forward_train(Batch(torch.randn(2, 1, 32, 32))))
    assert parts["stage1/weight_l2"] > 0
    free = create_model("cat-demo", (1, 32, 32), decoder="untied", maps=[4], kernels=[6], strides=[2], pools=[3],
                        pool_strides=[1], filter_norm=[0.0])
    (out,) = free.forward_train(Batch(torch.randn(2, 1, 32, 32))).values()
    assert len(out.weights) == len(free.stages[0].filter.weights) + 1     # free filters: both are decayed


@pytest.mark.parametrize("variant", ["tied", "untied decoder", "gru top", "partitioned", "partitioned untied decoder",
                                     "partitioned tiled untied decoder"])
def test_param_stages_names_exactly_the_parameters_each_greedy_stage_gives_a_gradient(variant):
    """What a parameter-server shard holds still when a push did not train a stage: a tensor named for another
    stage must be one whose grad stays None, and every tensor the stage's step gives a gradient must be its."""
    from downpour.parallel import partition_model
    from downpour.train.flat import ParamLayout

    torch.manual_seed(0)
    model = {"tied": lambda: create_model("cat-demo", (1, 32, 32), tile=0),
             "untied decoder": lambda: create_model("cat-demo", (1, 32, 32), tile=2, decoder="untied", filter_norm=(0.0,)),
             "gru top": _gru_top,
             "partitioned": lambda: partition_model(create_model("cat-demo", (1, 32, 32), tile=0), 2),
             "partitioned untied decoder": lambda: partition_model(create_model("cat-demo", (1, 32, 32), tile=0,
                                                                                decoder="untied"), 2),
             "partitioned tiled untied decoder": lambda: partition_model(create_model("cat-demo", (1, 32, 32), tile=16,
                                                                                      decoder="untied"), 2)}[variant]()
    objective = Objective.from_config({"reconstruction": 1.0})
    names, of = ParamLayout(model).names, model.param_stages()
    assert set(names) <= set(of)                                # every trainable tensor belongs to a stage
    for stage in range(1, model.n_stages + 1):
        model.zero_grad(set_to_none=True)
        model.set_stage(stage)
        objective(model.forward_train(Batch(torch.randn(2, 1, 32, 32))))[0].backward()
        named = dict(model.named_parameters())
        assert {n for n in names if named[n].grad is not None} == {n for n in names if of[n] == stage}
    assert len(set(of.values())) == model.n_stages


# --- a stage's LCN runs only where its output is read (since 2026-12-06) -----------------------------------

def _lcn_calls(model):
    """Per stage, how many times its LCN ran (forward hooks, kept on the model)."""
    calls = [0] * len(model.stages)
    for i, stage in enumerate(model.stages):
        stage.lcn.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def _as_before(model):
    """``model`` with every stage normalising on every call, as each did until 2026-12-06 (the old way)."""
    for stage in model.stages:
        stage.forward = lambda x, weight=None, normalise=True, stage=stage: type(stage).forward(stage, x, weight)
    return model


@pytest.mark.parametrize("top, steps", [(None, {1: [], 2: [0], None: [0]}),
                                        ("gru", {2: [0], 3: [0, 1], None: [0, 1]})])
def test_a_training_step_skips_the_lcn_nothing_reads_and_trains_bit_for_bit_as_before(top, steps):
    """``steps``: the stage trained (None: all, joint) -> the stages whose LCN a step runs (a GRU top reads the last)."""
    torch.manual_seed(0)
    fast = create_model("cat-demo", (1, 32, 32), **({"top": "gru", "top_hidden": 16, "top_code": 12} if top else {}))
    fast.frozen_cache = None                 # every step runs the frozen stages below: their LCN is read
    old = _as_before(copy.deepcopy(fast))
    calls = _lcn_calls(fast)
    objective = Objective.from_config({"reconstruction": 1.0, "pooled_l2": {"weight": 0.1, "eps": 1e-2}})
    x = torch.randn(4, 1, 32, 32)
    for stage, normalised in steps.items():
        calls[:] = [0] * len(calls)
        got = []
        for model in (fast, old):
            model.zero_grad(set_to_none=True)
            model.set_stage(stage)
            total, parts = objective(model.forward_train(Batch(x)))
            total.backward()
            got.append((total, parts, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
        (total, parts, grads), (total_old, parts_old, grads_old) = got
        assert [i for i, n in enumerate(calls) if n] == normalised, stage      # an LCN that fed nothing: not run
        assert torch.equal(total, total_old) and parts.keys() == parts_old.keys()
        assert all(torch.equal(parts[k], parts_old[k]) for k in parts)
        assert grads.keys() == grads_old.keys() and all(torch.equal(grads[n], grads_old[n]) for n in grads)


def test_features_of_codes_or_pooled_skip_their_stages_lcn_and_equal_the_old_way():
    torch.manual_seed(0)
    fast = create_model("cat-demo", (1, 32, 32)).eval()
    old = _as_before(copy.deepcopy(fast))
    calls = _lcn_calls(fast)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(fast.features(x, "stage2/codes"), old.features(x, "stage2/codes"))
        assert calls == [1, 0]
        layers = ["stage2/pooled", "stage1/codes", "stage1"]
        got, want = fast.features_at(x, layers), old.features_at(x, layers)
        assert calls == [2, 0] and all(torch.equal(got[k], want[k]) for k in layers)
        assert torch.equal(fast.features_at(x, ["stage2"])["stage2"], old.features(x, "stage2")) and calls == [3, 1]
