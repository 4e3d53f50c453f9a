"""RBM: exact free energy, one step of every variant, CD-1/PCD learning, the sparsity target, and
agreement with scikit-learn's BernoulliRBM on digits when configured alike."""
import itertools

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import BernoulliRBM

from downpour.batch import Batch
from downpour.cli import main
from downpour.errors import ConfigError
from downpour.data.builtin import digits
from downpour.models.rbm import RBM, RBMConfig
from downpour.models.registry import create_model, list_models
from downpour.objectives import Objective, is_metric
from downpour.train.step import train_step

RBM_MODELS = [e.name for e in list_models() if e.family is RBM]
CD = {"contrastive_divergence": 1.0}


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny nets: see conftest.py


@pytest.fixture(scope="module")
def split():
    """Digits in [0, 1], a fixed seeded split: 1300 train, 497 held out."""
    d = digits()
    order = torch.randperm(len(d.x), generator=torch.Generator().manual_seed(0))
    tr, te = order[:1300], order[1300:]
    return d.x[tr], d.y[tr], d.x[te], d.y[te]


def _train(model, spec, x, steps, batch=20, lr=0.05, seed=0):
    objective = Objective.from_config(spec)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        result = train_step(model, objective, Batch(x[idx]))
        opt.step()
    return result


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_is_exact(visible):
    """exp(-F(v)) equals Σ_h exp(-E(v, h)), by enumerating every hidden state of a tiny RBM."""
    torch.manual_seed(0)
    m = RBM(RBMConfig(hidden=3, visible=visible, sigma=0.7 if visible == "gaussian" else 1.0, init_std=0.5), (4,))
    with torch.no_grad():
        m.visible_bias.normal_()
        m.hidden_bias.normal_()
    v = torch.rand(5, 4) if visible == "gaussian" else torch.bernoulli(torch.full((5, 4), 0.5))
    hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))                     # (8, 3)
    s = 0.7 if visible == "gaussian" else 1.0
    if visible == "gaussian":
        vis = 0.5 * (((v - m.visible_bias) / s) ** 2).sum(1, keepdim=True)                # (5, 1)
    else:
        vis = -(v @ m.visible_bias).unsqueeze(1)
    energy = vis - hs @ m.hidden_bias - (v / s) @ m.weight.T @ hs.T                        # (5, 8)
    expected = -torch.logsumexp(-energy, dim=1)
    assert torch.allclose(m.free_energy(v), expected, atol=1e-5)


@pytest.mark.parametrize("name", RBM_MODELS)
def test_one_step_of_every_variant(name):
    torch.manual_seed(0)
    entry = [e for e in list_models() if e.name == name][0]
    model = create_model(name)
    x = torch.rand(8, *entry.input_shape)
    if model.config.visible == "gaussian":
        x = torch.randn(8, *entry.input_shape)
    result = train_step(model, Objective.from_config(entry.objective), Batch(x))
    assert np.isfinite(result.loss)
    assert result.loss == pytest.approx(sum(v for k, v in result.parts.items() if not is_metric(k)), rel=1e-5)
    assert "metric/reconstruction_error" in result.parts
    assert ("metric/pseudo_likelihood" in result.parts) == (model.config.visible == "bernoulli")
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    assert model(x).shape == (8, model.config.hidden)
    assert model.first_layer_filters().shape == (model.config.hidden, *entry.input_shape)


@pytest.mark.parametrize("persistent, k", [(False, 1), (True, 1), (False, 3)], ids=["cd1", "pcd1", "cd3"])
def test_training_reduces_reconstruction_error(split, persistent, k):
    xtr, _, xte, _ = split
    torch.manual_seed(0)
    m = RBM(RBMConfig(hidden=64, persistent=persistent, chains=20 if persistent else 64, k=k), (1, 8, 8))
    before = float(m.reconstruction_error(xte))
    chains_before = m.chains_h.clone()
    _train(m, CD, xtr, steps=250)
    after = float(m.reconstruction_error(xte))
    assert after < 0.6 * before, (before, after)
    # PCD advances its chains; CD never touches them.
    assert torch.equal(m.chains_h, chains_before) != persistent
    assert "chains_h" in m.state_dict()


