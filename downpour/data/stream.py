"""The streamed dataset: a list of items (files, or rows of a memory-mapped ``.npy``), never the images.

    data = open_stream(cfg.data, seed)        # the driver: lists the files, fits the preprocessing on a sample
    mine = data.shard(0, 2)                   # worker 0 of 2: its own slice of the item list (nothing decoded)
    batches = mine.batches(64, torch.Generator().manual_seed(0))   # decoded on the fly by a DataLoader

What the driver does, and all it holds: (1) list the items (folder: the image files, sorted then
shuffled once with the seed, so each worker's contiguous slice is a fair sample of the whole set;
video: the video files, likewise; array: the row range ``range(N)`` of one ``.npy``, split into
contiguous row ranges); (2) fit the normalisation and whitening on a seeded sample of
``data.fit_sample`` items (the only images the driver ever decodes, in its own process; none when
nothing is fitted).
A shard is that list's slice plus the fitted statistics: what a Ray worker is sent. It then opens
only its own files (:mod:`downpour.data.loader`). Duck-types :class:`~downpour.data.dataset.Dataset`
where the runners use it: ``input_shape``, ``info``, ``preprocess``, ``__len__``, ``shard``, ``batches``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from downpour._names import plural
from downpour.config import FILE_SOURCES, DataConfig
from downpour.data.augment import Augment
from downpour.data.dataset import shard_range
from downpour.data.arrays import array_header
from downpour.data.folder import class_labels, image_listing
from downpour.data.left_out import left_out, say_left_out
from downpour.data.images import is_too_small, skip
from downpour.data.loader import StreamBatches
from downpour.data.preprocess import Preprocess, fit_needs, fitted, too_few_to_fit
from downpour.data.patches import decode_record, decode_rule
from downpour.data.reader import Cut, ItemReader
from downpour.data.video import frames_taken
from downpour.data.video_list import video_files
from downpour.errors import DataError

STREAMED = FILE_SOURCES    # the sources that can stream; the built-in ones are in memory
_SHUFFLE, _FIT, _PROBE = 14, 15, 16         # NumPy streams: the item list's one shuffle, the fitting sample, the probe


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


@dataclass
class Listing:
    """A source's items, in the order they are listed (sorted files, or rows)."""
    items: Sequence[Any]                # file paths (str) or range(N) of rows
    labels: np.ndarray | None = None    # (N,) int64 class per item (folder with data.labels)
    info: dict[str, Any] | None = None  # classes, ignored files, the array's shape
    row_shape: tuple[int, ...] = ()     # array: one row's (H, W) or (C, H, W)


def item_name(source: str) -> str:
    """What one streamed item of ``source`` is, for messages and ``info["item"]``."""
    return {"folder": "image file", "video": "video file"}.get(source, "row")


def list_items(cfg: DataConfig) -> Listing:
    """The items of ``cfg``'s source (folder, video or ``.npy``); errors name the path."""
    if cfg.source == "folder":
        files, info = image_listing(cfg.path, cfg.labels)
        labels = None
        if cfg.labels:     # numbered as the in-memory path numbers them: every class folder, read or not
            classes, class_of = class_labels(cfg.path, files)
            labels = np.asarray(class_of, dtype=np.int64)
            info["classes"] = classes
        return Listing([str(p) for p in files], labels, info)
    if cfg.source == "video":
        unlisted: list[dict[str, str]] = []
        aliases: list[dict[str, str]] = []
        videos, ignored = video_files(Path(cfg.path), unlisted, aliases)
        return Listing([str(p) for p in videos], None, {"n_ignored": ignored, **left_out(unlisted, aliases)})
    if Path(cfg.path).suffix != ".npy":
        raise DataError(f"data.pipeline = 'stream' memory-maps a .npy file; {cfg.path!r} is not one "
                        "(an .npz is compressed: load it in memory, or save x as .npy)")
    shape = array_header(cfg.path)
    return Listing(range(shape[0]), None, {"array_shape": list(shape)}, shape[1:])


