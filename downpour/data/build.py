"""``build_dataset(cfg, seed)``: a source, then patches or crops, normalisation, whitening, augmentation.

The pipeline, in order:
1. load the source into an :class:`ImageSet` (unreadable files skipped and named);
2. ``patches`` (random windows) or ``crops`` (whole images / tiles resized) of side ``size``;
   the ~15 built-in photographs would give only ~15 whole-image crops, so with ``tile = 0`` they
   are cut into tiles of ``2 * size`` pixels instead (a 512-px photo gives 64 views at size 32);
3. shuffle the rows once with the seed, so the contiguous slices of :meth:`Dataset.shard` are
   each a fair sample of the whole set (worker 0 does not get all the faces); with
   ``data.split = "by-label"`` the shuffled rows are then sorted by label, so they are not
   (heterogeneous workers, each seeing a few labels);
4. normalisation and ZCA (:mod:`preprocess`), fitted on the whole set before sharding, so every
   worker sees the same input space; ``Dataset.prepare`` replays them on new images;
5. attach the augmentation, which :meth:`Dataset.batches` applies per batch.
Every random choice comes from ``seed`` through separate NumPy streams: same seed, same bits.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from downpour.config import FACE_SOURCES, FILE_SOURCES, ConfigError, DataConfig
from downpour.data.arrays import array_header, check_array_path, load_array, npz_keys, npz_labels
from downpour.data.augment import Augment
from downpour.data.builtin import digit_images, lfw_images, lfw_train_faces, natural_images
from downpour.data.dataset import Dataset
from downpour.data.digits_split import digits_split, split_record
from downpour.data.cut_as_read import folder_views
from downpour.data.folder import class_labels, hidden, image_extensions, image_files, walk_files
from downpour.data.gaussian import gaussian_samples
from downpour.data.images import ImageSet
from downpour.data.patches import (DATA_JSON, crop_images, decode_record, decode_rule, enlarged, sample_patches,
                                   say_enlarged)
from downpour.data.preprocess import Preprocess, fit_needs, too_few_to_fit
from downpour.data.video import load_videos
from downpour.data.video_list import VIDEO_EXTENSIONS, video_files
from downpour.data.whitening import MAX_DIM

# Independent random streams, so changing e.g. the mix does not change the natural patches' draw.
_NATURAL, _FACES, _ORDER, _PICK = 1, 2, 3, 4


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def check_files(cfg: DataConfig) -> None:
    """DataError unless the files a file source reads look readable, before a run directory is made (and on
    a dry run): an image or video folder holds at least one such file (a walk that stops at the first; the
    full listing, for its message, only when there is none), with ``data.labels`` none at its top level;
    a .npy's header reads as a numeric image array, a .npz holds ``x`` (and ``y``, class numbers) alone. What only
    decoding finds (every image unreadable) is found when the run loads its data."""
    path = Path(cfg.path)
    if cfg.source == "array":
        check_array_path(path)                # its suffix, that it exists, its magic
        if path.suffix == ".npy":
            array_header(str(path))
        else:
            npz_labels(path)                  # its keys, and y's labels (x is not decompressed)
    elif cfg.source == "folder" and not _holds(path, image_extensions()):
        image_files(cfg.path, cfg.labels)          # raises, naming the folder and what it holds
    elif cfg.source == "folder" and cfg.labels and path.is_dir() and any(
            p.is_file() and p.suffix.lower() in image_extensions() and not hidden(p, path) for p in path.iterdir()):
        image_files(cfg.path, cfg.labels)          # raises, naming the images at the top level
    elif cfg.source == "video" and Path(cfg.path).is_dir() and not _holds(Path(cfg.path), VIDEO_EXTENSIONS):
        video_files(Path(cfg.path))


def _holds(root: Path, suffixes: set[str]) -> bool:
    """Whether a file with one of ``suffixes`` lies under ``root`` outside hidden files and folders (as
    :func:`~downpour.data.folder.image_files` counts them); stops at the first."""
    return any(p.suffix.lower() in suffixes and not hidden(p, root) for p in walk_files(root))


def check_config(cfg: DataConfig) -> None:
    """Raise ConfigError naming what in ``cfg`` does not fit together or is missing on disk (each
    field's own choices and range are checked by :class:`DataConfig` itself)."""
    if cfg.source in FILE_SOURCES and not cfg.path:
        raise ConfigError(f"data.source = {cfg.source!r} needs data.path")
    if cfg.source in FILE_SOURCES and not Path(cfg.path).exists():
        # (a shell leaves --set data.path=~/x as typed: data.path is no variable; os.path's, as pathlib's raises
        # RuntimeError for a ~user that is none)
        home = Path(os.path.expanduser(cfg.path))
        tilde = f"; a ~ is not expanded here: data.path = {str(home)!r}" if home.exists() else ""
        raise ConfigError(f"data.path {cfg.path!r} does not exist (data.source = {cfg.source!r} reads it){tilde}",
                          key="data.path")   # (keyless, a resume's would be said to be a base-less file's default)
    if cfg.path and cfg.source not in FILE_SOURCES:   # it trained on the built-in set, silently
        raise ConfigError(f"data.path = {cfg.path!r} is read only by data.source = 'folder', 'video' or 'array'; "
                          f"data.source = {cfg.source!r} is built in: set data.source too, or drop data.path",
                          key="data.path")
    if cfg.source == "gaussian" and (cfg.shift or cfg.scale or cfg.flip):   # (a config file or a study's --set too)
        raise ConfigError(f"data.shift = {cfg.shift}, data.scale = {cfg.scale:g}, data.flip = {str(cfg.flip).lower()}: "
                          "data.source = 'gaussian' gives N(0, I) vectors, no image to shift, zoom or flip (and the "
                          "teacher-student's population loss assumes N(0, I) inputs); set them to 0 and false (a run trained with "
                          "them, by older code, cannot go on: start a new one, --config RUN/config.toml --set "
                          "data.flip=false ...)",
                          key="data.shift" if cfg.shift else "data.scale" if cfg.scale else "data.flip")
    if cfg.labels and cfg.source != "folder":
        raise ConfigError("data.labels = true only applies to data.source = 'folder'")
    if cfg.pipeline == "stream" and cfg.source not in FILE_SOURCES:
        raise ConfigError(f"data.pipeline = 'stream' reads files (data.source = folder, video or array); the built-in "
                          f"source {cfg.source!r} is small and held in memory: use data.pipeline = 'auto' or 'memory'")
    if cfg.pipeline == "stream" and cfg.source == "array" and Path(cfg.path).suffix != ".npy":
        raise ConfigError(f"data.pipeline = 'stream' memory-maps a .npy file; data.path {cfg.path!r} is not one "
                          "(an .npz is compressed: use data.pipeline = 'memory', or save x as .npy)")
    if cfg.split == "by-label" and not gives_labels(cfg):
        raise ConfigError(f"data.split = 'by-label' needs labelled data ({LABELLED_SOURCES}); {why_unlabelled(cfg)}",
                          key="data.split")
    if cfg.train_faces >= 0 and cfg.source not in FACE_SOURCES:
        raise ConfigError(f"data.train_faces = {cfg.train_faces} only applies to data.source = 'faces' or "
                          f"'natural+faces' (lfw's faces); data.source = {cfg.source!r} has none", key="data.train_faces")
    if cfg.train_faces > lfw_train_faces(cfg.lfw_fold()):
        raise ConfigError(f"data.train_faces = {cfg.train_faces}: the lfw training part ({cfg.lfw_heldout!r} split) "
                          f"holds only {lfw_train_faces(cfg.lfw_fold())} faces", key="data.train_faces")
    shape = sample_shape(cfg)
    if cfg.whiten == "zca" and math.prod(shape) > MAX_DIM:   # before any sampling
        raise ConfigError(f"data.whiten = 'zca' on {'x'.join(map(str, shape))} samples needs a {math.prod(shape)}-square "
                          f"matrix (limit {MAX_DIM}); lower data.size or whiten patches")


LABELLED_SOURCES = "digits, faces, gaussian, a folder with data.labels = true, or an .npz holding y"


def gives_labels(cfg: DataConfig) -> bool:
    """Whether ``cfg``'s samples come with class labels (read from an ``.npz``'s directory, nothing
    decompressed); natural+faces mixes photographs with lfw's images and labels none of them."""
    if cfg.source == "folder":
        return cfg.labels
    if cfg.source == "array":
        return Path(cfg.path).suffix == ".npz" and "y" in npz_keys(cfg.path)
    return cfg.source in ("digits", "faces", "gaussian")


def label_count(cfg: DataConfig) -> int | None:
    """How many classes a model must score to take ``cfg``'s labels (the largest label + 1), or None without
    labels: digits 10, faces 2, gaussian one per dimension (a row's argmax), a labelled folder its class
    sub-folders (listed), an ``.npz`` its ``y`` (read; ``x`` is not)."""
    if not gives_labels(cfg):
        return None
    if cfg.source in ("digits", "faces", "gaussian"):
        return {"digits": 10, "faces": 2}.get(cfg.source, cfg.size)
    if cfg.source == "folder":
        return len(class_labels(cfg.path, image_files(cfg.path, cfg.labels)[0])[0])
    y = npz_labels(cfg.path)
    return int(y.max()) + 1 if y is not None and y.size else None


def off_unit_interval(cfg: DataConfig) -> tuple[str, str] | None:
    """(the key, what it does) of the setting that takes ``cfg``'s samples out of [0, 1] whatever the images hold
    (a Bernoulli RBM takes only [0, 1]), or None. Built-in images, folders and videos are read into [0, 1];
    ``normalize = "ufldl"`` comes last and maps into [0.1, 0.9]; an array holds what it holds (found when loaded)."""
    if cfg.normalize == "ufldl":
        return None
    if cfg.normalize == "patch":
        return "data.normalize", "data.normalize = 'patch' (zero mean, unit std per sample)"
    if cfg.whiten != "none":
        return "data.whiten", f"data.whiten = {cfg.whiten!r}"
    return ("data.source", "data.source = 'gaussian' (N(0, I) vectors)") if cfg.source == "gaussian" else None


def why_unlabelled(cfg: DataConfig) -> str:
    """Why ``cfg``'s source gives no labels, naming it."""
    if cfg.source == "folder":
        return f"data.source = 'folder' ({cfg.path}) is read without them: set data.labels = true (one sub-folder per class)"
    if cfg.source == "array":
        return f"data.path {cfg.path!r} holds no y (a .npy is x alone; an .npz gives labels as its array 'y')"
    return f"data.source = {cfg.source!r} has none"


def sample_shape(cfg: DataConfig) -> tuple[int, int, int]:
    """(C, H, W) of the samples ``cfg`` gives (an array's too: its images are cut into data.size squares,
    their channels made to match data.grey, as a folder's are)."""
    if cfg.source == "gaussian":
        return (1, 1, cfg.size)
    return (1 if cfg.grey else 3, cfg.size, cfg.size)


def _load(cfg: DataConfig, seed: int) -> ImageSet:
    if cfg.source == "natural":
        return natural_images(cfg.grey)
    if cfg.source == "faces":
        return lfw_images(25, cfg.grey, cfg.lfw_fold(), cfg.train_faces)
    if cfg.source == "digits":
        images = _trained_digits(cfg.digits_heldout, seed)
        return images if cfg.grey else _to_rgb(images)
    if cfg.source == "video":
        return load_videos(cfg.path, cfg.frames_per_video, cfg.grey)
    return load_array(cfg.path, cfg.grey)


def _trained_digits(fraction: float, seed: int) -> ImageSet:
    """The digits a run trains on: all of them, less the ``fraction`` data.digits_heldout holds out with ``seed``
    (data.json's digits_heldout records the split)."""
    every = digit_images()
    keep = digits_split(len(every), fraction, seed)["train"]
    info = {**every.info, "digits_heldout": split_record(len(every), fraction, seed)}
    return ImageSet([every.images[i] for i in keep], [every.names[i] for i in keep],
                    [every.labels[i] for i in keep], info=info)


def _to_rgb(images: ImageSet) -> ImageSet:
    images.images = [np.repeat(im, 3, axis=0) for im in images.images]
    return images


def natural_tile(cfg: DataConfig) -> int:
    """The tile side used for the built-in photographs in crops mode (``data.tile``, or 2 * size if 0)."""
    return cfg.tile or 2 * cfg.size


def _views(images: ImageSet, cfg: DataConfig, n: int, rng: np.random.Generator,
           tile: int | None = None) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """(samples (M, C, size, size), source image of each (M,), images that gave nothing)."""
    if cfg.mode == "patches":
        return sample_patches(images, cfg.size, n, rng)
    x, owner = crop_images(images, cfg.size, cfg.tile if tile is None else tile)
    return x, owner, []


def _upscaled(images: ImageSet, cfg: DataConfig, counted_in: str) -> dict[str, Any]:
    """data.json's ``n_upscaled`` and ``upscaled`` [{file, size}]: the files whose crops were enlarged to data.size,
    each once, and said once: a folder's, video's or array's. The built-in sets' are by design (lfw's 25-px faces) and
    have no data.json, so a digits run in crops at size 16 does not list 'digits[0]' ... 'digits[1796]' in
    model.json (nor lfw's 140), as natural+faces (the main job, the same faces) lists none."""
    if cfg.source not in FILE_SOURCES:
        return {}
    files: dict[str, str] = {}
    for i, side in enlarged(images, cfg.size, cfg.tile):
        files.setdefault(images.file(images.names[i]), side)
    entries = [{"file": f, "size": side} for f, side in files.items()]
    if entries:
        say_enlarged(entries, cfg.size, cfg.tile, len(entries), counted_in)
    return {"n_upscaled": len(entries), "upscaled": entries} if entries else {}


def _labels(images: ImageSet, owner: np.ndarray) -> np.ndarray | None:
    return None if images.labels is None else np.asarray(images.labels, dtype=np.int64)[owner]


def _mixed(cfg: DataConfig, seed: int) -> tuple[np.ndarray, dict[str, Any], list[dict[str, str]], int]:
    """natural+faces: natural views plus views of the lfw training part, ``faces_fraction`` of them faces-source."""
    natural, faces = natural_images(cfg.grey), lfw_images(25, cfg.grey, cfg.lfw_fold(), cfg.train_faces)
    f = cfg.faces_fraction
    empty = (np.zeros((0, natural.channels, cfg.size, cfg.size), np.float32), np.zeros(0, np.int64), [])
    if cfg.mode == "patches":
        n_faces = round(cfg.samples * f)
        nat = _views(natural, cfg, cfg.samples - n_faces, _rng(seed, _NATURAL)) if n_faces < cfg.samples else empty
        fac = _views(faces, cfg, n_faces, _rng(seed, _FACES)) if n_faces else empty
    else:
        nat = _views(natural, cfg, 0, _rng(seed, _NATURAL), natural_tile(cfg)) if f < 1 else empty
        views, owner, _ = _views(faces, cfg, 0, _rng(seed, _FACES))
        n_faces = len(views) if f == 1 else round(len(nat[0]) * f / (1 - f))
        # Whole shuffled passes over the 140 lfw views until there are enough: every view is used
        # about equally often. Without augmentation (data.shift/scale/flip, off in the presets) a repeat is
        # the same crop: the share of face samples is reached by weight, not by new images.
        rng = _rng(seed, _PICK)
        pick = np.concatenate([rng.permutation(len(views)) for _ in range(-(-n_faces // len(views)))] or [empty[1]])[:n_faces]
        fac = (views[pick], owner[pick], [])
    face_labels = _labels(faces, fac[1])
    mix = {"natural_samples": len(nat[0]), "faces_source_samples": len(fac[0]),
           "of_which_faces": int(face_labels.sum()), "faces_fraction": f,
           "natural_images": natural.info["images"], "faces_split": faces.info["lfw_split"],
           "faces_trained_on": faces.info["faces_trained_on"]}
    return np.concatenate([nat[0], fac[0]]), mix, nat[2] + fac[2], len(natural) + len(faces)


def build_dataset(cfg: DataConfig, seed: int, counted_in: str = DATA_JSON) -> Dataset:
    """Build the training data described by ``cfg``; x is (N, C, size, size) float32. ``counted_in``: the record its
    info goes to, as the warning of crops enlarged names it (an analysis's labelled folder: not a run's data.json).

    Raises ConfigError for a bad setting and DataError for unusable data (empty folder, bad array),
    both naming the field, path or key. Files that cannot be read are skipped and listed in
    ``info["skipped"]`` instead.
    """
    if not isinstance(cfg, DataConfig):     # the whole run config is the likely slip from Python
        raise TypeError(f"build_dataset: cfg must be a DataConfig (a RunConfig's cfg.data), got a {type(cfg).__name__}")
    check_config(cfg)
    info: dict[str, Any] = {"source": cfg.source, "mode": cfg.mode, "size": cfg.size, "grey": cfg.grey}
    if cfg.mode == "crops":
        info["tile"] = natural_tile(cfg) if cfg.source.startswith("natural") else cfg.tile
    info.update(decode_record(cfg))
    if cfg.source == "natural+faces":
        x, info["mix"], skipped, n_images = _mixed(cfg, seed)
        y = None
        file_skips: list[dict[str, str]] = []
    elif cfg.source == "gaussian":
        x, y = gaussian_samples(cfg.samples, cfg.size, _rng(seed, _NATURAL))
        skipped, file_skips, n_images = [], [], cfg.samples
    else:
        if cfg.source == "folder":    # cut as each file is read: no decoded image held
            images, (x, owner, skipped) = folder_views(cfg, lambda: _rng(seed, _NATURAL))
        else:
            images = _load(cfg, seed)
            tile = natural_tile(cfg) if cfg.source == "natural" else None
            x, owner, skipped = _views(images, cfg, cfg.samples, _rng(seed, _NATURAL), tile)
        y = _labels(images, owner)
        file_skips, n_images = images.skipped, len(images)
        info.update(images.info)
        if cfg.mode == "crops":
            info.update(_upscaled(images, cfg, counted_in))   # (a file source's: its tile is data.tile)
    order = _rng(seed, _ORDER).permutation(len(x))
    if cfg.split == "by-label":   # checked above: y exists; stable, so each label's rows stay shuffled
        order = order[np.argsort(y[order], kind="stable")]
    info["split"] = cfg.split
    x = x[order]
    y = None if y is None else y[order]
    if len(x) < fit_needs(cfg.whiten):      # as the stream says it (a one-image folder of crops)
        item = {"folder": "image file", "video": "video frame", "array": "row"}.get(cfg.source, "image")
        raise too_few_to_fit(repr(cfg.path) if cfg.source in FILE_SOURCES else f"data.source {cfg.source!r}",
                             n_images, item, len(x), cfg.whiten)
    preprocess, xt, processing = Preprocess.fit(x, cfg.normalize, cfg.whiten, cfg.zca_eps, cfg.spectral_strength)
    info.update(processing)
    augment = Augment(cfg.shift, cfg.scale, cfg.flip)
    info["augment"] = {"shift": cfg.shift, "scale": cfg.scale, "flip": cfg.flip}
    skipped_all = file_skips + skipped
    info.update({"n_images": n_images, "n_samples": len(xt), "n_skipped": len(skipped_all), "skipped": skipped_all,
                 "x_mean": float(xt.mean()), "x_std": float(xt.std())})
    return Dataset(xt, None if y is None else torch.from_numpy(y), info, preprocess.whitener,
                   augment if augment.active else None, preprocess)
