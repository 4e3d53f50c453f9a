"""Restricted Boltzmann machines: Bernoulli–Bernoulli and Gaussian–Bernoulli, trained with CD-k or
persistent CD (Hinton 2002; Tieleman 2008), through the shared objective like every other model.

The model never computes its own update. ``forward_train`` runs the Gibbs chain without gradients
and hands the ``contrastive_divergence`` term two free energies, of the data and of the chain's
negative samples; the gradient of their difference *is* the CD / PCD gradient
(ΔW ∝ ⟨h vᵀ⟩_data − ⟨h vᵀ⟩_model), so SGD, Adagrad or a parameter server apply it unchanged.
A sparsity target is the ``kl_sparsity`` term on the hidden probabilities (the codes).

Energies (σ the fixed visible standard deviation of the Gaussian units):

    Bernoulli:  F(v) = −bᵀv − Σ_j softplus(W_j·v + c_j)
    Gaussian:   F(v) = ½‖(v − b)/σ‖² − Σ_j softplus(W_j·v/σ + c_j)

Diagnostics logged with every step (``metric/`` parts, never added to the cost): the mean-field
reconstruction error ½‖v − E[v | p(h|v)]‖² and, for Bernoulli visibles, scikit-learn's stochastic
pseudo-likelihood estimate n_v · log σ(F(ṽ) − F(v)), ṽ = v with one random unit flipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.batch import Batch, Outputs
from downpour.errors import ConfigError
from downpour.models.base import FeatureModel
from downpour.models.registry import register_model
from downpour.settings import Section, setting



@dataclass
class RBMConfig(Section):
    section: ClassVar[str] = "model"
    hidden: int = setting(100, within="[1, inf)")   # hidden units
    visible: str = setting("bernoulli", choices=("bernoulli", "gaussian"))   # bernoulli: data in [0, 1] | gaussian: real data, best standardised
    sigma: float = setting(1.0, within="(0, inf)")  # gaussian visibles: fixed standard deviation
    k: int = setting(1, within="[1, inf)")          # Gibbs steps per update (CD-k / PCD-k)
    persistent: bool = False      # PCD: keep the chains between updates instead of restarting at the data
    chains: int = setting(64, within="[1, inf)")    # PCD: number of persistent chains (a buffer, saved with the model)
    sample_visible: bool = True   # sample the visibles in the chain (False: use their means)
    # weights start N(0, init_std²), biases at 0 (as scikit-learn). Not 0: every hidden unit would then get the same
    # CD gradient, −σ(W_j·v + c_j)·vᵀ, forever (rbm-digits, 200 steps at init_std = 0: 100 copies of one
    # filter, 2e-8 apart)
    init_std: float = setting(0.01, within="(0, inf)")

    def check_read(self) -> None:
        """Refuse an option this RBM would not read; the model checks this when it is built."""
        if self.visible == "bernoulli":
            self.refuse_unread(("sigma",), "Bernoulli visibles have no standard deviation (set model.visible = \"gaussian\")")
        if not self.persistent:
            self.refuse_unread(("chains",), "CD restarts its chains at the data (set model.persistent = true for PCD)")


class RBM(FeatureModel):
    """An RBM over flattened inputs of ``input_shape`` (C, H, W), or any shape whose product is n_v.

    Parameters: ``weight`` (hidden, n_v), ``visible_bias`` (n_v,), ``hidden_bias`` (hidden,);
    buffer ``chains_h`` (chains, hidden): the persistent chains' hidden states, used when
    ``config.persistent``.
    """

    config_class = RBMConfig

    def __init__(self, config: RBMConfig, input_shape: tuple[int, ...]):
        super().__init__()
        if config.sigma <= 0:
            raise ValueError(f"model.sigma must be positive, got {config.sigma}")
        config.check_read()
        self.config = config
        self.input_shape = tuple(input_shape)
        n_v = 1
        for d in self.input_shape:
            n_v *= d
        self.n_visible = n_v
        self.weight = nn.Parameter(config.init_std * torch.randn(config.hidden, n_v))
        self.visible_bias = nn.Parameter(torch.zeros(n_v))
        self.hidden_bias = nn.Parameter(torch.zeros(config.hidden))
        # Hidden states of the persistent chains; they start all-off, as scikit-learn's do.
        self.register_buffer("chains_h", torch.zeros(config.chains, config.hidden))

    @property
    def needs_unit_interval(self) -> bool:
        """Bernoulli visibles take only data in [0, 1] (preflight refuses a data config that leaves it)."""
        return self.config.visible == "bernoulli"

    @property
    def expects_standardised(self) -> bool:
        """Gaussian visibles of a fixed sigma fit data of that std (``models.data_fit`` warns where it is not)."""
        return self.config.visible == "gaussian"

    def tensor_layouts(self) -> dict[str, str]:
        """Each tensor's axes and use in words (model.safetensors' metadata)."""
        n_h, n_v, sigma = self.config.hidden, self.n_visible, self.config.sigma
        v = f"v / {sigma!r}" if self.config.visible == "gaussian" else "v"
        mean = (f"visible_bias + {sigma!r} * (h @ weight)" if self.config.visible == "gaussian"
                else "sigmoid(h @ weight + visible_bias)")
        return {"weight": (f"(hidden {n_h}, visibles {n_v}: a {list(self.input_shape)} sample v flattened row-major): "
                           f"code = p(h = 1 | v) = sigmoid({v} @ weight.T + hidden_bias)"),
                "visible_bias": f"(visibles {n_v}): E[v | h] = {mean} ({self.config.visible} visibles)",
                "hidden_bias": f"(hidden {n_h}): added before the sigmoid of p(h = 1 | v)",
                "chains_h": (f"(chains {self.config.chains}, hidden {n_h}): the persistent chains' hidden states, "
                             "training state only (PCD's negative samples start from them)")}

    # --- the conditionals -------------------------------------------------------------------
    def _scaled(self, v: Tensor) -> Tensor:
        return v / self.config.sigma if self.config.visible == "gaussian" else v

    def hidden_probs(self, v: Tensor) -> Tensor:
        """p(h = 1 | v): (B, n_v) -> (B, hidden)."""
        return torch.sigmoid(F.linear(self._scaled(v), self.weight, self.hidden_bias))

    def visible_mean(self, h: Tensor) -> Tensor:
        """E[v | h]: (B, hidden) -> (B, n_v); probabilities for Bernoulli, means for Gaussian units."""
        act = h @ self.weight
        if self.config.visible == "gaussian":
            return self.visible_bias + self.config.sigma * act
        return torch.sigmoid(act + self.visible_bias)

    def _sample_visible(self, h: Tensor) -> Tensor:
        mean = self.visible_mean(h)
        if not self.config.sample_visible:
            return mean
        if self.config.visible == "gaussian":
            return mean + self.config.sigma * torch.randn_like(mean)
        return torch.bernoulli(mean)

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v), (B, n_v) -> (B,); p(v) ∝ exp(−F(v))."""
        pre = F.linear(self._scaled(v), self.weight, self.hidden_bias)
        hidden_term = F.softplus(pre).sum(dim=1)
        if self.config.visible == "gaussian":
            return 0.5 * (((v - self.visible_bias) / self.config.sigma) ** 2).sum(dim=1) - hidden_term
        return -(v @ self.visible_bias) - hidden_term

    @torch.no_grad()
    def gibbs(self, h: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        """``steps`` rounds h -> v -> h from hidden states (N, hidden); returns (v (N, n_v), h samples (N, hidden))."""
        v = h.new_empty(h.shape[0], self.n_visible)
        for _ in range(steps):
            v = self._sample_visible(h)
            h = torch.bernoulli(self.hidden_probs(v))
        return v, h

    # --- the FeatureModel face --------------------------------------------------------------
    def _flatten(self, x: Tensor) -> Tensor:
        v = x.reshape(x.shape[0], -1)
        if v.shape[1] != self.n_visible:
            raise ValueError(f"RBM built for inputs of shape {self.input_shape} ({self.n_visible} values), "
                             f"got a batch of shape {tuple(x.shape)}")
        return v

    def forward(self, x: Tensor) -> Tensor:
        """Hidden probabilities p(h | x): (B, *input_shape) -> (B, hidden)."""
        return self.hidden_probs(self._flatten(x))

    def forward_train(self, batch: Batch) -> dict[str, Outputs]:
        v = self._flatten(batch.x)
        if self.config.visible == "bernoulli" and (v.min() < -1e-6 or v.max() > 1 + 1e-6):
            # a ConfigError (a DownpourError: the CLI says it in one line) that is still a ValueError, which
            # cost_fit's probe catches to try a batch in [0, 1]
            raise ConfigError(f"model.visible = \"bernoulli\": a Bernoulli RBM needs data in [0, 1], got values in "
                              f"[{float(v.min()):.3g}, {float(v.max()):.3g}]; keep the data in [0, 1] (data.normalize "
                              f"and data.whiten = \"none\") or set model.visible = \"gaussian\"",
                              key="model.visible")
        h_data = self.hidden_probs(v)   # (B, hidden), with gradient: the codes the sparsity term reads
        with torch.no_grad():
            if self.config.persistent:
                start = self.chains_h
            else:
                start = torch.bernoulli(h_data.detach())
            v_model, h_end = self.gibbs(start, self.config.k)
            if self.config.persistent and self.training:
                self.chains_h.copy_(h_end)
        extra = {
            "free_energy_data": self.free_energy(v),
            "free_energy_model": self.free_energy(v_model),   # v_model is detached: no gradient through the chain
            "metric/reconstruction_error": self._recon_error(v, h_data.detach()),
        }
        if self.config.visible == "bernoulli":
            extra["metric/pseudo_likelihood"] = self.pseudo_likelihood(v)
        return {"": Outputs(x=batch.x, codes=h_data, weights=(self.weight,), extra=extra)}

    @torch.no_grad()
    def _recon_error(self, v: Tensor, h: Tensor) -> Tensor:
        return 0.5 * ((self.visible_mean(h) - v) ** 2).sum(dim=1).mean()

    @torch.no_grad()
    def reconstruction_error(self, x: Tensor) -> Tensor:
        """Mean-field reconstruction error ½‖v − E[v | p(h|v)]‖², averaged over the batch; a scalar."""
        v = self._flatten(x)
        return self._recon_error(v, self.hidden_probs(v))

    @torch.no_grad()
    def pseudo_likelihood(self, x: Tensor, exact: bool = False) -> Tensor:
        """Mean log pseudo-likelihood Σ_i log p(v_i | v_−i) over the batch; a scalar. Bernoulli visibles only.

        By default scikit-learn's stochastic estimate (its ``score_samples``): one random unit per
        sample is flipped (v -> 1 − v) and n_v · log σ(F(ṽ) − F(v)) is unbiased for the sum.
        ``exact`` sums over every unit instead (n_v times the work).
        """
        if self.config.visible != "bernoulli":
            raise ValueError("the pseudo-likelihood estimate is defined here for Bernoulli visibles only")
        v = self._flatten(x)
        if exact:
            eye = torch.eye(self.n_visible, device=v.device, dtype=v.dtype)          # flip unit i: v + (1 − 2v)·e_i
            flipped = v.unsqueeze(0) + (1 - 2 * v).unsqueeze(0) * eye.unsqueeze(1)   # (n_v, B, n_v)
            f_flipped = self.free_energy(flipped.reshape(-1, self.n_visible)).reshape(self.n_visible, -1)
            return F.logsigmoid(f_flipped - self.free_energy(v)).sum(dim=0).mean()
        flip = torch.randint(0, self.n_visible, (v.shape[0],), device=v.device)
        rows = torch.arange(v.shape[0], device=v.device)
        v_flipped = v.clone()
        v_flipped[rows, flip] = 1 - v_flipped[rows, flip]
        return (self.n_visible * F.logsigmoid(self.free_energy(v_flipped) - self.free_energy(v))).mean()

    @torch.no_grad()
    def sample(self, n: int, steps: int = 1000) -> Tensor:
        """Fantasies: ``n`` chains run ``steps`` Gibbs rounds from random hidden states; (n, *input_shape)."""
        h = torch.bernoulli(torch.full((n, self.config.hidden), 0.5, device=self.weight.device, dtype=self.weight.dtype))
        v, h = self.gibbs(h, steps)
        return self.visible_mean(h).reshape(n, *self.input_shape)

    # (worded for any data: each unit spans the whole input, which is a whole digit for rbm-digits but a patch of a
    # larger image for grbm-patches, so not "whole-object templates" of every RBM)
    filters_what = ("the RBM's weights, one image per hidden unit: the pattern of visible units (pixels) that turns "
                    "it on, each spanning the whole input (no local receptive field): whole-digit templates when the "
                    "input is a whole small image (the 8x8 digits), patch filters (edges, blobs) when it is a patch "
                    "cut from larger images")

    def first_layer_filters(self) -> Tensor | None:
        """The weights as images, (hidden, C, H, W); None when the input is not an image."""
        if len(self.input_shape) != 3:
            return None
        return self.weight.detach().reshape(self.config.hidden, *self.input_shape)


_CD = {"contrastive_divergence": 1.0}

register_model("rbm-digits", RBM, description="Bernoulli RBM, 100 hidden, PCD-1 on 8x8 digits (as scikit-learn's BernoulliRBM)",
               objective=_CD, input_shape=(1, 8, 8), hidden=100, persistent=True, chains=32)
register_model("rbm-digits-cd", RBM, description="Bernoulli RBM, 100 hidden, CD-1 on 8x8 digits",
               objective=_CD, input_shape=(1, 8, 8), hidden=100)
register_model("rbm-sparse", RBM, description="Bernoulli RBM, 100 hidden, PCD-1 with a sparsity target of 0.05",
               objective={**_CD, "kl_sparsity": {"weight": 0.1, "rho": 0.05}}, input_shape=(1, 8, 8),
               hidden=100, persistent=True, chains=32)
register_model("grbm-patches", RBM, description="Gaussian-Bernoulli RBM, 64 hidden, CD-1 on standardised 8x8 patches",
               objective={**_CD, "weight_l2": 1e-4}, input_shape=(1, 8, 8), hidden=64, visible="gaussian",
               sample_visible=False)
