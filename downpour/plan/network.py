"""The network a plan is made for: per-stage sizes, parameters, FLOPs and activations, counted on paper.

The cat network of Le et al. (2012) at full size has ~1.2 billion weights, too many to build in
memory just to count them, so the cat family (:class:`~downpour.models.cat.CatNet`) is counted
analytically (:mod:`downpour.plan.cat_formulas`). Every other registered model is built and measured:
its layers by ``footprint_table``, its training step by torch (:mod:`downpour.plan.counted`).

The paper's network (its fields: :data:`downpour.plan.run_config.PAPER`, the run config a plan reads), and what the
paper leaves open (each assumption is printed with the plan, as ``--set`` left it: :func:`paper_assumptions`):

- input 200x200 pixels, 3 channels; three stages of filter -> L2 pool -> LCN (the paper);
- 18x18 receptive fields, 8 maps per position, untied weights, 5x5 L2 pooling (the paper);
- filter stride 1 and pooling step 1 (not stated; "overlapping" pooling allows steps 1 to 4):
  with these, the encoder has 1.217 billion weights, 6% over the paper's 1.15 billion; a larger step anywhere
  but the top stage's pooling (which feeds no stage, so moves no weight) gives at most 0.91 billion (filter stride 2
  at stage 3 alone; 2 at every stage, 0.09 billion; pooling step 2 at every stage, 0.38 billion);
- "connections" = encoder weights W1, one per edge of the feed-forward network; the paper's cost
  also trains a decoder W2 of the same shape, counted separately (parameters = W1 + W2);
- the LCN window is 5x5 (not stated; parameter-free, it changes FLOPs only slightly);
- no biases (the paper's cost has none); pooling weights H fixed (the paper), so not parameters;
- mini-batches of 100 examples (not stated here; set train.batch_size).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from downpour.config import RunConfig
from downpour.models.cat import CatNet
from downpour.models.footprint import create_checked, model_footprint
from downpour.models.registry import build_objective, model_entry
from downpour.objectives import Objective
from downpour.parallel.partition import cut_refusal
from downpour.plan.cat_formulas import cat_footprint, cat_stages
from downpour.plan.counted import COST, buffer_bytes, held_by_layer, step_flops
from downpour.plan.run_config import PAPER_BATCH, cat_config, plan_config
from downpour.plan.stage import Network, Stage, over_schedule

__all__ = ["paper_assumptions", "Stage", "Network", "network_of", "cat_footprint", "over_schedule"]


def _each(values: Any, unit: Callable[[Any], str] = str) -> str:
    """A per-stage value once when every stage has it ("18x18"), else stage by stage ("2, 1, 1")."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    return unit(values[0]) if len(set(values)) == 1 else ", ".join(map(unit, values))


def _square(k: int) -> str:
    return f"{k}x{k}"


# how the assumption lines say each model field, so a --set value and the paper's read alike
_SAYS: dict[str, Callable[[Any], str]] = {
    "pools": lambda v: f"{_each(v, _square)} L2 pooling",
    "kernels": lambda v: f"{_each(v, _square)} fields",
    "tile": lambda v: "untied" if v == 0 else "convolutional" if v == 1 else f"tiled {v}x{v}",
    "maps": lambda v: f"{_each(v)} maps per position",
    "strides": lambda v: f"filter stride {_each(v)}",
    "pool_strides": lambda v: f"pooling step {_each(v)}",
    "decoder": lambda v: ("an untied W2 of the same shape, counted in params" if v == "untied"
                          else "tied, W2 = W1ᵀ, no parameters of its own"),
    "lcn": lambda v: f"LCN window {_square(v)}",
}


def _reading(keys: tuple[str, ...], now: dict[str, Any], paper: dict[str, Any], unchanged: str, source: str) -> str:
    """`` (unchanged)`` where ``keys`` hold the paper's values; else which --set changed them, and the paper's."""
    changed = [k for k in keys if now[k] != paper[k]]
    if not changed:
        return f" ({unchanged})"
    return (f" (set by --set {', '.join('model.' + k for k in changed)}; {source}: "
            + "; ".join(_SAYS[k](paper[k]) for k in changed) + ")")


