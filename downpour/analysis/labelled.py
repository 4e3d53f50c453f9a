"""Labelled image sets the analyses score units on, resized to the model's input.

Built in: ``lfw`` (the held-out part of scikit-image's ``lfw_subset``: faces = 1, non-faces = 0) and
``digits`` (scikit-learn's 8×8 digits, classes 0-9). Any other name is an image folder with one
sub-folder per class. Every set comes back as float32 (N, C, H, W) at the model's input shape,
prepared like the run's training data (``x``), and as the fixed representation the baselines use
(``raw``: the images before any run-specific step; see :mod:`downpour.analysis.baselines`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from downpour.errors import DataError

BUILT_IN = ("lfw", "digits")


@dataclass
class LabelledSet:
    """Images and labels. ``x``: (N, C, H, W) float32 as the model sees them; ``y``: (N,) int64;
    ``classes[k]`` names label k; ``raw``: (N, C', H', W') the same images before resizing and the run's
    preparation, for the baselines (the same for every run). A set built without ``raw`` uses ``x``.
    ``pixels``: (N, C, H, W) the images resized to the model's input but not prepared: what a
    transform warps before the run's preparation (invariance curves). Without it, ``x``.
    """

    name: str
    x: Tensor
    y: np.ndarray
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    raw: Tensor | None = None
    pixels: Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise ValueError(f"labelled set {self.name!r}: x must be (N, C, H, W), got shape {tuple(self.x.shape)}")
        self.y = np.asarray(self.y, dtype=np.int64)
        if self.y.shape != (self.x.shape[0],):
            raise ValueError(f"labelled set {self.name!r}: {self.x.shape[0]} images but y has shape {self.y.shape}")
        if self.raw is None:
            self.raw = self.x
        if self.pixels is None:
            self.pixels = self.x
        if self.raw.ndim != 4 or self.raw.shape[0] != self.x.shape[0]:
            raise ValueError(f"labelled set {self.name!r}: raw must be (N, C, H, W) with N = {self.x.shape[0]}, "
                             f"got shape {tuple(self.raw.shape)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def counts(self) -> dict[str, int]:
        return {self.classes[k] if k < len(self.classes) else str(k): int((self.y == k).sum()) for k in np.unique(self.y)}


def resize_to(x: Tensor, input_shape: tuple[int, ...]) -> Tensor:
    """(N, C', H', W') images -> (N, C, H, W): antialiased bilinear resize; grey repeated or colour averaged."""
    c, h, w = input_shape
    x = x.float()
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.repeat(1, c, 1, 1)
        elif c == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise ValueError(f"cannot map {x.shape[1]}-channel images to a {c}-channel model")
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()


def prepare_images(x: Tensor, input_shape: tuple[int, ...], prepare: Callable[[Tensor], Tensor] | None) -> Tensor:
    """Images as a run's model sees them: resized to ``input_shape`` (C, H, W), then ``prepare``d -> float32."""
    x = resize_to(torch.as_tensor(x), input_shape)
    if prepare is not None:
        x = prepare(x)
    return x.float().contiguous()


def class_names(spec: str) -> list[str]:
    """The classes of a labelled set, in label order (label k is ``class_names(spec)[k]``), without decoding an
    image: a folder's are its top-level sub-folders that hold image files, sorted, as the data layer numbers them
    (an empty or hidden sub-folder is none). DataError for a folder that holds no image, or images at its top."""
    if spec == "lfw":
        return ["non-face", "face"]
    if spec == "digits":
        return [str(k) for k in range(10)]
    return folder_classes(spec)[0]


def folder_classes(spec: str) -> tuple[list[str], list[int]]:
    """(a folder's classes as :func:`class_names` numbers them; the image files each holds, readable or not): listed,
    not decoded, so a class too small to be split is refused before a run trains (:mod:`downpour.analysis.options`)."""
    from downpour.data.folder import class_labels, image_files
    files = image_files(spec)[0]
    loose = [p for p in files if p.parent == Path(spec)]
    if loose:
        raise DataError(f"{spec!r} holds {len(loose)} images at its top level (e.g. {loose[0].name!r}): a labelled set "
                        "takes each image's class from the sub-folder it is in")
    classes, class_of = class_labels(spec, files)
    return classes, np.bincount(np.asarray(class_of, dtype=int), minlength=len(classes)).tolist()


def load_labelled(spec: str, input_shape: tuple[int, ...], *,
                  prepare: Callable[[Tensor], Tensor] | None = None,
                  lfw_fold: tuple[int, int] | None = None, jpeg_draft: bool = True) -> LabelledSet:
    """A labelled set by name (``lfw``, ``digits``) or image-folder path, at ``input_shape`` (C, H, W).

    A model responds meaningfully only to inputs prepared like its training data, so the images go
    through ``prepare``: the run's fitted :class:`~downpour.data.preprocess.Preprocess` (its
    normalisation statistics and ZCA matrix, in training's order). ``raw`` keeps the images for the
    baselines: lfw and digits at their native size (25 x 25 and 8 x 8 grey, [0, 1]); a folder's images
    resized to ``input_shape`` (they have no common native size) but not prepared. ``lfw_fold``: the
    run's ``data.lfw_fold()`` (lfw's held-out part is then that fold's). ``jpeg_draft``: the run's
    ``data.jpeg_draft``, so a folder's JPEGs are decoded as the run decoded its own (recorded in ``info``).
    """
    c, h, w = input_shape
    x, y, classes, raw, info = _source(spec, input_shape, lfw_fold, jpeg_draft)
    pixels = resize_to(torch.as_tensor(x), input_shape)
    raw = pixels if raw is None else torch.as_tensor(raw).float()
    x = prepare_images(pixels, input_shape, prepare)
    info = {**info, "input_shape": [c, h, w], "normalize": getattr(prepare, "normalize", "none"),
            "whitened": getattr(prepare, "whitener", None) is not None,
            "raw_shape": list(raw.shape[1:])}
    return LabelledSet(spec, x, y, classes, info, raw=raw.contiguous(), pixels=pixels)


def load_labels(spec: str, input_shape: tuple[int, ...], *, lfw_fold: tuple[int, int] | None = None,
                jpeg_draft: bool = True) -> np.ndarray:
    """The labels (N,) of :func:`load_labelled`'s set, in its order, without its images resized and prepared (a
    folder's are decoded: its labels are those of the images that decode): what a check of a probe's seeded subset
    reads before the analysis measures, where the set itself would be held until its probe (the main preset's
    digits: 15.2 MB)."""
    return _source(spec, input_shape, lfw_fold, jpeg_draft)[1]


def _source(spec: str, input_shape: tuple[int, ...], lfw_fold: tuple[int, int] | None,
            jpeg_draft: bool) -> tuple[Any, np.ndarray, list[str], Any, dict[str, Any]]:
    """``spec``'s images as its source gives them (x), its labels (N,), class names, ``raw`` (None: x resized) and
    info, before :func:`load_labelled` resizes and prepares them."""
    c, h, _ = input_shape
    if spec == "lfw":
        from downpour.data import lfw_split
        held = lfw_split(size=h, grey=c == 1, fold=lfw_fold)["heldout"]
        x, y, classes = held.x, held.y, ["non-face", "face"]
        raw = lfw_split(size=25, grey=True, fold=lfw_fold)["heldout"].x
        part = "held-out part" if lfw_fold is None else f"fold {lfw_fold[0]} of {lfw_fold[1]}"
        info = {"source": f"scikit-image lfw_subset, {part} (never trained on)"}
    elif spec == "digits":
        from downpour.data import digits
        data = digits()
        x, y, classes, raw = data.x, data.y, [str(k) for k in range(10)], data.x
        info = {"source": "scikit-learn digits (8x8, resized)"}
    else:
        x, y, classes, info = _load_folder(spec, input_shape, jpeg_draft)
        raw = None
    if y is None:
        raise DataError(f"labelled set {spec!r} has no labels")
    return x, y.numpy() if isinstance(y, Tensor) else np.asarray(y), classes, raw, info


# what a labelled folder's info keeps of the data layer's: its files and how they were decoded (jpeg_decode, the rule
# that reduced its JPEGs, as data.json has it; an analysis.json written before 2026-12-05 lacks it), not the processing
# a training set gets (n_upscaled, upscaled: its images enlarged to the model's input)
_FOLDER_INFO = ("path", "classes", "grey", "mode", "size", "tile", "jpeg_draft", "jpeg_decode", "n_images", "n_samples",
                "n_ignored", "n_skipped", "skipped", "n_upscaled", "upscaled")


def _load_folder(path: str, input_shape: tuple[int, ...],
                 jpeg_draft: bool) -> tuple[Tensor, Tensor, list[str], dict[str, Any]]:
    """An image folder with one sub-folder per class, through the data layer's folder source, its JPEGs decoded
    reduced or not as the run's ``jpeg_draft`` says (not DataConfig's default, reduced, whatever the run: a
    run trained with data.jpeg_draft = false would be analysed on images it has not seen)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"labelled set {path!r} is neither a built-in set ({', '.join(BUILT_IN)}) nor a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"labelled set folder {path!r} needs one sub-folder per class (at least 2), found {classes}")
    from downpour.config import DataConfig
    from downpour.data import build_dataset
    cfg = DataConfig(source="folder", path=str(root), size=input_shape[1], mode="crops",
                     grey=input_shape[0] == 1, labels=True, jpeg_draft=jpeg_draft)
    data = build_dataset(cfg, seed=0, counted_in="analysis.json's labelled_set")
    files = {k: v for k, v in data.info.items() if k in _FOLDER_INFO}   # its processing is the run's, added after
    return data.x, data.y, list(data.info.get("classes", classes)), {"source": f"image folder {root}", **files}
