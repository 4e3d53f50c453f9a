"""A study cell's config hash: what a study folder's header holds for each condition (``resolved``), so a cell
measured under one config is never read back as another's, while a key added to the config since (at the value that
trains as before) or one no training reads does not refuse a folder begun before it."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from downpour.config import RunConfig, config_to_dict


# Keys added since a study folder's header first held these hashes, each with the value that trains as before it
# existed: left out of the hash at that value, so a folder begun before the key is not refused for it. cluster.lr
# (2026-12-04, 0 = train.lr) changed every cell's hash of every study: each folder was refused, "the configs of ...
# resolve differently now", its cells unchanged. analysis.invariance_fill (2026-12-05) did it again: no training reads
# it, and the one study that measures invariance (mechanisms) names the fill in its measured_by, so its "mean" (the
# default) is left out too; "border" is hashed, another cell. data.jpeg_decode (2026-12-05, 2 = the rule since
# 2026-12-04 17:05) was hashed from its start: folders begun before it (templates, first-layer, flat-skipping,
# architectures) were refused, those begun since (staleness, mechanisms) hold it; no study reads JPEG files, and a
# folder's hash is accepted with or without each added key (:func:`digests`). cluster.silent_seconds (2026-12-05, 0 = the
# limit that follows the run) is read by the Ray driver alone: a lost worker's limit, no training. cluster.faults
# (2026-12-06, [] = no fault) is the simulator's losses to reproduce: none trains as before. (analysis.report was
# always there: it is no added key, but hashed at one value, HASHED_AS.)
ADDED_KEYS = {("cluster", "lr"): 0.0, ("analysis", "invariance_fill"): "mean", ("data", "jpeg_decode"): 2,
              ("cluster", "silent_seconds"): 0.0, ("cluster", "faults"): []}

# Keys no cell's training reads, hashed at one value whatever a cell holds. analysis.report is read by `downpour train`
# alone, after training (cli_train); cells train through ps.in_memory.simulate or the runners, never the CLI, and write
# no report on or off. At False, as every study's cells held it until the teacher-student preset turned it on
# (2026-12-06; --set analysis.* is refused in a study): an old folder's hashes, header and context.json's settings_digest
# stay as they were (left out, the folder was accepted through :func:`digests`, but its calibration computed again).
HASHED_AS = {("analysis", "report"): False}


def digest(cfg: RunConfig, left_out: Any = ADDED_KEYS) -> str:
    """A short hash of a cell's resolved config but its seed (the seed is the cell's own) and the ``left_out`` keys
    of ``ADDED_KEYS`` at the value that trains as before they existed; ``HASHED_AS``'s keys at their value there."""
    table = {k: v for k, v in config_to_dict(cfg).items() if k != "seed"}
    for (section, key), value in HASHED_AS.items():
        if key in table.get(section, {}):
            table[section] = {**table[section], key: value}
    for section, key in left_out:
        if isinstance(table.get(section), dict) and table[section].get(key) == ADDED_KEYS[section, key]:
            table[section] = {k: v for k, v in table[section].items() if k != key}
    return hashlib.sha256(json.dumps(table, sort_keys=True, default=str).encode()).hexdigest()[:16]


def digests(study: Any, conditions: list[Any]) -> dict[str, set[str]]:
    """Each condition's hashes a folder may hold for the same config: one per subset of ``ADDED_KEYS`` left out, as a
    folder begun while some of them were hashed and others not yet left out wrote it (``HASHED_AS``: as every one did)."""
    keys = list(ADDED_KEYS)
    subsets = [[k for i, k in enumerate(keys) if mask >> i & 1] for mask in range(2 ** len(keys))]
    configs = {c.name: study.cell_config(c, 0) for c in conditions}   # once, not per subset (staleness: 0.24 s -> 0.07 s)
    return {name: {digest(cfg, left_out) for left_out in subsets} for name, cfg in configs.items()}