def paper_assumptions(cfg: RunConfig) -> tuple[str, tuple[str, ...]]:
    """The paper plan's name and assumption lines, read from ``cfg`` (the paper's network with any ``--set``):
    a value a ``--set`` changed is printed as set, with the paper's (or the plan's reading of it) beside it.
    Fixed lines would print "filter stride 1" under ``--set model.strides=[2,2,2]``."""
    now, paper = _fields(cfg), _fields(_paper_config())
    changed = [k for k in now if now[k] != paper.get(k)]
    s = {k: _SAYS[k](now[k]) for k in _SAYS}
    batch = cfg.train.batch_size
    lines = [
        f"input 200x200x3; {len(now['maps'])} stages of filter -> {s['pools']} -> LCN; {s['kernels']}, {s['tile']}, "
        f"{s['maps']}" + _reading(("pools", "kernels", "tile", "maps"), now, paper, "the paper", "the paper"),
        f"{s['strides']} and {s['pool_strides']}" + _reading(
            ("strides", "pool_strides"), now, paper,
            # (not "any larger step gives < 0.8 billion weights": stride 2 at stage 3 alone gives 0.91)
            "the paper does not say; a larger step, the top stage's pooling step aside (it moves no weight), gives at "
            "most 0.91 billion connections",
            "the plan's reading of the paper (the only steps that reach its count, the top stage's pooling step aside)"),
        f"connections = encoder weights W1; the decoder: {s['decoder']}"
        + _reading(("decoder",), now, paper, "the paper's cost", "the paper's cost"),
        f"{s['lcn']}" + _reading(("lcn",), now, paper, "not stated; parameter-free", "the plan assumes")
        + "; no biases; the pooling weights H are fixed (the paper)",
        f"mini-batch of {batch} examples per step " + ("(assumed; train.batch_size)" if batch == PAPER_BATCH else
                                                       f"(set by --set train.batch_size; the plan assumes {PAPER_BATCH})"),
        "every stage trained at every step on its own cost (assumed; --set train.schedule=greedy trains stage 1, "
        "then 2, ...)" if cfg.train.schedule == "joint" else
        "one stage trained at a time, stage 1 first (set by --set train.schedule; the plan assumes every stage at every step)",
        # split, the paper's network is not what downpour's runner would run (the layout line shows no replica machine
        # here, where every other split network has one: this says why)
        "split (K >= 2) as DistBelief's pipeline: each partition owns its block's filters (W2 too where untied), pooling "
        "and LCN and exchanges halos with its neighbours, and a replica has no process of its own, so no replica machine "
        "(downpour's Ray runner, which splits an untied decoder too, splits through each replica's "
        "own process, a machine each: docs/plan.md, \"The replica's own process\")",
    ]
    others = [k for k in changed if k not in _SAYS]
    if others:
        lines.append("also set: " + ", ".join(f"model.{k} = {now[k]!r} (the paper's network: {paper.get(k)!r})"
                                              for k in others))
    name = "paper (Le et al. 2012)" + (f" with --set {', '.join('model.' + k for k in changed)}" if changed else "")
    return name, tuple(lines)


def _fields(cfg: RunConfig) -> dict[str, Any]:
    """The model's name and options, lists as tuples (a --set list and a resolved tuple compare equal)."""
    options = {"name": cfg.model.name, **cfg.model.options}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


@functools.lru_cache(maxsize=1)
def _paper_config() -> RunConfig:
    return plan_config("paper")[0]


def _pooled_maps(objective: Objective, part: str) -> int:
    """The pooled maps ``part``'s step holds for its ``pooled_l2`` (:mod:`downpour.plan.held`): 2, 1 at ε = 0, 0 without
    it; a part's own term (``stage2/pooled_l2``) in place of the shared one, as training reads it (``terms_of``)."""
    pooled = objective.terms_of(part).get("pooled_l2")
    return 0 if pooled is None else 1 + (pooled.eps > 0)


