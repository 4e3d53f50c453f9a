"""The network a plan is made for: per-stage sizes, parameters, FLOPs and activations, counted on paper.

The cat network of Le et al. (2012) at full size has ~1.2 billion weights, too many to build in
memory just to count them, so the cat family (:class:`~downpour.models.cat.CatNet`) is counted
analytically (:mod:`downpour.plan.cat_formulas`). Every other registered model is built and measured:
its layers by ``footprint_table``, its training step by torch (:mod:`downpour.plan.counted`).

The paper's network, and what the paper leaves open (each assumption is printed with the plan, as
``--set`` left it: :func:`paper_assumptions`):

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

import copy
import dataclasses
import functools
import logging
from typing import Any, Callable

from downpour.config import (ClusterConfig, RunConfig, config_from_dict, load_config, merge_term, origin_of,
                             parse_override, with_origin)
from downpour._names import pasted, whole_flag
from downpour.data.build import sample_shape
from downpour.errors import ConfigError
from downpour.models.cat import CatConfig, CatNet
from downpour.models.footprint import create_checked, model_footprint
from downpour.models.registry import build_objective, model_entry, resolve
from downpour.objectives import Objective, make_term, split_part
from downpour.parallel.partition import cut_refusal
from downpour.plan.cat_formulas import cat_footprint, cat_stages
from downpour.plan.counted import COST, buffer_bytes, held_by_layer, random_batch, step_flops
from downpour.plan.stage import Network, Stage, over_schedule

__all__ = ["PAPER", "PAPER_INPUT", "paper_assumptions", "Stage", "Network", "plan_config", "network_of",
           "cat_footprint", "over_schedule"]

log = logging.getLogger(__name__)

PAPER_INPUT = (3, 200, 200)
# The cat family's fields for the paper's network (cat-3stage is the registered three-stage variant).
PAPER: dict[str, Any] = {
    "name": "cat-3stage", "maps": [8, 8, 8], "kernels": [18, 18, 18], "strides": [1, 1, 1], "pools": [5, 5, 5],
    "pool_strides": [1, 1, 1], "lcn": 5, "tile": 0, "decoder": "untied",
}
PAPER_BATCH = 100


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



# beside model.*; train.steps with --config only: the frozen cache's count over the data it trains on (read,
# so a run of another length is planned without a TOML file)
PLAN_READS = {"train.batch_size", "train.schedule", "train.steps", "cluster.n_push", "cluster.n_fetch", "cluster.rule"}



def _typed(model: str | None, config: str | None, sets: list[str] | tuple[str, ...] = ()) -> str:
    """"downpour plan --model M --set K=V": what was typed, the head of a refusal; with neither --model nor --config,
    which network that is (it read "--model paper", which the user had not typed)."""
    # each value shell-quoted: pasted, the line runs (bare, `--set model.maps=[8, 8, 8]` would not)
    flag = (f" --config {pasted(config)}" if config is not None else f" --model {pasted(model)}" if model is not None
            else "")
    said = f"downpour plan{flag}{''.join(' --set ' + pasted(str(s)) for s in sets)}"
    return said if flag else f"{said} (no --model: the default, the paper's network)"


def _cat_config(cfg: RunConfig, input_shape: tuple[int, ...]) -> CatConfig:
    """The cat network ``cfg`` asks for, refused where the formulas cannot count it (a recurrent top stage) or the
    model would not build it on ``input_shape``."""
    config = dataclasses.replace(model_entry(cfg.model.name).config, **cfg.model.options)
    if config.top != "none":
        raise ConfigError(f"model.top = {config.top!r}: the plan counts the cat network's stages on paper, and "
                          "not a recurrent top stage; plan the network without it (model.top = 'none')", key="model.top")
    config.check_shapes(input_shape)   # the model's own checks: a network it would refuse is not counted
    return config


def plan_config(model: str | None = "paper", sets: list[str] | tuple[str, ...] = (),
                config: str | None = None) -> tuple[RunConfig, tuple[int, ...]]:
    """The run config a plan reads (model, train.batch_size / schedule, cluster.n_push / n_fetch / rule) and the
    input shape: ``model`` is ``"paper"`` or a registered model (its registry defaults), None for the default (the
    paper's network, said so in a refusal), or ``config`` a preset or TOML file (what it trains: its model options and
    cost terms, batch, schedule, push and fetch, rule and sample shape; its seed, data and train.device too, which a
    greedy step's frozen cache counts on); ``sets`` are ``--set`` strings."""
    typed = functools.partial(_typed, model, config)     # (bound now: model is named below, None or typed)
    named, model = model is not None or config is not None, model or "paper"
    table: dict[str, Any] = {"model": {"name": model}}
    shape: tuple[int, ...] | None = None
    if config is not None:
        base = load_config(config)
        c = base.cluster
        _refuse_unplanned(config, c.algorithm, c.consistency)
        _say_unread_layout(config, c)
        table = {"model": {"name": base.model.name, **base.model.options}, "objective": copy.deepcopy(base.objective),
                 "train": {"batch_size": base.train.batch_size, "schedule": base.train.schedule,
                           "steps": base.train.steps},
                 "cluster": {"n_push": c.n_push, "n_fetch": c.n_fetch, "rule": c.rule}}
        shape = sample_shape(base.data)
        model = base.model.name
    elif model == "paper":
        table = {"model": dict(PAPER), "train": {"batch_size": PAPER_BATCH}}
        shape = PAPER_INPUT
    terms: list[tuple[str, str]] = []                  # (--set, the cost term it sets)
    for item in sets:
        path, value = parse_override(item)
        if path[0] == "objective" and len(path) in (2, 3):    # objective.TERM=v, objective.TERM.KEY=v: merged as train's
            objective = table.setdefault("objective", {})
            spec = value if len(path) == 2 else {path[2]: value}
            objective[path[1]] = merge_term(objective[path[1]], spec) if path[1] in objective else spec
            terms.append((item, path[1]))
            continue
        if path[0] != "model" and ".".join(path) not in PLAN_READS:
            flag = LAYOUT_FLAGS.get(path[-1]) if path[0] == "cluster" else None   # (with its flag, where it has one)
            raise ConfigError(f"{typed([item])}: " + (f"the plan lays out the cluster from its flags: give "
                              f"{whole_flag(flag, value)} instead" if flag else
                              f"a plan reads only model.KEY, objective.TERM, objective.TERM.KEY, "
                              f"{', '.join(sorted(PLAN_READS))}"))
        if ".".join(path) == "train.steps" and config is None:    # (a --model has no data: nothing would read it)
            raise ConfigError(f"{typed([item])}: the plan reads train.steps only with --config (the greedy stages' "
                              "frozen cache over the data it trains on); a --model has no data to count it on")
        node = table
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    parts: list[str] | None = None                   # the cat network's stages, each a part of its objective
    try:
        cfg = resolve(config_from_dict(table))      # every model field written out and checked
        shape = shape or model_entry(cfg.model.name).input_shape
        if issubclass(model_entry(cfg.model.name).family, CatNet):
            # network_of's refusals, here where what was typed is known (they named no flag)
            parts = [f"stage{i}" for i in range(1, len(_cat_config(cfg, shape).maps) + 1)]
    except ConfigError as err:
        if config is not None and err.key and origin_of(err.key, config, sets) is None:
            err = with_origin(err, config, sets)   # a base-less file's default (cat-demo on 8x8 data), as train says
        # the registry names the model it checks: for --model paper, cat-3stage, which the user did not type
        said = (str(err).replace(f"model {PAPER['name']!r}: ", "the paper's network: " if named else "")
                if model == "paper" else str(err))    # (untyped, the head already said which network)
        raise ConfigError(f"{typed(sets)}: {said}", key=err.key) from None
    _refuse_unread_parts(typed, cfg, shape, terms, parts)
    _refuse_uncounted_terms(typed, cfg, terms, parts)
    if config is not None:      # what the frozen cache counts on (with_frozen_runs), as the file has it (no --set)
        cfg = dataclasses.replace(cfg, seed=base.seed, data=base.data,
                                  train=dataclasses.replace(cfg.train, device=base.train.device))
    return cfg, shape


def _refuse_unread_parts(typed: Callable[[list[str]], str], cfg: RunConfig, shape: tuple[int, ...],
                         terms: list[tuple[str, str]], parts: list[str] | None) -> None:
    """A part's own cost term on a part the network lacks (``stage9/l1``: never read), the --set's or the file's,
    refused as train refuses it (``Objective.check_parts``), after the --set that gave it: the cat network's parts are
    its stages (``parts``, counted on paper), any other model's the keys of its ``forward_train``, built here only
    where a part has a term of its own (network_of builds it again to count it)."""
    objective = build_objective(cfg)
    if not objective.own:
        return
    model = None if parts is not None else create_checked(cfg.model.name, shape, cfg.model.options)
    try:
        if model is None:
            objective.check_parts(parts)
        else:
            objective.check_model_parts(model, random_batch(shape, 2))
    except ConfigError as err:
        where = [item for item, term in terms if f"objective.{term}" == err.key][:1]
        raise ConfigError(f"{typed(where)}: {err}", key=err.key) from None


def _refuse_uncounted_terms(typed: Callable[[list[str]], str], cfg: RunConfig, terms: list[tuple[str, str]],
                            parts: list[str] | None) -> None:
    """A --set cost term the plan would not read: the cat network's cost (``parts``: its stages) is counted on paper,
    where only ``pooled_l2`` changes anything, shared or a stage's own (``stage2/pooled_l2``; what a step holds: its
    square root's output, :mod:`downpour.plan.held`); any other model's training step is built with its cost and
    counted by torch, so every term is read there (a part the network lacks: :func:`_refuse_unread_parts`)."""
    if parts is None:
        return
    # the formulas train every decoder by the reconstruction term; without it the decoder's backward and what it keeps
    # are gone (cat-untied's stage 1: 3.46 MFLOP planned, torch counts 1.93 M; 3.20 MB planned, 3.07 MB held)
    for part in parts:
        name = f"{part}/reconstruction" if f"{part}/reconstruction" in cfg.objective else "reconstruction"
        if not make_term(name, cfg.objective.get(name, 0)).weight:   # (a weight, or the term's fields)
            where = [item for item, term in terms if term == name][:1]
            raise ConfigError(f"{typed(where)}: objective.{name} = 0: the cat network is counted on paper with "
                              "its decoder trained by the reconstruction term (its backward, what it holds); a step "
                              "without the term is not planned", key=f"objective.{name}")
    for item, term in terms:
        if split_part(term)[1] != "pooled_l2":
            raise ConfigError(f"{typed([item])}: the cat network is counted on paper, where of the "
                              "cost's terms only pooled_l2 is read (what its step holds; the others' few FLOPs per pixel "
                              f"are left out), so objective.{term} would not change the plan; leave it out",
                              key=f"objective.{term}")


# the file's cluster keys a plan does not read: the layout is the plan's to choose (or the flag's), the delays and the
# warm start are the simulator's (the plan's time is the cluster's own step time), and Ray's queue depth is not
# modelled (a push travels while the next steps compute; main.toml's queue_depth = 1 is said, not read)
LAYOUT_FLAGS = {"workers": "--replicas", "shards": "--shards", "partitions": "--partitions", "delay": None,
                "warm_start": None, "queue_depth": None}
_UNREAD_WHY = {"queue_depth": "pushes are timed travelling while the next steps compute, as at depth 2"}


def _say_unread_layout(config: str, c: Any) -> None:
    """Warn, naming them, of ``config``'s cluster settings the plan does not read (they were dropped unsaid)."""
    defaults = ClusterConfig()
    why = {**_UNREAD_WHY, **{k: f"{flag} sets it" for k, flag in LAYOUT_FLAGS.items() if flag}}
    unread = [f"cluster.{k} = {getattr(c, k)!r}" + (f" ({why[k]})" if k in why else "")
              for k in LAYOUT_FLAGS if getattr(c, k) != getattr(defaults, k)]
    if unread:
        log.warning("downpour plan --config %s: the plan chooses the cluster's layout for the machines given and "
                    "times the cluster's own steps, so the file's %s %s not read", pasted(config), ", ".join(unread),
                    "is" if len(unread) == 1 else "are")


def _refuse_unplanned(config: str, algorithm: str, consistency: str) -> None:
    """A config whose cluster the plan does not model: its step time and staleness are asynchronous Downpour's, so
    a sync config read 2.2 on 4 machines where its staleness is 0 (as ``--set cluster.consistency`` is refused, so is
    the file's)."""
    if algorithm != "downpour":
        raise ConfigError(f"downpour plan --config {pasted(config)}: cluster.algorithm = {algorithm!r}: the plan "
                          "models Downpour SGD only (Sandblaster L-BFGS is not modelled, docs/plan.md); plan a Downpour config",
                          key="cluster.algorithm")
    if consistency != "async":
        raise ConfigError(f"downpour plan --config {pasted(config)}: cluster.consistency = {consistency!r}: the plan models "
                          "asynchronous replicas (their step time and staleness), not a gate; plan a copy with "
                          "cluster.consistency = \"async\", or measure this one's staleness against its prediction "
                          f"with downpour plan --check-simulated --config {pasted(config)} --replicas N --shards S --steps T",
                          key="cluster.consistency")


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
        config = _cat_config(cfg, tuple(input_shape))
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
