"""The cat network (Le et al. 2012): stacked stages of filter -> L2 pooling -> local contrast normalisation.

Each stage is a locally connected, untied filter layer (``maps`` templates at every position), L2
pooling over a spatial neighbourhood within each map, and subtractive + divisive normalisation.
Each stage learns with its own reconstruction-TICA cost: ½‖W₂ W₁x − x‖² + λ Σ sqrt(ε + pool((W₁x)²)),
W₁ the encoder and W₂ the decoder (tied, W₂ = W₁ᵀ as in RICA, or untied as in the paper).

Why the defaults are what they are (measured on cat-demo by the diagnosis behind them; what the
whole recipe does to the filters and the face test is in docs/analysis.md, with commands):
- ``decoder="tied"`` with ``filter_norm``: with a free decoder and free filter sizes, the cost is
  lowest when the encoder projects onto low-variance directions and the decoder scales the small
  codes back up (stage-1 code std fell from ~1 to 0.33, encoder and decoder rows ended at cosine
  0.36): nothing forces structure. Tied filters at a fixed norm cannot play that game.
- the norm: with stride s, M maps and C input channels, the tied reconstruction WᵀWx multiplies the
  input by about M·‖w‖²/(C·s²) (Parseval: the average of Σ_m |ŵ_m(f)|² over frequencies). Unit-norm
  filters (gain 8) can never reconstruct and put their energy where the data has none
  (checkerboards); ‖w‖ = s·√(C/M) gives gain 1. ``filter_norm`` scales that radius (0 = free), for
  every stage or per stage: below 1 the filters cannot rebuild the input alone, so none is spare.
- ``recon="interior"``: an unpadded layer covers a crop's border with fewer filter positions than
  its centre, and the cheapest way to rebuild the border is a single-pixel spike in a filter's
  corner (a 3,000-step run learned nothing but those). Only pixels that every filter offset
  covers are reconstructed, scaled so the term keeps the whole crop's size.

``top="gru"`` adds a recurrent top stage (not the paper's design): a GRU autoencoder
(:class:`~downpour.models.rnn.RNNAutoencoder`, ``top_hidden`` state, ``top_code`` code) reading the
last stage's normalised output row by row, one state that summarises the whole crop, read out as
the code (layer ``stage{N+1}/codes``). It is a stage like the others (its input detached, a greedy
share of the steps) and takes only the reconstruction term: the code is not pooled.

``schedule="joint"`` in the trainer trains every stage at once on its own cost (a stage's input is
detached, so a stage never pushes gradients into the one below); ``"greedy"`` trains stage 1, then 2, ...
on the frozen stages' output, which ``frozen_cache`` (:mod:`downpour.models.frozen`) keeps per input row once
computed: a batch whose rows all recur skips them, bit for bit (rows held per batch shape, a shape checked once;
docs/benchmarks.md, frozen_cache).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

from downpour._names import plural
from downpour.batch import Batch, Outputs
from downpour.errors import ConfigError
from downpour.layers import LocallyConnected2d
from downpour.layers.gabor import FIRST_LAYER_KINDS, init_first_layer
from downpour.models.base import FeatureModel
from downpour.models.cat_stage import CatStage
from downpour.models.frozen import FrozenCache
from downpour.models.registry import register_model
from downpour.models.rnn import RNNAutoencoder, RNNConfig
from downpour.settings import Section, setting


@dataclass
class CatConfig(Section):
    section: ClassVar[str] = "model"
    maps: tuple[int, ...] = setting((8, 8), within="[1, inf)")           # templates per position, per stage
    kernels: tuple[int, ...] = setting((8, 5), within="[1, inf)")        # receptive field side, per stage
    strides: tuple[int, ...] = setting((1, 1), within="[1, inf)")        # filter step, per stage
    pools: tuple[int, ...] = setting((3, 3), within="[1, inf)")          # L2 pooling neighbourhood side, per stage
    pool_strides: tuple[int, ...] = setting((2, 1), within="[1, inf)")   # L2 pooling step, per stage
    lcn: int = setting(5, within="[1, inf)")  # LCN Gaussian window side (odd); each stage uses at most its map's side (the largest odd one within it)
    tile: int = setting(0, within="[0, inf)") # 0 = untied (the paper), 1 = convolution, t = tiled
    decoder: str = setting("tied", choices=("tied", "untied"))   # tied: WᵀWx (RICA) | untied: a free decoder (the paper)
    filter_norm: tuple[float, ...] = (1.0,)   # every filter at L2 norm filter_norm·stride·√(C/M) (see above); 0 = free; one for all stages or one per stage
    recon: str = setting("interior", choices=("interior", "all"))   # interior: reconstruct the pixels every filter offset covers
    first_layer: str = setting("learned", choices=FIRST_LAYER_KINDS)   # stage 1's filters; gabor and random are frozen
    top: str = setting("none", choices=("none", "gru"))   # gru: a recurrent top stage over the last stage (see above)
    top_hidden: int = setting(128, within="[1, inf)")     # its GRU state size
    top_code: int = setting(288, within="[1, inf)")       # its code size (288: the cat-demo network's top codes)
    # runs from before 2026-11-29 (2a87cdf) lack filter_norm and recon: their filters were free, the whole image rebuilt
    absent_meant: ClassVar[dict[str, Any]] = {"filter_norm": (0.0,), "recon": "all"}

    def __post_init__(self) -> None:
        if isinstance(self.filter_norm, (int, float)) and not isinstance(self.filter_norm, bool):
            self.filter_norm = (float(self.filter_norm),)   # one radius for every stage (and saved configs before per-stage)
        super().__post_init__()
        if not all(math.isfinite(r) and r >= 0 for r in self.filter_norm):
            raise ConfigError(f"model.filter_norm must be >= 0 and finite, got {list(self.filter_norm)}", key="model.filter_norm")

    def stage_filter_norm(self, stage: int) -> float:
        """The radius scale of stage ``stage`` (0-based): one value for every stage, or one per stage."""
        return self.filter_norm[0] if len(self.filter_norm) == 1 else self.filter_norm[stage]

    def check_read(self) -> None:
        """Refuse the top stage's keys without a top stage (nothing would read them)."""
        if self.top == "none":
            self.refuse_unread(("top_hidden", "top_code"), "there is no top stage (set model.top = \"gru\")")

    def check_shapes(self, input_shape: tuple[int, ...]) -> None:
        """Refuse stage lists that cannot be built on ``input_shape`` (C, H, W), naming the key: the
        model checks this when it is built and ``downpour plan``, which counts the network on paper
        without building it, before it counts."""
        n = len(self.maps)
        if n == 0:
            raise ConfigError("model.maps is empty: the cat network needs at least one stage", key="model.maps")
        self.check_read()
        lists = ["kernels", "strides", "pools", "pool_strides"]
        lists += ["filter_norm"] if len(self.filter_norm) != 1 else []   # (one value: every stage's)
        # (each list named with its values: "the per-stage lists have lengths {'kernels': 2, ...}" would not say which)
        if wrong := [f"model.{k} = {list(getattr(self, k))}" for k in lists if len(getattr(self, k)) != n]:
            raise ConfigError(f"model.maps = {list(self.maps)} gives {plural(n, 'stage')} but {', '.join(wrong)} "
                              f"{'does' if len(wrong) == 1 else 'do'} not: give every per-stage list "
                              f"{plural(n, 'entry', 'entries')} "
                              "(model.filter_norm may be one value for every stage)", key="model.maps")
        if self.lcn % 2 == 0:
            raise ConfigError(f"model.lcn (the LCN window side) must be odd, got {self.lcn!r}", key="model.lcn")
        h, w = input_shape[1:]
        for i, (k, s, q, u) in enumerate(zip(self.kernels, self.strides, self.pools, self.pool_strides), start=1):
            if k > min(h, w):
                raise ConfigError(f"model.kernels: stage {i}'s filter side {k} is larger than its {h}x{w} input; "
                                  "shrink kernels, strides or pools, or use larger inputs", key="model.kernels")
            h_in, w_in = h, w
            h, w = (h - k) // s + 1, (w - k) // s + 1
            if q > min(h, w):
                key = "model.strides" if s > 1 and q <= min(h_in, w_in) - k + 1 else "model.pools"   # the stride's fault
                step = f", stride {s}" if s > 1 else ""
                raise ConfigError(f"{key}: stage {i}'s pool {q} is larger than its filter output {h}x{w} (filter side "
                                  f"{k}{step} on {h_in}x{w_in}); shrink kernels{', strides' if s > 1 else ''} or pools",
                                  key=key)
            h, w = (h - q) // u + 1, (w - q) // u + 1


