"""What ``data.pipeline = 'auto'`` weighs: the bytes the in-memory path would hold, from the item count and up to
:data:`PROBES` evenly spaced items' headers (nothing is decoded).

- folder: the load cuts each file as it reads it (:mod:`~downpour.data.cut_as_read`) and keeps the samples, float32
  (C, data.size, data.size): crops mode each image's squares (one, or its data.tile grid: :func:`crop_count`),
  patches mode data.samples; plus the largest image it decodes, one at a time (a JPEG at its data.jpeg_draft
  reduction), from the probed headers and those of the :data:`LARGEST` largest files by bytes (a stat each: the
  evenly spaced probes alone would count a small image for a folder of small ones with one huge one off them).
  300 grey 1600x1200 JPEGs in patches mode count 9.8 MB and are held in memory: the load holds 2.4 MB of patches and
  decodes 7.3 MB at a time (docs/data.md); counting every decoded image would make them 2,197 MB, streamed.
- video: every frame it gives, decoded (the load holds them all before cutting): min(T, data.frames_per_video) a
  video, T its headers' count.
- .npy: its rows.
"""
from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from downpour.data.folder import decoded_size
from downpour.data.patches import crop_count, decode_rule
from downpour.data.video import decoded_pixels

if TYPE_CHECKING:
    from downpour.config import DataConfig
    from downpour.data.stream import Listing

PROBES = 16       # headers read to estimate a folder's or videos' size
LARGEST = 4       # and a folder's largest files by bytes, for the one image decoded at a time: a stat each, no header


@dataclass(frozen=True)
class Held:
    """Bytes the in-memory path holds: ``kept``, its samples (or decoded items, where it keeps them whole), and
    ``decoding``, one image being decoded on top of them (a folder's; 0 elsewhere)."""
    kept: int
    decoding: int = 0

    @property
    def total(self) -> int:
        return self.kept + self.decoding


def held_bytes(cfg: DataConfig, listing: Listing) -> Held:
    """:class:`Held` of ``cfg``'s data in memory, from ``listing`` and up to :data:`PROBES` items' headers (a
    folder's, and its :data:`LARGEST` largest files')."""
    n, channels = len(listing.items), 1 if cfg.grey else 3
    if cfg.source == "array":
        return Held(n * math.prod(listing.row_shape[-2:]) * channels * 4)
    probes = sorted({int(k) for k in np.linspace(0, n - 1, min(n, PROBES))}) if n else []
    read = [size for size in (_probe(cfg, listing.items[k]) for k in probes) if size[0]]
    if cfg.source != "folder":
        return Held(int(n * sum(p for p, _ in read) / len(read) * channels * 4) if read else 0)
    sample = channels * cfg.size * cfg.size * 4
    crops = int(n * sum(c for _, c in read) / len(read)) if read else 0
    kept = (crops if cfg.mode == "crops" else cfg.samples) * sample
    # the mean above is the spread probes'; the largest image may be off them: read the largest files' headers too
    read += [_probe(cfg, listing.items[k]) for k in _largest(listing.items, set(probes))]
    return Held(kept, max((p for p, _ in read), default=0) * channels * 4)


def _largest(paths: Sequence[str], probed: set[int]) -> list[int]:
    """The indices of the :data:`LARGEST` largest of ``paths`` by bytes, those in ``probed`` left out; a file that
    cannot be stat'ed is left to the reader, which names it."""
    sizes = []
    for k, path in enumerate(paths):
        try:
            sizes.append((os.stat(path).st_size, k))
        except OSError:
            continue
    return [k for _, k in heapq.nlargest(LARGEST, sizes) if k not in probed]


def estimate_bytes(cfg: DataConfig, listing: Listing) -> int:
    """Bytes the in-memory path would hold at its peak (:func:`held_bytes`)."""
    return held_bytes(cfg, listing).total


def _probe(cfg: DataConfig, path: str) -> tuple[int, int]:
    """(pixels one file decodes to, from its header: width x height, a video's times the frames it gives; the crops a
    folder's image gives in crops mode); (0, 0) for a file that cannot be read."""
    try:
        if cfg.source == "folder":
            # the header only, reduced as read_image decodes it: a 4032x3024 JPEG cropped to 32 px holds 1/64 of its
            # pixels (counted in full, 'auto' would stream folders 64x smaller than its threshold)
            w, h, scale = decoded_size(Path(path), cfg.jpeg_shrink(), cfg.tile, decode_rule(cfg))
            return w * h, crop_count(h, w, cfg.tile, scale)
        return decoded_pixels(Path(path), cfg.frames_per_video), 0
    except Exception:  # noqa: BLE001 -- an estimate: the reader names bad files later
        return 0, 0
