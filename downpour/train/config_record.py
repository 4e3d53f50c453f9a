"""The config a run's weights were trained with, as its checkpoints and model.json record it, against its config.toml.

    record = config_record(cfg)                          # a checkpoint JSON's "config"
    for key, was, now in recorded_differences(record, run.config): ...   # config.toml edited since
"""
from __future__ import annotations

import json
from typing import Any

from downpour.config import RunConfig, config_to_dict
from downpour.config_diff import RESUMABLE, STREAM_KEYS, flat_keys, may_stream
from downpour.models.registry import create_model, resolve


def config_record(cfg: RunConfig) -> dict[str, Any]:
    """``cfg`` resolved, as a checkpoint's JSON records what its weights were trained with (``config``):
    what :func:`recorded_differences` compares a run's config.toml with on a resume."""
    return json.loads(json.dumps(config_to_dict(resolve(cfg))))


def recorded_differences(record: dict[str, Any], cfg: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(key, recorded value, value in cfg)`` for every key of a checkpoint's ``record`` (:func:`config_record`)
    that ``cfg`` gives another value and a resume may not change (not in RESUMABLE, nor ``analysis.*``, nor a
    stream's own keys where ``cfg`` does not stream), and ``train.steps`` of a run whose stages split them (greedy,
    more than one stage), in :func:`name_first`'s order. Keys the record lacks (it predates them) are not compared, nor a recorded
    ``data.pipeline = "auto"``: a run made in Python chooses when it opens its data, and a resume that finds the
    choice changed says to write the one it made (:func:`downpour.data.pipeline.check_resumed_on`)."""
    before, after = flat_keys(record), flat_keys(config_record(cfg))
    unread = () if may_stream(cfg) else STREAM_KEYS
    fixed = {"train.steps"} if splits_steps(cfg) else set()
    return [(key, was, after.get(key)) for key, was in sorted(before.items(), key=lambda kv: name_first(kv[0]))
            if after.get(key) != was and (key not in RESUMABLE or key in fixed) and not key.startswith("analysis.")
            and key not in unread and not (key == "data.pipeline" and was == "auto")]


def splits_steps(cfg: RunConfig) -> bool:
    """Whether a run of ``cfg`` splits train.steps between its stages (greedy, more than one stage): its
    steps then cannot change on a resume."""
    return cfg.train.schedule == "greedy" and create_model(cfg.model.name, **cfg.model.options).n_stages > 1


def model_differences(name: str, options: dict[str, Any], cfg: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(model.KEY, model.json's value, cfg's)`` for the model name and every option a model.json (``name``,
    ``options``, as read back) gives another value than the run's resolved config ``cfg``: one of the two files was
    edited, and the network built from model.json is not the one config.toml describes; in :func:`name_first`'s
    order."""
    recorded = json.loads(json.dumps({"name": name, **options}))
    resolved = config_record(cfg)["model"]
    ordered = sorted(recorded.items(), key=lambda kv: name_first(f"model.{kv[0]}"))
    return [(f"model.{key}", was, resolved[key]) for key, was in ordered if key in resolved and resolved[key] != was]


def name_first(key: str) -> tuple[bool, str]:
    """The order in which a config's differences are told: ``model.name`` first, then the keys by name. Another
    model's file differs in options too, and the first of them alone (``model.hidden = 100``, an RBM's in a CNN's
    run; ``cluster.lr``, before ``model.name`` by name) would not say that the file is another model's."""
    return key != "model.name", key