class CatNet(FeatureModel):
    """The stacked network. ``forward`` returns the top stage's normalised output (B, maps, Hp, Wp)."""

    config_class = CatConfig

    def __init__(self, config: CatConfig, input_shape: tuple[int, ...]):
        super().__init__()
        config.check_shapes(input_shape)
        n = len(config.maps)
        self.config = config
        self.input_shape = tuple(input_shape)
        shape = self.input_shape
        stages = []
        for i in range(n):
            stage = CatStage(shape[0], shape[1:], config.maps[i], config.kernels[i], config.strides[i],
                             config.pools[i], config.pool_strides[i], config.lcn, config.tile, config.decoder,
                             config.stage_filter_norm(i), config.recon)
            stages.append(stage)
            shape = stage.out_shape
        self.stages = nn.ModuleList(stages)
        self.top = (RNNAutoencoder(RNNConfig(hidden=config.top_hidden, code=config.top_code), shape)
                    if config.top == "gru" else None)
        init_first_layer(self.stages[0].filter.weight, config.first_layer)
        self.active_stage: int | None = None
        # a greedy step's frozen stages, kept per input row (downpour/models/frozen.py); None: run them every step
        self.frozen_cache: FrozenCache | None = FrozenCache()

    @property
    def n_stages(self) -> int:
        return len(self.stages) + (self.top is not None)

    def set_stage(self, stage: int | None) -> None:
        if stage is not None and not 1 <= stage <= self.n_stages:
            raise ValueError(f"stage {stage} out of range 1..{self.n_stages}")
        self.active_stage = stage
        if stage is None and self.frozen_cache is not None:
            self.frozen_cache.clear()        # nothing is frozen: free what it held

    def param_stages(self) -> dict[str, int]:
        """Stage i's parameters (``stages.<i-1>.*``; a partitioned stage's filters are every partition's
        ``weights.<j>`` for its untied stages, or ``shared_banks.<i-1>`` when tiled, :mod:`downpour.parallel.partition`,
        and its untied decoder's ``decoders.<j>`` or ``shared_decoders.<i-1>``) and the recurrent top's (the last
        stage)."""
        out = {f"stages.{i}.{name}": i + 1 for i, s in enumerate(self.stages) for name, _ in s.named_parameters()}
        out |= {f"top.{name}": self.n_stages for name, _ in (self.top.named_parameters() if self.top is not None else ())}
        for p, part in enumerate(getattr(self, "partitions", ())):
            out |= {f"partitions.{p}.weights.{j}": i + 1 for j, i in enumerate(part.stages)}
            out |= {f"partitions.{p}.decoders.{j}": i + 1 for j, i in enumerate(part.decoder_stages)}
        return out | {f"{group}.{i}": int(i) + 1 for group in ("shared_banks", "shared_decoders")
                      for i in getattr(self, group, {})}

    def tensor_layouts(self) -> dict[str, str]:
        """Each stage's filters and untied decoder, in words (model.safetensors' metadata); none for a partitioned
        stage (a run saves the merged model, downpour.parallel.merge_model; the blocks and shared banks a model-parallel
        run's server shards hold: downpour.parallel.partition.partition_layouts)."""
        plain = [(i, s) for i, s in enumerate(self.stages) if isinstance(s.filter, LocallyConnected2d)]
        out = {f"stages.{i}.filter.weight": f"stage {i + 1}'s filters: {s.filter.weight_layout()}" for i, s in plain}
        out |= {f"stages.{i}.decoder_weight": f"{s.filter.weight_axes()}: stage {i + 1}'s untied decoder, the "
                "filters' shape, used as stored (the transpose of the filter map)" for i, s in plain}
        top = self.top.tensor_layouts() if self.top is not None else {}
        return out | {f"top.{name}": f"the recurrent top stage, over the last stage's normalised maps: {text}"
                      for name, text in top.items()}

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)[2]
        return x if self.top is None else self.top(x)

    def forward_train(self, batch: Batch) -> dict[str, Outputs]:
        outputs: dict[str, Outputs] = {}
        x, done = batch.x, 0
        below = min((self.active_stage or 1) - 1, len(self.stages))   # the frozen stages under the trained one
        # the last stage a step runs normalises only for the recurrent top: its LCN output fed nothing (a step of the
        # main job ran it with autograd for no reader, 4-10% of the step: bench/pool_lcn.py --unread-lcn)
        feeds_top = self.top is not None and self.active_stage in (None, self.n_stages)
        last = min(self.active_stage or len(self.stages), len(self.stages))
        if below and self.frozen_cache is not None and self.training:
            x, done = self.frozen_cache(self._frozen_weights(below), x, lambda x: self._frozen(x, below)), below
        for i, stage in enumerate(self.stages[done:], start=done + 1):
            if self.active_stage is not None and i > self.active_stage:
                break
            x = x.detach()  # each stage learns from its own cost only
            train_this = self.active_stage in (None, i)
            with torch.set_grad_enabled(train_this and torch.is_grad_enabled()):
                # once per step: normalising the filters costs as much as an untied layer's forward
                # (bench/filter_norm.py), and the encoder and the tied decoder share them
                w = stage.filter.effective_weight()
                codes, pooled, normalised = stage(x, w, normalise=feeds_top or i < last)
                if train_this:
                    # filters used at a fixed norm have no size to decay (only their direction V's free length,
                    # which the network never sees): the penalty reads the decoder's weights alone then
                    free = stage.filter.weights if getattr(stage.filter, "norm", None) is None else ()
                    weights = (*free, *stage.decoder_weights)
                    outputs[f"stage{i}"] = Outputs(x=x, codes=codes, recon=stage.decode(codes, w), pooled=pooled,
                                                   recon_weight=stage.recon_weight, weights=weights,
                                                   encode=stage.filter, decode=stage.decode)
            x = normalised
        top = self.n_stages
        if self.top is not None and self.active_stage in (None, top):
            x = x.detach()
            codes = self.top.encode(x)
            weights = tuple(p for name, p in self.top.named_parameters() if "weight" in name)
            outputs[f"stage{top}"] = Outputs(x=x, codes=codes, recon=self.top.decode(codes), weights=weights,
                                             encode=self.top.encode, decode=self.top.decode, costs=("reconstruction",))
        return outputs

    def _frozen_weights(self, below: int) -> list[Tensor]:
        """Every tensor the first ``below`` stages compute with: their parameters and buffers, and their filters'
        ``weights`` (a partitioned filter's are the model's partitions', not its stage's own)."""
        return list({id(t): t for stage in self.stages[:below]
                     for t in (*stage.parameters(), *stage.buffers(), *stage.filter.weights)}.values())

    def _frozen(self, x: Tensor, below: int) -> Tensor:
        """The first ``below`` stages' normalised output, as :meth:`forward_train` runs them when frozen."""
        with torch.no_grad():
            for stage in self.stages[:below]:
                x = stage(x.detach(), stage.filter.effective_weight())[2]
        return x

    def feature_layers(self) -> list[str]:
        names = [f"stage{i}{part}" for i in range(1, len(self.stages) + 1) for part in ("/codes", "/pooled", "")]
        return names + ([f"stage{self.n_stages}/codes"] if self.top is not None else [])

    def features(self, x: Tensor, layer: str | None = None) -> Tensor:
        """``stageK`` (normalised output), ``stageK/pooled`` or ``stageK/codes`` (the recurrent top
        stage: its code only); the top stage when None."""
        layer = layer or (f"stage{self.n_stages}/codes" if self.top is not None else f"stage{len(self.stages)}")
        if layer not in self.feature_layers():
            raise KeyError(f"unknown layer {layer!r}; this model has {self.feature_layers()}")
        name, _, part = layer.partition("/")
        if self.top is not None and name == f"stage{self.n_stages}":
            return self(x)
        for i, stage in enumerate(self.stages, start=1):
            codes, pooled, x = stage(x, normalise=name != f"stage{i}" or part == "")     # (the layer's own LCN: read?)
            if name == f"stage{i}":
                return {"codes": codes, "pooled": pooled, "": x}[part]
        raise AssertionError("unreachable")

    def features_at(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """:meth:`features` of each of ``layers`` (names, no None), bit for bit, from one pass through the stages up
        to the highest one asked for: the face test reads all six layers of cat-demo, and a pass per layer ran
        stage 1 six times and stage 2 three (bench/layer_responses.py)."""
        unknown = [layer for layer in layers if layer not in self.feature_layers()]
        if unknown:
            raise KeyError(f"unknown layer {unknown[0]!r}; this model has {self.feature_layers()}")
        split = {layer: layer.partition("/") for layer in layers}      # "stage2/codes" -> ("stage2", "/", "codes")
        last = max((int(name[len("stage"):]) for name, _, _ in split.values()), default=0)
        read = {name for name, _, part in split.values() if part == ""}      # stages whose normalised output is asked
        out: dict[str, Tensor] = {}
        for i, stage in enumerate(self.stages[:last], start=1):
            codes, pooled, x = stage(x, normalise=i < last or f"stage{i}" in read)
            parts = {"codes": codes, "pooled": pooled, "": x}
            out.update({layer: parts[part] for layer, (name, _, part) in split.items() if name == f"stage{i}"})
        if self.top is not None and last == self.n_stages:            # the recurrent top stage's code
            out[f"stage{last}/codes"] = self.top(x)
        return {layer: out[layer] for layer in layers}

    def first_layer_filters(self) -> Tensor:
        return self.stages[0].filter.filters().detach()


register_model(
    "cat-demo", CatNet, input_shape=(1, 32, 32),
    description="the cat network scaled to 2 cores: 2 untied stages (8 maps, 8x8 then 5x5 fields), L2 pool, LCN, 32x32 crops",
    objective={"reconstruction": 1.0, "pooled_l2": {"weight": 0.1, "eps": 1e-2}},
)
register_model(
    "cat-3stage", CatNet, input_shape=(1, 64, 64),
    description="three stages like Le et al. 2012 (their fields 18x18, 8 maps), scaled to 64x64 inputs",
    objective={"reconstruction": 1.0, "pooled_l2": {"weight": 0.1, "eps": 1e-2}},
    maps=(8, 8, 8), kernels=(10, 6, 4), strides=(2, 1, 1), pools=(3, 3, 3), pool_strides=(1, 1, 1),
)
