"""The cat family (:class:`~downpour.models.cat.CatNet`) counted on paper: per-stage sizes, FLOPs and what a step holds.

At the paper's size (1.2 billion weights) the network cannot be built to be measured, so its arithmetic is the
formulas :mod:`downpour.models.footprint` uses on a built model (tests/test_plan_flops.py checks the two agree exactly on
small networks), and its memory :mod:`downpour.plan.held`'s.
"""
from __future__ import annotations

import math
from typing import Any

from downpour.layers.gabor import FROZEN_KINDS
from downpour.models.cat import CatConfig
from downpour.plan.held import kept_fields, stage_held
from downpour.plan.stage import Stage

__all__ = ["cat_footprint", "cat_stages", "normalising_flops", "pool_lcn_flops"]


def _lcn_window(lcn: int, h: int, w: int) -> int:
    side = min(h, w)
    return min(lcn, side - 1 + side % 2)      # as CatStage: odd, within the map


def pool_lcn_flops(maps: int, codes: tuple[int, int], pool: int, pool_stride: int, lcn: int) -> tuple[int, int]:
    """(L2 pooling, LCN) forward FLOPs per example of ``maps`` codes of ``codes`` (H x W) pooled ``pool`` x ``pool``
    with step ``pool_stride`` then normalised in an ``lcn`` window (odd, within the pooled map: ``_lcn_window``)
    (models/footprint.py's formulas; a trained stage's pooling backward costs its forward again)."""
    (oh, ow), ph, pw = codes, (codes[0] - pool) // pool_stride + 1, (codes[1] - pool) // pool_stride + 1
    return (maps * oh * ow + maps * ph * pw * (pool * pool + 2),                 # squares, window sums, sqrt
            2 * (2 * maps * lcn * lcn) * ph * pw + 6 * maps * ph * pw)


