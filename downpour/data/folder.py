"""An image folder, read recursively with Pillow; labels optionally from sub-folder names.

Every file whose extension Pillow knows (PNG, JPEG, GIF, BMP, TIFF, WebP, ...) is read; other files
(notes, CSVs) are ignored and counted. A file with an image extension that Pillow cannot decode is
skipped, named in ``skipped`` and logged once: one bad JPEG in a thousand must not stop a run.
With ``labels``, an image's class is the name of the top-level sub-folder it lives under
(``root/cat/a.png`` and ``root/cat/x/b.png`` are both "cat"); classes are numbered in sorted order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from downpour.data.images import ImageSet, skip, to_chw
from downpour.errors import DataError


def image_extensions() -> set[str]:
    """Lower-case extensions (with the dot) Pillow can open, e.g. {'.png', '.jpg', ...}."""
    return {ext.lower() for ext in Image.registered_extensions()}


def read_image(path: Path, grey: bool) -> np.ndarray:
    """One file -> float32 (C, H, W) in [0, 1]. Raises OSError / ValueError on a file Pillow cannot decode."""
    with Image.open(path) as img:
        img.load()   # decode now, so a truncated file fails here and not later
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit greys: Pillow's convert("L") would clip them at 255, so scale ourselves
            return to_chw(np.asarray(img, dtype=np.float32) / 65535.0, grey)
        if img.mode == "F":
            return to_chw(np.asarray(img, dtype=np.float32), grey)
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")     # palette, CMYK, LA, RGBA, 1-bit ... -> RGB (alpha dropped)
        return to_chw(np.asarray(img), grey)


def image_files(path: str | Path, labels: bool = False) -> tuple[list[Path], int]:
    """(the image files under ``path``, sorted by relative path; how many other files were ignored).
    Raises DataError for a missing or empty folder, or (``labels``) images outside the class sub-folders."""
    root = Path(path)
    if not str(path):
        raise DataError("data.path is empty: the folder source needs the folder to read")
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist or is not a folder")
    known = image_extensions()
    every = [p for p in root.rglob("*") if p.is_file()]
    files = sorted(p for p in every if not any(part.startswith(".") for part in p.relative_to(root).parts))
    candidates = [p for p in files if p.suffix.lower() in known]
    if not candidates:
        raise DataError(f"image folder {str(root)!r} holds no image files ({len(files)} other files); "
                        f"expected extensions like .png, .jpg")
    if labels:
        loose = [p for p in candidates if p.parent == root]
        if loose:
            raise DataError(f"data.labels = true takes classes from sub-folders of {str(root)!r}, but "
                            f"{len(loose)} images sit at its top level (e.g. {loose[0].name!r})")
    return candidates, len(every) - len(candidates)


def load_folder(path: str | Path, grey: bool = True, labels: bool = False) -> ImageSet:
    """All readable images under ``path`` (sorted by relative path, so the order is reproducible)."""
    root = Path(path)
    candidates, n_ignored = image_files(path, labels)
    images, names, classes_of, skipped = [], [], [], []
    for p in candidates:
        rel = p.relative_to(root).as_posix()
        try:
            images.append(read_image(p, grey))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            skip(skipped, str(p), f"{type(err).__name__}: {err}")
            continue
        names.append(rel)
        classes_of.append(p.relative_to(root).parts[0])
    if not images:
        raise DataError(f"image folder {str(root)!r}: none of its {len(candidates)} image files could be read "
                        f"(first: {skipped[0]['file']}: {skipped[0]['reason']})")
    info = {"path": str(root), "n_ignored": n_ignored}   # hidden and non-image files
    y = None
    if labels:
        classes = sorted(set(classes_of))
        index = {c: k for k, c in enumerate(classes)}
        y = [index[c] for c in classes_of]
        info["classes"] = classes
    return ImageSet(images, names, labels=y, skipped=skipped, info=info)
