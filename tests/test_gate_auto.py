"""Mode 'auto': the plain layer where gating cannot pay for its test (then a streak of untested
calls), the exact paths where it can; verdicts from the model scaled by what calls really took."""
import pytest
import torch

from downpour.layers import _gate_cost, gating
from downpour.layers._gate_auto import STREAK, AutoPolicy
from downpour.layers._gate_cost import CostModel
from downpour.layers.gating import VarianceGate
from downpour.layers.locally_connected import LocallyConnected2d


def _mostly_busy(seed=0):
    x = torch.rand(1, 1, 40, 48, generator=torch.Generator().manual_seed(seed))
    x[..., :12, :16] = 0.5                       # one flat corner: a few closed tiles
    return x


def _mostly_flat(seed=0):
    x = torch.full((1, 1, 40, 48), 0.5)
    x[..., 24:, 30:] = torch.rand(16, 18, generator=torch.Generator().manual_seed(seed))
    return x


def _use(monkeypatch, model):
    """Every layer shape has ``model`` as its measured cost model."""
    monkeypatch.setattr(gating, "cost_model", lambda key, probes, device: model)


DEAR = CostModel(t_dense=1.0, t_none=0.5, t_all=2.0, t_test=0.6)          # gating never pays
CHEAP = CostModel(t_dense=10.0, t_none=0.5, t_all=20.0, t_test=1.0)       # pays below ~37% open


def test_policy_tries_each_side_once_then_scales_the_model_by_what_calls_took():
    model = CostModel(t_dense=10.0, t_none=1.0, t_all=13.0, t_test=2.0)
    policy, shape = AutoPolicy(), (1, 1, 8, 8)
    assert policy.verdict(shape, model, "dense", 0.0, timed=True) == "ungated"     # nothing beats dense-and-zero
    assert policy.verdict(shape, model, "gated", 4.0, timed=True) == "gated"       # never tried: try it
    policy.observe("gate", 6.0)                                                    # as predicted (2 + 4)
    assert policy.verdict(shape, model, "gated", 4.0, timed=True) == "ungated"     # the plain side, once
    policy.observe("plain", 10.0)
    assert policy.verdict(shape, model, "gated", 4.0, timed=True) == "gated"       # 6 < 0.9 x 10
    assert policy.verdict(shape, model, "gated", 7.5, timed=True) == "ungated"     # 9.5 > 9: neither says it pays
    policy.observe("plain", 5.0)                       # the layer ran twice as fast as measured (best ratio kept)
    # the model says gating pays (6 < 9), the calls say not (6 > 0.9 x 5): gating is tried again
    assert policy.verdict(shape, model, "gated", 4.0, timed=True) == "gated" and policy.exploring
    policy.observe("gate", 2.0)                        # and this time gating ran three times as fast
    assert policy.verdict(shape, model, "gated", 4.0, timed=True) == "gated" and not policy.exploring   # 2 < 4.5
    assert policy.verdict((1, 1, 9, 9), model, "gated", 4.0, timed=False) == "gated"   # a new shape, untimed: the model


def test_a_retry_of_gating_keeps_the_streak_going():
    policy, shape = AutoPolicy(), (2,)
    for _ in range(3):
        policy.tested(shape, ungated=True, open_fraction=0.9)
    assert policy.length == policy.left == 4
    policy.exploring = True
    policy.tested(shape, ungated=False, open_fraction=0.9)
    assert policy.length == policy.left == 4 and not policy.exploring
    policy.tested(shape, ungated=False, open_fraction=0.2)                       # a verdict to gate ends it
    assert policy.length == policy.left == 0


def test_untimed_calls_are_not_observed():
    model = CostModel(t_dense=10.0, t_none=1.0, t_all=13.0, t_test=2.0)
    policy = AutoPolicy()
    policy.verdict((1,), model, "gated", 4.0, timed=False)
    policy.observe("plain", 100.0)
    assert policy.ratio == {} and policy.verdict((1,), model, "gated", 4.0, timed=False) == "gated"


@pytest.mark.parametrize("layer", [torch.nn.Conv2d(1, 3, 5), LocallyConnected2d(1, 3, (40, 48), 5)])
def test_plain_layer_where_gating_cannot_pay_for_its_test(monkeypatch, layer):
    _use(monkeypatch, DEAR)
    gate = VarianceGate(layer, 1e-3, block=4)
    x = _mostly_busy()
    with torch.no_grad():
        y = gate(x)
        assert torch.equal(y, layer(x))                   # the layer's own values, flat tiles included
        assert not torch.equal(y, VarianceGate(layer, 1e-3, block=4, mode="exact")(x))
    s = gate.last
    assert s.path == "ungated" and s.skipped_fraction == 0 and s.flops == s.flops_ungated and s.gate_flops > 0
    assert s.estimated_open == pytest.approx(gate._tile_mask(x).double().mean().item(), abs=0.05) and s.estimated_open < 1


