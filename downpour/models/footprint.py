"""A model's footprint: parameters, memory and FLOPs of any registered model, layer by layer.

(Footprint, not cost: "cost" is the loss in this project, :mod:`downpour.objectives`.)

The essay's second hard problem: untied (locally connected) templates cost huge memory, shared
(convolutional) ones cost less but need more maps. This module counts, for one sample through
``model.forward`` (the inference path), per layer that runs:

- ``params`` (trainable) and ``frozen`` parameter counts, and their bytes;
- ``act_bytes``: the layer's output per sample (what autograd keeps for the backward pass);
- ``flops_fwd``: analytic counts for the known layer types (a multiply-add is 2 FLOPs), torch's
  own FLOP counter (``torch.utils.flop_counter``, matmuls and convolutions) for any other layer;
- ``flops_bwd``: forward x (1 if the layer's input needs a gradient + 1 if it has trainable
  weights): the first layer needs no input gradient, and a frozen (Gabor / random) first layer
  needs no backward at all, nor do the parameter-free layers above it until the next trained one.

    rows = footprint_table("cat-demo", tile=1)     # list of dicts, the last one the "total"
    print(format_table(rows))
    print(format_table(compare_tilings("cat-demo")))   # untied vs tiled vs tied, totals only

The total row also carries torch's own FLOP count of a forward and a backward pass
(``torch_flops_fwd``/``torch_flops_bwd``), a cross-check of the analytic formulas that also covers
parameters held outside any layer (e.g. the dense autoencoder's weight matrix).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from downpour.config import ConfigError
from downpour.layers import L2Pool2d, LocalContrastNorm2d, LocallyConnected2d
from downpour.models.base import FeatureModel
from downpour.models.registry import create_model, model_entry

__all__ = ["compare_tilings", "create_checked", "footprint_report", "footprint_table", "format_table", "layer_flops",
           "model_footprint", "tiling_words"]

_COLUMNS = ("layer", "type", "out_shape", "params", "frozen", "param_bytes", "act_bytes", "flops_fwd", "flops_bwd")


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def layer_flops(module: nn.Module, inp: Tensor, out: Tensor) -> int | None:
    """Forward FLOPs of one call for one row of its batch; None if the type is unknown."""
    o = _numel(tuple(out.shape[1:]))
    if isinstance(module, LocallyConnected2d):
        # Every output value is a C*k*k dot product, whatever the tiling: tiling changes memory, not FLOPs.
        macs = module.in_channels * module.kernel_size ** 2
        return o * (2 * macs + (1 if module.bias is not None else 0))
    if isinstance(module, nn.Conv2d):
        macs = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return o * (2 * macs + (1 if module.bias is not None else 0))
    if isinstance(module, nn.Linear):
        return o * (2 * module.in_features + (1 if module.bias is not None else 0))
    if isinstance(module, L2Pool2d):
        # square every input, sum k*k*maps_pool squares per output (weighted: a multiply-add each), sqrt
        per = module.kernel_size ** 2 * module.maps_pool * (2 if module.learnable else 1)
        return _numel(tuple(inp.shape[1:])) + o * (per + 2)
    if isinstance(module, LocalContrastNorm2d):
        # the recipe's arithmetic: two window sums over all channels (x, then v²) of k*k*C multiply-adds per
        # position, plus ~6 elementwise ops. The layer computes each as a channel mean times two banded matrices
        # (layers/lcn.py: faster, not fewer FLOPs on large maps, most of them on the band's zeros); a count of
        # the network's work, like the tiled layer's, does not follow the implementation
        c, h, w = inp.shape[1:]
        return 2 * (2 * c * module.kernel_size ** 2) * h * w + 6 * c * h * w
    if isinstance(module, (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.Identity, nn.Dropout, nn.Flatten)):
        return 0 if isinstance(module, (nn.Identity, nn.Flatten, nn.Dropout)) else o
    return None


def _param_counts(module: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters(recurse=False) if not p.requires_grad)
    return trainable, frozen


def _first_tensor(t: Any) -> Tensor | None:
    if isinstance(t, Tensor):
        return t
    if isinstance(t, (tuple, list)):
        for item in t:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def create_checked(name: str, input_shape: tuple[int, ...] | None, options: dict[str, Any]) -> FeatureModel:
    """``create_model``, with an option the model's constructor refuses (a ValueError or TypeError naming
    it) reported as the ConfigError it is: these options come from ``--set model.KEY=VALUE``."""
    try:
        return create_model(name, input_shape, **options)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model {name!r}: {err}") from None


def _weights_in_graph(module: nn.Module, out: Tensor) -> bool:
    """Whether this call's ``out`` depends on a trainable weight matrix of ``module``: the ones whose gradient
    a backward pass computes as a product (a bias's is a sum: torch's counter counts none). Owning one is not
    enough: ufldl-sae keeps its decoder's matrix beside a frozen (gabor, random) encoder's, and counting by owning
    would give its forward 3.2k backward FLOPs where torch's own count, and the docs, say 0."""
    weights = [p for p in module.parameters(recurse=False) if p.requires_grad and p.dim() > 1]
    if not weights or not out.requires_grad:
        return False
    grads = torch.autograd.grad(out, weights, torch.ones_like(out), retain_graph=True, allow_unused=True)
    return any(g is not None for g in grads)