def test_gaussian_bernoulli_learns_standardised_digits(split):
    xtr, _, xte, _ = split
    mean, std = xtr.mean(0), xtr.std(0) + 0.1
    torch.manual_seed(0)
    m = RBM(RBMConfig(hidden=64, visible="gaussian", sample_visible=False), (1, 8, 8))
    before = float(m.reconstruction_error((xte - mean) / std))
    _train(m, CD, (xtr - mean) / std, steps=250, lr=0.05)
    after = float(m.reconstruction_error((xte - mean) / std))
    assert after < 0.6 * before, (before, after)


def test_sparsity_target_pulls_mean_activation_to_rho(split):
    xtr, _, xte, _ = split
    means = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        m = RBM(RBMConfig(hidden=64), (1, 8, 8))
        spec = {**CD, "kl_sparsity": {"weight": weight, "rho": 0.05}} if weight else CD
        _train(m, spec, xtr, steps=200)
        with torch.no_grad():
            means[weight] = float(m(xte).mean())
    assert means[0.0] > 0.3
    assert abs(means[1.0] - 0.05) < 0.03, means


def test_a_zero_init_std_is_refused_as_every_hidden_unit_would_learn_one_filter():
    """At init_std = 0 every hidden unit has the same weights and gets the same CD gradient: 200 steps of
    rbm-digits leave 100 copies of one filter (2e-8 apart), so it is refused, not accepted as in "[0, inf)"."""
    with pytest.raises(ConfigError, match=r"model.init_std must be > 0, got 0"):
        create_model("rbm-digits", init_std=0.0)
    assert create_model("rbm-digits", init_std=1e-3).weight.std() > 0


def test_bernoulli_rbm_rejects_data_outside_unit_interval():
    m = create_model("rbm-digits")
    with pytest.raises(ConfigError, match=r"\[0, 1\].*visible"):
        m.forward_train(Batch(torch.full((2, 1, 8, 8), 16.0)))


