"""What two run configs differ in, and which of those keys a resumed run may change.

    for key, was, now in config_differences(resolve(saved), resolve(new)):
        if key not in RESUMABLE: ...   # another run, not this one going on
"""

from __future__ import annotations

from typing import Any

from downpour.config import RunConfig, config_to_dict

# What a resumed run may change: how long it goes on, how it reports, where it runs, how its data
# are decoded (streamed batches do not depend on the loader's processes or prefetch). Everything
# else (model, cost, data, seed, optimizer, cluster shape) would make it a different run.
RESUMABLE = {"train.steps", "train.log_every", "train.checkpoint_every", "train.tensorboard", "train.threads",
             "train.device", "cluster.restarts", "cluster.checkpoint_every", "cluster.address", "cluster.checkpoint_seconds",
             "cluster.shard_restarts", "cluster.silent_seconds", "cluster.worker_gpus", "data.prefetch", "data.loader_workers"}
STREAM_KEYS = ("data.prefetch", "data.loader_workers", "data.fit_sample", "data.mix_items")   # read by a streamed pipeline only


def config_differences(a: RunConfig, b: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` for every training key on which two configs differ (``analysis.*``
    is not training, nor are a stream's own keys where neither streams: a run from before data.mix_items, read
    as 1, is today's in-memory recipe; nor data.jpeg_draft where neither crops a folder, nor data.jpeg_decode where its rules agree), sorted by key.
    Resolve both first (``models.registry.resolve``) to compare what two runs are, whatever form their values
    were written in."""
    before, after = flat_keys(config_to_dict(a)), flat_keys(config_to_dict(b))
    unread = () if may_stream(a) or may_stream(b) else STREAM_KEYS
    if not (a.data.reads_jpeg_draft() or b.data.reads_jpeg_draft()):   # a run from before it reads as false
        unread += ("data.jpeg_draft",)
    if not (a.data.decode_rules_differ() or b.data.decode_rules_differ()):   # both rules decode these alike
        unread += ("data.jpeg_decode",)
    return [(key, before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key) and not key.startswith("analysis.") and key not in unread]


def may_stream(cfg: RunConfig) -> bool:
    """Whether a run of ``cfg`` may stream its data (asked to, or files it may decode as it goes)."""
    return cfg.data.pipeline == "stream" or (cfg.data.can_stream() and cfg.data.pipeline != "memory")


def flat_keys(table: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; the objective stays one value (its terms are tables).
    Tuples become lists, as a saved config.toml reads them back."""
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "objective":
            out.update(flat_keys(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out
