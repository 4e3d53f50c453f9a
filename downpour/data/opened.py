"""A run's data opened once: ``downpour train`` reads a new run's files before its folder is made (a run refused for
its data, every file unreadable or too few samples for its workers, then makes no folder at all), and its runner
takes what was read instead of reading the files again.

    opened = Opened.read(cfg.data, cfg.seed, stream_ok)     # before the folder: refused here, nothing made
    data = open_data_once(cfg.data, cfg.seed, stream_ok, opened)   # the runner: taken, not read again
"""
from __future__ import annotations

from dataclasses import dataclass

from downpour.config import DataConfig
from downpour.data.dataset import Dataset
from downpour.data.pipeline import open_data
from downpour.data.stream import StreamingData


@dataclass
class Opened:
    """The data :func:`~downpour.data.pipeline.open_data` gave for ``cfg``, ``seed`` and ``stream_ok``, held until
    the runner takes it (:meth:`take`): held no longer, so the in-memory load (up to 1 GiB decoded) is not kept
    beside the run's no-faces twin or its analysis."""
    cfg: DataConfig
    seed: int
    stream_ok: bool
    data: Dataset | StreamingData | None

    @classmethod
    def read(cls, cfg: DataConfig, seed: int, stream_ok: bool = True) -> "Opened":
        return cls(cfg, seed, stream_ok, open_data(cfg, seed, stream_ok=stream_ok))

    def take(self, cfg: DataConfig, seed: int, stream_ok: bool) -> Dataset | StreamingData | None:
        """The data held, given up, where they are those of ``cfg``, ``seed`` and ``stream_ok``; else None, and
        dropped all the same (never two loads in memory at once)."""
        data, self.data = self.data, None
        return data if (cfg, seed, stream_ok) == (self.cfg, self.seed, self.stream_ok) else None


def open_data_once(cfg: DataConfig, seed: int, stream_ok: bool = True,
                   opened: Opened | None = None) -> Dataset | StreamingData:
    """What ``opened`` holds for these arguments (read before the run's folder was made), else
    :func:`~downpour.data.pipeline.open_data`'s."""
    data = opened.take(cfg, seed, stream_ok) if opened is not None else None
    return data if data is not None else open_data(cfg, seed, stream_ok=stream_ok)
