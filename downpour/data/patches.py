"""From images of any size to a fixed-size stack: random patches, or crops resized to size x size.

- ``patches``: ``n`` windows of ``size`` x ``size`` at native resolution. Each patch first picks an
  image uniformly (so one huge photo does not drown the small ones, as in UFLDL's sampleIMAGES),
  then a uniform position inside it. Images smaller than the window cannot give a patch and are
  reported as skipped, by file (a video's frames: its file, skipped once, as a stream skips it).
- ``crops``: every image once, whole: its centred square, resized to ``size`` x ``size``. With
  ``tile`` > 0 an image is first cut into a centred grid of ``tile`` x ``tile`` squares (images with a
  side under ``tile`` give their centred square), so a large photo yields many views at one scale.
  A square smaller than ``size`` is enlarged (bilinear: a blur), counted and said (:func:`enlarged`: a 4x4
  thumbnail trains as a 32x32 blur, which the user should hear of).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

import downpour.config.sections as sections
from downpour.config.sections import JPEG_DECODE
from downpour.data.images import ImageSet, item_noun, resize, skip, too_small
from downpour._names import plural
from downpour.errors import ConfigError, DataError

if TYPE_CHECKING:
    from downpour.config import DataConfig

log = logging.getLogger("downpour.data")


def sample_patches(images: ImageSet, size: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """-> (patches (n, C, size, size) float32, source image index (n,), skipped images)."""
    owner, draws, skipped = patch_draws(images, size, n, rng)
    out = np.empty((n, images.channels, size, size), dtype=np.float32)
    for i, (rows, top, left) in draws.items():
        out[rows] = cut_patches(images.images[i], size, top, left)
    return out, owner, skipped


def patch_draws(images: ImageSet, size: int, n: int, rng: np.random.Generator, said: bool = False
                ) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], list[dict[str, str]]]:
    """(:func:`sample_patches`'s source image index (n,), {image: (its rows, their tops, their lefts)}, skipped
    images): from the images' shapes alone, so a folder's may be drawn before its pixels are read. ``said``: the
    skips recorded, not logged (a draw from a folder's headers, said once when its files were read)."""
    if size < 1 or n < 1:
        raise ValueError(f"patches need size >= 1 and samples >= 1, got size={size}, samples={n}")
    # by file, as a stream skips its items: a video whose frames are too small is one file skipped, its frames unused
    # (not a skip per frame, "clip.mp4#frame0".."#frame2", which would count 3 in memory where a stream counts 1)
    files = [images.file(name) for name in images.names]
    small: dict[str, str] = {}          # file -> its first image too small, W x H
    for file, im in zip(files, images.images):
        if (im.shape[1] < size or im.shape[2] < size) and file not in small:
            small[file] = f"{im.shape[2]}x{im.shape[1]}"
    usable = [i for i, file in enumerate(files) if file not in small]
    skipped: list[dict[str, str]] = []
    for file, side in small.items():
        skip(skipped, file, too_small(side, size), said)
    if not usable:
        raise DataError(f"no image is at least {size}x{size}, so no {size}x{size} patch can be cut; "
                        f"lower data.size or use mode = \"crops\"")
    owner = np.asarray(usable)[rng.integers(0, len(usable), size=n)]
    # One draw of positions per image, in image order, so the result depends only on the seed.
    draws = {}
    for i in np.unique(owner):
        rows = np.flatnonzero(owner == i)
        shape = images.images[i].shape
        draws[int(i)] = (rows, rng.integers(0, shape[1] - size + 1, size=len(rows)),
                         rng.integers(0, shape[2] - size + 1, size=len(rows)))
    return owner, draws, skipped


def cut_patches(image: np.ndarray, size: int, top: np.ndarray, left: np.ndarray) -> np.ndarray:
    """(k, C, size, size): the windows of ``image`` (C, H, W) at (top, left)."""
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(1, 2))  # (C, H', W', s, s)
    return windows[:, top, left].transpose(1, 0, 2, 3)