def network_of(cfg: RunConfig, input_shape: tuple[int, ...], paper: bool = False) -> Network:
    """Per-stage arithmetic of ``cfg``'s model on ``input_shape``: analytic for the cat family, else
    measured by ``footprint_table`` on the built model (one stage per layer). ``cfg`` as :func:`plan_config` gives it,
    checked there (a part's own cost term on a part the model lacks, refused naming what was typed)."""
    entry = model_entry(cfg.model.name)
    if issubclass(entry.family, CatNet):
        name, assumptions = paper_assumptions(cfg) if paper else (cfg.model.name, ())
        config = cat_config(cfg, tuple(input_shape))
        objective = build_objective(cfg)
        pooled_maps = tuple(_pooled_maps(objective, f"stage{i}") for i in range(1, len(config.maps) + 1))
        stages = cat_stages(config, input_shape, batch=cfg.train.batch_size, pooled_maps=pooled_maps,
                            schedule=cfg.train.schedule)
        # the runner's own refusal (the paper plan is the paper's pipeline, whose partitions own tiles and W2 too)
        uncut = "" if paper else cut_refusal(name, cat=True, top=config.top != "none")
        notes = assumptions + ((f"one partition per replica: {uncut}",) if uncut else ())
        return Network(name, tuple(input_shape), tuple(stages), notes, cfg.train.schedule, uncut=uncut,
                       banks_shared=not paper)
    # one build for the layers' footprint, the held bytes, the buffers and the step's FLOPs (each built its own: three
    # builds, 1-10 ms each of tica-8x8's to rnn-rows' 0.1-0.6 s network_of); its buffers read before any step runs
    model = create_checked(cfg.model.name, tuple(input_shape), cfg.model.options)
    objective = build_objective(cfg)
    buffers = buffer_bytes(model)
    rows = model_footprint(model, cfg.model.name, tuple(input_shape))[:-1]
    # what the step holds for its backward, on the layer that saved it; a decoder's and a model's own arithmetic's on
    # one more row, the cost's on another (the inference path's outputs, each layer's act_bytes, are not what a step
    # holds)
    held = held_by_layer(model, objective, tuple(input_shape), cfg.train.batch_size)
    # a layer called twice is two rows of one name: its bytes go on the first (keyed by name, the second row's
    # nothing overwrote them, and a step's 32.8 kB of a twice-called encoder left the plan's memory)
    layers = [r["layer"] if r["layer"] != "(model)" else "" for r in rows]     # held_by_layer's names ("": the model's)
    own = [held.pop(layer, (0.0, 0.0)) for layer in layers]
    # the buffers are model state, on the row of the layer that owns them (the model's own: its "(model)" row, or the
    # first), counted once whatever the step's graph saves
    state = [0.0] * len(rows)
    for name, nbytes in buffers.items():
        owner = name.rpartition(".")[0]
        state[layers.index(owner) if owner in layers else 0] += nbytes / 4
    stages = [Stage(r["layer"], tuple(r["out_shape"]), 0, r["params"], r["params"], r["flops_fwd"],
                    r["flops_fwd"] + r["flops_bwd"], each / 4, copy_floats=fixed / 4, state_floats=floats)
              for r, (each, fixed), floats in zip(rows, own, state)]
    # the model's modules outside its inference path and its own ops outside every module on one row, the cost's on
    # another (cnn-digits at batch 32: its max-pooling's 106.5 kB, the cost's 1.5 kB)
    cost = {COST: held.pop(COST)} if COST in held else {}
    outside = ", ".join(n or "the model's own ops" for n in sorted(held))
    for label, part in ((f"(held outside: {outside})", held),
                        ("(held by the cost)", cost)):
        if part:
            stages.append(Stage(label, (), 0, 0, 0, 0, 0, sum(e for e, _ in part.values()) / 4,
                                copy_floats=sum(f for _, f in part.values()) / 4))
    counted = step_flops(cfg, tuple(input_shape), (model, objective))
    notes = ("layers measured by footprint_table on the built model, their FLOPs those of its inference path "
             "(forward + backward); the training example's FLOPs are torch's count of a training step (forward_train, "
             "the cost, the backward; matrix products only)" + (", averaged over the greedy stages" if len(counted) > 1
                                                                  else "")
             + "; the memory is what that step's graph holds for its backward, on the layer that saved it"
             + (f", and the model's buffers as model state ({', '.join(buffers)})" if buffers else "")
             + "; one partition per replica (the runner splits only the cat network)",)
    return Network(cfg.model.name, tuple(input_shape), tuple(stages), notes, cfg.train.schedule, counted,
                   cut_refusal(repr(cfg.model.name), cat=False))
