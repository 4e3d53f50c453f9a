"""Multi-resolution and attention front ends in front of one RICA stage (the essay's question 3).

``front="pyramid"``: the input's pyramid levels, stacked as channels on the input grid, feed one
locally connected RICA layer, so every filter sees every scale at its position.
``front="glimpse"``: a few foveated glimpses at the most contrasted places (sharp centre, blurry
surround) are the layer's inputs instead of the whole image; the codes of one image are its
glimpses' codes side by side. ``front="none"`` is the same stage on the raw input, the baseline.

The stage is :class:`~downpour.models.autoencoder.Autoencoder` (local encoder, tied decoder,
linear), trained on reconstructing the front's output, so every objective term applies as is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from downpour.batch import Batch, Outputs
from downpour.errors import ConfigError
from downpour.layers.gabor import FIRST_LAYER_KINDS, init_first_layer
from downpour.layers.pyramid import GlimpseFront, PyramidFront
from downpour.models.autoencoder import Autoencoder, AutoencoderConfig
from downpour.models.base import FeatureModel
from downpour.models.registry import register_model
from downpour.settings import Section, setting


@dataclass
class MultiResConfig(Section):
    section: ClassVar[str] = "model"
    front: str = setting("pyramid", choices=("pyramid", "glimpse", "none"))
    levels: int = setting(3, within="[1, inf)")           # pyramid: levels (1 = the input alone)
    pyramid: str = setting("laplacian", choices=("laplacian", "gaussian"))   # band-pass levels | blurred copies
    glimpses: int = setting(3, within="[1, inf)")         # glimpse: how many per image
    glimpse_size: int = setting(12, within="[1, inf)")    # glimpse: side of each crop, pixels
    glimpse_scales: int = setting(2, within="[1, inf)")   # glimpse: crops of side size * 2**s, s < scales, all pooled to size
    hidden: int = setting(4, within="[1, inf)")           # maps per position of the filter layer
    kernel_size: int = setting(6, within="[1, inf)")
    stride: int = setting(2, within="[1, inf)")
    tile: int = setting(0, within="[0, inf)")             # 0 = untied, 1 = convolution, t = tiled
    pool: int = setting(1, within="[1, inf)")             # TICA pooling neighbourhood (1 = RICA)
    first_layer: str = setting("learned", choices=FIRST_LAYER_KINDS)   # designed / random filters are frozen

    def check_read(self) -> None:
        """Refuse another front's options (they would be ignored); the model checks this when it is built."""
        pyramid, glimpse = ("levels", "pyramid"), ("glimpses", "glimpse_size", "glimpse_scales")
        if self.front != "pyramid":
            self.refuse_unread(pyramid, f"model.front = {self.front!r} has no pyramid")
        elif self.levels == 1:     # (a one-level pyramid is the input, laplacian or gaussian: bit for bit)
            self.refuse_unread(("pyramid",), "model.levels = 1 is the input alone, whatever the pyramid's kind")
        if self.front != "glimpse":
            self.refuse_unread(glimpse, f"model.front = {self.front!r} takes no glimpses")

    def check_shapes(self, input_shape: tuple[int, ...]) -> None:
        """Refuse a front or stage that does not fit ``input_shape`` (C, H, W), naming the key (the layers'
        own errors named a value, found on the first batch)."""
        h, w = input_shape[1:]
        side = min(h, w)
        for _ in range(1, self.levels if self.front == "pyramid" else 1):   # each level halves, rounded up
            if side < 2:
                raise ConfigError(f"model.levels = {self.levels}: the pyramid of a {h}x{w} input runs out of pixels "
                                  "before its last level; use fewer levels or larger inputs", key="model.levels")
            side = -(-side // 2)
        if self.front == "glimpse" and self.glimpse_size > min(h, w):
            raise ConfigError(f"model.glimpse_size = {self.glimpse_size} is larger than the {h}x{w} input",
                              key="model.glimpse_size")
        stage = (self.glimpse_size,) * 2 if self.front == "glimpse" else (h, w)
        if self.kernel_size > min(stage):
            raise ConfigError(f"model.kernel_size = {self.kernel_size} is larger than the stage's {stage[0]}x{stage[1]} "
                              f"input ({'a glimpse' if self.front == 'glimpse' else 'the image'})", key="model.kernel_size")


class MultiResNet(FeatureModel):
    """front -> one RICA stage. ``forward``: (B, C, H, W) -> (B, maps', Ho, Wo) codes, where
    maps' = hidden for the pyramid and glimpses * hidden for the glimpse front."""

    config_class = MultiResConfig

    def __init__(self, config: MultiResConfig, input_shape: tuple[int, ...]):
        super().__init__()
        config.check_read()
        config.check_shapes(tuple(input_shape))
        self.config = config
        self.input_shape = tuple(input_shape)
        if config.front == "pyramid":
            self.front: nn.Module | None = PyramidFront(config.levels, config.pyramid)
            stage_in = self.front.out_shape(self.input_shape)
        elif config.front == "glimpse":
            self.front = GlimpseFront(config.glimpses, config.glimpse_size, config.glimpse_scales)
            stage_in = self.front.out_shape(self.input_shape)[1:]
        else:
            self.front, stage_in = None, self.input_shape
        stage = AutoencoderConfig(hidden=config.hidden, encoder="local", kernel_size=config.kernel_size,
                                  stride=config.stride, tile=config.tile, activation="linear", output="linear",
                                  decoder="tied", bias=False, pool=config.pool)
        self.stage = Autoencoder(stage, stage_in)
        init_first_layer(self.stage.filter.weight, config.first_layer)

    def prepare(self, x: Tensor) -> Tensor:
        """The front's output, as the stage's batch: (B, C', H, W), or (B * glimpses, C', g, g)."""
        if self.front is None:
            return x
        z = self.front(x)
        return z.flatten(0, 1) if isinstance(self.front, GlimpseFront) else z

    def forward(self, x: Tensor) -> Tensor:
        h = self.stage.encode(self.prepare(x))
        return h.reshape(x.shape[0], -1, *h.shape[2:])  # glimpses' codes side by side as maps

    def forward_train(self, batch: Batch) -> dict[str, Outputs]:
        return self.stage.forward_train(Batch(self.prepare(batch.x).detach()))

    def first_layer_filters(self) -> Tensor:
        return self.stage.first_layer_filters()

    def tensor_layouts(self) -> dict[str, str]:
        """The stage's tensors in its own words (shape words first), then what the front made its input."""
        c, h, w = self.input_shape
        cfg = self.config
        if isinstance(self.front, PyramidFront):
            levels = ("level i = G_i - up(G_i+1) (band-pass), the last the coarsest G" if cfg.pyramid == "laplacian"
                      else "level i = G_i")
            seen = (f"channel c is level c // {c} (image channel c mod {c}) of the image's {cfg.levels}-level "
                    f"{cfg.pyramid} pyramid, {levels}, G_i the image blurred (5-tap binomial 1 4 6 4 1 / 16, "
                    f"reflected borders) and halved i times, each level resampled bilinearly back to {h}x{w}")
        elif isinstance(self.front, GlimpseFront):
            g = cfg.glimpse_size
            seen = (f"each of {cfg.glimpses} {g}x{g} glimpses of an image, centred on the most contrasted "
                    f"places (local variance over {g}x{g} windows, picked greedily, each suppressing a {g}-wide "
                    "square); "
                    f"channel c is scale c // {c} (image channel c mod {c}), a crop of side {g} * 2**scale "
                    f"round the centre, zero beyond the image, average-pooled to {g}x{g}; the model's codes are the "
                    f"glimpses' codes side by side (glimpse k's maps k*{cfg.hidden} ..)")
        else:
            seen = f"the {c}x{h}x{w} input as it is"
        return {f"stage.{name}": f"{text}; the stage's input (what it reconstructs): {seen}"
                for name, text in self.stage.tensor_layouts().items()}


_RICA = {"reconstruction": 1.0, "pooled_l2": {"weight": 0.05, "eps": 1e-4}}
register_model("pyramid-rica", MultiResNet, input_shape=(1, 32, 32), objective=_RICA,
               description="3-level Laplacian pyramid stacked as channels -> untied RICA (6x6 fields, 4 maps), 32x32 crops")
register_model("glimpse-rica", MultiResNet, input_shape=(1, 32, 32), objective=_RICA, front="glimpse",
               description="3 foveated 12x12 glimpses (2 scales) at the most contrasted places -> untied RICA, 32x32 crops")
register_model("multires-none", MultiResNet, input_shape=(1, 32, 32), objective=_RICA, front="none",
               description="the pyramid-rica stage on the raw input: the baseline for the multi-resolution fronts")
