"""What a resumed run reads from its run folder's records about its data, and says of it: where its stream picks up
(:func:`say_resumed_at`), the JPEG decoder its start had (:func:`decode_began`) and why its input processing may be
refitted (:func:`decode_change`), the patches per image its stream cut (:func:`cut_patches`, which
:func:`~downpour.data.pipeline.keep_cut` keeps)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from downpour.config import DataConfig
from downpour.config.sections import JPEG_DECODE
from downpour.data.dataset import Dataset, shard_range
from downpour.data.patches import DATA_JSON, decode_rule
from downpour.data.stream import StreamingData
from downpour.settings import is_count

log = logging.getLogger("downpour.data.pipeline")   # the records keep the logger they had before the split


def say_resumed_at(data: Dataset | StreamingData, positions: list[dict[str, Any] | None], step: int,
                   workers: int = 1) -> None:
    """One INFO line: where a resumed stream picks up, from its checkpoint's ``positions`` (one a worker, each in its
    share of the files; empty: a Ray run's, whose checkpoint keeps none).
    ``workers``: the run's (a Ray run of one worker is not told "each worker")."""
    if not isinstance(data, StreamingData):
        return
    n, item = len(positions) or workers, data.info["item"]
    if not any(positions):     # [None]: a local run's checkpoint without one; []: a Ray run's
        who = "it starts a fresh pass over its" if n == 1 else "each worker starts a fresh pass over its own"
        log.info("resuming the stream at step %d: its checkpoint keeps no stream position, so %s %ss", step, who, item)
        return
    at = []
    for w, p in enumerate(positions):
        start, stop = shard_range(w, n, len(data))      # (0, len) for one worker
        said = f"pass {p['epoch'] + 1}, {item} {p['index'] + 1} of {stop - start}" if p else "a fresh pass"
        at.append(f"worker {w}: {said}" if n > 1 else said)
    log.info("resuming the stream at step %d where its checkpoint left it: %s%s", step, "; ".join(at),
             " (each in its share of the files)" if n > 1 else "")


def decode_change(run: Path, cfg: DataConfig) -> str:
    """Why a resume of the run in ``run`` may find its input processing refitted on other pixels, from its data.json:
    the JPEG decoder's rule (``jpeg_decode``) it records differs from the one the resume decodes by (``cfg``'s, set by
    hand), or neither: its files changed. So a refit where the decoder changed and the files did not is not said to
    be "the data changed since?"."""
    if not cfg.jpeg_shrink():
        return "the data changed since?"     # JPEGs decoded in full, under every rule
    began, now = recorded(run / DATA_JSON, "jpeg_decode"), decode_rule(cfg)
    if began is None and cfg.decode_rules_differ():
        # the rule was given by hand (--set data.jpeg_decode, as the refusal asks): nothing of the run's vouches for it
        # (not "decoded by the rule it began with", which of a guess could be wrong: a wrong one refits on other tiles)
        other = 1 if now != 1 else 2     # (the rules 1 and 2: the only two such runs can have begun under)
        return (f"its records predate jpeg_decode and data.jpeg_decode = {now} was given: if the run began under rule "
                f"{other}, the steps from here train on other tiles (put the run back from a copy and resume with "
                f"--set data.jpeg_decode={other}); else the files changed since?")
    if began in (None, now):
        return f"JPEGs decoded by the rule it began with, jpeg_decode {now}: the files changed since?"
    return (f"its data.json records JPEGs decoded by rule jpeg_decode {began}, data.jpeg_decode is {now} "
            "(docs/data.md): the decoder changed, or the files did")


def decode_began(run: Path, cfg: DataConfig) -> int:
    """The data.jpeg_decode a run's config.toml lacks (written before 2026-12-05) read as its start had it: its
    data.json's ``jpeg_decode`` (one written from 2026-12-04 22:23 on records it), else today's where the rules decode
    its crops alike (``DataConfig.decode_rules_differ``), else 0, unknown: a tiled run with data.jpeg_draft = true begun
    2026-12-04 15:25-17:05 decoded its tiles in full, one begun after reduced, and neither recorded which
    (:func:`~downpour.data.patches.decode_rule` refuses it by name). A resume decoding by today's rule, whatever the
    run began with, would train such a run on reduced tiles from the resume on."""
    began = recorded(run / DATA_JSON, "jpeg_decode")
    if began in (1, 2):
        return began
    return 0 if cfg.decode_rules_differ() else JPEG_DECODE


def cut_patches(data: Dataset | StreamingData) -> int | None:
    """The patches per image a streamed patch run cuts (None for any other data): what a checkpoint records
    for ``keep_cut``."""
    return data.cut.patches if isinstance(data, StreamingData) and data.cut.mode == "patches" else None


def files_listed_at_start(run: Path) -> int | None:
    """The items (files, rows) a run's data.json counts, ``n_items``: its list at its last start, against which a
    resume's refusal says that its list shrank (None where it has none or it cannot be read)."""
    count = recorded(run / DATA_JSON, "n_items")
    return count if is_count(count, 0) else None


def shrunk_from(listed_at_start: int | None, n: int) -> str:
    """", down from ``listed_at_start`` at the run's last start (its data.json)" where a resume's list of ``n`` items
    is shorter than its :func:`files_listed_at_start` ("" where it is not, or unknown): what its refusal for too few
    files says of the counts."""
    if not listed_at_start or listed_at_start <= n:
        return ""
    return f", down from {listed_at_start} at the run's last start (its data.json)"


def recorded_patches(path: Path) -> int | None:
    """``patches_per_image`` of a run's data.json (None where it has none or cannot be read)."""
    count = recorded(path, "patches_per_image")
    return count if is_count(count, 1) else None


def recorded(path: Path, key: str) -> Any:
    """``key`` of the JSON object in ``path`` (None where it has none or cannot be read)."""
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
