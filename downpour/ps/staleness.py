"""The staleness log and what is made of it: staleness.json's histograms.

A shard logs every push it applies as one row ``(worker, seq, base, applied)``: the worker, the
worker's push number, the shard version the gradient was computed from, and the version it was
applied to. Staleness = applied − base: how many updates the worker did not see.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

import torch
from torch import Tensor

COLUMNS = ("worker", "seq", "base", "applied")


class StalenessLog:
    """Rows of applied pushes, in the order the shard applied them."""

    def __init__(self, rows: Iterable[tuple[int, int, int, int]] = ()):
        self.rows: list[tuple[int, int, int, int]] = [tuple(map(int, r)) for r in rows]  # type: ignore[misc]

    def append(self, worker: int, seq: int, base: int, applied: int) -> None:
        self.rows.append((worker, seq, base, applied))

    def __len__(self) -> int:
        return len(self.rows)

    def staleness(self) -> list[int]:
        return [a - b for _, _, b, a in self.rows]

    def to_tensor(self) -> Tensor:
        """(n, 4) int64, columns :data:`COLUMNS`, for checkpoints."""
        return torch.tensor(self.rows, dtype=torch.int64).reshape(-1, 4)

    @classmethod
    def from_tensor(cls, t: Tensor) -> "StalenessLog":
        return cls(t.tolist())


def summarize(values: Iterable[int]) -> dict[str, Any]:
    """Histogram (staleness -> count), mean and max of some staleness values."""
    counts = Counter(values)
    n = sum(counts.values())
    return {
        "pushes": n,
        "mean": (sum(k * c for k, c in counts.items()) / n) if n else 0.0,
        "max": max(counts) if counts else 0,
        "histogram": {str(k): counts[k] for k in sorted(counts)},
    }


def staleness_report(logs: list[StalenessLog], **extra: Any) -> dict[str, Any]:
    """staleness.json: the histogram over all pushes, per worker and per shard.

    ``logs`` holds one log per shard; ``extra`` (consistency, rejected counts, events, ...) is
    stored alongside.
    """
    per_worker: dict[int, list[int]] = {}
    for log in logs:
        for w, _, b, a in log.rows:
            per_worker.setdefault(w, []).append(a - b)
    return {
        "overall": summarize(s for log in logs for s in log.staleness()),
        "per_worker": {str(w): summarize(v) for w, v in sorted(per_worker.items())},
        "per_shard": {str(i): summarize(log.staleness()) for i, log in enumerate(logs)},
        **extra,
    }
