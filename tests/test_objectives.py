"""Every cost term against a hand computation on tiny tensors."""
import math

import pytest
import torch

from downpour.batch import Outputs
from downpour.errors import ConfigError
from downpour.objectives import Objective, make_term


def outputs(**kw):
    base = dict(x=torch.tensor([[1.0, 2.0], [0.0, -1.0]]), codes=torch.tensor([[0.2, 0.4], [0.6, 0.0]]))
    base.update(kw)
    return Outputs(**base)


def test_reconstruction_is_half_squared_error_per_sample_averaged():
    o = outputs(recon=torch.tensor([[1.0, 1.0], [2.0, -1.0]]))
    # sample 1: ½(0 + 1) = 0.5; sample 2: ½(4 + 0) = 2; mean 1.25
    assert make_term("reconstruction", 2.0)(o).item() == pytest.approx(2.5)


def test_reconstruction_weights_each_value_when_the_model_gives_weights():
    o = outputs(recon=torch.tensor([[1.0, 1.0], [2.0, -1.0]]), recon_weight=torch.tensor([[0.0, 3.0]]))
    # column 0 is ignored, column 1 counts three times: sample 1 ½·3·1 = 1.5, sample 2 ½·3·0 = 0; mean 0.75
    assert make_term("reconstruction", 1.0)(o).item() == pytest.approx(0.75)
    identity = outputs(recon_weight=torch.tensor([[0.0, 3.0]]), encode=lambda x: x, decode=lambda h: h)
    assert make_term("denoising", {"noise": 0.0})(identity).item() == 0.0


def test_l1_on_codes():
    assert make_term("l1", 1.0)(outputs()).item() == pytest.approx((0.6 + 0.6) / 2)


def test_weight_l2():
    w = (torch.tensor([1.0, 2.0]), torch.tensor([[3.0]]))
    assert make_term("weight_l2", 0.1)(outputs(weights=w)).item() == pytest.approx(0.1 * 0.5 * 14)


def test_kl_sparsity_by_hand():
    rho = 0.1
    rho_hat = [0.4, 0.2]  # mean of each code unit over the batch
    want = sum(rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r)) for r in rho_hat)
    term = make_term("kl_sparsity", {"weight": 3, "rho": rho})
    assert term(outputs()).item() == pytest.approx(3 * want, rel=1e-5)


def test_pooled_l2_tica():
    pooled = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    eps = 0.5
    want = ((math.sqrt(eps + 9) + math.sqrt(eps + 16)) + 2 * math.sqrt(eps)) / 2
    assert make_term("pooled_l2", {"eps": eps})(outputs(pooled=pooled)).item() == pytest.approx(want, rel=1e-6)


def test_per_sample_terms_sum_over_features_and_average_over_the_batch():
    # 3 samples x 2 features: summing over the batch axis and averaging over features gives other
    # numbers here, which the 2 x 2 inputs above cannot tell apart
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 1.0]])
    codes = torch.tensor([[0.2, -0.4], [0.6, 0.0], [1.0, 0.5]])
    o = Outputs(x=x, codes=codes, recon=torch.zeros(3, 2), pooled=codes)
    # ½(1 + 4) = 2.5, ½(0 + 1) = 0.5, ½(9 + 1) = 5; mean 8/3 (by features: 5 and 3, mean 4)
    assert make_term("reconstruction", 1.0)(o).item() == pytest.approx(8 / 3)
    # |h| per sample 0.6, 0.6, 1.5; mean 0.9 (by features: 1.8 and 0.9, mean 1.35)
    assert make_term("l1", 1.0)(o).item() == pytest.approx(0.9)
    assert make_term("pooled_l2", {"eps": 0.0})(o).item() == pytest.approx(0.9)   # sqrt(p²) = |p|


def test_denoising_with_identity_maps_is_half_the_corruption():
    torch.manual_seed(0)
    x = torch.ones(4, 10)
    o = Outputs(x=x, codes=x, encode=lambda t: t, decode=lambda t: t)
    value = make_term("denoising", {"noise": 1.0, "kind": "mask"})(o).item()
    assert value == pytest.approx(0.5 * 10)  # every entry zeroed: error 1 each