# The rules of :func:`decode_reduction` (data.jpeg_decode), and TILE_MARGIN with its measurements, are declared beside
# the setting in :mod:`downpour.config.sections`; TILE_MARGIN is read from there at each call (bench/jpeg_draft.py
# --margin sets it there, so DataConfig.decode_rules_differ sees the same margin). data.json records the rule as
# ``jpeg_decode`` (one written before 2026-12-04 does not), and config.toml (one written before 2026-12-05 does not),
# and a resume decodes by it: else a tiled run begun under 1 and resumed under 2 would train on reduced tiles from the
# resume on.


def decode_record(cfg: DataConfig) -> dict[str, Any]:
    """data.json's (and analysis.json's) record of how its JPEGs were decoded, where data.jpeg_draft is read:
    ``jpeg_draft``, and with it on ``jpeg_decode``, the rule that reduced them (:func:`decode_rule`)."""
    if not cfg.reads_jpeg_draft():
        return {}
    return {"jpeg_draft": cfg.jpeg_draft, **({"jpeg_decode": decode_rule(cfg)} if cfg.jpeg_draft else {})}


def decode_rule(cfg: DataConfig) -> int:
    """data.jpeg_decode, the rule the crops' JPEGs are reduced by; ConfigError where it is unknown (0: a run whose
    config.toml and data.json predate its record) and the rules differ on these crops (``DataConfig.decode_rules_differ``): a
    resume must train on the pixels it began with."""
    if cfg.jpeg_decode == 0 and cfg.decode_rules_differ():
        raise ConfigError("data.jpeg_decode is unknown: the run's config.toml and data.json predate its record, and "
                          f"its {cfg.tile}-px tiles of JPEGs decode in full under rule 1 (runs begun 2026-12-04 "
                          "15:25-17:05 with data.jpeg_draft = true), reduced under rule 2 (begun since); resume with "
                          "--set data.jpeg_decode=1 or =2, as it began", key="data.jpeg_decode")
    return cfg.jpeg_decode or JPEG_DECODE


def decode_reduction(h: int, w: int, tile: int, size: int, rule: int = JPEG_DECODE) -> int:
    """The largest s of 8, 4, 2 at which an h x w JPEG may be decoded for crops of side ``size``, else 1: every side
    and every crop's offset whole s-pixel blocks, so each reduced crop is its native crop's pixels in any EXIF
    orientation (a centred square 4 native pixels off shifted a 3000x2000 photo's 250-px crop by half a pixel:
    mean error 0.021-0.027 from the full decode's, 0.0025 aligned; docs/data.md), and each crop still large enough:
    the centred square >= ``size`` at 1/s (the resize only shrinks), a ``tile`` grid's tiles (laid on native pixels:
    :func:`crop_images`) >= :data:`~downpour.config.sections.TILE_MARGIN` x ``size`` (``rule`` 1 decodes a tiled
    image in full, for a run begun under it)."""
    side, one = min(h, w), _one_square(h, w, tile)
    for s in (8, 4, 2):
        if h % s or w % s:
            continue
        if one and (max(h, w) - side) % (2 * s) == 0 and side // s >= size:
            return s
        # the grid's margins (h % tile, w % tile) are split in two: each half whole blocks
        if not one and rule >= 2 and tile % s == 0 and (h % tile) % (2 * s) == 0 and (w % tile) % (2 * s) == 0 \
                and tile // s >= sections.TILE_MARGIN * size:
            return s
    return 1


def _one_square(h: int, w: int, tile: int) -> bool:
    """Whether crops mode takes an h x w image's centred square alone (else a grid of ``tile`` squares)."""
    return tile <= 0 or min(h, w) < tile


