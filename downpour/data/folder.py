"""An image folder, read recursively with Pillow; labels optionally from sub-folder names.

Every file whose extension Pillow knows (PNG, JPEG, GIF, BMP, TIFF, WebP, ...) is read; other files (notes, CSVs)
are ignored and counted. A file with an image extension that Pillow cannot decode (or a float image holding NaN or
Inf) is skipped, named in ``skipped`` and logged once: one bad JPEG in a thousand must not stop a run. With
``labels``, an image's class is the name of the top-level sub-folder it lives under (``root/cat/a.png`` and
``root/cat/x/b.png`` are both "cat"); classes are the sub-folders holding image files, numbered in sorted order
whether or not their files can be read (:func:`class_labels`), so the in-memory and the streamed paths number them
alike and fixing a bad file does not renumber them. Symbolic links are followed to files and to folders outside the
folder read (each real folder once); a link to a folder inside it is not (its files are read where they lie), nor
one to a folder holding it (a loop: named, data.json's ``loops``); a link to nothing is an image file that cannot
be read: skipped and named.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image, ImageFile
from PIL.JpegImagePlugin import JpegImageFile

from downpour._names import none_could, plural
from downpour.config.sections import JPEG_DECODE
from downpour.data.bomb_limit import opened, within_bomb_limit
from downpour.data.images import UNREADABLE, ImageSet, log, skip, to_chw
from downpour.data.left_out import left_out, say_left_out
from downpour.data.patches import decode_reduction
from downpour.errors import DataError


# identified by Pillow but not decoded: PostScript needs Ghostscript, MPEG is read for its size only
_NOT_DECODED = {".eps", ".ps", ".mpg", ".mpeg"}


def image_extensions() -> set[str]:
    """Lower-case extensions (with the dot) of the images Pillow can decode, e.g. {'.png', '.jpg', ...}:
    not the formats it only writes (.pdf, .palm), nor its stubs (.h5, .grib, .bufr, .wmf without a
    handler), nor what it identifies without decoding; so a README.pdf beside the images is ignored
    (counted), not a corrupt image."""
    Image.init()
    out = set()
    for ext, fmt in Image.registered_extensions().items():
        factory = Image.OPEN.get(fmt, (None,))[0] if fmt != "MPO" else Image.OPEN["JPEG"][0]   # MPO: the JPEG opener
        if factory is None or (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)):
            continue
        if ext.lower() not in _NOT_DECODED:
            out.add(ext.lower())
    return out


ORIENTATION = 0x0112   # the EXIF tag
# EXIF orientation -> the transposition that turns the stored pixels upright (Pillow's exif_transpose
# does the same, then rewrites the EXIF block: a damaged one raised struct.error there)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
_INT32_MAX = float(2 ** 31 - 1)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag, 1 (as stored) when there is none or the EXIF block cannot be parsed:
    the pixels decoded, and a damaged tag must not cost the image."""
    try:
        value = img.getexif().get(ORIENTATION, 1)
    except Exception:            # noqa: BLE001 - Pillow's EXIF parser raises struct, type and value errors
        return 1
    return value if isinstance(value, int) else 1


def _integer_grey(img: Image.Image) -> np.ndarray:
    """A 16- or 32-bit integer grey image -> float32 in [0, 1]. Modes "I;16*" are 16-bit; mode "I" is
    Pillow's 32-bit mode, which also holds 16-bit files (PGM, PPM): values within [0, 65535] are read
    as 16-bit, larger ones by the 32-bit maximum; a negative pixel is refused (ValueError)."""
    x = np.asarray(img, dtype=np.int64 if img.mode == "I" else np.float32)
    if img.mode != "I" or (x.size and 0 <= x.min() and x.max() <= 65535):
        return (x / 65535.0).astype(np.float32)
    if x.min() < 0:
        raise ValueError(f"32-bit integer image holds negative pixels (min {int(x.min())}): no [0, 1] scale")
    return (x / _INT32_MAX).astype(np.float32)


