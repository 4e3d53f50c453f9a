"""One item of a streamed source, read and cut into samples where it is needed.

An *item* is what a shard is split by: an image file (``folder``), a video file (``video``: its
``frames_per_video`` frames), or one row of a memory-mapped ``.npy`` (``array``). :class:`ItemReader`
is a map-style ``torch.utils.data.Dataset`` over one worker's items, so a ``DataLoader`` runs it in
its worker processes: an item key ``(epoch, position, k)`` -> the samples of item ``k``, cut exactly
as the in-memory path cuts them (the same :func:`read_image`, :func:`sample_frames`,
:func:`crop_images`, :func:`sample_patches`), so a streamed crop equals the in-memory crop of the
same file.

Patch positions draw from a NumPy stream keyed by (seed, epoch, item): a pure function of the key,
never of which process decoded the item or when, which is what keeps the simulator bit-for-bit
reproducible whatever ``data.loader_workers`` and ``data.prefetch`` are. A file that cannot be read
gives no samples and its reason; the training worker names it (:mod:`downpour.data.loader`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from downpour.config.sections import JPEG_DECODE
from downpour.data.arrays import _as_float
from downpour.data.folder import read_scaled
from downpour.data.images import UNREADABLE, ImageSet, is_too_small, match_channels, to_chw, too_small
from downpour.data.patches import crop_images, enlarged, sample_patches
from downpour.data.video import sample_frames
from downpour.errors import DataError

_PATCHES = 11     # the NumPy stream of patch positions, apart from the build's streams (build.py: 1-4)


@dataclass(frozen=True)
class Cut:
    """How the images of one item become samples: ``mode`` crops | patches, of side ``size``;
    ``tile`` as in crops mode; ``patches``: patches per image read; ``grey``: one channel; ``shrink_to``:
    the side JPEGs may be decoded down to (DataConfig.jpeg_shrink: crops mode's size, or 0), by ``rule``
    (data.jpeg_decode, the run's from its start)."""
    mode: str
    size: int
    tile: int
    patches: int
    grey: bool
    shrink_to: int = 0
    rule: int = JPEG_DECODE

    @property
    def channels(self) -> int:
        return 1 if self.grey else 3


class ItemReader(TorchDataset):
    """Items ``items`` (file paths, or a ``range`` of rows of the ``.npy`` at ``path``) of one source.

    ``labels``: one class per item (folder sources with ``data.labels``) or None. ``key`` for
    :meth:`__getitem__` is ``(epoch, position in the epoch's order, item index)``.
    """

    def __init__(self, source: str, items: Sequence[Any], cut: Cut, seed: int, path: str = "",
                 labels: np.ndarray | None = None, frames: int = 1):
        self.source, self.items, self.cut, self.seed = source, items, cut, seed
        self.path, self.labels, self.frames = path, labels, frames
        self._rows: np.ndarray | None = None     # the memory map, opened in the process that reads

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": None}  # never ship a mapping: each process maps the file itself

    def name(self, k: int) -> str:
        """What a skipped item is called in the log and the run's telemetry."""
        return f"{self.path}[{self.items[k]}]" if self.source == "array" else str(self.items[k])

    def images(self, k: int) -> ImageSet:
        """Item ``k`` as whole float32 (C, H, W) images in [0, 1] (floats as stored; a folder's JPEG possibly decoded
        reduced, its ``scales`` saying so), named ``k#j``; raises on a bad file."""
        c = self.cut
        if self.source == "folder":
            image, scale = read_scaled(Path(self.items[k]), c.grey, c.shrink_to, c.tile, c.rule)
            return ImageSet([image], [f"{k}#0"], scales=[scale])
        if self.source == "video":
            truncated: list[dict[str, Any]] = []
            frames = [to_chw(frame, c.grey) for frame in sample_frames(Path(self.items[k]), self.frames, truncated)]
            return ImageSet(frames, [f"{k}#{j}" for j in range(len(frames))], info={"truncated": truncated})
        if self._rows is None:
            self._rows = np.load(self.path, mmap_mode="r", allow_pickle=False)
        row = np.asarray(self._rows[self.items[k]])                 # reads this row's pages only
        x = _as_float(row[None] if row.ndim == 2 else row, self.name(k))
        if not np.isfinite(x).all():                                 # a bad row: skipped and named, as in memory
            raise DataError(f"{self.name(k)}: holds NaN or Inf values")
        return ImageSet([match_channels(x, c.channels)], [f"{k}#0"])

    def samples(self, images: ImageSet, epoch: int, k: int) -> np.ndarray:
        """(M, C, size, size) float32: the crops of ``images``, or ``patches`` per image at seeded positions."""
        c = self.cut
        if c.mode == "crops":
            return crop_images(images, c.size, c.tile)[0]
        small = [im for im in images.images if min(im.shape[1:]) < c.size]
        if small:
            raise DataError(too_small(f"{small[0].shape[2]}x{small[0].shape[1]}", c.size))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _PATCHES, epoch, k]))
        return sample_patches(images, c.size, c.patches * len(images), rng)[0]

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        """Item ``key[2]``'s samples (None: bad, and why), the record of a video cut short (None: whole), and of
        crops enlarged to ``size`` ({file, size} of its first image smaller; None: none)."""
        epoch, _, k = key
        truncated = None
        try:
            images = self.images(k)
            truncated = (images.info.get("truncated") or [None])[0]
            x = self.samples(images, epoch, k)
        except UNREADABLE as err:      # a bad file is skipped, never fatal
            # (too small for the patch: too_small's words alone, as the in-memory path's skip records them)
            bad = str(err) if is_too_small(str(err), self.cut.size) else f"{type(err).__name__}: {err}"
            return {"key": key, "x": None, "bad": bad, "truncated": truncated, "upscaled": None}
        small = enlarged(images, self.cut.size, self.cut.tile) if self.cut.mode == "crops" else []
        upscaled = {"file": self.name(k), "size": small[0][1]} if small else None
        return {"key": key, "x": x, "bad": None, "truncated": truncated, "upscaled": upscaled}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """A loader chunk: the good items' samples stacked (M, C, size, size), and per item its key,
        its sample count (0: bad), the reason it was bad, its truncation record and its enlargement's. Runs in the loader's
        worker process."""
        xs = [it["x"] for it in items if it["x"] is not None]
        x = np.concatenate(xs) if xs else np.zeros((0, self.cut.channels, self.cut.size, self.cut.size), np.float32)
        counts = [0 if it["x"] is None else len(it["x"]) for it in items]
        y = None
        if self.labels is not None:
            y = torch.from_numpy(np.repeat(self.labels[[it["key"][2] for it in items]], counts).astype(np.int64))
        return {"x": torch.from_numpy(np.ascontiguousarray(x)), "y": y, "keys": [it["key"] for it in items],
                "counts": counts, "bad": [it["bad"] for it in items], "truncated": [it["truncated"] for it in items],
                "upscaled": [it["upscaled"] for it in items]}
