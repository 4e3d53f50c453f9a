"""What a training step of a cat stage holds for its backward, on paper: per-example activations and per-step copies.

Autograd keeps these tensors from a stage's forward to its backward (``CatNet.forward_train`` and the cat cost,
reconstruction + ``pooled_l2``; measured by :func:`downpour.plan.counted.step_held_bytes`, which these formulas match
to the byte on cat-demo, cat-untied, main and a paper-like untied decoder, ``tests/test_plan_held.py``). Per example, input
(C, H, W), codes (M, Ho, Wo), pooled (M, Hp, Wp):

- the input (the filter's weight gradient) and the reconstruction's residual: 2·C·H·W;
- on the untied kernel (untied filters, or tiled ones expanded), the input's receptive fields, which the forward
  keeps for the weight gradient where they take at most ``KEEP_BYTES`` a step
  (:func:`~downpour.layers._lc_kernels.keeps_fields`): Ho·Wo·C·k² (the main job's stage 1: 40,000 floats, 39 times
  its 32x32 input; the paper's, 32.5 M, is not kept);
- the codes (the decoder's weight gradient, the pooling's squares) and their squares (the pooling's window sums): 2·M·Ho·Wo;
- the pooled maps (their square root's output) and the ``pooled_l2`` term's square root's output: 2·M·Hp·Wp (at its
  ε = 0, |p|, the pooled maps alone; without the term the pooling is not in the cost's graph: the codes once, no pooled).

The LCN output feeds only the next stage, detached, so its graph is gone by the backward (counting it and one copy of
the codes instead, cat-demo's stage 1 at batch 32 would read 1.20 MB, where the step holds 1.84 MB of activations
besides 5.12 MB of receptive fields, and 2.56 MB of copies).

Per step, whatever the batch: weight copies the step makes and keeps,

- ``model.filter_norm`` > 0: the filters at their norm, r·V/‖V‖, one copy of W1 (untied, or the banks), and four
  per-filter tensors (the squared length, its floor, its square root, r/length) of 1/(C·k²) of W1 each: the paper's
  stage 1 is 0.4% of W1 on top of the copy, cat-demo's 6%;
- tiled filters (``model.tile`` > 1) run on the untied kernel (:func:`~downpour.layers.locally_connected.runs_banked`,
  on a CPU: the plan's rates are a CPU's) expand their banks to one per position twice, for the encoder and for the
  decoder (tied or untied): two copies of the untied size (cat-demo at batch 32: 2.56 MB for 33.8 kB of parameters);
- ``model.recon = "interior"``: the (H, W) weight of the reconstruction error.

A frozen first layer (``model.first_layer`` gabor or random) saves nothing for its encoder: with a tied decoder the stage
holds nothing, with an untied one the codes and the residual.
"""
from __future__ import annotations

from typing import Any

import torch

from downpour.layers._lc_kernels import keeps_fields
from downpour.layers.locally_connected import runs_banked

__all__ = ["stage_held", "expands_tiles", "kept_fields"]


def expands_tiles(st: dict[str, Any], batch: int) -> bool:
    """Whether a training step of the tiled stage ``st`` (``_cat_layers``' dict) runs on the untied kernel, its banks
    expanded to one per position (as ``LocallyConnected2d`` decides on a CPU)."""
    (th, tw), (m, oh, ow) = st["banks"], st["codes"]
    if th * tw == 1 or (th, tw) == (oh, ow):       # a convolution, or untied: nothing to expand
        return False
    return not runs_banked(th * tw, oh * ow, st["in"][0] * st["kernel"] ** 2, torch.device("cpu"), batch=batch,
                           maps=m, weight_grad=True)


def kept_fields(st: dict[str, Any], batch: int) -> int:
    """Floats per example a training forward of stage ``st`` keeps of its input's receptive fields (module docstring):
    Ho·Wo·C·k² where its filters run on the untied kernel and :func:`keeps_fields` keeps them at ``batch``, else 0
    (an untied layer of one position runs as a convolution, ``LocallyConnected2d``, keeping none)."""
    (th, tw), (m, oh, ow) = st["banks"], st["codes"]
    untied = (th, tw) == (oh, ow) != (1, 1) or expands_tiles(st, batch)
    q = st["in"][0] * st["kernel"] ** 2
    return oh * ow * q if untied and keeps_fields(oh * ow, q, batch, 4, torch.device("cpu")) else 0


def stage_held(st: dict[str, Any], *, trained: bool, decoder_untied: bool, norm: bool, interior: bool,
               pooled_maps: int, batch: int) -> tuple[int, int]:
    """(floats per example, floats per step) a training step of stage ``st`` holds for its backward (module
    docstring); ``trained``: its encoder trains (not a frozen first layer); ``norm``: its filter_norm > 0;
    ``pooled_maps``: 2 with a ``pooled_l2`` term, 1 at its ε = 0, 0 without it; ``batch``: the step's examples (the tiled kernel's
    choice depends on it)."""
    c, h, w = st["in"]
    m, oh, ow = st["codes"]
    pooled = m * st["pooled"][1] * st["pooled"][2]
    (th, tw), q = st["banks"], c * st["kernel"] ** 2
    full = oh * ow * m * q                       # the untied size of the filters
    expanded = expands_tiles(st, batch)
    if not trained:
        if not decoder_untied:                   # nothing in the stage trains
            return 0, 0
        return m * oh * ow + c * h * w, full * expanded + h * w * interior
    per_example = 2 * c * h * w + m * oh * ow * (1 + (pooled_maps > 0)) + pooled * pooled_maps + kept_fields(st, batch)
    copies = 2 * full if expanded else 0
    if norm:
        untied = (th, tw) == (oh, ow)
        # the normalised filters are saved by the kernel (untied), or by the convolutions (banked, a convolution);
        # expanded banks are saved instead, and the normalised banks are not kept
        copies += (0 if expanded else (full if untied else th * tw * m * q)) + 4 * th * tw * m
    return per_example, copies + h * w * interior
