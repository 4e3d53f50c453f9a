"""Server checkpoints: every shard's parameters, update-rule state and staleness log in one
safetensors file, and the counters (versions, clocks, push numbers, step) in its JSON twin.

    save_server(run.checkpoints / "server", [shard.state_dict() ...], {"step": 400, ...})
    states, meta = load_server(run.checkpoints / "server")
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from torch import Tensor

from downpour.ps.sim_state import sim_layouts
from downpour.ps.staleness import COLUMNS
from downpour.train.checkpoint import CheckpointError, load_state, save_state
from downpour.train.checkpoint_checks import check_counts, check_finite, check_streams
from downpour.train.flat import ParamLayout, slice_words

ShardState = tuple[dict[str, Tensor], dict[str, Any]]
SERVER = "server"  # the server checkpoint's stem under a run's checkpoints/


def save_server(stem: str | Path, states: list[ShardState], meta: dict[str, Any],
                driver: dict[str, Tensor] | None = None, params: ParamLayout | None = None,
                words: dict[str, str] | None = None) -> None:
    """Write ``stem.safetensors`` (tensors ``shard<j>.<name>``, and the driver's own, e.g. the simulator's
    ``sim.*``) and ``stem.json``. ``params``: the trained model's flat layout, whose names and shapes each shard's
    metadata then lists (without it, the metadata says only the shard's range); ``words``: what some of those
    parameters are (:meth:`~downpour.train.flat.ParamLayout.describe`'s)."""
    tensors = {f"shard{j}.{k}": v for j, (t, _) in enumerate(states) for k, v in t.items()}
    save_state(stem, {**tensors, **(driver or {})}, {**meta, "shards": [m for _, m in states]},
               _layouts(states, params, words) | sim_layouts(driver or {}, params, words))


def _layouts(states: list[ShardState], params: ParamLayout | None = None,
             words: dict[str, str] | None = None) -> dict[str, str]:
    """Each shard's parameters and staleness log in words (the safetensors metadata, for a reader without downpour)."""
    out = {}
    for j, (t, m) in enumerate(states):
        start, end = m["start"], m["start"] + t["params"].numel()
        out[f"shard{j}.params"] = slice_words(start, end, params, words)
        if "log" in t:
            out[f"shard{j}.log"] = (f"(pushes {len(t['log'])}, columns {len(COLUMNS)}): one row per push applied: "
                                    f"({', '.join(COLUMNS)})")
        out |= {f"shard{j}.{name}": f"(elements {t[name].numel()}): the server's update rule's ({m['rule']}) "
                f"{name[len('rule.'):]}, a value per element of shard{j}.params"
                for name in t if name.startswith("rule.")}   # rule.sum_sq, rule.exp_avg..
    return out


def load_server(stem: str | Path, meta_keys: tuple[str, ...] = ()) -> tuple[list[ShardState], dict[str, Any]]:
    """The shards' states and the counters saved with them (the driver's tensors, if any, under
    ``meta["tensors"]``); a damaged file, or one lacking a shard list or one of ``meta_keys``, or whose
    workers' streams or patch count cannot be gone on from, is a CheckpointError naming it."""
    tensors, meta = load_state(stem, meta_keys=("shards", *meta_keys))
    check_counts(meta, [key for key in ("step",) if key in meta_keys], stem)
    check_streams(meta, stem)
    check_finite({k: v for k, v in tensors.items() if k.startswith("shard")}, str(stem) + ".safetensors")
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


@contextmanager
def restoring(stem: str | Path) -> Iterator[None]:
    """Restoring from the server checkpoint ``stem``: a key its JSON lacks or a value of the wrong kind
    (valid JSON that verifies, its digest written anew by a tool, or written before 2026-12-05 without one: load_state
    refuses an edit that left the digest) is a CheckpointError naming the file and the key, not a bare KeyError from
    deep inside a restore."""
    where = str(Path(stem).with_suffix(".json"))
    try:
        yield
    except KeyError as err:
        raise CheckpointError(f"checkpoint file {where!r} lacks key {err.args[0]!r}: it is damaged; resume from "
                              "an intact copy, or start the run again") from None
    except (TypeError, ValueError, AttributeError, IndexError) as err:
        raise CheckpointError(f"checkpoint file {where!r} holds a value of the wrong kind ({err}): it is damaged; "
                              "resume from an intact copy, or start the run again") from None