class StreamingData:
    """Items of one source and what turns them into training batches; see the module docstring.

    ``items``: file paths or a ``range`` of rows; ``labels`` (N,) or None; ``preprocess``: fitted on
    the driver's sample, applied per batch; ``augment`` or None; ``info``: JSON-able provenance.
    """

    def __init__(self, cfg: DataConfig, items: Sequence[Any], labels: np.ndarray | None, cut: Cut,
                 preprocess: Preprocess, augment: Augment | None, info: dict[str, Any]):
        self.cfg, self.items, self.labels, self.cut = cfg, items, labels, cut
        self.preprocess, self.augment, self.info = preprocess, augment, info
        self.source, self.path, self.frames = cfg.source, cfg.path, cfg.frames_per_video

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.cut.channels, self.cut.size, self.cut.size)

    @property
    def whitener(self) -> Any:
        return self.preprocess.whitener

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"StreamingData({self.source}, items={len(self)}, shape={self.input_shape})"

    def shard(self, i: int, n: int) -> "StreamingData":
        """Worker ``i`` of ``n``: items [i*N//n, (i+1)*N//n) of the (already shuffled) list: by file,
        disjoint, covering every item. Nothing is read."""
        start, stop = shard_range(i, n, len(self), "files" if self.source != "array" else "rows")
        info = copy.deepcopy(self.info)
        info.update({"n_items": stop - start, "shard": {"index": i, "of": n, "start": start, "stop": stop}})
        labels = None if self.labels is None else self.labels[start:stop]
        return StreamingData(self.cfg, self.items[start:stop], labels, self.cut, self.preprocess, self.augment, info)

    def batches(self, batch_size: int, generator: torch.Generator,
                position: dict[str, int] | None = None) -> StreamBatches:
        """Endless ``Batch`` stream, seeded by ``generator``'s seed (it draws nothing from it), from
        ``position`` (:meth:`StreamBatches.position`) on."""
        return StreamBatches(self, batch_size, generator.initial_seed(), position)


def _fit(cfg: DataConfig, listing: Listing, cut: Cut, seed: int) -> tuple[Preprocess, dict[str, Any]]:
    """The preprocessing fitted on ``data.fit_sample`` seeded items of the whole list (none read when
    nothing is fitted); returns it and what the fit read."""
    if cfg.normalize == "none" and cfg.whiten == "none":
        return Preprocess(), {"normalization": {"normalize": "none"}, "whitening": {"method": "none"},
                              "fit_sample": {"items": 0}}
    n = len(listing.items)
    pick = np.sort(_rng(seed, _FIT).choice(n, size=min(cfg.fit_sample, n), replace=False))
    reader = ItemReader(cfg.source, [listing.items[int(k)] for k in pick], cut, seed, cfg.path, None,
                        cfg.frames_per_video)
    keys = [(0, p, p) for p in range(len(pick))]
    # in this process: the driver's reads are only these, and a few seconds at the default 1,000 items
    # its own generator: from torch's global RNG, the loader's seed draw moved the model's initial weights, so a
    # streamed run trained another model than the in-memory one on the same samples (one image: loss 80.63 vs 64.99)
    loader = DataLoader(reader, batch_size=32, sampler=keys, collate_fn=reader.collate, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))
    xs, skipped, truncated, upscaled = [], [], [], []
    for chunk in loader:
        xs.append(chunk["x"])
        for (_, _, k), bad in zip(chunk["keys"], chunk["bad"]):
            if bad:       # logged as a worker's skip is, not only named in data.json and its count
                skip(skipped, reader.name(k), bad)
        truncated += [cut for cut in chunk["truncated"] if cut]
        upscaled += [small for small in chunk["upscaled"] if small]
    x = torch.cat(xs).numpy()
    if len(x) < fit_needs(cfg.whiten):
        if not skipped and len(pick) == n:     # every item was sampled and read: the data are too few
            raise too_few_to_fit(repr(cfg.path), n, item_name(cfg.source), len(x), cfg.whiten)
        if not skipped:       # every sampled item was read: the sample is too small, not the data bad
            raise DataError(f"data.fit_sample = {cfg.fit_sample}: its {plural(len(pick), 'item')} gave "
                            f"{plural(len(x), 'sample')}, and fitting {fitted(cfg.whiten)} needs at least "
                            f"{fit_needs(cfg.whiten)}; raise data.fit_sample")
        # an image smaller than the patch is named first: the cause is then data.size (a folder of 48x64 images
        # under data.size = 100 is not told of its one corrupt file, as the in-memory load is not)
        small = [e for e in skipped if is_too_small(e["reason"], cut.size)]
        first, fix = (small[0], '; lower data.size or use mode = "crops"') if small else (skipped[0], "")
        raise DataError(f"{cfg.path!r}: only {len(x)} of the {len(pick)} sampled items gave a sample to fit "
                        f"data.normalize / data.whiten on (first bad: {first['file']}: {first['reason']}){fix}")
    preprocess, xt, info = Preprocess.fit(x, cfg.normalize, cfg.whiten, cfg.zca_eps, cfg.spectral_strength)
    info["fit_sample"] = {"items": len(pick), "samples": len(x), "n_skipped": len(skipped), "skipped": skipped,
                          **({"truncated": truncated} if truncated else {}),
                          **({"n_upscaled": len(upscaled), "upscaled": upscaled} if upscaled else {}),
                          "x_mean": float(xt.mean()), "x_std": float(xt.std())}
    return preprocess, info