def _sample(input_shape: tuple[int, ...], seed: int = 0) -> Tensor:
    return torch.rand((1, *input_shape), generator=torch.Generator().manual_seed(seed))


def footprint_table(name: str, input_shape: tuple[int, ...] | None = None, **options: Any) -> list[dict[str, Any]]:
    """Per-layer footprint of registered model ``name`` (with config ``options``), one sample, float32.

    Parameters outside the layers that ran (a model's own biases, decoders used only in training)
    are one "(params outside these layers)" row.

    Returns one dict per layer call in execution order (keys: layer, type, out_shape, params,
    frozen, param_bytes, act_bytes, flops_fwd, flops_bwd, and ``measured`` when the FLOPs come from
    torch's counter), then a ``total`` row that also has torch_flops_fwd / torch_flops_bwd.
    """
    return model_footprint(create_checked(name, input_shape, options), name, input_shape)


def model_footprint(model: FeatureModel, name: str, input_shape: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """:func:`footprint_table` of a model already built (as registered model ``name``); its parameters' ``.grad``
    are left set by the backward it runs."""
    shape = tuple(input_shape or model_entry(name).input_shape)
    names = {m: n for n, m in model.named_modules()}
    calls: list[tuple[nn.Module, Tensor, Tensor, bool]] = []   # (layer, input, output, input needs a gradient)
    live: list[Tensor] = []                                      # each call's output, still in the graph

    def hook(module: nn.Module, args: tuple, out: Any) -> None:
        inp, o = _first_tensor(args), _first_tensor(out)
        if inp is not None and o is not None:
            calls.append((module, inp.detach(), o.detach(), inp.requires_grad))
            live.append(o)

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    x = _sample(shape)
    try:
        with FlopCounterMode(display=False) as fwd:
            y = model(x)
    finally:
        for h in handles:
            h.remove()
    root = type(model).__name__  # torch's counter names modules "<RootClass>.<path>"; ours are "<path>" ("" for the root)
    measured = {("" if k == root else k.removeprefix(root + ".")): sum(v.values()) for k, v in fwd.get_flop_counts().items()}
    weighed = [_weights_in_graph(module, o) for (module, *_), o in zip(calls, live)]   # before backward frees the graph
    bwd_total = 0
    if y.requires_grad:
        with FlopCounterMode(display=False) as bwd:
            y.float().sum().backward()
        bwd_total = sum(bwd.get_flop_counts().get("Global", {}).values())

    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for (module, inp, out, inp_grad), grad_weights in zip(calls, weighed):
        name_ = names.get(module, type(module).__name__)
        trainable, frozen = _param_counts(module) if id(module) not in seen else (0, 0)  # count a reused layer once
        seen.add(id(module))
        # One sample may reach a layer as several rows (a glimpse front folds its glimpses into the batch):
        # the analytic counts are per row, so the sample's cost is that times the rows.
        rows_per_sample = out.shape[0] if out.dim() else 1
        flops = layer_flops(module, inp, out)
        flops = None if flops is None else flops * rows_per_sample
        row = {"layer": name_, "type": type(module).__name__, "out_shape": tuple(out.shape[1:]),
               "params": trainable, "frozen": frozen, "param_bytes": 4 * (trainable + frozen),
               "act_bytes": out.element_size() * out.numel()}
        if flops is None:
            flops, row["measured"] = measured.get(name_, 0), True
        # a backward pass computes the input's gradient where it needs one (and a recurrent layer always does:
        # its hidden state carries the gradient back through time, 229k against torch's 401k for rnn-rows without
        # it), and the weight matrices' (_weights_in_graph)
        grad_input = inp_grad or isinstance(module, torch.nn.RNNBase)
        row["flops_fwd"], row["flops_bwd"] = flops, flops * (int(grad_input) + int(grad_weights))
        row["layer"] = name_ or "(model)"
        rows.append(row)
    # Parameters not owned by any layer that ran (a model's own weight matrices, unused decoders).
    counted = {id(p) for module, *_ in calls for p in module.parameters(recurse=False)}
    loose_t = sum(p.numel() for p in model.parameters() if id(p) not in counted and p.requires_grad)
    loose_f = sum(p.numel() for p in model.parameters() if id(p) not in counted and not p.requires_grad)
    if loose_t or loose_f:
        rows.append({"layer": "(params outside these layers)", "type": "-", "out_shape": (), "params": loose_t, "frozen": loose_f,
                     "param_bytes": 4 * (loose_t + loose_f), "act_bytes": 0, "flops_fwd": 0, "flops_bwd": 0})
    total = {k: sum(r[k] for r in rows) for k in ("params", "frozen", "param_bytes", "act_bytes", "flops_fwd", "flops_bwd")}
    rows.append({"layer": "total", "type": name, "out_shape": tuple(y.shape[1:]), **total,
                 "torch_flops_fwd": measured.get("Global", 0), "torch_flops_bwd": bwd_total})
    return rows


def compare_tilings(name: str, tiles: tuple[int, ...] = (0, 4, 1), input_shape: tuple[int, ...] | None = None,
                    **options: Any) -> list[dict[str, Any]]:
    """The total row of ``footprint_table`` for each ``tile`` (0 = untied, 1 = convolution, t = tiled)."""
    config = model_entry(name).config
    if "tile" not in {f.name for f in dataclasses.fields(config)}:
        raise ConfigError(f"model {name!r} has no 'tile' option; untied/tiled/tied variants need one")
    out = []
    for t in tiles:
        total = footprint_table(name, input_shape, **{**options, "tile": t})[-1]
        out.append({**total, "layer": tiling_words(t)})
    return out


def _human(n: int | float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of ``footprint_table`` / ``compare_tilings`` rows (bytes and FLOPs in k/M/G)."""
    header = ("layer", "type", "output", "params", "frozen", "param mem", "act/sample", "FLOPs fwd", "FLOPs bwd")
    body = []
    for r in rows:
        shape = "x".join(str(d) for d in r["out_shape"]) or "-"
        flops_mark = "*" if r.get("measured") else ""
        body.append((r["layer"], r["type"], shape, _human(r["params"]), _human(r["frozen"]), _human(r["param_bytes"]) + "B",
                     _human(r["act_bytes"]) + "B", _human(r["flops_fwd"]) + flops_mark, _human(r["flops_bwd"]) + flops_mark))
    widths = [max(len(str(row[i])) for row in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)) for row in body]
    total = rows[-1]
    if "torch_flops_fwd" in total:
        lines.append(f"torch's own count (matmuls and convolutions only): forward {_human(total['torch_flops_fwd'])}, "
                     f"backward {_human(total['torch_flops_bwd'])}")
    if any(r.get("measured") for r in rows):
        lines.append("* measured by torch's FLOP counter (no formula for this layer type)")
    return "\n".join(lines)


def tiling_words(tile: int) -> str:
    """A ``tile`` as the comparison's rows say it: 0 untied, 1 tied (a convolution), t tiled (t x t banks)."""
    return {0: "untied", 1: "tied (conv)"}.get(tile, f"tiled t={tile}")


def footprint_report(name: str, input_shape: tuple[int, ...] | None = None, source: str | None = None,
                     **options: Any) -> str:
    """What ``downpour models --footprint NAME`` prints: the per-layer table, then, when the model has locally
    connected layers and a ``tile`` option, its totals as configured (``options``: a preset's model options with
    ``--set`` on top) beside the same net untied, tiled t=4 and tied. ``source``: the preset or file the options come
    from (``"main"``), which names the configured row; None: the model's own name."""
    said = source or name
    head = f"{said} (model {name})" if source else name
    model = create_checked(name, input_shape, options)
    shape = "x".join(map(str, input_shape or model_entry(name).input_shape))
    rows = model_footprint(model, name, input_shape)
    text = f"{head}: footprint per sample (float32), input {shape}\n" + format_table(rows)
    if "tile" in {f.name for f in dataclasses.fields(model.config)} and any(
            isinstance(m, LocallyConnected2d) for m in model.modules()):
        tile = model.config.tile
        opts = {k: v for k, v in options.items() if k != "tile"}
        # the configured row first, named by where its options come from: `--footprint --config main` is the main
        # job's tile 2, which none of the comparison's 0 / 4 / 1 is
        given = {**rows[-1], "layer": f"{said}: {tiling_words(tile)} (as configured)"}
        text += (f"\n\n{said} as configured (model.tile = {tile}), then the same net untied vs tiled vs tied "
                 "(model.tile = 0 / 4 / 1):\n")
        text += format_table([given, *compare_tilings(name, input_shape=input_shape, **opts)]).split("\ntorch's")[0]
    return text
