"""Server checkpoints: every shard's parameters, update-rule state and staleness log in one
safetensors file, and the counters (versions, clocks, push numbers, step) in its JSON twin.

    save_server(run.checkpoints / "server", [shard.state_dict() ...], {"step": 400, ...})
    states, meta = load_server(run.checkpoints / "server")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from downpour.train.checkpoint import load_state, save_state

ShardState = tuple[dict[str, Tensor], dict[str, Any]]


def save_server(stem: str | Path, states: list[ShardState], meta: dict[str, Any],
                driver: dict[str, Tensor] | None = None) -> None:
    """Write ``stem.safetensors`` (tensors ``shard<j>.<name>``, and the driver's own, e.g. the simulator's
    ``sim.*``) and ``stem.json``."""
    tensors = {f"shard{j}.{k}": v for j, (t, _) in enumerate(states) for k, v in t.items()}
    save_state(stem, {**tensors, **(driver or {})}, {**meta, "shards": [m for _, m in states]})


def load_server(stem: str | Path, meta_keys: tuple[str, ...] = ()) -> tuple[list[ShardState], dict[str, Any]]:
    """The shards' states and the counters saved with them (the driver's tensors, if any, under
    ``meta["tensors"]``); a damaged file, or one lacking a shard list or one of ``meta_keys``, is a
    CheckpointError naming it."""
    tensors, meta = load_state(stem, meta_keys=("shards", *meta_keys))
    states: list[ShardState] = []
    for j, shard_meta in enumerate(meta["shards"]):
        prefix = f"shard{j}."
        states.append(({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, shard_meta))
    rest = {k: v for k, v in tensors.items() if not k.startswith("shard")}
    return states, {**meta, **({"tensors": rest} if rest else {})}


def next_seqs(states: list[ShardState]) -> dict[int, int]:
    """Each worker's next push number after a resume: one past the last any shard saw."""
    out: dict[int, int] = {}
    for _, meta in states:
        for w, s in meta.get("last_seq", {}).items():
            out[int(w)] = max(out.get(int(w), 0), s + 1)
    return out