def crop_count(h: int, w: int, tile: int, scale: int = 1) -> int:
    """How many squares :func:`_square_boxes` cuts an h x w image (decoded at 1/``scale``) into, none laid."""
    h, w = h * scale, w * scale
    return 1 if _one_square(h, w, tile) else (h // tile) * (w // tile)


def _square_boxes(h: int, w: int, tile: int, scale: int = 1) -> list[tuple[int, int, int]]:
    """(top, left, side) of the squares one image is cut into; ``scale``: the image was decoded at 1/scale of
    h*scale x w*scale native pixels, where the squares are laid (whole blocks: :func:`decode_reduction`)."""
    h, w = h * scale, w * scale
    if _one_square(h, w, tile):
        side = min(h, w)
        boxes = [((h - side) // 2, (w - side) // 2, side)]
    else:
        rows, cols = h // tile, w // tile
        top0, left0 = (h - rows * tile) // 2, (w - cols * tile) // 2   # centre the grid; margins are dropped
        boxes = [(top0 + r * tile, left0 + c * tile, tile) for r in range(rows) for c in range(cols)]
    return [(t // scale, l // scale, s // scale) for t, l, s in boxes]


def crop_images(images: ImageSet, size: int, tile: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """-> (crops (M, C, size, size) float32, source image index (M,)). Deterministic: no randomness. An image
    decoded reduced (``images.scale(i)`` > 1) is cut where its native pixels would be."""
    if size < 1:
        raise ValueError(f"crops need size >= 1, got {size}")
    stacks, owners = [], []
    for i, im in enumerate(images.images):
        boxes = _square_boxes(im.shape[1], im.shape[2], tile, images.scale(i))
        squares = np.stack([im[:, t:t + s, l:l + s] for t, l, s in boxes])   # (k, C, s, s), same s per image
        stacks.append(resize(squares, size))
        owners.append(np.full(len(boxes), i))
    if not stacks:
        raise DataError("no images to crop")
    return np.concatenate(stacks), np.concatenate(owners)


def enlarged(images: ImageSet, size: int, tile: int = 0) -> list[tuple[int, str]]:
    """(index, what was enlarged) of each image whose crops (:func:`crop_images`) are squares smaller than ``size``:
    'WxH', the image's, where it gives one square; 'WxH in TxT tiles' where it is cut in ``tile`` squares (a 48x48
    photo in 16x16 tiles at size 32 is no file smaller than data.size: its tiles are)."""
    found = []
    for i, im in enumerate(images.images):
        h, w, scale = im.shape[1], im.shape[2], images.scale(i)
        one = _one_square(h * scale, w * scale, tile)
        # the side of its squares, every one alike (:func:`_square_boxes`), without laying them: called per item read
        if (min(h, w) if one else tile // scale) < size:
            found.append((i, f"{w}x{h}" if one else f"{w}x{h} in {tile}x{tile} tiles"))
    return found


# the run folder's record of what its data did (data.telemetry writes it; a stopped run's ``stopped`` too): the
# files it skipped, read and enlarged (where crops mode counts them), the decoder's rule, the patches per image
DATA_JSON = "data.json"


def say_enlarged(entries: list[dict[str, str]], size: int, tile: int, total: int | None = None,
                 counted_in: str = DATA_JSON, whose: str = "this stream") -> None:
    """Warn once of the files crops mode enlarged to ``size`` x ``size``: ``total`` of them (in memory, and a stream's
    run at its end: :func:`~downpour.data.telemetry.record_data`), or the first a stream met (``total`` None, ``whose``:
    the stream, a worker's by its number, so that the workers do not say it alike, and a line says how many).
    ``counted_in``: the record
    that counts them, another than a run's data.json for an analysis's labelled folder, whose size is the model's input
    (its warning names no data.json, which no analysis writes, and does not say to lower data.size)."""
    first = entries[0]
    noun = item_noun(first["file"])
    many = plural(total, noun) if total is not None else f"a {noun}"
    tiled = 0 < tile < size       # every tile enlarged: the files themselves need not be small
    what = f"the {tile}x{tile} tiles (data.tile) of {many}, smaller than data.size = {size}," if tiled else \
        f"{many} smaller than data.size = {size}"
    fix = ((f"raise data.tile to {size} or more, " if tiled else "") + f"lower data.size, or leave such {noun}s out"
           if counted_in == DATA_JSON else f"the model takes {size}x{size}: leave such {noun}s out")
    log.warning("crops mode enlarged %s to %dx%d (bilinear: a blur), e.g. %s (%s)%s; %s counts them (n_upscaled) "
                "and names them (upscaled); %s", what, size, size, first["file"], first["size"],
                "" if total is not None else f", the first {whose} met (the run's end says how many)", counted_in, fix)