def read_image(path: Path, grey: bool, shrink_to: int = 0, tile: int = 0, rule: int = JPEG_DECODE) -> np.ndarray:
    """:func:`read_scaled`'s image alone."""
    return read_scaled(path, grey, shrink_to, tile, rule)[0]


def read_scaled(path: Path, grey: bool, shrink_to: int = 0, tile: int = 0,
                rule: int = JPEG_DECODE) -> tuple[np.ndarray, int]:
    """(one file -> float32 (C, H, W) in [0, 1] (floats as stored), the reduction it was decoded at: 1 = native
    pixels, s = 1/s of them per side), turned upright by its EXIF orientation
    (a phone's portrait JPEG is stored sideways with a tag saying so; an EXIF block that cannot be parsed
    leaves the image as stored). Raises OSError / ValueError on a file Pillow cannot decode, ValueError
    on a float image holding NaN or Inf.

    ``shrink_to`` > 0 (crops mode of side ``shrink_to``, data.jpeg_draft): a JPEG is decoded at 1/2, 1/4 or 1/8
    scale in the DCT domain where its crops allow (``tile``: :func:`~downpour.data.patches.decode_reduction`; a tile
    grid is then cut at 1/s: ``ImageSet.scales``; ``rule``: data.jpeg_decode). Other files, and 0 (patches cut native pixels), decode in full."""
    with opened(path, reducible=shrink_to > 0) as img:
        native, s = img.width, _decode_scale(img, shrink_to, tile, rule)
        if s > 1:
            # a 4032x3024 photo cropped to 32 px decodes at 504x378: decode + crop 0.22x the time of a full
            # decode, the crop within 0.0022 (mean 0.0004) of the full decode's (bench/jpeg_draft.py)
            img.draft(None, (img.width // s, img.height // s))
        img.load()   # decode now, so a truncated file fails here and not later
        s = native // img.width      # what the decoder did (the crops are cut by it), not what was asked
        turn = _UPRIGHT.get(_orientation(img))
        if turn is not None:         # a camera's "rotate me": upright, as a viewer shows it
            img = img.transpose(turn)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit greys: Pillow's convert("L") would clip them at 255, so scale ourselves
            return to_chw(_integer_grey(img), grey), s
        if img.mode == "F":
            x = np.asarray(img, dtype=np.float32)
            bad = int(x.size - np.isfinite(x).sum())
            if bad:   # one NaN would make every batch's cost and the fitted statistics NaN
                raise ValueError(f"float image holds {plural(bad, 'NaN or Inf pixel')} of {x.size}")
            return to_chw(x, grey), s
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")     # palette, CMYK, LA, RGBA, 1-bit ... -> RGB (alpha dropped)
        return to_chw(np.asarray(img), grey), s


def decoded_size(path: Path, shrink_to: int = 0, tile: int = 0, rule: int = JPEG_DECODE) -> tuple[int, int, int]:
    """(width, height, reduction) :func:`read_scaled` decodes ``path`` to, from its header; raises as it would on a
    file over the bomb limit (data.pipeline's estimate: a JPEG over it that read_scaled reads reduced counts its
    reduced pixels, not 0, which would estimate a folder of them at 0 bytes and hold it in memory under 'auto')."""
    with opened(path, reducible=shrink_to > 0) as img:
        s = _decode_scale(img, shrink_to, tile, rule)
        return img.width // s, img.height // s, s


def upright_size(path: Path, shrink_to: int = 0, tile: int = 0, rule: int = JPEG_DECODE) -> tuple[int, int]:
    """(height, width) of :func:`read_scaled`'s image of ``path``, from its header (:func:`decoded_size`, turned
    upright by its EXIF orientation); raises as opening it would. A PNG's EXIF block after its pixels is taken as none:
    Pillow decodes the pixels to find it (2 of the 3.5 s 300 files' sizes took), so the size may be wrong (the cut
    checks it: :mod:`~downpour.data.cut_as_read`)."""
    with opened(path, reducible=shrink_to > 0) as img:
        s = _decode_scale(img, shrink_to, tile, rule)
        h, w = img.height // s, img.width // s
        turned = not (img.format == "PNG" and "exif" not in img.info) and _orientation(img) in (5, 6, 7, 8)
        return (w, h) if turned else (h, w)


def _decode_scale(img: Image.Image, shrink_to: int, tile: int, rule: int) -> int:
    """The reduction :func:`read_scaled` decodes the opened, not yet loaded ``img`` at (1: in full): a JPEG's
    :func:`~downpour.data.patches.decode_reduction` where ``shrink_to`` > 0; what the decoded image holds. An image
    over the bomb limit is refused unless that decode is within it (:func:`~downpour.data.bomb_limit.within_bomb_limit`)."""
    s = 1
    if shrink_to > 0 and isinstance(img, JpegImageFile):
        s = decode_reduction(img.height, img.width, tile, shrink_to, rule)
    if img.width * img.height > 2 * (Image.MAX_IMAGE_PIXELS or img.width * img.height):
        within_bomb_limit(img, s)
    return s


def walk_files(root: Path, unlisted: list[dict[str, str]] | None = None, links: set[str] | None = None) -> Iterator[Path]:
    """Every file under ``root``, hidden ones too, in a fixed order, through symbolic links to folders outside ``root``
    (each real folder once: two links to one folder give its files once, under the first link in sorted order); a
    link to a folder inside ``root`` is not followed (its files are read where they lie), nor one to a folder that
    holds it (a loop: :func:`_followed`); a link to nothing counts as a file (reading it fails, naming it), one to a
    named pipe, socket or device does not. ``unlisted``: where a folder that cannot be listed (no permission) is
    recorded as {"folder", "reason"}, not logged: a run walks its folder two or three times (the checks, pipeline
    "auto"'s count, the load), and the load says what it left out (:func:`say_left_out`); os.walk alone would drop it,
    and its images, without a word. ``links``: where the files that are symbolic links are added (for
    :func:`once_each`, which then looks at no file again)."""
    links = set() if links is None else links

    def unlistable(err: OSError) -> None:
        if unlisted is not None:
            unlisted.append({"folder": str(err.filename), "reason": f"{type(err).__name__}: {err.strerror}"})

    inside = os.path.realpath(root)
    seen: set[str] = set()
    for top, dirs, names in os.walk(root, followlinks=True, onerror=unlistable):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if _followed(os.path.join(top, d), real, inside, unlisted))
        try:
            kept = [p for p in (Path(top) / name for name in sorted(names)) if _listed(p, links)]
        except OSError as err:
            # listed but not entered: a folder with read but no search (x) permission, as `chmod -R 644` leaves
            # every sub-folder; recorded, where the stat of its first file would end the run with a traceback
            unlistable(OSError(err.errno, f"{err.strerror}: its names can be read, not its files (no x permission)"
                               if err.errno == errno.EACCES else err.strerror, top))
            dirs[:] = []
            continue
        yield from kept


def _followed(folder: str, real: str, inside: str, unlisted: list[dict[str, str]] | None) -> bool:
    """Whether the walk enters ``folder``, in the one whose real path is ``real``: a folder, or a link to one outside
    the folder read (``inside``). A link to a folder holding it is a loop, put in ``unlisted`` as {"folder": the link,
    "loop": its target} (data.json's ``loops``: :func:`left_out`): not left out unsaid, nor followed where it leads
    above data.path (``data/up -> ../..`` would read every image beside and above ``data``)."""
    if not os.path.islink(folder):
        return True
    target = os.path.realpath(folder)
    if _within(real, target):       # a loop
        if unlisted is not None:
            unlisted.append({"folder": folder, "loop": target})
        return False
    return not _within(target, inside)


def _listed(p: Path, links: set[str]) -> bool:
    """Whether folder entry ``p`` is listed as a file: a file, or a link to nothing (or a loop), or an entry that
    cannot be looked at (a link's target out of reach: a name too long, a dead mount; a stale NFS handle), kept to
    be named unreadable when read; a link to a named pipe, socket or device is none (reading a link to a pipe
    would wait for a writer: the run would hang, saying nothing). A link is added to ``links``. PermissionError where
    its folder cannot be entered (the entry's own lstat needs only the folder's x permission).

    One lstat a file that is no link, not a stat here and an lstat in :func:`_real` (20,000 files 2 folders deep are
    listed with 21,378 stat calls, where 2 a file took 41,378, strace -c); a link's target is looked at once more."""
    try:
        mode = os.lstat(p).st_mode
    except OSError as err:
        # (kept as an entry: one such entry, 'File name too long' or a dead sshfs mount's 'Transport endpoint is not
        # connected', does not leave its whole folder out as one that cannot be entered)
        if err.errno == errno.EACCES:
            raise
        return True
    if not stat.S_ISLNK(mode):
        return stat.S_ISREG(mode)
    links.add(os.fspath(p))
    return os.path.isfile(p) or not os.path.exists(p)


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def hidden(path: Path, root: Path) -> bool:
    """Whether ``path`` or a folder between it and ``root`` is hidden (its name starts with a dot)."""
    top = root.parts
    # (a listing's paths start with root's parts: relative_to built a new Path for each, 2.2 s of 100,000 files)
    rel = path.parts[len(top):] if path.parts[:len(top)] == top else path.relative_to(root).parts
    return any(part.startswith(".") for part in rel)


def image_files(path: str | Path, labels: bool = False, unlisted: list[dict[str, str]] | None = None,
                aliases: list[dict[str, str]] | None = None,
                others: list[Path] | None = None) -> tuple[list[Path], int]:
    """(the image files under ``path``, sorted by relative path; how many other files were ignored).
    Raises DataError for a missing, unlistable or empty folder, or (``labels``) images outside the class
    sub-folders. ``unlisted``: filled with the sub-folders that cannot be listed (:func:`walk_files`);
    ``aliases``: with the names of files listed already (:func:`once_each`); ``others``: with the files left out
    for their extension (not hidden ones). Logs nothing: see :func:`say_left_out`."""
    root = Path(path)
    if not str(path):
        raise DataError("data.path is empty: the folder source needs the folder to read")
    if root.is_file():     # (said as a file, not as "does not exist or is not a folder")
        raise DataError(f"data.path {str(root)!r} is a file, and data.path takes the folder of images to read "
                        f"(data.path = {str(root.parent)!r}: every image in it)")
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist or is not a folder")
    known = image_extensions()
    unlisted = [] if unlisted is None else unlisted
    links: set[str] = set()
    every = list(walk_files(root, unlisted, links))
    if unlisted and unlisted[0]["folder"] == str(root):
        raise DataError(f"image folder {str(root)!r} cannot be listed: {unlisted[0]['reason']}")
    files = sorted(p for p in every if not hidden(p, root))
    candidates = once_each([p for p in files if p.suffix.lower() in known], aliases, links)
    if others is not None:
        others.extend(p for p in files if p.suffix.lower() not in known)
    if not candidates:
        raise DataError(f"image folder {str(root)!r} holds no image files ({plural(len(files), 'other file')}); "
                        f"expected extensions like .png, .jpg")
    if labels:
        loose = [p for p in candidates if p.parent == root]
        if loose:
            raise DataError(f"data.labels = true takes classes from sub-folders of {str(root)!r}, but "
                            f"{plural(len(loose), 'image')} {'sits' if len(loose) == 1 else 'sit'} at its top level (e.g. {loose[0].name!r})")
    return candidates, len(every) - len(candidates)


def once_each(files: list[Path], aliases: list[dict[str, str]] | None = None,
              links: set[str] | None = None) -> list[Path]:
    """``files`` with each real file once, under its first name in sorted order (an image folder's and a video
    folder's): a link to a file listed already (another name inside the folder, two links to one file) would train it
    twice.
    ``aliases``: where each dropped name is recorded as {"file": it, "is": the name kept}; ``links``: the files that
    are symbolic links, as :func:`walk_files` found them (None: each file is looked at)."""
    first: dict[str, Path] = {}
    folders: dict[str, str] = {}
    for p in files:
        kept = first.setdefault(_real(p, folders, links), p)
        if kept is not p and aliases is not None:
            aliases.append({"file": str(p), "is": str(kept)})
    return list(first.values())


def _real(p: Path, folders: dict[str, str], links: set[str] | None = None) -> str:
    """``os.path.realpath(p)``, each folder resolved once a listing (``folders``): a file that is no link is its real
    folder's entry. realpath resolved every component of every file: 100,000 files 4 folders deep took 700,000 lstat
    calls, 6.7 of the 14.0 s a profiled listing took."""
    if os.fspath(p) in links if links is not None else os.path.islink(p):
        return os.path.realpath(p)
    folder = os.fspath(p.parent)
    if folder not in folders:
        folders[folder] = os.path.realpath(folder)
    return os.path.join(folders[folder], p.name)


def image_listing(path: str | Path, labels: bool = False) -> tuple[list[Path], dict[str, Any]]:
    """(:func:`image_files`' files; what data.json records of the listing: ``n_ignored`` and :func:`left_out`'s keys).
    Logs nothing: see :func:`say_left_out`."""
    unlisted: list[dict[str, str]] = []
    aliases: list[dict[str, str]] = []
    others: list[Path] = []
    files, n_ignored = image_files(path, labels, unlisted, aliases, others)
    return files, {"n_ignored": n_ignored, **left_out(unlisted, aliases, others)}   # hidden, non-image, aliases


def class_labels(root: str | Path, files: list[Path]) -> tuple[list[str], list[int]]:
    """(the classes: the top-level sub-folders of ``root`` holding ``files``, sorted; each file's class
    number). From the file list, not from what could be read, so both paths number classes alike."""
    classes_of = [p.relative_to(root).parts[0] for p in files]
    classes = sorted(set(classes_of))
    index = {c: k for k, c in enumerate(classes)}
    return classes, [index[c] for c in classes_of]


def load_folder(path: str | Path, grey: bool = True, labels: bool = False, shrink_to: int = 0,
                tile: int = 0, rule: int = JPEG_DECODE,
                keep: Callable[[np.ndarray, int, str], np.ndarray] | None = None) -> ImageSet:
    """All readable images under ``path`` (sorted by relative path, so the order is reproducible);
    ``shrink_to``, ``tile``, ``rule``: JPEGs decoded reduced for crops of that side (:func:`read_image`); ``keep``:
    called on each image as read (with its scale and name), what it returns is held in its place (crops and patches cut
    an image there and hold its size alone: :mod:`downpour.data.cut_as_read`)."""
    root = Path(path)
    candidates, listing = image_listing(path, labels)
    info = {"path": str(root), **listing}
    say_left_out(root, info)
    classes, class_of = class_labels(root, candidates) if labels else ([], [0] * len(candidates))
    images, names, y, skipped, scales = [], [], [], [], []
    for p, label in zip(candidates, class_of):
        rel = p.relative_to(root).as_posix()
        try:
            image, scale = read_scaled(p, grey, shrink_to, tile, rule)
        except UNREADABLE as err:
            skip(skipped, str(p), f"{type(err).__name__}: {err}")
            continue
        images.append(image if keep is None else keep(image, scale, rel))
        scales.append(scale)
        names.append(rel)
        y.append(label)
    if not images:
        raise DataError(f"image folder {str(root)!r}: {none_could(len(candidates), 'image file', 'be read')} "
                        f"(first: {skipped[0]['file']}: {skipped[0]['reason']})")
    if labels:
        info["classes"] = classes
        found = set(y)
        unread = [c for k, c in enumerate(classes) if k not in found]
        if unread:   # kept, so the numbers do not change when its files are fixed (and match the stream's)
            info["classes_unread"] = unread
            log.warning("image folder %s: no image of class %s could be read; it keeps its number", root,
                        ", ".join(repr(c) for c in unread))
    return ImageSet(images, names, labels=y if labels else None, skipped=skipped, info=info, root=str(root),
                    scales=scales)