def _cat_layers(config: CatConfig, input_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """One dict per stage: the sizes and per-example FLOPs of its filter, pool and LCN (models/footprint.py's formulas)."""
    config.check_shapes(input_shape)   # the model's own checks: a network it would refuse is not counted
    c, h, w = input_shape
    out = []
    for i, (m, k, s, q, u) in enumerate(zip(config.maps, config.kernels, config.strides, config.pools,
                                            config.pool_strides)):
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        ph, pw = (oh - q) // u + 1, (ow - q) // u + 1
        banks = (oh, ow) if config.tile == 0 else (min(config.tile, oh), min(config.tile, ow))
        lk = _lcn_window(config.lcn, ph, pw)
        pool_flops, lcn_flops = pool_lcn_flops(m, (oh, ow), q, u, lk)
        out.append({
            "i": i, "in": (c, h, w), "maps": m, "kernel": k, "stride": s, "pool": q, "pool_stride": u, "lcn": lk,
            "codes": (m, oh, ow), "pooled": (m, ph, pw), "banks": banks,
            "weights": banks[0] * banks[1] * m * c * k * k,
            "filter": m * oh * ow * 2 * c * k * k,                          # a multiply-add per weight use
            "pool_flops": pool_flops, "lcn_flops": lcn_flops,
        })
        c, h, w = m, ph, pw
    return out


def cat_footprint(config: CatConfig, input_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """``footprint_table``'s rows for a cat network, without building it (same keys, same numbers)."""
    rows: list[dict[str, Any]] = []
    flowing = False                 # does the layer's input need a gradient (a trained layer below it)?
    decoders = 0
    for st in _cat_layers(config, input_shape):
        trained = not (st["i"] == 0 and config.first_layer in FROZEN_KINDS)   # designed/random first layers are frozen
        params, frozen = (st["weights"], 0) if trained else (0, st["weights"])
        for name, kind, shape, p, f, flops, grads in (
                ("filter", "LocallyConnected2d", st["codes"], params, frozen, st["filter"], int(flowing) + int(trained)),
                ("pool", "L2Pool2d", st["pooled"], 0, 0, st["pool_flops"], int(flowing or trained)),
                ("lcn", "LocalContrastNorm2d", st["pooled"], 0, 0, st["lcn_flops"], int(flowing or trained))):
            rows.append({"layer": f"stages.{st['i']}.{name}", "type": kind, "out_shape": shape, "params": p,
                         "frozen": f, "param_bytes": 4 * (p + f), "act_bytes": 4 * math.prod(shape),
                         "flops_fwd": flops, "flops_bwd": flops * grads})
        flowing = flowing or trained
        if config.decoder == "untied":
            decoders += st["weights"]
    if decoders:
        rows.append({"layer": "(params outside these layers)", "type": "-", "out_shape": (), "params": decoders,
                     "frozen": 0, "param_bytes": 4 * decoders, "act_bytes": 0, "flops_fwd": 0, "flops_bwd": 0})
    keys = ("params", "frozen", "param_bytes", "act_bytes", "flops_fwd", "flops_bwd")
    rows.append({"layer": "total", "type": "cat", "out_shape": rows[-2 if decoders else -1]["out_shape"],
                 **{k: sum(r[k] for r in rows) for k in keys}})
    return rows


def normalising_flops(weights: int, per_filter: int) -> tuple[int, int]:
    """(forward, backward) FLOPs of putting ``weights`` filters of ``per_filter`` weights each at their norm once,
    ``r·V/‖V‖`` (``layers.locally_connected.normalised``), as torch runs it, per weight W and filter n = W/per_filter:
    forward V², their sum, V·(r/‖V‖) (3W) and the length's clamp, square root, reciprocal and r· (4n); backward the
    scale's gradient (a product and a sum, 2W), V's through the scale (W), through the length (V^1, 2·, a product:
    3W) and the two added (W), and 8 per filter (tests/test_plan_terms.py counts the ops torch dispatches): 10
    FLOPs per weight a step, 0.9% of the filters' own 10·B at the paper's batch."""
    filters = weights // per_filter
    return 3 * weights + 4 * filters, 7 * weights + 8 * filters


def cat_stages(config: CatConfig, input_shape: tuple[int, ...], batch: int,
               pooled_maps: int | tuple[int, ...] = 2, schedule: str = "joint") -> list[Stage]:
    """Per-stage plan rows of a cat network, each stage as ``CatNet.forward_train`` trains it (a network's step over
    the joint or greedy schedule: :func:`over_schedule`).

    Training FLOPs per example and stage, with F the filter's forward FLOPs: encoder forward F,
    decoder (untied W2, or the tied adjoint W1ᵀ) forward F; backward: the decoder's weight gradient
    F and its gradient into the codes F, the encoder's weight gradient F, and no input gradient (a
    stage's input is detached). So 5F, plus pooling forward and backward, and the LCN forward where the step reads it:
    its output only feeds the next stage, so a step skips the LCN of the last stage it runs (``CatNet.forward_train``):
    ``schedule`` "greedy", every trained stage's (the stages below run forward, LCN included: their
    ``flops_fwd``); "joint", the top stage's alone. Counting it all the same would add 122,112 FLOPs per
    example, 3.6% of cat-demo's stage 1 training FLOPs and 10% of the compute time predicted for the step
    (tests/test_plan_flops.py counts each step as torch does). A frozen first layer drops its two encoder-side
    backward Fs (and, with a tied decoder, the decoder's weight gradient too). torch's FLOP counter agrees
    (tests/test_plan_flops.py: its bmm count of a cat-demo training step is exactly 5F per example).
    The cost terms themselves (a few FLOPs per pixel) are left out; normalising the filters (``model.filter_norm``
    > 0) is counted once a step, on ``batch`` examples (:func:`normalising_flops`). What a step holds for its backward
    (``act_floats`` per example, ``copy_floats`` per step, on ``batch`` examples, ``pooled_maps``: the cost's
    ``pooled_l2`` term keeps 2 pooled maps, 1 at ε = 0, 0 without it; one for every stage, or each stage's where a
    stage has its own term, ``stage2/pooled_l2``): :mod:`downpour.plan.held`. The stage's
    buffers (``state_floats``: its mask and LCN taps, as the built stage registers them) are model state.
    """
    stages = []
    layers = _cat_layers(config, input_shape)
    for st in layers:
        # the stage's LCN in a step training it: run where a stage above it runs in that step (joint, not the top)
        read = schedule == "joint" and st["i"] < len(layers) - 1
        lcn_read = st["lcn_flops"] * read
        trained = not (st["i"] == 0 and config.first_layer in FROZEN_KINDS)
        untied_dec = config.decoder == "untied"
        f = st["filter"]
        decoder_trained = untied_dec or trained        # a tied decoder is W1 itself: its gradient flows into W1
        backward = f * (2 * trained + decoder_trained) + st["pool_flops"] * trained
        products = 2 * f + f * (2 * trained + decoder_trained)     # the filters' alone: what torch's counter sees
        (m, oh, ow), c = st["codes"], st["in"][0]
        norm = config.stage_filter_norm(st["i"]) > 0
        maps = pooled_maps[st["i"]] if isinstance(pooled_maps, tuple) else pooled_maps
        acts, copies = stage_held(st, trained=trained, decoder_untied=untied_dec, pooled_maps=maps, batch=batch,
                                  norm=norm, interior=config.recon == "interior")
        # the stage's buffers: the reconstruction's interior mask (1 x 1 x H x W, recon "interior") and the LCN's taps
        state = (st["in"][1] * st["in"][2] if config.recon == "interior" else 0) + st["lcn"]
        norm_fwd, norm_bwd = (normalising_flops(st["weights"], c * st["kernel"] ** 2) if norm else (0, 0))
        norm_fwd, norm_bwd = norm_fwd / batch, norm_bwd * trained / batch      # once a step, shared by its examples
        stages.append(Stage(
            f"stage{st['i'] + 1}", st["pooled"], oh * ow, oh * ow * m * c * st["kernel"] ** 2,   # edges, shared or not
            st["weights"] * (int(trained) + int(untied_dec)), f + st["pool_flops"] + st["lcn_flops"] + norm_fwd,
            2 * f + st["pool_flops"] + lcn_read + backward + norm_fwd + norm_bwd, acts,
            in_shape=st["in"], maps=m, kernel=st["kernel"], stride=st["stride"], pool=st["pool"],
            pool_stride=st["pool_stride"], lcn=st["lcn"],
            tied_banks=None if st["banks"] == (oh, ow) else st["banks"], frozen=0 if trained else st["weights"],
            decoder=st["weights"] if untied_dec else 0,
            copy_floats=copies, state_floats=state, products_fwd=f, products_train=products,
            norm_fwd=norm_fwd, norm_train=norm_fwd + norm_bwd,
            pool_lcn_fwd=st["pool_flops"] + st["lcn_flops"],
            pool_lcn_train=st["pool_flops"] * (1 + trained) + lcn_read, lcn_trained=read,
            fields_floats=kept_fields(st, batch) if trained else 0))
    return stages
