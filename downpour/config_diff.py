"""What two run configs differ in, and which of those keys a resumed run may change.

    for key, was, now in config_differences(resolve(saved), resolve(new)):
        if key not in RESUMABLE: ...   # another run, not this one going on
"""

from __future__ import annotations

import json
from typing import Any

from downpour.config import RunConfig, config_to_dict

# What a resumed run may change: how long it goes on, how it reports, where it runs, how its data
# are decoded (streamed batches do not depend on the loader's processes or prefetch). Everything
# else (model, cost, data, seed, optimizer, cluster shape) would make it a different run.
RESUMABLE = {"train.steps", "train.log_every", "train.checkpoint_every", "train.tensorboard", "train.threads",
             "train.device", "cluster.restarts", "cluster.checkpoint_every", "cluster.address", "cluster.checkpoint_seconds",
             "cluster.shard_restarts", "cluster.worker_gpus", "data.prefetch", "data.loader_workers"}
STREAM_KEYS = ("data.prefetch", "data.loader_workers", "data.fit_sample", "data.mix_items")   # read by a streamed pipeline only


def config_differences(a: RunConfig, b: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` for every training key on which two configs differ (``analysis.*``
    is not training, nor are a stream's own keys where neither streams: a run from before data.mix_items, read
    as 1, is today's in-memory recipe), sorted by key. Resolve both first (``models.registry.resolve``) to
    compare what two runs are, whatever form their values were written in."""
    before, after = _flat(config_to_dict(a)), _flat(config_to_dict(b))
    unread = () if _may_stream(a) or _may_stream(b) else STREAM_KEYS
    return [(key, before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key) and not key.startswith("analysis.") and key not in unread]


def config_record(cfg: RunConfig) -> dict[str, Any]:
    """``cfg`` resolved, as a checkpoint's JSON records what its weights were trained with (``config``):
    what :func:`recorded_differences` compares a run's config.toml with on a resume."""
    from downpour.models.registry import resolve   # (the registry imports every model family)

    return json.loads(json.dumps(config_to_dict(resolve(cfg))))


def recorded_differences(record: dict[str, Any], cfg: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(key, recorded value, value in cfg)`` for every key of a checkpoint's ``record`` (:func:`config_record`)
    that ``cfg`` gives another value and a resume may not change (not in RESUMABLE, nor ``analysis.*``, nor a
    stream's own keys where ``cfg`` does not stream). Keys the record lacks (it predates them) are not compared."""
    before, after = _flat(record), _flat(config_record(cfg))
    unread = () if _may_stream(cfg) else STREAM_KEYS
    return [(key, was, after.get(key)) for key, was in sorted(before.items())
            if after.get(key) != was and key not in RESUMABLE and not key.startswith("analysis.") and key not in unread]


def model_differences(name: str, options: dict[str, Any], cfg: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(model.KEY, model.json's value, cfg's)`` for the model name and every option a model.json (``name``,
    ``options``, as read back) gives another value than the run's resolved config ``cfg``: one of the two files was
    edited, and the network built from model.json is not the one config.toml describes."""
    recorded = json.loads(json.dumps({"name": name, **options}))
    resolved = config_record(cfg)["model"]
    return [(f"model.{key}", was, resolved[key]) for key, was in sorted(recorded.items())
            if key in resolved and resolved[key] != was]


def _may_stream(cfg: RunConfig) -> bool:
    """Whether a run of ``cfg`` may stream its data (asked to, or files it may decode as it goes)."""
    return cfg.data.pipeline == "stream" or (cfg.data.can_stream() and cfg.data.pipeline != "memory")


def _flat(table: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; the objective stays one value (its terms are tables).
    Tuples become lists, as a saved config.toml reads them back."""
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "objective":
            out.update(_flat(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out