PROBED_VIDEOS = 64      # headers read to learn how many frames a video gives


def _frames_per_item(cfg: DataConfig, items: Sequence[Any], seed: int) -> float | None:
    """Images per item, so data.samples stays samples per pass: 1, or for videos the mean of min(T, k) over a
    seeded sample of the frame counts their headers give (k = data.frames_per_video; Matroska and WebM: duration x
    frame rate). Assuming k frames a video would give k = 100 on 24-frame videos a pass of 72 samples for
    data.samples = 300 (in memory: 300)."""
    if cfg.source != "video":
        return 1.0
    pick = _rng(seed, _PROBE).choice(len(items), size=min(PROBED_VIDEOS, len(items)), replace=False)
    return frames_taken([items[int(k)] for k in pick], cfg.frames_per_video) or float(cfg.frames_per_video)


def open_stream(cfg: DataConfig, seed: int, listing: Listing | None = None, per_image: int | None = None, *,
                say: bool = True) -> StreamingData:
    """The driver's side of a streamed source: list, shuffle once, fit the preprocessing on a sample.
    ``per_image``: the patches to cut per image (data.mode = "patches"), instead of data.samples over the
    images: what a resumed run began with. ``say``: log what the listing left out (False: a run's second open,
    whose first said it)."""
    listing = listing or list_items(cfg)
    if say:                                     # once per run: the listing logged nothing
        say_left_out(cfg.path, listing.info or {})
    n = len(listing.items)
    items, labels = listing.items, listing.labels
    if not isinstance(items, range):            # files: one seeded shuffle, so contiguous shards are fair
        order = _rng(seed, _SHUFFLE).permutation(n)
        if cfg.split == "by-label":             # (checked: labelled) unless sorted by label, as in memory
            order = order[np.argsort(labels[order], kind="stable")]
        items = [items[k] for k in order]
        labels = None if labels is None else labels[order]
    frames = _frames_per_item(cfg, items, seed) if cfg.mode == "patches" else None
    if cfg.mode != "patches":
        per_image = 0
    elif per_image is None:
        per_image = max(1, round(cfg.samples / (n * (frames or 1))))
    cut = Cut(cfg.mode, cfg.size, cfg.tile, per_image, cfg.grey, cfg.jpeg_shrink(), decode_rule(cfg))
    preprocess, processing = _fit(cfg, listing, cut, seed)
    augment = Augment(cfg.shift, cfg.scale, cfg.flip)
    item = item_name(cfg.source)
    info = {"source": cfg.source, "pipeline": "stream", "path": cfg.path, "mode": cfg.mode, "size": cfg.size,
            "grey": cfg.grey, "n_items": n, "item": item, "split": cfg.split, **(listing.info or {}), **processing,
            "augment": {"shift": cfg.shift, "scale": cfg.scale, "flip": cfg.flip},
            "loader": {"workers": cfg.loader_workers, "prefetch": cfg.prefetch}}
    if per_image:
        info["patches_per_image"] = per_image
    if frames is not None and cfg.source == "video":
        info["frames_per_video_declared"] = round(frames, 2)
    if cfg.mode == "crops":
        info["tile"] = cfg.tile
    info.update(decode_record(cfg))
    return StreamingData(cfg, items, labels, cut, preprocess, augment if augment.active else None, info)
