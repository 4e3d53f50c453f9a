"""Built-in offline data: scikit-image photographs, its ``lfw_subset`` faces, scikit-learn digits.

Nothing here downloads. ``NATURAL`` lists only the skimage.data images that ship inside the
scikit-image wheel (several others, e.g. ``lily`` or ``eagle``, need pooch and a network; they are
left out on purpose and a test checks every listed name loads offline).

The lfw split (fixed, by index, never random):
``lfw_subset()`` holds 200 grey 25x25 images; indices 0-99 are faces, 100-199 non-faces.
    train   = faces 0-69   + non-faces 100-169   (140 images; the ``faces`` source trains on these)
    heldout = faces 70-99  + non-faces 170-199   (60 images, y = 1 face / 0 non-face; analysis only)
or, with ``fold=(i, k)`` (``data.lfw_heldout = "fold:I:K"``, for cross-fitting), fold i of k:
    heldout = every k-th face and non-face from face i / non-face 100 + i (200 / k images)
    train   = the other images (so every image is held out by exactly one of the k folds)
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
import PIL.Image
import torch

from downpour.data.dataset import Dataset
from downpour.data.images import ImageSet, resize, to_chw

# Photographs of real scenes and textures (not drawings, masks, micrographs or synthetic images).
# "cat" is the same picture as "chelsea", so only one of them is here.
NATURAL: tuple[str, ...] = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "moon", "page", "rocket", "stereo_motorcycle", "text",
)

LFW_FACES = 100            # lfw_subset: images 0..99 are faces, 100..199 non-faces
LFW_TRAIN_PER_CLASS = 70   # the first 70 of each class train; the last 30 of each are held out


# Each photograph's file in scikit-image's wheel (skimage/data/). Read with PIL, not ``skimage.data``: its loader
# imports ``skimage.io``, which imports scipy, tifffile and imageio: 0.29-0.33 s of CPU after torch, 1.3-1.7 s of wall
# on the loaded 2-core VM, in every training process that reads one. The pixels are the same, bit for bit
# (tests/test_data_builtin.py checks every one).
_FILES = {"camera": "camera.png", "astronaut": "astronaut.png", "brick": "brick.png", "grass": "grass.png",
          "gravel": "gravel.png", "text": "text.png", "coins": "coins.png", "moon": "moon.png", "page": "page.png",
          "clock": "clock_motion.png", "chelsea": "chelsea.png", "coffee": "coffee.png",
          "hubble_deep_field": "hubble_deep_field.jpg", "rocket": "rocket.jpg",
          "stereo_motorcycle": "motorcycle_left.png"}    # (its left photo: skimage gives left, right, disparity)


def _skimage_file(name: str) -> str | None:
    """The path of ``name``'s file (``NATURAL``'s, or 'lfw_subset.npy') inside the installed scikit-image, found
    without importing it; None when that version keeps it elsewhere (then ``skimage.data`` reads it)."""
    spec = importlib.util.find_spec("skimage")
    path = os.path.join(spec.submodule_search_locations[0], "data", name) if spec else ""
    return path if os.path.isfile(path) else None


@functools.lru_cache(maxsize=None)
def _skimage_image(name: str) -> np.ndarray:
    path = _skimage_file(_FILES.get(name, ""))
    if path:
        with PIL.Image.open(path) as photo:
            image = np.asarray(photo)
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
        image = image[0] if name == "stereo_motorcycle" else image   # (left, right, disparity): the left photo
    image = np.asarray(image)
    image.setflags(write=False)       # cached and shared: nobody may change it in place
    return image


def natural_images(grey: bool = True, names: tuple[str, ...] = NATURAL) -> ImageSet:
    """The built-in photographs as float32 (C, H, W) in [0, 1]; sizes differ (about 200-1000 px)."""
    images = [to_chw(_skimage_image(n), grey) for n in names]
    return ImageSet(images, [f"skimage.data.{n}" for n in names], info={"images": list(names)})


@functools.lru_cache(maxsize=None)
def _lfw() -> np.ndarray:
    path = _skimage_file("lfw_subset.npy")
    if path:
        faces = np.load(path)         # (as skimage.data.lfw_subset() reads it, without importing skimage.data)
    else:
        import skimage.data

        faces = skimage.data.lfw_subset()
    faces = np.asarray(faces, dtype=np.float32)   # (200, 25, 25) in [0, 1]
    if faces.shape != (2 * LFW_FACES, 25, 25):
        raise RuntimeError(f"skimage.data.lfw_subset() has shape {faces.shape}, expected (200, 25, 25)")
    faces.setflags(write=False)
    return faces


Fold = tuple[int, int]    # (i, k): fold i of k; None = the fixed split


def lfw_indices(fold: Fold | None = None) -> dict[str, np.ndarray]:
    """Indices into ``lfw_subset`` of each part, faces first: the fixed split {"train": (140,),
    "heldout": (60,)}, or fold ``(i, k)``'s (every k-th image of each class from i held out)."""
    faces, nonfaces = np.arange(LFW_FACES), np.arange(LFW_FACES, 2 * LFW_FACES)
    if fold is None:
        k = LFW_TRAIN_PER_CLASS
        return {"train": np.concatenate([faces[:k], nonfaces[:k]]),
                "heldout": np.concatenate([faces[k:], nonfaces[k:]])}
    i, k = fold
    if not 2 <= k <= LFW_FACES or not 0 <= i < k:
        raise ValueError(f"lfw fold {i} of {k}: needs 2 <= k <= {LFW_FACES} and 0 <= i < k")
    held = faces % k == i
    return {"train": np.concatenate([faces[~held], nonfaces[~held]]),
            "heldout": np.concatenate([faces[held], nonfaces[held]])}


