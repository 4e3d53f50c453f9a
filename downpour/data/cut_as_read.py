"""A folder's samples cut as each file is read, in memory: what the load holds of an image is its crops or patches and
its size (a read-only view of one zero: its shape, what :func:`~downpour.data.patches.enlarged` and the patches' draws
read), not its pixels. 300 mixed images (131 MB of files) peak at 324 MB RSS in crops mode and 332 MB in patches
mode, where holding every decoded image until all are cut peaked at 805 and 838 MB (docs/data.md). The samples are the
same.

- crops: each image's (:func:`~downpour.data.patches.crop_images`) depend on it alone.
- patches: their images and positions are drawn from every image's size (:func:`~downpour.data.patches.patch_draws`),
  so the sizes are read from the headers first (:func:`~downpour.data.folder.upright_size`), drawn, and each image is
  cut as read; where a file decodes to another size than its header said, or fails after its header read, the draws
  are made again from the sizes read, and the images they pick read a second time.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from downpour.data.folder import image_files, load_folder, read_scaled, upright_size
from downpour.data.images import UNREADABLE, ImageSet
from downpour.data.patches import crop_images, cut_patches, decode_rule, patch_draws
from downpour.errors import DataError

if TYPE_CHECKING:
    from downpour.config import DataConfig

Views = tuple[np.ndarray, np.ndarray, list[dict[str, str]]]   # (samples, source image of each, images that gave none)


def _size_of(image: np.ndarray) -> np.ndarray:
    return _sized(image.shape, image.dtype)


def _sized(shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
    """A read-only view of one zero with ``shape``: an image's size, not its pixels."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def _decoding(cfg: DataConfig) -> tuple[int, int, int]:
    """(JPEG shrink, tile, decode rule): how the folder's files are read, by the load, the headers and a reread."""
    return cfg.jpeg_shrink(), cfg.tile, decode_rule(cfg)


def _load(cfg: DataConfig, keep: Callable[[np.ndarray, int, str], np.ndarray]) -> ImageSet:
    return load_folder(cfg.path, cfg.grey, cfg.labels, *_decoding(cfg), keep)


def folder_views(cfg: DataConfig, rng: Callable[[], np.random.Generator]) -> tuple[ImageSet, Views]:
    """(the folder's images, each its size alone; its samples as :func:`~downpour.data.build.build_dataset` cuts
    them). ``rng``: a new generator of the patches' draws, each call the same."""
    return _crops(cfg) if cfg.mode == "crops" else _patches(cfg, rng)


def _crops(cfg: DataConfig) -> tuple[ImageSet, Views]:
    cuts: list[np.ndarray] = []

    def keep(image: np.ndarray, scale: int, name: str) -> np.ndarray:
        cuts.append(crop_images(ImageSet([image], [name], scales=[scale]), cfg.size, cfg.tile)[0])
        return _size_of(image)

    images = _load(cfg, keep)
    return images, (np.concatenate(cuts), np.repeat(np.arange(len(cuts)), [len(c) for c in cuts]), [])


def _headers(cfg: DataConfig) -> ImageSet:
    """The folder's images as their headers size them (a file whose header cannot be read left out, as it will be)."""
    root, channels, decoding = Path(cfg.path), 1 if cfg.grey else 3, _decoding(cfg)
    names, sizes = [], []
    for p in image_files(cfg.path, cfg.labels)[0]:
        try:
            h, w = upright_size(p, *decoding)
        except UNREADABLE:
            continue
        names.append(p.relative_to(root).as_posix())
        sizes.append(_sized((channels, h, w)))
    return ImageSet(sizes, names, root=str(root))


def _patches(cfg: DataConfig, rng: Callable[[], np.random.Generator]) -> tuple[ImageSet, Views]:
    told = _headers(cfg)
    try:        # said below, once, after the files' own skips (a redraw does not say the small ones again)
        draws = patch_draws(told, cfg.size, cfg.samples, rng(), said=True)[1]
    except DataError:         # no size told fits a patch: the sizes read say it (or the load what it could not read)
        told, draws = ImageSet([], []), {}
    index = {name: i for i, name in enumerate(told.names)}
    pieces: dict[int, np.ndarray] = {}
    misled: list[str] = []

    def keep(image: np.ndarray, scale: int, name: str) -> np.ndarray:
        i = index.get(name)
        if i is None or image.shape[1:] != told.images[i].shape[1:]:
            misled.append(name)
        elif i in draws:
            pieces[i] = cut_patches(image, cfg.size, draws[i][1], draws[i][2])
        return _size_of(image)

    images = _load(cfg, keep)
    redraw = bool(misled) or images.names != told.names
    owner, draws, skipped = patch_draws(images, cfg.size, cfg.samples, rng())   # as from the headers unless redraw
    if redraw:
        pieces = {i: _reread(cfg, images, i, draws[i]) for i in draws}
    out = np.empty((cfg.samples, images.channels, cfg.size, cfg.size), dtype=np.float32)
    for i, (rows, _, _) in draws.items():
        out[rows] = pieces[i]
    return images, (out, owner, skipped)


def _reread(cfg: DataConfig, images: ImageSet, i: int, draw: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Image ``i``'s patches at ``draw``, from its file read again."""
    path = Path(images.file(images.names[i]))
    try:
        image = read_scaled(path, cfg.grey, *_decoding(cfg))[0]
    except UNREADABLE as err:
        raise DataError(f"{path}: read, then unreadable while its patches were cut "
                        f"({type(err).__name__}: {err})") from err
    if image.shape != images.images[i].shape:
        raise DataError(f"{path}: changed while the folder was read ({images.images[i].shape[2]}x"
                        f"{images.images[i].shape[1]}, then {image.shape[2]}x{image.shape[1]})")
    return cut_patches(image, cfg.size, draw[1], draw[2])