def test_a_streak_skips_the_test_and_doubles_while_the_tests_agree(monkeypatch):
    _use(monkeypatch, DEAR)
    calls = []
    real = gating.open_tiles
    monkeypatch.setattr(gating, "open_tiles", lambda *a, **k: calls.append(1) or real(*a, **k))
    conv = torch.nn.Conv2d(1, 3, 5)
    gate = VarianceGate(conv, 1e-3, block=4)
    tested = []
    with torch.no_grad():
        for i in range(80):
            n = len(calls)
            gate(_mostly_busy(i))
            tested.append(len(calls) > n)
            assert gate.last.path == "ungated" and (gate.last.gate_flops > 0) == tested[-1]
    at = [i for i, t in enumerate(tested) if t]
    gaps = [j - i - 1 for i, j in zip(at, at[1:])]      # untested calls between two tests
    assert STREAK == 32 and gaps[:6] == [1, 2, 4, 8, 16, 32]
    with torch.no_grad():                                 # another input shape is tested at once
        n = len(calls)
        gate(torch.rand(1, 1, 36, 36))
        assert len(calls) == n + 1


def test_a_call_that_gates_ends_the_streak(monkeypatch):
    _use(monkeypatch, CHEAP)
    conv = torch.nn.Conv2d(1, 3, 5)
    gate = VarianceGate(conv, 1e-3, block=4)
    with torch.no_grad():
        gate(torch.rand(1, 1, 40, 48))                    # every tile open: plain, and a streak of 1
        assert gate.last.path == "ungated" and gate._auto.left == 1
        gate(_mostly_flat())                              # untested (the streak): plain
        assert gate.last.path == "ungated" and gate.last.gate_flops == 0
        y = gate(_mostly_flat())                          # tested: gating pays
        assert gate.last.path == "gated" and gate._auto.left == 0
        want = VarianceGate(conv, 1e-3, block=4, mode="gated")(_mostly_flat())
    assert torch.allclose(y, want, atol=1e-6) and gate.last.skipped_fraction > 0.5


def test_where_exact_zeroes_after_the_dense_layer_auto_runs_it_plain(monkeypatch):
    """Exact's 'dense' (the layer, then zeros) is auto's 'ungated' (the layer alone)."""
    _use(monkeypatch, CostModel(t_dense=10.0, t_none=0.5, t_all=30.0, t_test=0.1))   # gated at 90% open: 27
    conv = torch.nn.Conv2d(1, 3, 5)
    x = _mostly_busy()
    with torch.no_grad():
        exact, auto = VarianceGate(conv, 1e-3, block=4, mode="exact"), VarianceGate(conv, 1e-3, block=4)
        ye, ya = exact(x), auto(x)
    assert exact.last.path == "dense" and auto.last.path == "ungated" and torch.equal(ya, conv(x))
    assert torch.all(ye[~exact.open_mask(x)[:, None].expand_as(ye)] == 0)
    assert auto.last.estimated_open == pytest.approx(exact.last.open / exact.last.positions)


def test_the_gate_feeds_its_policy_what_each_side_took(monkeypatch):
    _use(monkeypatch, CostModel(t_dense=10.0, t_none=0.5, t_all=20.0, t_test=1.0))   # mostly flat: ~4 + 1 vs 10
    conv = torch.nn.Conv2d(1, 3, 5)
    gate = VarianceGate(conv, 1e-3, block=4)
    x = _mostly_flat()
    with torch.no_grad():
        gate(x)
        assert gate.last.path == "gated" and set(gate._auto.ratio) == {"gate"}       # tried first
        gate(x)
        assert gate.last.path == "ungated" and set(gate._auto.ratio) == {"gate", "plain"} and gate._auto.left == 1
        gate._auto.ratio = {"gate": 1.0, "plain": 1e-6}       # as if the plain layer had been nearly free
        gate(x)                                               # untested, the streak's
        assert gate.last.path == "ungated" and gate.last.gate_flops == 0
        gate(x)                                               # tested: the model says gate, the calls not: retried
        assert gate.last.path == "gated" and gate._auto.left == gate._auto.length == 1   # the streak goes on
        gate._auto.ratio = {"gate": 1e-6, "plain": 1.0}       # as if gating were nearly free
        gate._auto.left = 0
        gate(x)
        assert gate.last.path == "gated" and gate._auto.left == 0 and gate._auto.length == 0


def test_auto_with_measured_models_equals_the_layer_or_the_exact_gate():
    """Whatever the timings, auto's output is the plain layer's (path 'ungated') or the exact gate's."""
    _gate_cost.clear_cache()
    for layer in (torch.nn.Conv2d(1, 4, 5), LocallyConnected2d(1, 4, (40, 48), 5)):
        gate, exact = VarianceGate(layer, 1e-3, block=4), VarianceGate(layer, 1e-3, block=4, mode="exact")
        with torch.no_grad():
            for x in (_mostly_busy(1), _mostly_flat(1), _mostly_busy(2), torch.full((1, 1, 40, 48), 0.5)):
                y = gate(x)
                want = layer(x) if gate.last.path == "ungated" else exact(x)
                assert torch.allclose(y, want, atol=1e-5), gate.last.path
    _gate_cost.clear_cache()


def test_auto_is_differentiable_on_the_plain_path(monkeypatch):
    _use(monkeypatch, DEAR)
    layer = LocallyConnected2d(1, 3, (40, 48), 5)
    gate = VarianceGate(layer, 1e-3, block=4)
    for _ in range(2):                                    # tested, then untested
        layer.weight.grad = None
        gate(_mostly_busy()).square().sum().backward()
        assert gate.last.path == "ungated" and layer.weight.grad.abs().sum() > 0