@pytest.mark.parametrize("sets, named", [
    (["data.source=natural", "data.normalize=patch"], "--set data.normalize=patch: model 'rbm-digits' has Bernoulli "
     "visibles, which take data in [0, 1] only, and data.normalize = 'patch' (zero mean, unit std per sample) takes it out"),
    (["data.whiten=zca"], "--set data.whiten=zca: model 'rbm-digits' has Bernoulli visibles"),
    (["data.source=gaussian"], "--set data.source=gaussian: model 'rbm-digits' has Bernoulli visibles"),
])
def test_cli_says_in_one_line_that_a_bernoulli_rbm_needs_unit_interval_data(tmp_path, capsys, sets, named):
    """Patch-normalised, whitened or Gaussian data leave [0, 1]: the user's to fix, so one line naming the setting
    and exit 2, not a traceback from inside the training step, and before the run folder is made (not after
    config.toml, metrics.jsonl and the preprocessing are written, at the first batch)."""
    out = tmp_path / "r"
    assert main(["train", "--config", "rbm-digits", *[a for s in sets for a in ("--set", s)],
                 "--steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists()


def test_a_bernoulli_rbm_takes_whitened_data_that_ufldl_maps_back_into_the_unit_interval(tmp_path):
    assert main(["train", "--config", "rbm-digits", "--set", "data.whiten=zca", "--set", "data.normalize=ufldl",
                 "--steps", "2", "--out", str(tmp_path / "r")]) == 0


def test_kl_sparsity_on_a_bernoulli_rbm_passes_the_preflight_probe(tmp_path):
    """The KL check probes the model with a normal batch first: a Bernoulli RBM's refusal of it must stay a
    ValueError the probe skips, or rbm-sparse could not start."""
    assert main(["train", "--config", "rbm-digits", "--set", "model.name=rbm-sparse", "--steps", "2",
                 "--out", str(tmp_path / "r")]) == 0


def test_matches_scikit_learn_bernoulli_rbm_on_digits(split):
    """PCD-1, 64 hidden, lr 0.06, batch 10, 10 persistent chains, 10 epochs: scikit-learn's
    BernoulliRBM and ours, then a logistic-regression probe on the hidden probabilities of each."""
    xtr, ytr, xte, yte = split
    hidden, lr, batch, epochs = 64, 0.06, 10, 10
    flat_tr, flat_te = xtr.reshape(len(xtr), -1).numpy(), xte.reshape(len(xte), -1).numpy()

    sk = BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch, n_iter=epochs, random_state=0)
    sk.fit(flat_tr)

    torch.manual_seed(0)
    ours = RBM(RBMConfig(hidden=hidden, persistent=True, chains=batch), (1, 8, 8))
    objective = Objective.from_config(CD)
    opt = torch.optim.SGD(ours.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr) - batch + 1, batch):
            train_step(ours, objective, Batch(xtr[order[i:i + batch]]))
            opt.step()

    def probe(f_tr, f_te):
        return LogisticRegression(C=10.0, max_iter=1000).fit(f_tr, ytr.numpy()).score(f_te, yte.numpy())

    with torch.no_grad():
        acc_ours = probe(ours(xtr).numpy(), ours(xte).numpy())
        pl_ours = float(ours.pseudo_likelihood(xte, exact=True))
    acc_sk = probe(sk.transform(flat_tr), sk.transform(flat_te))
    pl_sk = float(_as_ours(sk, hidden).pseudo_likelihood(xte, exact=True))
    assert acc_sk > 0.8                                    # the reference itself learned something (~0.87)
    assert abs(acc_ours - acc_sk) < 0.03, (acc_ours, acc_sk)
    assert abs(pl_ours - pl_sk) < 1.0, (pl_ours, pl_sk)    # about -21 nats each


def _as_ours(sk: BernoulliRBM, hidden: int) -> RBM:
    """scikit-learn's fitted parameters in our RBM."""
    m = RBM(RBMConfig(hidden=hidden), (1, 8, 8))
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(sk.components_))
        m.hidden_bias.copy_(torch.from_numpy(sk.intercept_hidden_))
        m.visible_bias.copy_(torch.from_numpy(sk.intercept_visible_))
    return m


def test_pseudo_likelihood_matches_scikit_learn_and_its_exact_sum(split):
    """Same parameters: our stochastic estimate (the logged metric), scikit-learn's score_samples and
    the exact sum over every unit agree on average."""
    xtr, _, xte, _ = split
    sk = BernoulliRBM(n_components=32, learning_rate=0.06, batch_size=10, n_iter=3, random_state=0)
    sk.fit(xtr.reshape(len(xtr), -1).numpy())
    m = _as_ours(sk, 32)
    exact = float(m.pseudo_likelihood(xte, exact=True))
    torch.manual_seed(0)
    ours = np.mean([float(m.pseudo_likelihood(xte)) for _ in range(20)])
    theirs = np.mean([BernoulliRBM.score_samples(sk.set_params(random_state=seed), xte.reshape(len(xte), -1).numpy()).mean()
                      for seed in range(20)])
    assert abs(ours - exact) < 0.05 * abs(exact), (ours, exact)
    assert abs(theirs - exact) < 0.05 * abs(exact), (theirs, exact)


def test_fantasies_of_a_float64_rbm_are_float64():
    """The random hidden start was float32: a float64 model's matmul refused it."""
    model = create_model("rbm-digits").double()
    assert model.sample(2, steps=2).dtype == torch.float64