def test_contractive_exact_matches_sigmoid_formula():
    torch.manual_seed(0)
    w = torch.randn(3, 5)
    x = torch.randn(4, 5)
    encode = lambda t: torch.sigmoid(t @ w.t())  # noqa: E731
    h = encode(x)
    # ‖J‖²_F = Σ_j (h_j(1-h_j))² Σ_i W_ji²
    want = (((h * (1 - h)) ** 2) * (w ** 2).sum(dim=1)).sum(dim=1).mean()
    o = Outputs(x=x, codes=h, encode=encode)
    assert make_term("contractive", {"probes": 0})(o).item() == pytest.approx(want.item(), rel=1e-5)
    estimate = sum(make_term("contractive", {"probes": 64})(o).item() for _ in range(20)) / 20
    assert estimate == pytest.approx(want.item(), rel=0.1)


def test_cross_entropy():
    o = outputs(logits=torch.tensor([[0.0, 0.0], [0.0, 0.0]]), y=torch.tensor([0, 1]))
    assert make_term("cross_entropy", 1.0)(o).item() == pytest.approx(math.log(2))


def test_objective_names_parts_per_stage_and_sums_them():
    o = outputs(recon=torch.zeros(2, 2))
    obj = Objective.from_config({"reconstruction": 1.0, "l1": 0.5, "contractive": 0.0})
    total, parts = obj({"stage1": o, "stage2": o})
    assert set(parts) == {"stage1/reconstruction", "stage1/l1", "stage2/reconstruction", "stage2/l1"}
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()))


def test_bad_term_names_and_params_are_named():
    with pytest.raises(ConfigError, match="did you mean 'kl_sparsity'"):
        make_term("kl_sparsty", 1.0)
    with pytest.raises(ConfigError, match="'rhoo'"):
        make_term("kl_sparsity", {"rhoo": 0.1})
    with pytest.raises(TypeError, match="rho must be float"):
        make_term("kl_sparsity", {"rho": "a lot"})
    with pytest.raises(ValueError, match="needs 'pooled'"):
        make_term("pooled_l2", 1.0)(outputs(), "stage1")


@pytest.mark.parametrize("name, spec, message", [
    ("kl_sparsity", {"rho": 2}, r"kl_sparsity.rho must be in \(0, 1\), got 2"),
    ("kl_sparsity", {"rho": 0.0}, r"kl_sparsity.rho must be in \(0, 1\), got 0"),
    ("pooled_l2", {"eps": -0.1}, r"pooled_l2.eps must be a finite number >= 0, got -0.1"),
    ("denoising", {"kind": "salt"}, r"denoising.kind must be 'mask' or 'gaussian', got 'salt'"),
    ("denoising", {"noise": 1.5}, r"denoising.noise must be in \[0, 1\] with kind = 'mask'"),
    ("denoising", {"noise": -0.2, "kind": "gaussian"}, r"denoising.noise must be a finite number >= 0, got -0.2"),
    ("contractive", {"probes": -1}, r"contractive.probes must be an integer >= 0, got -1"),
    ("reconstruction", float("nan"), r"reconstruction.weight must be a finite number >= 0, got nan"),
    ("l1", -0.5, r"l1.weight must be a finite number >= 0, got -0.5"),
    ("weight_l2", {"weight": float("inf")}, r"weight_l2.weight must be a finite number >= 0, got inf"),
])
def test_out_of_range_term_parameters_are_refused_with_term_parameter_and_value(name, spec, message):
    with pytest.raises(ValueError, match=message):
        make_term(name, spec)


def test_in_range_edges_are_accepted():
    make_term("denoising", {"noise": 2.0, "kind": "gaussian"})   # a std may exceed 1
    make_term("denoising", {"noise": 1.0, "kind": "mask"})
    make_term("pooled_l2", {"eps": 0.0})
    make_term("contractive", {"probes": 0})


def test_a_bad_cost_parameter_in_a_run_config_fails_preflight():
    from downpour.config import ConfigError, load_config
    from downpour.preflight import check_run_config

    with pytest.raises(ConfigError, match=r"kl_sparsity.rho must be in \(0, 1\), got 2"):
        check_run_config(load_config("ufldl-sae", ["objective.kl_sparsity.rho=2"]))


def test_pooled_l2_without_eps_has_a_finite_gradient_at_a_zero_code():
    """eps = 0 took sqrt(p²), whose gradient at a code of exactly 0 (pool 1, a blank patch) is 0/0: NaN weights."""
    pooled = torch.tensor([[0.0, -2.0, 3.0]], requires_grad=True)
    term = make_term("pooled_l2", {"eps": 0.0})
    value = term.value(Outputs(x=pooled, codes=pooled, pooled=pooled))
    value.backward()
    assert value.item() == 5.0 and pooled.grad.tolist() == [[0.0, -1.0, 1.0]]
