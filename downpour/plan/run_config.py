"""The run config a plan reads: a registered model at its registry's defaults, the paper's network, or what a preset
or TOML file trains, with ``--set`` strings (:func:`plan_config`), and the refusals and warnings of what a plan would
not read (a cost term the formulas do not count, a file's cluster layout, a cluster the plan does not model), each
naming what was typed. :mod:`downpour.plan.network` counts the network it describes.
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
from downpour.models.footprint import create_checked
from downpour.models.registry import build_objective, model_entry, resolve
from downpour.objectives import make_term, split_part
from downpour.plan.counted import random_batch

__all__ = ["PAPER", "PAPER_INPUT", "PAPER_BATCH", "PLAN_READS", "LAYOUT_FLAGS", "plan_config", "cat_config"]

log = logging.getLogger(__name__)

PAPER_INPUT = (3, 200, 200)
# The cat family's fields for the paper's network (cat-3stage is the registered three-stage variant).
PAPER: dict[str, Any] = {
    "name": "cat-3stage", "maps": [8, 8, 8], "kernels": [18, 18, 18], "strides": [1, 1, 1], "pools": [5, 5, 5],
    "pool_strides": [1, 1, 1], "lcn": 5, "tile": 0, "decoder": "untied",
}
PAPER_BATCH = 100

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


def cat_config(cfg: RunConfig, input_shape: tuple[int, ...]) -> CatConfig:
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
            parts = [f"stage{i}" for i in range(1, len(cat_config(cfg, shape).maps) + 1)]
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
