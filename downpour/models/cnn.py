"""A small supervised convolutional classifier, and its locally connected twin: the supervised
reference the unsupervised feature learners are compared against, on the labelled built-in sets
(8x8 digits, 25x25 faces).

Every filter layer is a :class:`~downpour.layers.LocallyConnected2d` on the tiling dial, so the
two twins are the same network but for one config field: ``tile = 1`` shares one bank of filters
across the image (a convolution), ``tile = 0`` gives every position its own filters (untied, as in
the cat network), ``tile = t`` repeats t×t banks (a tiled CNN). Layers are "valid" (no padding) so
the twins see exactly the same receptive fields.

    x (B, C, H, W) -> [filter -> ReLU -> max-pool]* -> flatten -> fc (ReLU) = codes -> logits
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.batch import Batch, Outputs
from downpour.errors import ConfigError
from downpour.layers.locally_connected import LocallyConnected2d
from downpour.models.base import FeatureModel
from downpour.models.registry import register_model
from downpour.settings import Section, setting


@dataclass
class CNNConfig(Section):
    section: ClassVar[str] = "model"
    maps: tuple[int, ...] = setting((16, 32), within="[1, inf)")   # filter maps of each layer
    pools: tuple[int, ...] = setting((1, 2), within="[1, inf)")    # max-pool size after each layer (1 = none)
    kernel: int = setting(3, within="[1, inf)")     # square filter side, every layer
    tile: int = setting(1, within="[0, inf)")       # 1: convolution | 0: untied (locally connected) | t: t×t tiled banks
    hidden: int = setting(64, within="[1, inf)")    # units of the fully connected layer (the codes)
    classes: int = setting(10, within="[2, inf)")
    dropout: float = setting(0.0, within="[0, 1)")  # on the fc layer, during training


class CNN(FeatureModel):
    """Filter layers of ``maps`` (see :class:`CNNConfig`), then a fully connected ReLU layer of
    ``hidden`` units and a linear classifier. ``forward`` returns the fc codes (B, hidden);
    :meth:`logits` the class scores (B, classes).
    """

    config_class = CNNConfig
    supervised = True

    def __init__(self, config: CNNConfig, input_shape: tuple[int, ...]):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"CNN needs image input (C, H, W), got input_shape {tuple(input_shape)}")
        if len(config.maps) == 0 or len(config.maps) != len(config.pools):
            raise ConfigError(f"model.maps {config.maps} and model.pools {config.pools} must be non-empty and of equal length",
                              key="model.maps")
        self.config = config
        self.input_shape = tuple(input_shape)
        channels, h, w = self.input_shape
        self.filters = nn.ModuleList()
        for i, (maps, pool) in enumerate(zip(config.maps, config.pools), start=1):
            if min(h, w) < config.kernel:
                raise ConfigError(f"CNN on input {self.input_shape}: layer {i} sees {h}x{w}, smaller than "
                                  f"model.kernel = {config.kernel}; use fewer layers, smaller pools or a smaller kernel",
                                  key="model.kernel")
            self.filters.append(LocallyConnected2d(channels, maps, (h, w), config.kernel,
                                                   tile=None if config.tile == 0 else config.tile, bias=True))
            h, w = h - config.kernel + 1, w - config.kernel + 1
            if pool > 1:
                if min(h, w) < pool:
                    raise ConfigError(f"CNN on input {self.input_shape}: layer {i} output {h}x{w} is smaller than its "
                                      f"pool {pool} (model.pools = {list(config.pools)})", key="model.pools")
                h, w = h // pool, w // pool
            channels = maps
        self.fc = nn.Linear(channels * h * w, config.hidden)
        self.classifier = nn.Linear(config.hidden, config.classes)

    def tensor_layouts(self) -> dict[str, str]:
        """Each tensor's axes and use in words (model.safetensors' metadata)."""
        out: dict[str, str] = {}
        for i, (layer, pool) in enumerate(zip(self.filters, self.config.pools)):
            then = f"relu, then {pool}x{pool} max pool (stride {pool})" if pool > 1 else "relu"
            (th, tw), m = layer.tile_shape, layer.maps
            out[f"filters.{i}.weight"] = f"layer {i + 1}'s filters: {layer.weight_layout()}; + bias, then {then}"
            out[f"filters.{i}.bias"] = (f"(tile rows {th}, tile columns {tw}, maps {m}): added to map m at output "
                                        f"position (i, j) from bank (i mod {th}, j mod {tw})")
        n_in, hidden, classes = self.fc.in_features, self.config.hidden, self.config.classes
        return out | {"fc.weight": (f"(hidden {hidden}, inputs {n_in}: the last filter layer's (maps, rows, columns) "
                                    "output flattened row-major): codes = relu(x @ fc.weight.T + fc.bias)"),
                      "fc.bias": f"(hidden {hidden}): added before the relu of the codes",
                      "classifier.weight": (f"(classes {classes}, hidden {hidden}): class scores = codes @ "
                                            f"classifier.weight.T + classifier.bias (dropout {self.config.dropout!r} "
                                            "on the codes in training only)"),
                      "classifier.bias": f"(classes {classes}): added to the class scores"}

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"CNN built for inputs {self.input_shape}, got a batch of shape {tuple(x.shape)}")

    def _run(self, x: Tensor, stop: str | None = None) -> dict[str, Tensor]:
        """Every layer's activations up to ``stop``: conv1.. (B, M, h, w), fc (B, hidden), logits."""
        self._check(x)
        out: dict[str, Tensor] = {}
        for i, (layer, pool) in enumerate(zip(self.filters, self.config.pools), start=1):
            x = F.relu(layer(x))
            if pool > 1:
                x = F.max_pool2d(x, pool)
            out[f"conv{i}"] = x
            if stop == f"conv{i}":
                return out
        codes = F.relu(self.fc(x.flatten(1)))
        out["fc"] = codes
        if stop == "fc":
            return out
        out["logits"] = self.classifier(F.dropout(codes, self.config.dropout, self.training))
        return out

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> fc codes (B, hidden)."""
        return self._run(x, stop="fc")["fc"]

    def logits(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> class scores (B, classes)."""
        return self._run(x)["logits"]

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> predicted class (B,) int64, in eval mode."""
        was = self.training
        self.eval()
        try:
            return self.logits(x).argmax(dim=1)
        finally:
            self.train(was)

    def forward_train(self, batch: Batch) -> dict[str, Outputs]:
        if batch.y is None:
            raise ValueError("the CNN is a supervised model and needs labels; this data source gives none "
                             "(use a labelled source such as data.source = \"digits\")")
        acts = self._run(batch.x)
        if int(batch.y.max()) >= self.config.classes:
            raise ValueError(f"label {int(batch.y.max())} does not fit model.classes = {self.config.classes}")
        weights = tuple(layer.weight for layer in self.filters) + (self.fc.weight, self.classifier.weight)
        return {"": Outputs(x=batch.x, codes=acts["fc"], logits=acts["logits"], y=batch.y, weights=weights)}

    def feature_layers(self) -> list[str]:
        return [f"conv{i}" for i in range(1, len(self.filters) + 1)] + ["fc", "logits"]

    def analysis_layer(self) -> str:
        """``fc``: the learned codes. ``logits`` is a linear readout of them trained on the labels (on
        cnn-faces, the face label itself), so a "face unit" there is the training target, not a feature
        the network found."""
        return "fc"

    def features(self, x: Tensor, layer: str | None = None) -> Tensor:
        """Activations of one layer: conv<i> (B, M, h, w), fc (B, hidden) (the default), logits (B, classes)."""
        layer = layer or self.analysis_layer()
        if layer not in self.feature_layers():
            raise KeyError(f"unknown layer {layer!r}; this model has {self.feature_layers()}")
        return self._run(x, stop=layer)[layer]

    def first_layer_filters(self) -> Tensor:
        """First-layer filters (n_distinct, C, k, k): ``maps`` for a convolution, one bank per position when untied."""
        return self.filters[0].filters()


_CE = {"cross_entropy": 1.0}
_SUP = ("supervised",)

register_model("cnn-digits", CNN, description="supervised CNN on 8x8 digits: 3x3 conv 16 -> 3x3 conv 32 -> pool 2 -> fc 64 -> 10",
               objective=_CE, input_shape=(1, 8, 8), tags=_SUP)
register_model("lcn-digits", CNN, description="the locally connected twin of cnn-digits: untied 3x3 filters at every position",
               objective=_CE, input_shape=(1, 8, 8), tags=_SUP, tile=0)
register_model("cnn-faces", CNN, description="supervised CNN, faces vs non-faces at 25x25: 5x5 conv 16 -> pool 2 -> 5x5 conv 32 -> pool 2 -> fc 64 -> 2",
               objective=_CE, input_shape=(1, 25, 25), tags=_SUP, kernel=5, pools=(2, 2), classes=2)
register_model("lcn-faces", CNN, description="the locally connected twin of cnn-faces: untied 5x5 filters at every position",
               objective=_CE, input_shape=(1, 25, 25), tags=_SUP, kernel=5, pools=(2, 2), classes=2, tile=0)
