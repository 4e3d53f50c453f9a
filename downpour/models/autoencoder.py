"""One feature-learning stage: a sparse autoencoder, RICA or reconstruction-TICA over a filter layer.

- sparse autoencoder (UFLDL): h = σ(Wx + b), x̂ = σ(W'h + b'); cost reconstruction + KL sparsity + weight decay.
- RICA (Le et al. 2011): h = Wx (linear), x̂ = Wᵀh (tied); cost reconstruction + λ Σ sqrt(ε + h²) (pooled_l2, pool 1).
- TICA: the same with h² pooled over neighbourhoods of units before the sqrt (pool > 1).

The filter layer is dense (``encoder="dense"``: every unit sees the whole patch) or locally connected
(``encoder="local"``: ``hidden`` maps at every position; ``tile`` 0 = untied, 1 = convolution, t = tiled).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.batch import Batch, Outputs
from downpour.errors import ConfigError
from downpour.layers import L2Pool2d, LocallyConnected2d
from downpour.layers.gabor import FIRST_LAYER_KINDS, init_first_layer
from downpour.models.base import FeatureModel
from downpour.models.registry import register_model
from downpour.settings import Section, setting

_ACTIVATIONS = {"sigmoid": torch.sigmoid, "linear": lambda t: t, "relu": F.relu, "tanh": torch.tanh}


@dataclass
class AutoencoderConfig(Section):
    section: ClassVar[str] = "model"
    hidden: int = setting(25, within="[1, inf)")             # dense: hidden units; local: maps per position
    encoder: str = setting("dense", choices=("dense", "local"))
    kernel_size: int = setting(8, within="[1, inf)")         # local: receptive field side
    stride: int = setting(1, within="[1, inf)")              # local: receptive field step
    tile: int = setting(0, within="[0, inf)")                # local: 0 = untied, 1 = convolution, t = weights repeat every t positions
    activation: str = setting("sigmoid", choices=("sigmoid", "linear", "relu", "tanh"))   # hidden non-linearity
    output: str = setting("sigmoid", choices=("sigmoid", "linear"))   # reconstruction non-linearity
    decoder: str = setting("untied", choices=("untied", "tied"))   # untied: its own weights | tied: the encoder's transpose (RICA)
    bias: bool = True
    pool: int = setting(1, within="[1, inf)")                # TICA pooling: dense, groups of `pool` adjacent units (circular); local, pool×pool positions
    init_scale: float = setting(0.0, within="[0, inf)")      # weight init range; 0 = UFLDL's sqrt(6 / (fan_in + fan_out + 1))
    first_layer: str = setting("learned", choices=FIRST_LAYER_KINDS)   # the encoder's filters; gabor and random are frozen

    def check_read(self) -> None:
        """Refuse the local encoder's keys on a dense one: a dense encoder has no receptive field to shape; and
        init_scale where no weight draws from it (a filled first layer and a tied decoder: bit for bit the same)."""
        if self.encoder == "dense":
            self.refuse_unread(("kernel_size", "stride", "tile"), "it applies only to encoder = 'local'; this "
                               "encoder is dense (set model.encoder = \"local\" or drop it)")
        if self.first_layer != "learned" and self.decoder == "tied":
            self.refuse_unread(("init_scale",), f"model.first_layer = {self.first_layer!r} fills the encoder's weights "
                               "and a tied decoder has none of its own")

    def check_encoder(self) -> None:
        """Refuse the local encoder's keys on a dense one (they would be ignored), a TICA group larger
        than the hidden layer (it would be clamped), and a local pool of even side (it has no centre: its
        pooled map came out one larger than the codes, border pools of one or two units); the model
        checks this when it is built."""
        if self.encoder != "dense":
            if self.pool > 1 and self.pool % 2 == 0:
                raise ConfigError(f"model.pool = {self.pool}: a local TICA neighbourhood of even side has no centre "
                                  f"unit (its pooled map would not line up with the codes); use {self.pool - 1} or "
                                  f"{self.pool + 1}", key="model.pool")
            return
        self.check_read()
        if self.pool > self.hidden:
            raise ConfigError(f"model.pool: a dense TICA group of {self.pool} units is larger than the "
                              f"{self.hidden} hidden units (model.hidden)", key="model.pool")

    def check_shapes(self, input_shape: tuple[int, ...]) -> None:
        """A local encoder's receptive field within the input, and its TICA pool within the code map (a
        larger one pooled the whole map, as no neighbourhood does); errors name the key."""
        if self.encoder == "dense":
            return
        h, w = input_shape[1:]
        if self.kernel_size > min(h, w):
            raise ConfigError(f"model.kernel_size = {self.kernel_size} is larger than the {h}x{w} input; use at most "
                              f"{min(h, w)}, or larger inputs (data.size)", key="model.kernel_size")
        ho, wo = (h - self.kernel_size) // self.stride + 1, (w - self.kernel_size) // self.stride + 1
        if self.pool > min(ho, wo):
            raise ConfigError(f"model.pool = {self.pool}: a local TICA neighbourhood larger than the {ho}x{wo} code map "
                              f"(model.kernel_size {self.kernel_size}, stride {self.stride} on {h}x{w} inputs)",
                              key="model.pool")


class Autoencoder(FeatureModel):
    """A one-stage autoencoder. ``forward`` returns the codes h: (B, hidden) dense, (B, hidden, Ho, Wo) local."""

    config_class = AutoencoderConfig

    def __init__(self, config: AutoencoderConfig, input_shape: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.input_shape = tuple(input_shape)  # (C, H, W)
        c, h, w = self.input_shape
        config.check_encoder()
        config.check_shapes(self.input_shape)
        if config.encoder == "dense":
            n_in = c * h * w
            bound = config.init_scale or math.sqrt(6.0 / (n_in + config.hidden + 1))
            self.weight = nn.Parameter(torch.empty(config.hidden, n_in).uniform_(-bound, bound))  # (hidden, C·H·W)
            self.decoder_weight = (nn.Parameter(torch.empty(config.hidden, n_in).uniform_(-bound, bound))
                                   if config.decoder == "untied" else None)
            self.filter = None
            init_first_layer(self.weight, config.first_layer, channels=c)
        else:
            self.filter = LocallyConnected2d(c, config.hidden, (h, w), config.kernel_size, config.stride,
                                             tile=config.tile or None)
            fan = c * config.kernel_size ** 2
            bound = config.init_scale or math.sqrt(6.0 / (fan + config.hidden + 1))
            with torch.no_grad():
                self.filter.weight.uniform_(-bound, bound)
            self.decoder_weight = (nn.Parameter(torch.empty_like(self.filter.weight).uniform_(-bound, bound))
                                   if config.decoder == "untied" else None)
            init_first_layer(self.filter.weight, config.first_layer)
        code_shape = self._code_shape()
        self.bias = nn.Parameter(torch.zeros(code_shape)) if config.bias else None
        self.decoder_bias = nn.Parameter(torch.zeros(self.input_shape)) if config.bias else None
        self.pool = self._make_pool()

    def _code_shape(self) -> tuple[int, ...]:
        if self.filter is None:
            return (self.config.hidden,)
        return (self.config.hidden, *self.filter.out_size)

    def _make_pool(self) -> nn.Module | None:
        if self.config.pool == 1:
            return None
        if self.filter is not None:
            return L2Pool2d(self.config.pool, stride=1, padding=self.config.pool // 2)
        # Dense TICA: unit j pools units j .. j+pool-1 (wrapping round), a fixed 0/1 matrix.
        n = self.config.hidden
        groups = torch.zeros(n, n)
        for j in range(n):
            groups[j, [(j + i) % n for i in range(self.config.pool)]] = 1.0
        self.register_buffer("groups", groups)  # (hidden, hidden)
        return None

    def tensor_layouts(self) -> dict[str, str]:
        """Each tensor's axes and use in words (model.safetensors' metadata), its shape words first."""
        act, out = self.config.activation, self.config.output
        plus = " + bias" if self.bias is not None else ""
        dec = "decoder_weight" if self.decoder_weight is not None else None
        if self.filter is None:
            name, n_in = "weight", self.weight.shape[1]
            axes = f"(hidden {self.config.hidden}, inputs {n_in}"
            enc = (f"{axes}: a {list(self.input_shape)} sample flattened row-major): unit j's encoder filter; "
                   f"code = {act}(x @ weight.T{plus})")
            back = f"code @ {dec or 'weight'}, reshaped to {list(self.input_shape)}"
            code_axes = f"(hidden {self.config.hidden})"
            untied = f"{axes}): the untied decoder, the encoder's shape"
        else:
            name = "filter.weight"
            enc = f"encoder filters: {self.filter.weight_layout()}; code = {act}(that{plus})"
            back = f"the filter map's transpose with {dec or 'the encoder filters'} applied to the code"
            code_axes = "(maps {}, rows {}, columns {})".format(*self._code_shape())
            untied = f"{self.filter.weight_axes()}: the untied decoder, the encoder filters' shape"
        recon = f"; reconstruction = {out}({back}{' + decoder_bias' if self.decoder_bias is not None else ''})"
        n = self.config.hidden
        pooled = (f"(pooled units {n}, units {n}): 1 where pooled unit j pools code unit i (i = j .. j + "
                  f"{self.config.pool - 1}, wrapping round), else 0; pooled unit j = sqrt(1e-8 + sum over i of "
                  "groups[j, i] * code_i**2)")
        image = "(channels {}, rows {}, columns {})".format(*self.input_shape)
        return {name: enc + recon, "decoder_weight": untied, "bias": f"{code_axes}: added to each code before {act}",
                "decoder_bias": f"{image}: added to each reconstruction before {out}", "groups": pooled}

    # --- the maps -----------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        if self.filter is None:
            pre = x.reshape(x.shape[0], -1) @ self.weight.t()  # (B, hidden)
        else:
            pre = self.filter(x)                                 # (B, hidden, Ho, Wo)
        if self.bias is not None:
            pre = pre + self.bias
        return _ACTIVATIONS[self.config.activation](pre)

    def decode(self, h: Tensor) -> Tensor:
        if self.filter is None:
            w = self.weight if self.decoder_weight is None else self.decoder_weight
            out = (h @ w).reshape(h.shape[0], *self.input_shape)
        else:
            out = self.filter.adjoint(h, self.decoder_weight)
        if self.decoder_bias is not None:
            out = out + self.decoder_bias
        return torch.sigmoid(out) if self.config.output == "sigmoid" else out

    def pooled(self, h: Tensor) -> Tensor:
        """sqrt of the pooled energy: |h| without pooling, sqrt(Σ_group h²) with it."""
        if self.config.pool == 1:
            return h
        if self.filter is not None:
            return self.pool(h)
        return torch.sqrt(1e-8 + (h ** 2) @ self.groups.t())

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x)

    def forward_train(self, batch: Batch) -> dict[str, Outputs]:
        h = self.encode(batch.x)
        # the weights a penalty (weight_l2) may shrink: not a frozen first layer (model.first_layer = "gabor" or
        # "random"), whose ½ΣW² is a constant in the logged part (ufldl-sae, gabor: 0.00125 of 0.0030 at the start)
        weights = tuple(w for w in (self.weight if self.filter is None else self.filter.weight, self.decoder_weight)
                        if w is not None and w.requires_grad)
        return {"": Outputs(x=batch.x, codes=h, recon=self.decode(h), pooled=self.pooled(h), weights=weights,
                            encode=self.encode, decode=self.decode)}

    def feature_layers(self) -> list[str]:
        return ["codes", "pooled"] if self.config.pool > 1 else ["codes"]

    def features(self, x: Tensor, layer: str | None = None) -> Tensor:
        if layer in (None, "codes"):
            return self.encode(x)
        if layer == "pooled" and self.config.pool > 1:
            return self.pooled(self.encode(x))
        raise KeyError(f"unknown layer {layer!r}; this model has {self.feature_layers()}")

    def first_layer_filters(self) -> Tensor:
        if self.filter is None:
            return self.weight.detach().reshape(self.config.hidden, *self.input_shape)
        return self.filter.filters().detach()


register_model(
    "ufldl-sae", Autoencoder, input_shape=(1, 8, 8),
    description="UFLDL sparse autoencoder: 8x8 natural patches, 25 sigmoid units, rho=0.01, beta=3, lambda=1e-4",
    objective={"reconstruction": 1.0, "kl_sparsity": {"weight": 3.0, "rho": 0.01}, "weight_l2": 1e-4},
    hidden=25,
)
register_model(
    "rica-8x8", Autoencoder, input_shape=(1, 8, 8),
    description="RICA (Le et al. 2011): linear codes, tied decoder, L1-like sparsity, 8x8 whitened patches",
    objective={"reconstruction": 1.0, "pooled_l2": {"weight": 0.1, "eps": 1e-4}},
    hidden=64, activation="linear", output="linear", decoder="tied", bias=False,
)
register_model(
    "tica-8x8", Autoencoder, input_shape=(1, 8, 8),
    description="reconstruction TICA: RICA with squared codes pooled over groups of 4 adjacent units",
    objective={"reconstruction": 1.0, "pooled_l2": {"weight": 0.1, "eps": 1e-4}},
    hidden=64, activation="linear", output="linear", decoder="tied", bias=False, pool=4,
)
register_model(
    "rica-local", Autoencoder, input_shape=(1, 16, 16),
    description="RICA over an untied locally connected layer: 6x6 fields, 4 maps per position, 16x16 crops",
    objective={"reconstruction": 1.0, "pooled_l2": {"weight": 0.05, "eps": 1e-4}},
    hidden=4, encoder="local", kernel_size=6, stride=2, activation="linear", output="linear", decoder="tied",
    bias=False,
)