def describe_split(fold: Fold | None = None) -> str:
    """The split in words, for run records."""
    if fold is None:
        return "train: faces 0-69 + non-faces 100-169"
    return f"fold {fold[0]} of {fold[1]}: every {fold[1]}-th face and non-face from {fold[0]} held out, the rest train"


def _lfw_part(idx: np.ndarray, size: int, grey: bool) -> tuple[np.ndarray, np.ndarray]:
    """The images ``idx`` (n,) of ``lfw_subset`` and their labels."""
    every = lfw_all(size, grey)
    return every.x.numpy()[idx], every.y.numpy()[idx]     # (n, C, size, size), 1 = face / 0 = non-face


def lfw_train_faces(fold: Fold | None = None) -> int:
    """How many faces the training part of the split (or of ``fold``) holds."""
    return int((lfw_indices(fold)["train"] < LFW_FACES).sum())


def lfw_trained(fold: Fold | None = None, faces: int = -1) -> np.ndarray:
    """(n,) indices into ``lfw_subset`` of the images the ``faces`` source trains on, faces first: the training part
    of the split (or of ``fold``), less every face past its first ``faces`` where ``faces`` >= 0 (-1 keeps them all;
    ``data.train_faces``). The held-out part is ``lfw_indices(fold)["heldout"]`` whatever ``faces`` keeps."""
    if faces > lfw_train_faces(fold):
        raise ValueError(f"lfw_images: {faces} training faces asked for, the split holds {lfw_train_faces(fold)}")
    idx = lfw_indices(fold)["train"]
    keep = np.ones(len(idx), bool) if faces < 0 else (idx >= LFW_FACES) | (np.cumsum(idx < LFW_FACES) <= faces)
    return idx[keep]


def lfw_images(size: int = 25, grey: bool = True, fold: Fold | None = None, faces: int = -1) -> ImageSet:
    """The training part of the lfw split (or of ``fold``) as an ImageSet (the ``faces`` source); labels kept.

    ``faces`` >= 0 keeps only the part's first ``faces`` faces (all its non-faces stay): 0 is training
    data without a face, the control for a face unit. -1 keeps every one.
    """
    idx = lfw_trained(fold, faces)
    x, y = _lfw_part(idx, size, grey)
    return ImageSet(list(x), [f"lfw_subset[{i}]" for i in idx], labels=[int(v) for v in y],
                    info={"lfw_split": describe_split(fold), "faces_trained_on": int(y.sum())})


def lfw_split(size: int = 25, grey: bool = True, fold: Fold | None = None) -> dict[str, Dataset]:
    """The fixed split of skimage's ``lfw_subset``, or ``fold`` of it (see the module docstring).

    Returns ``{"train": Dataset (140, C, size, size), "heldout": Dataset (60, C, size, size)}``, both
    with ``y`` (1 = face, 0 = non-face), faces first. Unsupervised training uses ``train`` only (its
    labels are there for probes); ``heldout`` is for scoring face neurons and is never trained on.
    """
    if size < 1:
        raise ValueError(f"lfw_split: size must be >= 1, got {size}")
    out = {}
    for part in ("train", "heldout"):
        idx = lfw_indices(fold)[part]
        x, y = _lfw_part(idx, size, grey)
        info = {"source": f"lfw_subset/{part}", "n_images": len(x), "n_samples": len(x), "n_skipped": 0,
                "skipped": [], "faces": int(y.sum()), "non_faces": int(len(y) - y.sum()),
                "indices": [int(i) for i in idx], "size": size}
        out[part] = Dataset(torch.from_numpy(x), torch.from_numpy(y), info=info)
    return out


def lfw_all(size: int = 25, grey: bool = True) -> Dataset:
    """All 200 images of ``lfw_subset`` in its own order (faces 0-99, non-faces 100-199), for
    cross-fitting over folds (:func:`lfw_indices` ``(fold)`` indexes into it)."""
    x = _lfw()[:, None].copy()                            # the cache is read-only; torch wants to own its copy
    x = resize(x, size) if size != 25 else x
    if not grey:
        x = np.repeat(x, 3, axis=1)
    y = (np.arange(len(x)) < LFW_FACES).astype(np.int64)
    return Dataset(torch.from_numpy(x), torch.from_numpy(y), info={"source": "lfw_subset", "n_images": len(x)})


def digits() -> Dataset:
    """scikit-learn's digits: x (1797, 1, 8, 8) float32 in [0, 1] (pixel / 16), y (1797,) int64 in 0..9."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.images / 16.0).astype(np.float32)[:, None])
    y = torch.from_numpy(bunch.target.astype(np.int64))
    info = {"source": "digits", "n_images": len(x), "n_samples": len(x), "n_skipped": 0, "skipped": [],
            "classes": [str(c) for c in range(10)]}
    return Dataset(x, y, info=info)


def digit_images() -> ImageSet:
    """The digits as an ImageSet (the ``digits`` source), labels kept."""
    d = digits()
    return ImageSet(list(d.x.numpy()), [f"digits[{i}]" for i in range(len(d))], labels=d.y.tolist(),
                    info={"classes": d.info["classes"]})
